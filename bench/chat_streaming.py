"""Streaming: how much later than the upstream's does samops' first token reach the caller.

Part of the chat bench (``bench/chat.py``), on its one-process set-up. One caller at a time
(aiohttp, keep-alive) asks for a streamed answer, ``requests`` times directly from the upstream
and as many times through samops' OpenAI route (the client with everything on); each time the
clock runs from sending the request to the first SSE event that carries content (what a person
sees first; samops holds a round's chunks until its first content, to know whether samops'
own tools are called). The upstream paces its chunks (``#pace=5``: 5 ms apart), so the first
content and the end of the stream are apart. Reported: medians and p90 of both, and what samops
adds (issue 18's goal: within 1 ms of the upstream's).
"""

from __future__ import annotations

import json
import statistics
import time
from typing import Any

import aiohttp

from bench.common import percentile
from bench.report import Column, Section
from serve import eventloop

PROMPT = {"role": "user", "content": "tell me a story in a few words #pace=5"}
REQUESTS = 200
COLUMNS = [
    Column("scenario", "scenario"),
    Column("requests", "requests"),
    Column("first_content_median_ms", "first content median ms", 2),
    Column("first_content_p90_ms", "first content p90 ms", 2),
    Column("added_median_ms", "added median ms (vs direct)", 2),
]


async def _first_content(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> float:
    started = time.perf_counter()
    first = None
    async with session.post(url, json=body) as response:
        if response.status != 200:
            raise RuntimeError(f"{url} answered {response.status}: {await response.text()}")
        async for line in response.content:
            if first is None and line.startswith(b"data: {"):
                choices = json.loads(line[6:]).get("choices") or [{}]
                if (choices[0].get("delta") or {}).get("content"):
                    first = time.perf_counter() - started
    if first is None:
        raise RuntimeError(f"{url} streamed no content")
    return first


async def _measure(
    direct: str, samops: str, floor_sdk: str | None, requests: int
) -> dict[str, list[float]]:
    upstream_body = {"model": "gpt-4o-mini", "messages": [PROMPT], "stream": True}
    bodies = {
        "direct": (direct, upstream_body),
        "samops": (samops, {"model": "support_limited", "messages": [PROMPT], "stream": True}),
    }
    if floor_sdk:
        bodies["floor_sdk"] = (floor_sdk, upstream_body)
    times: dict[str, list[float]] = {name: [] for name in bodies}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        for url, body in bodies.values():  # warm up both
            await _first_content(session, url, body)
        for _ in range(requests):  # interleaved, so that both see the same machine
            for name, (url, body) in bodies.items():
                times[name].append(await _first_content(session, url, body))
    return times


def measure(
    direct: str, samops: str, floor_sdk: str | None = None, requests: int = REQUESTS
) -> dict[str, list[float]]:
    """Seconds to the first content, per request: ``direct``, ``samops`` and the floor with
    the SDK (``bench/floor.py --via sdk``) when given (their chat completion URLs)."""
    return eventloop.run(_measure(direct, samops, floor_sdk, requests))


NAMES = {
    "direct": "direct to the upstream",
    "samops": "samops, openai route",
    "floor_sdk": "floor + the openai SDK",
}


def section(times: dict[str, list[float]]) -> Section:
    base = statistics.median(times["direct"])
    rows = [
        {
            "scenario": NAMES[name],
            "requests": len(found),
            "first_content_median_ms": statistics.median(found) * 1000,
            "first_content_p90_ms": percentile(found, 0.9) * 1000,
            "added_median_ms": (statistics.median(found) - base) * 1000,
        }
        for name, found in times.items()
    ]
    added = rows[1]["added_median_ms"]
    notes = [f"Goal: the first content within 1 ms of the upstream's: samops adds {added:.2f} ms."]
    if len(rows) > 2:
        notes.append(
            f"The floor with the SDK (a pass-through proxy calling the upstream as samops "
            f"does, no other logic) adds {rows[2]['added_median_ms']:.2f} ms."
        )
    return Section(
        "chat-streaming",
        "Chat streaming: time to the first content, samops against the upstream",
        f"One caller, {len(times['direct'])} streamed answers each way, interleaved; the clock "
        "runs from sending the request to the first SSE event with content. The upstream sends "
        "its chunks 5 ms apart.",
        COLUMNS,
        rows,
        notes,
    )
