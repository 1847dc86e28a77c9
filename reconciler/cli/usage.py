"""``samops usage``: what chat cost, by client, key and model (``store/usage_report.py``)."""

from __future__ import annotations

import datetime as dt
import json

import click

from reconciler import report
from reconciler.cli.common import database_options, existing_database, fail, output_option
from reconciler.sam.base import normalise_name
from reconciler.store.db import DatabaseError, default_database_url, translated_errors
from reconciler.store.usage_report import parse_since, usage_summary

HEADINGS = ["CLIENT", "KEY", "MODEL", "TURNS", "FAILED", "PROMPT", "COMPLETION", "TOTAL", "COST"]


@click.command()
@database_options
@click.option("--client", help="Only this LLM client.")
@click.option("--key", help="Only turns made with this SmarterAuthToken's key.")
@click.option(
    "--since",
    default="24h",
    show_default=True,
    help="Start of the window: a span back from now (30m, 24h, 7d, 2w) or a date or time "
    "(2026-11-01, 2026-11-01T09:00:00+00:00; UTC unless it says).",
)
@output_option(["table", "json"], "table", "json keys are documented in docs/usage.md.")
def usage(
    database_url: str | None,
    client: str | None,
    key: str | None,
    since: str,
    output_format: str,
) -> None:
    """Show what chat turns cost: turns, tokens and US dollars by client, key and model.

    Tokens are what the upstream reported; cost is tokens times the model's price (its
    Provider's, or samops' default). A turn whose tokens or price are unknown is counted
    as such, never as zero (marked with * in the table).

    \b
    Examples:
      samops usage
      samops usage --since 7d --client support
      samops usage --key support_key -o json
    """
    now = dt.datetime.now(dt.UTC)
    try:
        start = parse_since(since, now)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--since'") from None
    client = normalise_name(client) if client else None
    key = normalise_name(key) if key else None
    engine = existing_database(database_url)
    try:
        with translated_errors(database_url or default_database_url()):
            summary = usage_summary(engine, since=start, until=now, client=client, key=key)
    except DatabaseError as exc:
        fail(str(exc))
    finally:
        engine.dispose()
    if output_format == "json":
        click.echo(json.dumps(summary, indent=2))
        return
    rows = [_row(r) for r in summary["rows"]]
    if not rows:
        click.echo(f"no chat turns since {start:%Y-%m-%d %H:%M} UTC")
        return
    totals = {**summary["totals"], "client": "total", "key_name": "", "model": ""}
    click.echo(report.table(HEADINGS, [*rows, _row(totals)]))
    if summary["totals"]["tokens_unknown"] or summary["totals"]["cost_unknown"]:
        click.echo(
            "* some turns' tokens or price are unknown: the sums cover the known ones "
            "(see -o json: tokens_unknown, cost_unknown)"
        )


def _row(row: dict[str, object]) -> list[str]:
    tokens_mark = "*" if row["tokens_unknown"] else ""
    cost_mark = "*" if row["cost_unknown"] else ""
    return [
        str(row["client"]),
        str(row["key_name"] or "-"),
        str(row["model"]),
        f"{row['turns']:,}",
        f"{row['failed']:,}",
        f"{row['prompt_tokens']:,}{tokens_mark}",
        f"{row['completion_tokens']:,}{tokens_mark}",
        f"{row['total_tokens']:,}{tokens_mark}",
        f"${row['cost_usd']}{cost_mark}",
    ]
