"""A real ``samops run`` on the example manifests, for Smarter's official SDK to drive.

One process per test module (starting one takes seconds), following a real git repository,
on SQLite, with the tests' upstream (``tests/fakes/upstream.py``) as the ``openai`` provider,
recording what it is sent. The admin key and the demo client's key are known to the tests.
"""

from __future__ import annotations

import json
import re
import shutil
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from smarter import Smarter

from reconciler.apikeys import digest_of
from tests.conftest import MANIFESTS, GitRepo
from tests.daemon.conftest import DaemonProcess, wait_for
from tests.fakes.upstream import create_scripted_app, serve_in_thread

ADMIN_KEY = "samops_sdk-admin-key-for-tests-only"
DEMO_KEY = re.search(r"`(samops_[^`]+)`", (MANIFESTS / "README.md").read_text())[1]  # type: ignore[index]


@dataclass
class Served:
    """The running server, its repository and its upstream."""

    daemon: DaemonProcess
    repo: GitRepo
    upstream: str

    def sdk(self, key: str = "no-key-at-all") -> Smarter:
        """The official SDK as a user configures it: a key (Smarter requires one) and the
        server's URL; no retries, so a failure shows at once."""
        return Smarter(api_key=key, base_url=self.daemon.base, max_retries=0, timeout=30)

    def upstream_requests(self) -> list[dict[str, Any]]:
        base = self.upstream.removesuffix("/v1")
        with urllib.request.urlopen(f"{base}/_scripted/requests", timeout=10) as response:  # noqa: S310
            return list(json.loads(response.read()))

    def clear_upstream_requests(self) -> None:
        base = self.upstream.removesuffix("/v1")
        request = urllib.request.Request(f"{base}/_scripted/requests", method="DELETE")  # noqa: S310
        urllib.request.urlopen(request, timeout=10).close()  # noqa: S310


@pytest.fixture(scope="module")
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """The server; a test module's ``EXTRA_FILES`` ({path: text}) join the example manifests."""
    root = tmp_path_factory.mktemp("sdk")
    repo = GitRepo(root / "repo")
    shutil.copytree(MANIFESTS, repo.root / "manifests")
    for path, text in getattr(request.module, "EXTRA_FILES", {}).items():
        repo.write(f"manifests/{path}", text)
    head = repo.commit("example manifests")
    with serve_in_thread(create_scripted_app(record=True)) as upstream:
        daemon = DaemonProcess(
            ["--repo", str(repo.root), "--path", "manifests"],
            env={
                "SAMOPS_DATA_DIR": str(root / "data"),
                "SAMOPS_DATABASE_URL": f"sqlite:///{root / 'samops.sqlite3'}",
                "SAMOPS_ADMIN_KEY_DIGEST": digest_of(ADMIN_KEY),
                "OPENAI_BASE_URL": upstream,
                "OPENAI_API_KEY": "test-upstream-key",
            },
            log=root / "samops.log",
        )
        try:
            daemon.applied(head)
            # Applied, then served: /readyz answers 200 once this process serves the revision.
            wait_for(lambda: daemon.request("GET", "/readyz")[0] == 200, what="served")
            yield Served(daemon, repo, upstream)
        finally:
            daemon.stop()
