"""Smarter's reads beyond LLM clients, by its official SDK on ``samops run``: plugins,
providers and their models, Secrets (never a value), and the caller's prompt history."""

from __future__ import annotations

from typing import Any

import pytest
from smarter.core.exceptions import AuthenticationError, NotFoundError

from reconciler.sam.ids import resource_id
from tests.daemon.conftest import wait_for
from tests.smarter.conftest import ADMIN_KEY, DEMO_KEY, Served

STACKADEMY_PLUGINS = ["stackademy_catalogue", "stackademy_enrolment"]


def test_plugins_are_those_of_the_clients_the_caller_sees(served: Served) -> None:
    assert [p.name for p in served.sdk().plugins.list()] == ["everlasting_gobstopper"]
    with_key = [p.name for p in served.sdk(DEMO_KEY).plugins.list()]
    assert with_key == ["everlasting_gobstopper", *STACKADEMY_PLUGINS]
    admin = served.sdk(ADMIN_KEY).plugins
    catalogue = admin.find("stackademy_catalogue")
    assert (catalogue.kind, catalogue.plugin_class) == ("SqlPlugin", "sql")
    manifest = admin.retrieve(catalogue.id)
    assert manifest.kind == "SqlPlugin" and manifest.metadata.name == "stackademy_catalogue"
    assert admin.describe("stackademy_catalogue").spec == manifest.spec
    with pytest.raises(AuthenticationError, match="needs the admin key"):
        served.sdk(DEMO_KEY).plugins.retrieve(catalogue.id)


def test_providers_and_the_models_used_with_them(served: Served) -> None:
    assert [p.name for p in served.sdk().providers.list()] == ["local_model", "openai"]
    admin = served.sdk(ADMIN_KEY).providers
    local = admin.retrieve("local_model")
    assert local.base_url == "http://127.0.0.1:8080/demo/local-model/v1"
    assert local.to_dict()["id"] == resource_id("Provider", "local_model")
    models: Any = admin.models  # the SDK's `list` method shadows the builtin in its hint
    assert [m.name for m in models("local_model")] == ["llama3.2"]
    assert "gpt-4o-mini" in [m.name for m in models("openai")]
    with pytest.raises(NotFoundError, match="no provider named or numbered 'nosuch'"):
        admin.retrieve("nosuch")


def test_secrets_say_where_the_value_comes_from_and_only_to_the_admin(served: Served) -> None:
    (secret,) = served.sdk(ADMIN_KEY).secrets.list()
    shown = secret.to_dict()
    assert shown["name"] == "stackademy_api_token"
    assert shown["valueFrom"] == {"env": "STACKADEMY_API_TOKEN"}
    assert "value" not in shown
    with pytest.raises(AuthenticationError, match="needs the admin key"):
        served.sdk(DEMO_KEY).secrets.list()


def test_the_prompt_history_is_the_callers_own(served: Served) -> None:
    keyed = served.sdk(DEMO_KEY)
    chat = keyed.llm_clients.chat("support")
    chat.send('call:calculator{"expression": "6*7"}')
    chat.send("any gobstopper coupons?")
    mine = wait_for(
        lambda: [s for s in keyed.history.sessions() if s.session_key == chat.session_key],
        what="the session stored",
    )
    (session,) = mine
    assert session.llmclient == resource_id("LLMClient", "support")
    assert keyed.history.session(session.id).session_key == chat.session_key
    hashed = session.to_dict()["hashed_id"]
    assert keyed.history.session(hashed).id == session.id
    calls = wait_for(
        lambda: [c for c in keyed.history.tool_calls() if c.prompt == session.id],
        what="the tool call stored",
    )
    assert [c.function_name for c in calls] == ["calculator"]
    uses = wait_for(
        lambda: [u for u in keyed.history.plugin_usage() if u.prompt == session.id],
        what="the plugin use stored",
    )
    assert [u.plugin.name for u in uses if u.plugin is not None] == ["everlasting_gobstopper"]
    assert served.sdk().history.sessions() == []
    assert chat.session_key in [s.session_key for s in served.sdk(ADMIN_KEY).history.sessions()]
    with pytest.raises(NotFoundError):
        served.sdk().history.session(session.id)
