"""Syntax tree of a CUE file."""

from __future__ import annotations

from typing import Any

from specflow.spec.cue.errors import Pos


class Node:
    __slots__ = ("pos",)

    def __init__(self, pos: Pos) -> None:
        self.pos = pos


# ---------------------------------------------------------------------------------------------
# expressions


class Lit(Node):
    """A constant: int, Decimal (float), str, bytes, bool or the NULL/TOP markers."""

    __slots__ = ("value",)

    def __init__(self, pos: Pos, value: Any) -> None:
        super().__init__(pos)
        self.value = value


class Bottom(Node):
    __slots__ = ()


class Interp(Node):
    __slots__ = ("parts", "is_bytes")

    def __init__(self, pos: Pos, parts: list[str | Node], is_bytes: bool) -> None:
        super().__init__(pos)
        self.parts = parts
        self.is_bytes = is_bytes


class Ident(Node):
    """A reference. After resolution ``ups`` counts environment frames to walk up and ``kind``
    is one of field, let, bind, builtin, import."""

    __slots__ = ("name", "ups", "kind", "target")

    def __init__(self, pos: Pos, name: str) -> None:
        super().__init__(pos)
        self.name = name
        self.ups = 0
        self.kind = ""
        self.target: Any = None


class Selector(Node):
    __slots__ = ("x", "name")

    def __init__(self, pos: Pos, x: Node, name: str) -> None:
        super().__init__(pos)
        self.x = x
        self.name = name


class Index(Node):
    __slots__ = ("x", "index")

    def __init__(self, pos: Pos, x: Node, index: Node) -> None:
        super().__init__(pos)
        self.x = x
        self.index = index


class Slice(Node):
    __slots__ = ("x", "lo", "hi")

    def __init__(self, pos: Pos, x: Node, lo: Node | None, hi: Node | None) -> None:
        super().__init__(pos)
        self.x = x
        self.lo = lo
        self.hi = hi


class Call(Node):
    __slots__ = ("fn", "args")

    def __init__(self, pos: Pos, fn: Node, args: list[Node]) -> None:
        super().__init__(pos)
        self.fn = fn
        self.args = args


class Unary(Node):
    """``-x``, ``+x``, ``!x`` and the bound forms ``<x`` ``>=x`` ``!=x`` ``=~x`` ..."""

    __slots__ = ("op", "x")

    def __init__(self, pos: Pos, op: str, x: Node) -> None:
        super().__init__(pos)
        self.op = op
        self.x = x


class Default(Node):
    """``*x`` inside a disjunction."""

    __slots__ = ("x",)

    def __init__(self, pos: Pos, x: Node) -> None:
        super().__init__(pos)
        self.x = x


class Binary(Node):
    __slots__ = ("op", "x", "y")

    def __init__(self, pos: Pos, op: str, x: Node, y: Node) -> None:
        super().__init__(pos)
        self.op = op
        self.x = x
        self.y = y


class Unify(Node):
    __slots__ = ("items",)

    def __init__(self, pos: Pos, items: list[Node]) -> None:
        super().__init__(pos)
        self.items = items


class Disjunction(Node):
    __slots__ = ("alts", "has_default")

    def __init__(self, pos: Pos, alts: list[tuple[Node, bool]]) -> None:
        super().__init__(pos)
        self.alts = alts
        self.has_default = any(d for _, d in alts)


class Paren(Node):
    __slots__ = ("x",)

    def __init__(self, pos: Pos, x: Node) -> None:
        super().__init__(pos)
        self.x = x


# ---------------------------------------------------------------------------------------------
# composite literals and declarations


class Label:
    """A field label: static ``name`` or dynamic ``expr`` (interpolation or parenthesised)."""

    __slots__ = ("name", "expr", "is_ident", "pos")

    def __init__(self, pos: Pos, name: str | None, expr: Node | None, is_ident: bool) -> None:
        self.pos = pos
        self.name = name
        self.expr = expr
        self.is_ident = is_ident


class Field(Node):
    __slots__ = ("label", "value", "marker", "alias", "value_alias")

    def __init__(self, pos: Pos, label: Label, value: Node, marker: str) -> None:
        super().__init__(pos)
        self.label = label
        self.value = value
        self.marker = marker  # "", "?" or "!"
        self.alias: str | None = None  # X=label: value
        self.value_alias: str | None = None  # label: X=value


class Pattern(Node):
    __slots__ = ("pattern", "value", "alias")

    def __init__(self, pos: Pos, pattern: Node, value: Node) -> None:
        super().__init__(pos)
        self.pattern = pattern
        self.value = value
        self.alias: str | None = None  # bound to the matched label inside value


class LetDecl(Node):
    __slots__ = ("name", "expr")

    def __init__(self, pos: Pos, name: str, expr: Node) -> None:
        super().__init__(pos)
        self.name = name
        self.expr = expr


class Embed(Node):
    __slots__ = ("expr", "late")

    def __init__(self, pos: Pos, expr: Node) -> None:
        super().__init__(pos)
        self.expr = expr
        # refers to a field of its struct declared after it: unify it after the fields
        self.late = False


class Ellipsis(Node):
    __slots__ = ("expr",)

    def __init__(self, pos: Pos, expr: Node | None) -> None:
        super().__init__(pos)
        self.expr = expr


class ForClause(Node):
    __slots__ = ("key", "value", "source")

    def __init__(self, pos: Pos, key: str | None, value: str, source: Node) -> None:
        super().__init__(pos)
        self.key = key
        self.value = value
        self.source = source


class IfClause(Node):
    __slots__ = ("cond",)

    def __init__(self, pos: Pos, cond: Node) -> None:
        super().__init__(pos)
        self.cond = cond


class LetClause(Node):
    __slots__ = ("name", "expr")

    def __init__(self, pos: Pos, name: str, expr: Node) -> None:
        super().__init__(pos)
        self.name = name
        self.expr = expr


class Comprehension(Node):
    __slots__ = ("clauses", "body")

    def __init__(self, pos: Pos, clauses: list[Node], body: StructLit) -> None:
        super().__init__(pos)
        self.clauses = clauses
        self.body = body


class StructLit(Node):
    """``{ ... }``. ``lets`` maps let names to their declarations (for reference lookup)."""

    __slots__ = ("decls", "lets", "aliases", "dyn_aliases", "has_fields", "is_file", "pure")

    def __init__(self, pos: Pos, decls: list[Node], is_file: bool = False) -> None:
        super().__init__(pos)
        self.decls = decls
        self.lets: dict[str, LetDecl] = {}
        self.aliases: dict[str, str] = {}  # field alias -> label
        self.dyn_aliases: dict[str, Field] = {}  # alias of a field with a computed label
        self.has_fields = False
        self.is_file = is_file
        # no embeddings and no comprehensions: a struct whatever it is unified with
        self.pure = not any(type(d) is Embed or type(d) is Comprehension for d in decls)


class ListLit(Node):
    __slots__ = ("elems", "ellipsis", "open")

    def __init__(self, pos: Pos, elems: list[Node], ellipsis: Node | None, open_: bool) -> None:
        super().__init__(pos)
        self.elems = elems
        self.ellipsis = ellipsis
        self.open = open_


class Import(Node):
    __slots__ = ("name", "path")

    def __init__(self, pos: Pos, name: str, path: str) -> None:
        super().__init__(pos)
        self.name = name
        self.path = path


class File:
    __slots__ = ("root", "imports", "filename")

    def __init__(self, filename: str, root: StructLit, imports: list[Import]) -> None:
        self.filename = filename
        self.root = root
        self.imports = imports
