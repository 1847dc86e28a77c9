"""``samops run --demo`` (what ``make run`` starts) also serves the example's enrolment API."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.conftest import MANIFESTS, GitRepo
from tests.daemon.conftest import DaemonProcess


def test_demo_api_answers_from_the_demo_data(repo: GitRepo, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    with sqlite3.connect(data / "stackademy.sqlite3") as db:
        db.executescript((MANIFESTS / "data/stackademy.sql").read_text())
    daemon = DaemonProcess(
        ["--demo", "--repo", str(repo.root), "--path", "manifests"],
        env={
            "SAMOPS_DATA_DIR": str(data),
            "SAMOPS_DATABASE_URL": f"sqlite:///{tmp_path / 's.sqlite3'}",
        },
        log=tmp_path / "demo.log",
    )
    try:
        path = "/demo/stackademy/courses/CS101/seats/"
        assert daemon.request("GET", path, headers={"Authorization": "Bearer t"}) == (
            200,
            {"course_code": "CS101", "seats_left": 12},
        )
        assert daemon.request("GET", path)[0] == 401
        assert (
            daemon.request(
                "GET", path.replace("CS101", "XX999"), headers={"Authorization": "Bearer t"}
            )[0]
            == 404
        )
    finally:
        assert daemon.stop() == 0
