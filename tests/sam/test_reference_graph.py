"""The reference graph is stated once (``REFERENCE_FIELDS``): a field added there is checked,
orders the plan and invalidates the serving snapshot, with no other change.

The added field is made up for the test: a Provider naming a SmarterAuthToken in its
``support_email``. Each assertion is also made without it, so the test shows the difference
the one table makes.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from reconciler.desired import desired_state
from reconciler.plan import compute_plan
from reconciler.sam.references import REFERENCE_FIELDS, kind_order
from reconciler.sam.revision import Revision
from reconciler.source import DirectorySource, validate_source
from serve.snapshot import ServingState

DIGEST = "sha256:" + "ab" * 32
FILES = {
    "provider.yaml": """
apiVersion: smarter.sh/v1
kind: Provider
metadata: {name: local}
spec:
  provider: {base_url: "http://127.0.0.1:9/v1", support_email: {support}}
""",
    "key.yaml": """
apiVersion: smarter.sh/v1
kind: SmarterAuthToken
metadata: {name: desk}
spec:
  config: {isActive: {active}, digest: ["{digest}"]}
""",
    "clients.yaml": """
apiVersion: smarter.sh/v1
kind: LLMClient
metadata: {name: on_local}
spec:
  config: {provider: local}
---
apiVersion: smarter.sh/v1
kind: LLMClient
metadata: {name: on_openai}
spec:
  config: {provider: openai}
""",
}
NEW_FIELD = (("spec", "provider", "support_email"), ("SmarterAuthToken",), False)


def revision(folder: Path, *, support: str = "desk", active: str = "false") -> Revision:
    folder.mkdir(exist_ok=True)
    for name, text in FILES.items():
        text = text.replace("{support}", support).replace("{active}", active)
        (folder / name).write_text(text.replace("{digest}", DIGEST))
    return validate_source(DirectorySource(folder))


@pytest.fixture(params=[False, True], ids=["table as shipped", "with the new field"])
def with_field(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    if request.param:
        monkeypatch.setitem(
            REFERENCE_FIELDS, "Provider", (*REFERENCE_FIELDS["Provider"], NEW_FIELD)
        )
    return bool(request.param)


def test_the_new_field_is_checked(tmp_path: Path, with_field: bool) -> None:
    checked = revision(tmp_path, support="nobody")
    missing = [d for d in checked.errors if d.code == "missing-reference"]
    assert [d.path for d in missing] == (["spec.provider.support_email"] if with_field else [])


def test_the_new_field_orders_the_plan(tmp_path: Path, with_field: bool) -> None:
    order = kind_order()
    assert (order.index("SmarterAuthToken") < order.index("Provider")) is with_field
    plan = compute_plan(desired_state(revision(tmp_path).resources), {})
    kinds = [c.kind for c in plan.changes]
    assert (kinds.index("SmarterAuthToken") < kinds.index("Provider")) is with_field


def test_the_new_field_invalidates_the_serving_snapshot(tmp_path: Path, with_field: bool) -> None:
    before = desired_state(revision(tmp_path / "a", active="false").resources)
    after = desired_state(revision(tmp_path / "b", active="true").resources)

    async def rebuilt() -> set[str]:
        async with aiohttp.ClientSession() as http:
            state = ServingState(None, http)
            state.install(1, "one", before)
            state.install(2, "two", after)
            state.close()
            return state.rebuilt

    # The key changed; only the new field makes the provider's client depend on it.
    assert asyncio.run(rebuilt()) == ({"on_local"} if with_field else set())
