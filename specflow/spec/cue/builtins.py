"""Predeclared functions and the standard library packages specflow supports."""

from __future__ import annotations

import base64
import decimal
import json
import math
import re
from collections.abc import Callable
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any

from specflow.spec.cue import ast as A
from specflow.spec.cue import pkg_misc, pkg_more, pkg_net, pkg_path, pkg_text
from specflow.spec.cue.errors import CueError, Pos
from specflow.spec.cue.values import (
    CTX,
    K_BYTES,
    K_LIST,
    K_NUMBER,
    K_STRING,
    K_STRUCT,
    NULL,
    TOP,
    Constraint,
    Disj,
    compile_regex,
    fmt_decimal,
    kind_name,
    kind_of,
    scalar_eq,
)
from specflow.spec.cue.vertex import REGULAR, Vertex, elems, is_hidden_or_def, regular_label

if TYPE_CHECKING:
    from specflow.spec.cue.evaluator import Evaluator

Fn = Callable[["Evaluator", list[Any], A.Call], Any]

_NOPOS = Pos("<builtin>", 0, 0)


# ---------------------------------------------------------------------------------------------
# argument helpers


def _arity(name: str, args: list[Any], *counts: int) -> None:
    if len(args) not in counts:
        want = " or ".join(str(c) for c in counts)
        raise CueError(f"{name}: got {len(args)} arguments, want {want}")


def _native(ev: Evaluator, val: Any) -> Any:
    from specflow.spec.cue.export import export_value

    return export_value(ev, val)


def _num(ev: Evaluator, val: Any, name: str) -> int | Decimal:
    x = ev.concrete(val, None)
    if isinstance(x, int | Decimal) and not isinstance(x, bool):
        return x
    raise CueError(f"{name}: cannot use {ev.show(x)} (type {ev.kind_str(x)}) as number")


def _int(ev: Evaluator, val: Any, name: str) -> int:
    x = ev.concrete(val, None)
    if type(x) is int:
        return x
    if type(x) is Decimal and x == x.to_integral_value():
        raise CueError(f"{name}: cannot use {fmt_decimal(x)} (type float) as int")
    raise CueError(f"{name}: cannot use {ev.show(x)} (type {ev.kind_str(x)}) as int")


def _evaluated(ev: Evaluator, val: Any, pos: Any = None) -> Any:
    """``val`` with its default taken; a struct or list is evaluated before it is returned."""
    x = ev.resolve_default(val, _NOPOS if pos is None else pos)
    if isinstance(x, Vertex):
        ev.evaluate(x)
    return x


def _str(ev: Evaluator, val: Any, name: str) -> str:
    x = ev.concrete(val, None)
    if type(x) is str:
        return x
    raise CueError(f"{name}: cannot use {ev.show(x)} (type {ev.kind_str(x)}) as string")


def _list_arcs(ev: Evaluator, val: Any, name: str) -> list[Vertex]:
    x = _evaluated(ev, val)
    if isinstance(x, Vertex):
        if x.is_list:
            return elems(x)
        x = x.value if not x.is_struct else x
    if x is TOP or isinstance(x, Constraint | Disj):
        raise CueError(f"{name}: incomplete list argument", incomplete=True)
    raise CueError(f"{name}: cannot use {ev.show(x)} (type {ev.kind_str(x)}) as list")


def _list(ev: Evaluator, val: Any, name: str) -> list[Any]:
    return [_native(ev, a) for a in _list_arcs(ev, val, name)]


def _nums(ev: Evaluator, val: Any, name: str) -> list[int | Decimal]:
    out = _list(ev, val, name)
    for x in out:
        if type(x) not in (int, Decimal):
            raise CueError(f"{name}: element {x!r} is not a number")
    return out


def from_native(ev: Evaluator, x: Any) -> Any:
    """CUE-native data (lists, dicts, scalars) as a value."""
    if isinstance(x, list):
        return ev.list_vertex([from_native(ev, e) for e in x])
    if isinstance(x, dict):
        decls: list[A.Node] = [
            A.Field(
                _NOPOS,
                A.Label(_NOPOS, regular_label(k), None, False),
                A.Lit(_NOPOS, from_native(ev, v)),
                "",
            )
            for k, v in x.items()
        ]
        s = A.StructLit(_NOPOS, decls)
        s.has_fields = True
        tmp = Vertex(None, None)
        tmp.conjuncts.append((s, None, ()))
        return tmp
    return x


def _num_result(d: Decimal) -> int | Decimal:
    """Results of math functions: integral values become ints."""
    if d.is_finite() and d == d.to_integral_value():
        return int(d)
    return d


def _dec(x: int | Decimal) -> Decimal:
    return x if type(x) is Decimal else Decimal(x)


# ---------------------------------------------------------------------------------------------
# predeclared


def _len(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _arity("len", args, 1)
    x = _evaluated(ev, args[0], call.pos)
    if isinstance(x, Vertex):
        if x.is_list:
            return len(elems(x))
        if x.is_struct:
            return sum(
                1 for k, a in x.arcs.items() if a.arc_type == REGULAR and not is_hidden_or_def(k)
            )
        x = ev.concrete(x, call.pos)
    if isinstance(x, str):
        return len(x.encode("utf-8"))
    if isinstance(x, bytes):
        return len(x)
    if x is TOP or isinstance(x, Constraint | Disj):
        raise CueError(f"len: incomplete value {ev.show(x)}", incomplete=True)
    raise CueError(f"len: invalid argument {ev.show(x)} (type {ev.kind_str(x)})")


def _close(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _arity("close", args, 1)
    x = args[0]
    if isinstance(x, Vertex):
        tmp = Vertex(None, None)
        marker = object()
        tmp.conjuncts = [(e, env, c + (marker,)) for e, env, c in x.conjuncts]
        return tmp
    return x


def _and(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _arity("and", args, 1)
    arcs = _list_arcs(ev, args[0], "and")
    tmp = Vertex(None, None)
    for a in arcs:
        tmp.conjuncts.append((A.Lit(call.pos, a), None, ()))
    return tmp


def _or(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _arity("or", args, 1)
    arcs = _list_arcs(ev, args[0], "or")
    if not arcs:
        raise CueError("or: empty list in call to or", incomplete=True)
    if len(arcs) == 1:
        return arcs[0]
    return Disj([(a, False) for a in arcs])


def _divmod(kind: str) -> Fn:
    def fn(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
        _arity(kind, args, 2)
        a = _int(ev, args[0], kind)
        b = _int(ev, args[1], kind)
        if b == 0:
            raise CueError("division by zero")
        if kind in ("div", "mod"):
            # Euclidean division
            q = a // b if b > 0 else -(a // -b)
            r = a - q * b
            if r < 0:
                q += 1 if b < 0 else -1
                r = a - q * b
            return q if kind == "div" else r
        q = abs(a) // abs(b)
        if (a < 0) != (b < 0):
            q = -q
        return q if kind == "quo" else a - q * b

    return fn


PREDECLARED: dict[str, Any] = {}


def _register_predeclared() -> None:
    from specflow.spec.cue.evaluator import Builtin

    PREDECLARED.update(
        {
            "len": Builtin("len", _len),
            "close": Builtin("close", _close),
            "and": Builtin("and", _and),
            "or": Builtin("or", _or),
            "div": Builtin("div", _divmod("div")),
            "mod": Builtin("mod", _divmod("mod")),
            "quo": Builtin("quo", _divmod("quo")),
            "rem": Builtin("rem", _divmod("rem")),
        }
    )


# ---------------------------------------------------------------------------------------------
# list


def _list_range(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _arity("list.Range", args, 3)
    start = _num(ev, args[0], "list.Range")
    limit = _num(ev, args[1], "list.Range")
    step = _num(ev, args[2], "list.Range")
    if step == 0:
        raise CueError("list.Range: step must be non zero")
    all_int = type(start) is int and type(limit) is int and type(step) is int
    out: list[Any] = []
    cur: Any = start if all_int else _dec(start)
    while (step > 0 and cur < limit) or (step < 0 and cur > limit):
        out.append(cur)
        if len(out) > 1_000_000:
            raise CueError("list.Range: result too large")
        cur = cur + step if all_int else CTX.add(cur, _dec(step))
    return ev.list_vertex(out)


def _list_min_max(which: str) -> Fn:
    def fn(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
        _arity(f"list.{which}", args, 1)
        xs = _nums(ev, args[0], f"list.{which}")
        if not xs:
            raise CueError(f"list.{which}: empty list")
        best = xs[0]
        for x in xs[1:]:
            if (x < best) if which == "Min" else (x > best):
                best = x
        return best

    return fn


def _dec_sum(xs: list[int | Decimal]) -> Decimal:
    acc = Decimal(0)
    for x in xs:
        acc = CTX.add(acc, _dec(x))
    return acc


def _list_sum(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _arity("list.Sum", args, 1)
    xs = _nums(ev, args[0], "list.Sum")
    if all(type(x) is int for x in xs):
        return sum(xs)
    return _dec_sum(xs)


def _list_product(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _arity("list.Product", args, 1)
    xs = _nums(ev, args[0], "list.Product")
    if all(type(x) is int for x in xs):
        p: int | Decimal = 1
        for x in xs:
            p *= x
        return p
    acc = Decimal(1)
    for x in xs:
        acc = CTX.multiply(acc, _dec(x))
    return acc


def _list_avg(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _arity("list.Avg", args, 1)
    xs = _nums(ev, args[0], "list.Avg")
    if not xs:
        raise CueError("list.Avg: empty list")
    return CTX.divide(_dec_sum(xs), Decimal(len(xs)))


def _list_concat(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _arity("list.Concat", args, 1)
    out: list[Any] = []
    for sub in _list_arcs(ev, args[0], "list.Concat"):
        out.extend(_list_arcs(ev, sub, "list.Concat"))
    return ev.list_vertex(out)


def _is_list(ev: Evaluator, v: Any) -> bool:
    x = _evaluated(ev, v)
    return isinstance(x, Vertex) and x.is_list


def _flatten(ev: Evaluator, arcs: list[Any], depth: int) -> list[Any]:
    out: list[Any] = []
    for a in arcs:
        if depth != 0 and _is_list(ev, a):
            out.extend(_flatten(ev, _list_arcs(ev, a, "list.FlattenN"), depth - 1))
        else:
            out.append(a)
    return out


def _list_flattenn(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _arity("list.FlattenN", args, 2)
    depth = _int(ev, args[1], "list.FlattenN")
    return ev.list_vertex(_flatten(ev, _list_arcs(ev, args[0], "list.FlattenN"), depth))


def _list_contains(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _arity("list.Contains", args, 2)
    from specflow.spec.cue.evaluator import _deep_eq

    xs = _list(ev, args[0], "list.Contains")
    want = _native(ev, args[1])
    return any(_deep_eq(x, want) for x in xs)


def _list_take(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _arity("list.Take", args, 2)
    arcs = _list_arcs(ev, args[0], "list.Take")
    n = _int(ev, args[1], "list.Take")
    if n < 0:
        raise CueError("list.Take: negative index")
    return ev.list_vertex(arcs[:n])


def _list_drop(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _arity("list.Drop", args, 2)
    arcs = _list_arcs(ev, args[0], "list.Drop")
    n = _int(ev, args[1], "list.Drop")
    if n < 0:
        raise CueError("list.Drop: negative index")
    return ev.list_vertex(arcs[n:])


def _list_slice(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _arity("list.Slice", args, 3)
    arcs = _list_arcs(ev, args[0], "list.Slice")
    i = _int(ev, args[1], "list.Slice")
    j = _int(ev, args[2], "list.Slice")
    if i < 0 or j > len(arcs) or i > j:
        raise CueError(f"list.Slice: invalid slice index {i}:{j}")
    return ev.list_vertex(arcs[i:j])


def _list_repeat(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _arity("list.Repeat", args, 2)
    arcs = _list_arcs(ev, args[0], "list.Repeat")
    n = _int(ev, args[1], "list.Repeat")
    if n < 0:
        raise CueError("list.Repeat: negative count")
    return ev.list_vertex(arcs * n)


def _list_reverse(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _arity("list.Reverse", args, 1)
    return ev.list_vertex(list(reversed(_list_arcs(ev, args[0], "list.Reverse"))))


class _Order:
    def __init__(self, descending: bool) -> None:
        self.descending = descending


def _sort_key(x: Any) -> Any:
    if type(x) in (int, Decimal):
        return (0, x)
    if type(x) is str:
        return (1, x)
    raise CueError(f"list.Sort: cannot compare {x!r}")


def _sorted(ev: Evaluator, args: list[Any], name: str) -> list[Any]:
    _arity(name, args, 2)
    xs = _list(ev, args[0], name)
    cmp = args[1]
    if isinstance(cmp, Vertex) and isinstance(cmp.conjuncts[0][0], A.Lit):
        order = cmp.conjuncts[0][0].value
        if isinstance(order, _Order):
            kinds = {type(x) in (int, Decimal) for x in xs}
            if len(kinds) > 1:
                raise CueError(f"{name}: cannot compare mixed types")
            return sorted(xs, key=_sort_key, reverse=order.descending)
    if not isinstance(cmp, Vertex):
        raise CueError(f"{name}: invalid comparator")
    import functools

    def less(a: Any, b: Any) -> bool:
        tmp = Vertex(None, None)
        tmp.conjuncts = list(cmp.conjuncts)
        s = A.StructLit(
            _NOPOS,
            [
                A.Field(
                    _NOPOS, A.Label(_NOPOS, "x", None, True), A.Lit(_NOPOS, from_native(ev, a)), ""
                ),
                A.Field(
                    _NOPOS, A.Label(_NOPOS, "y", None, True), A.Lit(_NOPOS, from_native(ev, b)), ""
                ),
            ],
        )
        s.has_fields = True
        tmp.conjuncts.append((s, None, ()))
        ev.evaluate(tmp)
        arc = tmp.arcs.get("less")
        if arc is None:
            raise CueError(f"{name}: comparator has no field less")
        r = ev.concrete(arc, None)
        if type(r) is not bool:
            raise CueError(f"{name}: less is not a bool")
        return r

    def cmpf(a: Any, b: Any) -> int:
        if less(a, b):
            return -1
        if less(b, a):
            return 1
        return 0

    return sorted(xs, key=functools.cmp_to_key(cmpf))


def _list_sort(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    return from_native(ev, _sorted(ev, args, "list.Sort"))


def _list_is_sorted(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    from specflow.spec.cue.evaluator import _deep_eq

    xs = _list(ev, args[0], "list.IsSorted")
    return _deep_eq(xs, _sorted(ev, args, "list.IsSorted"))


def _list_sort_strings(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _arity("list.SortStrings", args, 1)
    xs = _list(ev, args[0], "list.SortStrings")
    if not all(type(x) is str for x in xs):
        raise CueError("list.SortStrings: list contains non-strings")
    return from_native(ev, sorted(xs))


def _list_unique(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    from specflow.spec.cue.evaluator import _deep_eq

    _arity("list.UniqueItems", args, 1)
    xs = _list(ev, args[0], "list.UniqueItems")
    for i, x in enumerate(xs):
        if any(_deep_eq(x, y) for y in xs[:i]):
            return False
    return True


def _list_min_items(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _arity("list.MinItems", args, 2)
    return len(_list_arcs(ev, args[0], "list.MinItems")) >= _int(ev, args[1], "list.MinItems")


def _list_max_items(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _arity("list.MaxItems", args, 2)
    return len(_list_arcs(ev, args[0], "list.MaxItems")) <= _int(ev, args[1], "list.MaxItems")


def _field_count(ev: Evaluator, val: Any, name: str) -> int:
    x = _evaluated(ev, val)
    if isinstance(x, Vertex):
        if x.is_struct:
            return sum(
                1 for k, a in x.arcs.items() if a.arc_type == REGULAR and not is_hidden_or_def(k)
            )
        x = x.value if not x.is_list else x
    if x is TOP or isinstance(x, Constraint | Disj):
        raise CueError(f"{name}: incomplete struct argument", incomplete=True)
    raise CueError(f"{name}: cannot use {ev.show(x)} (type {ev.kind_str(x)}) as struct")


def _struct_min_fields(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _arity("struct.MinFields", args, 2)
    n = _int(ev, args[1], "struct.MinFields")
    return _field_count(ev, args[0], "struct.MinFields") >= n


def _struct_max_fields(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _arity("struct.MaxFields", args, 2)
    n = _int(ev, args[1], "struct.MaxFields")
    return _field_count(ev, args[0], "struct.MaxFields") <= n


def _runes(name: str, cmp: Callable[[int, int], bool]) -> Fn:
    def fn(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
        _arity(f"strings.{name}", args, 2)
        s = _str(ev, args[0], f"strings.{name}")
        return cmp(len(s), _int(ev, args[1], f"strings.{name}"))

    return fn


def _math_multiple_of(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _arity("math.MultipleOf", args, 2)
    x = _num(ev, args[0], "math.MultipleOf")
    y = _num(ev, args[1], "math.MultipleOf")
    if y == 0:
        raise CueError("math.MultipleOf: division by zero")
    # As in CUE v0.4, the reference: true when the quotient x/y is not exact at 34 digits
    # (which makes it false for every x that is a multiple of y).
    ctx = CTX.copy()
    ctx.clear_flags()
    ctx.traps[decimal.Inexact] = False
    ctx.divide(_dec(x), _dec(y))
    return bool(ctx.flags[decimal.Inexact])


def _order_value(descending: bool) -> Vertex:
    tmp = Vertex(None, None)
    tmp.conjuncts.append((A.Lit(_NOPOS, _Order(descending)), None, ()))
    tmp.status = 2
    tmp.is_struct = True
    return tmp


# ---------------------------------------------------------------------------------------------
# math


def _math1(name: str, f: Callable[[Decimal], Decimal]) -> Fn:
    def fn(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
        _arity(f"math.{name}", args, 1)
        x = _dec(_num(ev, args[0], f"math.{name}"))
        return _num_result(f(x))

    return fn


def _round_to(mode: str) -> Callable[[Decimal], Decimal]:
    def f(x: Decimal) -> Decimal:
        return x.quantize(Decimal(1), rounding=mode, context=CTX)

    return f


def _log(base: int | None) -> Callable[[Decimal], Decimal]:
    def f(x: Decimal) -> Decimal:
        if x <= 0:
            raise CueError("math: logarithm of non-positive number")
        if base == 2 and x == x.to_integral_value():
            n = int(x)
            if n & (n - 1) == 0:
                return Decimal(n.bit_length() - 1)
        if base == 10:
            return CTX.log10(x)
        ln = CTX.ln(x)
        if base is None:
            return ln
        r = CTX.divide(ln, CTX.ln(Decimal(base)))
        rr = r.quantize(Decimal("1e-30"), context=CTX) if abs(r) < Decimal("1e3") else r
        if rr == rr.to_integral_value():
            return rr
        return r

    return f


def _sqrt(x: Decimal) -> Decimal:
    if x < 0:
        raise CueError("math.Sqrt: square root of negative number")
    return CTX.sqrt(x)


def _math_pow(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _arity("math.Pow", args, 2)
    x = _num(ev, args[0], "math.Pow")
    y = _num(ev, args[1], "math.Pow")
    if type(y) is int or (type(y) is Decimal and y == y.to_integral_value()):
        yi = int(y)
        if type(x) is int and yi >= 0:
            if yi > 100000:
                raise CueError("math.Pow: exponent too large")
            return x**yi
        if x == 0 and yi < 0:
            raise CueError("math.Pow: division by zero")
        return _num_result(CTX.power(_dec(x), yi))
    if x < 0:
        raise CueError("math.Pow: negative base with fractional exponent")
    return _num_result(CTX.power(_dec(x), _dec(y)))


def _math2(name: str, f: Callable[[Decimal, Decimal], Decimal]) -> Fn:
    def fn(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
        _arity(f"math.{name}", args, 2)
        x = _dec(_num(ev, args[0], f"math.{name}"))
        y = _dec(_num(ev, args[1], f"math.{name}"))
        return _num_result(f(x, y))

    return fn


def _float_fn(name: str, f: Callable[[float], float]) -> Fn:
    def fn(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
        _arity(f"math.{name}", args, 1)
        x = float(_num(ev, args[0], f"math.{name}"))
        return _num_result(CTX.create_decimal_from_float(f(x)))

    return fn


def _math_max_min(which: str) -> Fn:
    def fn(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
        _arity(f"math.{which}", args, 2)
        x = _num(ev, args[0], f"math.{which}")
        y = _num(ev, args[1], f"math.{which}")
        return max(x, y) if which == "Max" else min(x, y)

    return fn


def _math_abs(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _arity("math.Abs", args, 1)
    x = _num(ev, args[0], "math.Abs")
    return abs(x) if type(x) is int else CTX.abs(x)


def _math_signbit(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    x = _num(ev, args[0], "math.Signbit")
    return x < 0


# ---------------------------------------------------------------------------------------------
# strings


def _s1(name: str, f: Callable[[str], Any]) -> Fn:
    def fn(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
        _arity(f"strings.{name}", args, 1)
        return from_native(ev, f(_str(ev, args[0], f"strings.{name}")))

    return fn


def _s2(name: str, f: Callable[[str, str], Any]) -> Fn:
    def fn(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
        _arity(f"strings.{name}", args, 2)
        a = _str(ev, args[0], f"strings.{name}")
        b = _str(ev, args[1], f"strings.{name}")
        return from_native(ev, f(a, b))

    return fn


def _strings_join(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _arity("strings.Join", args, 2)
    xs = _list(ev, args[0], "strings.Join")
    sep = _str(ev, args[1], "strings.Join")
    for x in xs:
        if type(x) is not str:
            raise CueError(f"strings.Join: element {ev.show(x)} is not a string")
    return sep.join(xs)


def _go_split(s: str, sep: str, n: int = -1) -> list[str]:
    if n == 0:
        return []
    if sep == "":
        chars = list(s)
        if n > 0 and len(chars) > n:
            return chars[: n - 1] + ["".join(chars[n - 1 :])]
        return chars
    if n < 0:
        return s.split(sep)
    return s.split(sep, n - 1)


def _strings_splitn(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _arity("strings.SplitN", args, 3)
    s = _str(ev, args[0], "strings.SplitN")
    sep = _str(ev, args[1], "strings.SplitN")
    n = _int(ev, args[2], "strings.SplitN")
    return from_native(ev, _go_split(s, sep, n))


def _strings_replace(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _arity("strings.Replace", args, 4)
    s = _str(ev, args[0], "strings.Replace")
    old = _str(ev, args[1], "strings.Replace")
    new = _str(ev, args[2], "strings.Replace")
    n = _int(ev, args[3], "strings.Replace")
    return s.replace(old, new, n if n >= 0 else -1)


def _strings_replace_all(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _arity("strings.ReplaceAll", args, 3)
    s = _str(ev, args[0], "strings.ReplaceAll")
    old = _str(ev, args[1], "strings.ReplaceAll")
    new = _str(ev, args[2], "strings.ReplaceAll")
    return s.replace(old, new)


def _strings_repeat(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _arity("strings.Repeat", args, 2)
    s = _str(ev, args[0], "strings.Repeat")
    n = _int(ev, args[1], "strings.Repeat")
    if n < 0:
        raise CueError("strings.Repeat: negative count")
    return s * n


def _title(s: str) -> str:
    out = []
    prev = " "
    for ch in s:
        out.append(ch.upper() if not prev.isalnum() and prev not in "_'" else ch)
        prev = ch
    return "".join(out)


def _go_index(s: str, sub: str) -> int:
    i = s.find(sub)
    return -1 if i < 0 else len(s[:i].encode("utf-8"))


def _go_last_index(s: str, sub: str) -> int:
    i = s.rfind(sub)
    return -1 if i < 0 else len(s[:i].encode("utf-8"))


def _go_count(s: str, sub: str) -> int:
    if sub == "":
        return len(s) + 1
    return s.count(sub)


# ---------------------------------------------------------------------------------------------
# strconv


def _format_int(n: int, base: int) -> str:
    if not 2 <= base <= 36:
        raise CueError(f"strconv.FormatInt: invalid base {base}")
    if n == 0:
        return "0"
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    neg = n < 0
    n = abs(n)
    out = []
    while n:
        n, r = divmod(n, base)
        out.append(digits[r])
    return ("-" if neg else "") + "".join(reversed(out))


def _strconv_format_int(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _arity("strconv.FormatInt", args, 2)
    return _format_int(
        _int(ev, args[0], "strconv.FormatInt"), _int(ev, args[1], "strconv.FormatInt")
    )


def _strconv_itoa(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _arity("strconv.Itoa", args, 1)
    return str(_int(ev, args[0], "strconv.Itoa"))


def _parse_int(s: str, base: int, name: str) -> int:
    t = s.replace("_", "") if base == 0 else s
    try:
        return int(t, base)
    except ValueError:
        raise CueError(f'{name}: parsing "{s}": invalid syntax') from None


def _strconv_atoi(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _arity("strconv.Atoi", args, 1)
    return _parse_int(_str(ev, args[0], "strconv.Atoi"), 10, "strconv.Atoi")


def _strconv_parse_int(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _arity("strconv.ParseInt", args, 3)
    s = _str(ev, args[0], "strconv.ParseInt")
    base = _int(ev, args[1], "strconv.ParseInt")
    bits = _int(ev, args[2], "strconv.ParseInt") or 64
    n = _parse_int(s, base, "strconv.ParseInt")
    if not -(2 ** (bits - 1)) <= n < 2 ** (bits - 1):
        raise CueError(f'strconv.ParseInt: parsing "{s}": value out of range')
    return n


def _strconv_parse_float(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _arity("strconv.ParseFloat", args, 2)
    s = _str(ev, args[0], "strconv.ParseFloat")
    try:
        return Decimal(s.replace("_", ""))
    except ArithmeticError:
        raise CueError(f'strconv.ParseFloat: parsing "{s}": invalid syntax') from None


def _strconv_format_float(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _arity("strconv.FormatFloat", args, 4)
    x = float(_num(ev, args[0], "strconv.FormatFloat"))
    fmt = ev.concrete(args[1], None)
    if type(fmt) is int:
        fmt = chr(fmt)
    prec = _int(ev, args[2], "strconv.FormatFloat")
    if fmt not in ("f", "e", "E", "g", "G"):
        raise CueError(f"strconv.FormatFloat: unsupported format {fmt!r}")
    if prec < 0:
        return repr(x) if fmt in ("g", "G") else format(x, fmt)
    return format(x, f".{prec}{fmt}")


def _strconv_parse_bool(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    s = _str(ev, args[0], "strconv.ParseBool")
    if s in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if s in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise CueError(f'strconv.ParseBool: parsing "{s}": invalid syntax')


def _strconv_format_bool(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    b = ev.concrete(args[0], None)
    if type(b) is not bool:
        raise CueError("strconv.FormatBool: argument is not a bool")
    return "true" if b else "false"


def _strconv_quote(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    return json.dumps(_str(ev, args[0], "strconv.Quote"), ensure_ascii=False)


def _strconv_unquote(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    s = _str(ev, args[0], "strconv.Unquote")
    if len(s) >= 2 and s[0] == s[-1] == "`":
        return s[1:-1]
    try:
        r = json.loads(s)
    except ValueError:
        raise CueError("strconv.Unquote: invalid syntax") from None
    if type(r) is not str:
        raise CueError("strconv.Unquote: invalid syntax")
    return r


# ---------------------------------------------------------------------------------------------
# path


def _go_clean(p: str) -> str:
    if p == "":
        return "."
    rooted = p.startswith("/")
    parts: list[str] = []
    for seg in p.split("/"):
        if seg == "" or seg == ".":
            continue
        if seg == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not rooted:
                parts.append("..")
            continue
        parts.append(seg)
    out = "/".join(parts)
    if rooted:
        return "/" + out
    return out or "."


def _path_join(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    if len(args) not in (1, 2):
        raise CueError("path.Join: wrong number of arguments")
    xs = _list(ev, args[0], "path.Join")
    if not all(type(x) is str for x in xs):
        raise CueError("path.Join: elements must be strings")
    parts = [x for x in xs if x]
    if not parts:
        return ""
    return _go_clean("/".join(parts))


def _path1(name: str, f: Callable[[str], Any]) -> Fn:
    def fn(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
        if len(args) not in (1, 2):
            raise CueError(f"path.{name}: wrong number of arguments")
        return from_native(ev, f(_str(ev, args[0], f"path.{name}")))

    return fn


def _path_base(p: str) -> str:
    if p == "":
        return "."
    p = p.rstrip("/")
    if p == "":
        return "/"
    return p.rsplit("/", 1)[-1]


def _path_dir(p: str) -> str:
    i = p.rfind("/")
    return _go_clean(p[: i + 1])


def _path_ext(p: str) -> str:
    base = p.rsplit("/", 1)[-1]
    i = base.rfind(".")
    return base[i:] if i >= 0 else ""


def _path_split(p: str) -> list[str]:
    i = p.rfind("/")
    return [p[: i + 1], p[i + 1 :]]


# ---------------------------------------------------------------------------------------------
# regexp


def _re(ev: Evaluator, val: Any, name: str) -> Any:
    s = _str(ev, val, name)
    try:
        return compile_regex(s)
    except ValueError as e:
        raise CueError(f"{name}: invalid regular expression: {e}") from None


def _regexp_match(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _arity("regexp.Match", args, 2)
    return _re(ev, args[0], "regexp.Match").search(_str(ev, args[1], "regexp.Match")) is not None


def _regexp_find(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _arity("regexp.Find", args, 2)
    m = _re(ev, args[0], "regexp.Find").search(_str(ev, args[1], "regexp.Find"))
    if m is None:
        raise CueError("regexp.Find: no match")
    return m.group(0)


def _regexp_find_all(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _arity("regexp.FindAll", args, 3)
    rx = _re(ev, args[0], "regexp.FindAll")
    s = _str(ev, args[1], "regexp.FindAll")
    n = _int(ev, args[2], "regexp.FindAll")
    out = [m.group(0) for m in rx.finditer(s)]
    if n >= 0:
        out = out[:n]
    if not out:
        raise CueError("regexp.FindAll: no match")
    return from_native(ev, out)


def _regexp_find_submatch(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _arity("regexp.FindSubmatch", args, 2)
    m = _re(ev, args[0], "regexp.FindSubmatch").search(_str(ev, args[1], "regexp.FindSubmatch"))
    if m is None:
        raise CueError("regexp.FindSubmatch: no match")
    return from_native(ev, [m.group(0)] + [g or "" for g in m.groups()])


def _named_groups(rx: Any, m: Any) -> dict[str, str]:
    return {name: m.group(i) or "" for name, i in sorted(rx.groupindex.items(), key=lambda x: x[1])}


def _regexp_find_named_submatch(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _arity("regexp.FindNamedSubmatch", args, 2)
    rx = _re(ev, args[0], "regexp.FindNamedSubmatch")
    m = rx.search(_str(ev, args[1], "regexp.FindNamedSubmatch"))
    if m is None:
        raise CueError("regexp.FindNamedSubmatch: no match")
    return from_native(ev, _named_groups(rx, m))


def _regexp_find_all_submatch(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _arity("regexp.FindAllSubmatch", args, 3)
    rx = _re(ev, args[0], "regexp.FindAllSubmatch")
    s = _str(ev, args[1], "regexp.FindAllSubmatch")
    n = _int(ev, args[2], "regexp.FindAllSubmatch")
    out = [[m.group(0)] + [g or "" for g in m.groups()] for m in rx.finditer(s)]
    if n >= 0:
        out = out[:n]
    if not out:
        raise CueError("regexp.FindAllSubmatch: no match")
    return from_native(ev, out)


def _regexp_find_all_named_submatch(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _arity("regexp.FindAllNamedSubmatch", args, 3)
    rx = _re(ev, args[0], "regexp.FindAllNamedSubmatch")
    s = _str(ev, args[1], "regexp.FindAllNamedSubmatch")
    n = _int(ev, args[2], "regexp.FindAllNamedSubmatch")
    out = [_named_groups(rx, m) for m in rx.finditer(s)]
    if n >= 0:
        out = out[:n]
    if not out:
        raise CueError("regexp.FindAllNamedSubmatch: no match")
    return from_native(ev, out)


def _regexp_replace_all(literal: bool) -> Fn:
    name = "regexp.ReplaceAllLiteral" if literal else "regexp.ReplaceAll"

    def fn(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
        _arity(name, args, 3)
        rx = _re(ev, args[0], name)
        s = _str(ev, args[1], name)
        repl = _str(ev, args[2], name)
        if literal:
            return rx.sub(lambda _m: repl, s)
        py = re.sub(
            r"\$\{(\w+)\}|\$(\w+)", lambda m: "\\g<" + (m.group(1) or m.group(2)) + ">", repl
        )
        try:
            return rx.sub(py, s)
        except (re.error, IndexError, ValueError) as e:
            raise CueError(f"{name}: {e}") from None

    return fn


def _regexp_quote_meta(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    return re.escape(_str(ev, args[0], "regexp.QuoteMeta"))


def _regexp_valid(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    try:
        compile_regex(_str(ev, args[0], "regexp.Valid"))
        return True
    except ValueError:
        return False


# ---------------------------------------------------------------------------------------------
# encoding/json


class _RawNum(float):
    def __init__(self, text: str) -> None:
        self.text = text

    def __new__(cls, text: str) -> _RawNum:
        return super().__new__(cls, float(text))

    def __repr__(self) -> str:
        return self.text


def _json_text(x: Any, indent: str | None = None) -> str:
    def conv(v: Any) -> Any:
        if v is NULL:
            return None
        if isinstance(v, dict):
            return {k: conv(e) for k, e in v.items()}
        if isinstance(v, list):
            return [conv(e) for e in v]
        if type(v) is Decimal:
            return _RawNum(fmt_decimal(v))
        if isinstance(v, bytes):
            return base64.b64encode(v).decode("ascii")
        return v

    if indent is None:
        return json.dumps(conv(x), separators=(",", ":"), ensure_ascii=False)
    return json.dumps(conv(x), indent=indent, ensure_ascii=False)


def _json_marshal(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _arity("json.Marshal", args, 1)
    return _json_text(_native(ev, args[0]))


def _json_indent_marshal(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _arity("json.MarshalIndent", args, 3)
    return _json_text(_native(ev, args[0]), _str(ev, args[2], "json.MarshalIndent"))


def _from_json(x: Any) -> Any:
    if x is None:
        return NULL
    if isinstance(x, dict):
        return {k: _from_json(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_from_json(v) for v in x]
    return x


def _json_unmarshal(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _arity("json.Unmarshal", args, 1)
    s = _str(ev, args[0], "json.Unmarshal")
    try:
        data = json.loads(s, parse_float=Decimal)
    except ValueError as e:
        raise CueError(f"json.Unmarshal: invalid JSON: {e}") from None
    return from_native(ev, _from_json(data))


def _json_valid(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    try:
        json.loads(_str(ev, args[0], "json.Valid"))
        return True
    except ValueError:
        return False


# ---------------------------------------------------------------------------------------------
# encoding/base64 and encoding/hex


def _bytes_arg(ev: Evaluator, val: Any, name: str) -> bytes:
    x = ev.concrete(val, None)
    if isinstance(x, str):
        return x.encode("utf-8")
    if isinstance(x, bytes):
        return x
    raise CueError(f"{name}: cannot use {ev.show(x)} as bytes")


def _b64_encode(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _arity("base64.Encode", args, 2)
    return base64.b64encode(_bytes_arg(ev, args[1], "base64.Encode")).decode("ascii")


def _b64_decode(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _arity("base64.Decode", args, 2)
    try:
        return base64.b64decode(_str(ev, args[1], "base64.Decode"), validate=True)
    except ValueError as e:
        raise CueError(f"base64.Decode: {e}") from None


def _hex_encode(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _arity("hex.Encode", args, 1)
    return _bytes_arg(ev, args[0], "hex.Encode").hex()


def _hex_decode(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _arity("hex.Decode", args, 1)
    try:
        return bytes.fromhex(_str(ev, args[0], "hex.Decode"))
    except ValueError as e:
        raise CueError(f"hex.Decode: {e}") from None


# ---------------------------------------------------------------------------------------------
# registry


def _packages() -> dict[str, dict[str, Any]]:
    return {
        "list": {
            "Range": _list_range,
            "Min": _list_min_max("Min"),
            "Max": _list_min_max("Max"),
            "Sum": _list_sum,
            "Product": _list_product,
            "Avg": _list_avg,
            "Concat": _list_concat,
            "FlattenN": _list_flattenn,
            "Contains": _list_contains,
            "Take": _list_take,
            "Drop": _list_drop,
            "Slice": _list_slice,
            "Repeat": _list_repeat,
            "Reverse": _list_reverse,
            "Sort": _list_sort,
            "SortStable": _list_sort,
            "IsSorted": _list_is_sorted,
            "SortStrings": _list_sort_strings,
            "UniqueItems": _list_unique,
            "MinItems": _list_min_items,
            "MaxItems": _list_max_items,
            "Ascending": _order_value(False),
            "Descending": _order_value(True),
        },
        "math": {
            "Pow": _math_pow,
            "Ceil": _math1("Ceil", _round_to(ROUND_CEILING)),
            "Floor": _math1("Floor", _round_to(ROUND_FLOOR)),
            "Trunc": _math1("Trunc", _round_to(ROUND_DOWN)),
            "Round": _math1("Round", _round_to(ROUND_HALF_UP)),
            "RoundToEven": _math1("RoundToEven", _round_to(ROUND_HALF_EVEN)),
            "Abs": _math_abs,
            "Sqrt": _math1("Sqrt", _sqrt),
            "Log": _math1("Log", _log(None)),
            "Log2": _math1("Log2", _log(2)),
            "Log10": _math1("Log10", _log(10)),
            "Exp": _math1("Exp", lambda x: CTX.exp(x)),
            "Exp2": _math1("Exp2", lambda x: CTX.power(Decimal(2), x)),
            "Cbrt": _float_fn("Cbrt", lambda x: math.copysign(abs(x) ** (1.0 / 3.0), x)),
            "Sin": _float_fn("Sin", math.sin),
            "Cos": _float_fn("Cos", math.cos),
            "Tan": _float_fn("Tan", math.tan),
            "Asin": _float_fn("Asin", math.asin),
            "Acos": _float_fn("Acos", math.acos),
            "Atan": _float_fn("Atan", math.atan),
            "Mod": _math2("Mod", lambda x, y: CTX.remainder(x, y)),
            "Max": _math_max_min("Max"),
            "Min": _math_max_min("Min"),
            "Signbit": _math_signbit,
            "MultipleOf": _math_multiple_of,
            "Pi": Decimal("3.141592653589793238462643383279502884197169399375105820974944"),
            "E": Decimal("2.718281828459045235360287471352662497757247093699959574966968"),
            "Sqrt2": Decimal("1.414213562373095048801688724209698078569671875376948073176680"),
            "Ln2": Decimal("0.693147180559945309417232121458176568075500134360255254120680"),
            "MaxInt8": 127,
            "MinInt8": -128,
            "MaxInt16": 2**15 - 1,
            "MinInt16": -(2**15),
            "MaxInt32": 2**31 - 1,
            "MinInt32": -(2**31),
            "MaxInt64": 2**63 - 1,
            "MinInt64": -(2**63),
            "MaxUint8": 255,
            "MaxUint16": 2**16 - 1,
            "MaxUint32": 2**32 - 1,
            "MaxUint64": 2**64 - 1,
        },
        "strings": {
            "Join": _strings_join,
            "Split": _s2("Split", _go_split),
            "SplitN": _strings_splitn,
            "SplitAfter": _s2(
                "SplitAfter",
                lambda s, sep: (
                    [p + sep for p in s.split(sep)[:-1]] + [s.split(sep)[-1]] if sep else list(s)
                ),
            ),
            "Replace": _strings_replace,
            "ReplaceAll": _strings_replace_all,
            "ToUpper": _s1("ToUpper", str.upper),
            "ToLower": _s1("ToLower", str.lower),
            "ToTitle": _s1("ToTitle", str.upper),
            "Title": _s1("Title", _title),
            "TrimSpace": _s1("TrimSpace", str.strip),
            "Fields": _s1("Fields", str.split),
            "Runes": _s1("Runes", lambda s: [ord(c) for c in s]),
            "Contains": _s2("Contains", lambda s, sub: sub in s),
            "ContainsAny": _s2("ContainsAny", lambda s, chars: any(c in s for c in chars)),
            "HasPrefix": _s2("HasPrefix", str.startswith),
            "HasSuffix": _s2("HasSuffix", str.endswith),
            "Trim": _s2("Trim", str.strip),
            "TrimLeft": _s2("TrimLeft", str.lstrip),
            "TrimRight": _s2("TrimRight", str.rstrip),
            "TrimPrefix": _s2(
                "TrimPrefix", lambda s, p: s[len(p) :] if p and s.startswith(p) else s
            ),
            "TrimSuffix": _s2(
                "TrimSuffix", lambda s, p: s[: -len(p)] if p and s.endswith(p) else s
            ),
            "Index": _s2("Index", _go_index),
            "LastIndex": _s2("LastIndex", _go_last_index),
            "IndexAny": _s2(
                "IndexAny", lambda s, cs: min((i for i, c in enumerate(s) if c in cs), default=-1)
            ),
            "Count": _s2("Count", _go_count),
            "Compare": _s2("Compare", lambda a, b: (a > b) - (a < b)),
            "EqualFold": _s2("EqualFold", lambda a, b: a.casefold() == b.casefold()),
            "Repeat": _strings_repeat,
            **pkg_more.STRINGS_EXTRA,
            "MinRunes": _runes("MinRunes", lambda n, m: n >= m),
            "MaxRunes": _runes("MaxRunes", lambda n, m: n <= m),
        },
        "strconv": {
            "FormatInt": _strconv_format_int,
            "FormatUint": _strconv_format_int,
            "Itoa": _strconv_itoa,
            "Atoi": _strconv_atoi,
            "ParseInt": _strconv_parse_int,
            "ParseUint": _strconv_parse_int,
            "ParseFloat": _strconv_parse_float,
            "FormatFloat": _strconv_format_float,
            "ParseBool": _strconv_parse_bool,
            "FormatBool": _strconv_format_bool,
            "Quote": _strconv_quote,
            "Unquote": _strconv_unquote,
        },
        "path": pkg_path.members(),
        "regexp": {
            "Match": _regexp_match,
            "Find": _regexp_find,
            "FindAll": _regexp_find_all,
            "FindSubmatch": _regexp_find_submatch,
            "FindNamedSubmatch": _regexp_find_named_submatch,
            "FindAllSubmatch": _regexp_find_all_submatch,
            "FindAllNamedSubmatch": _regexp_find_all_named_submatch,
            "ReplaceAll": _regexp_replace_all(False),
            "ReplaceAllLiteral": _regexp_replace_all(True),
            "QuoteMeta": _regexp_quote_meta,
            "Valid": _regexp_valid,
        },
        "encoding/json": {
            "Marshal": _json_marshal,
            "MarshalIndent": _json_indent_marshal,
            "Unmarshal": _json_unmarshal,
            "Valid": _json_valid,
        },
        "encoding/base64": {"Encode": _b64_encode, "Decode": _b64_decode},
        "encoding/hex": {"Encode": _hex_encode, "Decode": _hex_decode},
        "struct": {"MinFields": _struct_min_fields, "MaxFields": _struct_max_fields},
        **pkg_more.packages(),
        **pkg_text.packages(),
        **pkg_misc.packages(),
        "net": pkg_net.members(),
    }


PACKAGES: dict[str, dict[str, Any]] = {}

# Builtins that report whether a value is valid: their number of arguments and the kinds of
# values they check. Called with one argument fewer they are validators (`strings.MinRunes(3)`).
VALIDATORS: dict[str, tuple[int, int]] = {
    "strings.MinRunes": (2, K_STRING),
    "strings.MaxRunes": (2, K_STRING),
    "strings.HasPrefix": (2, K_STRING),
    "strings.HasSuffix": (2, K_STRING),
    "strings.Contains": (2, K_STRING),
    "strings.ContainsAny": (2, K_STRING),
    "list.MinItems": (2, K_LIST),
    "list.MaxItems": (2, K_LIST),
    "list.UniqueItems": (1, K_LIST),
    "list.IsSorted": (2, K_LIST),
    "list.Contains": (2, K_LIST),
    "struct.MinFields": (2, K_STRUCT),
    "struct.MaxFields": (2, K_STRUCT),
    "math.MultipleOf": (2, K_NUMBER),
    "json.Valid": (1, K_STRING | K_BYTES),
    "uuid.Valid": (1, K_STRING),
    "time.Duration": (1, K_STRING),
    "time.Time": (1, K_STRING),
    "time.Format": (2, K_STRING),
    **pkg_net.VALIDATORS,
}


def _const_struct(x: dict[str, Any]) -> Vertex:
    """A package member that is a struct of constants (``uuid.ns``)."""
    decls: list[A.Node] = [
        A.Field(_NOPOS, A.Label(_NOPOS, k, None, True), A.Lit(_NOPOS, v), "")
        for k, v in x.items()
    ]
    st = A.StructLit(_NOPOS, decls)
    st.has_fields = True
    tmp = Vertex(None, None)
    tmp.conjuncts.append((st, None, ()))
    return tmp


def package_member(path: str, name: str, pos: Pos) -> Any:
    if not PACKAGES:
        _init()
    pkg = PACKAGES.get(path, {})
    m = pkg.get(name)
    if m is None:
        short = path.rsplit("/", 1)[-1]
        raise CueError(f"undefined: {short}.{name}", pos=[pos])
    return m


def _init() -> None:
    from specflow.spec.cue.evaluator import Builtin

    _register_predeclared()
    for path, members in _packages().items():
        short = path.rsplit("/", 1)[-1]
        PACKAGES[path] = {
            k: (
                Builtin(f"{short}.{k}", v, VALIDATORS.get(f"{short}.{k}"))
                if callable(v) and not isinstance(v, Vertex)
                else (_const_struct(v) if isinstance(v, dict) else v)
            )
            for k, v in members.items()
        }


def ensure_init() -> None:
    if not PACKAGES:
        _init()


__all__ = [
    "PREDECLARED",
    "PACKAGES",
    "package_member",
    "ensure_init",
    "kind_name",
    "kind_of",
    "scalar_eq",
]
