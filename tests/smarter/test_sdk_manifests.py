"""Smarter's manifest API, as its official SDK calls it, on ``samops run``.

Reads of the format (kinds, schemas, examples, validation) answer anyone; reads of the applied
state need the admin key; writes are refused with a sentence that says which repository to
change instead, raised by the SDK as its ``ConflictError``.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from smarter.core.exceptions import AuthenticationError, ConflictError, NotFoundError

from reconciler.sam.examples import EXAMPLES
from reconciler.sam.kinds import KINDS
from tests.conftest import MANIFESTS
from tests.smarter.conftest import ADMIN_KEY, DEMO_KEY, Served


def test_whoami_names_the_keys_owner(served: Served) -> None:
    assert served.sdk(ADMIN_KEY).whoami().user.username == "admin"
    assert served.sdk(DEMO_KEY).whoami().user.username == "stackademy_advisor_key"
    me = served.sdk().whoami()
    assert me.user.username == "anonymous"
    assert me.account.account_number == "0000-0000-0000"


def test_version_and_kinds(served: Served) -> None:
    sdk = served.sdk()
    assert sdk.version().api.version == importlib.metadata.version("samops")
    assert [k.api_kind for k in sdk.kinds()] == list(KINDS)


def test_every_example_manifest_validates_and_a_typo_is_an_error_with_a_hint(
    served: Served,
) -> None:
    manifests = served.sdk().manifests
    for kind in KINDS:
        example = manifests.example_manifest(kind)
        assert example.kind == kind
        assert manifests.validate(example).valid, kind
    broken = yaml.safe_dump(EXAMPLES["LLMClient"]).replace(
        "defaultTemperature", "defaultTemprature"
    )
    checked = manifests.validate(broken)
    assert not checked.valid
    (found,) = checked.errors
    error: dict[str, Any] = dict(found) if isinstance(found, dict) else {}
    assert error["code"] == "unknown-key" and "defaultTemperature" in error["hint"]
    assert error["line"] == 1 and error["column"] > 1  # in the JSON the SDK sent


def test_json_schema_of_a_kind(served: Served) -> None:
    schema: dict[str, Any] = dict(served.sdk().llm_clients.json_schema())
    assert schema["properties"]["kind"] == {"const": "LLMClient", "title": "Kind"}
    assert "spec" in schema["required"]
    with pytest.raises(NotFoundError, match="did you mean 'LLMClient'"):
        served.sdk().manifests.json_schema("LLMClients")


def test_the_applied_state_is_read_with_the_admin_key(served: Served) -> None:
    admin = served.sdk(ADMIN_KEY)
    described = admin.llm_clients.describe("support")
    spec: dict[str, Any] = dict(described.spec)
    written = yaml.safe_load((MANIFESTS / "clients/support.yaml").read_text())
    assert described.metadata.name == "support"
    assert spec["plugins"] == written["spec"]["plugins"]
    assert spec["config"]["appName"] == written["spec"]["config"]["appName"]
    listed = admin.manifests.get("LLMClient")
    assert sorted(listed.names) == ["lab_assistant", "stackademy_advisor", "support"]
    assert {t.name for t in listed.data.titles} >= {"name", "provider", "model"}
    log: dict[str, Any] = dict(admin.manifests.logs("LLMClient", "support").data or {})
    assert log["file"] == "manifests/clients/support.yaml"
    assert log["syncs"] and log["syncs"][0]["changed_this_resource"] is True
    assert log["syncs"][0]["revision"] == log["last_changed_revision"]
    with pytest.raises(AuthenticationError, match="describe needs the admin key"):
        served.sdk(DEMO_KEY).llm_clients.describe("support")
    with pytest.raises(NotFoundError, match="there is no LLMClient named 'nosuch'"):
        admin.llm_clients.describe("nosuch")


def test_writes_are_refused_with_where_to_change_instead(served: Served) -> None:
    admin = served.sdk(ADMIN_KEY)
    with pytest.raises(ConflictError, match="follows the git repository") as refused:
        admin.manifests.apply(EXAMPLES["Plugin"])
    assert str(served.repo.root) in str(refused.value) and "folder manifests" in str(refused.value)
    calls: list[Callable[[str], object]] = [
        admin.llm_clients.delete,
        admin.llm_clients.deploy,
        admin.llm_clients.undeploy,
    ]
    for call in calls:
        with pytest.raises(ConflictError, match="changes only with a commit there"):
            call("support")
    with pytest.raises(ConflictError) as anonymous:
        served.sdk().manifests.delete("LLMClient", "support")
    assert str(served.repo.root) not in str(anonymous.value)
