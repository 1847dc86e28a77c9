"""Load from ``wrk`` (Debian's package), the load generator of the chat scenarios.

A load generator written in Python spends more CPU per request than the server it measures;
on a 2-core machine it takes a core from the server and caps what can be seen (the chat bench
of issue 15 saw samops at 1,340 req/s with an aiohttp generator; wrk, written in C, needs a
fraction of that CPU). wrk runs one thread for ``seconds``, ``concurrency`` keep-alive
connections, each POSTing the same JSON body; a generated Lua script collects, per answer, the
status and samops' ``x-samops-overhead-ms`` header, and prints one JSON line at the end with
the throughput, latency percentiles (wrk's own histogram) and every overhead value.

When wrk is not installed (``apt-get install wrk``), ``available()`` says so and the chat bench
falls back to its aiohttp generator (and says so in its report).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCRIPT = """\
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [==[%(body)s]==]
local header = "%(header)s"
overheads = {}
count = 0
bad = 0
first_bad = 0
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function response(status, headers, body)
  if status ~= 200 then
    bad = bad + 1
    if first_bad == 0 then first_bad = status end
    return
  end
  local value = headers[header]
  if value then
    count = count + 1
    overheads[count] = tonumber(value)
  end
end

function done(summary, latency, requests)
  local values = {}
  local failures = 0
  local failed_with = 0
  for _, thread in ipairs(threads) do
    for _, v in ipairs(thread:get("overheads")) do table.insert(values, v) end
    failures = failures + thread:get("bad")
    if failed_with == 0 then failed_with = thread:get("first_bad") end
  end
  local errors = summary.errors
  io.write(string.format(
    'SAMOPS-WRK {"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p90_us": %%d, ' ..
    '"p99_us": %%d, "socket_errors": %%d, "non_200": %%d, "first_status": %%d, ' ..
    '"overheads": [%%s]}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), errors.connect + errors.read + errors.write + errors.timeout,
    failures, failed_with, table.concat(values, ",")))
end
"""


@dataclass
class WrkFigures:
    """One wrk run: throughput, latency percentiles (ms), and the overhead header's values."""

    requests: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    overheads: list[float] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds


def available() -> str | None:
    """The wrk executable, or None."""
    return shutil.which("wrk")


def run(
    url: str,
    body: dict[str, Any],
    *,
    concurrency: int,
    seconds: float,
    header: str = "x-samops-overhead-ms",
) -> WrkFigures:
    """POST ``body`` to ``url`` for ``seconds`` from ``concurrency`` connections; a failed
    answer (not 200) or a socket error fails the run, with what wrk saw."""
    executable = available()
    if executable is None:
        raise RuntimeError("wrk is not installed (apt-get install wrk)")
    encoded = json.dumps(body)
    if "]==]" in encoded:  # the Lua long bracket that holds it
        raise ValueError("the body cannot be embedded in the wrk script")
    with tempfile.TemporaryDirectory(prefix="samops-wrk-") as folder:
        script = Path(folder) / "load.lua"
        script.write_text(SCRIPT % {"body": encoded, "header": header.lower()})
        duration = max(1, round(seconds))
        done = subprocess.run(
            [
                executable,
                "-t1",
                f"-c{concurrency}",
                f"-d{duration}s",
                f"--timeout={duration + 10}s",
                "-s",
                str(script),
                url,
            ],
            capture_output=True,
            text=True,
            timeout=duration + 60,
            check=False,
        )
    line = next((x for x in done.stdout.splitlines() if x.startswith("SAMOPS-WRK ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    figures = json.loads(line.removeprefix("SAMOPS-WRK "))
    if figures["non_200"] or figures["socket_errors"]:
        raise RuntimeError(
            f"{url}: {figures['non_200']} answers were not 200 (the first: "
            f"{figures['first_status']}), {figures['socket_errors']} socket errors"
        )
    return WrkFigures(
        requests=figures["requests"],
        seconds=figures["duration_us"] / 1e6,
        p50_ms=figures["p50_us"] / 1000,
        p90_ms=figures["p90_us"] / 1000,
        p99_ms=figures["p99_us"] / 1000,
        overheads=[float(v) for v in figures["overheads"]],
    )
