"""``--workers N``: N server processes sharing one port, supervised by the first.

Serve stage, wired by the composition root (``serve/main.py``). One event loop is one core:
under chat load the server process is CPU-bound while the machine has cores to spare (most of
a chat turn's CPU is the ``openai`` SDK's work per call). With ``--workers N`` the process the
user started, the *primary*, listens with ``SO_REUSEPORT`` and starts N-1 *workers*: serve-only
processes (what ``samops serve`` runs) on the same host and port and the same database. The
kernel spreads new connections among them. The layout is gunicorn's and uvicorn's, with what a
GitOps server adds:

- Only the primary reconciles. Workers follow the applied generation from the database like any
  replica: PostgreSQL LISTEN/NOTIFY, or a 0.2 s poll on SQLite.
- A signed webhook that lands on a worker wakes the primary's reconciler (``SIGUSR1``).
- ``/metrics`` on any process shows the whole group: prometheus_client's multiprocess mode, in a
  private folder made at start and removed at exit. Counters and histograms are summed;
  ``samops_served_generation`` is the lowest generation a live process serves.
- A worker that dies is started again (after 1 s, longer if it keeps dying); workers stop when
  the primary does, and exit by themselves if it disappears.
- Settings reach a worker as a JSON document in ``SAMOPS_WORKER``; the database URL and the
  webhook secret travel in their usual environment variables, never on a command line (which
  ``ps`` shows to everyone).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from serve.settings import ServerOptions

log = logging.getLogger("samops.workers")
CONFIG_VARIABLE = "SAMOPS_WORKER"
METRICS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
WAKE_SIGNAL = signal.SIGUSR1
"""What a worker sends the primary when a webhook asks for a fetch."""


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """Everything a worker needs that is not a secret (see the module docstring)."""

    index: int
    primary_pid: int
    options: ServerOptions
    """The primary's, with the port it bound; its webhook secret travels apart."""
    offline_upstream_url: str | None = None
    """The primary's offline upstream, shared instead of one per worker."""
    ready_fd: int | None = None
    """A pipe to the primary: the worker writes one byte to it once it listens."""

    def to_json(self) -> str:
        return json.dumps(asdict(self) | {"options": self.options.to_data()})

    @classmethod
    def from_json(cls, text: str, *, webhook_secret: str | None = None) -> WorkerConfig:
        data: dict[str, Any] = json.loads(text)
        options = ServerOptions.from_data(data["options"], webhook_secret=webhook_secret)
        return cls(**data | {"options": options})


def enable_shared_metrics() -> Path:
    """Switch this process's metrics to prometheus_client's multiprocess mode, in a new private
    folder that the workers inherit and that goes when this process exits, however it exits
    short of SIGKILL. Call before any metric is created."""
    from prometheus_client import values

    folder = Path(tempfile.mkdtemp(prefix="samops-metrics-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    os.environ[METRICS_VARIABLE] = str(folder)
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    return folder


def shared_metrics_folder() -> Path | None:
    folder = os.environ.get(METRICS_VARIABLE)
    return Path(folder) if folder else None


def _forget_metrics_of(pid: int) -> None:
    folder = shared_metrics_folder()
    if folder is not None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, str(folder))  # type: ignore[no-untyped-call]


@dataclass
class _Worker:
    config: WorkerConfig
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restart_delay: float = 1.0
    restart_at: float | None = None
    listened: bool = False
    """Whether it has listened at least once (see ``WorkerGroup.listening``)."""


class WorkerGroup:
    """The primary's workers: started, restarted when they die, stopped with the primary."""

    RESTART_DELAY = 1.0
    MAX_RESTART_DELAY = 30.0
    STEADY_SECONDS = 10.0
    """A worker that lived this long restarts after the base delay again."""

    def __init__(self, configs: list[WorkerConfig], environment: dict[str, str]) -> None:
        self._workers = [_Worker(config) for config in configs]
        self._environment = environment
        self.restarts = 0

    @property
    def listening(self) -> bool:
        """Whether every worker has listened once. Until then the primary is not ready: a
        client that connected now would keep all its connections on the primary."""
        return all(w.listened for w in self._workers)

    @property
    def pids(self) -> list[int]:
        return [w.process.pid for w in self._workers if w.process and w.process.poll() is None]

    def start(self) -> None:
        for worker in self._workers:
            self._spawn(worker)

    def _spawn(self, worker: _Worker) -> None:
        read_end, write_end = os.pipe()
        config = replace(worker.config, ready_fd=write_end)
        env = {**os.environ, **self._environment, CONFIG_VARIABLE: config.to_json()}
        try:
            worker.process = subprocess.Popen(
                [sys.executable, "-m", "serve.worker"], env=env, pass_fds=(write_end,)
            )
        finally:
            os.close(write_end)
        loop = asyncio.get_running_loop()

        def heard() -> None:
            loop.remove_reader(read_end)
            if os.read(read_end, 1):  # empty: the worker exited before it listened
                worker.listened = True
            os.close(read_end)

        loop.add_reader(read_end, heard)
        worker.started_at = time.monotonic()
        worker.restart_at = None
        log.info("worker started", extra={"worker": worker.config.index, "pid": worker.process.pid})

    async def supervise(self, stop: asyncio.Event) -> None:
        """Start dead workers again until ``stop``; never returns otherwise."""
        while not stop.is_set():
            now = time.monotonic()
            for worker in self._workers:
                process = worker.process
                if process is None or process.poll() is None:
                    continue
                if worker.restart_at is None:
                    lived = now - worker.started_at
                    worker.restart_delay = (
                        self.RESTART_DELAY
                        if lived >= self.STEADY_SECONDS
                        else min(worker.restart_delay * 2, self.MAX_RESTART_DELAY)
                    )
                    worker.restart_at = now + worker.restart_delay
                    _forget_metrics_of(process.pid)
                    log.warning(
                        "worker exited; starting it again",
                        extra={
                            "worker": worker.config.index,
                            "exit_code": process.returncode,
                            "in_seconds": round(worker.restart_delay, 1),
                        },
                    )
                elif now >= worker.restart_at:
                    self.restarts += 1
                    self._spawn(worker)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.2)

    async def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM every worker (they finish their requests and write queued sessions), then
        SIGKILL what is left after ``timeout`` seconds."""
        running = [w.process for w in self._workers if w.process and w.process.poll() is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while any(p.poll() is None for p in running) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for process in running:
            if process.poll() is None:
                log.warning("worker did not stop in time; killing it", extra={"pid": process.pid})
                process.kill()
                await asyncio.to_thread(process.wait)
            _forget_metrics_of(process.pid)


async def watch_primary(primary_pid: int, stop: asyncio.Event) -> None:
    """In a worker: stop when the primary is gone (then the worker's parent changes)."""
    while not stop.is_set():
        if os.getppid() != primary_pid:
            log.warning("the primary process is gone; this worker stops")
            stop.set()
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=0.5)


def tell_primary_listening(config: WorkerConfig) -> None:
    """In a worker: the site listens (see ``WorkerGroup.listening``)."""
    if config.ready_fd is not None:
        with contextlib.suppress(OSError):
            os.write(config.ready_fd, b"1")
            os.close(config.ready_fd)


def wake_primary(primary_pid: int) -> None:
    """In a worker: ask the primary's reconciler to fetch now (a webhook landed here)."""
    try:
        os.kill(primary_pid, WAKE_SIGNAL)
    except ProcessLookupError:
        log.warning("cannot wake the reconciler: the primary process is gone")
