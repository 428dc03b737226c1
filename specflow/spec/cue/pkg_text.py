"""The ``text/tabwriter`` and ``text/template`` packages of CUE v0.4.

``tabwriter.Write`` aligns tab-separated cells in columns the way Go's text/tabwriter does
with CUE's settings (no minimum width, one space of padding). ``template.Execute`` runs a Go
text template over the data: fields and keys (``{{.a.b}}``), variables, pipelines,
``if``/``else``/``range``/``with``, comments, trim markers and Go's predefined functions."""

from __future__ import annotations

import json
import re
import urllib.parse
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from specflow.spec.cue.errors import CueError

if TYPE_CHECKING:
    from specflow.spec.cue import ast as A
    from specflow.spec.cue.evaluator import Evaluator


def _h() -> Any:
    from specflow.spec.cue import builtins

    return builtins


# ---------------------------------------------------------------------------------------------
# text/tabwriter


def tabwrite(text: str, padding: int = 1) -> str:
    """Align the tab-terminated cells of ``text`` in columns (Go's tabwriter, minwidth 0,
    padding character a space): a column spans consecutive lines that have a cell in it."""
    raw = text.split("\n")
    lines = [ln.split("\t") for ln in raw]
    out: list[str] = []
    widths: list[int] = []

    def write_lines(a: int, b: int) -> None:
        for i in range(a, b):
            cells = lines[i]
            parts: list[str] = []
            for j, c in enumerate(cells):
                if j < len(widths) and j < len(cells) - 1:
                    parts.append(c + " " * (widths[j] - len(c)))
                else:
                    parts.append(c)
            out.append("".join(parts))

    def fmt(line0: int, line1: int) -> None:
        col = len(widths)
        this = line0
        while this < line1:
            if col >= len(lines[this]) - 1:
                this += 1
                continue
            write_lines(line0, this)
            line0 = this
            width = 0
            while this < line1 and col < len(lines[this]) - 1:
                width = max(width, len(lines[this][col]) + padding)
                this += 1
            widths.append(width)
            fmt(line0, this)
            widths.pop()
            line0 = this
        write_lines(line0, line1)

    fmt(0, len(lines))
    return "\n".join(out)


def _tab_write(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    from specflow.spec.cue.vertex import Vertex

    _h()._arity("tabwriter.Write", args, 1)
    x = _h()._evaluated(ev, args[0], call.pos)
    if isinstance(x, Vertex) and x.is_list:
        parts = []
        for a in _h()._list_arcs(ev, x, "tabwriter.Write"):
            parts.append(_text(ev, a) + "\n")
        return tabwrite("".join(parts))
    if isinstance(x, Vertex) and x.is_struct:
        raise CueError("tabwriter.Write: unsupported type struct")
    return tabwrite(_text(ev, x))


def _text(ev: Evaluator, val: Any) -> str:
    x = ev.concrete(val, None)
    if isinstance(x, bytes):
        return x.decode("utf-8", "replace")
    if isinstance(x, str):
        return x
    raise CueError(f"tabwriter.Write: cannot use {ev.show(x)} (type {ev.kind_str(x)}) as bytes")


# ---------------------------------------------------------------------------------------------
# text/template


class TemplateError(Exception):
    pass


_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)
_TOKEN = re.compile(
    r"""\s*(?:
      (?P<str>"(?:[^"\\]|\\.)*"|`[^`]*`)
    | (?P<char>'(?:[^'\\]|\\.)')
    | (?P<num>[-+]?(?:0[xX][0-9a-fA-F]+|\d+\.\d*(?:[eE][-+]?\d+)?|\.\d+|\d+(?:[eE][-+]?\d+)?))
    | (?P<decl>:=|=)
    | (?P<var>\$[A-Za-z0-9_]*)
    | (?P<field>(?:\.[A-Za-z_][A-Za-z0-9_]*)+|\.)
    | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<punct>[|(),])
    )""",
    re.X,
)


def _tokens(src: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    src = src.strip()
    while pos < len(src):
        m = _TOKEN.match(src, pos)
        if m is None or m.end() == pos:
            raise TemplateError(f"unexpected {src[pos:pos + 10]!r} in action")
        kind = m.lastgroup
        assert kind is not None
        tok = m.group(kind)
        out.append((kind, tok))
        pos = m.end()
        # a field chain right after a value: (x).a
        if kind == "punct" and tok == ")" and pos < len(src) and src[pos] == ".":
            m2 = re.match(r"(?:\.[A-Za-z_][A-Za-z0-9_]*)+", src[pos:])
            if m2:
                out.append(("chain", m2.group(0)))
                pos += m2.end()
    return out


class _Node:
    pass


class _Text(_Node):
    def __init__(self, text: str) -> None:
        self.text = text


class _Action(_Node):
    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe


class _Block(_Node):
    def __init__(self, kind: str, pipe: Any) -> None:
        self.kind = kind
        self.pipe = pipe
        self.body: list[_Node] = []
        self.orelse: list[_Node] = []
        # an {{else if}} block: it ends with the {{end}} of the block it continues
        self.chained = False


def _parse_template(src: str) -> list[_Node]:
    # split into text and actions, applying trim markers
    items: list[tuple[str, str]] = []
    pos = 0
    for m in _ACTION.finditer(src):
        text = src[pos : m.start()]
        if m.group(1):
            text = text.rstrip(" \t\r\n")
        if items and items[-1][0] == "trim":
            items.pop()
            text = text.lstrip(" \t\r\n")
        items.append(("text", text))
        items.append(("action", m.group(2)))
        if m.group(3):
            items.append(("trim", ""))
        pos = m.end()
    text = src[pos:]
    if items and items[-1][0] == "trim":
        items.pop()
        text = text.lstrip(" \t\r\n")
    items.append(("text", text))

    root: list[_Node] = []
    stack: list[tuple[_Block | None, list[_Node]]] = [(None, root)]
    for kind, body in items:
        cur = stack[-1][1]
        if kind == "text":
            if body:
                cur.append(_Text(body))
            continue
        a = body.strip()
        if a.startswith("/*"):
            continue
        word = a.split(None, 1)[0] if a else ""
        rest = a[len(word) :].strip()
        if word in ("if", "range", "with"):
            blk = _Block(word, _parse_pipe(rest))
            cur.append(blk)
            stack.append((blk, blk.body))
        elif word == "else":
            blk0 = stack[-1][0]
            if blk0 is None:
                raise TemplateError("unexpected {{else}}")
            stack.pop()
            if rest.startswith("if ") or rest.startswith("with "):
                w2 = rest.split(None, 1)[0]
                inner = _Block(w2, _parse_pipe(rest[len(w2) :].strip()))
                inner.kind = w2
                blk0.orelse.append(inner)
                # the nested block shares the enclosing {{end}}
                inner.chained = True
                stack.append((blk0, blk0.orelse))
                stack.append((inner, inner.body))
            else:
                stack.append((blk0, blk0.orelse))
        elif word == "end":
            if len(stack) == 1:
                raise TemplateError("unexpected {{end}}")
            blk1, _ = stack.pop()
            while blk1 is not None and blk1.chained:
                blk1, _ = stack.pop()
        elif word in ("define", "template", "block", "break", "continue"):
            raise TemplateError(f"{{{{{word}}}}} is not supported")
        else:
            cur.append(_Action(_parse_pipe(a)))
    if len(stack) != 1:
        raise TemplateError("unexpected EOF")
    return root


def _parse_pipe(src: str) -> Any:
    toks = _tokens(src)
    decl: list[str] = []
    # $x := pipeline, or $i, $e := pipeline
    for j, (k, _t) in enumerate(toks):
        if k == "decl":
            decl = [t2 for k2, t2 in toks[:j] if k2 == "var"]
            toks = toks[j + 1 :]
            break
    cmds: list[list[Any]] = [[]]
    depth = 0
    group: list[tuple[str, str]] = []
    for k, t in toks:
        if depth:
            if k == "punct" and t == "(":
                depth += 1
            elif k == "punct" and t == ")":
                depth -= 1
                if depth == 0:
                    cmds[-1].append(("pipe", _parse_pipe(" ".join(x for _, x in group))))
                    group = []
                    continue
            group.append((k, t))
            continue
        if k == "punct" and t == "(":
            depth = 1
            continue
        if k == "punct" and t == "|":
            cmds.append([])
            continue
        if k == "punct" and t == ",":
            continue
        if k == "chain":
            cmds[-1][-1] = ("chain", cmds[-1][-1], t)
            continue
        cmds[-1].append((k, t))
    if depth:
        raise TemplateError("unclosed left paren")
    if any(not c for c in cmds):
        raise TemplateError("missing command")
    return (decl, cmds)


_NO_VALUE = object()


def _go_str(x: Any) -> str:
    """A value printed as Go's fmt %v prints the decoded data."""
    if x is None:
        return "<nil>"
    if x is True:
        return "true"
    if x is False:
        return "false"
    if isinstance(x, float):
        return _go_float(x)
    if isinstance(x, Decimal):
        return _go_float(float(x))
    if isinstance(x, dict):
        return "map[" + " ".join(f"{k}:{_go_str(x[k])}" for k in sorted(x)) + "]"
    if isinstance(x, list):
        return "[" + " ".join(_go_str(e) for e in x) + "]"
    if x is _NO_VALUE:
        return "<no value>"
    return str(x)


def _go_float(f: float) -> str:
    if f == int(f) and abs(f) < 1e21:
        return str(int(f))
    r = repr(f)
    if "e" in r:
        mant, exp = r.split("e")
        sign = "-" if exp.startswith("-") else "+"
        return f"{mant}e{sign}{abs(int(exp)):02d}"
    return r


def _truth(x: Any) -> bool:
    if x is None or x is _NO_VALUE:
        return False
    if isinstance(x, bool):
        return x
    if isinstance(x, int | float | Decimal):
        return x != 0
    if isinstance(x, str | list | dict):
        return len(x) > 0
    return True


def _printf(fmt: str, *args: Any) -> str:
    out: list[str] = []
    it = iter(args)
    i = 0
    while i < len(fmt):
        ch = fmt[i]
        if ch != "%":
            out.append(ch)
            i += 1
            continue
        m = re.match(r"%([-+# 0]*)(\d*)(?:\.(\d+))?([vsdqfgetxX%])", fmt[i:])
        if m is None:
            out.append(ch)
            i += 1
            continue
        flags, width, prec, verb = m.groups()
        i += m.end()
        if verb == "%":
            out.append("%")
            continue
        arg = next(it, _NO_VALUE)
        if arg is _NO_VALUE:
            out.append(f"%!{verb}(MISSING)")
            continue
        if verb in "vst":
            s = _go_str(arg)
        elif verb == "q":
            s = json.dumps(arg if isinstance(arg, str) else _go_str(arg), ensure_ascii=False)
        elif verb == "d":
            s = str(int(arg)) if isinstance(arg, int | float) else f"%!d({_go_str(arg)})"
        elif verb in "xX":
            s = format(int(arg), verb) if isinstance(arg, int) else _go_str(arg).encode().hex()
        else:
            p = int(prec) if prec else 6
            if not isinstance(arg, int | float):
                raise TemplateError(f"bad argument {_go_str(arg)} for %{verb}")
            s = format(float(arg), f".{p}{verb}")
        if width:
            w = int(width)
            s = s.ljust(w) if "-" in flags else s.rjust(w, "0" if "0" in flags else " ")
        out.append(s)
    extra = list(it)
    if extra:
        out.append("%!(EXTRA " + ", ".join(_go_str(e) for e in extra) + ")")
    return "".join(out)


def _cmp(op: str) -> Any:
    def fn(a: Any, *bs: Any) -> bool:
        if op == "eq":
            return any(a == b for b in bs)
        b = bs[0]
        if op == "ne":
            return bool(a != b)
        try:
            return bool({"lt": a < b, "le": a <= b, "gt": a > b, "ge": a >= b}[op])
        except TypeError:
            raise TemplateError(f"incompatible types for comparison in {op}") from None

    return fn


def _index(x: Any, *keys: Any) -> Any:
    for k in keys:
        if isinstance(x, dict):
            x = x.get(k, _NO_VALUE)
        elif isinstance(x, list | str):
            if not isinstance(k, int) or not 0 <= k < len(x):
                raise TemplateError(f"index out of range: {k}")
            x = x[k]
        else:
            raise TemplateError(f"can't index item of type {type(x).__name__}")
    return x


def _len(x: Any) -> int:
    if isinstance(x, str | list | dict):
        return len(x.encode() if isinstance(x, str) else x)
    raise TemplateError(f"len of type {type(x).__name__}")


def _and(*xs: Any) -> Any:
    for x in xs:
        if not _truth(x):
            return x
    return xs[-1]


def _or(*xs: Any) -> Any:
    for x in xs:
        if _truth(x):
            return x
    return xs[-1]


def _js_escape(s: str) -> str:
    out = []
    for ch in s:
        if ch in "\\'\"":
            out.append("\\" + ch)
        elif ch == "<":
            out.append("\\u003C")
        elif ch == ">":
            out.append("\\u003E")
        elif ch == "&":
            out.append("\\u0026")
        elif ch == "=":
            out.append("\\u003D")
        elif ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return "".join(out)


def html_escape(s: str, *, nul: bool = True) -> str:
    """Go's template.HTMLEscapeString (``nul=False``: html.EscapeString, which keeps NUL)."""
    out = (
        s.replace("&", "&amp;")
        .replace("'", "&#39;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&#34;")
    )
    return out.replace("\x00", "\ufffd") if nul else out


_FUNCS: dict[str, Any] = {
    "and": _and,
    "or": _or,
    "not": lambda x: not _truth(x),
    "len": _len,
    "index": _index,
    "print": lambda *xs: "".join(_go_str(x) for x in xs),
    "println": lambda *xs: " ".join(_go_str(x) for x in xs) + "\n",
    "printf": lambda f, *xs: _printf(f, *xs),
    "html": lambda *xs: html_escape("".join(_go_str(x) for x in xs)),
    "js": lambda *xs: _js_escape("".join(_go_str(x) for x in xs)),
    "urlquery": lambda *xs: urllib.parse.quote_plus("".join(_go_str(x) for x in xs)),
    **{op: _cmp(op) for op in ("eq", "ne", "lt", "le", "gt", "ge")},
}


class _Exec:
    def __init__(self, data: Any) -> None:
        self.vars: list[tuple[str, Any]] = [("$", data)]
        self.out: list[str] = []

    def var(self, name: str) -> Any:
        for n, v in reversed(self.vars):
            if n == name:
                return v
        raise TemplateError(f"undefined variable: {name}")

    def field(self, x: Any, chain: str) -> Any:
        for name in chain.split(".")[1:]:
            if not name:
                continue
            if isinstance(x, dict):
                x = x.get(name, _NO_VALUE)
            elif x is None or x is _NO_VALUE:
                return _NO_VALUE
            else:
                raise TemplateError(f"can't evaluate field {name} in type {type(x).__name__}")
        return x

    def arg(self, tok: Any, dot: Any) -> Any:
        kind, t = tok[0], tok[1]
        if kind == "chain":
            return self.field(self.arg(tok[1], dot), tok[2])
        if kind == "pipe":
            return self.pipe(t, dot)
        if kind == "field":
            return dot if t == "." else self.field(dot, t)
        if kind == "var":
            base, _, rest = t.partition(".")
            v = self.var(base)
            return self.field(v, "." + rest) if rest else v
        if kind == "str":
            return t[1:-1] if t[0] == "`" else json.loads(t)
        if kind == "char":
            return ord(t[1:-1].encode().decode("unicode_escape"))
        if kind == "num":
            try:
                return int(t, 0)
            except ValueError:
                return float(t)
        if kind == "ident":
            if t in ("true", "false"):
                return t == "true"
            if t == "nil":
                return None
            fn = _FUNCS.get(t)
            if fn is None:
                raise TemplateError(f'function "{t}" not defined')
            return fn()
        raise TemplateError(f"unexpected {t}")

    def command(self, cmd: list[Any], dot: Any, last: Any) -> Any:
        head = cmd[0]
        if head[0] == "ident" and head[1] in _FUNCS:
            args = [self.arg(t, dot) for t in cmd[1:]]
            if last is not _UNSET:
                args.append(last)
            try:
                return _FUNCS[head[1]](*args)
            except TypeError:
                raise TemplateError(f"wrong number of args for {head[1]}") from None
        if len(cmd) > 1 or last is not _UNSET:
            raise TemplateError(f"can't give argument to non-function {head[1]}")
        return self.arg(head, dot)

    def pipe(self, pipe: Any, dot: Any, declare: bool = True) -> Any:
        decl, cmds = pipe
        val: Any = _UNSET
        for cmd in cmds:
            val = self.command(cmd, dot, val)
        if declare and decl:
            self.vars.append((decl[-1], val))
        return val

    def run(self, nodes: list[_Node], dot: Any) -> None:
        for n in nodes:
            if isinstance(n, _Text):
                self.out.append(n.text)
            elif isinstance(n, _Action):
                val = self.pipe(n.pipe, dot)
                if not n.pipe[0]:
                    self.out.append(_go_str(val))
            elif isinstance(n, _Block):
                mark = len(self.vars)
                if n.kind == "range":
                    self.range(n, dot)
                else:
                    val = self.pipe(n.pipe, dot, n.kind == "if")
                    if _truth(val):
                        self.run(n.body, val if n.kind == "with" else dot)
                    else:
                        self.run(n.orelse, dot)
                del self.vars[mark:]

    def range(self, n: _Block, dot: Any) -> None:
        decl, _ = n.pipe
        val = self.pipe(n.pipe, dot, declare=False)
        if isinstance(val, dict):
            items = [(k, val[k]) for k in sorted(val)]
        elif isinstance(val, list):
            items = list(enumerate(val))
        elif isinstance(val, int) and not isinstance(val, bool):
            items = [(i, i) for i in range(val)]
        elif val is None or val is _NO_VALUE:
            items = []
        else:
            raise TemplateError(f"range can't iterate over {_go_str(val)}")
        if not items:
            self.run(n.orelse, dot)
            return
        for k, v in items:
            mark = len(self.vars)
            if len(decl) == 1:
                self.vars.append((decl[0], v))
            elif len(decl) >= 2:
                self.vars.append((decl[0], k))
                self.vars.append((decl[1], v))
            self.run(n.body, v)
            del self.vars[mark:]


_UNSET: Any = object()


def execute_template(src: str, data: Any) -> str:
    tree = _parse_template(src)
    ex = _Exec(data)
    ex.run(tree, data)
    return "".join(ex.out)


def _decode(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _decode(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_decode(v) for v in x]
    if isinstance(x, Decimal):
        return float(x)
    return None if repr(x) == "null" else x


def _execute(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _h()._arity("template.Execute", args, 2)
    src = _h()._str(ev, args[0], "template.Execute")
    try:
        data = _decode(_h()._native(ev, args[1]))
    except CueError as e:
        if e.incomplete:
            e.msg = f"cannot convert non-concrete value: {e.msg}"
        # the call fails where it stands, not inside its argument
        e.path = None
        raise
    try:
        return execute_template(src, data)
    except TemplateError as e:
        raise CueError(f"template.Execute: {e}") from None
    except (RecursionError, ValueError) as e:
        raise CueError(f"template.Execute: {e}") from None


def _html_escape(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _h()._arity("template.HTMLEscape", args, 1)
    return html_escape(_h()._str(ev, args[0], "template.HTMLEscape"))


def _js_escape_fn(ev: Evaluator, args: list[Any], call: A.Call) -> Any:
    _h()._arity("template.JSEscape", args, 1)
    return _js_escape(_h()._str(ev, args[0], "template.JSEscape"))


def packages() -> dict[str, dict[str, Any]]:
    return {
        "text/tabwriter": {"Write": _tab_write},
        "text/template": {
            "Execute": _execute,
            "HTMLEscape": _html_escape,
            "JSEscape": _js_escape_fn,
        },
    }
