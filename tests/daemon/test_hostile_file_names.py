"""Hostile file names in a directory source: reported as a diagnostic, never a crash.

Issue 12, item 1: a file name that is not UTF-8 made ``samops validate DIR`` print a traceback
and ``samops run DIR`` exit (and refuse to start again while the file was there).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.conftest import MANIFESTS
from tests.daemon.conftest import DaemonProcess, wait_for

BAD_NAME = os.fsdecode(b"bad\xff\xfe.yaml")
SHOWN = "bad\\xff\\xfe.yaml"
SAMOPS = Path(sys.executable).parent / "samops"


def _with_bad_name(folder: Path) -> Path:
    bad = folder / BAD_NAME
    bad.write_text((MANIFESTS / "plugins" / "gobstopper.yaml").read_text())
    return bad


def test_validate_reports_a_non_utf8_file_name_escaped(tmp_path: Path) -> None:
    folder = Path(shutil.copytree(MANIFESTS, tmp_path / "manifests"))
    _with_bad_name(folder)
    done = subprocess.run(
        [str(SAMOPS), "validate", str(folder)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stdout + done.stderr
    first = done.stdout.splitlines()[0]
    assert first.startswith(f"{folder}/{SHOWN}: error: this file name is not valid UTF-8"), first


def test_daemon_keeps_serving_through_a_non_utf8_file_name(
    start_daemon: Callable[..., DaemonProcess], tmp_path: Path
) -> None:
    folder = Path(shutil.copytree(MANIFESTS, tmp_path / "manifests"))
    daemon = start_daemon(str(folder))
    good = wait_for(lambda: daemon.status()["last_applied_revision"], what="a first apply")
    bad = _with_bad_name(folder)

    status = wait_for(
        lambda: (s := daemon.status())["last_attempted_revision"] != good and s,
        what="the bad name attempted",
    )
    assert status["last_applied_revision"] == good  # invalid: the last good state serves
    assert status["last_sync"]["outcome"] == "invalid"
    assert any(SHOWN in e.get("file", "") for e in status["last_sync"]["errors"])
    assert daemon.healthy()

    daemon.stop()
    again = start_daemon(str(folder))  # starts with the file still there
    assert again.healthy()
    bad.unlink()
    wait_for(lambda: again.status()["last_applied_revision"] == good, what="the good state again")


FORGED = "2026-11-27T00:00:00 INFO    reconciled revision=evil outcome=applied generation=999"


def test_a_file_name_cannot_forge_or_colour_a_log_line(
    start_daemon: Callable[..., DaemonProcess], tmp_path: Path
) -> None:
    # Issue 12, item 14: a committed file name holding a newline and a fake log line appeared
    # as a real line in the text log; ANSI escapes were written raw.
    folder = Path(shutil.copytree(MANIFESTS, tmp_path / "manifests"))
    daemon = start_daemon(str(folder))
    first = wait_for(lambda: daemon.status()["last_applied_revision"], what="a first apply")
    (folder / f"x\n{FORGED}\n\x1b[31mred.yaml").write_text("kind: Nope\n")
    wait_for(lambda: daemon.status()["last_attempted_revision"] != first, what="the name attempted")
    text = daemon.log.read_text()
    assert "\\n" + FORGED in text  # the name is there, escaped, on its own line's tail
    assert not any(line.startswith(FORGED) for line in text.splitlines())
    assert "\x1b" not in text
