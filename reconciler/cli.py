"""The ``samops`` command. Thin: each command parses, calls one library function, prints.

Exit codes (documented in docs/cli.md): 0 success, 1 invalid input or failure, 2 usage error.
Options that name a source or a policy can also be set by environment (``SAMOPS_REPO``,
``SAMOPS_REF``, ``SAMOPS_PATH``, ``SAMOPS_ALLOW_PLAINTEXT_SECRETS``...), one scheme for all.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import re
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, NoReturn

import click
import yaml
from sqlalchemy import Engine

from reconciler import apikeys, report, sealing
from reconciler.apply import DEFAULT_SOURCE, ApplyError, ApplyResult, apply_revision, plan_revision
from reconciler.plan import plan_to_json, render_markdown, render_text
from reconciler.review import Level, review_revisions
from reconciler.review_render import (
    DEFAULT_MAX_CHARS,
    render_review_markdown,
    render_review_text,
    review_to_json,
)
from reconciler.sam.base import NAME_MAX_CHARS, NAME_PATTERN, normalise_name
from reconciler.sam.diagnostics import Diagnostic
from reconciler.sam.kinds import KINDS
from reconciler.sam.load import LoadOptions
from reconciler.sam.render import as_json, as_text, dumps
from reconciler.sam.revision import ParseCache, Revision, validate_source
from reconciler.sam.schema import all_kinds_schema, kind_schema
from reconciler.source import DirectorySource, FileSource, GitSource, SourceError
from reconciler.store.control import request_reconcile, set_suspended
from reconciler.store.db import (
    DatabaseError,
    create_database_engine,
    default_database_url,
    open_database,
    redacted,
    translated_errors,
    upgrade,
)
from reconciler.store.status import status_document

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_CHANGES = 2  # plan --detailed-exitcode only
EXIT_RISK = 3  # plan --base ... --fail-on only
FORMATS = click.Choice(["text", "json"])


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_FAILED)


def _dump_yaml(document: dict[str, Any]) -> str:
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)


def source_options(command: Any) -> Any:
    """PATH / --repo --ref --path, and the validation policy, shared by every command that
    reads a revision."""
    options = [
        click.argument("path", required=False, type=click.Path(path_type=Path)),
        click.option(
            "--repo",
            envvar="SAMOPS_REPO",
            type=click.Path(path_type=Path),
            help="Read from this git repository's objects instead of a directory. "
            "[env: SAMOPS_REPO]",
        ),
        click.option(
            "--ref",
            envvar="SAMOPS_REF",
            default="HEAD",
            show_default=True,
            help="Commit, branch or tag to read with --repo. [env: SAMOPS_REF]",
        ),
        click.option(
            "--path",
            "subpath",
            envvar="SAMOPS_PATH",
            default="",
            help="Folder inside the repository holding the manifests (default: all "
            "of it). [env: SAMOPS_PATH]",
        ),
        click.option(
            "--allow-plaintext-secrets",
            is_flag=True,
            envvar="SAMOPS_ALLOW_PLAINTEXT_SECRETS",
            help="Accept Secret values written in plaintext (a warning instead of an "
            "error). [env: SAMOPS_ALLOW_PLAINTEXT_SECRETS]",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def database_options(command: Any) -> Any:
    """--database-url and --source-name, shared by every command that touches state."""
    command = click.option(
        "--source-name",
        envvar="SAMOPS_SOURCE",
        default=DEFAULT_SOURCE,
        show_default=True,
        help="Name of this manifest source; apply only ever prunes rows of this source. "
        "[env: SAMOPS_SOURCE]",
    )(command)
    return click.option(
        "--database-url",
        envvar="SAMOPS_DATABASE_URL",
        help="SQLAlchemy URL, e.g. postgresql://user@host/db (default: a SQLite file in "
        "$SAMOPS_DATA_DIR, default ./data). [env: SAMOPS_DATABASE_URL]",
    )(command)


def _read_revision(
    path: Path | None,
    repo: Path | None,
    ref: str,
    subpath: str,
    allow_plaintext_secrets: bool,
    *,
    one_file: bool = False,
) -> Revision:
    """The validated revision the options name; a single file PATH only when ``one_file``
    (``validate``: a file is checked alone; plan and apply need a whole revision)."""
    if path is not None and repo is not None:
        raise click.UsageError("give either PATH or --repo, not both")
    if repo is None and (ref != "HEAD" or subpath):
        raise click.UsageError(
            "--ref and --path read a git repository: add --repo (e.g. --repo .), or give the "
            "folder as PATH"
        )
    source: DirectorySource | GitSource | FileSource
    if repo is not None:
        source = GitSource(repo, ref=ref, path=subpath)
    elif path is not None and path.is_file():
        if not one_file:
            _fail(
                f"{path} is a file; this command needs every manifest of a revision (hint: give "
                "the folder, or use 'samops validate' to check one file)"
            )
        source = FileSource(path)
    else:
        source = DirectorySource(path or Path("."))
    try:
        revision = validate_source(
            source, options=LoadOptions(allow_plaintext_secrets=allow_plaintext_secrets)
        )
    except SourceError as exc:
        _fail(str(exc))
    given = path or Path(".")
    folder = (given.parent if isinstance(source, FileSource) else given).as_posix()
    if repo is None and folder != ".":  # show paths that open from here
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


def _engine(database_url: str | None) -> Engine:
    try:
        return open_database(database_url)
    except DatabaseError as exc:
        _fail(str(exc))


def _valid_or_exit(revision: Revision) -> None:
    """Print a revision's problems; exit 1 when it has errors."""
    if revision.diagnostics:
        click.echo(as_text(revision), err=True)
    if not revision.valid:
        sys.exit(EXIT_FAILED)


def _resource_name(raw: str) -> str:
    name = normalise_name(raw)
    if len(name) > NAME_MAX_CHARS or not re.fullmatch(NAME_PATTERN, name):
        raise click.BadParameter(
            f"{raw!r} is not a valid name (letters, digits, '_', '-', spaces; at most "
            f"{NAME_MAX_CHARS} characters)"
        )
    return name


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="samops")
def cli() -> None:
    """samops: GitOps for LLM clients.

    Keeps LLM clients (chatbots), their plugins, connections, secrets and API keys as SAM
    manifests in git, and makes production follow the repository.

    Exit codes: 0 success, 1 invalid input or failure, 2 usage error.
    """


@cli.command()
@source_options
@click.option(
    "--format",
    "output_format",
    type=FORMATS,
    default="text",
    show_default=True,
    help="text for people, json for programs (shape in docs/cli.md).",
)
@click.option("--strict", is_flag=True, help="Treat warnings as errors (exit 1).")
def validate(
    path: Path | None,
    repo: Path | None,
    ref: str,
    subpath: str,
    allow_plaintext_secrets: bool,
    output_format: str,
    strict: bool,
) -> None:
    """Check every manifest of a revision and report all problems at once.

    PATH is a directory of manifests (default: the current directory), or one file, checked
    alone (its references to resources in other files are not checked). With --repo, the
    files are read from a git commit (--ref, --path), never from the working tree, so
    uncommitted edits are not seen.

    \b
    Examples:
      samops validate manifests
      samops validate manifests/clients/support.yaml
      samops validate --repo . --ref origin/main --path manifests --format json
    """
    revision = _read_revision(path, repo, ref, subpath, allow_plaintext_secrets, one_file=True)
    if output_format == "json":
        click.echo(dumps(as_json(revision, strict=strict)))
    else:
        click.echo(as_text(revision, strict=strict))
    failed = not revision.valid or (strict and bool(revision.warnings))
    sys.exit(EXIT_FAILED if failed else EXIT_OK)


@cli.command()
@click.argument("kind", required=False, type=click.Choice(list(KINDS), case_sensitive=False))
def schema(kind: str | None) -> None:
    """Print the JSON Schema of one KIND, or of any SAM document.

    Point your editor's YAML plugin at it for completion and checks, e.g. for VS Code's YAML
    extension: `samops schema > sam.schema.json`, then add to a manifest's first line
    `# yaml-language-server: $schema=./sam.schema.json` (see docs/cli.md).
    """
    if kind is not None:
        kind = next(k for k in KINDS if k.lower() == kind.lower())
    document = kind_schema(kind) if kind else all_kinds_schema()
    click.echo(json.dumps(document, indent=2))


@cli.group()
def keys() -> None:
    """Create API keys (SmarterAuthToken) and digests; keys never go into git."""


@keys.command("create")
@click.argument("name")
@click.option(
    "--algorithm",
    type=click.Choice(["sha256", "sha512"]),
    default="sha256",
    show_default=True,
    help="Digest algorithm written in the manifest.",
)
@click.option("--username", help="Informational owner of the key.")
@click.option(
    "--expires-at",
    type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]),
    help="Date (UTC) after which the key is refused.",
)
@click.option("--description", help="metadata.description of the manifest.")
@click.option(
    "--format",
    "output_format",
    type=FORMATS,
    default="text",
    show_default=True,
    help='text: the key on the first line, then the manifest; json: {"key": ..., "manifest": ...}.',
)
def keys_create(
    name: str,
    algorithm: str,
    username: str | None,
    expires_at: dt.datetime | None,
    description: str | None,
    output_format: str,
) -> None:
    """Generate a new API key NAME: print the key once, then its manifest.

    The manifest holds only the key's digest; commit it, and hand the key to the client. The
    key cannot be shown again. To rotate without downtime, add the new key's digest to the
    existing manifest's spec.config.digest list, deploy, then remove the old digest.

    \b
    Example:
      samops keys create support-bot-key > /dev/tty   # or: | tee, then split the lines
    """
    name = _resource_name(name)
    key = apikeys.generate_key()
    manifest = apikeys.token_manifest(
        name,
        [apikeys.digest_of(key, algorithm)],  # type: ignore[arg-type]
        description=description,
        username=username,
        expires_at=expires_at.replace(tzinfo=dt.UTC).isoformat() if expires_at else None,
    )
    if output_format == "json":
        click.echo(json.dumps({"key": key, "manifest": manifest}, indent=2))
    else:
        click.echo(key)
        click.echo(_dump_yaml(manifest), nl=False)
    if sys.stderr.isatty():
        click.echo("note: the key is shown only once; store it now.", err=True)


@keys.command("digest")
@click.option(
    "--algorithm", type=click.Choice(["sha256", "sha512"]), default="sha256", show_default=True
)
def keys_digest(algorithm: str) -> None:
    """Print the digest of a key read from standard input (for rotation and checks)."""
    key = sys.stdin.read().strip()
    if not key:
        _fail("no key on standard input")
    click.echo(apikeys.digest_of(key, algorithm))  # type: ignore[arg-type]


@cli.group()
def secrets() -> None:
    """Seal secret values so they can be committed; only the daemon's key opens them."""


@secrets.command("keygen")
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(path_type=Path),
    help="File to write the private key to (mode 0600; never overwritten).",
)
def secrets_keygen(out: Path) -> None:
    """Create the daemon's key pair: the private key goes to --out, the public key to stdout.

    Give the private key file to the daemon (SAMOPS_SECRETS_PRIVATE_KEY_FILE) and the public
    key to whoever seals secrets (SAMOPS_SECRETS_PUBLIC_KEY); it may be committed.
    """
    public, private = sealing.generate_keypair()
    try:
        descriptor = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        _fail(f"{out} exists; refusing to overwrite a private key")
    except OSError as exc:
        _fail(f"cannot write {out}: {exc.strerror}")
    with os.fdopen(descriptor, "w") as handle:
        handle.write(private + "\n")
    click.echo(public)


@secrets.command("encrypt")
@click.argument("name")
@click.option(
    "--public-key",
    envvar="SAMOPS_SECRETS_PUBLIC_KEY",
    help="The daemon's public key (samops-pk1:...). [env: SAMOPS_SECRETS_PUBLIC_KEY]",
)
@click.option(
    "--public-key-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Read the public key from this file instead.",
)
@click.option("--description", help="metadata.description of the manifest.")
def secrets_encrypt(
    name: str, public_key: str | None, public_key_file: Path | None, description: str | None
) -> None:
    """Read a value from standard input and print a Secret NAME holding it sealed.

    The value is encrypted to the daemon's public key and bound to NAME; only the daemon's
    private key opens it. One trailing newline of the input is dropped.

    \b
    Example:
      printf %s "$DB_PASSWORD" | samops secrets encrypt reporting-db-password > secret.yaml
    """
    name = _resource_name(name)
    if public_key_file is not None:
        public_key = public_key_file.read_text().strip()
    if not public_key:
        raise click.UsageError("give --public-key, --public-key-file or SAMOPS_SECRETS_PUBLIC_KEY")
    stdin = sys.stdin
    value = (
        click.prompt("Secret value", hide_input=True, err=True)
        if stdin.isatty()
        else stdin.read().removesuffix("\n")
    )
    if not value:
        _fail("the secret value is empty")
    try:
        manifest = sealing.sealed_secret_manifest(
            name, value, public_key=public_key, description=description
        )
    except sealing.SealingError as exc:
        _fail(str(exc))
    click.echo(_dump_yaml(manifest), nl=False)


@cli.command()
@source_options
@database_options
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "markdown", "json"]),
    default="text",
    show_default=True,
    help="json is documented in docs/cli.md.",
)
@click.option(
    "--detailed-exitcode",
    is_flag=True,
    help="Exit 0 when there is nothing to change, 2 when there are changes, 1 on "
    "error (like terraform plan).",
)
@click.option(
    "--base",
    metavar="REF",
    help="Review mode: plan from this commit of the repository (--repo, default .) to "
    "--head, with risk flags; no database is read. See docs/review.md.",
)
@click.option(
    "--head",
    metavar="REF",
    help="Review mode: the commit under review (default HEAD; needs --base).",
)
@click.option(
    "--fail-on",
    type=click.Choice(["high", "medium", "low"]),
    help="Review mode: exit 3 when a risk flag of this level or above is raised.",
)
@click.option(
    "--max-chars",
    type=click.IntRange(2000),
    default=DEFAULT_MAX_CHARS,
    show_default=True,
    help="Review mode, markdown: cap on the output's size (GitHub comments hold 65,536).",
)
def plan(
    path: Path | None,
    repo: Path | None,
    ref: str,
    subpath: str,
    allow_plaintext_secrets: bool,
    database_url: str | None,
    source_name: str,
    output_format: str,
    detailed_exitcode: bool,
    base: str | None,
    head: str | None,
    fail_on: Level | None,
    max_chars: int,
) -> None:
    """Show what `samops apply` would change in the database, without changing it.

    With --base (review mode), show instead what merging --head onto --base would change,
    computed between the two commits by the same plan function, with risk flags: the plan for
    a pull request, before it is merged (markdown fits a PR comment).

    \b
    Examples:
      samops plan manifests
      samops plan --repo . --ref main --path manifests --format markdown
      samops plan manifests --detailed-exitcode || echo "drift or error"
      samops plan --base origin/main --head HEAD --path manifests --format markdown
      samops plan --base main --head feature --path manifests --fail-on high
    """
    if base is not None or head is not None or fail_on is not None:
        _review(
            path,
            repo,
            ref,
            subpath,
            allow_plaintext_secrets,
            base=base,
            head=head,
            output_format=output_format,
            fail_on=fail_on,
            detailed_exitcode=detailed_exitcode,
            max_chars=max_chars,
        )
        return
    revision = _read_revision(path, repo, ref, subpath, allow_plaintext_secrets)
    _valid_or_exit(revision)
    engine = _engine(database_url)
    try:
        with translated_errors(database_url or default_database_url()):
            changes = plan_revision(engine, revision, source=source_name)
    except DatabaseError as exc:
        _fail(str(exc))
    if output_format == "json":
        click.echo(json.dumps(plan_to_json(changes, revision=revision.revision), indent=2))
    elif output_format == "markdown":
        click.echo(render_markdown(changes, revision=revision.revision), nl=False)
    else:
        click.echo(render_text(changes, color=sys.stdout.isatty()))
    if detailed_exitcode and not changes.empty:
        sys.exit(EXIT_CHANGES)


def _review(
    path: Path | None,
    repo: Path | None,
    ref: str,
    subpath: str,
    allow_plaintext_secrets: bool,
    *,
    base: str | None,
    head: str | None,
    output_format: str,
    fail_on: Level | None,
    detailed_exitcode: bool,
    max_chars: int,
) -> None:
    """``plan --base --head``: print the review; exit 1 for an invalid head, 3 for a risk
    flag at --fail-on or above, 2 for changes with --detailed-exitcode."""
    if base is None:
        raise click.UsageError("--head and --fail-on review a change: give --base REF too")
    if path is not None:
        raise click.UsageError("review mode reads git commits: use --repo, not PATH")
    if ref != "HEAD":
        raise click.UsageError("review mode takes --base and --head, not --ref")
    options = LoadOptions(allow_plaintext_secrets=allow_plaintext_secrets)
    cache = ParseCache()
    try:
        before, after = (
            validate_source(
                GitSource(repo or Path("."), ref=commit, path=subpath),
                options=options,
                cache=cache,
            )
            for commit in (base, head or "HEAD")
        )
    except SourceError as exc:
        _fail(str(exc))
    result = review_revisions(before, after)
    if output_format == "json":
        click.echo(json.dumps(review_to_json(result), indent=2))
    elif output_format == "markdown":
        click.echo(render_review_markdown(result, max_chars=max_chars), nl=False)
    else:
        click.echo(render_review_text(result, color=sys.stdout.isatty()))
    if not result.head_valid:
        sys.exit(EXIT_FAILED)
    if fail_on is not None and result.flagged(fail_on):
        sys.exit(EXIT_RISK)
    if detailed_exitcode and not result.plan.empty:
        sys.exit(EXIT_CHANGES)


@cli.command()
@source_options
@database_options
@click.option("--dry-run", is_flag=True, help="Print the plan and change nothing.")
@click.option("--allow-empty", is_flag=True, help="Allow a revision that deletes every LLM client.")
@click.option("--format", "output_format", type=FORMATS, default="text", show_default=True)
def apply(
    path: Path | None,
    repo: Path | None,
    ref: str,
    subpath: str,
    allow_plaintext_secrets: bool,
    database_url: str | None,
    source_name: str,
    dry_run: bool,
    allow_empty: bool,
    output_format: str,
) -> None:
    """Make the database equal a revision, in one transaction: all of it or nothing.

    An invalid revision changes nothing (the attempt and its errors are recorded, see
    `samops status`). Applying the same revision again writes nothing.

    \b
    Examples:
      samops apply manifests
      samops apply --repo . --ref main --path manifests
    """
    revision = _read_revision(path, repo, ref, subpath, allow_plaintext_secrets)
    engine = _engine(database_url)
    if dry_run:
        _valid_or_exit(revision)
        ctx = click.get_current_context()
        ctx.invoke(
            plan,
            path=path,
            repo=repo,
            ref=ref,
            subpath=subpath,
            allow_plaintext_secrets=allow_plaintext_secrets,
            database_url=database_url,
            source_name=source_name,
            output_format=output_format,
            detailed_exitcode=False,
        )
        return
    if revision.diagnostics and output_format == "text":
        click.echo(as_text(revision), err=True)
    try:
        result = apply_revision(engine, revision, source=source_name, allow_empty=allow_empty)
    except ApplyError as exc:
        _fail(str(exc))
    if output_format == "json":
        click.echo(
            json.dumps(
                {
                    "outcome": result.outcome,
                    "revision": result.revision,
                    "generation": result.generation,
                    "message": result.message,
                    "plan": plan_to_json(result.plan, revision=result.revision),
                    "errors": [d.to_json() for d in result.errors],
                },
                indent=2,
            )
        )
    else:
        if not result.plan.empty:
            click.echo(render_text(result.plan, color=sys.stdout.isatty()))
        click.echo(_apply_summary(result))
    sys.exit(EXIT_OK if result.ok else EXIT_FAILED)


def _apply_summary(result: ApplyResult) -> str:
    short = result.revision[:12]
    if result.repeated:
        return result.message
    return {
        "applied": f"Applied {short}: generation {result.generation}.",
        "unchanged": f"Applied {short}: nothing to change (generation {result.generation}).",
        "up-to-date": f"{short} is already applied (generation {result.generation}); "
        "nothing written.",
        "invalid": f"{short} is invalid: nothing applied; the last good state stays.",
        "refused": result.message,
        "failed": f"applying {short} failed.",
    }[result.outcome]


@cli.command()
@database_options
@click.option(
    "--format",
    "output_format",
    type=FORMATS,
    default="text",
    show_default=True,
    help="json keys are documented in docs/cli.md.",
)
@click.option(
    "--history",
    default=5,
    show_default=True,
    type=click.IntRange(0, 1000),
    help="How many recent syncs to list.",
)
def status(database_url: str | None, source_name: str, output_format: str, history: int) -> None:
    """Show the applied and attempted revisions, the generation and recent syncs."""
    document = status_document(_engine(database_url), history=history)
    if output_format == "json":
        click.echo(json.dumps(document, indent=2))
        return
    click.echo(report.status_text(document))


@cli.command()
@database_options
@click.option("--reason", help="Shown in status while suspended.")
def suspend(database_url: str | None, source_name: str, reason: str | None) -> None:
    """Stop the daemon from applying new revisions (persisted; see `samops resume`).

    Serving goes on from the last applied revision; commits still arrive and are applied, in
    their latest state, on resume.
    """
    set_suspended(_engine(database_url), True, reason)
    click.echo("suspended: the daemon applies nothing until 'samops resume'")


@cli.command()
@database_options
def resume(database_url: str | None, source_name: str) -> None:
    """Let the daemon apply again; it reconciles at once."""
    engine = _engine(database_url)
    set_suspended(engine, False)
    request_reconcile(engine)
    click.echo("resumed")


@cli.command()
@database_options
def reconcile(database_url: str | None, source_name: str) -> None:
    """Ask the running daemon for a pass now (and a fetch, for a remote repository)."""
    requested = request_reconcile(_engine(database_url))
    click.echo(f"reconcile requested at {requested.isoformat()}")


@cli.command("get")
@database_options
@click.argument("kind", type=click.Choice(list(KINDS), case_sensitive=False))
@click.option("--format", "output_format", type=FORMATS, default="text", show_default=True)
def get_command(database_url: str | None, source_name: str, kind: str, output_format: str) -> None:
    """List the resources of KIND in the database."""
    kind = _kind(kind)
    headings, rows = report.get_table(_engine(database_url), kind)
    if output_format == "json":
        click.echo(json.dumps([dict(zip(headings, row, strict=True)) for row in rows], indent=2))
        return
    click.echo(report.table(headings, rows))


@cli.command()
@database_options
@click.argument("kind", type=click.Choice(list(KINDS), case_sensitive=False))
@click.argument("name")
def describe(database_url: str | None, source_name: str, kind: str, name: str) -> None:
    """Print one resource as SAM YAML; it re-applies as an empty plan."""
    try:
        manifest = report.describe(_engine(database_url), _kind(kind), normalise_name(name))
    except report.DescribeError as exc:
        _fail(str(exc))
    click.echo(_dump_yaml(manifest), nl=False)


@cli.group()
def db() -> None:
    """Database schema maintenance."""


@db.command("upgrade")
@database_options
def db_upgrade(database_url: str | None, source_name: str) -> None:
    """Apply pending migrations (every command also does this at start)."""
    url = database_url or default_database_url()
    try:
        with translated_errors(url):
            upgrade(create_database_engine(url))
    except DatabaseError as exc:
        _fail(str(exc))
    click.echo(f"{redacted(url)}: schema up to date")


def _kind(raw: str) -> str:
    return next(k for k in KINDS if k.lower() == raw.lower())


def _plug_in_commands() -> None:
    """Add the commands other packages declare under the ``samops.commands`` entry point
    (``samops run`` comes from serve), without this package importing them."""
    for entry in entry_points(group="samops.commands"):
        if entry.name not in cli.commands:
            cli.add_command(entry.load(), entry.name)


def main() -> None:
    _plug_in_commands()
    cli(prog_name="samops")
