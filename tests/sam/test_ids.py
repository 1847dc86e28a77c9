"""Smarter's ids of a resource come from its namespace and name alone (``sam/ids.py``)."""

from __future__ import annotations

import re

from reconciler.sam.ids import hashed_id, resource_id


def test_ids_are_the_same_for_the_same_resource_and_differ_between_resources() -> None:
    names = [f"client_{i}" for i in range(2000)]
    ids = {resource_id("LLMClient", n) for n in names}
    assert len(ids) == len(names)
    assert all(0 < i < 2**48 for i in ids)
    assert resource_id("LLMClient", "support") == resource_id("LLMClient", "support")
    assert resource_id("LLMClient", "support") != resource_id("SmarterAuthToken", "support")
    hashed = {hashed_id("LLMClient", n) for n in names}
    assert len(hashed) == len(names)
    assert all(re.fullmatch(r"[a-z2-7]{16}", h) for h in hashed)
    assert hashed_id("LLMClient", "support") not in {str(i) for i in ids}


def test_the_plugin_kinds_share_ids_as_they_share_names() -> None:
    assert resource_id("Plugin", "faq") == resource_id("SqlPlugin", "faq")
    assert hashed_id("ApiPlugin", "faq") == hashed_id("Plugin", "faq")
