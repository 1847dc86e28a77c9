"""LiteLLM: the chat load of ``bench/chat.py`` through a LiteLLM proxy, beside samops.

Off by default (``--with-litellm``); LiteLLM is not a dependency of samops and nothing is
installed at run time. The proxy runs as a child process from its own virtualenv
(``--litellm-bin``), so its dependencies never meet samops'. It is configured by a generated
``config.yaml``: one model name (``support``) mapped to the same scripted upstream as samops'
``support`` client (``openai/`` provider with ``api_base``), no database, no master key, no
telemetry, the local model cost map (no fetch from the network), access logs off (samops runs
at ``--log-level warning``), one worker, 127.0.0.1 only.

For each concurrency the three are measured back to back: direct to the upstream (the
baseline), samops' ``/v1/chat/completions``, LiteLLM's. LiteLLM's own overhead is its
``x-litellm-overhead-duration-ms`` header, samops' ``x-samops-overhead-ms``. No tool round:
LiteLLM does not run tools, its client would.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from bench.chat import (
    COLUMNS,
    CONCURRENCY,
    DIRECT,
    NO_LIMITS,
    PLAIN,
    Measured,
    Servers,
    generator,
    load,
    requests_at,
    row,
    servers,
)
from bench.common import free_port
from bench.report import Section
from bench.soakkit import Child, wait_ok

PINNED = "1.102.4"
VENV = "/tmp/litellm-venv"  # noqa: S108 - only named in the install hint
INSTALL = (
    f"python3 -m venv {VENV} && {VENV}/bin/pip install 'litellm[proxy]=={PINNED}'"
    f"  (then: --litellm-bin {VENV}/bin/litellm)"
)
OVERHEAD = "x-litellm-overhead-duration-ms"
START_TIMEOUT = 120.0  # seconds; the proxy imports a lot before it listens
CONFIG = """\
model_list:
  - model_name: support
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: {api_base}
      api_key: bench
litellm_settings:
  telemetry: false
"""
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(name)s %(levelname)s %(message)s"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "uvicorn": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
        "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
    },
}


def locate(binary: str | None) -> tuple[str, str]:
    """(the ``litellm`` executable, its version), or exit saying how to install it."""
    found = shutil.which(binary or "litellm")
    if found is None:
        where = f"{binary!r} is not an executable" if binary else "no `litellm` on PATH"
        raise SystemExit(
            f"--with-litellm needs LiteLLM's proxy {PINNED}, run from its own virtualenv, and "
            f"{where}. Install it (nothing is installed at bench time) with:\n  {INSTALL}"
        )
    version = _version(Path(found))
    if version is None:
        raise SystemExit(
            f"{found} does not run as LiteLLM's proxy (its `--version` failed). Install "
            f"LiteLLM {PINNED} with:\n  {INSTALL}"
        )
    return found, version


def _version(binary: Path) -> str | None:
    python = binary.parent / "python"
    probe = "import importlib.metadata as m; print(m.version('litellm'))"
    argv = [str(python), "-c", probe] if python.exists() else [str(binary), "--version"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    words = done.stdout.strip().split()
    return words[-1] if words else None


LABEL = "LiteLLM proxy"
"""The scenario's label in the chat bench's figures."""


@contextmanager
def proxy(root: Path, binary: str, urls: Servers) -> Iterator[str]:
    """A LiteLLM proxy on ``urls``' upstream for as long as the block runs: its chat URL."""
    port = free_port()
    (root / "litellm.yaml").write_text(CONFIG.format(api_base=urls.upstream))
    (root / "logging.json").write_text(json.dumps(LOGGING))
    argv = ["env", "-u", "DATABASE_URL", binary, "--config", str(root / "litellm.yaml")]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"]
    argv += ["--telemetry", "False", "--log_config", str(root / "logging.json")]
    env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"}
    child = Child("litellm", argv, env=env, log=root / "litellm.log")
    try:
        wait_ok(f"http://127.0.0.1:{port}/health/liveliness", child, timeout=START_TIMEOUT)
        yield f"http://127.0.0.1:{port}/v1/chat/completions"
    finally:
        child.stop()


def run(*, requests: int, seconds: float, binary: str, version: str) -> Section:
    """samops and LiteLLM side by side on the plain answer (the ``litellm`` scenario)."""
    measured = Measured()
    with tempfile.TemporaryDirectory(prefix="samops-bench-") as folder, ExitStack() as stack:
        urls = stack.enter_context(servers(Path(folder)))
        litellm = stack.enter_context(proxy(Path(folder), binary, urls))
        body = {"model": "support", "messages": [PLAIN]}
        direct = {"model": "gpt-4o-mini", "messages": [PLAIN]}
        for concurrency in CONCURRENCY:
            count = requests_at(concurrency, requests)
            for label, url, sent, header in (
                (DIRECT, urls.direct, direct, "x-samops-overhead-ms"),
                (NO_LIMITS, urls.openai, body, "x-samops-overhead-ms"),
                (LABEL, litellm, body, OVERHEAD),
            ):
                measured.figures[1, label, concurrency] = load(
                    url,
                    sent,
                    concurrency=concurrency,
                    requests=count,
                    seconds=seconds,
                    header=header,
                )
    rows = [row(measured, 1, label, c, f) for (_, label, c), f in measured.figures.items()]
    return Section(
        "litellm",
        f"Chat: samops and LiteLLM {version} side by side",
        "The same plain request through samops (the client without limits) and through a "
        "LiteLLM proxy (its own virtualenv, one worker, no database, access logs off) in front "
        f"of the same scripted upstream, load from {generator()}. Overhead: each server's own "
        f"header (`x-samops-overhead-ms`, `{OVERHEAD}`). Ratios against the direct call at the "
        "same concurrency.",
        COLUMNS,
        rows,
        [f"LiteLLM pinned at {PINNED}; this run used {version} ({binary})."],
    )
