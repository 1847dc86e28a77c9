"""One test locks the error shapes of every route family and of the CLI (``serve/errors.py``).

OpenAI's shape on ``/v1``: exactly ``message``, ``type``, ``param``, ``code``; Smarter's on its
routes: its journal error (``errorClass``, ``status``, ``description``, which the official SDK
reads) with samops' ``code`` and ``message``, in Smarter's envelope; samops' shape everywhere
else and from ``samops chat -o json``: ``code`` and ``message`` (and documented extras). A
change to any shape fails here, whichever route or command it came through.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
from smarter.core.http import journal_error

from tests.fakes.upstream import create_scripted_app
from tests.serve.harness import example_chat

SAMOPS = str(Path(sys.executable).parent / "samops")
OPENAI_KEYS = {"message", "type", "param", "code"}
SAMOPS_KEYS = {"code", "message"}
SMARTER_KEYS = {"errorClass", "status", "description", "code", "message", "command", "thing"}

# (method, path, body, headers, status, code, shape): one row per route family and failure.
CASES = [
    (
        "POST",
        "/v1/chat/completions",
        {"model": "nosuch", "messages": [{"role": "user", "content": "hi"}]},
        {},
        404,
        None,
        "openai",
    ),
    ("POST", "/v1/chat/completions", "not json", {}, 400, None, "openai"),
    (
        "POST",
        "/api/v1/llm-clients/nosuch/prompt/",
        {"messages": [{"role": "user", "content": "hi"}]},
        {},
        404,
        None,
        "smarter",
    ),
    ("GET", "/api/v1/llm-clients/nosuch/config/", None, {}, 404, None, "smarter"),
    ("POST", "/api/v1/llm-clients/nosuch/config/", {}, {}, 404, None, "smarter"),
    ("POST", "/api/v1/llm-clients/support/config/", "not json", {}, 400, "invalid_json", "smarter"),
    ("GET", "/api/v1/llm-clients/nosuch/", None, {}, 404, "unknown_client", "smarter"),
    ("GET", "/api/v1/llm-clients/123/plugins/", None, {}, 404, "unknown_client", "smarter"),
    ("GET", "/api/v1/secrets/", None, {}, 401, "admin_key_required", "smarter"),
    ("GET", "/api/v1/providers/nosuch/", None, {}, 404, "unknown_provider", "smarter"),
    ("GET", "/api/v1/prompts/history/prompt/x/", None, {}, 404, "not_found", "smarter"),
    ("POST", "/prompt/", {"messages": []}, {"Host": "nosuch.example"}, 404, None, "smarter"),
    (
        "POST",
        "/api/v1/preview/llm-clients/stackademy_sql/prompt/",
        {"ref": "HEAD", "messages": [{"role": "user", "content": "hi"}]},
        {},
        404,
        "preview_disabled",
        "samops",
    ),
    ("POST", "/hooks/git", {}, {}, 404, "webhook_disabled", "samops"),
    ("GET", "/no/such/route", None, {}, 404, "not_found", "samops"),
    ("DELETE", "/v1/models", None, {}, 404, "unknown_url", "openai"),
    ("GET", "/v1/nosuch", None, {}, 404, "unknown_url", "openai"),
    ("GET", "/v1/models/nosuch", None, {}, 404, "model_not_found", "openai"),
    ("POST", "/no/such/route", None, {}, 404, "not_found", "samops"),
    ("PUT", "/healthz", None, {}, 405, "method_not_allowed", "samops"),
]


async def _answers(tmp_path: Path) -> list[tuple[int, dict[str, Any]]]:
    answers = []
    async with (
        example_chat(tmp_path, create_scripted_app()) as base,
        aiohttp.ClientSession() as http,
    ):
        for method, path, body, headers, _status, _code, _shape in CASES:
            data = body if isinstance(body, str) else json.dumps(body) if body else None
            async with http.request(method, base + path, data=data, headers=headers) as r:
                answers.append((r.status, await r.json()))
    return answers


def test_every_route_family_answers_errors_in_its_protocols_shape(tmp_path: Path) -> None:
    answers = asyncio.run(_answers(tmp_path))
    for (method, path, _body, _headers, status, code, shape), (got, document) in zip(
        CASES, answers, strict=True
    ):
        where = f"{method} {path}"
        assert got == status, (where, document)
        if shape == "smarter":
            assert set(document) == {"error", "api", "metadata"}, where
            error = document["error"]
            assert set(error) == SMARTER_KEYS, where
            assert error["status"] == status, where
            assert error["description"] == error["message"], where
            assert journal_error(document) is not None, where  # what the SDK reads
            continue
        assert set(document) == {"error"}, where
        error = document["error"]
        if shape == "openai":
            assert set(error) == OPENAI_KEYS, where
            assert error["type"].endswith("_error"), where
        else:
            assert set(error) == SAMOPS_KEYS, where
        assert isinstance(error["message"], str) and error["message"], where
        assert isinstance(error["code"], str) and error["code"], where
        if code is not None:
            assert error["code"] == code, where


def test_the_cli_prints_the_samops_shape_with_json_output(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'none.sqlite3'}"
    done = subprocess.run(
        [SAMOPS, "chat", "support", "hi", "--format", "json", "--database-url", database],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    document = json.loads(done.stdout)
    assert set(document) == {"error"}
    assert set(document["error"]) == SAMOPS_KEYS
    assert document["error"]["code"] == "database_error"
