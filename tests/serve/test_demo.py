"""``samops run --demo`` (what ``make run`` starts) also serves the example's enrolment API."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import GitRepo
from tests.daemon.conftest import DaemonProcess, demo_data_dir, wait_for


def test_demo_api_answers_from_the_demo_data(repo: GitRepo, tmp_path: Path) -> None:
    data = demo_data_dir(tmp_path)
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


def test_the_offline_demo_says_so_and_keeps_no_conversation(repo: GitRepo, tmp_path: Path) -> None:
    # Issue 12, item 18: /readyz said nothing while every answer was the demo model's echo.
    daemon = DaemonProcess(
        ["--repo", str(repo.root), "--path", "manifests"],
        env={"OPENAI_API_KEY": "", "SAMOPS_DATABASE_URL": f"sqlite:///{tmp_path / 's.sqlite3'}"},
        log=tmp_path / "demo.log",
    )
    try:
        wait_for(lambda: daemon.request("GET", "/readyz")[0] == 200, what="ready")
        assert daemon.status()["offline_demo"] is True
        assert "the offline demo model answers" in daemon.log.read_text()
    finally:
        assert daemon.stop() == 0
