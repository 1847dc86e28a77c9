"""A client written in Smarter's current format, served and described to its official SDK:
its settings from ``spec.config.prompt``, its look from ``styles``, its origins enforced, and
``describe`` answering in the shape its file used, which the SDK's own typed model reads."""

from __future__ import annotations

import urllib.request

from smarter.models.sam.llmclient import SAMLLMClient

from tests.smarter.conftest import ADMIN_KEY, Served

EXTRA_FILES = {
    "clients/concierge.yaml": """\
        apiVersion: smarter.sh/v1
        kind: LLMClient
        metadata: {name: concierge, description: A hotel concierge., version: 1.0.0}
        spec:
          config:
            prompt:
              defaultSystemRole: You are the concierge of the Grand Hotel.
              appName: Concierge
              allowedOrigins: [https://hotel.example.com]
            styles:
              appLogoUrl: https://hotel.example.com/logo.png
              fontFamily: Inter
          extensions: [calculator]
        """
}


def test_the_current_format_is_served_from_its_prompt_settings(served: Served) -> None:
    clients = served.sdk().llm_clients
    config = clients.config("concierge")
    assert config.llmclient.default_system_role == "You are the concierge of the Grand Hotel."
    assert config.llmclient.app_name == "Concierge"
    assert config.llmclient.styles is not None
    assert config.llmclient.styles.font_family == "Inter"
    assert config.llmclient.styles.app_logo_url == "https://hotel.example.com/logo.png"
    served.clear_upstream_requests()
    assert clients.prompt("concierge", "hello").text == "echo: hello"
    (sent,) = served.upstream_requests()
    assert sent["messages"][0] == {
        "role": "system",
        "content": "You are the concierge of the Grand Hotel.",
    }
    assert [e.name for e in clients.extensions("concierge")] == ["calculator"]


def test_describe_answers_in_the_current_format_which_the_sdks_model_reads(
    served: Served,
) -> None:
    manifest = served.sdk(ADMIN_KEY).llm_clients.describe("concierge")
    typed = manifest.to_sam()
    assert isinstance(typed, SAMLLMClient)
    assert typed.spec.config.prompt.defaultSystemRole == (
        "You are the concierge of the Grand Hotel."
    )
    assert typed.spec.extensions == ["calculator"]
    assert typed.spec.config.styles is not None and typed.spec.config.styles.fontFamily == "Inter"


def _preflight(served: Served, origin: str) -> str | None:
    request = urllib.request.Request(  # noqa: S310 - http://127.0.0.1
        f"{served.daemon.base}/api/v1/llm-clients/concierge/config/",
        method="OPTIONS",
        headers={"Origin": origin},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        allowed: str | None = response.headers.get("Access-Control-Allow-Origin")
        return allowed


def test_allowed_origins_are_the_only_origins_a_browser_is_allowed(served: Served) -> None:
    assert _preflight(served, "https://hotel.example.com") == "https://hotel.example.com"
    assert _preflight(served, "https://evil.example.net") is None
