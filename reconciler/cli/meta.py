"""``samops version`` and ``samops completion``: about samops itself."""

from __future__ import annotations

import json
import platform
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from typing import Any

import click
from click.shell_completion import get_completion_class

from reconciler.cli.common import database_options, dump_yaml, output_option
from reconciler.store.db import (
    DatabaseError,
    default_database_url,
    head_revision,
    open_existing_database,
    redacted,
    schema_revision,
    translated_errors,
)

LIBRARIES = (
    "pydantic",
    "PyYAML",
    "GitPython",
    "SQLAlchemy",
    "alembic",
    "psycopg",
    "aiohttp",
    "openai",
    "click",
    "watchdog",
)


def _installed(name: str) -> str | None:
    try:
        return package_version(name)
    except PackageNotFoundError:
        return None


def _database(database_url: str | None) -> dict[str, Any]:
    """The database's schema revision, read only if the database exists; never created."""
    url = database_url or default_database_url()
    found: dict[str, Any] = {"url": redacted(url), "expectedSchemaRevision": head_revision()}
    try:
        engine = open_existing_database(url)
    except DatabaseError as exc:
        return {**found, "schemaRevision": None, "problem": str(exc)}
    try:
        with translated_errors(url):
            return {**found, "schemaRevision": schema_revision(engine)}
    except DatabaseError as exc:
        return {**found, "schemaRevision": None, "problem": str(exc)}
    finally:
        engine.dispose()


@click.command()
@database_options
@output_option(["text", "json", "yaml"], "text")
def version(database_url: str | None, output_format: str) -> None:
    """Print the versions of samops, Python and its key libraries, and the database schema
    revision this samops expects beside the one the database has (read only, never created).

    \b
    Examples:
      samops version
      samops version -o json
    """
    document: dict[str, Any] = {
        "samops": _installed("samops"),
        "python": platform.python_version(),
        "libraries": {name: _installed(name) for name in LIBRARIES},
        "database": _database(database_url),
    }
    if output_format == "json":
        click.echo(json.dumps(document, indent=2))
        return
    if output_format == "yaml":
        click.echo(dump_yaml(document), nl=False)
        return
    database = document["database"]
    lines = [f"samops {document['samops']} (Python {document['python']})"]
    lines += [
        f"  {name} {found or 'not installed'}" for name, found in document["libraries"].items()
    ]
    lines.append(f"database: {database['url']}")
    lines.append(
        f"  schema revision {database['schemaRevision'] or '-'} "
        f"(this samops expects {database['expectedSchemaRevision']})"
    )
    if "problem" in database:
        lines.append(f"  {database['problem']}")
    click.echo("\n".join(lines))


@click.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script for SHELL (commands, options, kinds, formats).

    \b
    Examples:
      samops completion bash > ~/.samops-completion.bash   # then: . ~/.samops-completion.bash
      samops completion zsh > "${fpath[1]:-$HOME}/_samops"
      mkdir -p ~/.config/fish/completions   # once, for fish's folder, then:
      samops completion fish > ~/.config/fish/completions/samops.fish

    To load it in the current bash session: eval "$(samops completion bash)".
    """
    root = click.get_current_context().find_root().command
    completer = get_completion_class(shell)
    assert completer is not None
    click.echo(completer(root, {}, "samops", "_SAMOPS_COMPLETE").source())
