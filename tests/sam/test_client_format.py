"""Both generations of the LLMClient format validate (``sam/client_format.py``): Smarter 0.14's
flat ``spec.config`` and the current ``spec.config.prompt``/``styles`` with ``spec.extensions``,
as Smarter's own SDK models describe it. Manifests written here in Smarter's shape."""

from __future__ import annotations

import jsonschema
import pytest
import yaml
from smarter.models.sam.llmclient import SAMLLMClient

from reconciler.desired import desired_state
from reconciler.sam.schema import kind_schema
from tests.conftest import MANIFESTS, rendered, validate_text

CURRENT = """\
apiVersion: smarter.sh/v1
kind: LLMClient
metadata:
  name: concierge
  description: A hotel concierge.
  version: 1.0.0
spec:
  config:
    prompt:
      provider: openai
      defaultModel: gpt-4o
      defaultSystemRole: You are a concierge.
      defaultTemperature: 0.2
      defaultMaxTokens: 512
      appName: Concierge
      appWelcomeMessage: Welcome!
      appExamplePrompts: ["Where can I eat?"]
      allowedOrigins: [https://hotel.example.com]
    styles:
      appBackgroundImageSize: cover
      appLogoUrl: https://hotel.example.com/logo.png
      fontFamily: Inter
      mainContainer: {backgroundColor: "#fff", borderColor: "#eee"}
  extensions: [calculator, weather]
"""


def test_the_current_format_validates_and_is_the_same_client_as_in_0_14() -> None:
    revision = validate_text(CURRENT)
    assert revision.valid and revision.diagnostics == [], rendered(revision.diagnostics)
    SAMLLMClient.model_validate(yaml.safe_load(CURRENT))  # Smarter's own model agrees
    (state,) = desired_state(revision.resources).values()
    config = state.fields["spec"]["config"]
    assert (config["provider"], config["defaultModel"], config["defaultTemperature"]) == (
        "openai",
        "gpt-4o",
        0.2,
    )
    assert config["appLogoUrl"] == "https://hotel.example.com/logo.png"
    assert config["allowedOrigins"] == ["https://hotel.example.com"]
    assert config["styles"]["fontFamily"] == "Inter" and config["styles"]["appLogoUrl"] is None
    assert state.fields["spec"]["functions"] == ["calculator", "get_current_weather"]
    assert state.fields["spec"]["manifestFormat"] == "current"
    flat = validate_text(
        """\
        apiVersion: smarter.sh/v1
        kind: LLMClient
        metadata: {name: concierge, description: A hotel concierge., version: 1.0.0}
        spec:
          config:
            defaultModel: gpt-4o
            defaultSystemRole: You are a concierge.
            defaultTemperature: 0.2
            defaultMaxTokens: 512
            appName: Concierge
            appWelcomeMessage: Welcome!
            appExamplePrompts: ["Where can I eat?"]
            appLogoUrl: https://hotel.example.com/logo.png
            allowedOrigins: [https://hotel.example.com]
          functions: [calculator, weather]
        """
    )
    (older,) = desired_state(flat.resources).values()
    differing = {k for k in config if older.fields["spec"]["config"][k] != config[k]}
    assert differing == {"styles"}  # the 0.14 file has no styles


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            ("defaultTemperature: 0.2", "defaultTemprature: 0.2"),
            "m.yaml:13:7: spec.config.prompt.defaultTemprature: error: unknown key "
            "'defaultTemprature'",
        ),
        (
            ("  extensions: [calculator, weather]", "  extensions: [calculater]"),
            "m.yaml:24:16: spec.extensions[0]: error: unknown built-in function 'calculater'",
        ),
        (
            ("      provider: openai", "      provider: nowhere"),
            "m.yaml:10:17: spec.config.prompt.provider: error: no Provider 'nowhere' in this "
            "revision",
        ),
        (
            ("  config:\n", "  config:\n    defaultModel: gpt-4o-mini\n"),
            "m.yaml:8:3: spec.config: error: write the client's settings either under "
            "spec.config.prompt (Smarter's current format) or directly under spec.config "
            "(0.14), not both: defaultModel found directly",
        ),
        (
            ("  extensions:", "  functions: [datemath]\n  extensions:"),
            "m.yaml:7:1: spec: error: give the built-in functions as spec.extensions "
            "(Smarter's current name) or spec.functions (0.14), not both",
        ),
        (
            ("  extensions:", "  manifestFormat: current\n  extensions:"),
            "m.yaml:7:1: spec: error: manifestFormat is written by samops, not in manifests",
        ),
    ],
    ids=[
        "typo-in-prompt",
        "unknown-extension",
        "missing-provider",
        "both-shapes",
        "both-names",
        "samops-only-key",
    ],
)
def test_each_rule_holds_in_the_current_format(edit: tuple[str, str], expected: str) -> None:
    old, new = edit
    assert old in CURRENT
    revision = validate_text(CURRENT.replace(old, new, 1))
    assert expected in rendered(revision.errors), rendered(revision.diagnostics)


def test_a_styles_key_neither_format_knows_is_an_error_with_a_suggestion() -> None:
    revision = validate_text(CURRENT.replace("fontFamily", "fontFamilly"))
    (error,) = revision.errors
    assert error.code == "unknown-key" and error.hint == "did you mean 'fontFamily'?"
    assert error.path == "spec.config.styles.fontFamilly"


def test_the_schema_can_describe_either_generation_alone() -> None:
    current = yaml.safe_load(CURRENT)
    older = yaml.safe_load((MANIFESTS / "clients/support.yaml").read_text())
    either = kind_schema("LLMClient")
    jsonschema.validate(current, either)
    jsonschema.validate(older, either)
    jsonschema.validate(current, kind_schema("LLMClient", "current"))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(older, kind_schema("LLMClient", "current"))
    jsonschema.validate(older, kind_schema("LLMClient", "0.14"))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(current, kind_schema("LLMClient", "0.14"))
