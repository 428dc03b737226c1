"""Vertices (nodes of the evaluated configuration) and evaluation environments."""

from __future__ import annotations

import re
from typing import Any

from specflow.spec.cue import ast as A
from specflow.spec.cue.errors import CueError
from specflow.spec.cue.values import TOP

NEW = 0
EVALUATING = 1
DONE = 2

REGULAR = 0
REQUIRED = 1
OPTIONAL = 2

_IDENT_RE = re.compile(r"^[#_]?#?[A-Za-z_$][A-Za-z0-9_$]*$")

# A conjunct: an expression, the environment it is evaluated in and the definitions it comes
# from (each of which closes the struct it describes).
Conjunct = tuple[A.Node, "Env | None", tuple[object, ...]]


class Env:
    """One frame of lexical scope: a struct literal bound to the vertex it is evaluated into,
    or the bindings of a comprehension clause.

    ``deref`` lists the vertices whose conjuncts were unfolded, reference after reference, to
    reach the expressions evaluated in this frame; ``cyclic`` says that one of those
    references pointed back at a vertex already in that chain (a structural cycle unless
    some other conjunct gives the field a value). Inner frames inherit both."""

    __slots__ = ("up", "vertex", "binds", "lets", "deref", "cyclic")

    def __init__(
        self, up: Env | None, vertex: Vertex | None = None, binds: dict[str, Any] | None = None
    ) -> None:
        self.up = up
        self.vertex = vertex
        self.binds = binds
        self.lets: dict[str, Any] | None = None
        if up is None:
            self.deref: tuple[Vertex, ...] = ()
            self.cyclic = False
        else:
            self.deref = up.deref
            self.cyclic = up.cyclic

    def derive(self, deref: tuple[Vertex, ...], cyclic: bool) -> Env:
        """This frame reached through the references ``deref``."""
        e = Env.__new__(Env)
        e.up = self.up
        e.vertex = self.vertex
        e.binds = self.binds
        e.lets = self.lets
        e.deref = deref
        e.cyclic = cyclic or self.cyclic
        return e


class Group:
    """The fields allowed by one closed definition (or declared by one struct literal, for
    embedding). A definition embedded in a literal also allows the literal's fields
    (``also``)."""

    __slots__ = ("labels", "patterns", "open", "also")

    def __init__(self) -> None:
        self.labels: set[str | int] = set()
        self.patterns: list[Any] = []
        self.open = False
        self.also: list[Group] = []


class Vertex:
    __slots__ = (
        "parent",
        "label",
        "conjuncts",
        "arcs",
        "arc_type",
        "status",
        "err",
        "value",
        "is_struct",
        "is_list",
        "closed",
        "had_disj",
        "expanded",
        "validators",
        "__weakref__",
    )

    def __init__(self, parent: Vertex | None, label: str | int | None) -> None:
        self.parent = parent
        self.label = label
        self.conjuncts: list[Conjunct] = []
        self.arcs: dict[str | int, Vertex] = {}
        self.arc_type = REGULAR
        self.status = NEW
        self.err: CueError | None = None
        # scalar part: TOP, a concrete scalar, a Constraint or a Disj (ambiguous)
        self.value: Any = TOP
        self.is_struct = False
        self.is_list = False
        self.closed = False
        self.had_disj = False
        # the references (source position, target) unified into this vertex
        self.expanded: set[tuple[Any, int]] | None = None
        # validators (list.MinItems(1), ...) to check once a list or struct is complete
        self.validators: list[Any] | None = None

    def path(self) -> str:
        parts: list[str] = []
        v: Vertex | None = self
        while v is not None and v.label is not None:
            lab = v.label
            if isinstance(lab, int):
                parts.append(str(lab))
            elif _IDENT_RE.match(lab):
                parts.append(lab)
            else:
                parts.append(_quote(lab))
            v = v.parent
        return ".".join(reversed(parts))

    def __repr__(self) -> str:
        return f"<Vertex {self.path() or '<root>'}>"


def _quote(s: str) -> str:
    s = label_text(s)
    out = s.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{out}"'


# A quoted label that starts with ``_`` or ``#`` ("_x", "#X") is a regular field, unlike the
# identifiers _x and #X. Internally such labels carry this prefix so that the two never meet.
QUOTED = "\x00"


def regular_label(s: str) -> str:
    """The internal label of a field named by the string ``s`` (a quoted or computed label)."""
    if s[:1] in ("_", "#"):
        return QUOTED + s
    return s


def label_text(label: str) -> str:
    """The name of a field as the user sees it."""
    return label[1:] if label[:1] == QUOTED else label


def is_hidden_or_def(label: str | int) -> bool:
    return isinstance(label, str) and (label.startswith("#") or label.startswith("_"))


def is_def(label: str | int) -> bool:
    return isinstance(label, str) and (label.startswith("#") or label.startswith("_#"))


def elems(v: Vertex) -> list[Vertex]:
    """The elements of a list vertex, in order."""
    return [a for k, a in v.arcs.items() if type(k) is int]
