"""One chat turn: select plugins, build the system prompt, call the model, run its tools.

Serve stage, called by the chat routes with one snapshot's compiled client. Smarter makes at
most two model calls (tools, then no tools); samops runs a bounded loop: while the model asks
for samops' tools (plugins and built-in functions), they run (concurrently) and their results
go back, up to ``max_tool_rounds``; the last call offers no tools, so the turn always ends
with an answer. A tool that fails answers the model with the error sentence, never a crash.

Tools the caller brought (OpenAI ``tools`` in the request) are offered too, but their calls
are returned to the caller, as OpenAI clients expect.

Plugin selection follows Smarter: ``always``, or ``search_terms`` matched case-insensitively
against the prompt and the session's earlier user messages. Model, temperature and max tokens
come from the client, overridden by the first selected plugin that sets them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from serve import jsonwire
from serve.compiled import CompiledClient, CompiledPlugin, Snapshot, Tool
from serve.providers import Providers, UpstreamError, translated_upstream_errors
from serve.upstream_http import post_json, stream_json, upstream_clock

if TYPE_CHECKING:
    from serve.admission import Holds
from serve.settings import (
    DEFAULT_MAX_CONCURRENT_TOOL_CALLS,
    DEFAULT_MAX_TOOL_CALLS_PER_ROUND,
    DEFAULT_MAX_TOOL_ROUNDS,
)
from serve.tools.errors import ToolError
from serve.tools.functions import parse_arguments

log = logging.getLogger("samops.chat")
Progress = Callable[[dict[str, Any]], None]
"""Told of each step of a turn as it happens: ``{"type", "message", ...}``, Smarter's progress
events (``llm_request``, ``tool_requested``, ``tool_responded``, ``plugin_called``)."""


@dataclass(slots=True)
class ToolCallRecord:
    name: str
    arguments: Mapping[str, Any]
    result: str | None
    error: str | None
    duration_ms: int


MAX_TOKENS_COUNTED = 10**12
"""A count above this is not a count: the turn's usage is recorded as unknown."""


@dataclass(slots=True)
class TokenUsage:
    """The tokens of a turn's upstream calls, summed. Unknown (``known`` false) as soon as one
    call did not say, or said something that is not a count: never guessed, never zero."""

    prompt: int = 0
    completion: int = 0
    total: int = 0
    calls: int = 0
    known: bool = True

    def add(self, usage: Any) -> None:
        """One upstream call's ``usage`` (None: it sent none)."""
        self.calls += 1
        if not isinstance(usage, Mapping):
            self.known = False
            return
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        if not (isinstance(prompt, int) and _count(prompt)) or not (
            isinstance(completion, int) and _count(completion)
        ):
            self.known = False
            return
        total = usage.get("total_tokens")
        self.prompt += prompt
        self.completion += completion
        self.total += total if isinstance(total, int) and _count(total) else prompt + completion

    def as_openai(self) -> dict[str, int]:
        """OpenAI's ``usage`` object of these counts."""
        return {
            "prompt_tokens": self.prompt,
            "completion_tokens": self.completion,
            "total_tokens": self.total,
        }


def _count(value: Any) -> bool:
    return type(value) is int and 0 <= value <= MAX_TOKENS_COUNTED


@dataclass(slots=True)
class TurnResult:
    completion: dict[str, Any]
    selected: list[str]
    tool_calls: list[ToolCallRecord] = field(default_factory=list)
    added: list[dict[str, Any]] = field(default_factory=list)
    """Assistant and tool messages of the loop, then the final answer (for the session)."""
    upstream_seconds: float = 0.0
    rounds: int = 0
    usage: TokenUsage = field(default_factory=TokenUsage)
    model: str = ""
    """The model the upstream was asked for (the client's, or a selected plugin's)."""

    def tool_calls_made(self) -> list[dict[str, Any]]:
        """The tool calls of the turn as Smarter's answers list them."""
        return [
            {
                "name": c.name,
                "arguments": c.arguments,
                "result": c.result,
                "error": c.error,
                "duration_ms": c.duration_ms,
            }
            for c in self.tool_calls
        ]


def _without_nulls(value: Any) -> Any:
    """OpenAI answers carry many ``null`` fields; drop them, as the SDK's dump did."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _bad_answer(
    provider: str, what: str = "something that is not a chat completion"
) -> UpstreamError:
    return UpstreamError(502, "upstream_bad_answer", f"the provider {provider!r} answered {what}")


def _decoded_answer(raw: bytes, provider: str) -> dict[str, Any]:
    """The upstream's chat completion, or a 502 when it is not one (what every caller reads
    is checked: the message, and each tool call's id, name and arguments)."""
    try:
        answer = jsonwire.loads(raw)
        message = answer["choices"][0]["message"]
        if not isinstance(message, dict):
            raise TypeError
        calls = message.get("tool_calls")
        if calls is not None and not (isinstance(calls, list) and all(map(_well_formed, calls))):
            raise _bad_answer(provider, "tool calls without an id, a name or string arguments")
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise _bad_answer(provider) from exc
    return answer  # type: ignore[no-any-return]


def _well_formed(call: Any) -> bool:
    """A tool call samops can run and answer: an id, a function name, string arguments."""
    if not isinstance(call, dict) or not isinstance(call.get("id"), str) or not call["id"]:
        return False
    function = call.get("function")
    return (
        isinstance(function, dict)
        and isinstance(function.get("name"), str)
        and isinstance(function.get("arguments", ""), str | None)
    )


def _accumulate(call: dict[str, Any], piece: Mapping[str, Any]) -> None:
    """Fold one streamed tool-call delta into the call it belongs to."""
    call.setdefault("type", "function")
    function = call.setdefault("function", {"name": "", "arguments": ""})
    if piece.get("id"):
        call["id"] = piece["id"]
    given = piece.get("function") or {}
    function["name"] += given.get("name") or ""
    function["arguments"] += given.get("arguments") or ""


def text_of(content: Any) -> str:
    """A message's text, whether ``content`` is a string or a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
    return ""


def select_plugins(
    client: CompiledClient, messages: Sequence[Mapping[str, Any]]
) -> list[CompiledPlugin]:
    said = " ".join(text_of(m.get("content")) for m in messages if m.get("role") == "user")
    said = said.lower()
    return [
        p
        for p in client.plugins
        if p.directive == "always" or any(term in said for term in p.search_terms)
    ]


def system_prompt(client: CompiledClient, selected: Sequence[CompiledPlugin]) -> str:
    parts = [client.system_role.strip(), *(p.system_role.strip() for p in selected)]
    return "\n\n".join(p for p in parts if p)


def _first(selected: Sequence[CompiledPlugin], attribute: str, default: Any) -> Any:
    for plugin in selected:
        value = getattr(plugin, attribute)
        if value is not None:
            return value
    return default


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a turn is for, as its usage record says (``usage.py``)."""

    route: str = "openai"
    """``openai`` or ``smarter``: which family of routes asked."""
    key_name: str | None = None
    """The SmarterAuthToken of the presented key (None: no key, or one no token lists)."""
    session_key: str | None = None
    """The Smarter chat session."""


@dataclass(slots=True)
class Turn:
    """Everything one turn needs, fixed at its start (one snapshot, one client)."""

    client: CompiledClient
    snapshot: Snapshot
    providers: Providers
    messages: list[dict[str, Any]]
    caller_tools: list[dict[str, Any]] = field(default_factory=list)
    max_tool_rounds: int = DEFAULT_MAX_TOOL_ROUNDS
    max_calls_per_round: int = DEFAULT_MAX_TOOL_CALLS_PER_ROUND
    max_concurrent_calls: int = DEFAULT_MAX_CONCURRENT_TOOL_CALLS
    progress: Progress | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)
    """The caller's Chat Completions parameters (``serve/openai_params.py``), over the
    client's and its plugins' settings."""
    caller: Caller = field(default_factory=Caller)
    holds: Holds | None = None
    """What the request took from its rate limits and budgets (``admission.py``), settled at
    its end."""
    selected: list[CompiledPlugin] = field(init=False)
    tools: dict[str, Tool] = field(init=False)

    def __post_init__(self) -> None:
        self.selected = select_plugins(self.client, self.messages)
        self.tools = {p.tool.name: p.tool for p in self.selected}
        self.tools.update({f.name: f for f in self.client.functions})

    def request(self, conversation: list[dict[str, Any]], *, with_tools: bool) -> dict[str, Any]:
        system = system_prompt(self.client, self.selected)
        body: dict[str, Any] = {
            "model": self.model(),
            "messages": ([{"role": "system", "content": system}] if system else []) + conversation,
            "temperature": _first(self.selected, "temperature", self.client.temperature),
            "max_tokens": _first(self.selected, "max_tokens", self.client.max_tokens),
        }
        if self.overrides:
            if "max_completion_tokens" in self.overrides:
                del body["max_tokens"]
            body.update(self.overrides)
        offered = [t.openai() for t in self.tools.values()] + self.caller_tools
        if offered and with_tools:
            body["tools"] = offered
        else:  # OpenAI refuses these without tools
            body.pop("tool_choice", None)
            body.pop("parallel_tool_calls", None)
        return body

    def upstream(self) -> Any:
        target = self.providers.target(self.snapshot, self.client.provider)
        return self.providers.client(target)

    def model(self) -> str:
        """The model the upstream is asked for."""
        return str(_first(self.selected, "model", self.client.model))

    def new_result(self) -> TurnResult:
        return TurnResult({}, [p.name for p in self.selected], model=self.model())

    async def run(self, result: TurnResult | None = None) -> TurnResult:
        """The turn to its answer, filling ``result`` (usage counted as calls return, so a
        turn that fails still says what it cost)."""
        result = result if result is not None else self.new_result()
        conversation = list(self.messages)
        client = self.upstream()
        while True:
            with_tools = result.rounds < self.max_tool_rounds
            if self.progress is not None:
                self._tell_llm_request(result.rounds)
            with translated_upstream_errors(self.client.provider), upstream_clock() as clock:
                # The SDK's client (auth, retries with backoff, timeouts, error classes)
                # without its typed transformation of the request body, which took over a
                # third of the server's CPU (profiled with py-spy under bench/chat.py's load):
                # the body is built and encoded here, and the answer is decoded here, both
                # with orjson (serve/jsonwire.py); see upstream_http.post_json.
                raw = await post_json(
                    client,
                    "/chat/completions",
                    jsonwire.dumps(self.request(conversation, with_tools=with_tools)),
                )
            result.upstream_seconds += clock.seconds
            answer = _without_nulls(_decoded_answer(raw, self.client.provider))
            result.usage.add(answer.get("usage"))
            message = answer["choices"][0]["message"]
            ours = self.our_round(message.get("tool_calls") or [], with_tools)
            if ours is None:
                if result.usage.calls > 1 and result.usage.known:  # the turn's, as billed
                    answer["usage"] = result.usage.as_openai()
                result.completion = answer
                result.added.append(message)
                return result
            added = [message, *await self.tool_round(ours, result)]
            conversation.extend(added)
            result.added.extend(added)

    async def stream(self, result: TurnResult) -> AsyncGenerator[dict[str, Any], None]:
        """The turn as chat.completion.chunk dicts, the final answer passed through as the
        upstream sends it. A round's chunks are held until its first content delta (then
        they flow live) or its end: calls to samops' tools run and the next round starts;
        anything else (the caller's tools) is passed on as it came."""
        conversation = list(self.messages)
        client = self.upstream()
        while True:
            with_tools = result.rounds < self.max_tool_rounds
            started = time.perf_counter()
            held: list[dict[str, Any]] = []
            calls: dict[int, dict[str, Any]] = {}
            live = False
            seen = 0
            usage = None
            body = self.request(conversation, with_tools=with_tools)
            options = body.get("stream_options")  # the upstream says what the round cost
            body["stream_options"] = {
                **(options if isinstance(options, dict) else {}),
                "include_usage": True,
            }
            body["stream"] = True
            with translated_upstream_errors(self.client.provider):
                chunks = await stream_json(client, "/chat/completions", jsonwire.dumps(body))
                try:
                    async for chunk in chunks:
                        seen += 1
                        data = _without_nulls(chunk)
                        if "usage" in data:
                            usage = data["usage"]
                            if result.usage.calls:  # the caller sees the turn's, as billed
                                turn_total = dataclasses.replace(result.usage)
                                turn_total.add(usage)
                                if turn_total.known:
                                    data["usage"] = turn_total.as_openai()
                        if live:
                            yield data
                            continue
                        held.append(data)
                        delta = (data.get("choices") or [{}])[0].get("delta") or {}
                        if delta.get("content"):
                            live = True
                            for waiting in held:
                                yield waiting
                            held = []
                        for piece in delta.get("tool_calls") or []:
                            _accumulate(calls.setdefault(piece.get("index", 0), {}), piece)
                except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
                    # invalid JSON in an event, or a chunk of the wrong shape
                    raise _bad_answer(self.client.provider, "a stream that is not one") from exc
            result.usage.add(usage)
            if not seen:  # a 200 whose body holds no server-sent event
                raise _bad_answer(self.client.provider, "no server-sent events to a stream")
            if calls and not all(map(_well_formed, calls.values())):
                raise _bad_answer(self.client.provider, "streamed tool calls without an id or name")
            result.upstream_seconds += time.perf_counter() - started
            if live:
                return
            ordered = [calls[i] for i in sorted(calls)]
            ours = self.our_round(ordered, with_tools)
            if ours is None:
                for waiting in held:
                    yield waiting
                return
            conversation.append({"role": "assistant", "content": None, "tool_calls": ordered})
            conversation.extend(await self.tool_round(ours, result))

    def our_round(
        self, calls: list[dict[str, Any]], with_tools: bool
    ) -> list[dict[str, Any]] | None:
        """The calls samops runs itself, or None when this answer goes to the caller: no
        calls, a call to one of the caller's tools, or no tool rounds left."""
        ours = [c for c in calls if c["function"]["name"] in self.tools]
        return ours if calls and len(ours) == len(calls) and with_tools else None

    async def tool_round(
        self, calls: list[dict[str, Any]], result: TurnResult
    ) -> list[dict[str, Any]]:
        """Run one round of samops' tools; their results as ``tool`` messages."""
        result.rounds += 1
        messages = []
        for call, record in zip(calls, await self.run_tools(calls), strict=True):
            result.tool_calls.append(record)
            content = record.result if record.error is None else f"error: {record.error}"
            messages.append({"role": "tool", "tool_call_id": call["id"], "content": content})
        return messages

    def _tell_llm_request(self, rounds: int) -> None:
        assert self.progress is not None
        model = self.model()
        after = f" with {rounds} tool round(s) of results" if rounds else ""
        self.progress({"type": "llm_request", "message": f"Asking {model}{after}", "model": model})

    def _tell_tool(self, kind: str, name: str, message: str, **details: Any) -> None:
        assert self.progress is not None
        self.progress({"type": kind, "message": message, "tool": name, **details})
        if kind == "tool_responded" and any(p.tool.name == name for p in self.selected):
            self.progress(
                {"type": "plugin_called", "message": f"Used plugin {name}", "plugin": name}
            )

    async def run_tools(self, calls: list[dict[str, Any]]) -> list[ToolCallRecord]:
        if self.progress is not None:
            for call in calls:
                name = call["function"]["name"]
                arguments = call["function"].get("arguments") or "{}"
                self._tell_tool("tool_requested", name, f"Calling {name}", arguments=arguments)
        if len(calls) == 1:  # no task: on a busy loop a new task waits for every other one
            return [await self.run_tool(calls[0])]
        running, refused = calls[: self.max_calls_per_round], calls[self.max_calls_per_round :]
        gate = asyncio.Semaphore(self.max_concurrent_calls)

        async def gated(call: dict[str, Any]) -> ToolCallRecord:
            async with gate:
                return await self.run_tool(call)

        done = list(await asyncio.gather(*(gated(c) for c in running)))
        reason = (
            f"not run: at most {self.max_calls_per_round} tool calls run in one round; ask "
            "again for the ones you still need"
        )
        return done + [ToolCallRecord(c["function"]["name"], {}, None, reason, 0) for c in refused]

    async def run_tool(self, call: Mapping[str, Any]) -> ToolCallRecord:
        name = call["function"]["name"]
        started = time.perf_counter()
        arguments: Any = {}
        try:
            arguments = parse_arguments(call["function"].get("arguments") or "{}")
            if not isinstance(arguments, dict):
                raise ToolError("the arguments must be a JSON object")
            result: str | None = await self.tools[name].execute(arguments)
            error = None
        except json.JSONDecodeError:
            arguments, result, error = {}, None, "the arguments are not valid JSON"
        except ToolError as exc:
            arguments = arguments if isinstance(arguments, dict) else {}
            result, error = None, str(exc)
        except Exception as exc:  # a bug in a tool must not fail the request
            log.exception("tool failed", extra={"tool": name})
            arguments, result, error = {}, None, f"the tool failed ({exc.__class__.__name__})"
        if error is not None:
            log.info("tool answered with an error", extra={"tool": name, "error": error})
        if self.progress is not None:
            told = f"{name} answered" if error is None else f"{name} failed: {error}"
            self._tell_tool("tool_responded", name, told, ok=error is None)
        return ToolCallRecord(
            name, arguments, result, error, int((time.perf_counter() - started) * 1000)
        )
