"""The ``path`` package: slash-separated and OS-specific file paths, the way Go's
``path/filepath`` treats them for the operating system named by the last argument
(``"unix"`` by default; ``"windows"`` and ``"plan9"`` differ)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from specflow.spec.cue.errors import CueError

if TYPE_CHECKING:
    from specflow.spec.cue import ast as A
    from specflow.spec.cue.evaluator import Evaluator

OS_NAMES = (
    "unix",
    "windows",
    "plan9",
    "aix",
    "android",
    "darwin",
    "dragonfly",
    "freebsd",
    "hurd",
    "illumos",
    "ios",
    "js",
    "linux",
    "nacl",
    "netbsd",
    "openbsd",
    "solaris",
    "zos",
)

_RESERVED = frozenset(
    ["CON", "PRN", "AUX", "NUL"]
    + [f"COM{i}" for i in range(1, 10)]
    + [f"LPT{i}" for i in range(1, 10)]
)


class _OS:
    """Path rules of one family of operating systems."""

    def __init__(self, name: str) -> None:
        self.windows = name == "windows"
        self.plan9 = name == "plan9"
        self.sep = "\\" if self.windows else "/"
        self.list_sep = ";" if self.windows else ("\x00" if self.plan9 else ":")

    def is_sep(self, c: str) -> bool:
        return c == "/" or (self.windows and c == "\\")

    def volume_len(self, p: str) -> int:
        if not self.windows or len(p) < 2:
            return 0
        c = p[0]
        if p[1] == ":" and c.isascii() and c.isalpha():
            return 2
        n = len(p)
        if (
            n >= 5
            and self.is_sep(p[0])
            and self.is_sep(p[1])
            and not self.is_sep(p[2])
            and p[2] != "."
        ):
            # \\server\share
            i = 3
            while i < n - 1:
                if self.is_sep(p[i]):
                    i += 1
                    if not self.is_sep(p[i]):
                        if p[i] == ".":
                            break
                        while i < n and not self.is_sep(p[i]):
                            i += 1
                        return i
                    break
                i += 1
        return 0

    def from_slash(self, p: str) -> str:
        return p.replace("/", self.sep) if self.windows else p

    def to_slash(self, p: str) -> str:
        return p.replace(self.sep, "/") if self.windows else p

    def clean(self, p: str) -> str:
        original = p
        vol_len = self.volume_len(p)
        vol = p[:vol_len]
        p = p[vol_len:]
        if p == "":
            if vol_len > 1 and self.is_sep(original[0]) and self.is_sep(original[1]):
                return self.from_slash(original)
            return original + "."
        rooted = self.is_sep(p[0])
        n = len(p)
        out: list[str] = []
        r = 0
        dotdot = 0
        if rooted:
            out.append(self.sep)
            r, dotdot = 1, 1
        while r < n:
            if self.is_sep(p[r]):
                r += 1
            elif p[r] == "." and (r + 1 == n or self.is_sep(p[r + 1])):
                r += 1
            elif p[r] == "." and p[r + 1 : r + 2] == "." and (r + 2 == n or self.is_sep(p[r + 2])):
                r += 2
                if len(out) > dotdot:
                    out.pop()
                    while len(out) > dotdot and not self.is_sep(out[-1]):
                        out.pop()
                elif not rooted:
                    if out:
                        out.append(self.sep)
                    out.extend("..")
                    dotdot = len(out)
            else:
                if (rooted and len(out) != 1) or (not rooted and len(out) != 0):
                    out.append(self.sep)
                while r < n and not self.is_sep(p[r]):
                    out.append(p[r])
                    r += 1
        if not out:
            out.append(".")
        return self.from_slash(vol + "".join(out))

    def is_unc(self, p: str) -> bool:
        return self.volume_len(p) > 2

    def join(self, elems: list[str]) -> str:
        for i, e in enumerate(elems):
            if e:
                return self._join_non_empty(elems[i:])
        return ""

    def _join_non_empty(self, elems: list[str]) -> str:
        if not self.windows:
            return self.clean("/".join(e for e in elems if e))
        first = elems[0]
        if len(first) == 2 and first[1] == ":":
            i = 1
            while i < len(elems) and elems[i] == "":
                i += 1
            return self.clean(first + self.sep.join(elems[i:]))
        p = self.clean(self.sep.join(elems))
        if not self.is_unc(p):
            return p
        head = self.clean(first)
        if self.is_unc(head):
            return p
        tail = self.clean(self.sep.join(elems[1:]))
        if head[-1] == self.sep:
            return head + tail
        return head + self.sep + tail

    def split(self, p: str) -> list[str]:
        vol = self.volume_len(p)
        i = len(p) - 1
        while i >= vol and not self.is_sep(p[i]):
            i -= 1
        return [p[: i + 1], p[i + 1 :]]

    def split_list(self, p: str) -> list[str]:
        if p == "":
            return []
        if not self.windows:
            return p.split(self.list_sep)
        parts: list[str] = []
        start = 0
        quoted = False
        for i, c in enumerate(p):
            if c == '"':
                quoted = not quoted
            elif c == self.list_sep and not quoted:
                parts.append(p[start:i])
                start = i + 1
        parts.append(p[start:])
        return [x.replace('"', "") for x in parts]

    def ext(self, p: str) -> str:
        i = len(p) - 1
        while i >= 0 and not self.is_sep(p[i]):
            if p[i] == ".":
                return p[i:]
            i -= 1
        return ""

    def base(self, p: str) -> str:
        if p == "":
            return "."
        while p and self.is_sep(p[-1]):
            p = p[:-1]
        p = p[self.volume_len(p) :]
        i = len(p) - 1
        while i >= 0 and not self.is_sep(p[i]):
            i -= 1
        if i >= 0:
            p = p[i + 1 :]
        if p == "":
            return self.sep
        return p

    def dir(self, p: str) -> str:
        vol_len = self.volume_len(p)
        vol = p[:vol_len]
        i = len(p) - 1
        while i >= vol_len and not self.is_sep(p[i]):
            i -= 1
        d = self.clean(p[vol_len : i + 1])
        if d == "." and vol_len > 2:
            return vol
        return vol + d

    def is_abs(self, p: str) -> bool:
        if self.plan9:
            return p.startswith("/") or p.startswith("#")
        if not self.windows:
            return p.startswith("/")
        if p.upper() in _RESERVED:
            return True
        n = self.volume_len(p)
        if n == 0:
            return False
        rest = p[n:]
        return rest != "" and self.is_sep(rest[0])

    def volume_name(self, p: str) -> str:
        return p[: self.volume_len(p)]

    def resolve(self, d: str, sub: str) -> str:
        if self.is_abs(sub):
            return self.clean(sub)
        return self.join([self.clean(d), sub])


def _os_arg(ev: Evaluator, args: list[Any], i: int, fname: str) -> _OS:
    if len(args) <= i:
        return _OS("unix")
    name = ev.concrete(args[i], None)
    if not isinstance(name, str) or name not in OS_NAMES:
        choices = " | ".join(("*" if n == "unix" else "") + f'"{n}"' for n in OS_NAMES)
        shown = ev.show(name)
        raise CueError(f"cannot use {shown} as {choices} in argument {i + 1} to path.{fname}")
    return _OS(name)


def _strs(ev: Evaluator, val: Any, fname: str) -> list[str]:
    from specflow.spec.cue.builtins import _list

    xs = _list(ev, val, f"path.{fname}")
    if not all(type(x) is str for x in xs):
        raise CueError(f"path.{fname}: elements must be strings")
    return xs


def _fn1(fname: str, method: str) -> Any:
    def fn(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
        from specflow.spec.cue.builtins import _str, from_native

        if len(args) not in (1, 2):
            raise CueError(f"path.{fname}: got {len(args)} arguments, want 1 or 2")
        os_ = _os_arg(ev, args, 1, fname)
        return from_native(ev, getattr(os_, method)(_str(ev, args[0], f"path.{fname}")))

    return fn


def _join(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    if len(args) not in (1, 2):
        raise CueError(f"path.Join: got {len(args)} arguments, want 1 or 2")
    os_ = _os_arg(ev, args, 1, "Join")
    return os_.join(_strs(ev, args[0], "Join"))


def _resolve(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    from specflow.spec.cue.builtins import _str

    if len(args) not in (2, 3):
        raise CueError(f"path.Resolve: got {len(args)} arguments, want 2 or 3")
    os_ = _os_arg(ev, args, 2, "Resolve")
    return os_.resolve(_str(ev, args[0], "path.Resolve"), _str(ev, args[1], "path.Resolve"))


def members() -> dict[str, Any]:
    return {
        "Join": _join,
        "Resolve": _resolve,
        "Clean": _fn1("Clean", "clean"),
        "Split": _fn1("Split", "split"),
        "SplitList": _fn1("SplitList", "split_list"),
        "Base": _fn1("Base", "base"),
        "Dir": _fn1("Dir", "dir"),
        "Ext": _fn1("Ext", "ext"),
        "IsAbs": _fn1("IsAbs", "is_abs"),
        "VolumeName": _fn1("VolumeName", "volume_name"),
        "ToSlash": _fn1("ToSlash", "to_slash"),
        "FromSlash": _fn1("FromSlash", "from_slash"),
        "Unix": "unix",
        "Windows": "windows",
        "Plan9": "plan9",
    }
