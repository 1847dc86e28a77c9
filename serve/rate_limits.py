"""Rate limits per client and per key: requests and tokens a minute, over every replica.

Serve stage, called by the chat routes after the key is checked and before the turn
(``chat_http.py``). A client's or a key's manifest declares them in annotations, so that the
file stays valid for Smarter (``reconciler/sam/samops_annotations.py``):

```yaml
metadata:
  annotations:
    - samops.dev/requests-per-minute: "60"
    - samops.dev/tokens-per-minute: "40000"
```

Each limit is a shared counter per calendar minute (``limits.py``): every ``samops serve``
replica and ``--workers`` process takes from the same one. A request counts 1 against the
requests limits when it is admitted. Against the tokens limits it is admitted while the
minute's tokens are not spent, and its tokens are counted when the upstream says how many it
used (so the tokens of the requests in flight may take a minute past its limit, never more).
A request over a limit is answered 429 with ``Retry-After`` (the seconds to the next minute)
and a sentence naming the limit; nothing of it reaches the upstream.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal

from reconciler.sam.samops_annotations import RateLimits
from reconciler.store.quotas import period_start
from serve.compiled import CompiledClient, Snapshot
from serve.errors import HttpError
from serve.limits import Admission, Limit, Limiter

ONE = Decimal(1)


@dataclass(slots=True)
class RateHold:
    """What a request took from its rate limits, to settle when its turn ends."""

    requests: list[Admission] = field(default_factory=list)
    tokens: list[Admission] = field(default_factory=list)

    def settle(self, limiter: Limiter, tokens: int | None) -> None:
        """The turn is over: its request counts, and its tokens (``None``: unknown, counted
        as the one token it was admitted with)."""
        for admission in self.requests:
            limiter.settle(admission, ONE)
        spent = Decimal(tokens) if tokens is not None else ONE
        for admission in self.tokens:
            limiter.settle(admission, spent)
        self.requests, self.tokens = [], []

    def release(self, limiter: Limiter) -> None:
        """Give everything back: the request was refused (by a budget) and counts nothing."""
        for admission in (*self.requests, *self.tokens):
            limiter.settle(admission, Decimal(0))
        self.requests, self.tokens = [], []


def _limits(
    client: CompiledClient, key_name: str | None, snapshot: Snapshot
) -> list[tuple[str, str, RateLimits]]:
    found = [("client", client.name, client.rate_limits)]
    if key_name is not None and key_name in snapshot.key_limits:
        found.append(("key", key_name, snapshot.key_limits[key_name]))
    return found


async def admit(
    limiter: Limiter | None, client: CompiledClient, key_name: str | None, snapshot: Snapshot
) -> RateHold:
    """Take the request from every rate limit of its client and key, or raise a 429
    ``HttpError`` (giving back what it took from the others)."""
    hold = RateHold()
    if limiter is None:
        return hold
    for whose, name, limits in _limits(client, key_name, snapshot):
        for kind, per_minute, taken in (
            ("requests", limits.requests_per_minute, hold.requests),
            ("tokens", limits.tokens_per_minute, hold.tokens),
        ):
            if per_minute is None:
                continue
            limit = Limit(f"{kind}:{whose}:{name}", "minute", Decimal(per_minute))
            admission = await limiter.admit(limit, ONE)
            if admission is None:
                for earlier in (*hold.requests, *hold.tokens):
                    limiter.settle(earlier, Decimal(0))
                raise _refused(limiter, whose, name, kind, per_minute)
            taken.append(admission)
    return hold


def _refused(limiter: Limiter, whose: str, name: str, kind: str, per_minute: int) -> HttpError:
    now = limiter.clock()
    next_minute = period_start("minute", now).timestamp() + 60
    retry = max(1, math.ceil(next_minute - now.timestamp()))
    noun = "requests" if kind == "requests" else "tokens"
    return HttpError(
        429,
        "rate_limit_exceeded",
        f"the {whose} {name!r} is limited to {per_minute:,} {noun} a minute; "
        f"try again in {retry} s",
        headers={"Retry-After": str(retry)},
        openai_type=noun,  # as OpenAI types its rate limit errors
    )
