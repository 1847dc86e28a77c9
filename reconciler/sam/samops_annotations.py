"""samops' own settings in a manifest, written as Smarter annotations (``samops.dev/...``).

Part of Load. Smarter's ``metadata.annotations`` is a list of one-key mappings with text values,
kept by Smarter as they are; samops reads the ones under its prefix, so that a file that sets
them stays a valid Smarter manifest. Every key under the prefix is checked when its document is
validated (with its position, like any other error): a misspelt one, or one on a kind it does
not apply to (``load.py``), is an error, never a setting silently ignored.

| key | kinds | value |
|---|---|---|
| ``samops.dev/price.<model>`` | Provider | ``"<input> / <output>"``: USD per million tokens |
| ``samops.dev/requests-per-minute`` | LLMClient, SmarterAuthToken | a whole number |
| ``samops.dev/tokens-per-minute`` | LLMClient, SmarterAuthToken | a whole number |
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

PREFIX = "samops.dev/"
PRICE_PREFIX = PREFIX + "price."
REQUESTS_PER_MINUTE = PREFIX + "requests-per-minute"
TOKENS_PER_MINUTE = PREFIX + "tokens-per-minute"
MAX_RATE = 1_000_000_000
_WHOLE = re.compile(r"^\s*\d{1,10}\s*$")
MAX_PRICE = Decimal(1_000_000)
"""USD per million tokens; above it, a typo (a price per token written per million?)."""
_PRICE = re.compile(r"^\s*(\d{1,7}(?:\.\d{1,9})?)\s*/\s*(\d{1,7}(?:\.\d{1,9})?)\s*$")
MILLION = Decimal(1_000_000)


@dataclass(frozen=True, slots=True)
class Price:
    """What a model's tokens cost, in US dollars per million."""

    input_per_million: Decimal
    output_per_million: Decimal

    @classmethod
    def of(cls, text: str) -> Price:
        """A price written ``"<input> / <output>"``; ``ValueError`` with a sentence if not."""
        match = _PRICE.match(text)
        if match is None:
            raise ValueError(
                f"the price {text[:40]!r} is not '<input> / <output>' in US dollars per "
                "million tokens (e.g. '0.15 / 0.60')"
            )
        price = cls(Decimal(match[1]), Decimal(match[2]))
        if max(price.input_per_million, price.output_per_million) > MAX_PRICE:
            raise ValueError(f"the price {text!r} is over {MAX_PRICE:,} dollars per million tokens")
        return price

    def cost(self, prompt_tokens: int, completion_tokens: int) -> Decimal:
        """US dollars."""
        spent = prompt_tokens * self.input_per_million
        spent += completion_tokens * self.output_per_million
        return spent / MILLION


@dataclass(frozen=True, slots=True)
class RateLimits:
    """Requests and tokens a minute (None: no limit)."""

    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None


def _rate(key: str, text: str) -> int:
    if _WHOLE.match(text) is None or not 0 < int(text) <= MAX_RATE:
        raise ValueError(
            f"the value of {key!r} must be a whole number from 1 to {MAX_RATE:,}, not {text[:40]!r}"
        )
    return int(text)


KINDS_OF_KEYS: dict[str, tuple[str, ...]] = {
    PRICE_PREFIX: ("Provider",),
    REQUESTS_PER_MINUTE: ("LLMClient", "SmarterAuthToken"),
    TOKENS_PER_MINUTE: ("LLMClient", "SmarterAuthToken"),
}
"""Which kinds each samops annotation applies to."""


def check_samops_annotation(key: str, text: str) -> None:
    """Raise ``ValueError`` (a sentence) unless ``key`` under samops' prefix is one samops
    reads and ``text`` a valid value for it. Keys outside the prefix are Smarter's business."""
    if not key.startswith(PREFIX):
        return
    if key.startswith(PRICE_PREFIX) and len(key) > len(PRICE_PREFIX):
        Price.of(text)
        return
    if key in (REQUESTS_PER_MINUTE, TOKENS_PER_MINUTE):
        _rate(key, text)
        return
    raise ValueError(
        f"the annotation {key!r} is not one samops reads (hint: "
        f"'{PRICE_PREFIX}<model>' on a Provider, '{REQUESTS_PER_MINUTE}' or "
        f"'{TOKENS_PER_MINUTE}' on a client or a key; see docs/usage.md)"
    )


def rate_limits(annotations: list[dict[str, str]]) -> RateLimits:
    """The rate limits a client's or a key's annotations declare (a malformed one, in a row
    written before samops read them, declares nothing)."""
    found: dict[str, int] = {}
    for annotation in annotations:
        for key, text in annotation.items():
            if key in (REQUESTS_PER_MINUTE, TOKENS_PER_MINUTE):
                try:
                    found[key] = _rate(key, text)
                except ValueError:
                    continue
    return RateLimits(found.get(REQUESTS_PER_MINUTE), found.get(TOKENS_PER_MINUTE))


def declared_prices(annotations: list[dict[str, str]]) -> dict[str, Price]:
    """The prices a Provider's annotations declare, by model (validation refused a malformed
    one before it was applied; a row written before samops read prices may hold one: it
    declares nothing)."""
    prices = {}
    for annotation in annotations:
        for key, text in annotation.items():
            if key.startswith(PRICE_PREFIX):
                try:
                    prices[key.removeprefix(PRICE_PREFIX)] = Price.of(text)
                except ValueError:
                    continue
    return prices


def misplaced(
    kind: str, annotations: list[dict[str, str]]
) -> list[tuple[int, str, tuple[str, ...]]]:
    """The samops annotations that do not apply to ``kind`` (a price on a client): their
    index in the list, their key and the kinds they apply to."""
    found: list[tuple[int, str, tuple[str, ...]]] = []
    for index, annotation in enumerate(annotations):
        for key in annotation:
            for prefix, kinds in KINDS_OF_KEYS.items():
                if key.startswith(prefix) and kind not in kinds:
                    found.append((index, key, kinds))
    return found
