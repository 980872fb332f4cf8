"""A calculator that parses arithmetic and never runs it as Python.

The expression is parsed with :mod:`ast` and walked by a small interpreter that knows only numbers,
``+ - * / // % **``, unary signs, parentheses, a few :mod:`math` functions and constants. Every
other node (names, attributes such as ``__class__``, calls to anything else, subscripts, lambdas,
comprehensions, strings) is refused with a message that names it. Limits keep a valid expression
from eating the machine: expression length, nesting depth, exponent size and result magnitude.
``eval``/``exec`` are never used. Taught in ``notebooks/agent/02_tools.ipynb``.
"""

from __future__ import annotations

import ast
import math
import operator
from typing import Callable

MAX_LENGTH = 200  # characters
MAX_DEPTH = 30  # nested nodes: "((((...))))" or "-----1" cannot blow the recursion limit
MAX_EXPONENT = 1000  # |b| in a ** b
MAX_MAGNITUDE = 1e100  # |result| of every step, so 9**9**9 stops at the first step that overflows
MAX_FACTORIAL = 100


class CalculatorError(ValueError):
    """An expression the calculator refuses or cannot compute; the message says why."""


def _factorial(n: float) -> int:
    if n != int(n) or n < 0:
        raise CalculatorError("factorial needs a non-negative whole number")
    if n > MAX_FACTORIAL:
        raise CalculatorError(f"factorial argument {n:g} is over the limit of {MAX_FACTORIAL}")
    return math.factorial(int(n))


FUNCTIONS: dict[str, Callable[..., float]] = {
    "sqrt": math.sqrt, "log": math.log, "log10": math.log10, "log2": math.log2, "exp": math.exp,
    "sin": math.sin, "cos": math.cos, "tan": math.tan, "asin": math.asin, "acos": math.acos, "atan": math.atan,
    "floor": math.floor, "ceil": math.ceil, "abs": abs, "round": round, "min": min, "max": max,
    "factorial": _factorial, "hypot": math.hypot, "radians": math.radians, "degrees": math.degrees,
}
CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e, "tau": math.tau}

_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_SYMBOL = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%", ast.Pow: "**"}


def _check_size(value: float) -> float:
    if isinstance(value, complex):
        raise CalculatorError("the result is a complex number; only real numbers are supported")
    if isinstance(value, float) and not math.isfinite(value):
        raise CalculatorError("the result is not a finite number")
    if abs(value) > MAX_MAGNITUDE:
        raise CalculatorError(f"a result exceeds the magnitude limit of {MAX_MAGNITUDE:g}")
    return value


def _describe(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return f"attribute access (.{node.attr})"
    if isinstance(node, ast.Name):
        return f"the name {node.id!r}"
    if isinstance(node, ast.Constant):
        return f"the {type(node.value).__name__} constant {node.value!r}"[:80]
    return f"{type(node).__name__} syntax"


def _eval(node: ast.AST, depth: int = 0) -> float:
    if depth > MAX_DEPTH:
        raise CalculatorError(f"the expression is nested deeper than {MAX_DEPTH} levels")
    if isinstance(node, ast.Expression):
        return _eval(node.body, depth + 1)
    if isinstance(node, ast.Constant):
        # bool is an int subclass: True + 1 is not arithmetic anyone means.
        if type(node.value) in (int, float):
            return _check_size(node.value)
        raise CalculatorError(f"{_describe(node)} is not allowed; only numbers are")
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left, depth + 1), _eval(node.right, depth + 1)
        if isinstance(node.op, ast.Pow) and abs(right) > MAX_EXPONENT:
            raise CalculatorError(f"exponent {right:g} is over the limit of {MAX_EXPONENT}")
        if isinstance(node.op, ast.Pow) and left == 0 and right < 0:
            raise CalculatorError("0 cannot be raised to a negative power")
        if isinstance(node.op, (ast.Div, ast.FloorDiv, ast.Mod)) and right == 0:
            raise CalculatorError(f"division by zero in {_SYMBOL[type(node.op)]}")
        if isinstance(node.op, ast.Pow) and isinstance(left, int) and isinstance(right, int) and left not in (-1, 0, 1):
            # Integer powers are exact and could be huge: estimate the digits before computing.
            if right * math.log10(abs(left)) > math.log10(MAX_MAGNITUDE):
                raise CalculatorError(f"a result exceeds the magnitude limit of {MAX_MAGNITUDE:g}")
        try:
            return _check_size(_BINARY[type(node.op)](left, right))
        except OverflowError:
            raise CalculatorError(f"a result exceeds the magnitude limit of {MAX_MAGNITUDE:g}") from None
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _check_size(_UNARY[type(node.op)](_eval(node.operand, depth + 1)))
    if isinstance(node, ast.Name):
        if node.id in CONSTANTS:
            return CONSTANTS[node.id]
        known = ", ".join(sorted(CONSTANTS))
        raise CalculatorError(f"unknown name {node.id!r}; constants: {known}")
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            known = ", ".join(sorted(FUNCTIONS))
            raise CalculatorError(f"calling {_describe(node.func)} is not allowed; the functions are: {known}")
        if node.keywords:
            raise CalculatorError("keyword arguments are not allowed")
        if not 1 <= len(node.args) <= 4:
            raise CalculatorError(f"{node.func.id} takes 1 to 4 arguments")
        args = [_eval(a, depth + 1) for a in node.args]
        try:
            return _check_size(FUNCTIONS[node.func.id](*args))
        except CalculatorError:
            raise
        except (ValueError, TypeError, OverflowError) as exc:
            raise CalculatorError(f"{node.func.id}({', '.join(map(str, args))}): {exc}") from None
    raise CalculatorError(f"{_describe(node)} is not allowed in a calculator expression")


def calculate(expression: str) -> float | int:
    """The value of an arithmetic expression, or a :class:`CalculatorError` that says why not."""
    if not isinstance(expression, str) or not expression.strip():
        raise CalculatorError("the expression is empty")
    if len(expression) > MAX_LENGTH:
        raise CalculatorError(f"the expression is {len(expression)} characters; the limit is {MAX_LENGTH}")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise CalculatorError(f"not an arithmetic expression: {exc.msg}") from None
    except (ValueError, MemoryError, RecursionError) as exc:  # e.g. a null byte, absurd nesting
        raise CalculatorError(f"not an arithmetic expression: {type(exc).__name__}") from None
    try:
        value = _eval(tree)
    except RecursionError:
        raise CalculatorError(f"the expression is nested deeper than {MAX_DEPTH} levels") from None
    # 2.0 -> 2 reads better in an answer; big floats stay floats.
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return int(value)
    return value
