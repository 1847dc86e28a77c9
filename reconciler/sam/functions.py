"""Built-in functions an LLMClient can list in ``spec.functions``.

Validate resolves the names here (aliases included); Serve implements them. Smarter's docs list
``weather`` and ``datemath``, which Smarter itself rejects; samops accepts them as aliases.
"""

from __future__ import annotations

BUILTIN_FUNCTIONS: dict[str, str] = {
    "calculator": "Evaluate an arithmetic expression (numbers, + - * / ** %, math functions).",
    "date_calculator": "Compute with dates: difference, oldest, newest, convert, add, subtract.",
    "get_current_weather": "Current weather for a location (METRIC or USCS units).",
}

FUNCTION_ALIASES: dict[str, str] = {
    "weather": "get_current_weather",
    "datemath": "date_calculator",
}


def canonical_function(name: str) -> str | None:
    """The built-in function ``name`` stands for, or None when it is unknown."""
    key = name.strip().lower()
    if key in BUILTIN_FUNCTIONS:
        return key
    return FUNCTION_ALIASES.get(key)


def known_function_names() -> list[str]:
    """Every accepted spelling, canonical names first (for error messages)."""
    return [*BUILTIN_FUNCTIONS, *FUNCTION_ALIASES]
