"""A small, bounded evaluator of Python expressions for ``python_eval``.

It walks the expression's syntax tree itself instead of calling ``eval``: literals,
arithmetic, comparisons, boolean logic, conditional expressions, subscripts, comprehensions
and a short list of pure built-in functions. There are no attributes, imports, lambdas,
assignments or dunder names, so nothing reaches an object's internals. Work is bounded: a
step budget covers loops and comprehensions, and sizes of numbers, strings and containers are
checked before they are built (``9**9**9`` or ``"x" * 10**10`` are refused, not computed).
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Iterable, Mapping
from typing import Any

MAX_STEPS = 1_000_000
MAX_INT_BITS = 4096
MAX_ITEMS = 1_000_000


class UnsafeExpression(ValueError):
    """The expression uses something ``python_eval`` does not allow, or exceeds a bound."""


_BIN: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
    ast.Pow: operator.pow, ast.BitAnd: operator.and_, ast.BitOr: operator.or_,
    ast.BitXor: operator.xor, ast.LShift: operator.lshift, ast.RShift: operator.rshift,
}
_UNARY: dict[type, Callable[[Any], Any]] = {
    ast.UAdd: operator.pos, ast.USub: operator.neg, ast.Not: operator.not_,
    ast.Invert: operator.invert,
}
_CMP: dict[type, Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge, ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b, ast.Is: operator.is_, ast.IsNot: operator.is_not,
}
_LITERAL_TYPES = (int, float, complex, str, bool, type(None))


def _bounded_range(*args: Any) -> range:
    r = range(*args)
    if len(r) > MAX_ITEMS:
        raise UnsafeExpression(f"range of {len(r):,} items is over the limit of {MAX_ITEMS:,}")
    return r


def _round(x: Any, n: Any = None) -> Any:
    return round(x) if n is None else round(x, n)


def _sorted(items: Iterable[Any], reverse: bool = False) -> list[Any]:
    return sorted(items, reverse=bool(reverse))


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sum": sum, "min": min, "max": max, "len": len, "range": _bounded_range, "abs": abs,
    "round": _round, "sorted": _sorted, "all": all, "any": any, "int": int, "float": float,
    "str": str, "bool": bool, "list": list, "tuple": tuple, "set": set, "dict": dict,
    "enumerate": enumerate, "zip": zip, "reversed": reversed, "divmod": divmod,
}
#: keyword arguments a function accepts
_KEYWORDS = {"sorted": {"reverse"}}
CONSTANTS = {"True": True, "False": False, "None": None, "pi": math.pi, "e": math.e}

_ALLOWED_NODES = (
    ast.Expression, ast.Constant, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.IfExp,
    ast.List, ast.Tuple, ast.Set, ast.Dict, ast.ListComp, ast.SetComp, ast.DictComp,
    ast.GeneratorExp, ast.comprehension, ast.Name, ast.Load, ast.Store, ast.Call,
    ast.Subscript, ast.Slice, ast.keyword, ast.And, ast.Or,
    *_BIN, *_UNARY, *_CMP,
)


def check(expression: str, names: Iterable[str] = ()) -> ast.Expression:
    """Parse and check ``expression``; raises :class:`UnsafeExpression` naming what is not
    allowed."""
    if not isinstance(expression, str):
        raise UnsafeExpression("the expression must be a string")
    if len(expression) > 10_000:
        raise UnsafeExpression("the expression is longer than 10,000 characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        raise UnsafeExpression(f"not a Python expression: {exc.msg}") from None
    known = set(FUNCTIONS) | set(CONSTANTS) | set(names)
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.comprehension):
            for t in ast.walk(node.target):
                if isinstance(t, ast.Name):
                    bound.add(t.id)
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id.startswith("_"):
            raise UnsafeExpression(f"the name {node.id!r} is not allowed (no private or "
                                   "dunder names)")
        if not isinstance(node, _ALLOWED_NODES):
            raise UnsafeExpression(f"{_describe(node)} is not allowed in python_eval")
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            if node.id not in known and node.id not in bound:
                raise UnsafeExpression(f"unknown name {node.id!r}; allowed functions: "
                                       f"{', '.join(sorted(FUNCTIONS))}")
        elif isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
                raise UnsafeExpression("only these functions can be called: "
                                       f"{', '.join(sorted(FUNCTIONS))}")
            allowed = _KEYWORDS.get(node.func.id, set())
            for kw in node.keywords:
                if kw.arg not in allowed:
                    raise UnsafeExpression(f"{node.func.id}() takes no keyword {kw.arg!r} here")
        elif isinstance(node, ast.Constant) and not isinstance(node.value, _LITERAL_TYPES):
            raise UnsafeExpression(f"a {type(node.value).__name__} literal is not allowed")
        elif isinstance(node, ast.comprehension) and node.is_async:
            raise UnsafeExpression("async comprehensions are not allowed")
    return tree


def _describe(node: ast.AST) -> str:
    names = {ast.Attribute: "attribute access", ast.Lambda: "lambda", ast.NamedExpr:
             "assignment (:=)", ast.JoinedStr: "an f-string", ast.Await: "await",
             ast.Starred: "unpacking with *"}
    return names.get(type(node), f"`{type(node).__name__}`")


def evaluate(expression: str, variables: Mapping[str, Any] | None = None) -> Any:
    """The value of ``expression`` with ``variables`` bound (JSON-like values)."""
    variables = dict(variables or {})
    for k in variables:
        if not isinstance(k, str) or not k.isidentifier() or k.startswith("_"):
            raise UnsafeExpression(f"bad variable name {k!r}")
    tree = check(expression, variables)
    return _Eval({**CONSTANTS, **variables}).run(tree.body)


class _Eval:
    def __init__(self, scope: dict[str, Any]) -> None:
        self.scope = scope
        self.steps = 0

    def tick(self, n: int = 1) -> None:
        self.steps += n
        if self.steps > MAX_STEPS:
            raise UnsafeExpression(f"the expression takes more than {MAX_STEPS:,} steps")

    def run(self, node: ast.expr) -> Any:
        self.tick()
        t = type(node)
        if t is ast.Constant:
            return node.value  # type: ignore[attr-defined]
        if t is ast.Name:
            name = node.id  # type: ignore[attr-defined]
            if name in self.scope:
                return self.scope[name]
            return FUNCTIONS[name]
        if t is ast.BinOp:
            return self.binop(node)  # type: ignore[arg-type]
        if t is ast.UnaryOp:
            v = self.run(node.operand)  # type: ignore[attr-defined]
            return _UNARY[type(node.op)](v)  # type: ignore[attr-defined]
        if t is ast.BoolOp:
            is_and = isinstance(node.op, ast.And)  # type: ignore[attr-defined]
            value: Any = None
            for v in node.values:  # type: ignore[attr-defined]
                value = self.run(v)
                if bool(value) != is_and:
                    return value
            return value
        if t is ast.Compare:
            left = self.run(node.left)  # type: ignore[attr-defined]
            for op, comp in zip(node.ops, node.comparators, strict=True):  # type: ignore[attr-defined]
                right = self.run(comp)
                if not _CMP[type(op)](left, right):
                    return False
                left = right
            return True
        if t is ast.IfExp:
            test = self.run(node.test)  # type: ignore[attr-defined]
            return self.run(node.body if test else node.orelse)  # type: ignore[attr-defined]
        if t in (ast.List, ast.Tuple, ast.Set):
            items = [self.run(e) for e in node.elts]  # type: ignore[attr-defined]
            return {ast.List: list, ast.Tuple: tuple, ast.Set: set}[t](items)
        if t is ast.Dict:
            return {self.run(k): self.run(v)
                    for k, v in zip(node.keys, node.values, strict=True)}  # type: ignore[attr-defined]
        if t in (ast.ListComp, ast.SetComp, ast.GeneratorExp):
            out = list(self.comprehend(node.generators, lambda: self.run(node.elt)))  # type: ignore[attr-defined]
            return set(out) if t is ast.SetComp else out
        if t is ast.DictComp:
            pairs = self.comprehend(node.generators,  # type: ignore[attr-defined]
                                    lambda: (self.run(node.key), self.run(node.value)))  # type: ignore[attr-defined]
            return dict(pairs)
        if t is ast.Subscript:
            base = self.run(node.value)  # type: ignore[attr-defined]
            sl = node.slice  # type: ignore[attr-defined]
            if isinstance(sl, ast.Slice):
                key: Any = slice(*(None if p is None else self.run(p)
                                   for p in (sl.lower, sl.upper, sl.step)))
            else:
                key = self.run(sl)
            return base[key]
        if t is ast.Call:
            return self.call(node)  # type: ignore[arg-type]
        raise UnsafeExpression(f"{_describe(node)} is not allowed in python_eval")

    def comprehend(self, gens: list[ast.comprehension], make: Callable[[], Any]) -> list[Any]:
        out: list[Any] = []
        saved = dict(self.scope)

        def level(i: int) -> None:
            if i == len(gens):
                out.append(make())
                if len(out) > MAX_ITEMS:
                    raise UnsafeExpression(f"a comprehension of more than {MAX_ITEMS:,} items")
                return
            g = gens[i]
            for item in self.run(g.iter):
                self.tick()
                self.bind(g.target, item)
                if all(self.run(c) for c in g.ifs):
                    level(i + 1)

        try:
            level(0)
        finally:
            self.scope = saved
        return out

    def bind(self, target: ast.expr, value: Any) -> None:
        if isinstance(target, ast.Name):
            self.scope[target.id] = value
        elif isinstance(target, (ast.Tuple, ast.List)):
            values = list(value)
            if len(values) != len(target.elts):
                raise ValueError(f"cannot unpack {len(values)} values into {len(target.elts)}")
            for t, v in zip(target.elts, values, strict=True):
                self.bind(t, v)
        else:
            raise UnsafeExpression("only names can be bound in a comprehension")

    def binop(self, node: ast.BinOp) -> Any:
        a = self.run(node.left)
        b = self.run(node.right)
        op = type(node.op)
        if op is ast.Pow and isinstance(a, int) and isinstance(b, int) and b > 0:
            bits = b * max(1, abs(a).bit_length())
            if abs(a) > 1 and bits > MAX_INT_BITS:
                raise UnsafeExpression(f"{a} ** {b} is too large (over {MAX_INT_BITS} bits)")
        if op is ast.LShift and isinstance(b, int) and b > MAX_INT_BITS:
            raise UnsafeExpression(f"a shift by {b} bits is too large")
        if op is ast.Mult:
            for seq, n in ((a, b), (b, a)):
                if isinstance(seq, (str, list, tuple)) and isinstance(n, int):
                    if len(seq) * max(n, 0) > MAX_ITEMS:
                        raise UnsafeExpression("a repeated sequence over "
                                               f"{MAX_ITEMS:,} items")
            if isinstance(a, int) and isinstance(b, int):
                if a.bit_length() + b.bit_length() > MAX_INT_BITS:
                    raise UnsafeExpression(f"a product over {MAX_INT_BITS} bits")
        if op is ast.Add and isinstance(a, (str, list, tuple)) and isinstance(b, type(a)):
            if len(a) + len(b) > MAX_ITEMS:
                raise UnsafeExpression(f"a sequence over {MAX_ITEMS:,} items")
        self.tick(1 + (len(a) if isinstance(a, (str, list, tuple)) else 0))
        return _BIN[op](a, b)

    def call(self, node: ast.Call) -> Any:
        fn = FUNCTIONS[node.func.id]  # type: ignore[attr-defined]
        args = [self.run(a) for a in node.args]
        kwargs = {kw.arg: self.run(kw.value) for kw in node.keywords if kw.arg}
        for a in args:
            if hasattr(a, "__len__"):
                self.tick(len(a))
        result = fn(*args, **kwargs)
        if isinstance(result, (enumerate, zip, type(reversed([])))):
            result = list(result)
            if len(result) > MAX_ITEMS:
                raise UnsafeExpression(f"over {MAX_ITEMS:,} items")
        return result
