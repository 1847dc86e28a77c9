"""The ``calculator`` built-in function: arithmetic parsed, never executed.

Serve stage, called by ``functions.run_function``. The expression (at most 500 characters) is
parsed with ``ast``; only numbers, arithmetic operators, parentheses, ``pi``, ``e`` and a fixed
list of math functions called by bare name are evaluated. Exponents are limited to ±1000 and
integer results to 1000 digits (refused before the power is computed, so ``9**9**9`` fails at
once); ``factorial`` takes at most 170; ``round`` at most 100 digits.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

from serve.tools.errors import ToolError, short

Number = int | float
MAX_EXPRESSION_CHARS = 500
MAX_EXPONENT = 1000
MAX_RESULT_DIGITS = 1000
MAX_FACTORIAL = 170
MAX_ROUND_DIGITS = 100


RESULT_LIMIT = 10**MAX_RESULT_DIGITS
BINARY_OPERATORS: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}
CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e}
FORBIDDEN = {
    ast.Attribute: "attribute access (a.b) is not allowed; call math functions by bare name, "
    "like sqrt(2)",
    ast.Subscript: "indexing (a[i]) is not allowed",
    ast.List: "lists are not allowed",
    ast.Tuple: "tuples are not allowed",
    ast.Set: "sets are not allowed",
    ast.Dict: "dictionaries are not allowed",
    ast.Lambda: "lambda functions are not allowed",
    ast.Compare: "comparisons are not allowed",
    ast.BoolOp: "'and' and 'or' are not allowed",
    ast.JoinedStr: "text is not allowed",
}
ALLOWED = (
    "use numbers, + - * / // % **, parentheses, pi, e and the functions "
    "sqrt, sin, cos, tan, asin, acos, atan, log, log10, log2, exp, floor, ceil, fabs, "
    "factorial, round, abs, min, max"
)


def _factorial(value: Number) -> int:
    if not 0 <= value <= MAX_FACTORIAL or not float(value).is_integer():
        raise ToolError(
            f"factorial takes a whole number from 0 to {MAX_FACTORIAL}, not {short(value)}"
        )
    return math.factorial(int(value))


def _round(value: Number, digits: Number | None = None) -> Number:
    if digits is None:
        return round(value)
    if abs(digits) > MAX_ROUND_DIGITS or not float(digits).is_integer():
        raise ToolError(
            f"round takes a whole number of digits from -{MAX_ROUND_DIGITS} to "
            f"{MAX_ROUND_DIGITS}, not {short(digits)}"
        )
    return round(value, int(digits))


FUNCTIONS: dict[str, tuple[Callable[..., Number], int, int]] = {
    **{
        name: (getattr(math, name), 1, 1)
        for name in ("sqrt", "sin", "cos", "tan", "asin", "acos", "atan", "log10", "log2")
    },
    **{name: (getattr(math, name), 1, 1) for name in ("exp", "floor", "ceil", "fabs")},
    "log": (math.log, 1, 2),
    "factorial": (_factorial, 1, 1),
    "round": (_round, 1, 2),
    "abs": (abs, 1, 1),
    "min": (lambda *values: min(values), 1, MAX_EXPRESSION_CHARS),
    "max": (lambda *values: max(values), 1, MAX_EXPRESSION_CHARS),
}


def calculate(expression: str) -> dict[str, Any]:
    """``{"expression", "result"}`` for an arithmetic expression, or a ToolError."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ToolError(
            f"the expression has {len(expression)} characters; the limit is {MAX_EXPRESSION_CHARS}"
        )
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except (SyntaxError, ValueError) as exc:
        raise ToolError(f"{short(expression)} is not a valid arithmetic expression") from exc
    try:
        result = _evaluate(tree)
    except ZeroDivisionError as exc:
        raise ToolError("the expression divides by zero, which is undefined") from exc
    except OverflowError as exc:
        raise ToolError("a number in the expression grows too large to compute") from exc
    except RecursionError as exc:
        raise ToolError("the expression is nested too deeply") from exc
    return {"expression": expression, "result": result}


def _evaluate(node: ast.AST) -> Number:
    match node:
        case ast.Expression(body=body):
            return _evaluate(body)
        case ast.Constant(value=bool()):
            raise ToolError("True and False are not numbers here; " + ALLOWED)
        case ast.Constant(value=int() | float() as value):
            return _checked(value)
        case ast.Constant(value=complex()):
            raise ToolError("imaginary numbers are not supported")
        case ast.Constant():
            raise ToolError("text is not allowed in an expression; " + ALLOWED)
        case ast.Name(id=name) if name in CONSTANTS:
            return CONSTANTS[name]
        case ast.Name(id=name) if name in FUNCTIONS:
            raise ToolError(f"{name} is a function; call it with parentheses, like {name}(2)")
        case ast.Name(id=name):
            raise ToolError(f"{short(name)} is not a known name; the constants are pi and e")
        case ast.UnaryOp(op=ast.USub(), operand=operand):
            return -_evaluate(operand)
        case ast.UnaryOp(op=ast.UAdd(), operand=operand):
            return +_evaluate(operand)
        case ast.BinOp(left=left, op=ast.Pow(), right=right):
            return _power(_evaluate(left), _evaluate(right))
        case ast.BinOp(op=ast.BitXor()):
            raise ToolError("^ is not supported; write powers with **, like 2**10")
        case ast.BinOp(left=left, op=op, right=right) if type(op) in BINARY_OPERATORS:
            return _checked(BINARY_OPERATORS[type(op)](_evaluate(left), _evaluate(right)))
        case ast.Call(func=ast.Name(id=name), args=args, keywords=keywords) if name in FUNCTIONS:
            if keywords:
                raise ToolError("functions take positional arguments only, like round(2.345, 2)")
            return _call(name, [_evaluate(arg) for arg in args])
        case ast.Call(func=ast.Name(id=name)):
            raise ToolError(f"{short(name)} is not a known function; " + ALLOWED)
        case ast.Call(func=ast.Attribute()):
            raise ToolError(FORBIDDEN[ast.Attribute])
    what = FORBIDDEN.get(type(node), f"{short(ast.unparse(node), 40)} is not allowed")
    raise ToolError(f"{what}; {ALLOWED}")


def _power(base: Number, exponent: Number) -> Number:
    if abs(exponent) > MAX_EXPONENT:
        raise ToolError(
            f"the exponent {short(exponent, 30)} is too large; "
            f"exponents are limited to ±{MAX_EXPONENT}"
        )
    integers = isinstance(base, int) and isinstance(exponent, int)
    if integers and abs(base) > 1 and exponent * math.log10(abs(base)) > MAX_RESULT_DIGITS + 1:
        raise ToolError(
            f"{short(base, 30)}**{exponent} has more than {MAX_RESULT_DIGITS} digits, "
            "the limit for results"
        )
    return _checked(base**exponent)


def _call(name: str, values: list[Number]) -> Number:
    function, least, most = FUNCTIONS[name]
    if not least <= len(values) <= most:
        expected = str(least) if least == most else f"{least} to {most}"
        raise ToolError(f"{name} takes {expected} argument(s), not {len(values)}")
    try:
        return _checked(function(*values))
    except ValueError as exc:
        shown = ", ".join(short(v, 30) for v in values)
        raise ToolError(
            f"{name}({shown}) is undefined: the argument is outside the function's domain"
        ) from exc


def _checked(value: object) -> Number:
    """The value when it is a real number within bounds; a ToolError otherwise."""
    if isinstance(value, complex):
        raise ToolError(
            "the result is not a real number (a negative number raised to a fractional power?)"
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise ToolError("a number in the expression grows too large to compute")
    if isinstance(value, int) and abs(value) >= RESULT_LIMIT:
        raise ToolError(f"the result has more than {MAX_RESULT_DIGITS} digits, the limit")
    assert isinstance(value, int | float)
    return value
