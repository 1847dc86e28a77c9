"""``samops run`` and ``samops serve``: parse, build the parts, hand them to the server.

Entry points. The commands reach the ``samops`` CLI through a package entry point
(``samops.commands``), so ``reconciler`` never imports this package. The lifecycle itself is
``serve/server.py``'s.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import click
from prometheus_client import CollectorRegistry

from reconciler.api import (
    PLAINTEXT_SECRETS_OPTION,
    SUBPATH_OPTION,
    WHOLE_PASS_CHILD_FILES,
    Daemon,
    DaemonSettings,
    OutboundSettingsError,
    ReconcilerMetrics,
    configure_logging,
    database_options,
    env_option,
    fail,
    leader_lock_for,
    outbound_targets,
    source_option,
    start_child_server,
    unknown_variables,
)
from reconciler.errors import SourceError
from reconciler.sam.load import LoadOptions
from reconciler.sam.secret_access import SecretAccess
from reconciler.store.db import (
    DatabaseError,
    default_data_dir,
    open_database,
)
from serve import logctx
from serve.cli_options import server_options
from serve.server import choose_follower, run_server, serve_until_stopped
from serve.settings import FollowerSpec, ServerOptions
from serve.workers import (
    enable_shared_metrics,
)

log = logging.getLogger("samops.run")


@click.command()
@click.argument("path", required=False, type=click.Path(path_type=Path))
@env_option(
    "--repo",
    type=click.Path(path_type=Path),
    help="Follow this local git repository (watched for commits).",
)
@env_option(
    "--url",
    help="Follow a remote repository: samops keeps its own clone in the data "
    "directory and fetches on a timer and on webhooks.",
)
@env_option("--ref", default="HEAD", help="The ref to follow (with --url: the branch).")
@SUBPATH_OPTION
@database_options
@source_option
@server_options
@env_option("--webhook-secret", help="Enables POST /hooks/git; deliveries must be signed with it.")
@env_option(
    "--poll-interval",
    default=60.0,
    type=click.FloatRange(min=1),
    help="Seconds between fetches of a remote repository (jittered 10%).",
)
@PLAINTEXT_SECRETS_OPTION
@click.option("--allow-empty", is_flag=True, help="Allow a revision that deletes every LLM client.")
@click.option(
    "--demo", is_flag=True, help="Also serve the example manifests' demo API (make run uses this)."
)
def run(
    path: Path | None,
    repo: Path | None,
    url: str | None,
    ref: str,
    subpath: str,
    database_url: str | None,
    source_name: str,
    server: ServerOptions,
    webhook_secret: str | None,
    poll_interval: float,
    allow_plaintext_secrets: bool,
    allow_empty: bool,
    demo: bool,
) -> None:
    """Follow a repository and serve chat: every commit is validated and applied at once.

    PATH is a directory of manifests; --repo follows a local git repository (a commit, merge,
    reset or checkout that moves --ref is applied at once); --url follows a remote one.
    Invalid commits are recorded and change nothing; the last good state keeps serving.

    \b
    Examples:
      samops run --repo . --path manifests
      samops run --url https://git.example.com/team/bots.git --ref main --webhook-secret "$S"
    """
    start_process(server)
    follower = choose_follower(path, repo, url, ref, subpath, default_data_dir())
    try:
        if not follower.remote:  # fail now, clearly, on a wrong path or ref
            listed = follower.read(lambda _path, _blob: True)  # git: listed, not read
            if len(listed.files) >= WHOLE_PASS_CHILD_FILES:
                start_child_server()  # its import overlaps the start-up (whole.py)
        outbound_targets(url, reconciles=True)  # a wrong setting fails now, clearly
        engine = open_database(database_url)
    except (DatabaseError, SourceError, OutboundSettingsError) as exc:
        fail(str(exc))
    registry = CollectorRegistry()
    daemon = Daemon(
        engine=engine,
        follower=follower,
        leader=leader_lock_for(engine, source_name),
        metrics=ReconcilerMetrics(registry),
        settings=DaemonSettings(
            source_name=source_name,
            poll_interval_seconds=poll_interval,
            allow_empty=allow_empty,
            whole_pass_child_files=WHOLE_PASS_CHILD_FILES,
            load_options=LoadOptions(
                allow_plaintext_secrets=allow_plaintext_secrets,
                secret_access=SecretAccess.if_configured(),
            ),
        ),
    )
    spec = FollowerSpec(str(path) if path else None, str(repo) if repo else None, url, ref, subpath)
    options = dataclasses.replace(
        server,
        webhook_secret=webhook_secret,
        demo=demo,
        follower=spec,
        allow_plaintext_secrets=allow_plaintext_secrets,
    )
    run_server(
        serve_until_stopped(
            engine=engine,
            registry=registry,
            options=options,
            describe=f"following {follower.describe()}",
            daemon=daemon,
        ),
        engine,
    )


@click.command()
@database_options
@server_options
def serve(database_url: str | None, server: ServerOptions) -> None:
    """Serve chat from a shared database, without reconciling (a replica).

    Run any number of these behind a load balancer, next to one or more `samops run` on the
    same PostgreSQL database; each follows the applied generation within moments.

    \b
    Examples:
      samops serve --database-url postgresql://samops@db.internal/samops --port 8081
      samops serve --database-url postgresql://samops@db.internal/samops --workers 2
    """
    start_process(server)
    try:
        outbound_targets(None, reconciles=False)  # a wrong setting fails now, clearly
        engine = open_database(database_url)
    except (DatabaseError, OutboundSettingsError) as exc:
        fail(str(exc))
    run_server(
        serve_until_stopped(
            engine=engine,
            registry=CollectorRegistry(),
            options=server,
            describe="serve-only replica",
        ),
        engine,
    )


def report_unknown_settings() -> None:
    """A ``SAMOPS_*`` variable that samops does not read is said at start-up (a typo would
    otherwise leave a setting silently at its default)."""
    for sentence in unknown_variables(os.environ):
        log.warning(sentence)


def start_process(server: ServerOptions) -> None:
    """What every serving process does first: logging as asked, unknown settings said, the
    request id in every log line, metrics shared when there are workers."""
    configure_logging(server.log_format, server.log_level)
    report_unknown_settings()
    logctx.install()
    if server.workers > 1:
        enable_shared_metrics()
