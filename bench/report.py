"""The benchmark report: one markdown file and one JSON file holding the same data.

Each scenario returns a ``Section``: what it measured and against which baseline, a table of
rows (plain numbers, formatted only in markdown), and notes. ``Report`` adds the machine, the
versions of what was measured and the command line, and ``write`` puts
``bench-<UTC timestamp>.md/.json`` in the reports folder, copied to ``latest.md/.json``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = (
    "samops",
    "sqlalchemy",
    "aiohttp",
    "openai",
    "pydantic",
    "psycopg",
    "pyyaml",
    "gitpython",
    "uvloop",
)


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    header: str
    digits: int = 1  # decimals shown in markdown for a float


@dataclass(slots=True)
class Section:
    """One scenario's figures (``key`` is stable: it names the section in the JSON)."""

    key: str
    title: str
    description: str
    columns: list[Column]
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped: str = ""  # why the scenario did not run ("" when it did)

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "description": self.description,
            "columns": {c.key: c.header for c in self.columns},
            "rows": self.rows,
            "notes": self.notes,
            "skipped": self.skipped or None,
        }

    def markdown(self) -> str:
        lines = [f"## {self.title}", "", self.description, ""]
        if self.skipped:
            return "\n".join([*lines, f"Skipped: {self.skipped}", ""])
        lines.append("| " + " | ".join(c.header for c in self.columns) + " |")
        lines.append("|" + "---|" * len(self.columns))
        for row in self.rows:
            cells = [_cell(row.get(c.key), c.digits) for c in self.columns]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        lines.extend(f"- {note}" for note in self.notes)
        return "\n".join([*lines, ""] if self.notes else lines)


def _cell(value: Any, digits: int) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.{digits}f}"


def ratio(value: float, baseline: float) -> float | None:
    """``value / baseline``, or None when the baseline is zero."""
    return value / baseline if baseline else None


def machine() -> dict[str, Any]:
    """CPU model and count, memory, OS, Python, and the load when the run started."""
    cpu = platform.processor() or platform.machine()
    memory_gib: float | None = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    system = f"{platform.system()} {platform.release()}"
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                system = f"{line.split('=', 1)[1].strip(chr(34))} ({system})"
    except OSError:
        pass
    return {
        "cpu_model": cpu,
        "cpu_count": os.cpu_count(),
        "memory_gib": memory_gib,
        "os": system,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def versions() -> dict[str, str | None]:
    """What was measured: the packages samops runs on, and git."""
    found: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    try:
        done = subprocess.run(["git", "--version"], capture_output=True, text=True, check=True)
        found["git"] = done.stdout.strip().removeprefix("git version ")
    except (OSError, subprocess.CalledProcessError):
        found["git"] = None
    from serve import eventloop

    found["event loop"] = eventloop.chosen()
    return found


@dataclass(slots=True)
class Report:
    command: str
    settings: dict[str, Any]
    started: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    machine: dict[str, Any] = field(default_factory=machine)
    versions: dict[str, str | None] = field(default_factory=versions)
    sections: list[Section] = field(default_factory=list)

    def to_json(self, finished: dt.datetime) -> dict[str, Any]:
        return {
            "version": 1,
            "started": self.started.isoformat(timespec="seconds"),
            "finished": finished.isoformat(timespec="seconds"),
            "duration_seconds": round((finished - self.started).total_seconds(), 1),
            "command": self.command,
            "settings": self.settings,
            "machine": self.machine,
            "versions": self.versions,
            "scenarios": {s.key: s.to_json() for s in self.sections},
        }

    def markdown(self, finished: dt.datetime) -> str:
        seconds = (finished - self.started).total_seconds()
        head = [
            "# samops benchmark report",
            "",
            f"Started {self.started:%Y-%m-%d %H:%M:%S} UTC, took {seconds:,.0f} s.",
            "",
            f"Command: `{self.command}`",
            "",
            "Ratios are against a baseline measured in the same run on the same machine: the "
            "machine is shared and noisy, so compare ratios between runs, not milliseconds.",
            "",
            "## Machine",
            "",
            "| | |",
            "|---|---|",
            *(f"| {k.replace('_', ' ')} | {_listed(v)} |" for k, v in self.machine.items()),
            "",
            "## Versions",
            "",
            "| | |",
            "|---|---|",
            *(f"| {k} | {v or 'not installed'} |" for k, v in self.versions.items()),
            "",
        ]
        return "\n".join(head + [s.markdown() for s in self.sections])

    def write(self, folder: Path) -> tuple[Path, Path]:
        """Write both files (and ``latest.*``); their paths."""
        finished = dt.datetime.now(dt.UTC)
        folder.mkdir(parents=True, exist_ok=True)
        stem = folder / f"bench-{self.started:%Y%m%dT%H%M%SZ}"
        markdown, document = stem.with_suffix(".md"), stem.with_suffix(".json")
        markdown.write_text(self.markdown(finished))
        document.write_text(json.dumps(self.to_json(finished), indent=2) + "\n")
        shutil.copyfile(markdown, folder / "latest.md")
        shutil.copyfile(document, folder / "latest.json")
        return markdown, document


def _listed(value: Any) -> str:
    return ", ".join(str(v) for v in value) if isinstance(value, list) else str(value)


def command_line(argv: list[str]) -> str:
    """How this run was started, to paste again (the interpreter relative to here if inside)."""
    python = os.path.relpath(sys.executable)
    if python.startswith(".."):
        python = sys.executable
    return shlex.join([python, "-m", "bench", *argv])
