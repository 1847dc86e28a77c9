"""The built-in functions an LLM client lists in ``spec.functions``, as OpenAI tools.

Serve stage: ``serve/snapshot.py`` compiles each listed function into a tool with
``function_tool_schema``, and the chat turn calls ``run_function`` with the model's arguments.
The result is a JSON string handed back to the model. Bad input and upstream failures raise
``ToolError``, whose message is the tool's result, so it is a sentence the model can act on,
never a traceback. aiohttp's errors are translated in one place, ``_get_json``:

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

import ast
import copy
import json
import math
import operator
import re
from collections.abc import Callable, Mapping
from datetime import date, timedelta
from typing import Any

import aiohttp

from reconciler.sam.functions import BUILTIN_FUNCTIONS, canonical_function, known_function_names
from serve.settings import FunctionSettings
from serve.tools.errors import ToolError, client_errors

Number = int | float

MAX_EXPRESSION_CHARS = 500
MAX_EXPONENT = 1000
MAX_RESULT_DIGITS = 1000
MAX_FACTORIAL = 170
MAX_ROUND_DIGITS = 100
MAX_DATES = 100
MAX_LOCATION_CHARS = 200
MAX_RESPONSE_BYTES = 1024 * 1024


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def int64(value: int) -> int:
    """``value`` when a database, a JSON encoder or a date can hold it; else a ToolError
    (a model may write any number of digits)."""
    if not INT64_MIN <= value <= INT64_MAX:
        raise ToolError(f"the number {_short(value, 40)} is beyond what a tool can hold (64 bits)")
    return value


def parse_arguments(text: str) -> Any:
    """A tool call's JSON arguments; integers beyond 64 bits are a ToolError."""
    return json.loads(text, parse_int=lambda digits: int64(int(digits)))


# --- schemas --------------------------------------------------------------------------------

DATE_FORMATS = {"ISO": "YYYY-MM-DD", "US": "MM/DD/YYYY", "EU": "DD/MM/YYYY"}
DATE_OPERATIONS = ("difference", "oldest", "newest", "convert", "add", "subtract")
WEATHER_UNITS = {
    "METRIC": ("celsius", "kmh", "°C", "km/h"),
    "USCS": ("fahrenheit", "mph", "°F", "mph"),
}

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
            f"{_short(name)} is not a built-in function; "
            f"the known ones are {', '.join(known_function_names())}"
        )
    return canonical


def _check_argument_names(function: str, arguments: Mapping[str, Any]) -> None:
    parameters = PARAMETERS[function]
    known = list(parameters["properties"])
    unknown = sorted(set(arguments) - set(known))
    if unknown:
        raise ToolError(
            f"{function} does not take the argument(s) {', '.join(map(_short, unknown))}; "
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
            f"the argument {key!r} must be one of {', '.join(choices)}, not {_short(value)}"
        )
    return str(spelled)


def _whole_number(arguments: Mapping[str, Any], key: str) -> int:
    value = arguments.get(key)
    if value is None:
        return 0
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ToolError(f"the argument {key!r} must be a whole number, not {_short(value)}")
    return value


def _dates(arguments: Mapping[str, Any]) -> list[str]:
    dates = arguments["dates"]
    if not isinstance(dates, list) or not all(isinstance(d, str) for d in dates):
        raise ToolError("the argument 'dates' must be a list of date strings")
    if not 1 <= len(dates) <= MAX_DATES:
        raise ToolError(f"the argument 'dates' must list 1 to {MAX_DATES} dates, not {len(dates)}")
    return dates


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- calculator -----------------------------------------------------------------------------

RESULT_LIMIT = 10**MAX_RESULT_DIGITS
BINARY_OPERATORS: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}
CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e}
FORBIDDEN = {
    ast.Attribute: "attribute access (a.b) is not allowed; call math functions by bare name, "
    "like sqrt(2)",
    ast.Subscript: "indexing (a[i]) is not allowed",
    ast.List: "lists are not allowed",
    ast.Tuple: "tuples are not allowed",
    ast.Set: "sets are not allowed",
    ast.Dict: "dictionaries are not allowed",
    ast.Lambda: "lambda functions are not allowed",
    ast.Compare: "comparisons are not allowed",
    ast.BoolOp: "'and' and 'or' are not allowed",
    ast.JoinedStr: "text is not allowed",
}
ALLOWED = (
    "use numbers, + - * / // % **, parentheses, pi, e and the functions "
    "sqrt, sin, cos, tan, asin, acos, atan, log, log10, log2, exp, floor, ceil, fabs, "
    "factorial, round, abs, min, max"
)


def _factorial(value: Number) -> int:
    if not 0 <= value <= MAX_FACTORIAL or not float(value).is_integer():
        raise ToolError(
            f"factorial takes a whole number from 0 to {MAX_FACTORIAL}, not {_short(value)}"
        )
    return math.factorial(int(value))


def _round(value: Number, digits: Number | None = None) -> Number:
    if digits is None:
        return round(value)
    if abs(digits) > MAX_ROUND_DIGITS or not float(digits).is_integer():
        raise ToolError(
            f"round takes a whole number of digits from -{MAX_ROUND_DIGITS} to "
            f"{MAX_ROUND_DIGITS}, not {_short(digits)}"
        )
    return round(value, int(digits))


FUNCTIONS: dict[str, tuple[Callable[..., Number], int, int]] = {
    **{
        name: (getattr(math, name), 1, 1)
        for name in ("sqrt", "sin", "cos", "tan", "asin", "acos", "atan", "log10", "log2")
    },
    **{name: (getattr(math, name), 1, 1) for name in ("exp", "floor", "ceil", "fabs")},
    "log": (math.log, 1, 2),
    "factorial": (_factorial, 1, 1),
    "round": (_round, 1, 2),
    "abs": (abs, 1, 1),
    "min": (lambda *values: min(values), 1, MAX_EXPRESSION_CHARS),
    "max": (lambda *values: max(values), 1, MAX_EXPRESSION_CHARS),
}


def calculate(expression: str) -> dict[str, Any]:
    """``{"expression", "result"}`` for an arithmetic expression, or a ToolError."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ToolError(
            f"the expression has {len(expression)} characters; the limit is {MAX_EXPRESSION_CHARS}"
        )
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except (SyntaxError, ValueError) as exc:
        raise ToolError(f"{_short(expression)} is not a valid arithmetic expression") from exc
    try:
        result = _evaluate(tree)
    except ZeroDivisionError as exc:
        raise ToolError("the expression divides by zero, which is undefined") from exc
    except OverflowError as exc:
        raise ToolError("a number in the expression grows too large to compute") from exc
    except RecursionError as exc:
        raise ToolError("the expression is nested too deeply") from exc
    return {"expression": expression, "result": result}


def _evaluate(node: ast.AST) -> Number:
    match node:
        case ast.Expression(body=body):
            return _evaluate(body)
        case ast.Constant(value=bool()):
            raise ToolError("True and False are not numbers here; " + ALLOWED)
        case ast.Constant(value=int() | float() as value):
            return _checked(value)
        case ast.Constant(value=complex()):
            raise ToolError("imaginary numbers are not supported")
        case ast.Constant():
            raise ToolError("text is not allowed in an expression; " + ALLOWED)
        case ast.Name(id=name) if name in CONSTANTS:
            return CONSTANTS[name]
        case ast.Name(id=name) if name in FUNCTIONS:
            raise ToolError(f"{name} is a function; call it with parentheses, like {name}(2)")
        case ast.Name(id=name):
            raise ToolError(f"{_short(name)} is not a known name; the constants are pi and e")
        case ast.UnaryOp(op=ast.USub(), operand=operand):
            return -_evaluate(operand)
        case ast.UnaryOp(op=ast.UAdd(), operand=operand):
            return +_evaluate(operand)
        case ast.BinOp(left=left, op=ast.Pow(), right=right):
            return _power(_evaluate(left), _evaluate(right))
        case ast.BinOp(op=ast.BitXor()):
            raise ToolError("^ is not supported; write powers with **, like 2**10")
        case ast.BinOp(left=left, op=op, right=right) if type(op) in BINARY_OPERATORS:
            return _checked(BINARY_OPERATORS[type(op)](_evaluate(left), _evaluate(right)))
        case ast.Call(func=ast.Name(id=name), args=args, keywords=keywords) if name in FUNCTIONS:
            if keywords:
                raise ToolError("functions take positional arguments only, like round(2.345, 2)")
            return _call(name, [_evaluate(arg) for arg in args])
        case ast.Call(func=ast.Name(id=name)):
            raise ToolError(f"{_short(name)} is not a known function; " + ALLOWED)
        case ast.Call(func=ast.Attribute()):
            raise ToolError(FORBIDDEN[ast.Attribute])
    what = FORBIDDEN.get(type(node), f"{_short(ast.unparse(node), 40)} is not allowed")
    raise ToolError(f"{what}; {ALLOWED}")


def _power(base: Number, exponent: Number) -> Number:
    if abs(exponent) > MAX_EXPONENT:
        raise ToolError(
            f"the exponent {_short(exponent, 30)} is too large; "
            f"exponents are limited to ±{MAX_EXPONENT}"
        )
    integers = isinstance(base, int) and isinstance(exponent, int)
    if integers and abs(base) > 1 and exponent * math.log10(abs(base)) > MAX_RESULT_DIGITS + 1:
        raise ToolError(
            f"{_short(base, 30)}**{exponent} has more than {MAX_RESULT_DIGITS} digits, "
            "the limit for results"
        )
    return _checked(base**exponent)


def _call(name: str, values: list[Number]) -> Number:
    function, least, most = FUNCTIONS[name]
    if not least <= len(values) <= most:
        expected = str(least) if least == most else f"{least} to {most}"
        raise ToolError(f"{name} takes {expected} argument(s), not {len(values)}")
    try:
        return _checked(function(*values))
    except ValueError as exc:
        shown = ", ".join(_short(v, 30) for v in values)
        raise ToolError(
            f"{name}({shown}) is undefined: the argument is outside the function's domain"
        ) from exc


def _checked(value: object) -> Number:
    """The value when it is a real number within bounds; a ToolError otherwise."""
    if isinstance(value, complex):
        raise ToolError(
            "the result is not a real number (a negative number raised to a fractional power?)"
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise ToolError("a number in the expression grows too large to compute")
    if isinstance(value, int) and abs(value) >= RESULT_LIMIT:
        raise ToolError(f"the result has more than {MAX_RESULT_DIGITS} digits, the limit")
    assert isinstance(value, int | float)
    return value


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
            f"moving the dates by {_short(shift, 30)} days leaves the calendar (years 1 to 9999)"
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
        raise ToolError(f"{_short(text)} is not a date in {accepted} (YYYY-MM-DD) format{hint}")
    try:
        return date(int(year), int(month), int(day))
    except ValueError as exc:
        raise ToolError(f"{_short(text)} is not a valid date: {exc}") from exc


def _format_date(value: date, fmt: str) -> str:
    if fmt == "US":
        return f"{value.month:02d}/{value.day:02d}/{value.year:04d}"
    if fmt == "EU":
        return f"{value.day:02d}/{value.month:02d}/{value.year:04d}"
    return value.isoformat()


# --- weather --------------------------------------------------------------------------------

WMO_CODES = {
    0: "Clear sky",
    1: "Mainly clear",
    2: "Partly cloudy",
    3: "Overcast",
    45: "Fog",
    48: "Depositing rime fog",
    51: "Light drizzle",
    53: "Moderate drizzle",
    55: "Dense drizzle",
    56: "Light freezing drizzle",
    57: "Dense freezing drizzle",
    61: "Slight rain",
    63: "Moderate rain",
    65: "Heavy rain",
    66: "Light freezing rain",
    67: "Heavy freezing rain",
    71: "Slight snowfall",
    73: "Moderate snowfall",
    75: "Heavy snowfall",
    77: "Snow grains",
    80: "Slight rain showers",
    81: "Moderate rain showers",
    82: "Violent rain showers",
    85: "Slight snow showers",
    86: "Heavy snow showers",
    95: "Thunderstorm",
    96: "Thunderstorm with slight hail",
    99: "Thunderstorm with heavy hail",
}


async def current_weather(
    location: str, unit: str, *, settings: FunctionSettings, http: aiohttp.ClientSession
) -> dict[str, Any]:
    """Current conditions at the best match for ``location``, in METRIC or USCS units."""
    if not location or len(location) > MAX_LOCATION_CHARS:
        raise ToolError(
            f"the location must be a place name of 1 to {MAX_LOCATION_CHARS} characters"
        )
    place = await _geocode(location, settings=settings, http=http)
    if place is None and "," in location:  # "Paris, France": the service matches names only
        place = await _geocode(location.split(",")[0].strip(), settings=settings, http=http)
    if place is None:
        raise ToolError(
            f"no place called {_short(location)} was found; try a city name such as 'Berlin'"
        )
    temperature_unit, wind_unit, temperature_label, wind_label = WEATHER_UNITS[unit]
    params = {
        "latitude": str(place["latitude"]),
        "longitude": str(place["longitude"]),
        "current": "temperature_2m,wind_speed_10m,weather_code",
        "temperature_unit": temperature_unit,
        "wind_speed_unit": wind_unit,
    }
    answer = await _get_json(http, settings.forecast_url, params, "weather service", settings)
    current = answer.get("current") if isinstance(answer, dict) else None
    if not isinstance(current, dict) or not all(
        _is_number(current.get(k)) for k in ("temperature_2m", "wind_speed_10m", "weather_code")
    ):
        raise ToolError("the weather service answered without current conditions; try again later")
    code = int(current["weather_code"])
    return {
        "location": place["name"],
        "region": place.get("admin1"),
        "country": place.get("country"),
        "latitude": place["latitude"],
        "longitude": place["longitude"],
        "time": current.get("time"),
        "temperature": current["temperature_2m"],
        "temperature_unit": temperature_label,
        "wind_speed": current["wind_speed_10m"],
        "wind_speed_unit": wind_label,
        "weather_code": code,
        "description": WMO_CODES.get(code, f"Unknown conditions (WMO code {code})"),
    }


async def _geocode(
    name: str, *, settings: FunctionSettings, http: aiohttp.ClientSession
) -> dict[str, Any] | None:
    params = {"name": name, "count": "1"}
    answer = await _get_json(http, settings.geocoding_url, params, "geocoding service", settings)
    results = answer.get("results") if isinstance(answer, dict) else None
    if not results:
        return None
    place = results[0] if isinstance(results, list) else None
    if not (
        isinstance(place, dict)
        and isinstance(place.get("name"), str)
        and _is_number(place.get("latitude"))
        and _is_number(place.get("longitude"))
    ):
        raise ToolError("the geocoding service answered in an unexpected shape; try again later")
    return place


async def _get_json(
    http: aiohttp.ClientSession,
    url: str,
    params: Mapping[str, str],
    service: str,
    settings: FunctionSettings,
) -> Any:
    """GET ``url`` and decode its JSON; every failure becomes a ToolError naming ``service``."""
    timeout = aiohttp.ClientTimeout(total=settings.timeout_seconds)
    with client_errors(
        timed_out=f"the {service} did not answer within {settings.timeout_seconds:g} seconds; "
        "try again later",
        answered=f"the {service} answered HTTP {{status}}; try again later",
        unreachable=f"the {service} cannot be reached ({{name}}); try again later",
    ):
        async with http.get(url, params=params, timeout=timeout) as response:
            body = bytearray()
            async for chunk in response.content.iter_chunked(64 * 1024):
                body += chunk
                if len(body) > MAX_RESPONSE_BYTES:
                    raise ToolError(f"the {service}'s answer is over {MAX_RESPONSE_BYTES} bytes")
            status = response.status
    if status >= 400:
        raise ToolError(f"the {service} answered HTTP {status}; try again later")
    try:
        return json.loads(body)
    except ValueError as exc:
        raise ToolError(f"the {service} answered with something that is not JSON") from exc


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
