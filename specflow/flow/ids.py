"""Content-addressed task ids: a hash of what a task does.

The canonical form covers JSON-like values, numpy arrays (dtype, shape, bytes), built objects
(by the spec they were built from), functions and classes (by qualified name), partials,
dataclasses and plain objects (by class and state). Same work gives the same id in any process
on any machine. A value that has no canonical form is an error, never a random id.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import json
import math
import pathlib
import struct
from collections.abc import Mapping
from typing import Any

from specflow.builder.provenance import get_spec


class UnhashableArgumentError(TypeError):
    """An argument has no canonical form, so a task id cannot be derived from it."""


def _qualname(obj: Any) -> str:
    mod = getattr(obj, "__module__", None) or "?"
    qn = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None) or type(obj).__name__
    return f"{mod}.{qn}"


#: types found to hash through their ``__specflow_id__`` (the walk reaches that branch by type
#: alone, so the next value of the type goes there directly)
_CUSTOM: dict[type, tuple[bytes, Any]] = {}


def _feed(h: Any, obj: Any, depth: int = 0) -> None:  # noqa: C901 - one dispatch table
    if depth > 200:
        raise UnhashableArgumentError("argument nesting too deep to hash")
    up = h.update
    custom = _CUSTOM.get(type(obj))
    if custom is not None:
        up(custom[0])
        _feed(h, custom[1](obj), depth + 1)
        return
    if obj is None:
        up(b"N")
    elif obj is True:
        up(b"T")
    elif obj is False:
        up(b"F")
    elif type(obj) is int:
        up(b"i%d;" % obj)
    elif type(obj) is str:
        b = obj.encode("utf-8", "surrogatepass")
        up(b"s%d:" % len(b))
        up(b)
    elif type(obj) is float:
        if math.isnan(obj):
            up(b"fnan")
        else:
            up(b"f" + struct.pack("<d", obj))
    elif isinstance(obj, (list, tuple)):
        up(b"L" if isinstance(obj, list) else b"U")
        up(b"%d[" % len(obj))
        for v in obj:
            _feed(h, v, depth + 1)
        up(b"]")
    elif isinstance(obj, Mapping) and not hasattr(obj, "__built_spec__"):
        items = sorted(((_key_bytes(k), v) for k, v in obj.items()), key=lambda kv: kv[0])
        up(b"D%d{" % len(items))
        for kb, v in items:
            up(kb)
            _feed(h, v, depth + 1)
        up(b"}")
    elif isinstance(obj, (bytes, bytearray, memoryview)):
        b = bytes(obj)
        up(b"b%d:" % len(b))
        up(b)
    elif isinstance(obj, enum.Enum):  # before the builtins: IntEnum, StrEnum are both
        up(b"E" + _qualname(type(obj)).encode() + b"." + obj.name.encode())
    elif isinstance(obj, bool | int | float | str):  # other subclasses hash as their base
        _feed(h, type(obj).__mro__[-2](obj), depth + 1)
    elif isinstance(obj, (set, frozenset)):
        parts = sorted(task_digest_of(v) for v in obj)
        up(b"S%d{" % len(parts))
        for p in parts:
            up(p.encode())
        up(b"}")
    elif isinstance(obj, pathlib.PurePath):
        up(b"P")
        _feed(h, str(obj), depth + 1)
    else:
        _feed_object(h, obj, depth)


def _key_bytes(k: Any) -> bytes:
    if isinstance(k, str):
        return b"k" + k.encode("utf-8", "surrogatepass") + b"\x00"
    return b"K" + task_digest_of(k).encode() + b"\x00"


def _feed_object(h: Any, obj: Any, depth: int) -> None:
    up = h.update
    np = _numpy()
    if np is not None:
        if isinstance(obj, np.ndarray):
            arr = np.ascontiguousarray(obj)
            up(b"A" + arr.dtype.str.encode() + repr(arr.shape).encode())
            up(arr.tobytes())
            return
        if isinstance(obj, np.generic):
            up(b"a" + obj.dtype.str.encode())
            up(obj.tobytes())
            return
    custom = getattr(type(obj), "__specflow_id__", None)
    if custom is not None:
        tag = b"C" + _qualname(type(obj)).encode()
        _CUSTOM[type(obj)] = (tag, custom)
        up(tag)
        _feed(h, custom(obj), depth + 1)
        return
    spec = get_spec(obj)
    if spec is not None:
        up(b"B")
        _feed(h, spec, depth + 1)
        return
    if isinstance(obj, functools.partial):
        up(b"p")
        _feed(h, obj.func, depth + 1)
        _feed(h, list(obj.args), depth + 1)
        _feed(h, dict(obj.keywords), depth + 1)
        return
    if isinstance(obj, type) or callable(obj) and hasattr(obj, "__qualname__"):
        qn = _qualname(obj)
        if "<lambda>" in qn or "<locals>" in qn:
            code = getattr(obj, "__code__", None)
            if code is None:
                raise UnhashableArgumentError(f"cannot derive a stable id from {qn}")
            up(b"l" + qn.encode())
            up(code.co_code)
            _feed(h, [repr(c) for c in code.co_consts], depth + 1)
            return
        up(b"Q" + qn.encode())
        return
    if dataclasses.is_dataclass(obj):
        up(b"d" + _qualname(type(obj)).encode())
        _feed(h, {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}, depth + 1)
        return
    state = getattr(obj, "__dict__", None)
    if isinstance(state, dict):
        up(b"o" + _qualname(type(obj)).encode())
        _feed(h, {k: v for k, v in state.items() if not k.startswith("_cache")}, depth + 1)
        return
    slots = getattr(type(obj), "__slots__", None)
    if slots:
        up(b"o" + _qualname(type(obj)).encode())
        _feed(h, {s: getattr(obj, s, None) for s in slots}, depth + 1)
        return
    raise UnhashableArgumentError(
        f"cannot derive a stable id from a {type(obj).__qualname__}; give the class a "
        "__specflow_id__(self) method that returns JSON-like data describing it"
    )


_NP: Any = None


def _numpy() -> Any:
    global _NP
    if _NP is None:
        try:
            import numpy

            _NP = numpy
        except ImportError:  # pragma: no cover - numpy is a dependency
            _NP = False
    return _NP or None


def task_digest_of(obj: Any) -> str:
    """The canonical digest of one value (hex)."""
    h = hashlib.blake2b(digest_size=16)
    _feed(h, obj)
    return h.hexdigest()


_dumps = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=True,
    check_circular=False,
).encode


def _digest(obj: Any) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    _feed(h, obj)
    return h.digest()


def task_id(operation: str, op_identity: Any, kwargs: Mapping[str, Any]) -> str:
    """The id of calling ``op_identity`` (registered name@version or qualified name, plus
    its spec when built) with ``kwargs``.

    Plain JSON data (str keys, no subclasses of builtins beyond what JSON prints the same)
    takes a fast path through the C JSON encoder. Anything else is hashed as the digests of
    the identity and of each argument (by name), so that :class:`IdPrefix` can hash the
    arguments many tasks share once and give the same ids.
    """
    if _plain_keys(kwargs):
        text = _json_text(operation, op_identity, kwargs)
        if text is not None:
            return _json_id(text)
    return _combine(operation, _digest(op_identity),
                    {_key_bytes(k): _digest(v) for k, v in kwargs.items()})


def _json_text(operation: str, op_identity: Any, kwargs: Mapping[str, Any]) -> str | None:
    try:
        return _dumps([operation, op_identity, kwargs])
    except (TypeError, ValueError, RecursionError):
        return None


def _json_id(text: str) -> str:
    return hashlib.blake2b(b"J" + text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def _head(operation: str, identity: bytes) -> bytes:
    return b"M" + operation.encode("utf-8", "surrogatepass") + b"\x00" + identity


def _combine(operation: str, identity: bytes, parts: dict[bytes, bytes]) -> str:
    h = hashlib.blake2b(_head(operation, identity), digest_size=16)
    h.update(b"%d{" % len(parts))
    for key in sorted(parts):  # keys end in a NUL and digests have one length: unambiguous
        h.update(key)
        h.update(parts[key])
    return h.hexdigest()


class IdPrefix:
    """Ids of many calls of one operation that share most of their arguments (``common``):
    the operation and the shared arguments are hashed once, each call's own arguments per
    call. ``IdPrefix(op, identity, common).task_id(own)`` equals
    ``task_id(op, identity, {**common, **own})``: the same work has the same id whichever way
    it was made. The shared arguments are taken as they are now; changing them afterwards
    does not change the ids."""

    __slots__ = ("operation", "identity", "common", "_parts", "_head", "_layouts")

    def __init__(self, operation: str, op_identity: Any, common: Mapping[str, Any]) -> None:
        self.operation = operation
        self.identity = op_identity
        self.common = dict(common)
        self._parts: dict[bytes, bytes] | None = None
        self._head = b""
        #: per tuple of own argument names: the bytes between their digests
        self._layouts: dict[tuple[str, ...], tuple[list[bytes], list[str]]] = {}
        if not (_plain_keys(self.common)
                and _json_text(operation, op_identity, self.common) is not None):
            # the shared arguments have no JSON form, so no call's arguments have one
            self._head = _head(operation, _digest(op_identity))
            self._parts = {_key_bytes(k): _digest(v) for k, v in self.common.items()}

    def task_id(self, own: Mapping[str, Any]) -> str:
        """The id of the call with the shared arguments and ``own`` (which win on a clash)."""
        if self._parts is None:
            return task_id(self.operation, self.identity, {**self.common, **own})
        names = tuple(own)
        layout = self._layouts.get(names)
        if layout is None:
            layout = self._layouts[names] = self._layout(names)
        gaps, ordered = layout
        pieces = [gaps[0]]
        for name, gap in zip(ordered, gaps[1:], strict=True):
            pieces.append(_digest(own[name]))
            pieces.append(gap)
        return hashlib.blake2b(b"".join(pieces), digest_size=16).hexdigest()

    def _layout(self, names: tuple[str, ...]) -> tuple[list[bytes], list[str]]:
        """What :func:`_combine` hashes for calls with own arguments ``names``: the bytes
        between their digests, and the names in the order their digests go."""
        assert self._parts is not None
        own = {_key_bytes(n): n for n in names}
        parts: dict[bytes, bytes | None] = {**self._parts, **dict.fromkeys(own)}
        gaps: list[bytes] = []
        ordered: list[str] = []
        cur = [self._head, b"%d{" % len(parts)]
        for key in sorted(parts):
            cur.append(key)
            digest = parts[key]
            if digest is None:
                gaps.append(b"".join(cur))
                cur = []
                ordered.append(own[key])
            else:
                cur.append(digest)
        gaps.append(b"".join(cur))
        return gaps, ordered


def _plain_keys(obj: Any) -> bool:
    """True when every mapping in ``obj`` is a plain dict with str keys (so the JSON form
    cannot confuse ``{1: x}`` with ``{"1": x}``), and holds no built object."""
    t = type(obj)
    if t is dict:
        for k, v in obj.items():
            if type(k) is not str:
                return False
            tv = type(v)
            if (tv is dict or tv is list or tv is tuple) and not _plain_keys(v):
                return False
        return True
    if t is list or t is tuple:
        for v in obj:
            tv = type(v)
            if (tv is dict or tv is list or tv is tuple) and not _plain_keys(v):
                return False
        return True
    return True


class _Recorder:
    """Stands for a hash while :func:`_feed` runs: keeps the bytes it would be fed."""

    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def update(self, data: bytes) -> None:
        self.parts.append(bytes(data))


def _stream(obj: Any, depth: int = 0) -> bytes:
    r = _Recorder()
    _feed(r, obj, depth)
    return b"".join(r.parts)


