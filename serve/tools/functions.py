"""The built-in functions an LLM client lists in ``spec.functions``, as OpenAI tools.

Serve stage: ``serve/snapshot.py`` compiles each listed function into a tool with
``function_tool_schema``, and the chat turn calls ``run_function`` with the model's arguments.
The result is a JSON string handed back to the model. Bad input and upstream failures raise
``ToolError``, whose message is the tool's result, so it is a sentence the model can act on,
never a traceback. The calculator is ``calculator.py``, the weather ``weather.py``:

    Exception
    └── ToolError    bad arguments, an expression or date that cannot be computed, or the
                     weather services failing (HTTP error, timeout, oversized or odd answer)

Security bounds (the arguments come from the model, so from whoever writes the prompt):
- calculator: the expression (at most 500 characters) is parsed, never executed; only numbers,
  arithmetic operators, parentheses, ``pi``, ``e`` and a fixed list of math functions called by
  bare name are evaluated. Exponents are limited to ±1000 and integer results to 1000 digits
  (refused before the power is computed, so ``9**9**9`` fails at once); ``factorial`` takes at
  most 170; ``round`` at most 100 digits.
- date_calculator: at most 100 dates; shifts that leave years 1 to 9999 are refused.
- get_current_weather: requests go only to the configured geocoding and forecast URLs, the
  location is sent as a query parameter, each request has a total timeout and answers are read
  up to 1 MiB.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from datetime import date, timedelta
from typing import Any

import aiohttp

from reconciler.sam.functions import BUILTIN_FUNCTIONS, canonical_function, known_function_names
from serve.settings import FunctionSettings
from serve.tools.calculator import MAX_EXPRESSION_CHARS, calculate
from serve.tools.errors import ToolError, short
from serve.tools.weather import MAX_LOCATION_CHARS, WEATHER_UNITS, current_weather

MAX_DATES = 100


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def int64(value: int) -> int:
    """``value`` when a database, a JSON encoder or a date can hold it; else a ToolError
    (a model may write any number of digits)."""
    if not INT64_MIN <= value <= INT64_MAX:
        raise ToolError(f"the number {short(value, 40)} is beyond what a tool can hold (64 bits)")
    return value


def parse_arguments(text: str) -> Any:
    """A tool call's JSON arguments; integers beyond 64 bits are a ToolError."""
    return json.loads(text, parse_int=lambda digits: int64(int(digits)))


# --- schemas --------------------------------------------------------------------------------

DATE_FORMATS = {"ISO": "YYYY-MM-DD", "US": "MM/DD/YYYY", "EU": "DD/MM/YYYY"}
DATE_OPERATIONS = ("difference", "oldest", "newest", "convert", "add", "subtract")

PARAMETERS: dict[str, dict[str, Any]] = {
    "calculator": {
        "type": "object",
        "properties": {
            "expression": {
                "type": "string",
                "maxLength": MAX_EXPRESSION_CHARS,
                "description": (
                    "An arithmetic expression such as '2 * (3 + 4) ** 2' or 'sqrt(2) * pi'. "
                    "Operators: + - * / // % ** and parentheses. Functions, called by bare name: "
                    "sqrt, sin, cos, tan, asin, acos, atan, log (natural, or log(x, base)), "
                    "log10, log2, exp, floor, ceil, fabs, factorial, round, abs, min, max. "
                    "Constants: pi, e. Angles are in radians."
                ),
            }
        },
        "required": ["expression"],
        "additionalProperties": False,
    },
    "date_calculator": {
        "type": "object",
        "properties": {
            "dates": {
                "type": "array",
                "items": {"type": "string"},
                "minItems": 1,
                "maxItems": MAX_DATES,
                "description": "The dates, written in `format` or in ISO (YYYY-MM-DD).",
            },
            "operation": {
                "type": "string",
                "enum": list(DATE_OPERATIONS),
                "description": (
                    "difference: days from the first date to the second (negative when the "
                    "second is earlier); oldest / newest: the earliest / latest date; convert: "
                    "every date in all three formats; add / subtract: move every date by `days`."
                ),
            },
            "format": {
                "type": "string",
                "enum": list(DATE_FORMATS),
                "default": "ISO",
                "description": (
                    "How the dates are written and how results are written: ISO (YYYY-MM-DD), "
                    "US (MM/DD/YYYY) or EU (DD/MM/YYYY). ISO input is always accepted."
                ),
            },
            "days": {
                "type": "integer",
                "default": 0,
                "description": "For add and subtract: how many days to move the dates.",
            },
        },
        "required": ["dates", "operation"],
        "additionalProperties": False,
    },
    "get_current_weather": {
        "type": "object",
        "properties": {
            "location": {
                "type": "string",
                "maxLength": MAX_LOCATION_CHARS,
                "description": "A place name, such as 'Berlin' or 'San Francisco'.",
            },
            "unit": {
                "type": "string",
                "enum": list(WEATHER_UNITS),
                "default": "METRIC",
                "description": "METRIC (°C, km/h) or USCS (°F, mph).",
            },
        },
        "required": ["location"],
        "additionalProperties": False,
    },
}


def function_tool_schema(name: str) -> dict[str, Any]:
    """The OpenAI tool definition of a built-in function (aliases accepted)."""
    canonical = _canonical(name)
    return {
        "type": "function",
        "function": {
            "name": canonical,
            "description": BUILTIN_FUNCTIONS[canonical],
            "parameters": copy.deepcopy(PARAMETERS[canonical]),
        },
    }


async def run_function(
    name: str,
    arguments: dict[str, Any],
    *,
    settings: FunctionSettings,
    http: aiohttp.ClientSession,
) -> str:
    """Run a built-in function with the model's arguments; the result is a JSON string."""
    canonical = _canonical(name)
    _check_argument_names(canonical, arguments)
    if canonical == "calculator":
        result = calculate(_text(arguments, "expression"))
    elif canonical == "date_calculator":
        result = date_calculator(
            _dates(arguments),
            _choice(arguments, "operation", DATE_OPERATIONS, None, upper=False),
            _choice(arguments, "format", DATE_FORMATS, "ISO", upper=True),
            _whole_number(arguments, "days"),
        )
    else:
        location = _text(arguments, "location").strip()
        unit = _choice(arguments, "unit", WEATHER_UNITS, "METRIC", upper=True)
        result = await current_weather(location, unit, settings=settings, http=http)
    return json.dumps(result, ensure_ascii=False)


# --- arguments ------------------------------------------------------------------------------


def _canonical(name: str) -> str:
    canonical = canonical_function(name)
    if canonical is None:
        raise ToolError(
            f"{short(name)} is not a built-in function; "
            f"the known ones are {', '.join(known_function_names())}"
        )
    return canonical


def _check_argument_names(function: str, arguments: Mapping[str, Any]) -> None:
    parameters = PARAMETERS[function]
    known = list(parameters["properties"])
    unknown = sorted(set(arguments) - set(known))
    if unknown:
        raise ToolError(
            f"{function} does not take the argument(s) {', '.join(map(short, unknown))}; "
            f"it takes {', '.join(known)}"
        )
    missing = [key for key in parameters["required"] if arguments.get(key) is None]
    if missing:
        raise ToolError(f"{function} needs the argument(s) {', '.join(missing)}")


def _text(arguments: Mapping[str, Any], key: str) -> str:
    value = arguments[key]
    if not isinstance(value, str):
        raise ToolError(f"the argument {key!r} must be a string, not {type(value).__name__}")
    return value


def _choice(
    arguments: Mapping[str, Any],
    key: str,
    choices: Mapping[str, Any] | tuple[str, ...],
    default: str | None,
    *,
    upper: bool,
) -> str:
    value = arguments.get(key)
    if value is None and default is not None:
        return default
    spelled = (value.upper() if upper else value.lower()) if isinstance(value, str) else value
    if spelled not in choices:
        raise ToolError(
            f"the argument {key!r} must be one of {', '.join(choices)}, not {short(value)}"
        )
    return str(spelled)


def _whole_number(arguments: Mapping[str, Any], key: str) -> int:
    value = arguments.get(key)
    if value is None:
        return 0
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ToolError(f"the argument {key!r} must be a whole number, not {short(value)}")
    return value


def _dates(arguments: Mapping[str, Any]) -> list[str]:
    dates = arguments["dates"]
    if not isinstance(dates, list) or not all(isinstance(d, str) for d in dates):
        raise ToolError("the argument 'dates' must be a list of date strings")
    if not 1 <= len(dates) <= MAX_DATES:
        raise ToolError(f"the argument 'dates' must list 1 to {MAX_DATES} dates, not {len(dates)}")
    return dates


# --- date calculator ------------------------------------------------------------------------

ISO_DATE = re.compile(r"([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})")
SLASH_DATE = re.compile(r"([0-9]{1,2})/([0-9]{1,2})/([0-9]{4})")


def date_calculator(dates: list[str], operation: str, fmt: str, days: int) -> dict[str, Any]:
    """The result of ``operation`` on ``dates`` (written in ``fmt`` or ISO)."""
    parsed = [_parse_date(text, fmt) for text in dates]
    if operation == "difference":
        if len(parsed) != 2:
            raise ToolError(f"difference needs exactly two dates, not {len(parsed)}")
        first, second = parsed
        return {
            "operation": operation,
            "from": _format_date(first, fmt),
            "to": _format_date(second, fmt),
            "days": (second - first).days,
        }
    if operation in ("oldest", "newest"):
        chosen = min(parsed) if operation == "oldest" else max(parsed)
        return {"operation": operation, "date": _format_date(chosen, fmt)}
    if operation == "convert":
        converted = [{f: _format_date(d, f) for f in DATE_FORMATS} for d in parsed]
        return {"operation": operation, "dates": converted}
    shift = days if operation == "add" else -days
    try:
        moved = [d + timedelta(days=shift) for d in parsed]
    except OverflowError as exc:
        raise ToolError(
            f"moving the dates by {short(shift, 30)} days leaves the calendar (years 1 to 9999)"
        ) from exc
    return {"operation": operation, "days": days, "dates": [_format_date(d, fmt) for d in moved]}


def _parse_date(text: str, fmt: str) -> date:
    value = text.strip()
    if match := ISO_DATE.fullmatch(value):
        year, month, day = match.groups()
    elif fmt != "ISO" and (match := SLASH_DATE.fullmatch(value)):
        first, second, year = match.groups()
        month, day = (first, second) if fmt == "US" else (second, first)
    else:
        accepted = "ISO" if fmt == "ISO" else f"{fmt} ({DATE_FORMATS[fmt]}) or ISO"
        hint = "; set format to US or EU for dates with slashes" if "/" in value else ""
        raise ToolError(f"{short(text)} is not a date in {accepted} (YYYY-MM-DD) format{hint}")
    try:
        return date(int(year), int(month), int(day))
    except ValueError as exc:
        raise ToolError(f"{short(text)} is not a valid date: {exc}") from exc


def _format_date(value: date, fmt: str) -> str:
    if fmt == "US":
        return f"{value.month:02d}/{value.day:02d}/{value.year:04d}"
    if fmt == "EU":
        return f"{value.day:02d}/{value.month:02d}/{value.year:04d}"
    return value.isoformat()
