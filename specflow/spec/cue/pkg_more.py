"""Standard library packages beyond the core ones: encoding/yaml, crypto hashes, uuid, time,
math/bits, and a few extra string functions, as CUE v0.4 has them."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import uuid as _uuid
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import yaml

from specflow.spec.cue.errors import CueError
from specflow.spec.cue.values import NULL

if TYPE_CHECKING:
    from specflow.spec.cue import ast as A
    from specflow.spec.cue.evaluator import Evaluator

# ---------------------------------------------------------------------------------------------
# helpers (the argument helpers of builtins.py, imported lazily to avoid an import cycle)


def _h() -> Any:
    from specflow.spec.cue import builtins

    return builtins


def _arity(name: str, args: list[Any], *counts: int) -> None:
    _h()._arity(name, args, *counts)


def _bytes_or_str(ev: Evaluator, val: Any, name: str) -> bytes:
    x = ev.concrete(val, None)
    if isinstance(x, bytes):
        return x
    if isinstance(x, str):
        return x.encode("utf-8")
    raise CueError(f"{name}: cannot use {ev.show(x)} (type {ev.kind_str(x)}) as bytes")


# ---------------------------------------------------------------------------------------------
# encoding/yaml

_YAML_SPECIAL = re.compile(
    r"""^(?:~|null|Null|NULL|true|True|TRUE|false|False|FALSE|y|Y|yes|Yes|YES|n|N|no|No|NO
    |on|On|ON|off|Off|OFF|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)
    |[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?(?:[eE][-+]?[0-9]+)?|[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |0[xX][0-9a-fA-F_]+|0[oO]?[0-7_]+|0[bB][01_]+|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?
    |<<|=)$""",
    re.VERBOSE,
)
_YAML_INDICATORS = set("-?:,[]{}#&*!|>'\"%@`")


def _yaml_plain_ok(s: str) -> bool:
    if s == "" or s != s.strip() or _YAML_SPECIAL.match(s):
        return False
    if s[0] in _YAML_INDICATORS and not (s[0] in "-?:" and len(s) > 1 and s[1] not in " \t"):
        return False
    if ": " in s or " #" in s or s.endswith(":") or "\t" in s:
        return False
    return all(ch >= " " and ch not in "\x7f\ufeff" for ch in s)


def _yaml_scalar(x: Any) -> str:
    if x is NULL:
        return "null"
    if x is True:
        return "true"
    if x is False:
        return "false"
    if isinstance(x, int):
        return str(x)
    if isinstance(x, Decimal):
        return str(_h().fmt_decimal(x))
    if isinstance(x, bytes):
        import base64

        return "!!binary " + base64.b64encode(x).decode("ascii")
    s = str(x)
    if _yaml_plain_ok(s):
        return s
    return json.dumps(s, ensure_ascii=False)


def _yaml_lines(x: Any, indent: int) -> list[str]:
    """Block YAML of ``x`` (a dict, list or scalar), lines without their final newline."""
    pad = " " * indent
    if isinstance(x, dict):
        if not x:
            return [pad + "{}"]
        out: list[str] = []
        for k, v in x.items():
            key = _yaml_scalar(k)
            if isinstance(v, str) and "\n" in v:
                out.extend(_yaml_block_string(pad + key + ":", v, indent + 4))
            elif isinstance(v, dict | list) and v:
                out.append(pad + key + ":")
                out.extend(_yaml_lines(v, indent + 4))
            else:
                out.append(pad + key + ": " + _yaml_lines(v, 0)[0])
        return out
    if isinstance(x, list):
        if not x:
            return [pad + "[]"]
        out = []
        for v in x:
            if isinstance(v, dict | list) and v:
                sub = _yaml_lines(v, indent + 2)
                out.append(pad + "- " + sub[0][indent + 2 :])
                out.extend(sub[1:])
            elif isinstance(v, str) and "\n" in v:
                out.extend(_yaml_block_string(pad + "-", v, indent + 2))
            else:
                out.append(pad + "- " + _yaml_lines(v, 0)[0])
        return out
    return [pad + _yaml_scalar(x)]


def _yaml_block_string(head: str, s: str, indent: int) -> list[str]:
    if any(ch < " " and ch not in "\n" for ch in s) or s != s.rstrip(" ") or s.startswith(" "):
        return [head + " " + json.dumps(s, ensure_ascii=False)]
    chomp = (
        "" if s.endswith("\n") and not s.endswith("\n\n") else ("+" if s.endswith("\n") else "-")
    )
    body = s[:-1] if s.endswith("\n") and chomp == "" else s
    if chomp == "+":
        body = s[:-1]
    pad = " " * indent
    return [head + " |" + chomp] + [(pad + ln) if ln else "" for ln in body.split("\n")]


def yaml_text(x: Any) -> str:
    return "\n".join(_yaml_lines(x, 0)) + "\n"


def _yaml_marshal(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _arity("yaml.Marshal", args, 1)
    return yaml_text(_h()._native(ev, args[0]))


def _yaml_marshal_stream(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _arity("yaml.MarshalStream", args, 1)
    docs = [_h()._native(ev, a) for a in _h()._list_arcs(ev, args[0], "yaml.MarshalStream")]
    return "---\n".join(yaml_text(d) for d in docs)


def _from_yaml(x: Any) -> Any:
    if x is None:
        return NULL
    if isinstance(x, bool | int | str | bytes):
        return x
    if isinstance(x, float):
        return Decimal(repr(x))
    if isinstance(x, list):
        return [_from_yaml(e) for e in x]
    if isinstance(x, dict):
        return {str(k): _from_yaml(v) for k, v in x.items()}
    if isinstance(x, dt.datetime | dt.date):
        return x.isoformat()
    return str(x)


def _yaml_docs(ev: Evaluator, val: Any, name: str) -> list[Any]:
    text = _bytes_or_str(ev, val, name).decode("utf-8", "replace")
    try:
        return [_from_yaml(d) for d in yaml.safe_load_all(text)]
    except yaml.YAMLError as e:
        raise CueError(f"{name}: invalid YAML: {str(e).splitlines()[0]}") from None


def _yaml_unmarshal(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _arity("yaml.Unmarshal", args, 1)
    docs = _yaml_docs(ev, args[0], "yaml.Unmarshal")
    if len(docs) != 1:
        raise CueError("yaml.Unmarshal: expected a single YAML document")
    return _h().from_native(ev, docs[0])


def _yaml_unmarshal_stream(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _arity("yaml.UnmarshalStream", args, 1)
    docs = _yaml_docs(ev, args[0], "yaml.UnmarshalStream")
    return _h().from_native(ev, docs)


def _yaml_validate(partial: bool) -> Any:
    name = "yaml.ValidatePartial" if partial else "yaml.Validate"

    def fn(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
        from specflow.spec.cue import ast as A
        from specflow.spec.cue.vertex import Vertex

        _arity(name, args, 2)
        for doc in _yaml_docs(ev, args[0], name):
            tmp = Vertex(None, None)
            tmp.conjuncts.append((A.Lit(call.pos, _h().from_native(ev, doc)), None, ()))
            tmp.conjuncts.append((A.Lit(call.pos, args[1]), None, ()))
            if partial:
                ev.evaluate(tmp)
                _check_tree(ev, tmp)
            else:
                _h()._native(ev, tmp)
        return True

    return fn


def _check_tree(ev: Evaluator, v: Any) -> None:
    for a in v.arcs.values():
        try:
            ev.evaluate(a)
        except CueError as e:
            if e.incomplete:
                continue
            raise
        _check_tree(ev, a)


# ---------------------------------------------------------------------------------------------
# crypto


def _hash(name: str, algo: str, digest_size: int | None = None) -> Any:
    def fn(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
        _arity(name, args, 1)
        data = _bytes_or_str(ev, args[0], name)
        if algo.startswith("sha512_"):
            h = hashlib.new("sha512_" + algo.split("_", 1)[1], data)
        else:
            h = hashlib.new(algo, data)
        return h.digest()

    return fn


# ---------------------------------------------------------------------------------------------
# uuid

_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_NS = {
    "DNS": str(_uuid.NAMESPACE_DNS),
    "URL": str(_uuid.NAMESPACE_URL),
    "OID": str(_uuid.NAMESPACE_OID),
    "X500": str(_uuid.NAMESPACE_X500),
    "Nil": "00000000-0000-0000-0000-000000000000",
}


def _uuid_arg(ev: Evaluator, val: Any, name: str) -> _uuid.UUID:
    s = _h()._str(ev, val, name)
    try:
        return _uuid.UUID(s)
    except ValueError:
        raise CueError(f'invalid UUID "{s}"') from None


def _uuid_valid(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _arity("uuid.Valid", args, 1)
    s = _h()._str(ev, args[0], "uuid.Valid")
    if not _UUID_RE.match(s):
        raise CueError(f'invalid UUID "{s}"')
    return True


def _uuid_parse(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _arity("uuid.Parse", args, 1)
    return str(_uuid_arg(ev, args[0], "uuid.Parse"))


def _uuid_hash(name: str, fn_: Any) -> Any:
    def fn(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
        _arity(name, args, 2)
        ns = _uuid_arg(ev, args[0], name)
        data = _bytes_or_str(ev, args[1], name).decode("utf-8", "surrogateescape")
        return str(fn_(ns, data))

    return fn


def _uuid_from_int(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _arity("uuid.FromInt", args, 1)
    n = _h()._int(ev, args[0], "uuid.FromInt")
    if n < 0 or n >= 1 << 128:
        raise CueError("uuid.FromInt: value out of range")
    return str(_uuid.UUID(int=n))


def _uuid_to_int(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _arity("uuid.ToInt", args, 1)
    return _uuid_arg(ev, args[0], "uuid.ToInt").int


def _uuid_urn(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _arity("uuid.URN", args, 1)
    return _uuid_arg(ev, args[0], "uuid.URN").urn


def _uuid_to_string(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _arity("uuid.ToString", args, 1)
    return str(_uuid_arg(ev, args[0], "uuid.ToString"))


def _uuid_variant(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _arity("uuid.Variant", args, 1)
    b = _uuid_arg(ev, args[0], "uuid.Variant").bytes[8]
    # Go's uuid.Variant: 0 invalid, 1 RFC 4122, 2 reserved (Microsoft), 3 future
    if b & 0xC0 == 0x80:
        return 1
    if b & 0xE0 == 0xC0:
        return 2
    if b & 0xE0 == 0xE0:
        return 3
    return 0


def _uuid_version(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _arity("uuid.Version", args, 1)
    return _uuid_arg(ev, args[0], "uuid.Version").bytes[6] >> 4


# ---------------------------------------------------------------------------------------------
# time

_DURATION_RE = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_NS = {
    "ns": 1,
    "us": 1000,
    "µs": 1000,
    "μs": 1000,
    "ms": 1000_000,
    "s": 1000_000_000,
    "m": 60 * 1000_000_000,
    "h": 3600 * 1000_000_000,
}


def parse_duration(s: str) -> int:
    """Go's time.ParseDuration, in nanoseconds."""
    orig = s
    sign = 1
    if s[:1] in "+-":
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise CueError(f'invalid duration "{orig}"')
    total = Decimal(0)
    pos = 0
    while pos < len(s):
        m = _DURATION_RE.match(s, pos)
        if m is None or m.group(1) in ("", "."):
            raise CueError(f'invalid duration "{orig}"')
        total += Decimal(m.group(1)) * _UNIT_NS[m.group(2)]
        pos = m.end()
    return sign * int(total)


def _time_duration(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _arity("time.Duration", args, 1)
    parse_duration(_h()._str(ev, args[0], "time.Duration"))
    return True


def _time_parse_duration(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _arity("time.ParseDuration", args, 1)
    return parse_duration(_h()._str(ev, args[0], "time.ParseDuration"))


_RFC3339_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$"
)


def _parse_rfc3339(s: str) -> tuple[dt.datetime, int]:
    m = _RFC3339_RE.match(s)
    if m is None:
        raise CueError(f'invalid time "{s}"')
    y, mo, d, h, mi, sec = (int(m.group(i)) for i in range(1, 7))
    frac = m.group(7) or ""
    nanos = int((frac[1:] + "000000000")[:9]) if frac else 0
    zone = m.group(8)
    if zone in ("Z", "z"):
        tz = dt.UTC
    else:
        hh, mm = int(zone[1:3]), int(zone[4:6])
        if hh > 23 or mm > 59:
            raise CueError(f'invalid time "{s}"')
        off = dt.timedelta(hours=hh, minutes=mm)
        tz = dt.timezone(-off if zone[0] == "-" else off)
    try:
        return dt.datetime(y, mo, d, h, mi, sec, tzinfo=tz), nanos
    except ValueError:
        raise CueError(f'invalid time "{s}"') from None


def _format_rfc3339nano(t: dt.datetime, nanos: int) -> str:
    base = t.strftime("%Y-%m-%dT%H:%M:%S")
    if nanos:
        base += "." + f"{nanos:09d}".rstrip("0")
    off = t.utcoffset()
    if off is None or off == dt.timedelta(0):
        return base + "Z"
    total = int(off.total_seconds()) // 60
    sign = "-" if total < 0 else "+"
    total = abs(total)
    return f"{base}{sign}{total // 60:02d}:{total % 60:02d}"


def _time_time(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _arity("time.Time", args, 1)
    _parse_rfc3339(_h()._str(ev, args[0], "time.Time"))
    return True


def _time_unix(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _arity("time.Unix", args, 2)
    sec = _h()._int(ev, args[0], "time.Unix")
    nsec = _h()._int(ev, args[1], "time.Unix")
    sec += nsec // 1000_000_000
    nsec %= 1000_000_000
    t = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=sec)
    return _format_rfc3339nano(t, nsec)


_LAYOUTS = {
    "RFC3339": "2006-01-02T15:04:05Z07:00",
    "RFC3339Nano": "2006-01-02T15:04:05.999999999Z07:00",
    "RFC3339Date": "2006-01-02",
    "Kitchen": "3:04PM",
    "ANSIC": "Mon Jan _2 15:04:05 2006",
    "UnixDate": "Mon Jan _2 15:04:05 MST 2006",
    "RFC822": "02 Jan 06 15:04 MST",
    "RFC1123": "Mon, 02 Jan 2006 15:04:05 MST",
}


def _time_format(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    """time.Format(value, layout): whether ``value`` is a time written in ``layout`` (for the
    RFC 3339 layouts and dates; others are refused)."""
    _arity("time.Format", args, 2)
    s = _h()._str(ev, args[0], "time.Format")
    layout = _h()._str(ev, args[1], "time.Format")
    if layout in (_LAYOUTS["RFC3339"], _LAYOUTS["RFC3339Nano"]):
        _parse_rfc3339(s)
        return True
    if layout == _LAYOUTS["RFC3339Date"]:
        try:
            dt.date.fromisoformat(s)
        except ValueError:
            raise CueError(f'invalid time "{s}"') from None
        return True
    raise CueError(f"time.Format: layout {layout!r} is not supported")


def _time_parse(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    """time.Parse(layout, value): the time in RFC 3339 (UTC), for RFC 3339 layouts."""
    _arity("time.Parse", args, 2)
    layout = _h()._str(ev, args[0], "time.Parse")
    s = _h()._str(ev, args[1], "time.Parse")
    if layout in (_LAYOUTS["RFC3339"], _LAYOUTS["RFC3339Nano"]):
        t, nanos = _parse_rfc3339(s)
        return _format_rfc3339nano(t.astimezone(dt.UTC), nanos)
    if layout == _LAYOUTS["RFC3339Date"]:
        try:
            d = dt.date.fromisoformat(s)
        except ValueError:
            raise CueError(f'invalid time "{s}"') from None
        return _format_rfc3339nano(dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC), 0)
    raise CueError(f"time.Parse: layout {layout!r} is not supported")


# ---------------------------------------------------------------------------------------------
# math/bits


def _bits2(name: str, f: Any) -> Any:
    def fn(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
        _arity(f"bits.{name}", args, 2)
        a = _h()._int(ev, args[0], f"bits.{name}")
        b = _h()._int(ev, args[1], f"bits.{name}")
        return f(a, b)

    return fn


def _bits_shift(name: str, left: bool) -> Any:
    def fn(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
        _arity(f"bits.{name}", args, 2)
        a = _h()._int(ev, args[0], f"bits.{name}")
        n = _h()._int(ev, args[1], f"bits.{name}")
        if n < 0:
            raise CueError(f"bits.{name}: negative shift count")
        return a << n if left else a >> n

    return fn


def _bits_at(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _arity("bits.At", args, 2)
    a = _h()._int(ev, args[0], "bits.At")
    i = _h()._int(ev, args[1], "bits.At")
    if i < 0:
        raise CueError("bits.At: negative bit index")
    return (a >> i) & 1


def _bits_set(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _arity("bits.Set", args, 3)
    a = _h()._int(ev, args[0], "bits.Set")
    i = _h()._int(ev, args[1], "bits.Set")
    bit = _h()._int(ev, args[2], "bits.Set")
    if i < 0:
        raise CueError("bits.Set: negative bit index")
    return a | (1 << i) if bit else a & ~(1 << i)


def _bits_ones(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _arity("bits.OnesCount", args, 1)
    return bin(abs(_h()._int(ev, args[0], "bits.OnesCount"))).count("1")


def _bits_len(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _arity("bits.Len", args, 1)
    return abs(_h()._int(ev, args[0], "bits.Len")).bit_length()


# ---------------------------------------------------------------------------------------------
# strings


def _strings_slice_runes(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _arity("strings.SliceRunes", args, 3)
    s = _h()._str(ev, args[0], "strings.SliceRunes")
    i = _h()._int(ev, args[1], "strings.SliceRunes")
    j = _h()._int(ev, args[2], "strings.SliceRunes")
    if i < 0 or j < i or j > len(s):
        raise CueError(f"strings.SliceRunes: index out of range [{i}:{j}]")
    return s[i:j]


def packages() -> dict[str, dict[str, Any]]:
    return {
        "encoding/yaml": {
            "Marshal": _yaml_marshal,
            "MarshalStream": _yaml_marshal_stream,
            "Unmarshal": _yaml_unmarshal,
            "UnmarshalStream": _yaml_unmarshal_stream,
            "Validate": _yaml_validate(False),
            "ValidatePartial": _yaml_validate(True),
        },
        "crypto/md5": {"Sum": _hash("md5.Sum", "md5"), "Size": 16, "BlockSize": 64},
        "crypto/sha1": {"Sum": _hash("sha1.Sum", "sha1"), "Size": 20, "BlockSize": 64},
        "crypto/sha256": {
            "Sum256": _hash("sha256.Sum256", "sha256"),
            "Sum224": _hash("sha256.Sum224", "sha224"),
            "Size": 32,
            "Size224": 28,
            "BlockSize": 64,
        },
        "crypto/sha512": {
            "Sum512": _hash("sha512.Sum512", "sha512"),
            "Sum384": _hash("sha512.Sum384", "sha384"),
            "Sum512_224": _hash("sha512.Sum512_224", "sha512_224"),
            "Sum512_256": _hash("sha512.Sum512_256", "sha512_256"),
            "Size": 64,
            "Size224": 28,
            "Size256": 32,
            "Size384": 48,
            "BlockSize": 128,
        },
        "uuid": {
            "Valid": _uuid_valid,
            "Parse": _uuid_parse,
            "ToString": _uuid_to_string,
            "URN": _uuid_urn,
            "FromInt": _uuid_from_int,
            "ToInt": _uuid_to_int,
            "Variant": _uuid_variant,
            "Version": _uuid_version,
            "SHA1": _uuid_hash("uuid.SHA1", _uuid.uuid5),
            "MD5": _uuid_hash("uuid.MD5", _uuid.uuid3),
            "ns": _NS,
        },
        "time": {
            "Nanosecond": 1,
            "Microsecond": 1000,
            "Millisecond": 1000_000,
            "Second": 1000_000_000,
            "Minute": 60 * 1000_000_000,
            "Hour": 3600 * 1000_000_000,
            "Duration": _time_duration,
            "ParseDuration": _time_parse_duration,
            "Time": _time_time,
            "Unix": _time_unix,
            "Format": _time_format,
            "Parse": _time_parse,
            **_LAYOUTS,
        },
        "math/bits": {
            "And": _bits2("And", lambda a, b: a & b),
            "Or": _bits2("Or", lambda a, b: a | b),
            "Xor": _bits2("Xor", lambda a, b: a ^ b),
            "Clear": _bits2("Clear", lambda a, b: a & ~b),
            "Lsh": _bits_shift("Lsh", True),
            "Rsh": _bits_shift("Rsh", False),
            "At": _bits_at,
            "Set": _bits_set,
            "OnesCount": _bits_ones,
            "Len": _bits_len,
        },
    }


STRINGS_EXTRA = {"SliceRunes": _strings_slice_runes}
