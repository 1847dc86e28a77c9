"""The ``samops`` command. Thin: each command parses, calls one library function, prints.

The commands live by what they touch: ``revisions`` (validate, schema, plan, apply),
``state`` (status, get, describe, suspend, resume, reconcile, db), ``usage``, ``secrets`` (keys,
secrets), ``meta`` (version, completion); ``common`` holds what they share. ``run``, ``serve``
and ``chat`` come from the ``serve`` package through the ``samops.commands`` entry point, so
that this package never imports it (DESIGN.md).

Exit codes (docs/cli.md): 0 success, 1 invalid input or failure, 2 usage error. With
``plan --detailed-exitcode`` (terraform's contract): 0 no changes, 2 changes, 1 anything else,
usage errors included.
"""

from __future__ import annotations

from importlib.metadata import EntryPoints, entry_points
from typing import Any

import click

from reconciler.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    database_options,
    fail,
)
from reconciler.cli.meta import completion, version
from reconciler.cli.revisions import apply, plan, schema, validate
from reconciler.cli.secrets import keys, secrets
from reconciler.cli.state import db, describe, get_command, reconcile, resume, status, suspend
from reconciler.cli.usage import usage

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "cli", "database_options", "fail", "main"]


DETAILED = "samops.detailed_exitcode"


class SamopsGroup(click.Group):
    """The command group, with terraform's exit-code contract under ``plan
    --detailed-exitcode``: 2 means "changes present" there, so a usage error (a mistyped flag)
    exits 1 instead of 2, whether the group, the command or the command's own checks found it."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        detailed = "plan" in args and "--detailed-exitcode" in args
        try:
            ctx = super().make_context(info_name, list(args), parent, **extra)
        except click.UsageError as exc:
            raise _failure_if(detailed, exc) from exc
        ctx.meta[DETAILED] = detailed
        return ctx

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            raise _failure_if(bool(ctx.meta.get(DETAILED)), exc) from exc

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *(e.name for e in _plugged())})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """A command; one another package plugs in is imported only when it is asked for, so
        ``samops validate`` never loads the server (about a second per run)."""
        command = super().get_command(ctx, cmd_name)
        if command is None:
            entry = next((e for e in _plugged() if e.name == cmd_name), None)
            if entry is not None:
                command = entry.load()
                self.add_command(command, cmd_name)
        return command


def _failure_if(detailed: bool, exc: click.UsageError) -> click.UsageError:
    if detailed:
        exc.exit_code = EXIT_FAILED  # type: ignore[misc]  # click reads it per instance
    return exc


@click.group(
    cls=SamopsGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(package_name="samops")
def cli() -> None:
    """samops: GitOps for LLM clients.

    Keeps LLM clients (chatbots), their plugins, connections, secrets and API keys as SAM
    manifests in git, and makes production follow the repository.

    \b
    Examples:
      samops validate manifests
      samops apply manifests
      samops get llmclient
      samops version -o json

    Exit codes: 0 success, 1 invalid input or failure, 2 usage error (plan
    --detailed-exitcode: 2 means changes, and usage errors are 1).
    """


for command in (
    validate,
    schema,
    plan,
    apply,
    status,
    get_command,
    describe,
    suspend,
    resume,
    reconcile,
    db,
    usage,
    keys,
    secrets,
    version,
    completion,
):
    cli.add_command(command)


def _plugged() -> EntryPoints:
    """The commands other packages declare under the ``samops.commands`` entry point
    (``samops run`` comes from serve); this package never imports them itself."""
    return entry_points(group="samops.commands")


def _plug_in_commands() -> None:
    """Load every plugged-in command now (tests that walk every command's help)."""
    for entry in _plugged():
        if entry.name not in cli.commands:
            cli.add_command(entry.load(), entry.name)


def main() -> None:
    """The ``samops`` entry point; plugged-in commands load when they are invoked."""
    cli(prog_name="samops")
