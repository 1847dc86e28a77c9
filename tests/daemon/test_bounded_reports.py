"""Reports stay bounded whatever is committed, and the operational endpoints can be closed to
all but the admin key (issue 12, item 6: one file of 250,000 empty documents gave 250,000
errors, a 65 MB syncs row and a 65.5 MB /api/v1/status, served to anyone)."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.apikeys import digest_of, generate_key
from tests.conftest import MANIFESTS, GitRepo
from tests.daemon.conftest import SAMOPS, DaemonProcess, wait_for


def unknown_kinds(count: int, start: int = 0) -> str:
    return "".join(f"---\nkind: Nope{i}\n" for i in range(start, start + count))


def validate(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SAMOPS), "validate", str(folder), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_file_of_empty_documents_is_one_error(tmp_path: Path) -> None:
    (tmp_path / "x.yaml").write_text("---\n" * 250_000)
    done = validate(tmp_path, "-o", "json")
    diagnostics = json.loads(done.stdout)["diagnostics"]
    assert [d["code"] for d in diagnostics] == ["too-many-documents"]
    assert diagnostics[0]["message"] == "this file holds more than 1,000 YAML documents"


def test_problems_are_capped_per_file_and_counted(tmp_path: Path) -> None:
    (tmp_path / "x.yaml").write_text(unknown_kinds(900))
    diagnostics = json.loads(validate(tmp_path, "-o", "json").stdout)["diagnostics"]
    assert len(diagnostics) == 101
    assert diagnostics[-1]["code"] == "more-diagnostics"
    assert diagnostics[-1]["message"] == (
        "and 800 more problems in this file (only the first 100 are shown)"
    )


def test_problems_are_capped_per_revision_and_counted(tmp_path: Path) -> None:
    for i in range(30):
        (tmp_path / f"f{i}.yaml").write_text(unknown_kinds(60, start=i * 100))
    done = validate(tmp_path)
    assert done.stdout.count(": error: ") == 1_001
    assert "and 800 more problems in this revision (only the first 1,000 are shown)" in done.stdout


def test_status_of_a_hostile_commit_stays_small(
    start_daemon: Callable[..., DaemonProcess], git_repo: GitRepo
) -> None:
    shutil.copytree(MANIFESTS, git_repo.root / "manifests")
    good = git_repo.commit("example")
    daemon = start_daemon("--repo", str(git_repo.root), "--path", "manifests")
    daemon.applied(good)
    for i in range(30):
        (git_repo.root / f"manifests/junk/f{i}.yaml").parent.mkdir(exist_ok=True)
        (git_repo.root / f"manifests/junk/f{i}.yaml").write_text(unknown_kinds(60, i * 100))
    bad = git_repo.commit("hostile")
    status = daemon.attempted(bad)
    assert status["last_applied_revision"] == good
    assert len(status["last_sync"]["errors"]) == 20
    assert status["last_sync"]["errors_total"] == 1_001
    assert len(json.dumps(status)) < 50_000


@pytest.mark.parametrize("protect", ["status,metrics", "metrics"])
def test_operational_endpoints_can_require_the_admin_key(
    start_daemon: Callable[..., DaemonProcess], tmp_path: Path, protect: str
) -> None:
    folder = Path(shutil.copytree(MANIFESTS, tmp_path / "manifests"))
    key = generate_key()
    daemon = start_daemon(str(folder), "--admin-key-digest", digest_of(key), "--protect", protect)
    admin = {"Authorization": f"Bearer {key}"}
    for path, name in (("/api/v1/status", "status"), ("/metrics", "metrics")):
        code, body = daemon.request("GET", path)
        if name in protect:
            assert code == 401
            assert body["error"]["code"] == "admin_key_required"
            assert daemon.request("GET", path, headers={"Authorization": "Bearer nope"})[0] == 401
            assert daemon.request("GET", path, headers=admin)[0] == 200
        else:
            assert code == 200
    wait_for(lambda: daemon.request("GET", "/healthz")[0] == 200, what="healthz stays open")


def test_protect_without_an_admin_key_is_a_usage_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(SAMOPS), "run", str(tmp_path), "--protect", "status"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "--protect needs --admin-key-digest" in done.stderr
