"""The ``get_current_weather`` built-in function: Open-Meteo's geocoding and forecast.

Serve stage, called by ``functions.run_function``. Requests go only to the configured
geocoding and forecast URLs (``FunctionSettings``); the location is sent as a query
parameter, each request has a total timeout and answers are read up to 1 MiB. The HTTP
client's errors become ``ToolError`` sentences in ``client_errors`` (``errors.py``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import aiohttp

from serve.settings import FunctionSettings
from serve.tools.errors import ToolError, client_errors, short

MAX_LOCATION_CHARS = 200
MAX_RESPONSE_BYTES = 1024 * 1024
WEATHER_UNITS = {
    "METRIC": ("celsius", "kmh", "°C", "km/h"),
    "USCS": ("fahrenheit", "mph", "°F", "mph"),
}


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
            f"no place called {short(location)} was found; try a city name such as 'Berlin'"
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
