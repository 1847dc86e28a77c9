"""Smarter's official SDK reads and prompts LLM clients on ``samops run``, unchanged.

Every call is the SDK's own (``smarter-api``), against a real server following a real
repository of the example manifests: the reads and who sees what, the chat configuration, a
prompt, a chat of several turns, a streamed prompt with a tool round, and the errors, raised
as the SDK's exception classes with samops' sentences.
"""

from __future__ import annotations

import pytest
from smarter.core.exceptions import AuthenticationError, InternalServerError, NotFoundError
from smarter.resources.llmclients import SmarterPromptError

from reconciler.sam.ids import hashed_id, resource_id
from tests.daemon.conftest import wait_for
from tests.smarter.conftest import ADMIN_KEY, DEMO_KEY, Served

PUBLIC = ["lab_assistant", "support"]
KEYED = "stackademy_advisor"


def test_a_list_shows_the_public_clients_and_a_key_adds_its_own(served: Served) -> None:
    assert [c.name for c in served.sdk().llm_clients.list()] == PUBLIC
    assert [c.name for c in served.sdk(DEMO_KEY).llm_clients.list()] == sorted([*PUBLIC, KEYED])
    everyone = served.sdk(ADMIN_KEY).llm_clients.list()
    assert KEYED in [c.name for c in everyone]
    keyed = next(c for c in everyone if c.name == KEYED)
    assert keyed.is_authentication_required is True
    assert keyed.ready is True
    assert str(keyed.url_llmclient).endswith(f"/api/v1/llm-clients/{keyed.id}/prompt/")


def test_a_client_is_found_by_name_id_and_hashed_id(served: Served) -> None:
    clients = served.sdk().llm_clients
    support = clients.find("support")
    assert support.id == resource_id("LLMClient", "support")
    assert support.hashed_id == hashed_id("LLMClient", "support")
    for reference in (support.id, support.hashed_id, "support"):
        found = clients.retrieve(reference)
        assert (found.id, found.name, found.hashed_id) == (support.id, "support", support.hashed_id)
    assert found.provider == "openai"
    assert found.default_system_role and "Willy Wonka" in found.default_system_role
    assert [e.name for e in found.extensions] == ["calculator", "date_calculator"]
    assert [p.name for p in found.plugins] == ["everlasting_gobstopper"]


def test_a_client_the_caller_may_not_see_is_not_found(served: Served) -> None:
    with pytest.raises(NotFoundError, match="no LLM client named or numbered 'stackademy_advisor'"):
        served.sdk().llm_clients.retrieve(KEYED)
    with pytest.raises(NotFoundError, match="'12345'"):
        served.sdk(ADMIN_KEY).llm_clients.retrieve(12345)
    assert served.sdk(DEMO_KEY).llm_clients.retrieve(KEYED).name == KEYED


def test_plugins_extensions_and_keys_of_a_client(served: Served) -> None:
    clients = served.sdk(DEMO_KEY).llm_clients
    support = clients.find("support")
    (plugin,) = clients.plugins(support.id)
    assert plugin.llmclient == support.id
    assert plugin.plugin_meta.name == "everlasting_gobstopper"
    assert plugin.plugin_meta.plugin_class == "static"
    assert plugin.plugin_meta.id == resource_id("Plugin", "everlasting_gobstopper")
    assert [e.name for e in clients.extensions(support.id)] == ["calculator", "date_calculator"]
    assert clients.api_keys(support.id) == []
    keyed = clients.find(KEYED)
    (key,) = clients.api_keys(keyed.id)
    shown = key.to_dict()
    assert shown["name"] == "stackademy_advisor_key"
    assert shown["digests"] == ["sha256:c9d19165d2e8…"]
    assert DEMO_KEY not in str(
        shown
    ) and "c9d19165d2e87c677f3de1a62f06b749164ce2eb79e6d5aaf85b56bf072e2e45" not in str(shown)


def test_the_chat_configuration_opens_a_session(served: Served) -> None:
    clients = served.sdk().llm_clients
    support = clients.find("support")
    config = clients.config(support.id)
    assert len(config.session_key) == 64
    assert config.llmclient.id == support.id and config.llmclient.name == "support"
    assert config.history.chat_history == []
    assert config.plugins.meta_data.total_plugins == 1 and config.plugins.plugins == []
    verbose = clients.config(support.id, verbose=True)
    assert [p.plugin_meta.name for p in verbose.plugins.plugins] == ["everlasting_gobstopper"]
    assert verbose.extensions is not None
    assert [e.name for e in verbose.extensions.extensions] == ["calculator", "date_calculator"]
    assert verbose.session_key != config.session_key


def test_a_prompt_answers_with_the_turns_messages_and_the_completion(served: Served) -> None:
    served.clear_upstream_requests()
    response = served.sdk().llm_clients.prompt("support", "hello there")
    assert response.data.status == 200
    assert response.text == "echo: hello there"
    assert [m.role for m in response.data.messages] == ["assistant"]
    assert response.data.completion is not None
    (choice,) = response.data.completion.choices
    assert choice.message is not None and choice.message.content == "echo: hello there"
    assert response.data.completion.usage is not None
    assert response.data.plugins == []  # the gobstopper plugin is selected by search terms
    assert set(response.data.tools) == {"calculator", "date_calculator"}
    (sent,) = served.upstream_requests()
    assert [m["role"] for m in sent["messages"]] == ["system", "user"]


def test_a_chat_of_several_turns_keeps_its_session(served: Served) -> None:
    clients = served.sdk().llm_clients
    chat = clients.chat("support")
    system_role = str(chat.config.llmclient.default_system_role)
    served.clear_upstream_requests()
    assert chat.send("first question").text == "echo: first question"
    assert chat.send("second question").text == "echo: second question"
    assert chat.send("any gobstopper coupons?").text == "echo: any gobstopper coupons?"
    sent = served.upstream_requests()
    # One system prompt (the client's, with the selected plugin's), never the echoed one twice.
    last = sent[-1]["messages"]
    assert [m["role"] for m in last] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert last[0]["content"].startswith(system_role.strip()[:40])
    assert [m["content"] for m in last if m["role"] == "user"] == [
        "first question",
        "second question",
        "any gobstopper coupons?",
    ]
    resumed = clients.config("support", session_key=chat.session_key)
    history = [(m.role, m.content) for m in resumed.history.chat_history]
    assert ("user", "second question") in history
    assert history[-1] == ("assistant", "echo: any gobstopper coupons?")


def test_a_streamed_prompt_shows_its_tool_round_then_the_same_answer(served: Served) -> None:
    clients = served.sdk().llm_clients
    prompt = 'call:calculator{"expression": "6*7"}'
    with clients.stream("support", prompt) as stream:
        events = [(e.type, e.message) for e in stream]
        streamed = stream.response
    assert [kind for kind, _ in events] == [
        "llm_request",
        "tool_requested",
        "tool_responded",
        "llm_request",
    ]
    assert events[1][1] == "Calling calculator"
    plain = clients.prompt("support", prompt)
    assert streamed.text == plain.text and '"result": 42' in plain.text
    assert [m.role for m in streamed.data.messages] == ["assistant", "tool", "assistant"]
    assert streamed.data.status == 200


def test_errors_arrive_as_the_sdks_exceptions_with_samops_sentences(served: Served) -> None:
    clients = served.sdk().llm_clients
    # The SDK always sends a key; one that opens nothing is refused as invalid.
    with pytest.raises(AuthenticationError, match="this API key is not valid") as refused:
        clients.prompt(resource_id("LLMClient", KEYED), "hello")
    assert refused.value.error is not None and refused.value.error.errorClass == "InvalidKey"
    with pytest.raises(NotFoundError, match="no LLM client"):
        clients.config("nosuch")
    with pytest.raises(InternalServerError, match="provider 'openai'"):
        clients.prompt("support", "fail please #status=500")
    with clients.stream("support", "fail please #status=500") as stream:
        list(stream)
        with pytest.raises(SmarterPromptError, match="provider 'openai'"):
            _ = stream.response
        assert stream.result is not None and stream.result.status == 502


def test_ids_hold_when_a_commit_changes_the_client(served: Served) -> None:
    clients = served.sdk().llm_clients
    before = clients.find("support")
    path = served.repo.root / "manifests/clients/support.yaml"
    path.write_text(path.read_text().replace("Willy Wonka", "Wonka Industries"))
    served.daemon.applied(served.repo.commit("support: the company's new name"))
    # Applied is not yet served: the serving snapshot follows within moments.
    after = wait_for(
        lambda: (
            (found := clients.retrieve(before.id))
            and "Wonka Industries" in str(found.default_system_role)
            and found
        ),
        what="the new generation served",
    )
    assert (after.id, after.hashed_id) == (before.id, before.hashed_id)
