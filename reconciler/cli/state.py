"""``samops status``, ``get``, ``describe``, ``suspend``, ``resume``, ``reconcile`` and ``db``:
the commands that read the database or send the daemon a request through it.

None of them creates a database, a data folder or a table (``existing_database``); only
``db upgrade`` (here), ``apply``, ``run`` and ``serve`` do.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TypeVar

import click
from sqlalchemy import Engine

from reconciler import report
from reconciler.cli.common import (
    KIND_CHOICE,
    database_options,
    dump_yaml,
    existing_database,
    fail,
    kind_name,
    output_option,
    source_option,
)
from reconciler.errors import DescribeError
from reconciler.leader import leader_present
from reconciler.sam.base import normalise_name
from reconciler.store.control import request_reconcile, set_suspended
from reconciler.store.db import (
    DatabaseError,
    create_database_engine,
    default_database_url,
    redacted,
    translated_errors,
    upgrade,
)
from reconciler.store.status import status_document

T = TypeVar("T")


@click.command()
@database_options
@output_option(["text", "json", "yaml"], "text", "json keys are documented in docs/cli.md.")
@click.option(
    "--history",
    default=5,
    show_default=True,
    type=click.IntRange(0, 1000),
    help="How many recent syncs to list.",
)
def status(database_url: str | None, output_format: str, history: int) -> None:
    """Show the applied and attempted revisions, the generation and recent syncs.

    \b
    Examples:
      samops status
      samops status -o json --history 20
    """
    document = _guarded(lambda engine: status_document(engine, history=history), database_url)
    if output_format == "json":
        click.echo(json.dumps(document, indent=2))
    elif output_format == "yaml":
        click.echo(dump_yaml(document), nl=False)
    else:
        click.echo(report.status_text(document))


@click.command("get")
@database_options
@click.argument("kind", type=KIND_CHOICE, metavar="KIND")
@click.argument("name", required=False)
@output_option(
    ["table", "wide", "json", "yaml", "text"],
    "table",
    "table: a line per resource; wide: with version, description and file; json and yaml: "
    "the resources as SAM manifests (yaml: one document each, ready to re-apply). text is "
    "table. (--format is an alias.)",
)
def get_command(database_url: str | None, kind: str, name: str | None, output_format: str) -> None:
    """List the resources of KIND in the database, or the one named NAME.

    \b
    Examples:
      samops get llmclient
      samops get llmclient support -o yaml
      samops get plugin -o wide
      samops get secret -o json
    """
    kind = kind_name(kind)
    wanted = normalise_name(name) if name is not None else None
    try:
        if output_format in ("json", "yaml"):
            manifests = _guarded(lambda e: report.manifests(e, kind, wanted), database_url)
            shown = manifests[0] if wanted is not None else manifests
            if output_format == "json":
                click.echo(json.dumps(shown, indent=2))
            elif wanted is not None:
                click.echo(dump_yaml(shown), nl=False)
            else:
                click.echo("---\n".join(dump_yaml(m) for m in manifests), nl=False)
            return
        wide = output_format == "wide"
        headings, rows = _guarded(
            lambda e: report.get_table(e, kind, wanted, wide=wide), database_url
        )
    except DescribeError as exc:
        fail(str(exc))
    click.echo(report.table(headings, rows))


@click.command()
@database_options
@click.argument("kind", type=KIND_CHOICE, metavar="KIND")
@click.argument("name")
@output_option(["yaml", "json"], "yaml")
def describe(database_url: str | None, kind: str, name: str, output_format: str) -> None:
    """Print one resource as SAM; it re-applies as an empty plan.

    \b
    Examples:
      samops describe LLMClient support
      samops describe llmclient support -o json
    """
    try:
        manifest = _guarded(
            lambda e: report.describe(e, kind_name(kind), normalise_name(name)), database_url
        )
    except DescribeError as exc:
        fail(str(exc))
    if output_format == "json":
        click.echo(json.dumps(manifest, indent=2))
    else:
        click.echo(dump_yaml(manifest), nl=False)


@click.command()
@database_options
@source_option
@click.option("--reason", help="Shown in status while suspended.")
def suspend(database_url: str | None, source_name: str, reason: str | None) -> None:
    """Stop the daemon from applying new revisions (persisted; see `samops resume`).

    Serving goes on from the last applied revision; commits still arrive and are applied, in
    their latest state, on resume. Says whether a daemon follows this database right now.

    \b
    Example:
      samops suspend --reason "incident 4711: freeze"
    """
    engine = existing_database(database_url)
    _guarded_on(engine, database_url, lambda: set_suspended(engine, True, reason))
    click.echo("suspended: the daemon applies nothing until 'samops resume'")
    click.echo(_who_acts(engine, database_url, source_name, "stays suspended"))


@click.command()
@database_options
@source_option
def resume(database_url: str | None, source_name: str) -> None:
    """Let the daemon apply again; it reconciles at once.

    \b
    Example:
      samops resume
    """
    engine = existing_database(database_url)
    _guarded_on(engine, database_url, lambda: set_suspended(engine, False))
    _guarded_on(engine, database_url, lambda: request_reconcile(engine))
    click.echo("resumed")
    click.echo(_who_acts(engine, database_url, source_name, "applies the newest revision"))


@click.command()
@database_options
@source_option
def reconcile(database_url: str | None, source_name: str) -> None:
    """Ask the running daemon for a pass now (and a fetch, for a remote repository).

    \b
    Example:
      samops reconcile
    """
    engine = existing_database(database_url)
    requested = _guarded_on(engine, database_url, lambda: request_reconcile(engine))
    click.echo(f"reconcile requested at {requested.isoformat()}")
    click.echo(_who_acts(engine, database_url, source_name, "runs a pass"))


def _who_acts(engine: Engine, database_url: str | None, source_name: str, action: str) -> str:
    """Whether anyone will act on a request: a daemon leads ``source_name`` on this database."""
    if _guarded_on(engine, database_url, lambda: leader_present(engine, source_name)):
        return f"a daemon follows this database (source {source_name!r}) and {action} shortly."
    return (
        f"no daemon follows this database (source {source_name!r}) right now: the request "
        "waits until one starts (samops run)."
    )


def _guarded(read: Callable[[Engine], T], database_url: str | None) -> T:
    engine = existing_database(database_url)
    try:
        return _guarded_on(engine, database_url, lambda: read(engine))
    finally:
        engine.dispose()


def _guarded_on(engine: Engine, database_url: str | None, work: Callable[[], T]) -> T:
    try:
        with translated_errors(database_url or default_database_url()):
            return work()
    except DatabaseError as exc:
        fail(str(exc))


@click.group()
def db() -> None:
    """Database schema maintenance.

    \b
    Example:
      samops db upgrade
    """


@db.command("upgrade")
@database_options
def db_upgrade(database_url: str | None) -> None:
    """Create the schema, or apply pending migrations (apply, run and serve do this at start).

    \b
    Example:
      samops db upgrade --database-url sqlite:///data/samops.sqlite3
    """
    url = database_url or default_database_url()
    try:
        with translated_errors(url):
            upgrade(create_database_engine(url))
    except DatabaseError as exc:
        fail(str(exc))
    click.echo(f"{redacted(url)}: schema up to date")
