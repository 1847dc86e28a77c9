"""``python -m bench`` on a tiny configuration: the report is written, twice over, consistently.

Timings are never asserted (the machine is shared); only that the benchmark runs and that its
markdown and JSON reports hold the same scenarios and describe the machine and versions.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT


def _bench(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_tiny_scale_run_writes_matching_markdown_and_json_reports(tmp_path: Path) -> None:
    done = _bench(
        "--only", "scale", "--clients", "50", "--database", "sqlite", "--reports", str(tmp_path)
    )

    assert done.returncode == 0, done.stderr[-2000:]
    (markdown,) = tmp_path.glob("bench-*.md")
    (document,) = tmp_path.glob("bench-*.json")
    assert (tmp_path / "latest.md").read_text() == markdown.read_text()
    assert (tmp_path / "latest.json").read_text() == document.read_text()
    report = json.loads(document.read_text())
    assert {"machine", "versions", "command", "scenarios"} <= report.keys()
    assert {"cpu_model", "cpu_count", "memory_gib", "os", "python"} <= report["machine"].keys()
    for package in ("samops", "sqlalchemy", "aiohttp", "openai", "pydantic", "psycopg", "git"):
        assert report["versions"][package], package
    assert list(report["scenarios"]) == ["scale"]
    headings = [line[3:] for line in markdown.read_text().splitlines() if line.startswith("## ")]
    assert headings == ["Machine", "Versions"] + [s["title"] for s in report["scenarios"].values()]
    steps = [row["step"] for row in report["scenarios"]["scale"]["rows"]]
    assert len(steps) == 5  # baseline, validate, then apply and two reconciles on SQLite
    assert "--clients 50" in report["command"]


def test_litellm_without_the_proxy_says_how_to_install_it(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-litellm")

    done = _bench("--only", "litellm", "--litellm-bin", missing, "--reports", str(tmp_path))

    assert done.returncode == 1
    assert "pip install 'litellm[proxy]==" in done.stderr
    assert not list(tmp_path.glob("*.md"))


def test_tiny_curve_run_measures_every_figure_on_each_size(tmp_path: Path) -> None:
    done = _bench(
        "--only", "curve", "--sizes", "2,4", "--curve-commits", "2", "--database", "sqlite",
        "--reports", str(tmp_path),
        timeout=240,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(next(tmp_path.glob("bench-*.json")).read_text())
    rows = report["scenarios"]["curve"]["rows"]
    assert {row["size"] for row in rows} == {2, 4}
    figures = {row["figure"] for row in rows}
    assert {"one-file commit → served (ms)", "key revoked by a commit → refused (ms)"} <= figures
    served = [row for row in rows if row["figure"] == "one-file commit → served (ms)"]
    assert all(len(row["samples"]) == 2 and row["median"] > 0 for row in served)
    memory = [row for row in rows if row["figure"] == "replica's --workers process RSS (MB)"]
    assert len(memory) == 2 and all(row["median"] > 20 for row in memory)  # a process measured
    assert (tmp_path / "scale-curve.png").stat().st_size > 10_000  # the plot beside the report


def test_wrk_loads_the_floor_proxy_in_front_of_the_scripted_upstream(tmp_path: Path) -> None:
    """The chat bench's baseline and load generator, briefly: the floor (``bench/floor.py``)
    forwards to the scripted upstream, wrk (``bench/wrk.py``) loads it and reads its answers,
    and a failing route fails the run with what wrk saw."""
    from bench import wrk
    from bench.soakkit import PYTHON, Child, scripted_upstream, wait_ok
    from tests.ports import free_port

    if wrk.available() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("wrk is not installed; .ci/run installs it under CI=true")
        pytest.skip("wrk is not installed (apt-get install wrk)")
    upstream_port, floor_port = free_port(), free_port()
    upstream = scripted_upstream(upstream_port, tmp_path / "upstream.log")
    argv = [PYTHON, "-m", "bench.floor", "--port", str(floor_port)]
    argv += ["--upstream", f"http://127.0.0.1:{upstream_port}"]
    floor = Child("floor", argv, env={}, log=tmp_path / "floor.log")
    try:
        wait_ok(f"http://127.0.0.1:{upstream_port}/v1/models", upstream)
        wait_ok(f"http://127.0.0.1:{floor_port}/healthz", floor)
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}
        url = f"http://127.0.0.1:{floor_port}/v1/chat/completions"
        figures = wrk.run(url, body, concurrency=4, seconds=1)
        assert figures.requests > 10 and figures.throughput > 0
        assert 0 < figures.p50_ms <= figures.p99_ms
        assert figures.overheads == []  # the floor sends no overhead header
        with pytest.raises(RuntimeError, match="were not 200"):
            wrk.run(url, {"messages": "not a list"}, concurrency=2, seconds=1)
    finally:
        floor.stop()
        upstream.stop()


@pytest.mark.parametrize("via", ["bytes", "sdk", "sdk-stock"])
def test_each_floor_answers_as_the_upstream_does(tmp_path: Path, via: str) -> None:
    """The floors the chat bench compares samops with (``bench/floor.py --via``) pass a plain
    answer on unchanged in substance; the SDK floors call the upstream through the SDK (its
    user agent reaches the upstream), and the one samops' way also streams."""
    import aiohttp

    from bench.soakkit import PYTHON, Child, scripted_upstream, wait_ok
    from serve import eventloop
    from tests.ports import free_port

    upstream_port, floor_port = free_port(), free_port()
    upstream = scripted_upstream(upstream_port, tmp_path / "upstream.log")
    argv = [PYTHON, "-m", "bench.floor", "--port", str(floor_port), "--via", via]
    floor = Child(
        "floor",
        [*argv, "--upstream", f"http://127.0.0.1:{upstream_port}"],
        env={},
        log=tmp_path / "floor.log",
    )
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello floor"}]}

    async def ask(base: str, stream: bool = False) -> tuple[int, bytes]:
        async with aiohttp.ClientSession() as session:
            url = f"{base}/v1/chat/completions"
            async with session.post(url, json={**body, "stream": stream}) as answer:
                return answer.status, await answer.read()

    try:
        wait_ok(f"http://127.0.0.1:{upstream_port}/v1/models", upstream)
        wait_ok(f"http://127.0.0.1:{floor_port}/healthz", floor)
        status, direct = eventloop.run(ask(f"http://127.0.0.1:{upstream_port}"))
        status, through = eventloop.run(ask(f"http://127.0.0.1:{floor_port}"))
        assert status == 200, through
        expected = json.loads(direct)["choices"][0]["message"]["content"]
        assert json.loads(through)["choices"][0]["message"]["content"] == expected
        if via == "sdk":
            status, streamed = eventloop.run(ask(f"http://127.0.0.1:{floor_port}", stream=True))
            events = [line for line in streamed.split(b"\n\n") if line.startswith(b"data: {")]
            assert status == 200 and events and streamed.rstrip().endswith(b"data: [DONE]")
            text = "".join(
                (json.loads(e[6:])["choices"] or [{}])[0].get("delta", {}).get("content") or ""
                for e in events
            )
            assert text == expected
    finally:
        floor.stop()
        upstream.stop()


def test_the_limits_cost_is_the_median_of_paired_rounds() -> None:
    """``bench/chat.py``'s paired figures: each round's ratio, then the median over rounds
    (a noisy round does not decide the figure)."""
    from bench.chat import Figures, Paired, limits_section

    def figures(requests: int, overhead: float) -> Figures:
        return Figures(requests, 1.0, 0.001, 0.002, [overhead] * 3, cpu_seconds=requests / 1000)

    pair = Paired(16)
    for limited, plain in ((900, 1000), (300, 1000), (1000, 1000)):  # the second: a noisy round
        pair.limited.append(figures(limited, 0.5))
        pair.plain.append(figures(plain, 0.4))
    (row,) = limits_section([pair]).rows
    assert row["throughput_x"] == pytest.approx(0.9)
    assert row["added_ms"] == pytest.approx(0.1)
    assert row["cpu_x"] == pytest.approx(1.0)
    assert "throughput 0.90x at worst" in limits_section([pair]).notes[0]
