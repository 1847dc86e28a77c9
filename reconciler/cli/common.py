"""What every ``samops`` command shares: exit codes, options, the failure sentence, reading a
revision, opening the database (for reading, or as its owner) and progress on a terminal.

Options follow one scheme: a flag per value, an environment variable ``SAMOPS_<FLAG>`` for those
that name a source, a database or a policy, and ``-o/--output`` (alias ``--format``) wherever
output is data.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import click
import yaml
from sqlalchemy import Engine

from reconciler.apply import DEFAULT_SOURCE
from reconciler.progress import Progress
from reconciler.sam.base import NAME_MAX_CHARS, NAME_PATTERN, normalise_name
from reconciler.sam.diagnostics import Diagnostic
from reconciler.sam.kinds import KINDS
from reconciler.sam.load import LoadOptions
from reconciler.sam.render import as_text
from reconciler.sam.revision import Revision
from reconciler.sam.secret_access import SecretAccess
from reconciler.source import DirectorySource, FileSource, GitSource, SourceError, validate_source
from reconciler.store.db import DatabaseError, open_database, open_existing_database

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_CHANGES = 2  # plan --detailed-exitcode only
EXIT_RISK = 3  # plan --base ... --fail-on only


def fail(message: str) -> NoReturn:
    """Print ``error: message`` on standard error and exit 1."""
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_FAILED)


def dump_yaml(document: Any) -> str:
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)


def output_option(choices: list[str], default: str, help: str = "") -> Callable[[Any], Any]:
    """``-o/--output FORMAT``, with ``--format`` kept as an alias."""
    return click.option(
        "-o",
        "--output",
        "--format",
        "output_format",
        type=click.Choice(choices),
        default=default,
        show_default=True,
        help=help or "Output format (--format is an alias).",
    )


def env_option(*decls: str, help: str, **attrs: Any) -> Callable[[Any], Any]:
    """A ``--flag`` that ``SAMOPS_<FLAG>`` (or the ``envvar`` given) may also set, named at the
    end of its help; a default is shown unless it is empty or the option is a flag."""
    flag = next(d for d in decls if d.startswith("--"))
    envvar = attrs.pop("envvar", "SAMOPS_" + flag.removeprefix("--").upper().replace("-", "_"))
    shown = attrs.get("default") not in (None, "") and not attrs.get("is_flag")
    attrs.setdefault("show_default", shown)
    return click.option(*decls, envvar=envvar, help=f"{help} [env: {envvar}]".lstrip(), **attrs)


SUBPATH_OPTION = env_option(
    "--path",
    "subpath",
    default="",
    help="Folder inside the repository holding the manifests (default: all of it).",
)
PLAINTEXT_SECRETS_OPTION = env_option(
    "--allow-plaintext-secrets",
    is_flag=True,
    help="Accept Secret values written in plaintext (a warning instead of an error).",
)


def source_options(command: Any) -> Any:
    """PATH / --repo --ref --path, and the validation policy, shared by every command that
    reads a revision; handed to the command as one ``source: SourceArgs``."""
    options = [
        click.argument("path", required=False, type=click.Path(path_type=Path)),
        env_option(
            "--repo",
            type=click.Path(path_type=Path),
            help="Read from this git repository's objects instead of a directory.",
        ),
        env_option("--ref", default="HEAD", help="Commit, branch or tag to read with --repo."),
        SUBPATH_OPTION,
        PLAINTEXT_SECRETS_OPTION,
    ]

    @functools.wraps(command)
    def with_source(
        *args: Any,
        path: Path | None,
        repo: Path | None,
        ref: str,
        subpath: str,
        allow_plaintext_secrets: bool,
        **kwargs: Any,
    ) -> Any:
        source = SourceArgs(path, repo, ref, subpath, allow_plaintext_secrets)
        return command(*args, source=source, **kwargs)

    wrapped: Any = with_source
    for option in reversed(options):
        wrapped = option(wrapped)
    return wrapped


@dataclass(frozen=True, slots=True)
class SourceArgs:
    """What a command was told to read: PATH, or --repo at --ref under --path; the policy."""

    path: Path | None
    repo: Path | None
    ref: str
    subpath: str
    allow_plaintext_secrets: bool


def database_options(command: Any) -> Any:
    """--database-url, shared by every command that touches state."""
    return env_option(
        "--database-url",
        help="SQLAlchemy URL, e.g. postgresql://user@host/db (default: a SQLite file in "
        "$SAMOPS_DATA_DIR, default ./data).",
    )(command)


def source_option(command: Any) -> Any:
    """--source-name, for the commands that act for one source (plan, apply, run and the
    requests to its daemon)."""
    return env_option(
        "--source-name",
        envvar="SAMOPS_SOURCE",
        default=DEFAULT_SOURCE,
        help="Name of this manifest source; apply only ever prunes rows of this source, and "
        "a daemon leads per source.",
    )(command)


def existing_database(database_url: str | None) -> Engine:
    """The database for commands that read it (or only send the daemon a request): it must
    exist with a current schema; nothing is created or migrated."""
    try:
        return open_existing_database(database_url)
    except DatabaseError as exc:
        fail(str(exc))


def owned_database(database_url: str | None) -> Engine:
    """The database for commands that own it (``apply``): created and migrated if needed."""
    try:
        return open_database(database_url)
    except DatabaseError as exc:
        fail(str(exc))


def read_revision(
    args: SourceArgs,
    *,
    one_file: bool = False,
    progress: Progress | None = None,
) -> Revision:
    """The validated revision the options name; a single file PATH only when ``one_file``
    (``validate``: a file is checked alone; plan and apply need a whole revision)."""
    if args.path is not None and args.repo is not None:
        raise click.UsageError("give either PATH or --repo, not both")
    if args.repo is None and (args.ref != "HEAD" or args.subpath):
        raise click.UsageError(
            "--ref and --path read a git repository: add --repo (e.g. --repo .), or give the "
            "folder as PATH"
        )
    source: DirectorySource | GitSource | FileSource
    if args.repo is not None:
        source = GitSource(args.repo, ref=args.ref, path=args.subpath)
    elif args.path is not None and args.path.is_file():
        if not one_file:
            fail(
                f"{args.path} is a file; this command needs every manifest of a revision (hint: "
                "give the folder, or use 'samops validate' to check one file)"
            )
        source = FileSource(args.path)
    else:
        if args.path is not None and not args.path.exists():
            fail(f"{args.path} does not exist (hint: give the folder that holds the manifests)")
        source = DirectorySource(args.path or Path("."))
    try:
        revision = validate_source(
            source,
            options=LoadOptions(
                allow_plaintext_secrets=args.allow_plaintext_secrets,
                secret_access=SecretAccess.if_configured(),
            ),
            progress=progress,
        )
    except SourceError as exc:
        fail(str(exc))
    given = args.path or Path(".")
    folder = (given.parent if isinstance(source, FileSource) else given).as_posix()
    if args.repo is None and folder != ".":  # show paths that open from here
        revision.diagnostics = [_under(folder, d) for d in revision.diagnostics]
    return revision


def _under(folder: str, diagnostic: Diagnostic) -> Diagnostic:
    """A diagnostic of a directory source (paths relative to it) as seen from the folder
    it was given as."""
    return dataclasses.replace(
        diagnostic,
        file=f"{folder.rstrip('/')}/{diagnostic.file}" if diagnostic.file else "",
        related=tuple(f"{folder.rstrip('/')}/{r}" for r in diagnostic.related),
    )


def exit_unless_valid(revision: Revision) -> None:
    """Print a revision's problems; exit 1 when it has errors."""
    if revision.diagnostics:
        click.echo(as_text(revision), err=True)
    if not revision.valid:
        sys.exit(EXIT_FAILED)


def resource_name(raw: str) -> str:
    name = normalise_name(raw)
    if len(name) > NAME_MAX_CHARS or not re.fullmatch(NAME_PATTERN, name):
        raise click.BadParameter(
            f"{raw!r} is not a valid name (letters, digits, '_', '-', spaces; at most "
            f"{NAME_MAX_CHARS} characters)"
        )
    return name


KIND_CHOICE = click.Choice(list(KINDS), case_sensitive=False)


def kind_name(raw: str) -> str:
    """A KIND argument as the kind is spelled (``llmclient`` -> ``LLMClient``)."""
    return next(k for k in KINDS if k.lower() == raw.lower())


class TerminalProgress:
    """``stage: done/total`` rewritten in place on standard error, at most ten times a second,
    and erased when the work is done. Made only for a person at a terminal (``progress_for``)."""

    INTERVAL_SECONDS = 0.1

    def __init__(self) -> None:
        self._shown_at = 0.0
        self._width = 0

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self._shown_at < self.INTERVAL_SECONDS:
            return
        self._shown_at = now
        line = f"{stage}: {done:,}/{total:,}"
        sys.stderr.write("\r" + line.ljust(self._width))
        sys.stderr.flush()
        self._width = len(line)

    def close(self) -> None:
        if self._width:
            sys.stderr.write("\r" + " " * self._width + "\r")
            sys.stderr.flush()
            self._width = 0


def progress_for(output_format: str) -> TerminalProgress | None:
    """A progress reporter when a person watches (stderr is a terminal, output is not JSON)."""
    if output_format == "json" or not sys.stderr.isatty():
        return None
    return TerminalProgress()
