"""Prices of models, in US dollars per million tokens: what a chat turn costs (``usage.py``).

Serve stage. A Provider manifest declares the prices of its models in annotations, so that the
file stays valid for Smarter (``reconciler/sam/samops_annotations.py`` reads and checks them):

```yaml
metadata:
  annotations:
    - samops.dev/price.gpt-4o-mini: "0.15 / 0.60"   # input / output, USD per 1M tokens
```

A model its provider does not price gets samops' default below when it is a well-known
OpenAI model (a dated snapshot, ``gpt-4o-mini-2024-07-18``, takes its family's price); any
other model has no price, and its turns an unknown cost (NULL), never zero.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from reconciler.sam.samops_annotations import Price

__all__ = ["DEFAULT_PRICES", "Price", "price_of"]

DEFAULT_PRICES: dict[str, Price] = {
    name: Price.of(text)
    for name, text in {
        "gpt-5": "1.25 / 10.00",
        "gpt-5-mini": "0.25 / 2.00",
        "gpt-5-nano": "0.05 / 0.40",
        "gpt-4.1": "2.00 / 8.00",
        "gpt-4.1-mini": "0.40 / 1.60",
        "gpt-4.1-nano": "0.10 / 0.40",
        "gpt-4o": "2.50 / 10.00",
        "gpt-4o-mini": "0.15 / 0.60",
        "gpt-4-turbo": "10.00 / 30.00",
        "gpt-4": "30.00 / 60.00",
        "gpt-3.5-turbo": "0.50 / 1.50",
        "o1": "15.00 / 60.00",
        "o1-mini": "1.10 / 4.40",
        "o3": "2.00 / 8.00",
        "o3-mini": "1.10 / 4.40",
        "o4-mini": "1.10 / 4.40",
    }.items()
}
"""OpenAI's list prices (input / output, USD per million tokens) as published in 2025.
Check them against your contract; declare your own in the Provider (they win)."""

_DATED = re.compile(r"-\d{4}-\d{2}-\d{2}$")


def price_of(model: str, declared: Mapping[str, Price]) -> Price | None:
    """The price of ``model``: as its provider declares it, else samops' default; None when
    neither knows it (its cost is unknown)."""
    found = declared.get(model) or DEFAULT_PRICES.get(model)
    if found is None and _DATED.search(model):  # the family's price
        family = _DATED.sub("", model)
        found = declared.get(family) or DEFAULT_PRICES.get(family)
    return found
