"""Smarter's kinds samops does not manage are skipped out loud; what would drop a safety
feature is refused (``sam/unmanaged.py``). Manifests written here in Smarter's shape."""

from __future__ import annotations

import pytest

from reconciler.sam.unmanaged import UNMANAGED_KINDS
from tests.conftest import rendered, validate_text

CLIENT = """\
apiVersion: smarter.sh/v1
kind: LLMClient
metadata: {{name: helper, description: A helper., version: 1.0.0}}
spec:
  config: {{defaultSystemRole: You help.}}
{extra}"""


@pytest.mark.parametrize("kind", UNMANAGED_KINDS)
def test_a_kind_samops_does_not_manage_is_skipped_with_a_warning(kind: str) -> None:
    revision = validate_text(
        f"""\
        apiVersion: smarter.sh/v1
        kind: {kind}
        metadata:
          name: Shared-Thing
          description: Kept on Smarter.
        spec:
          anything: [goes, here]
        """
    )
    assert revision.valid and revision.resources == []
    assert rendered(revision.diagnostics) == [
        f"m.yaml:2:7: kind: warning: samops does not manage {kind} resources: "
        "'Shared-Thing' is skipped"
    ]


def test_its_envelope_is_still_checked() -> None:
    revision = validate_text(
        """\
        apiVersion: smarter.sh/v9
        kind: Vectorstore
        metadata: {description: no name}
        spec: {}
        """
    )
    assert [(d.code, d.path) for d in revision.errors] == [
        ("invalid-value", "apiVersion"),
        ("invalid-value", "metadata.name"),
    ]


def test_a_misspelt_kind_is_still_an_error_with_a_suggestion() -> None:
    revision = validate_text("apiVersion: smarter.sh/v1\nkind: Vectorstor\nmetadata: {name: a}\n")
    (error,) = revision.errors
    assert error.code == "unknown-kind" and error.hint is not None
    assert error.hint.startswith("did you mean 'Vectorstore'?")


@pytest.mark.parametrize(
    ("key", "what"), [("guardrails", "Guardrails"), ("mcpClients", "MCPClients")]
)
def test_a_client_listing_guardrails_or_mcp_clients_is_refused(key: str, what: str) -> None:
    revision = validate_text(CLIENT.format(extra=f"  {key}: [pii_redactor]\n"))
    (error,) = revision.errors
    assert error.code == "not-enforced" and error.path == f"spec.{key}"
    assert f"lists {what}, which samops does not enforce yet" in error.message
    assert (error.position.line if error.position else 0) == 6


@pytest.mark.parametrize("key", ["guardrails", "mcpClients"])
def test_an_empty_list_of_them_is_accepted(key: str) -> None:
    revision = validate_text(CLIENT.format(extra=f"  {key}: []\n"))
    assert revision.valid and revision.diagnostics == []


def test_settings_kept_for_smarter_that_do_nothing_here_are_said_so() -> None:
    flat = validate_text(
        CLIENT.replace("{{defaultSystemRole: You help.}}", "{{subdomain: helper}}").format(extra="")
    )
    assert [(d.code, d.path) for d in flat.warnings] == [("not-acted-on", "spec.config.subdomain")]
    nested = validate_text(
        CLIENT.replace(
            "{{defaultSystemRole: You help.}}",
            "{{prompt: {{customDomain: {{domain_name: chat.example.com}}}}}}",
        ).format(extra="")
    )
    (warning,) = nested.warnings
    assert (warning.code, warning.path) == ("not-acted-on", "spec.config.prompt.customDomain")
    assert "samops serves no custom domain" in warning.message
