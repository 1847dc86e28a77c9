"""The store's mapping and the reports name model attributes; the manifest's spelling of each
is derived from the model (``alias_path``), never written a second time."""

from __future__ import annotations

import pytest

from reconciler.sam.base import alias_path
from reconciler.sam.kinds import LLMClient, Provider, Secret
from reconciler.store.mapping import KIND_TABLES


@pytest.mark.parametrize(
    ("model", "attributes", "keys"),
    [
        (LLMClient, ("spec", "config", "default_model"), ("spec", "config", "defaultModel")),
        (LLMClient, ("spec", "api_key"), ("spec", "apiKey")),
        (Provider, ("spec", "provider", "base_url"), ("spec", "provider", "base_url")),
        (Secret, ("spec", "config", "value_from", "env"), ("spec", "config", "valueFrom", "env")),
        (Secret, ("spec", "config", "expiration_date"), ("spec", "config", "expiration_date")),
    ],
)
def test_an_attribute_path_is_spelled_as_manifests_spell_it(
    model: type, attributes: tuple[str, ...], keys: tuple[str, ...]
) -> None:
    assert alias_path(model, attributes) == keys


def test_a_manifest_spelling_is_not_an_attribute() -> None:
    with pytest.raises(LookupError, match="defaultModel"):
        alias_path(LLMClient, ("spec", "config", "defaultModel"))


def test_the_mapping_is_stated_in_attributes_and_stored_in_manifest_keys() -> None:
    client = KIND_TABLES["LLMClient"]
    paths = {c.column: c.path for c in client.columns}
    assert paths["default_model"] == ("spec", "config", "defaultModel")
    assert {link.path for link in client.links} >= {("spec", "apiKey"), ("spec", "plugins")}
