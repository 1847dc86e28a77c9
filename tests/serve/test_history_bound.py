"""What of a session's history goes upstream with a new prompt is bounded (issue 12, item 9:
106 turns sent 212 messages; 15 large turns made a 12.3 MB upstream request)."""

from __future__ import annotations

from typing import Any

from serve.chat_http import bounded_history
from serve.settings import ChatSettings


def turns(count: int, size: int = 10) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for n in range(count):
        out += [
            {"role": "user", "content": f"q{n} " + "x" * size},
            {"role": "assistant", "content": f"a{n}"},
        ]
    return out


def test_only_the_newest_messages_within_the_count_go_upstream() -> None:
    kept = bounded_history(turns(106), ChatSettings())
    assert len(kept) == 100
    assert kept[0]["content"].startswith("q56 ") and kept[-1]["content"] == "a105"


def test_only_the_newest_messages_within_the_size_go_upstream() -> None:
    kept = bounded_history(turns(15, size=800_000), ChatSettings())
    assert sum(len(m["content"]) for m in kept) <= ChatSettings().max_history_chars
    assert kept == []  # one large message is already over the size: the prompt goes alone
    small = bounded_history(turns(15, size=50_000), ChatSettings())
    assert [m["content"][:3] for m in small] == ["q12", "a12", "q13", "a13", "q14", "a14"]


def test_history_never_starts_with_a_cut_off_tool_result() -> None:
    history: list[dict[str, Any]] = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1"}]},
        {"role": "tool", "tool_call_id": "c1", "content": "r"},
        {"role": "assistant", "content": "a"},
    ]
    kept = bounded_history(history, ChatSettings(max_history_messages=3))
    assert kept == []
    assert bounded_history(history, ChatSettings()) == history
