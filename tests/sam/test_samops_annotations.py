"""samops' settings written as Smarter annotations (``reconciler/sam/samops_annotations.py``):
checked with their position like any other value; a misspelt key is an error."""

from __future__ import annotations

import pytest

from tests.conftest import rendered, validate_text

PROVIDER = """\
apiVersion: smarter.sh/v1
kind: Provider
metadata:
  name: priced
  description: A provider that prices its models.
  annotations:
    - team.example/owner: platform
    - {key}: {value}
spec:
  provider: {{name: Priced, base_url: "http://127.0.0.1:9/v1"}}
"""


def test_a_declared_price_validates() -> None:
    revision = validate_text(PROVIDER.format(key="samops.dev/price.gpt-4o-mini", value="0.15/0.6"))

    assert revision.valid, rendered(revision.diagnostics)


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        pytest.param(
            "samops.dev/price.gpt-4o-mini",
            "cheap",
            "the price 'cheap' is not '<input> / <output>' in US dollars per million tokens",
            id="not-a-price",
        ),
        pytest.param(
            "samops.dev/price.gpt-4o-mini",
            '"2000000 / 1"',
            "is over 1,000,000 dollars per million tokens",
            id="absurd-price",
        ),
        pytest.param(
            "samops.dev/prize.gpt-4o-mini",
            '"1 / 2"',
            "the annotation 'samops.dev/prize.gpt-4o-mini' is not one samops reads",
            id="misspelt-key",
        ),
    ],
)
def test_a_wrong_samops_annotation_is_an_error_at_its_line(key: str, value: str, says: str) -> None:
    revision = validate_text(PROVIDER.format(key=key, value=value))

    assert not revision.valid
    errors = rendered(revision.diagnostics)
    assert any(
        e.startswith("m.yaml:8:7: metadata.annotations[1]: error:") and says in e for e in errors
    ), errors


def test_a_price_on_a_client_is_an_error_not_ignored() -> None:
    revision = validate_text("""\
        apiVersion: smarter.sh/v1
        kind: LLMClient
        metadata:
          name: support
          description: A client.
          annotations:
            - samops.dev/price.gpt-4o-mini: "1 / 2"
        spec:
          config: {provider: openai, defaultModel: gpt-4o-mini, defaultSystemRole: Help.}
        """)

    assert not revision.valid
    assert (
        "m.yaml:7:7: metadata.annotations[0]: error: the annotation "
        "'samops.dev/price.gpt-4o-mini' applies to Provider, not to LLMClient"
    ) in rendered(revision.diagnostics)
