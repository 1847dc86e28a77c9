"""The chat bench's picture: throughput against concurrency (docs/chat.md shows it).

Lines: the upstream called directly, the floor (a bare aiohttp pass-through proxy), the floor
calling the upstream through the ``openai`` SDK (as samops calls it, and stock), samops'
OpenAI route with everything on for each ``--workers`` count, and LiteLLM when it ran. Nothing
is drawn when matplotlib is absent (it is a dev dependency).
"""

from __future__ import annotations

from pathlib import Path

from bench.chat import CONCURRENCY, DIRECT, EVERYTHING, FLOOR, FLOOR_SDK, FLOOR_STOCK_SDK, Measured
from bench.litellm_proxy import LABEL


def plot(measured: Measured, workers: tuple[int, ...], path: Path, litellm: str = "") -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    lines: list[tuple[str, int, str, str]] = [
        ("the upstream, directly", workers[0], DIRECT, "k:"),
        ("floor: bare aiohttp pass-through (1 process)", workers[0], FLOOR, "k--"),
        ("floor + the openai SDK as samops calls it", workers[0], FLOOR_SDK, "k-."),
        ("floor + the openai SDK, stock", workers[0], FLOOR_STOCK_SDK, "x:"),
    ]
    for processes in workers:
        noun = "process" if processes == 1 else "processes"
        lines.append((f"samops, everything on ({processes} {noun})", processes, EVERYTHING, "o-"))
    if litellm:
        lines.append((f"{litellm} (1 worker)", workers[0], LABEL, "s-"))
    figure, axis = plt.subplots(figsize=(8, 4.8))
    for label, processes, scenario, style in lines:
        found = [measured.get(processes, scenario, c) for c in CONCURRENCY]
        points = [(c, f.throughput) for c, f in zip(CONCURRENCY, found, strict=True) if f]
        if points:
            axis.plot(*zip(*points, strict=True), style, label=label, marker="o")
    axis.set_xscale("log", base=2)
    axis.set_xticks(list(CONCURRENCY), [str(c) for c in CONCURRENCY])
    axis.set_xlabel("concurrent connections")
    axis.set_ylabel("requests per second (plain answer)")
    axis.set_title("Chat throughput on a 2-core machine (load generator and upstream included)")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)
