"""Scalar values, types and bounds of the evaluator.

Concrete scalars are plain Python objects: ``bool``, ``int``, ``Decimal`` (a CUE float),
``str``, ``bytes`` and the ``NULL`` marker. Everything that is not concrete is a ``Top``,
a ``Constraint`` (a set of kinds with bounds) or a ``Disj`` of alternatives.
"""

from __future__ import annotations

import decimal
import operator
import re
from decimal import Decimal
from typing import Any

from specflow.spec.cue.errors import CueError, Pos

CTX = decimal.Context(prec=34, rounding=decimal.ROUND_HALF_EVEN, Emax=999999, Emin=-999999)
CTX.traps[decimal.InvalidOperation] = True
CTX.traps[decimal.DivisionByZero] = True


class _Null:
    __slots__ = ()

    def __repr__(self) -> str:
        return "null"


class _Top:
    __slots__ = ()

    def __repr__(self) -> str:
        return "_"


NULL: Any = _Null()
TOP: Any = _Top()

# kinds (bit set)
K_NULL = 1
K_BOOL = 2
K_INT = 4
K_FLOAT = 8
K_STRING = 16
K_BYTES = 32
K_STRUCT = 64
K_LIST = 128
K_NUMBER = K_INT | K_FLOAT
K_SCALAR = K_NULL | K_BOOL | K_NUMBER | K_STRING | K_BYTES
K_ALL = K_SCALAR | K_STRUCT | K_LIST

KIND_NAMES = [
    (K_NULL, "null"),
    (K_BOOL, "bool"),
    (K_INT, "int"),
    (K_FLOAT, "float"),
    (K_STRING, "string"),
    (K_BYTES, "bytes"),
    (K_STRUCT, "struct"),
    (K_LIST, "list"),
]


def kind_name(k: int) -> str:
    if k == K_ALL:
        return "_"
    names = []
    if k & K_NUMBER == K_NUMBER:
        rest = k & ~K_NUMBER
        names.append("number")
    else:
        rest = k
    names.extend(n for bit, n in KIND_NAMES if rest & bit)
    return "|".join(names) if names else "_|_"


def kind_of(v: Any) -> int:
    if v is NULL:
        return K_NULL
    t = type(v)
    if t is bool:
        return K_BOOL
    if t is int:
        return K_INT
    if t is Decimal:
        return K_FLOAT
    if t is str:
        return K_STRING
    if t is bytes:
        return K_BYTES
    return 0


def is_concrete_scalar(v: Any) -> bool:
    return v is NULL or type(v) in (bool, int, Decimal, str, bytes)


class Bound:
    __slots__ = ("op", "value", "regex", "pos")

    def __init__(self, op: str, value: Any, pos: Pos | None) -> None:
        self.op = op
        self.value = value
        self.pos = pos
        self.regex: Any = None
        if op in ("=~", "!~"):
            if not isinstance(value, str):
                raise CueError(f"invalid operand for {op}: regular expression must be a string")
            try:
                self.regex = compile_regex(value)
            except ValueError as e:
                raise CueError(
                    f"invalid regular expression {value!r}: {e}", pos=[pos] if pos else []
                ) from None

    def kinds(self) -> int:
        if self.op in ("=~", "!~"):
            return K_STRING | K_BYTES
        k = kind_of(self.value)
        if self.op == "!=" and k == K_NULL:
            # != null allows everything else; != "a" only strings (as in CUE)
            return K_ALL & ~K_NULL
        if k & K_NUMBER:
            return K_NUMBER
        return k

    def __repr__(self) -> str:
        return f"{self.op}{fmt_scalar(self.value)}"

    def check(self, v: Any) -> bool:
        op = self.op
        b = self.value
        if op == "!=":
            return not scalar_eq(v, b)
        if op == "=~":
            assert self.regex is not None
            return isinstance(v, str) and self.regex.search(v) is not None
        if op == "!~":
            assert self.regex is not None
            return isinstance(v, str) and self.regex.search(v) is None
        kv, kb = kind_of(v), kind_of(b)
        if not ((kv & K_NUMBER and kb & K_NUMBER) or (kv == kb and kv in (K_STRING, K_BYTES))):
            return False
        return ordered(op, v, b)

    def same(self, other: Bound) -> bool:
        return self.op == other.op and scalar_eq(self.value, other.value)

    def failure(self, v: Any) -> str:
        return f"invalid value {fmt_scalar(v)} (out of bound {self!r})"


class CallBound(Bound):
    """A validator: a builtin that reports whether a value is valid, called with all its
    arguments but the first (``strings.MinRunes(3)``, ``list.UniqueItems()``). ``test`` gets
    the value (a scalar, or the vertex of a list or struct) and returns whether it holds."""

    __slots__ = ("name", "args_text", "test", "kind")

    def __init__(
        self, name: str, args_text: str, kind: int, test: Any, pos: Pos | None
    ) -> None:
        self.op = "call"
        self.value = None
        self.regex = None
        self.pos = pos
        self.name = name
        self.args_text = args_text
        self.kind = kind
        self.test = test

    def kinds(self) -> int:
        return self.kind

    def __repr__(self) -> str:
        return f"{self.name}({self.args_text})"

    def check(self, v: Any) -> bool:
        return bool(self.test(v))

    def same(self, other: Bound) -> bool:
        return other is self

    def failure(self, v: Any) -> str:
        return f"invalid value {fmt_scalar(v)} (does not satisfy {self!r})"


_ORDER = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


def ordered(op: str, a: Any, b: Any) -> bool:
    """``a op b`` for one of the order operators ``<``, ``<=``, ``>``, ``>=``."""
    return bool(_ORDER[op](a, b))


def go_regex(s: str) -> str:
    """Translate the few RE2 spellings that Python writes differently."""
    return s.replace("(?P<", "(?P<").replace("\\z", "\\Z")


try:
    import re2 as _re2
except ImportError:  # pragma: no cover - google-re2 is a dependency
    _re2 = None

_REGEX_CACHE: dict[str, Any] = {}


def compile_regex(s: str) -> Any:
    """A compiled regular expression with RE2 semantics (linear time, no backreferences or
    lookaround), as CUE has them. Raises ``ValueError`` for an invalid expression."""
    rx = _REGEX_CACHE.get(s)
    if rx is not None:
        return rx
    if _re2 is not None:
        opts = _re2.Options()
        opts.log_errors = False
        try:
            rx = _re2.compile(s, opts)
        except _re2.error as e:
            msg = e.args[0] if e.args else e
            if isinstance(msg, bytes):
                msg = msg.decode("utf-8", "replace")
            raise ValueError(str(msg)) from None
    else:
        try:
            rx = re.compile(go_regex(s))
        except re.error as e:
            raise ValueError(str(e)) from None
    if len(_REGEX_CACHE) > 1024:
        _REGEX_CACHE.clear()
    _REGEX_CACHE[s] = rx
    return rx


class Constraint:
    """A non-concrete scalar: allowed kinds plus bounds (``int & >=0``)."""

    __slots__ = ("kinds", "bounds")

    def __init__(self, kinds: int, bounds: tuple[Bound, ...] = ()) -> None:
        self.kinds = kinds
        self.bounds = bounds

    def __repr__(self) -> str:
        parts = []
        if not self.bounds or (
            self.kinds != K_ALL
            and not all(b.kinds() & self.kinds == self.kinds for b in self.bounds)
        ):
            parts.append(kind_name(self.kinds))
        parts.extend(repr(b) for b in self.bounds)
        return " & ".join(parts)


class Disj:
    """A disjunction of values that could not be reduced to one. ``alts`` hold
    (value, is_default) pairs; values are scalars, Constraints or vertices."""

    __slots__ = ("alts",)

    def __init__(self, alts: list[tuple[Any, bool]]) -> None:
        self.alts = alts

    def default(self) -> Any:
        """The single default (or only) value, or None when ambiguous."""
        defs = [v for v, d in self.alts if d]
        if len(defs) == 1:
            return defs[0]
        if not defs and len(self.alts) == 1:
            return self.alts[0][0]
        return None


def scalar_eq(a: Any, b: Any) -> bool:
    ta, tb = type(a), type(b)
    if ta is bool or tb is bool:
        return ta is tb and a == b
    if ta in (int, Decimal) and tb in (int, Decimal):
        return bool(a == b)
    return ta is tb and a == b


def fmt_decimal(d: Decimal) -> str:
    """Format a CUE float the way cue prints it."""
    return str(d)


def fmt_scalar(v: Any) -> str:
    if v is NULL:
        return "null"
    if v is TOP:
        return "_"
    t = type(v)
    if t is bool:
        return "true" if v else "false"
    if t is int:
        return str(v)
    if t is Decimal:
        return fmt_decimal(v)
    if t is str:
        return quote_string(v)
    if t is bytes:
        return "'" + repr(v)[2:-1] + "'"
    return repr(v)


def quote_string(s: str) -> str:
    out = ['"']
    for ch in s:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def interp_str(v: Any) -> str:
    """Text of a concrete scalar inside an interpolation."""
    t = type(v)
    if t is str:
        return str(v)
    if t is bytes:
        return bytes(v).decode("utf-8", errors="replace")
    if is_concrete_scalar(v):
        return fmt_scalar(v)
    raise CueError("invalid interpolation value", incomplete=False)


# basic types and predeclared bounded types
def _range(kind: int, lo: int, hi: int) -> Constraint:
    return Constraint(kind, (Bound(">=", lo, None), Bound("<=", hi, None)))


PREDECLARED_TYPES: dict[str, Constraint] = {
    "int": Constraint(K_INT),
    "float": Constraint(K_FLOAT),
    "number": Constraint(K_NUMBER),
    "string": Constraint(K_STRING),
    "bytes": Constraint(K_BYTES),
    "bool": Constraint(K_BOOL),
    "uint": Constraint(K_INT, (Bound(">=", 0, None),)),
    "uint8": _range(K_INT, 0, 255),
    "byte": _range(K_INT, 0, 255),
    "uint16": _range(K_INT, 0, 65535),
    "uint32": _range(K_INT, 0, 2**32 - 1),
    "uint64": _range(K_INT, 0, 2**64 - 1),
    "uint128": _range(K_INT, 0, 2**128 - 1),
    "int8": _range(K_INT, -128, 127),
    "int16": _range(K_INT, -(2**15), 2**15 - 1),
    "int32": _range(K_INT, -(2**31), 2**31 - 1),
    "int64": _range(K_INT, -(2**63), 2**63 - 1),
    "int128": _range(K_INT, -(2**127), 2**127 - 1),
    "rune": _range(K_INT, 0, 0x10FFFF),
    "float32": Constraint(K_NUMBER),
    "float64": Constraint(K_NUMBER),
}
