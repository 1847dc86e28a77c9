"""``samops validate``, ``schema``, ``plan`` (review mode included) and ``apply``: the commands
that read a revision of the manifests."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from reconciler.apply import ApplyResult, apply_revision, plan_revision
from reconciler.cli.common import (
    EXIT_CHANGES,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_RISK,
    KIND_CHOICE,
    SourceArgs,
    database_options,
    existing_database,
    exit_unless_valid,
    fail,
    kind_name,
    output_option,
    owned_database,
    progress_for,
    read_revision,
    source_option,
    source_options,
)
from reconciler.errors import ApplyError
from reconciler.plan_render import plan_to_json, render_markdown, render_text
from reconciler.review import Level, review_commits
from reconciler.review_render import (
    DEFAULT_MAX_CHARS,
    render_review_markdown,
    render_review_text,
    review_to_json,
)
from reconciler.sam.load import LoadOptions
from reconciler.sam.render import as_json, as_text, dumps
from reconciler.sam.schema import GENERATIONS, Generation, all_kinds_schema, kind_schema
from reconciler.sam.secret_access import SecretAccess
from reconciler.source import SourceError
from reconciler.store.db import DatabaseError


@click.command()
@source_options
@output_option(["text", "json"], "text", "text for people, json for programs (docs/cli.md).")
@click.option("--strict", is_flag=True, help="Treat warnings as errors (exit 1).")
def validate(
    source: SourceArgs,
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
      samops validate --repo . --ref HEAD --path manifests -o json
    """
    progress = progress_for(output_format)
    revision = read_revision(source, one_file=True, progress=progress)
    if progress is not None:
        progress.close()
    if output_format == "json":
        click.echo(dumps(as_json(revision, strict=strict)))
    else:
        click.echo(as_text(revision, strict=strict))
    failed = not revision.valid or (strict and bool(revision.warnings))
    sys.exit(EXIT_FAILED if failed else EXIT_OK)


@click.command()
@click.argument("kind", required=False, type=KIND_CHOICE, metavar="[KIND]")
@click.option(
    "--generation",
    type=click.Choice(GENERATIONS),
    help="With LLMClient: only Smarter 0.14's flat spec.config and spec.functions, or only the "
    "current spec.config.prompt/styles and spec.extensions (default: either).",
)
def schema(kind: str | None, generation: Generation | None) -> None:
    """Print the JSON Schema of one KIND, or of any SAM document.

    Point your editor's YAML plugin at it for completion and checks, e.g. for VS Code's YAML
    extension: write it to a file, then add to a manifest's first line
    `# yaml-language-server: $schema=./sam.schema.json` (see docs/cli.md).

    \b
    Examples:
      samops schema > sam.schema.json
      samops schema LLMClient
      samops schema LLMClient --generation current
    """
    if generation is not None and (kind is None or kind_name(kind) != "LLMClient"):
        raise click.UsageError("--generation applies to the LLMClient kind only")
    document = kind_schema(kind_name(kind), generation) if kind else all_kinds_schema()
    click.echo(json.dumps(document, indent=2))


@click.command()
@source_options
@database_options
@source_option
@output_option(["text", "markdown", "json"], "text", "json is documented in docs/cli.md.")
@click.option(
    "--detailed-exitcode",
    is_flag=True,
    help="Exit 0 when there is nothing to change, 2 when there are changes, 1 on anything "
    "else, usage errors included (like terraform plan).",
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
    source: SourceArgs,
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

    The database must exist (plan never creates one): run `samops apply` first, or
    `samops db upgrade` for an empty one.

    With --base (review mode), show instead what merging --head onto --base would change,
    computed between the two commits by the same plan function, with risk flags: the plan for
    a pull request, before it is merged (markdown fits a PR comment). No database is read.

    \b
    Examples:
      samops plan manifests
      samops plan --repo . --ref main --path manifests -o markdown
      samops plan manifests --detailed-exitcode || echo "changes (2) or error (1): $?"
      samops plan --base HEAD~1 --head HEAD --path manifests -o markdown
      samops plan --base main --head HEAD --path manifests --fail-on high
    """
    if base is not None or head is not None or fail_on is not None:
        _review(
            source,
            base=base,
            head=head,
            output_format=output_format,
            fail_on=fail_on,
            detailed_exitcode=detailed_exitcode,
            max_chars=max_chars,
        )
        return
    progress = progress_for(output_format)
    revision = read_revision(source, progress=progress)
    if progress is not None:
        progress.close()
    exit_unless_valid(revision)
    engine = existing_database(database_url)
    try:
        changes = plan_revision(engine, revision, source=source_name)
    except DatabaseError as exc:
        fail(str(exc))
    if output_format == "json":
        click.echo(json.dumps(plan_to_json(changes, revision=revision.revision), indent=2))
    elif output_format == "markdown":
        click.echo(render_markdown(changes, revision=revision.revision), nl=False)
    else:
        click.echo(render_text(changes, color=sys.stdout.isatty()))
    if detailed_exitcode and not changes.empty:
        sys.exit(EXIT_CHANGES)


def _review(
    source: SourceArgs,
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
    if source.path is not None:
        raise click.UsageError("review mode reads git commits: use --repo, not PATH")
    if source.ref != "HEAD":
        raise click.UsageError("review mode takes --base and --head, not --ref")
    options = LoadOptions(
        allow_plaintext_secrets=source.allow_plaintext_secrets,
        secret_access=SecretAccess.if_configured(),
    )
    repo = source.repo or Path(".")
    try:
        result = review_commits(repo, base, head or "HEAD", source.subpath, options)
    except SourceError as exc:
        fail(str(exc))
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


@click.command()
@source_options
@database_options
@source_option
@click.option("--dry-run", is_flag=True, help="Print the plan and change nothing.")
@click.option("--allow-empty", is_flag=True, help="Allow a revision that deletes every LLM client.")
@output_option(["text", "json"], "text")
def apply(
    source: SourceArgs,
    database_url: str | None,
    source_name: str,
    dry_run: bool,
    allow_empty: bool,
    output_format: str,
) -> None:
    """Make the database equal a revision, in one transaction: all of it or nothing.

    Creates the database, and brings its schema up to date, when needed. An invalid revision
    changes nothing (the attempt and its errors are recorded, see `samops status`). Applying
    the same revision again writes nothing.

    \b
    Examples:
      samops apply manifests
      samops apply --repo . --ref main --path manifests
      samops apply manifests --dry-run
    """
    progress = progress_for(output_format)
    revision = read_revision(source, progress=progress)
    if dry_run:
        if progress is not None:
            progress.close()
        exit_unless_valid(revision)
        ctx = click.get_current_context()
        ctx.invoke(
            plan,
            path=source.path,
            repo=source.repo,
            ref=source.ref,
            subpath=source.subpath,
            allow_plaintext_secrets=source.allow_plaintext_secrets,
            database_url=database_url,
            source_name=source_name,
            output_format=output_format,
            detailed_exitcode=False,
        )
        return
    engine = owned_database(database_url)
    try:
        result = apply_revision(
            engine, revision, source=source_name, allow_empty=allow_empty, progress=progress
        )
    except ApplyError as exc:
        fail(str(exc))
    finally:
        if progress is not None:
            progress.close()
    if revision.diagnostics and output_format == "text":
        click.echo(as_text(revision), err=True)
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
