"""The SDK tour (``integrations/smarter/sdk_tour.py``), every SDK call samops answers, runs
clean against a real ``samops run``, with and without the admin key."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT
from tests.smarter.conftest import ADMIN_KEY, Served

TOUR = PROJECT_ROOT / "integrations/smarter/sdk_tour.py"


def _tour() -> object:
    spec = importlib.util.spec_from_file_location("sdk_tour", TOUR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("admin", [True, False], ids=["admin-key", "no-admin-key"])
def test_the_tour_runs_every_call_clean(
    served: Served, admin: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    tour = _tour()
    argv = ["--url", served.daemon.base] + (["--admin-key", ADMIN_KEY] if admin else [])
    code = tour.main(argv)  # type: ignore[attr-defined]
    lines = capsys.readouterr().out.splitlines()
    assert code == 0, "\n".join(lines)
    assert len(lines) == 28 and not any("FAILED" in line for line in lines)
    refused = [line.split()[0] for line in lines if " refused: " in line]
    expected = ["manifests.apply(example)", "llm_clients.delete(name)"]
    if not admin:
        expected = [
            "llm_clients.describe(name)",
            "manifests.get('LLMClient')",
            "manifests.logs('LLMClient',",
            "secrets.list()",
            *expected,
        ]
    assert refused == expected


def test_the_tour_is_where_the_docs_say() -> None:
    assert Path(TOUR).is_file()
    assert "integrations/smarter/sdk_tour.py" in (PROJECT_ROOT / "docs/smarter.md").read_text()
