"""Built-in functions: tool schemas, the calculator and its bounds against hostile input, the
date calculator, and the weather against a local Open-Meteo-shaped server on loopback."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import jsonschema
import pytest
from aiohttp import web

from reconciler.sam.functions import BUILTIN_FUNCTIONS
from serve.settings import FunctionSettings
from serve.tools.errors import ToolError
from serve.tools.functions import function_tool_schema, run_function


def run(name: str, arguments: dict[str, Any], settings: FunctionSettings | None = None) -> Any:
    """The decoded result of ``run_function``, called on a loop of its own."""

    async def call() -> str:
        async with aiohttp.ClientSession() as http:
            return await run_function(
                name, arguments, settings=settings or FunctionSettings(), http=http
            )

    return json.loads(asyncio.run(call()))


def fails_with(fragment: str, name: str, arguments: dict[str, Any]) -> str:
    """The ToolError message of a call that must fail: one line containing ``fragment``."""
    with pytest.raises(ToolError, match=re.escape(fragment)) as caught:
        run(name, arguments)
    message = str(caught.value)
    assert "\n" not in message
    assert "Traceback" not in message
    return message


# --- schemas and arguments ------------------------------------------------------------------


@pytest.mark.parametrize("name", list(BUILTIN_FUNCTIONS))
def test_each_function_is_an_openai_tool(name: str) -> None:
    tool = function_tool_schema(name)
    assert tool["type"] == "function"
    assert tool["function"]["name"] == name
    assert tool["function"]["description"] == BUILTIN_FUNCTIONS[name]
    parameters = tool["function"]["parameters"]
    jsonschema.Draft202012Validator.check_schema(parameters)
    assert parameters["type"] == "object"
    assert parameters["additionalProperties"] is False
    assert set(parameters["required"]) <= set(parameters["properties"])


@pytest.mark.parametrize(
    ("alias", "canonical"),
    [
        pytest.param("weather", "get_current_weather", id="weather"),
        pytest.param("datemath", "date_calculator", id="datemath"),
        pytest.param(" Calculator ", "calculator", id="case-and-spaces"),
    ],
)
def test_aliases_name_their_function(alias: str, canonical: str) -> None:
    assert function_tool_schema(alias)["function"]["name"] == canonical


def test_alias_runs_its_function() -> None:
    result = run("datemath", {"dates": ["2024-01-01", "2024-03-01"], "operation": "difference"})
    assert result["days"] == 60


def test_unknown_function_lists_the_known_ones() -> None:
    message = fails_with("'stockprice' is not a built-in function", "stockprice", {})
    assert "calculator, date_calculator, get_current_weather, weather, datemath" in message


@pytest.mark.parametrize(
    ("name", "arguments", "fragment"),
    [
        pytest.param(
            "calculator",
            {"expression": "1", "precision": 2},
            "calculator does not take the argument(s) 'precision'; it takes expression",
            id="unknown-argument",
        ),
        pytest.param("calculator", {}, "calculator needs the argument(s) expression", id="missing"),
        pytest.param(
            "calculator",
            {"expression": 5},
            "the argument 'expression' must be a string, not int",
            id="wrong-type",
        ),
        pytest.param(
            "date_calculator",
            {"dates": ["2024-01-01"], "operation": "multiply"},
            "the argument 'operation' must be one of difference, oldest, newest, convert, add, "
            "subtract, not 'multiply'",
            id="unknown-operation",
        ),
        pytest.param(
            "date_calculator",
            {"dates": ["2024-01-01"], "operation": "convert", "format": "JP"},
            "the argument 'format' must be one of ISO, US, EU, not 'JP'",
            id="unknown-format",
        ),
        pytest.param(
            "date_calculator",
            {"dates": ["2024-01-01"], "operation": "add", "days": "ten"},
            "the argument 'days' must be a whole number, not 'ten'",
            id="days-not-a-number",
        ),
        pytest.param(
            "date_calculator",
            {"dates": "2024-01-01", "operation": "oldest"},
            "the argument 'dates' must be a list of date strings",
            id="dates-not-a-list",
        ),
        pytest.param(
            "date_calculator",
            {"dates": [], "operation": "oldest"},
            "the argument 'dates' must list 1 to 100 dates, not 0",
            id="no-dates",
        ),
        pytest.param(
            "get_current_weather",
            {"location": "Berlin", "unit": "KELVIN"},
            "the argument 'unit' must be one of METRIC, USCS, not 'KELVIN'",
            id="unknown-unit",
        ),
    ],
)
def test_bad_arguments_are_refused_with_a_sentence(
    name: str, arguments: dict[str, Any], fragment: str
) -> None:
    fails_with(fragment, name, arguments)


# --- calculator -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        pytest.param("2 + 3 * 4", 14, id="precedence"),
        pytest.param("(2 + 3) * 4", 20, id="parentheses"),
        pytest.param("-2 ** 2", -4, id="power-binds-tighter-than-minus"),
        pytest.param("2 ** 3 ** 2", 512, id="power-is-right-associative"),
        pytest.param("7 // 2 + 7 % 3", 4, id="floor-division-and-modulo"),
        pytest.param("2 ** -2", 0.25, id="negative-exponent"),
        pytest.param("1 / 3", pytest.approx(0.333333333), id="true-division"),
        pytest.param("0.1 + 0.2", pytest.approx(0.3), id="floats"),
        pytest.param("sqrt(16) + abs(-3)", 7.0, id="functions"),
        pytest.param("2 * pi", pytest.approx(6.283185307), id="pi"),
        pytest.param("log(e)", pytest.approx(1.0), id="e-and-natural-log"),
        pytest.param("log(8, 2) + log10(1000) + log2(4)", pytest.approx(8.0), id="logarithms"),
        pytest.param("sin(pi / 2) + cos(0)", pytest.approx(2.0), id="trigonometry"),
        pytest.param("floor(2.7) + ceil(2.1)", 5, id="floor-and-ceil"),
        pytest.param("round(2.345, 2)", pytest.approx(2.35), id="round-to-digits"),
        pytest.param("factorial(5)", 120, id="factorial"),
        pytest.param("min(3, 1, 2) + max(3, 1, 2)", 4, id="min-and-max"),
        pytest.param("2 ** 1000 // 2 ** 999", 2, id="big-integers-within-bounds"),
    ],
)
def test_calculator_evaluates_arithmetic(expression: str, expected: Any) -> None:
    assert run("calculator", {"expression": expression}) == {
        "expression": expression,
        "result": expected,
    }


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        pytest.param("__import__('os')", "'__import__' is not a known function", id="import"),
        pytest.param("().__class__", "attribute access (a.b) is not allowed", id="dunder"),
        pytest.param("a.b", "attribute access (a.b) is not allowed", id="attribute"),
        pytest.param("math.sqrt(2)", "call math functions by bare name", id="math-prefix"),
        pytest.param("[1]", "lists are not allowed", id="list"),
        pytest.param("(1, 2)[0]", "indexing (a[i]) is not allowed", id="subscript"),
        pytest.param("'x' * 9", "text is not allowed", id="string"),
        pytest.param("[x for x in (1,)]", "is not allowed", id="comprehension"),
        pytest.param("(lambda: 1)()", "is not allowed", id="lambda"),
        pytest.param("x", "'x' is not a known name; the constants are pi and e", id="name"),
        pytest.param("2 ^ 3", "write powers with **", id="caret"),
        pytest.param("round(x=1)", "functions take positional arguments only", id="keywords"),
        pytest.param("9**9**9", "the exponent 387420489 is too large", id="power-tower"),
        pytest.param("10**100000", "exponents are limited to ±1000", id="huge-exponent"),
        pytest.param("999**999", "has more than 1000 digits", id="huge-power"),
        pytest.param("9**1000 * 9**1000", "the result has more than 1000 digits", id="product"),
        pytest.param("10.0 ** 400", "grows too large to compute", id="float-overflow"),
        pytest.param("exp(1000)", "grows too large to compute", id="exp-overflow"),
        pytest.param("1e999", "grows too large to compute", id="infinite-literal"),
        pytest.param("factorial(10000)", "factorial takes a whole number from 0 to 170", id="fact"),
        pytest.param("round(5, -10**9)", "round takes a whole number of digits", id="round"),
        pytest.param("1" * 501, "the expression has 501 characters; the limit is 500", id="long"),
        pytest.param("1 / 0", "the expression divides by zero", id="division-by-zero"),
        pytest.param("5 % 0", "the expression divides by zero", id="modulo-by-zero"),
        pytest.param("sqrt(-1)", "sqrt(-1) is undefined: the argument is outside", id="domain"),
        pytest.param("(-8) ** 0.5", "the result is not a real number", id="complex"),
        pytest.param("sqrt(1, 2)", "sqrt takes 1 argument(s), not 2", id="arity"),
        pytest.param("2 +", "'2 +' is not a valid arithmetic expression", id="syntax"),
    ],
)
def test_calculator_refuses_with_a_sentence(expression: str, fragment: str) -> None:
    started = time.perf_counter()
    fails_with(fragment, "calculator", {"expression": expression})
    assert time.perf_counter() - started < 1.0


# --- date calculator ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        pytest.param(
            {"dates": ["2024-01-01", "2024-03-01"], "operation": "difference"},
            {"operation": "difference", "from": "2024-01-01", "to": "2024-03-01", "days": 60},
            id="difference-iso-leap-year",
        ),
        pytest.param(
            {"dates": ["03/01/2023", "01/01/2023"], "operation": "difference", "format": "US"},
            {"operation": "difference", "from": "03/01/2023", "to": "01/01/2023", "days": -59},
            id="difference-us-backwards",
        ),
        pytest.param(
            {"dates": ["01/03/2023", "2023-03-11"], "operation": "difference", "format": "EU"},
            {"operation": "difference", "from": "01/03/2023", "to": "11/03/2023", "days": 10},
            id="difference-eu-and-iso-mixed",
        ),
        pytest.param(
            {"dates": ["2024-05-01", "1999-12-31", "2010-06-15"], "operation": "oldest"},
            {"operation": "oldest", "date": "1999-12-31"},
            id="oldest",
        ),
        pytest.param(
            {"dates": ["12/31/1999", "06/15/2010"], "operation": "newest", "format": "us"},
            {"operation": "newest", "date": "06/15/2010"},
            id="newest-us-lowercase-format",
        ),
        pytest.param(
            {"dates": ["2024-02-29"], "operation": "convert", "format": "US"},
            {
                "operation": "convert",
                "dates": [{"ISO": "2024-02-29", "US": "02/29/2024", "EU": "29/02/2024"}],
            },
            id="convert-iso",
        ),
        pytest.param(
            {"dates": ["29/02/2024", " 7/4/1776 "], "operation": "convert", "format": "EU"},
            {
                "operation": "convert",
                "dates": [
                    {"ISO": "2024-02-29", "US": "02/29/2024", "EU": "29/02/2024"},
                    {"ISO": "1776-04-07", "US": "04/07/1776", "EU": "07/04/1776"},
                ],
            },
            id="convert-eu",
        ),
        pytest.param(
            {"dates": ["2024-12-25", "2023-02-28"], "operation": "add", "days": 7},
            {"operation": "add", "days": 7, "dates": ["2025-01-01", "2023-03-07"]},
            id="add-across-year-end",
        ),
        pytest.param(
            {"dates": ["03/01/2024"], "operation": "subtract", "days": 1, "format": "US"},
            {"operation": "subtract", "days": 1, "dates": ["02/29/2024"]},
            id="subtract-us-leap-day",
        ),
        pytest.param(
            {"dates": ["01/03/2024"], "operation": "subtract", "days": -2.0, "format": "EU"},
            {"operation": "subtract", "days": -2, "dates": ["03/03/2024"]},
            id="subtract-negative-eu",
        ),
    ],
)
def test_date_calculator_computes(arguments: dict[str, Any], expected: dict[str, Any]) -> None:
    assert run("date_calculator", arguments) == expected


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        pytest.param(
            {"dates": ["2023-02-29"], "operation": "convert"},
            "'2023-02-29' is not a valid date: day is out of range for month",
            id="no-leap-day",
        ),
        pytest.param(
            {"dates": ["2023-13-01"], "operation": "convert"},
            "'2023-13-01' is not a valid date: month must be in 1..12",
            id="month-13",
        ),
        pytest.param(
            {"dates": ["12/31/2023"], "operation": "convert"},
            "'12/31/2023' is not a date in ISO (YYYY-MM-DD) format; set format to US or EU",
            id="slashes-without-format",
        ),
        pytest.param(
            {"dates": ["31/12/2023"], "operation": "convert", "format": "US"},
            "'31/12/2023' is not a valid date: month must be in 1..12",
            id="eu-date-read-as-us",
        ),
        pytest.param(
            {"dates": ["next tuesday"], "operation": "convert", "format": "EU"},
            "'next tuesday' is not a date in EU (DD/MM/YYYY) or ISO (YYYY-MM-DD) format",
            id="words",
        ),
        pytest.param(
            {"dates": ["2024-01-01"], "operation": "difference"},
            "difference needs exactly two dates, not 1",
            id="difference-one-date",
        ),
        pytest.param(
            {"dates": ["2024-01-01"] * 3, "operation": "difference"},
            "difference needs exactly two dates, not 3",
            id="difference-three-dates",
        ),
        pytest.param(
            {"dates": ["9999-12-31"], "operation": "add", "days": 1},
            "moving the dates by 1 days leaves the calendar (years 1 to 9999)",
            id="past-year-9999",
        ),
        pytest.param(
            {"dates": ["2024-01-01"], "operation": "subtract", "days": 10**12},
            "leaves the calendar",
            id="huge-days",
        ),
        pytest.param(
            {"dates": ["2024-01-01"] * 101, "operation": "oldest"},
            "the argument 'dates' must list 1 to 100 dates, not 101",
            id="too-many-dates",
        ),
    ],
)
def test_date_calculator_refuses_with_a_sentence(arguments: dict[str, Any], fragment: str) -> None:
    fails_with(fragment, "date_calculator", arguments)


# --- weather --------------------------------------------------------------------------------

PLACES = {
    "Berlin": {
        "id": 2950159,
        "name": "Berlin",
        "latitude": 52.52437,
        "longitude": 13.41053,
        "elevation": 74.0,
        "country_code": "DE",
        "timezone": "Europe/Berlin",
        "country": "Germany",
        "admin1": "Land Berlin",
    },
    "Denver": {
        "id": 5419384,
        "name": "Denver",
        "latitude": 39.73915,
        "longitude": -104.9847,
        "elevation": 1609.0,
        "country_code": "US",
        "timezone": "America/Denver",
        "country": "United States",
        "admin1": "Colorado",
    },
}


@dataclass
class OpenMeteo:
    """Open-Meteo's geocoding and forecast endpoints, scripted, recording every query."""

    forecast_status: int = 200
    stall_forecast: bool = False
    oversized_search: bool = False
    queries: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def search(self, request: web.Request) -> web.Response:
        self.queries.append((request.path, dict(request.query)))
        if self.oversized_search:
            return web.Response(body=b" " * (1024 * 1024 + 1), content_type="application/json")
        place = PLACES.get(request.query["name"])
        found = {"results": [place]} if place else {}
        return web.json_response({**found, "generationtime_ms": 0.4})

    async def forecast(self, request: web.Request) -> web.Response:
        self.queries.append((request.path, dict(request.query)))
        if self.stall_forecast:
            await asyncio.wait_for(self.release.wait(), timeout=10)
        if self.forecast_status != 200:
            return web.json_response(
                {"error": True, "reason": "scripted failure"}, status=self.forecast_status
            )
        fahrenheit = request.query["temperature_unit"] == "fahrenheit"
        return web.json_response(
            {
                "latitude": float(request.query["latitude"]),
                "longitude": float(request.query["longitude"]),
                "current_units": {
                    "time": "iso8601",
                    "interval": "seconds",
                    "temperature_2m": "°F" if fahrenheit else "°C",
                    "wind_speed_10m": "mp/h" if fahrenheit else "km/h",
                    "weather_code": "wmo code",
                },
                "current": {
                    "time": "2024-05-01T12:00",
                    "interval": 900,
                    "temperature_2m": 64.4 if fahrenheit else 18.0,
                    "wind_speed_10m": 6.2 if fahrenheit else 10.0,
                    "weather_code": 2,
                },
            }
        )


@asynccontextmanager
async def serving(upstream: OpenMeteo, timeout: float) -> AsyncIterator[FunctionSettings]:
    """``upstream`` on 127.0.0.1 (a free port), as the settings that point at it."""
    app = web.Application()
    app.router.add_get("/v1/search", upstream.search)
    app.router.add_get("/v1/forecast", upstream.forecast)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    try:
        yield FunctionSettings(
            geocoding_url=f"http://{host}:{port}/v1/search",
            forecast_url=f"http://{host}:{port}/v1/forecast",
            timeout_seconds=timeout,
        )
    finally:
        upstream.release.set()
        await runner.cleanup()


def weather(upstream: OpenMeteo, arguments: dict[str, Any], timeout: float = 5.0) -> Any:
    async def call() -> str:
        async with serving(upstream, timeout) as settings, aiohttp.ClientSession() as http:
            return await run_function("weather", arguments, settings=settings, http=http)

    return json.loads(asyncio.run(call()))


@pytest.mark.parametrize(
    ("location", "unit", "units", "expected"),
    [
        pytest.param(
            "Berlin",
            None,
            {"temperature_unit": "celsius", "wind_speed_unit": "kmh"},
            {"temperature": 18.0, "temperature_unit": "°C", "wind_speed": 10.0},
            id="metric-by-default",
        ),
        pytest.param(
            "Berlin",
            "USCS",
            {"temperature_unit": "fahrenheit", "wind_speed_unit": "mph"},
            {"temperature": 64.4, "temperature_unit": "°F", "wind_speed": 6.2},
            id="uscs",
        ),
    ],
)
def test_weather_asks_open_meteo_in_the_chosen_units(
    location: str, unit: str | None, units: dict[str, str], expected: dict[str, Any]
) -> None:
    upstream = OpenMeteo()
    arguments = {"location": location} if unit is None else {"location": location, "unit": unit}
    result = weather(upstream, arguments)
    assert upstream.queries == [
        ("/v1/search", {"name": "Berlin", "count": "1"}),
        (
            "/v1/forecast",
            {
                "latitude": "52.52437",
                "longitude": "13.41053",
                "current": "temperature_2m,wind_speed_10m,weather_code",
                **units,
            },
        ),
    ]
    assert result == {
        "location": "Berlin",
        "region": "Land Berlin",
        "country": "Germany",
        "latitude": 52.52437,
        "longitude": 13.41053,
        "time": "2024-05-01T12:00",
        "wind_speed_unit": "mph" if unit == "USCS" else "km/h",
        "weather_code": 2,
        "description": "Partly cloudy",
        **expected,
    }


def test_weather_retries_the_place_name_without_its_country() -> None:
    upstream = OpenMeteo()
    result = weather(upstream, {"location": "Denver, Colorado", "unit": "uscs"})
    searched = [query["name"] for path, query in upstream.queries if path == "/v1/search"]
    assert searched == ["Denver, Colorado", "Denver"]
    assert (result["location"], result["region"]) == ("Denver", "Colorado")


@pytest.mark.parametrize(
    ("upstream", "location", "fragment"),
    [
        pytest.param(
            OpenMeteo(),
            "Atlantis",
            "no place called 'Atlantis' was found; try a city name",
            id="unknown-location",
        ),
        pytest.param(
            OpenMeteo(forecast_status=500),
            "Berlin",
            "the weather service answered HTTP 500; try again later",
            id="forecast-500",
        ),
        pytest.param(
            OpenMeteo(stall_forecast=True),
            "Berlin",
            "the weather service did not answer within 0.2 seconds; try again later",
            id="forecast-timeout",
        ),
        pytest.param(
            OpenMeteo(oversized_search=True),
            "Berlin",
            "the geocoding service's answer is over 1048576 bytes",
            id="oversized-answer",
        ),
        pytest.param(OpenMeteo(), "  ", "the location must be a place name", id="blank"),
    ],
)
def test_weather_failures_are_sentences(upstream: OpenMeteo, location: str, fragment: str) -> None:
    started = time.perf_counter()
    with pytest.raises(ToolError, match=re.escape(fragment)):
        weather(upstream, {"location": location}, timeout=0.2)
    assert time.perf_counter() - started < 5.0


def test_weather_service_down_is_a_sentence() -> None:
    settings = FunctionSettings(
        geocoding_url="http://127.0.0.1:9/v1/search", forecast_url="http://127.0.0.1:9/v1/forecast"
    )
    with pytest.raises(ToolError, match=r"^the geocoding service cannot be reached \(\w+\)"):
        run("get_current_weather", {"location": "Berlin"}, settings)
