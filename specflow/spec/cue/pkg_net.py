"""The ``net`` package of CUE v0.4: host and port strings, domain names, and IP addresses
given as text or as lists of bytes."""

from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING, Any

from specflow.spec.cue.errors import CueError
from specflow.spec.cue.values import K_ALL, K_STRING

if TYPE_CHECKING:
    from specflow.spec.cue import ast as A
    from specflow.spec.cue.evaluator import Evaluator


def _h() -> Any:
    from specflow.spec.cue import builtins

    return builtins


def parse_ip(s: str) -> bytes | None:
    """Go's net.ParseIP: 16 bytes (IPv4 addresses mapped into IPv6), or None."""
    if not s or "%" in s or s.strip() != s:
        return None
    if "." in s and ":" not in s:
        parts = s.split(".")
        if len(parts) != 4:
            return None
        out = []
        for p in parts:
            if not p.isdigit() or not p.isascii() or len(p) > 3 or (len(p) > 1 and p[0] == "0"):
                return None
            n = int(p)
            if n > 255:
                return None
            out.append(n)
        return b"\x00" * 10 + b"\xff\xff" + bytes(out)
    try:
        return ipaddress.IPv6Address(s).packed
    except ValueError:
        return None


def _ip_arg(ev: Evaluator, val: Any) -> bytes | None:
    """The bytes of an IP given as a string, bytes or a list of byte values (None when it
    is none of these)."""
    from specflow.spec.cue.vertex import Vertex

    x = _h()._evaluated(ev, val)
    if isinstance(x, Vertex):
        if x.is_list:
            out = []
            for a in _h()._list(ev, x, "net"):
                if type(a) is not int or not 0 <= a <= 255:
                    return None
                out.append(a)
            return bytes(out)
        if x.is_struct:
            return None
        x = ev.concrete(x, None)
    else:
        x = ev.concrete(x, None)
    if isinstance(x, bytes):
        x = x.decode("utf-8", "replace")
    if isinstance(x, str):
        return parse_ip(x)
    return None


_V4_PREFIX = b"\x00" * 10 + b"\xff\xff"


def to4(ip: bytes | None) -> bytes | None:
    if ip is None:
        return None
    if len(ip) == 4:
        return ip
    if len(ip) == 16 and ip[:12] == _V4_PREFIX:
        return ip[12:]
    return None


def ip_string(ip: bytes) -> str:
    v4 = to4(ip)
    if v4 is not None:
        return ".".join(str(b) for b in v4)
    if len(ip) == 16:
        return str(ipaddress.IPv6Address(ip))
    return "?" + ip.hex()


def _is_loopback(ip: bytes) -> bool:
    v4 = to4(ip)
    if v4 is not None:
        return v4[0] == 127
    return ip == b"\x00" * 15 + b"\x01"


def _is_multicast(ip: bytes) -> bool:
    v4 = to4(ip)
    if v4 is not None:
        return v4[0] & 0xF0 == 0xE0
    return len(ip) == 16 and ip[0] == 0xFF


def _is_unspecified(ip: bytes) -> bool:
    return ip in (b"\x00" * 4, b"\x00" * 16, _V4_PREFIX + b"\x00" * 4)


def _is_link_local_unicast(ip: bytes) -> bool:
    v4 = to4(ip)
    if v4 is not None:
        return v4[0] == 169 and v4[1] == 254
    return len(ip) == 16 and ip[0] == 0xFE and ip[1] & 0xC0 == 0x80


def _is_link_local_multicast(ip: bytes) -> bool:
    v4 = to4(ip)
    if v4 is not None:
        return v4[:3] == b"\xe0\x00\x00"
    return len(ip) == 16 and ip[0] == 0xFF and ip[1] & 0x0F == 0x02


def _is_interface_local_multicast(ip: bytes) -> bool:
    return len(ip) == 16 and ip[0] == 0xFF and ip[1] & 0x0F == 0x01


def _is_global_unicast(ip: bytes) -> bool:
    if len(ip) not in (4, 16):
        return False
    v4 = to4(ip)
    if v4 == b"\xff\xff\xff\xff":
        return False
    return not (
        _is_unspecified(ip)
        or _is_loopback(ip)
        or _is_multicast(ip)
        or _is_link_local_unicast(ip)
    )


def _ip_test(name: str, test: Any) -> Any:
    def fn(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
        _h()._arity(f"net.{name}", args, 1)
        ip = _ip_arg(ev, args[0])
        return ip is not None and bool(test(ip))

    return fn


def _ip_list(name: str, convert: Any) -> Any:
    def fn(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
        _h()._arity(f"net.{name}", args, 1)
        ip = _ip_arg(ev, args[0])
        if ip is None:
            raise CueError(f"net.{name}: invalid IP {ev.show(args[0])}")
        out = convert(ip)
        if out is None:
            raise CueError(f"net.{name}: cannot convert {ip_string(ip)} to IPv4")
        if isinstance(out, str):
            return out
        return _h().from_native(ev, list(out))

    return fn


def _to16(ip: bytes) -> bytes | None:
    if len(ip) == 4:
        return _V4_PREFIX + ip
    return ip if len(ip) == 16 else None


def _parse_ip(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _h()._arity("net.ParseIP", args, 1)
    s = _h()._str(ev, args[0], "net.ParseIP")
    ip = parse_ip(s)
    if ip is None:
        raise CueError(f'net.ParseIP: invalid IP address "{s}"')
    return _h().from_native(ev, list(ip))


def split_host_port(s: str) -> tuple[str, str]:
    """Go's net.SplitHostPort."""
    i = s.rfind(":")
    if i < 0:
        raise CueError(f"address {s}: missing port in address")
    j = k = 0
    if s.startswith("["):
        end = s.find("]")
        if end < 0:
            raise CueError(f"address {s}: missing ']' in address")
        if end + 1 == len(s):
            raise CueError(f"address {s}: missing port in address")
        if end + 1 != i:
            if s[end + 1] == ":":
                raise CueError(f"address {s}: too many colons in address")
            raise CueError(f"address {s}: missing port in address")
        host = s[1:end]
        j, k = 1, end + 1
    else:
        host = s[:i]
        if ":" in host:
            raise CueError(f"address {s}: too many colons in address")
    if "[" in s[j:]:
        raise CueError(f"address {s}: unexpected '[' in address")
    if "]" in s[k:]:
        raise CueError(f"address {s}: unexpected ']' in address")
    return host, s[i + 1 :]


def _split_host_port(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _h()._arity("net.SplitHostPort", args, 1)
    host, port = split_host_port(_h()._str(ev, args[0], "net.SplitHostPort"))
    return _h().from_native(ev, [host, port])


def _join_host_port(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    from specflow.spec.cue.vertex import Vertex

    _h()._arity("net.JoinHostPort", args, 2)
    host_v = _h()._evaluated(ev, args[0], call.pos)
    if isinstance(host_v, Vertex) and host_v.is_list:
        ip = _ip_arg(ev, host_v)
        if ip is None or len(ip) not in (4, 16):
            raise CueError(f"net.JoinHostPort: invalid host {ev.show(host_v)}")
        host = ip_string(ip)
    else:
        h = ev.concrete(host_v, call.pos)
        if isinstance(h, bytes):
            host = h.decode("utf-8", "replace")
        elif isinstance(h, str):
            host = h
        else:
            raise CueError(f"net.JoinHostPort: cannot use {ev.show(h)} as string")
    p = ev.concrete(args[1], call.pos)
    if isinstance(p, bytes):
        port = p.decode("utf-8", "replace")
    elif isinstance(p, str):
        port = p
    elif type(p) is int:
        port = str(p)
    else:
        raise CueError(f"net.JoinHostPort: cannot use {ev.show(p)} as int")
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


_LDH = re.compile(r"^[A-Za-z0-9-]+$")


def is_fqdn(s: str) -> bool:
    """A valid domain name as the IDNA profile of CUE's net.FQDN checks it: ASCII letters,
    digits and hyphens, labels of 1 to 63 characters not starting or ending with a hyphen,
    at most 253 characters (an ending dot aside)."""
    if not s.isascii():
        return False
    name = s[:-1] if s.endswith(".") else s
    if not name or len(name) > 253:
        return False
    for label in name.split("."):
        if not label or len(label) > 63 or not _LDH.match(label):
            return False
        if label[0] == "-" or label[-1] == "-":
            return False
        if label.lower().startswith("xn--"):
            try:
                label.encode("ascii").decode("idna")
            except UnicodeError:
                return False
    return True


def _fqdn(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _h()._arity("net.FQDN", args, 1)
    return is_fqdn(_h()._str(ev, args[0], "net.FQDN"))


def members() -> dict[str, Any]:
    return {
        "SplitHostPort": _split_host_port,
        "JoinHostPort": _join_host_port,
        "FQDN": _fqdn,
        "IPv4len": 4,
        "IPv6len": 16,
        "ParseIP": _parse_ip,
        "IPv4": _ip_test("IPv4", lambda ip: to4(ip) is not None),
        "IP": _ip_test("IP", lambda ip: True),
        "LoopbackIP": _ip_test("LoopbackIP", _is_loopback),
        "MulticastIP": _ip_test("MulticastIP", _is_multicast),
        "InterfaceLocalMulticastIP": _ip_test(
            "InterfaceLocalMulticastIP", _is_interface_local_multicast
        ),
        "LinkLocalMulticastIP": _ip_test("LinkLocalMulticastIP", _is_link_local_multicast),
        "LinkLocalUnicastIP": _ip_test("LinkLocalUnicastIP", _is_link_local_unicast),
        "GlobalUnicastIP": _ip_test("GlobalUnicastIP", _is_global_unicast),
        "UnspecifiedIP": _ip_test("UnspecifiedIP", _is_unspecified),
        "ToIP4": _ip_list("ToIP4", to4),
        "ToIP16": _ip_list("ToIP16", _to16),
        "IPString": _ip_list("IPString", lambda ip: ip_string(ip)),
    }


# the members that report whether a value is valid (usable as constraints)
VALIDATORS: dict[str, tuple[int, int]] = {
    "net.FQDN": (1, K_STRING),
    **{
        f"net.{n}": (1, K_ALL)
        for n in (
            "IPv4",
            "IP",
            "LoopbackIP",
            "MulticastIP",
            "InterfaceLocalMulticastIP",
            "LinkLocalMulticastIP",
            "LinkLocalUnicastIP",
            "GlobalUnicastIP",
            "UnspecifiedIP",
        )
    },
}
