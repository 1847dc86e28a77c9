"""``samops chat``: one chat turn from the command line, against the applied state or a ref.

Entry point. A turn against a ref previews a revision that is not applied (``serve/preview.py``
compiles it without a database); without a ref the turn is answered from the database, as
the server would.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any, NoReturn

import click
from sqlalchemy import Engine

from reconciler.api import (
    PLAINTEXT_SECRETS_OPTION,
    SUBPATH_OPTION,
    LocalRefReader,
    Validator,
    configure_logging,
    database_options,
    env_option,
    fail,
)
from reconciler.errors import error_document
from reconciler.sam.load import LoadOptions
from reconciler.sam.render import as_text
from reconciler.sam.revision import Revision
from reconciler.sam.secret_access import SecretAccess
from reconciler.store.db import (
    DatabaseError,
    default_data_dir,
    open_existing_database,
)
from serve.offline import offline_upstream
from serve.preview import (
    Answer,
    PreviewError,
    chat_once,
    read_ref,
)
from serve.providers import UpstreamError
from serve.settings import ProviderSettings, ServingSettings, UpstreamEnvironment


@click.command("chat")
@click.argument("client")
@click.argument("message")
@click.option(
    "--ref",
    help="Answer with the configuration of this commit, branch or tag of --repo, without "
    "applying it (default: the state applied in the database).",
)
@env_option(
    "--repo",
    default=Path("."),
    type=click.Path(path_type=Path),
    help="The git repository --ref is read from (git objects, never the working tree).",
)
@SUBPATH_OPTION
@PLAINTEXT_SECRETS_OPTION
@database_options
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text: the answer; json: the completion, the plugins selected and the tool calls made.",
)
def chat(
    client: str,
    message: str,
    ref: str | None,
    repo: Path,
    subpath: str,
    allow_plaintext_secrets: bool,
    database_url: str | None,
    output_format: str,
) -> None:
    """Send MESSAGE ('-': standard input) to CLIENT and print its answer: one turn, no session.

    With --ref, the answer uses the configuration at that revision of --repo, validated but
    NOT applied: preview a branch before merging it. Without --ref, the state applied in the
    database. Nothing is written either way. Client API keys are not required here (whoever
    runs this has the repository or the database); tools really run, with this host's
    secrets. The upstream is OPENAI_BASE_URL / OPENAI_API_KEY, as for the server; without
    OPENAI_API_KEY, samops' offline demo model answers.

    \b
    Examples:
      samops chat support --ref my-branch --path manifests "Any coupons?"
      samops chat support "#system"              # the applied system prompt, offline
      echo "Any coupons?" | samops chat support - --format json

    Exit codes: 0 answered; 1 unknown client or ref, invalid revision, upstream failure.
    """
    configure_logging("text", "warning")
    if message == "-":
        message = sys.stdin.read()
    try:
        revision = None
        engine = None
        if ref is not None:
            reader = LocalRefReader(
                repo,
                subpath,
                Validator(LoadOptions(allow_plaintext_secrets, SecretAccess.if_configured())),
            )
            revision = read_ref(reader, ref)
        else:
            engine = open_existing_database(database_url)  # chat reads; it never creates
        answer = asyncio.run(_chat_once(client, message, revision, engine))
    except PreviewError as exc:
        if exc.revision is not None and output_format == "text":
            click.echo(as_text(exc.revision), err=True)
        _chat_failed(output_format, exc.to_json())
    except (DatabaseError, UpstreamError) as exc:
        code = getattr(exc, "code", "database_error")
        _chat_failed(output_format, error_document(code, str(exc)))
    finally:
        if engine is not None:
            engine.dispose()
    if output_format == "json":
        data = answer.data()
        click.echo(
            json.dumps(
                {
                    "client": answer.client,
                    "revision": answer.revision,
                    "ref": ref,
                    "completion": {
                        k: v
                        for k, v in data.items()
                        if k not in ("plugins_selected", "tool_calls_made", "revision")
                    },
                    "plugins_selected": data["plugins_selected"],
                    "tool_calls_made": data["tool_calls_made"],
                },
                indent=2,
            )
        )
    else:
        click.echo(answer.text)


async def _chat_once(
    client: str, message: str, revision: Revision | None, engine: Engine | None
) -> Answer:
    upstream = UpstreamEnvironment.read()
    async with offline_upstream(upstream) as openai_url:
        return await chat_once(
            client,
            message,
            revision=revision,
            engine=engine,
            providers=ProviderSettings(openai_base_url=openai_url, openai_api_key=upstream.api_key),
            serving=ServingSettings(data_dir=default_data_dir()),
        )


def _chat_failed(output_format: str, document: dict[str, Any]) -> NoReturn:
    if output_format == "json":
        click.echo(json.dumps(document, indent=2))
        sys.exit(1)
    fail(document["error"]["message"])
