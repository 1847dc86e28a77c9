"""The Chat Completions request parameters: checked, then passed to the upstream.

Serve stage, used by ``openai_routes.py``. Every parameter of ``POST /v1/chat/completions``, as
the installed ``openai`` SDK declares them (``CompletionCreateParams``, so a new SDK's new
parameters are known without a change here), is either passed on to the client's upstream (the
client's manifest settings are defaults the request overrides, within the bounds below) or
refused with 400 in OpenAI's error shape, ``param`` naming it, as OpenAI refuses it:

- an unknown parameter: ``Unrecognized request argument supplied``;
- a value of the wrong type, checked strictly against the SDK's type (``temperature: "hot"``
  and ``temperature: "0.5"`` are refused), or out of OpenAI's documented range (``BOUNDS``);
- ``functions`` and ``function_call``, OpenAI's deprecated form of ``tools``;
- ``max_tokens`` or ``max_completion_tokens`` above the client's ``defaultMaxTokens`` (the
  manifest's ceiling on what one answer may cost);
- ``n`` above 1 for a client with tools of its own (samops' tool rounds follow one
  conversation).
"""

from __future__ import annotations

import functools
from typing import Any, get_type_hints

from openai.types.chat.completion_create_params import CompletionCreateParamsBase
from pydantic import TypeAdapter, ValidationError

from serve.chat_http import ChatError

PARAMETERS: dict[str, Any] = get_type_hints(CompletionCreateParamsBase)
"""Every request parameter the installed SDK knows, with its type."""
HANDLED_HERE = frozenset({"model", "messages", "stream", "tools"})
"""Parameters samops reads itself; every other one given is passed to the upstream."""
DEPRECATED = {"functions": "tools", "function_call": "tool_choice"}
MAX_CHOICES = 8
BOUNDS: dict[str, tuple[float, float]] = {
    "temperature": (0.0, 2.0),
    "top_p": (0.0, 1.0),
    "frequency_penalty": (-2.0, 2.0),
    "presence_penalty": (-2.0, 2.0),
    "top_logprobs": (0, 20),
    "n": (1, MAX_CHOICES),
    "max_tokens": (1, float("inf")),
    "max_completion_tokens": (1, float("inf")),
}
"""OpenAI's documented ranges of the numeric parameters (``n``: at most ``MAX_CHOICES``)."""
MAX_STOP_SEQUENCES = 4
MAX_LOGIT_BIAS = 300


def bad_parameter(param: str, message: str, code: str = "invalid_value") -> ChatError:
    return ChatError(400, code, message, param=param)


@functools.cache
def _adapter(name: str) -> TypeAdapter[Any]:
    return TypeAdapter(PARAMETERS[name])


def checked_parameters(body: dict[str, Any], max_tokens: int, has_tools: bool) -> dict[str, Any]:
    """The parameters of ``body`` to send upstream (beside samops' own), each checked; a
    ChatError (400, its ``param`` set) for the first that is refused."""
    given: dict[str, Any] = {}
    for name, value in body.items():
        if name in DEPRECATED:
            raise bad_parameter(
                name,
                f"'{name}' is deprecated by OpenAI and not supported: use '{DEPRECATED[name]}'",
                "unsupported_parameter",
            )
        if name == "stream":
            if value is not None and not isinstance(value, bool):
                raise bad_parameter(name, "Invalid value for 'stream': expected a boolean")
            continue
        if name not in PARAMETERS:
            raise bad_parameter(
                name, f"Unrecognized request argument supplied: {name}", "unknown_parameter"
            )
        if name in HANDLED_HERE or value is None:
            continue
        try:
            _adapter(name).validate_python(value, strict=True)
        except ValidationError as exc:
            raise _invalid(name, value, exc) from exc
        _within_bounds(name, value)
        given[name] = value
    for name in ("max_tokens", "max_completion_tokens"):
        asked = given.get(name)
        if asked is not None and asked > max_tokens:
            raise bad_parameter(
                name,
                f"'{name}' is {asked}, above this client's limit of {max_tokens} "
                "(its manifest's defaultMaxTokens)",
            )
    if given.get("n", 1) > 1 and has_tools:
        raise bad_parameter(
            "n",
            "'n' above 1 is not supported for a client with tools of its own: samops runs its "
            "tool rounds on one conversation",
            "unsupported_value",
        )
    return given


def _within_bounds(name: str, value: Any) -> None:
    if name in BOUNDS:
        low, high = BOUNDS[name]
        if not low <= value <= high:
            shown = f"from {low:g} to {high:g}" if high != float("inf") else f"at least {low:g}"
            raise bad_parameter(name, f"Invalid value for '{name}': expected a number {shown}")
    if name == "stop" and isinstance(value, list) and len(value) > MAX_STOP_SEQUENCES:
        raise bad_parameter(
            name, f"Invalid value for 'stop': at most {MAX_STOP_SEQUENCES} sequences"
        )
    biases = value.values() if name == "logit_bias" else ()
    if len(biases) > MAX_LOGIT_BIAS or not all(-100 <= v <= 100 for v in biases):
        raise bad_parameter(
            name,
            f"Invalid value for 'logit_bias': at most {MAX_LOGIT_BIAS} tokens, each biased "
            "from -100 to 100",
        )


def _invalid(name: str, value: Any, exc: ValidationError) -> ChatError:
    error = exc.errors()[0]
    param = ".".join([name, *_inside(error["loc"], value)])
    message = str(error["msg"]).removeprefix("Value error, ")
    return bad_parameter(param, f"Invalid value for '{param}': {message}")


def _inside(loc: tuple[Any, ...], value: Any) -> list[str]:
    """The keys of the request inside a parameter at fault: pydantic's location without the
    union members and list indexes it adds."""
    parts: list[str] = []
    for part in loc:
        if isinstance(value, dict) and part in value:
            parts.append(str(part))
            value = value[part]
        elif isinstance(value, list) and isinstance(part, int) and part < len(value):
            value = value[part]
    return parts
