"""Executors for the three plugin kinds: static data, SQL queries and HTTP APIs.

Used by the chat turn when the model calls a plugin's tool. Each executor is compiled once per
generation from the typed canonical models (see ``serve/snapshot.py``) and called with the model's
arguments; whatever goes wrong becomes a ``ToolError`` sentence that is returned to the model
as the tool's result, never a crash of the request.

Security bounds:
- SQL: ``{param}`` placeholders become bound parameters of the driver, never text; the query
  runs in a read-only transaction with the plugin's row limit and the connection's timeout,
  in a worker thread; SQLite files are opened read-only.
- API: requests go only to the connection's base URL: path arguments are percent-encoded
  (a ``/``, ``..`` or ``@`` cannot change the path, host or port), the final URL is checked
  against the base, redirects are not followed, responses are capped.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import aiohttp
import yarl
from sqlalchemy import Engine, TextClause, create_engine, event, text
from sqlalchemy.engine import URL

from reconciler.errors import DatabaseError, DatabaseMisconfigured
from reconciler.sam.kinds import (
    ApiConnectionConfig,
    ApiData,
    Parameter,
    SqlConnectionConfig,
    SqlData,
)
from reconciler.store.db import driver_reason, translated_errors
from serve.tools.errors import ToolError, client_errors
from serve.tools.functions import int64

PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
API_RESPONSE_MAX_BYTES = 1024 * 1024
SQL_VALUE_MAX_CHARS = 2000
DRIVERS = {
    "django.db.backends.postgresql": "postgresql+psycopg",
    "django.db.backends.mysql": "mysql+pymysql",
    "django.db.backends.oracle": "oracle+oracledb",
    "django.db.backends.mssql": "mssql+pymssql",
    "django.db.backends.sybase": "sybase+pyodbc",
}
JSON_TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str,
    "number": (int, float),
    "integer": int,
    "boolean": bool,
    "object": dict,
    "array": list,
}


def parameters_schema(parameters: Sequence[Parameter]) -> dict[str, Any]:
    """SAM parameters as the JSON-schema object of an OpenAI tool."""
    properties: dict[str, Any] = {}
    for parameter in parameters:
        prop: dict[str, Any] = {"type": parameter.type}
        for key in ("description", "enum", "default"):
            if getattr(parameter, key) is not None:
                prop[key] = getattr(parameter, key)
        properties[parameter.name] = prop
    required = [p.name for p in parameters if p.required]
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


def checked_arguments(
    parameters: Sequence[Parameter], arguments: Mapping[str, Any]
) -> dict[str, Any]:
    """The arguments with defaults filled in, after checking names, types and enums."""
    declared = {p.name: p for p in parameters}
    unknown = sorted(set(arguments) - set(declared))
    if unknown:
        raise ToolError(
            f"unknown argument(s) {', '.join(unknown)}; this tool takes "
            f"{', '.join(declared) or 'no arguments'}"
        )
    values: dict[str, Any] = {}
    for name, parameter in declared.items():
        value = arguments.get(name, parameter.default)
        if value is None:
            if parameter.required:
                raise ToolError(f"the argument {name!r} is required")
            values[name] = None
            continue
        kind = parameter.type
        if kind in ("number", "integer") and isinstance(value, str):
            try:
                value = float(value) if kind == "number" else int(value)
            except ValueError as exc:
                raise ToolError(f"the argument {name!r} must be of type {kind}") from exc
        expected = JSON_TYPES.get(kind)
        if expected is not None and (
            not isinstance(value, expected) or (kind != "boolean" and isinstance(value, bool))
        ):
            raise ToolError(f"the argument {name!r} must be of type {kind}")
        if isinstance(value, int) and not isinstance(value, bool):
            int64(value)
        if parameter.enum and value not in parameter.enum:
            raise ToolError(f"the argument {name!r} must be one of {parameter.enum}")
        values[name] = value
    return values


class StaticExecutor:
    """Plugin (static): the value under the chosen top-level key of ``staticData``."""

    def __init__(self, static_data: Mapping[str, Any]) -> None:
        self.static_data = dict(static_data)

    def schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {
                "inquiry_type": {
                    "type": "string",
                    "enum": list(self.static_data),
                    "description": "Which information to return.",
                }
            },
            "required": ["inquiry_type"],
            "additionalProperties": False,
        }

    async def __call__(self, arguments: Mapping[str, Any]) -> str:
        choice = arguments.get("inquiry_type")
        if choice not in self.static_data:
            raise ToolError(f"inquiry_type must be one of {list(self.static_data)}")
        return json.dumps(self.static_data[choice], default=str)


def sql_engine(connection: SqlConnectionConfig, password: str | None, data_dir: Path) -> Engine:
    """An engine for a SqlConnection's ``spec.connection`` (read-only)."""
    engine_name = connection.db_engine
    timeout = connection.timeout
    if engine_name == "django.db.backends.sqlite3":
        path = Path(connection.database)
        path = path if path.is_absolute() else data_dir / path
        return create_engine(
            f"sqlite:///file:{path}?mode=ro&uri=true", connect_args={"timeout": timeout}
        )
    driver = DRIVERS[engine_name]
    url = URL.create(
        driver,
        username=connection.username,
        password=password,
        host=connection.hostname,
        port=connection.port,
        database=connection.database,
    )
    connect_args = {"connect_timeout": timeout} if driver.startswith("postgresql") else {}
    try:
        with translated_errors(url.render_as_string()):
            engine = create_engine(
                url,
                pool_size=connection.pool_size,
                max_overflow=connection.max_overflow,
                pool_pre_ping=True,
                connect_args=connect_args,
            )
    except (DatabaseMisconfigured, ModuleNotFoundError) as exc:
        missing = type(exc.__cause__ if isinstance(exc, DatabaseMisconfigured) else exc)
        raise ToolError(
            f"no driver for {engine_name} is installed on this host ({missing.__name__})"
        ) from exc
    if driver.startswith("postgresql"):
        milliseconds = timeout * 1000

        @event.listens_for(engine, "begin")
        def _read_only(conn: Any) -> None:
            conn.exec_driver_sql("SET TRANSACTION READ ONLY")
            conn.exec_driver_sql(f"SET LOCAL statement_timeout = {milliseconds}")

    return engine


POSTGRES_TYPES = {
    "string": "text",
    "number": "double precision",
    "integer": "bigint",
    "boolean": "boolean",
    "object": "jsonb",
    "array": "jsonb",
}


def typed_query(sql: str, parameters: Sequence[Parameter], dialect: str) -> TextClause:
    """``{name}`` placeholders as bound parameters. On PostgreSQL each is cast to its declared
    type, because the server must know a parameter's type (``{x} IS NULL`` with a null)."""
    types = {p.name: p.type for p in parameters}
    if dialect != "postgresql":
        return text(PLACEHOLDER.sub(r":\1", sql))

    def cast(match: re.Match[str]) -> str:
        return f"CAST(:{match[1]} AS {POSTGRES_TYPES.get(types.get(match[1], ''), 'text')})"

    return text(PLACEHOLDER.sub(cast, sql))


class SqlExecutor:
    """SqlPlugin: the query with bound parameters, read-only, limited, in a worker thread."""

    def __init__(self, sql_data: SqlData, engine: Engine) -> None:
        self.parameters = list(sql_data.parameters)
        self.query = typed_query(sql_data.sql_query, self.parameters, engine.dialect.name)
        self.limit = sql_data.limit
        self.engine = engine

    def schema(self) -> dict[str, Any]:
        return parameters_schema(self.parameters)

    async def __call__(self, arguments: Mapping[str, Any]) -> str:
        values = {
            k: json.dumps(v) if isinstance(v, dict | list) else v
            for k, v in checked_arguments(self.parameters, arguments).items()
        }
        return await asyncio.to_thread(self._run, values)

    def _run(self, values: dict[str, Any]) -> str:
        try:
            with translated_errors(str(self.engine.url)), self.engine.connect() as connection:
                result = connection.execute(self.query, values)
                columns = list(result.keys())
                rows = result.fetchmany(self.limit + 1)
                connection.rollback()
        except DatabaseError as exc:
            reason = driver_reason(exc.__cause__ or exc)[:300]
            raise ToolError(f"the query failed: {reason}") from exc
        truncated = len(rows) > self.limit
        data = [[_cell(v) for v in row] for row in rows[: self.limit]]
        answer = json.dumps({"columns": columns, "rows": data, "truncated": truncated})
        password = self.engine.url.password
        return redacted(answer, [str(password)]) if password else answer


def _cell(value: Any) -> Any:
    if isinstance(value, str):
        return value[:SQL_VALUE_MAX_CHARS]
    if isinstance(value, int | float | bool) or value is None:
        return value
    return str(value)[:SQL_VALUE_MAX_CHARS]


REDACTED = "[redacted]"
MIN_REDACTED_CHARS = 4
"""Shorter secrets are not searched for: they would blank out ordinary text."""


def redacted(text: str, secrets: list[str]) -> str:
    """``text`` with every occurrence of the connection's secrets replaced, before a tool's
    result reaches the model, the caller, the logs or the database (an API may echo back
    the credentials it was sent)."""
    for secret in secrets:
        if len(secret) >= MIN_REDACTED_CHARS:
            text = text.replace(secret, REDACTED)
    return text


async def _read_capped(stream: aiohttp.StreamReader, cap: int) -> bytes | None:
    """The whole body, or None as soon as it is over ``cap`` bytes. (``read(n)`` alone returns
    only what has arrived so far: a slow or large answer came back cut, with status 200.)"""
    parts: list[bytes] = []
    size = 0
    async for chunk in stream.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > cap:
            return None
        parts.append(chunk)
    return b"".join(parts)


PATH_SEGMENT_SAFE = "!$&'()*+,;=:@"
"""What RFC 3986 lets a path segment hold unencoded besides letters and digits ('/' is not)."""


def _decoded(text: str) -> str:
    """``text`` percent-decoded until it no longer changes (a few rounds at most)."""
    for _ in range(4):
        decoded = unquote(text)
        if decoded == text:
            break
        text = decoded
    return text


def _resolved(raw_path: str) -> str:
    """A path with its dot segments removed (RFC 3986, 5.2.4), as a server would see it."""
    out: list[str] = []
    for segment in raw_path.split("/"):
        if _decoded(segment) == "..":
            if len(out) > 1:
                out.pop()
        elif _decoded(segment) != ".":
            out.append(segment)
    trailing = raw_path.endswith(("/", "/.", "/..")) and out[-1:] != [""]
    return "/".join(out) + ("/" if trailing else "")


class ApiExecutor:
    """ApiPlugin: one HTTP request under the connection's base URL, with its auth."""

    def __init__(
        self,
        api_data: ApiData,
        connection: ApiConnectionConfig,
        api_key: str | None,
        http: aiohttp.ClientSession,
    ) -> None:
        self.data = api_data
        self.parameters = list(api_data.parameters)
        base = connection.base_url
        self.base = base if base.endswith("/") else base + "/"
        self.timeout = aiohttp.ClientTimeout(total=float(connection.timeout))
        self.auth_method = connection.auth_method
        self.api_key = api_key
        self.http = http

    def schema(self) -> dict[str, Any]:
        return parameters_schema(self.parameters)

    def url_for(self, values: Mapping[str, Any]) -> tuple[yarl.URL, set[str]]:
        """The request URL, exactly as it will be sent, and the argument names in its path.

        Each argument becomes exactly one percent-encoded path segment; one that is empty or
        decodes to a dot segment ('.', '..', '%2e%2e') is refused, and the final URL, with
        its dot segments resolved as a server would, must stay under the base URL."""
        used: set[str] = set()

        def fill(match: re.Match[str]) -> str:
            used.add(match[1])
            value = values.get(match[1])
            if value is None:
                raise ToolError(f"the argument {match[1]!r} is needed in the URL path")
            text = str(value)
            if text == "" or _decoded(text) in (".", ".."):
                raise ToolError(f"the argument {match[1]!r} must be one path segment, not {text!r}")
            return quote(text, safe=PATH_SEGMENT_SAFE)

        path = PLACEHOLDER.sub(fill, self.data.endpoint).lstrip("/")
        final = yarl.URL(self.base + path, encoded=True)
        base = yarl.URL(self.base, encoded=True)
        same_origin = (final.scheme, final.host, final.port) == (base.scheme, base.host, base.port)
        if not same_origin or not _resolved(final.raw_path).startswith(base.raw_path):
            raise ToolError("the request would leave the connection's base URL")
        return final, used

    def secret_forms(self) -> list[str]:
        """The connection's secret as it may come back: plain, and as sent for basic auth."""
        if not self.api_key:
            return []
        return [self.api_key, base64.b64encode(self.api_key.encode()).decode()]

    def headers(self) -> dict[str, str]:
        headers = {h.name: str(h.value or "") for h in self.data.headers}
        if self.api_key and self.auth_method in ("token", "oauth"):
            headers["Authorization"] = f"Bearer {self.api_key}"
        elif self.api_key and self.auth_method == "basic":
            headers["Authorization"] = "Basic " + base64.b64encode(self.api_key.encode()).decode()
        return headers

    async def __call__(self, arguments: Mapping[str, Any]) -> str:
        values = checked_arguments(self.parameters, arguments)
        url, in_path = self.url_for(values)
        rest = {k: v for k, v in values.items() if k not in in_path and v is not None}
        query = {p.key: str(p.value or "") for p in self.data.url_params}
        method = self.data.method
        body: Any = None
        if method in ("GET", "DELETE"):
            query.update(
                {
                    k: json.dumps(v) if isinstance(v, dict | list) else str(v)
                    for k, v in rest.items()
                }
            )
        else:
            template = self.data.body
            body = {**template, **rest} if isinstance(template, dict) else (rest or template)
        with client_errors(
            timed_out="the API did not answer in time",
            unreachable="the API cannot be reached: {name}",
        ):
            async with self.http.request(
                method,
                url,
                params=query or None,
                json=body,
                headers=self.headers(),
                timeout=self.timeout,
                allow_redirects=False,
            ) as response:
                raw = await _read_capped(response.content, API_RESPONSE_MAX_BYTES)
                status = response.status
                kind = response.headers.get("Content-Type", "")
        if raw is None:
            raise ToolError(f"the API's answer is over {API_RESPONSE_MAX_BYTES:,} bytes")
        text_body = redacted(raw.decode("utf-8", "replace"), self.secret_forms())
        parsed: Any = text_body
        if "json" in kind:
            try:
                parsed = json.loads(text_body)
            except ValueError:
                parsed = text_body
        if status >= 400:
            raise ToolError(f"the API answered HTTP {status}: {text_body[:300]}")
        return json.dumps({"status": status, "body": parsed})
