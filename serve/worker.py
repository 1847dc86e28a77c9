"""A worker process of ``samops run --workers N`` or ``samops serve --workers N``.

Serve stage: ``python -m serve.worker``, started and supervised by the primary process
(``serve/workers.py``), never by hand. It reads its settings from ``SAMOPS_WORKER`` and serves
chat on the primary's port from the shared database, without reconciling.
"""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry

from reconciler.api import configure_logging, setting
from reconciler.store.db import DatabaseError, open_database
from serve import logctx
from serve.server import run_server, serve_until_stopped
from serve.workers import CONFIG_VARIABLE, WorkerConfig


class _WorkerField(logging.Filter):
    """Adds ``worker=N`` to every log line of this process."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker = self.index
        return True


def main() -> None:
    config = WorkerConfig.from_json(
        setting(CONFIG_VARIABLE) or "", webhook_secret=setting("SAMOPS_WEBHOOK_SECRET")
    )
    options = config.options
    configure_logging(options.log_format, options.log_level)
    logctx.install()
    for handler in logging.getLogger().handlers:
        handler.addFilter(_WorkerField(config.index))
    try:
        engine = open_database(setting("SAMOPS_DATABASE_URL"))
    except DatabaseError as exc:
        raise SystemExit(f"samops worker {config.index}: {exc}") from exc
    run_server(
        serve_until_stopped(
            engine=engine,
            registry=CollectorRegistry(),
            options=options,
            describe=f"worker {config.index}",
            worker=config,
        ),
        engine,
    )


if __name__ == "__main__":
    main()
