"""Recursive-descent parser for CUE, with lexical resolution of references."""

from __future__ import annotations

from specflow.spec.cue import ast as A
from specflow.spec.cue.errors import CueError
from specflow.spec.cue.lexer import (
    ATTR,
    BYTES,
    COMMA,
    EOF,
    FLOAT,
    IDENT,
    INT,
    KEYWORD,
    OP,
    STRING,
    Token,
    tokenize,
)
from specflow.spec.cue.values import NULL, TOP
from specflow.spec.cue.vertex import regular_label

_BINARY_PREC = {
    "|": 1,
    "&": 2,
    "||": 3,
    "&&": 4,
    "==": 5,
    "!=": 5,
    "<": 5,
    "<=": 5,
    ">": 5,
    ">=": 5,
    "=~": 5,
    "!~": 5,
    "+": 6,
    "-": 6,
    "*": 7,
    "/": 7,
}
_WORD_OPS = frozenset({"div", "mod", "quo", "rem"})
_UNARY_BOUNDS = frozenset({"<", "<=", ">", ">=", "!=", "=~", "!~"})

BUILTIN_FUNCS = frozenset({"len", "close", "and", "or", "div", "mod", "quo", "rem"})


class Parser:
    def __init__(self, tokens: list[Token], filename: str) -> None:
        self.toks = tokens
        self.k = 0
        self.filename = filename

    # -- token helpers ---------------------------------------------------------------------------
    @property
    def tok(self) -> Token:
        return self.toks[self.k]

    def peek(self, n: int = 1) -> Token:
        j = min(self.k + n, len(self.toks) - 1)
        return self.toks[j]

    def next(self) -> Token:
        t = self.toks[self.k]
        if self.k < len(self.toks) - 1:
            self.k += 1
        return t

    def is_op(self, v: str) -> bool:
        t = self.tok
        return t.kind == OP and t.value == v

    def error(self, msg: str, tok: Token | None = None) -> CueError:
        t = tok or self.tok
        return CueError(msg, pos=[t.pos])

    def describe(self, t: Token) -> str:
        if t.kind == EOF:
            return "EOF"
        if t.kind == COMMA:
            return "newline" if t.value == "\n" else "','"
        if t.kind in (STRING, BYTES):
            return "string literal"
        if t.kind in (INT, FLOAT):
            return f"number {t.value}"
        return repr(t.value)

    def expect_op(self, v: str) -> Token:
        if not self.is_op(v):
            raise self.error(f"expected '{v}', found {self.describe(self.tok)}")
        return self.next()

    def skip_commas(self) -> None:
        while self.tok.kind == COMMA:
            self.next()

    # -- file ------------------------------------------------------------------------------------
    def parse_file(self) -> A.File:
        imports: list[A.Import] = []
        self.skip_commas()
        while self.tok.kind == ATTR:
            self.next()
            self.skip_commas()
        if self.tok.kind == KEYWORD and self.tok.value == "package":
            self.next()
            if self.tok.kind != IDENT:
                raise self.error("expected package name")
            self.next()
            self.end_decl()
        self.skip_commas()
        while self.tok.kind == KEYWORD and self.tok.value == "import":
            self.next()
            if self.is_op("("):
                self.next()
                self.skip_commas()
                while not self.is_op(")"):
                    imports.append(self.import_spec())
                    self.end_decl(closing=")")
                    self.skip_commas()
                self.next()
            else:
                imports.append(self.import_spec())
            self.end_decl()
            self.skip_commas()
        start = self.tok.pos
        decls = self.decls(closing=None)
        root = A.StructLit(start, decls, is_file=True)
        return A.File(self.filename, root, imports)

    def import_spec(self) -> A.Import:
        pos = self.tok.pos
        name = ""
        if self.tok.kind == IDENT:
            name = self.next().value
        if self.tok.kind != STRING or any(not isinstance(p, str) for p in self.tok.parts):
            raise self.error("expected import path string")
        path = "".join(p for p in self.tok.parts if isinstance(p, str))
        self.next()
        if not name:
            base = path.split(":", 1)[-1] if ":" in path else path.rsplit("/", 1)[-1]
            name = base
        return A.Import(pos, name, path)

    def end_decl(self, closing: str | None = None) -> None:
        if self.tok.kind == COMMA:
            self.next()
            return
        if self.tok.kind == EOF and closing is None:
            return
        if closing is not None and self.is_op(closing):
            return
        raise self.error(
            f"expected ',' or newline after declaration, found {self.describe(self.tok)}"
        )

    # -- declarations ----------------------------------------------------------------------------
    def decls(self, closing: str | None) -> list[A.Node]:
        out: list[A.Node] = []
        while True:
            self.skip_commas()
            t = self.tok
            if closing is None:
                if t.kind == EOF:
                    return out
            elif t.kind == OP and t.value == closing:
                return out
            elif t.kind == EOF:
                raise self.error(f"expected '{closing}', found EOF")
            d = self.decl()
            if d is not None:
                out.append(d)
            while self.tok.kind == ATTR:
                self.next()
            self.end_decl(closing)

    def decl(self) -> A.Node | None:
        t = self.tok
        if t.kind == ATTR:
            self.next()
            return None
        if t.kind == OP and t.value == "...":
            self.next()
            expr = None
            if not (self.tok.kind == COMMA or self.is_op("}") or self.tok.kind == EOF):
                expr = self.expr()
            return A.Ellipsis(t.pos, expr)
        if t.kind == KEYWORD and not self._keyword_label():
            if t.value == "let":
                self.next()
                if self.tok.kind != IDENT:
                    raise self.error("expected identifier after let")
                name = self.next().value
                self.expect_op("=")
                return A.LetDecl(t.pos, name, self.expr())
            if t.value in ("for", "if"):
                return self.comprehension()
            if t.value not in ("import", "package"):
                raise self.error(f"unexpected keyword {t.value!r}")
            # a reference to a field or variable named import or package
        f = self.try_field()
        if f is not None:
            return f
        return A.Embed(t.pos, self.expr())

    def try_label(self) -> tuple[A.Label | A.Node, str, str | None, str | None] | None:
        """Parse a label followed by ':' (with optional marker); None (and no tokens consumed)
        when the text here is not a field. Also returns the field alias (``X=label:``) and
        the label alias of a pattern (``[X=pattern]:``)."""
        save = self.k
        t = self.tok
        alias: str | None = None
        label_alias: str | None = None
        if t.kind == IDENT and self.peek().kind == OP and self.peek().value == "=":
            alias = t.value
            self.next()
            self.next()
            t = self.tok
        label: A.Label | A.Node
        if t.kind == IDENT:
            self.next()
            label = A.Label(t.pos, t.value, None, True)
        elif t.kind == KEYWORD and (t.value in ("package", "import", "in") or self._keyword_label()):
            self.next()
            label = A.Label(t.pos, t.value, None, True)
        elif t.kind == STRING or t.kind == BYTES:
            self.next()
            if all(isinstance(p, str) for p in t.parts):
                text = "".join(p for p in t.parts if isinstance(p, str))
                label = A.Label(t.pos, regular_label(text), None, False)
            else:
                if not self._label_follows():
                    self.k = save
                    return None
                label = A.Label(t.pos, None, self.interp(t), False)
        elif t.kind == OP and t.value == "(":
            if not self._balanced_then_colon("(", ")"):
                self.k = save
                return None
            self.next()
            e = self.expr()
            self.expect_op(")")
            label = A.Label(t.pos, None, e, False)
        elif t.kind == OP and t.value == "[":
            if not self._balanced_then_colon("[", "]"):
                self.k = save
                return None
            self.next()
            if self.tok.kind == IDENT and self.peek().kind == OP and self.peek().value == "=":
                label_alias = self.next().value
                self.next()
            if self.tok.kind == KEYWORD and self.tok.value in ("for", "if"):
                # refused by the resolver, which knows the path
                comp = self.comprehension()
                e = A.ListLit(t.pos, [comp], None, False)
            else:
                e = self.expr()
            self.expect_op("]")
            label = e  # pattern constraint
        else:
            self.k = save
            return None
        marker = ""
        if self.tok.kind == OP and self.tok.value in ("?", "!"):
            nt = self.peek()
            if nt.kind == OP and nt.value == ":":
                marker = self.next().value
        if not self.is_op(":"):
            if alias is not None:
                raise self.error(
                    f"expected ':' after aliased label, found {self.describe(self.tok)}"
                )
            self.k = save
            return None
        self.next()
        return label, marker, alias, label_alias

    def _binding_name(self) -> bool:
        """Whether the token here can name a comprehension variable (keywords other than
        ``in`` can)."""
        t = self.tok
        return t.kind == IDENT or (t.kind == KEYWORD and t.value in ("import", "package"))

    def _keyword_label(self) -> bool:
        """Whether the keyword here is used as a field label (``if: 1``, ``for?: int``)."""
        nt = self.peek()
        if nt.kind != OP:
            return False
        if nt.value == ":":
            return True
        if nt.value in ("?", "!"):
            n2 = self.peek(2)
            return n2.kind == OP and n2.value == ":"
        return False

    def _label_follows(self) -> bool:
        t = self.tok
        if t.kind == OP and t.value == ":":
            return True
        if t.kind == OP and t.value in ("?", "!"):
            nt = self.peek()
            return nt.kind == OP and nt.value == ":"
        return False

    def _balanced_then_colon(self, open_: str, close: str) -> bool:
        depth = 0
        j = self.k
        toks = self.toks
        while j < len(toks):
            t = toks[j]
            if t.kind == EOF:
                return False
            if t.kind == OP:
                if t.value in ("(", "[", "{"):
                    depth += 1
                elif t.value in (")", "]", "}"):
                    depth -= 1
                    if depth == 0:
                        nt = toks[j + 1] if j + 1 < len(toks) else t
                        if nt.kind == OP and nt.value == ":":
                            return True
                        if nt.kind == OP and nt.value in ("?", "!") and j + 2 < len(toks):
                            n2 = toks[j + 2]
                            return n2.kind == OP and n2.value == ":"
                        return False
            j += 1
        return False

    def try_field(self) -> A.Node | None:
        pos = self.tok.pos
        got = self.try_label()
        if got is None:
            return None
        label, marker, alias, label_alias = got
        value, value_alias = self.field_value()
        if isinstance(label, A.Label):
            f = A.Field(pos, label, value, marker)
            f.alias = alias
            f.value_alias = value_alias
            return f
        if alias is not None or value_alias is not None:
            raise CueError("an alias of a pattern constraint is not supported", pos=[pos])
        p = A.Pattern(pos, label, value)
        p.alias = label_alias
        return p

    def field_value(self) -> tuple[A.Node, str | None]:
        """The value of a field and the name of its value alias (``a: X={...}``), if any."""
        pos = self.tok.pos
        nested = self.try_field()
        if nested is not None:
            while self.tok.kind == ATTR:
                self.next()
            return A.StructLit(pos, [nested]), None
        alias: str | None = None
        if self.tok.kind == IDENT and self.peek().kind == OP and self.peek().value == "=":
            alias = self.next().value
            self.next()
        return self.expr(), alias

    def comprehension(self) -> A.Comprehension:
        pos = self.tok.pos
        clauses: list[A.Node] = []
        while True:
            if clauses and self.tok.kind == COMMA and self.tok.value == "\n":
                # clauses may be written one per line
                j = self.k
                while self.toks[j].kind == COMMA and self.toks[j].value == "\n":
                    j += 1
                nt = self.toks[j]
                if nt.kind == KEYWORD and nt.value in ("for", "if", "let"):
                    self.k = j
            if not (self.tok.kind == KEYWORD and self.tok.value in ("for", "if", "let")):
                break
            t = self.next()
            if t.value == "for":
                if not self._binding_name():
                    raise self.error("expected identifier after for")
                a = self.next().value
                b: str | None = None
                if self.tok.kind == COMMA and self.tok.value == ",":
                    self.next()
                    if not self._binding_name():
                        raise self.error("expected identifier")
                    b = self.next().value
                if not (self.tok.kind == KEYWORD and self.tok.value == "in"):
                    raise self.error(f"expected 'in', found {self.describe(self.tok)}")
                self.next()
                src = self.expr()
                if b is None:
                    clauses.append(A.ForClause(t.pos, None, a, src))
                else:
                    clauses.append(A.ForClause(t.pos, a, b, src))
            elif t.value == "if":
                clauses.append(A.IfClause(t.pos, self.expr()))
            else:
                if not clauses:
                    raise self.error("comprehension must start with for or if", t)
                if self.tok.kind != IDENT:
                    raise self.error("expected identifier after let")
                name = self.next().value
                self.expect_op("=")
                clauses.append(A.LetClause(t.pos, name, self.expr()))
        if not self.is_op("{"):
            raise self.error(
                f"expected '{{' after comprehension clauses, found {self.describe(self.tok)}"
            )
        body = self.struct_lit()
        return A.Comprehension(pos, clauses, body)

    # -- expressions -----------------------------------------------------------------------------
    def expr(self, min_prec: int = 1) -> A.Node:
        x = self.unary()
        while True:
            t = self.tok
            if t.kind == IDENT and t.value in _WORD_OPS:
                if min_prec > 7:
                    break
                self.next()
                y = self.expr(8)
                fn = A.Ident(t.pos, "__" + t.value)
                x = A.Call(t.pos, fn, [_strip_default(x), _strip_default(y)])
                continue
            if t.kind != OP:
                break
            prec = _BINARY_PREC.get(t.value)
            if prec is None or prec < min_prec:
                break
            op = t.value
            self.next()
            if op == "|":
                alts = [x]
                alts.append(self.expr(prec + 1))
                while self.is_op("|"):
                    self.next()
                    alts.append(self.expr(prec + 1))
                pairs: list[tuple[A.Node, bool]] = []
                for a in alts:
                    if isinstance(a, A.Default):
                        pairs.append((a.x, True))
                    else:
                        pairs.append((a, False))
                x = A.Disjunction(x.pos, pairs)
            elif op == "&":
                items = [_strip_default(x), _strip_default(self.expr(prec + 1))]
                while self.is_op("&"):
                    self.next()
                    items.append(_strip_default(self.expr(prec + 1)))
                x = A.Unify(x.pos, items)
            else:
                y = self.expr(prec + 1)
                x = A.Binary(t.pos, op, _strip_default(x), _strip_default(y))
        return x

    def unary(self) -> A.Node:
        t = self.tok
        if t.kind == OP:
            if t.value in ("-", "+", "!"):
                self.next()
                return A.Unary(t.pos, t.value, self.unary())
            if t.value == "*":
                self.next()
                return A.Default(t.pos, _strip_default(self.unary()))
            if t.value in _UNARY_BOUNDS:
                self.next()
                return A.Unary(t.pos, t.value, self.unary())
        return self.primary()

    def primary(self) -> A.Node:
        x = self.operand()
        while True:
            t = self.tok
            if t.kind != OP:
                return x
            if t.value == ".":
                self.next()
                nt = self.tok
                if nt.kind == IDENT or nt.kind == KEYWORD:
                    self.next()
                    x = A.Selector(nt.pos, x, nt.value)
                elif nt.kind == STRING and all(isinstance(p, str) for p in nt.parts):
                    self.next()
                    text = "".join(p for p in nt.parts if isinstance(p, str))
                    x = A.Selector(nt.pos, x, regular_label(text))
                else:
                    raise self.error(f"expected selector, found {self.describe(nt)}")
            elif t.value == "[":
                self.next()
                lo: A.Node | None = None
                if not self.is_op(":"):
                    lo = self.expr()
                if self.is_op(":"):
                    self.next()
                    hi: A.Node | None = None
                    if not self.is_op("]"):
                        hi = self.expr()
                    self.expect_op("]")
                    x = A.Slice(t.pos, x, lo, hi)
                else:
                    self.expect_op("]")
                    assert lo is not None
                    x = A.Index(t.pos, x, lo)
            elif t.value == "(":
                self.next()
                args: list[A.Node] = []
                self.skip_commas()
                while not self.is_op(")"):
                    args.append(self.expr())
                    if self.tok.kind == COMMA:
                        self.skip_commas()
                    elif not self.is_op(")"):
                        raise self.error(f"expected ',' or ')', found {self.describe(self.tok)}")
                self.next()
                x = A.Call(t.pos, x, args)
            else:
                return x

    def operand(self) -> A.Node:
        t = self.tok
        k = t.kind
        if k == IDENT:
            self.next()
            v = t.value
            if v == "_":
                return A.Lit(t.pos, TOP)
            if v == "true":
                return A.Lit(t.pos, True)
            if v == "false":
                return A.Lit(t.pos, False)
            if v == "null":
                return A.Lit(t.pos, NULL)
            return A.Ident(t.pos, v)
        if k == INT or k == FLOAT:
            self.next()
            return A.Lit(t.pos, t.number)
        if k == STRING or k == BYTES:
            self.next()
            return self.interp(t)
        if k == OP:
            v = t.value
            if v == "(":
                self.next()
                self.skip_commas()
                e = self.expr()
                self.skip_commas()
                self.expect_op(")")
                return A.Paren(t.pos, e)
            if v == "{":
                return self.struct_lit()
            if v == "[":
                return self.list_lit()
            if v == "_|_":
                self.next()
                return A.Bottom(t.pos)
        if k == KEYWORD and t.value in ("package", "import", "in"):
            self.next()
            return A.Ident(t.pos, t.value)
        raise self.error(f"expected operand, found {self.describe(t)}")

    def interp(self, t: Token) -> A.Node:
        is_bytes = t.kind == BYTES
        if all(isinstance(p, str) for p in t.parts):
            s = "".join(p for p in t.parts if isinstance(p, str))
            if is_bytes:
                return A.Lit(t.pos, s.encode("latin-1", errors="replace"))
            return A.Lit(t.pos, s)
        parts: list[str | A.Node] = []
        for p in t.parts:
            if isinstance(p, str):
                parts.append(p)
            else:
                sub = Parser(p, self.filename)
                if sub.tok.kind == EOF:
                    raise CueError("empty interpolation", pos=[t.pos])
                e = sub.expr()
                if sub.tok.kind != EOF:
                    raise sub.error(f"unexpected {sub.describe(sub.tok)} in interpolation")
                parts.append(e)
        return A.Interp(t.pos, parts, is_bytes)

    def struct_lit(self) -> A.StructLit:
        t = self.expect_op("{")
        decls = self.decls(closing="}")
        self.next()
        return A.StructLit(t.pos, decls)

    def list_lit(self) -> A.ListLit:
        t = self.expect_op("[")
        elems: list[A.Node] = []
        ellipsis: A.Node | None = None
        open_ = False
        while True:
            self.skip_commas()
            if self.is_op("]"):
                break
            if self.is_op("..."):
                self.next()
                open_ = True
                if not (self.tok.kind == COMMA or self.is_op("]")):
                    ellipsis = self.expr()
                self.skip_commas()
                if not self.is_op("]"):
                    raise self.error("'...' must be the last element of a list")
                break
            if self.tok.kind == KEYWORD and self.tok.value in ("for", "if"):
                elems.append(self.comprehension())
            else:
                elems.append(_strip_default_top(self.expr()))
            if self.tok.kind == COMMA:
                continue
            if not self.is_op("]"):
                raise self.error(f"expected ',' or ']', found {self.describe(self.tok)}")
        self.next()
        return A.ListLit(t.pos, elems, ellipsis, open_)


def _strip_default(x: A.Node) -> A.Node:
    return x.x if isinstance(x, A.Default) else x


def _strip_default_top(x: A.Node) -> A.Node:
    if isinstance(x, A.Default):
        return A.Disjunction(x.pos, [(x.x, True)])
    return x


# ---------------------------------------------------------------------------------------------
# lexical resolution


class _Scope:
    __slots__ = ("names", "parent", "frame", "struct", "targets")

    def __init__(
        self,
        names: dict[str, str],
        parent: _Scope | None,
        frame: bool,
        struct: A.StructLit | None = None,
        targets: dict[str, A.Field] | None = None,
    ) -> None:
        self.names = names
        self.parent = parent
        self.frame = frame
        self.struct = struct
        self.targets = targets  # value aliases: name -> the field whose value they name


class Resolver:
    """Annotates every Ident with where it points and reports references that are not found,
    with the path of the field they appear in (as cue does)."""

    def __init__(self, imports: dict[str, str]) -> None:
        self.imports = imports
        self.errors: list[CueError] = []

    def struct_scope(self, s: A.StructLit, parent: _Scope | None) -> _Scope:
        names: dict[str, str] = {}
        for d in s.decls:
            if isinstance(d, A.Field):
                if d.label.name is not None and d.label.is_ident:
                    names[d.label.name] = "field"
                if d.alias is not None:
                    if d.label.name is None:
                        names[d.alias] = "dynalias"
                        s.dyn_aliases[d.alias] = d
                    else:
                        names[d.alias] = "alias"
                        s.aliases[d.alias] = d.label.name
                s.has_fields = True
            elif isinstance(d, A.LetDecl):
                if d.name in names and names[d.name] == "let":
                    self.errors.append(CueError(f"duplicate let {d.name!r}", pos=[d.pos]))
                names[d.name] = "let"
                s.lets[d.name] = d
            elif isinstance(d, A.Pattern | A.Comprehension):
                s.has_fields = True
        return _Scope(names, parent, True, s)

    def resolve_file(self, f: A.File) -> None:
        top = _Scope({name: "import" for name in self.imports}, None, False)
        self.struct(f.root, top, [])

    def struct(self, s: A.StructLit, scope: _Scope, path: list[str]) -> None:
        sc = self.struct_scope(s, scope)
        for d in s.decls:
            self.decl(d, sc, path)
        if not s.pure:
            later: set[str] = set()
            for d in reversed(s.decls):
                if isinstance(d, A.Field) and d.label.name is not None:
                    later.add(d.label.name)
                elif isinstance(d, A.Embed) and later:
                    d.late = _refers_to(d.expr, later)

    def decl(self, d: A.Node, sc: _Scope, path: list[str]) -> None:
        if isinstance(d, A.Field):
            lab = d.label
            sub = path + [lab.name if lab.name is not None else "?"]
            if lab.expr is not None:
                self.expr(lab.expr, sc, path)
            if d.value_alias is not None:
                # the alias names the value of this field, within that value
                kind = "alias" if lab.name is not None else "dynalias"
                sc = _Scope({d.value_alias: kind}, sc, False, sc.struct, {d.value_alias: d})
            self.expr(d.value, sc, sub)
        elif isinstance(d, A.Pattern):
            if isinstance(d.pattern, A.ListLit) and any(
                isinstance(el, A.Comprehension) for el in d.pattern.elems
            ):
                self.errors.append(
                    CueError(
                        "comprehension values not allowed in this position",
                        path=".".join(path) if path else None,
                        pos=[d.pattern.pos],
                    )
                )
            self.expr(d.pattern, sc, path)
            if d.alias is not None:
                self.expr(d.value, _Scope({d.alias: "bind"}, sc, True), path + ["?"])
            else:
                self.expr(d.value, sc, path + ["?"])
        elif isinstance(d, A.LetDecl):
            self.expr(d.expr, sc, path)
        elif isinstance(d, A.Embed):
            self.expr(d.expr, sc, path)
        elif isinstance(d, A.Ellipsis):
            if d.expr is not None:
                self.expr(d.expr, sc, path)
        elif isinstance(d, A.Comprehension):
            self.comprehension(d, sc, path)

    def comprehension(self, c: A.Comprehension, sc: _Scope, path: list[str]) -> None:
        cur = sc
        for cl in c.clauses:
            if isinstance(cl, A.ForClause):
                self.expr(cl.source, cur, path)
                names = {cl.value: "bind"}
                if cl.key is not None:
                    names[cl.key] = "bind"
                cur = _Scope(names, cur, True)
            elif isinstance(cl, A.IfClause):
                self.expr(cl.cond, cur, path)
            elif isinstance(cl, A.LetClause):
                self.expr(cl.expr, cur, path)
                cur = _Scope({cl.name: "bind"}, cur, True)
        self.struct(c.body, cur, path)

    def lookup(self, ident: A.Ident, sc: _Scope, path: list[str]) -> None:
        ups = 0
        s: _Scope | None = sc
        name = ident.name
        while s is not None:
            kind = s.names.get(name)
            if kind is not None:
                ident.ups = ups
                ident.kind = kind
                if kind == "let" and s.struct is not None:
                    ident.target = s.struct.lets[name]
                elif kind in ("alias", "dynalias") and s.targets is not None:
                    f = s.targets[name]
                    if kind == "alias":
                        ident.kind = "field"
                        ident.target = f.label.name
                    else:
                        ident.kind = "dynfield"
                        ident.target = f
                elif kind == "alias" and s.struct is not None:
                    ident.kind = "field"
                    ident.target = s.struct.aliases[name]
                elif kind == "dynalias" and s.struct is not None:
                    ident.kind = "dynfield"
                    ident.target = s.struct.dyn_aliases[name]
                elif kind == "import":
                    ident.target = self.imports[name]
                return
            if s.frame:
                ups += 1
            s = s.parent
        base = name[2:] if name.startswith("__") else name
        if base in BUILTIN_FUNCS:
            ident.kind = "builtin"
            ident.target = base
            return
        from specflow.spec.cue.values import PREDECLARED_TYPES

        if name in PREDECLARED_TYPES or (name.startswith("__") and name[2:] in PREDECLARED_TYPES):
            ident.kind = "type"
            ident.target = PREDECLARED_TYPES[base]
            return
        self.errors.append(
            CueError(
                f'reference "{name}" not found',
                path=".".join(path) if path else None,
                pos=[ident.pos],
            )
        )
        ident.kind = "missing"

    def expr(self, e: A.Node | None, sc: _Scope, path: list[str]) -> None:
        if e is None:
            return
        t = type(e)
        if t is A.Ident:
            assert isinstance(e, A.Ident)
            self.lookup(e, sc, path)
        elif t is A.Lit or t is A.Bottom:
            return
        elif t is A.StructLit:
            assert isinstance(e, A.StructLit)
            self.struct(e, sc, path)
        elif t is A.ListLit:
            assert isinstance(e, A.ListLit)
            for el in e.elems:
                if isinstance(el, A.Comprehension):
                    self.comprehension(el, sc, path)
                else:
                    self.expr(el, sc, path)
            self.expr(e.ellipsis, sc, path)
        elif t is A.Interp:
            assert isinstance(e, A.Interp)
            for p in e.parts:
                if not isinstance(p, str):
                    self.expr(p, sc, path)
        elif t is A.Selector:
            assert isinstance(e, A.Selector)
            self.expr(e.x, sc, path)
        elif t is A.Index:
            assert isinstance(e, A.Index)
            self.expr(e.x, sc, path)
            self.expr(e.index, sc, path)
        elif t is A.Slice:
            assert isinstance(e, A.Slice)
            self.expr(e.x, sc, path)
            self.expr(e.lo, sc, path)
            self.expr(e.hi, sc, path)
        elif t is A.Call:
            assert isinstance(e, A.Call)
            self.expr(e.fn, sc, path)
            for a in e.args:
                self.expr(a, sc, path)
        elif t is A.Unary or t is A.Default or t is A.Paren:
            self.expr(e.x, sc, path)  # type: ignore[attr-defined]
        elif t is A.Binary:
            assert isinstance(e, A.Binary)
            self.expr(e.x, sc, path)
            self.expr(e.y, sc, path)
        elif t is A.Unify:
            assert isinstance(e, A.Unify)
            for it in e.items:
                self.expr(it, sc, path)
        elif t is A.Disjunction:
            assert isinstance(e, A.Disjunction)
            for a, _ in e.alts:
                self.expr(a, sc, path)


def _refers_to(e: A.Node, names: set[str]) -> bool:
    """Whether the expression reads one of ``names`` among the fields of its own struct."""
    t = type(e)
    if t is A.Ident:
        assert isinstance(e, A.Ident)
        return e.kind == "field" and e.ups == 0 and (e.target or e.name) in names
    if t is A.Selector or t is A.Index or t is A.Paren or t is A.Default or t is A.Unary:
        return _refers_to(e.x, names)  # type: ignore[attr-defined]
    if t is A.Binary:
        assert isinstance(e, A.Binary)
        return _refers_to(e.x, names) or _refers_to(e.y, names)
    if t is A.Unify:
        assert isinstance(e, A.Unify)
        return any(_refers_to(x, names) for x in e.items)
    if t is A.Disjunction:
        assert isinstance(e, A.Disjunction)
        return any(_refers_to(x, names) for x, _ in e.alts)
    if t is A.Call:
        assert isinstance(e, A.Call)
        return any(_refers_to(x, names) for x in e.args)
    return False


KNOWN_PACKAGES = frozenset(
    {
        "list",
        "math",
        "strings",
        "strconv",
        "path",
        "struct",
        "regexp",
        "encoding/json",
        "encoding/base64",
        "encoding/hex",
        "encoding/yaml",
        "math/bits",
        "crypto/md5",
        "crypto/sha1",
        "crypto/sha256",
        "crypto/sha512",
        "uuid",
        "time",
        "net",
        "text/tabwriter",
        "text/template",
        "html",
        "encoding/csv",
        "crypto/hmac",
    }
)


def parse(text: str, filename: str) -> A.File:
    toks = tokenize(text, filename)
    p = Parser(toks, filename)
    f = p.parse_file()
    imports: dict[str, str] = {}
    for imp in f.imports:
        if imp.path not in KNOWN_PACKAGES:
            raise CueError(f'import failed: cannot find package "{imp.path}"', pos=[imp.pos])
        imports[imp.name] = imp.path
    r = Resolver(imports)
    r.resolve_file(f)
    if r.errors:
        raise r.errors[0]
    return f
