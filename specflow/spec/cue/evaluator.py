"""Evaluation of CUE: unification of conjuncts into vertices, expressions, disjunctions.

Every field of the configuration is a :class:`Vertex` holding its *conjuncts*: the
expressions declared for it, each with the lexical environment it appears in. Evaluating a
vertex (once; the result is kept) unifies its conjuncts:

* a struct literal adds its fields as conjuncts of child vertices, in a new environment frame
  bound to this vertex, so that references inside a template resolve to the fields of the
  struct it is unified into;
* a reference to another field adds that field's conjuncts here (a referenced scalar is used
  as is);
* comprehensions run after the plain fields of the vertex are known;
* disjunctions are resolved by evaluating the vertex once per choice of alternatives and
  keeping the choices without conflicts anywhere below them (defaults first).

Children are evaluated lazily, when exported or referenced, which keeps large comprehensions
linear. Closedness is tracked per definition a conjunct comes from (``Ctx``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from specflow.spec.cue import ast as A
from specflow.spec.cue.errors import CueError, Pos
from specflow.spec.cue.values import (
    CTX,
    K_ALL,
    K_FLOAT,
    K_INT,
    K_LIST,
    K_NUMBER,
    K_STRING,
    K_STRUCT,
    TOP,
    Bound,
    CallBound,
    Constraint,
    Disj,
    fmt_scalar,
    interp_str,
    is_concrete_scalar,
    kind_name,
    kind_of,
    ordered,
    scalar_eq,
)
from specflow.spec.cue.vertex import (
    DONE,
    EVALUATING,
    NEW,
    OPTIONAL,
    REGULAR,
    REQUIRED,
    Env,
    Group,
    Vertex,
    elems,
    is_def,
    is_hidden_or_def,
    label_text,
    regular_label,
)

_NOPOS = Pos("<builtin>", 0, 0)

MAX_DISJ_RUNS = 256
# how many ancestors may unfold the same reference before it counts as a structural cycle
MAX_UNFOLD = 16


Ctx = tuple[object, ...]


class Builtin:
    """A callable value: a predeclared function or a package member. A builtin that
    reports whether a value is valid (``validates`` = its number of arguments and the kinds
    of values it checks) called with one argument fewer is a validator."""

    __slots__ = ("name", "fn", "validates")

    def __init__(self, name: str, fn: Any, validates: tuple[int, int] | None = None) -> None:
        self.name = name
        self.fn = fn
        self.validates = validates

    def __repr__(self) -> str:
        return self.name


class Package:
    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        self.path = path


class _Pending(Exception):
    """A disjunction without a chosen alternative in this run."""

    def __init__(self, alts: list[tuple[Any, bool]]) -> None:
        super().__init__()
        self.alts = alts


class _Disjunct:
    __slots__ = ("alts", "ctx", "group", "has_default", "key", "env")

    def __init__(
        self, alts: list[tuple[Any, bool]], ctx: Ctx, group: Group | None, env: Env | None
    ) -> None:
        self.env = env
        self.alts = alts
        self.ctx = ctx
        self.group = group
        self.has_default = any(d for _, d in alts)
        # what makes two disjunctions the same value (None: not known to equal any other)
        self.key: Any = _UNSET


_UNSET: Any = object()


class _ListPart:
    __slots__ = ("length", "open", "tail", "env", "ctx", "pos")

    def __init__(
        self,
        length: int,
        open_: bool,
        tail: A.Node | None,
        env: Env | None,
        ctx: Ctx,
        pos: Pos | None,
    ) -> None:
        self.length = length
        self.open = open_
        self.tail = tail
        self.env = env
        self.ctx = ctx
        self.pos = pos


class _State:
    """Everything gathered while unifying the conjuncts of one vertex in one run."""

    __slots__ = (
        "v",
        "scalar",
        "scalar_pos",
        "struct_pos",
        "groups",
        "patterns",
        "deferred",
        "disj",
        "choices",
        "marks",
        "lists",
        "expanding",
        "comp_first",
        "embeds",
        "stale",
        "seen",
        "pure_struct",
        "validators",
        "has_cycle",
        "non_cycle",
        "cyclic",
        "cycle_err",
        "emb",
        "cyclic_comps",
    )

    def __init__(self, v: Vertex, choices: list[int], comp_first: bool = False) -> None:
        self.comp_first = comp_first
        # a conjunct came through a reference back into its own chain of references, and
        # whether any conjunct did not
        self.has_cycle = False
        self.non_cycle = False
        # conjuncts (or embedded expressions) left out because they depend on the vertex
        self.cyclic: list[tuple[A.Node, Env | None, CueError]] = []
        self.cycle_err: CueError | None = None
        # the field sets of literals that embed values, by literal
        self.emb: dict[object, Group] = {}
        self.cyclic_comps: list[tuple[A.Comprehension, Env, Ctx, Group | None, CueError]] = []
        self.embeds: list[tuple[A.Node, Env, Ctx, Group]] = []
        self.stale = False
        self.pure_struct = False
        self.validators: list[Bound] = []
        self.seen: set[tuple[Vertex, Ctx, Group | None]] = set()
        self.v = v
        self.scalar: Any = TOP
        self.scalar_pos: Pos | None = None
        self.struct_pos: Pos | None = None
        self.groups: dict[object, Group] = {}
        self.patterns: list[tuple[Any, A.Node, Env | None, Ctx, str | None]] = []
        self.deferred: list[tuple[A.Comprehension, Env, Ctx, Group | None]] = []
        self.disj: list[_Disjunct] = []
        self.choices = choices
        # for each disjunction with defaults (by position): whether a default was chosen
        self.marks: list[tuple[int, bool]] = []
        self.lists: list[_ListPart] = []
        self.expanding: set[int] = set()


class BudgetExceeded(Exception):
    """The evaluation used more CPU time or memory than it is allowed (not a CueError: no
    disjunction or existence check may take it for the failure of one alternative)."""

    def __init__(self, what: str, limit: str, setting: str) -> None:
        super().__init__(f"{what} {limit}")
        self.what = what
        self.limit = limit
        self.setting = setting


def _rss_bytes() -> int:
    """The resident memory of this process (0 when it cannot be read)."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


try:
    _PAGE = os.sysconf("SC_PAGE_SIZE")
except (AttributeError, ValueError, OSError):  # pragma: no cover - not POSIX
    _PAGE = 4096

# vertices evaluated between two looks at the clock and the memory
_CHECK_EVERY = 1024


class Evaluator:
    def __init__(
        self,
        packages: dict[str, dict[str, Any]],
        timeout: float | None = None,
        max_mb: float | None = None,
    ) -> None:
        self.packages = packages
        self.evaluated: list[Vertex] = []
        self.timeout = timeout
        self.max_mb = max_mb
        self.cpu_deadline = time.process_time() + timeout if timeout is not None else None
        self.mem_limit = 0
        if max_mb is not None:
            base = _rss_bytes()
            if base:
                self.mem_limit = base + int(max_mb * 1024 * 1024)
        self.ticks = 0
        self.ast_keys: dict[int, tuple[Any, Any]] = {}
        self.rechecks: list[tuple[Vertex, A.Node, Env | None, str | None]] = []
        # structs whose declared fields may be read while they are evaluated
        self.partial: list[Vertex] = []
        # the runs of disjunctions whose result a field took
        self.adopted: dict[int, Vertex] = {}
        # vertices being evaluated, one inside the other
        self.depth = 0

    def check_budget(self) -> None:
        """Stop when the evaluation has used up its CPU time or memory."""
        if self.cpu_deadline is not None and time.process_time() > self.cpu_deadline:
            raise BudgetExceeded(
                "evaluation exceeded its time budget of", f"{self.timeout:g} s CPU", "timeout"
            )
        if self.mem_limit and _rss_bytes() > self.mem_limit:
            raise BudgetExceeded(
                "evaluation exceeded its memory budget of", f"{self.max_mb:g} MB", "max_mb"
            )

    def release(self) -> None:
        """Break the reference cycles between evaluated vertices so that their memory is
        returned at once instead of by the cyclic garbage collector."""
        for v in self.evaluated:
            v.arcs = {}
            v.conjuncts = []
            v.parent = None
            v.value = None
            v.err = None
        self.evaluated = []

    # =========================================================================================
    # vertices

    def evaluate(self, v: Vertex) -> None:
        st = v.status
        if st == DONE:
            if v.err is not None:
                raise v.err
            return
        if st == EVALUATING:
            raise CueError("cycle in evaluation", path=v.path(), incomplete=True, cycle=True)
        self.ticks += 1
        if not self.ticks % _CHECK_EVERY:
            self.check_budget()
        v.status = EVALUATING
        self.evaluated.append(v)
        self.depth += 1
        try:
            self._run_vertex(v)
        except CueError as e:
            if e.path is None:
                e.path = v.path()
            if e.cycle and v.parent is not None:
                # a reference cycle depends on what else is being evaluated: evaluate the
                # field again when it is asked for later
                v.status = NEW
                v.err = None
                raise
            v.err = e
            v.status = DONE
            raise
        except RecursionError:
            deep = CueError("structural cycle or nesting too deep", path=v.path())
            v.err = deep
            v.status = DONE
            raise deep from None
        finally:
            self.depth -= 1
        v.status = DONE
        if v.validators is not None:
            # validators of lists and structs look at the finished value
            for b in v.validators:
                try:
                    ok = b.check(v)
                except CueError as e:
                    if e.path is None:
                        e.path = v.path()
                    v.err = e
                    raise
                if not ok:
                    v.err = CueError(
                        f"invalid value {self.show(v)} (does not satisfy {b!r})",
                        path=v.path(),
                        pos=[p for p in (b.pos,) if p],
                    )
                    raise v.err

    def _run_vertex(self, v: Vertex) -> None:
        conj = v.conjuncts
        if len(conj) == 1:
            e = conj[0][0]
            if type(e) is A.Lit and is_concrete_scalar(e.value):
                # a plain leaf value
                v.arcs = {}
                v.value = e.value
                v.is_struct = v.is_list = False
                return
        try:
            self._run(v, [])
            return
        except _Pending as p:
            first = p
        v.had_disj = True
        # Disjunctions: explore the choices depth first, each run on a fresh vertex.
        results: list[tuple[Vertex, list[tuple[int, bool]]]] = []
        errors: list[CueError] = []
        cycle_err: CueError | None = None
        stack: list[list[int]] = [[i] for i in reversed(range(len(first.alts)))]
        runs = 0
        while stack:
            ch = stack.pop()
            runs += 1
            if runs > MAX_DISJ_RUNS:
                raise CueError("too many disjunction alternatives", path=v.path())
            t = Vertex(v.parent, v.label)
            t.conjuncts = v.conjuncts
            t.arc_type = v.arc_type
            t.status = EVALUATING
            self.evaluated.append(t)
            try:
                st = self._run(t, ch)
            except _Pending as p2:
                stack.extend(ch + [i] for i in reversed(range(len(p2.alts))))
                continue
            except CueError as e:
                if e.incomplete:
                    # keep an alternative that is merely incomplete
                    t.status = DONE
                    t.err = e
                    results.append((t, []))
                else:
                    errors.append(e)
                continue
            t.status = DONE
            results.append((t, st.marks))
            if st.cycle_err is not None and cycle_err is None:
                cycle_err = st.cycle_err
        # As cue does: a disjunction whose defaults were all eliminated counts as one without
        # defaults; an alternative is a default when it chose the default of every other
        # disjunction. Without such alternatives, all that remain are candidates.
        cands = [(t, m) for t, m in results if t.err is None]
        checked: set[int] = set()
        while cands:
            used = {i for _, m in cands for i, c in m if c}
            group = [t for t, m in cands if _mode(m, used) == 1] or [t for t, _ in cands]
            bad = set()
            for t in group:
                if id(t) not in checked:
                    checked.add(id(t))
                    if not self._deep_ok(t, errors):
                        bad.add(id(t))
            if bad:
                cands = [(t, m) for t, m in cands if id(t) not in bad]
                continue
            ok = self._dedupe(group) if len(group) > 1 else group
            if cycle_err is not None and (
                len(ok) > 1 or len(self._dedupe([t for t, _ in cands])) > 1
            ):
                # conjuncts that depend on the field itself were left out, and more than
                # one alternative is possible without them: which one holds is not known
                raise cycle_err
            if len(ok) == 1:
                self._adopt(v, ok[0])
                return
            v.value = Disj([(t, False) for t in ok])
            v.is_struct = False
            v.is_list = False
            v.arcs = {}
            return
        incompletes = [t for t, _ in results if t.err is not None]
        if incompletes:
            err = incompletes[0].err
            assert err is not None
            raise err
        if errors:
            e0 = errors[0]
            if len(errors) > 1:
                here = v.path()
                msgs: list[str] = []
                for other in errors:
                    text = other.msg
                    if other.path and other.path != here:
                        text = f"{other.path}: {text}"
                    if text not in msgs:
                        msgs.append(text)
                merged = CueError(
                    f"{len(errors)} errors in empty disjunction: " + "; ".join(msgs),
                    path=here or None,
                    pos=list(e0.pos),
                )
                for other in errors[1:]:
                    merged.add_pos(*other.pos)
                raise merged
            raise e0
        raise CueError("empty disjunction", path=v.path())

    def _adopt(self, v: Vertex, t: Vertex) -> None:
        self.adopted[id(t)] = t
        v.arcs = t.arcs
        v.value = t.value
        v.is_struct = t.is_struct
        v.is_list = t.is_list
        v.closed = t.closed
        v.expanded = t.expanded
        v.validators = t.validators
        for a in t.arcs.values():
            a.parent = v

    def _dedupe(self, ts: list[Vertex]) -> list[Vertex]:
        out: list[Vertex] = []
        seen: list[Any] = []
        for t in ts:
            try:
                # alternatives that differ in their optional fields or definitions differ
                val = self._full_value(t, 0)
            except CueError:
                out.append(t)
                continue
            if any(_deep_eq(val, s) for s in seen):
                continue
            seen.append(val)
            out.append(t)
        return out

    def _full_value(self, v: Vertex, depth: int) -> Any:
        """The value of ``v`` with its definitions, hidden and optional fields, to tell
        alternatives apart."""
        if depth > 50:
            raise CueError("too deep to compare")
        self.evaluate(v)
        val = v.value
        if isinstance(val, Disj):
            val = [self._full_value(t, depth + 1) if isinstance(t, Vertex) else t for t, _ in val.alts]
        elif isinstance(val, Constraint):
            val = repr(val)
        arcs = sorted(
            (
                (str(k), a.arc_type, "" if a.arc_type == OPTIONAL else self._full_value(a, depth + 1))
                for k, a in v.arcs.items()
            ),
            key=lambda x: (x[0], x[1]),
        )
        return [val, v.is_struct, v.is_list, arcs]

    def _deep_ok(self, t: Vertex, errors: list[CueError]) -> bool:
        """Whether a disjunct has no conflicts anywhere below it."""
        stack = list(t.arcs.values())
        count = 0
        while stack:
            a = stack.pop()
            count += 1
            if count > 100000:
                return True
            if a.arc_type == OPTIONAL:
                # an optional field that cannot have a value is simply absent
                continue
            try:
                self.evaluate(a)
            except CueError as e:
                if e.incomplete:
                    continue
                errors.append(e)
                return False
            stack.extend(a.arcs.values())
        return True

    def validate(self, v: Vertex, depth: int = 0) -> None:
        """Raise the first conflict among the top-level fields of ``v`` (definitions and hidden
        fields included) and among everything already evaluated below them; values that are
        merely incomplete are fine here."""
        if depth > 200:
            return
        for a in list(v.arcs.values()):
            if depth > 0 and a.status == NEW:
                # only what was evaluated anyway, plus the top-level fields
                continue
            try:
                self.evaluate(a)
            except CueError as e:
                if e.incomplete:
                    continue
                raise
            if a.arcs:
                self.validate(a, depth + 1)

    def _run(self, v: Vertex, choices: list[int], comp_first: bool = False) -> _State:
        st = _State(v, choices, comp_first)
        v.expanded = None
        v.validators = None
        v.arcs = {}
        v.value = TOP
        v.is_struct = False
        v.is_list = False
        cyclic = st.cyclic
        retry: list[tuple[A.Node, Env | None, Ctx]] = []
        for expr, env, ctx in v.conjuncts:
            if type(expr) is A.StructLit or type(expr) is A.ListLit:
                self.add(st, expr, env, ctx, None)
                continue
            try:
                self.add(st, expr, env, ctx, None)
            except CueError as e:
                if not e.cycle:
                    raise
                # a reference cycle: fine if the other conjuncts make the value concrete
                cyclic.append((expr, env, e))
                retry.append((expr, env, ctx))
        self._flush_deferred(st)
        if st.cyclic_comps:
            # a comprehension that reads fields of this very struct: read the fields
            # declared so far
            comps = st.cyclic_comps
            st.cyclic_comps = []
            self.partial.append(v)
            try:
                for comp, cenv, cctx, group, err in comps:
                    known = set(v.arcs)
                    try:
                        for benv in self.comprehend(comp.clauses, 0, cenv):
                            self.add_struct(st, comp.body, benv, cctx, group)
                    except CueError as e:
                        if e.cycle:
                            raise err from None
                        raise
                    if any(k not in known for k in v.arcs):
                        # it would insert a field into the struct whose fields it read
                        raise err
            finally:
                self.partial.pop()
            self._flush_deferred(st)
        if retry and v.is_struct and not v.had_disj:
            # a conjunct that reads fields of this very struct (`local: _zones[local.zone]`
            # next to `local: {zone: ...}`): read the fields declared so far
            self.partial.append(v)
            try:
                for expr, env, ctx in retry:
                    try:
                        self.add(st, expr, env, ctx, None)
                    except CueError as e:
                        if not e.cycle:
                            raise
                        continue
                    cyclic[:] = [c for c in cyclic if c[0] is not expr]
            finally:
                self.partial.pop()
            self._flush_deferred(st)
        if st.stale and not comp_first:
            # A field was read before all of its declarations were known (an embedding used
            # a field that a comprehension extends): evaluate again, embeddings last.
            return self._run(v, choices, True)
        i = 0
        while i < len(st.disj):
            d = st.disj[i]
            if i >= len(choices):
                raise _Pending(d.alts)
            alt, is_def_ = d.alts[choices[i]]
            if d.has_default:
                st.marks.append((i, is_def_))
            self.add_value(st, alt, d.ctx, d.group, None, d.env)
            self._flush_deferred(st)
            i += 1
        if st.has_cycle and not st.non_cycle:
            raise CueError("structural cycle", path=v.path())
        self._finish(st)
        if cyclic:
            if st.disj:
                # which alternative holds may depend on the field itself: only one that is
                # the only candidate is taken (see _run_vertex)
                st.cycle_err = cyclic[0][2]
            self._check_cyclic(v, cyclic)
        return st

    def _check_cyclic(self, v: Vertex, cyclic: list[tuple[A.Node, Env | None, CueError]]) -> None:
        """The conjuncts left out because they depend on ``v`` itself: ``v`` must be concrete
        without them, and must agree with those that can be computed now."""
        if v.is_struct or v.is_list or not is_concrete_scalar(v.value):
            raise cyclic[0][2]
        for expr, env, cyc in cyclic:
            try:
                val = self.concrete(self.eval(expr, env), expr.pos)
            except CueError as e:
                if e.cycle:
                    # a field still being evaluated: check once everything is known
                    self.rechecks.append((v, expr, env, cyc.path))
                    continue
                raise
            v.value = unify_scalars(v.value, val, None, expr.pos)

    def _in_result(self, v: Vertex) -> bool:
        """Whether ``v`` belongs to the configuration: not to an alternative of a disjunction
        that was not chosen, nor to a run of a field that was evaluated again."""
        p: Vertex | None = v
        while p is not None and p.parent is not None:
            if p.parent.arcs.get(p.label) is not p and id(p) not in self.adopted:  # type: ignore[arg-type]
                return False
            p = p.parent
        return True

    def recheck_cycles(self) -> list[CueError]:
        """The conjuncts left out of a field because they went back to a field still being
        evaluated, checked against the field's value now that all is known. A conflict is
        reported at the field and at the field the cycle went through (whose value was
        chosen without it)."""
        errs: list[CueError] = []
        for v, expr, env, origin in self.rechecks:
            if v.status != DONE or v.err is not None or not is_concrete_scalar(v.value):
                continue
            if not self._in_result(v):
                continue
            try:
                val = self.concrete(self.eval(expr, env), expr.pos)
                unify_scalars(v.value, val, None, expr.pos)
            except CueError as e:
                if e.incomplete:
                    continue
                if e.path is None:
                    e.path = v.path() or None
                errs.append(e)
                if origin and origin != e.path:
                    errs.append(
                        CueError(
                            f"value inconsistent with a field it refers to ({e.path}: {e.msg})",
                            path=origin,
                            pos=list(e.pos),
                        )
                    )
        self.rechecks = []
        return errs

    def _flush_deferred(self, st: _State) -> None:
        while st.deferred or st.embeds:
            while st.deferred:
                items = st.deferred
                st.deferred = []
                for comp, env, ctx, group in items:
                    try:
                        for benv in self.comprehend(comp.clauses, 0, env):
                            self.add_struct(st, comp.body, benv, ctx, group)
                    except CueError as e:
                        if not e.cycle or not st.v.is_struct or st.v.had_disj:
                            raise
                        st.cyclic_comps.append((comp, env, ctx, group, e))
            if st.embeds:
                embeds = st.embeds
                st.embeds = []
                for expr, env, ctx, group in embeds:
                    try:
                        self.add(st, expr, env, ctx, group)
                    except CueError as e:
                        if not e.cycle or type(expr) is A.StructLit:
                            raise
                        st.cyclic.append((expr, env, e))

    def _finish(self, st: _State) -> None:
        v = st.v
        arcs = v.arcs
        # pattern constraints
        if st.patterns:
            for pat, expr, env, ctx, alias in st.patterns:
                for label, arc in arcs.items():
                    if isinstance(label, str) and not is_hidden_or_def(label):
                        if self.match_pattern(pat, label):
                            penv = (
                                env
                                if alias is None
                                else Env(env, None, {alias: label_text(label)})
                            )
                            self.add_arc_conjunct(arc, expr, penv, ctx)
        # closedness
        if st.groups:
            v.closed = True
            dropped: list[str | int] = []
            for label in arcs:
                if isinstance(label, int) or is_hidden_or_def(label):
                    continue
                for g in st.groups.values():
                    if not self._allows(g, label) and not any(
                        self._allows(e, label) for e in g.also
                    ):
                        if arcs[label].arc_type == OPTIONAL:
                            # an optional field a closed struct does not allow is absent
                            dropped.append(label)
                            break
                        raise CueError(f"field {label_text(label)} not allowed", path=v.path(), pos=[])
            for label in dropped:
                del arcs[label]
        # lists
        if st.lists:
            self._finish_list(st)
        # kind consistency
        scalar = st.scalar
        if v.is_list and v.is_struct:
            if st.pure_struct or any(
                not isinstance(k, int) and not is_hidden_or_def(k) for k in arcs
            ):
                raise CueError(
                    "conflicting values list and struct (mismatched types list and struct)",
                    path=v.path(),
                )
            v.is_struct = False
        if v.is_struct or v.is_list:
            if scalar is not TOP:
                want = K_LIST if v.is_list else K_STRUCT
                embeds_scalar = (
                    v.is_struct
                    and not v.is_list
                    and not st.pure_struct
                    and not any(not is_hidden_or_def(k) for k in arcs)
                )
                if isinstance(scalar, Constraint) and not scalar.kinds & want and embeds_scalar:
                    # a struct literal with only definitions or hidden fields embedding a
                    # type ({string, #test: ...})
                    v.is_struct = False
                elif isinstance(scalar, Constraint):
                    if not scalar.kinds & want:
                        raise CueError(
                            f"conflicting values {scalar!r} and {'[...]' if v.is_list else '{...}'} "
                            f"(mismatched types {kind_name(scalar.kinds)} and "
                            f"{'list' if v.is_list else 'struct'})",
                            path=v.path(),
                            pos=[p for p in (st.scalar_pos, st.struct_pos) if p],
                        )
                    for b in scalar.bounds:
                        if isinstance(b, CallBound):
                            st.validators.append(b)
                    scalar = TOP
                elif (
                    v.is_struct
                    and not st.pure_struct
                    and not any(not is_hidden_or_def(k) for k in arcs)
                    and not v.is_list
                ):
                    # a struct literal with only hidden fields embedding a scalar
                    v.is_struct = False
                else:
                    raise CueError(
                        f"conflicting values {fmt_scalar(scalar)} and "
                        f"{'[...]' if v.is_list else '{...}'} (mismatched types "
                        f"{kind_name(kind_of(scalar))} and {'list' if v.is_list else 'struct'})",
                        path=v.path(),
                        pos=[p for p in (st.scalar_pos, st.struct_pos) if p],
                    )
        v.value = scalar
        v.validators = st.validators or None

    def _finish_list(self, st: _State) -> None:
        v = st.v
        closed_lens = [p for p in st.lists if not p.open]
        if closed_lens:
            n = closed_lens[0].length
            for p in closed_lens[1:]:
                if p.length != n:
                    raise CueError(
                        f"incompatible list lengths ({min(n, p.length)} and {max(n, p.length)})",
                        path=v.path(),
                        pos=[q for q in (closed_lens[0].pos, p.pos) if q],
                    )
            for p in st.lists:
                if p.open and p.length > n:
                    raise CueError(
                        f"incompatible list lengths ({n} and {p.length})",
                        path=v.path(),
                        pos=[q for q in (closed_lens[0].pos, p.pos) if q],
                    )
        else:
            n = max(p.length for p in st.lists)
        for p in st.lists:
            if p.open and p.tail is not None:
                for i in range(p.length, n):
                    self.add_arc_conjunct(v.arcs[i], p.tail, p.env, p.ctx)
        if len(v.arcs) != n:
            # keep only the integer positions in order
            for k in list(v.arcs):
                if isinstance(k, int) and k >= n:
                    del v.arcs[k]

    def _allows(self, g: Group, label: str) -> bool:
        if g.open or label in g.labels:
            return True
        return any(self.match_pattern(p, label) for p in g.patterns)

    def add_arc_conjunct(self, arc: Vertex, expr: A.Node, env: Env | None, ctx: Ctx) -> None:
        if arc.status != NEW:
            if arc.status == EVALUATING:
                raise CueError(
                    "cycle: field modified while being evaluated", path=arc.path(), incomplete=True
                )
            arc.status = NEW
            arc.err = None
        arc.conjuncts.append((expr, env, ctx))

    def get_arc(self, v: Vertex, label: str | int, kind: int) -> Vertex:
        arcs = v.arcs
        a = arcs.get(label)
        if a is None:
            a = Vertex(v, label)
            a.arc_type = kind
            arcs[label] = a
        elif kind < a.arc_type:
            a.arc_type = kind
        return a

    # =========================================================================================
    # adding conjuncts

    def add(self, st: _State, expr: A.Node, env: Env | None, ctx: Ctx, embed: Group | None) -> None:
        """Unify ``expr`` (evaluated in ``env``) into the vertex of ``st``.

        ``ctx`` lists the definitions the conjunct comes from (each closes the struct);
        ``embed`` is the field set of the struct literal the expression is embedded in.
        """
        t = type(expr)
        if t is A.StructLit:
            self.add_struct(st, expr, env, ctx, embed)  # type: ignore[arg-type]
            return
        if t is A.Unify:
            for it in expr.items:  # type: ignore[attr-defined]
                self.add(st, it, env, ctx, embed)
            return
        if t is A.Paren:
            self.add(st, expr.x, env, ctx, embed)  # type: ignore[attr-defined]
            return
        if t is A.Lit:
            val = expr.value  # type: ignore[attr-defined]
            if not isinstance(val, Vertex) and (env is None or not env.cyclic):
                st.non_cycle = True
            self.add_value(st, val, ctx, embed, expr.pos, env)
            return
        if env is None or not env.cyclic:
            st.non_cycle = True
        if t is A.ListLit:
            self.add_list(st, expr, env, ctx)  # type: ignore[arg-type]
            return
        if t is A.Disjunction:
            d = self.eval_disjunction(expr, env)  # type: ignore[arg-type]
            self.add_value(st, d, ctx, embed, expr.pos, env)
            return
        val = self.eval(expr, env)
        if isinstance(val, Vertex):
            self.add_ref(st, val, ctx, embed, expr.pos, env)
        else:
            self.add_value(st, val, ctx, embed, expr.pos, env)

    def add_ref(
        self,
        st: _State,
        r: Vertex,
        ctx: Ctx,
        embed: Group | None,
        pos: Pos,
        env: Env | None = None,
    ) -> None:
        """Unify with a referenced vertex: its conjuncts are evaluated here again. ``env`` is
        the frame of the referring expression."""
        v = st.v
        key = id(r)
        if key in st.expanding:
            return
        seen = (r, ctx, embed)
        if seen in st.seen:
            # unification is idempotent: the same value twice adds nothing
            return
        st.seen.add(seen)
        # a reference to an ancestor is a structural cycle
        if r is v:
            # a reference cycle back to this field adds no information
            return
        # A reference to an ancestor is a structural cycle, and so is a field made of one
        # conjunct that unfolds the same reference as many of its ancestors did (`a: b: a`
        # reached through another field): it would unfold without end. (Recursion that the
        # data ends, a few levels deep, stays below the limit.)
        mark = (pos, id(r))
        alone = len(v.conjuncts) == 1
        repeats = 0
        p: Vertex | None = v.parent
        while p is not None:
            if p is r:
                raise CueError("structural cycle", path=v.path(), pos=[pos])
            if alone and p.expanded is not None and mark in p.expanded:
                repeats += 1
                if repeats >= MAX_UNFOLD:
                    raise CueError("structural cycle", path=v.path(), pos=[pos])
            p = p.parent
        if r.status == NEW and r.parent is not None:
            try:
                self.evaluate(r)
            except CueError as e:
                if not e.incomplete:
                    raise
        elif r.status == DONE and r.err is not None and not r.err.incomplete:
            raise r.err
        if (
            r.status == DONE
            and r.err is None
            and not r.had_disj
            and not r.is_struct
            and not r.is_list
            and not r.arcs
        ):
            # a scalar does not depend on where it is used
            if env is None or not env.cyclic:
                st.non_cycle = True
            self.add_value(st, r.value, ctx, embed, pos)
            return
        # As cue does: the conjuncts of ``r`` are evaluated as reached through the
        # references so far and ``r``; a reference back into that chain is a cycle.
        chain = env.deref if env is not None else ()
        cyclic = r in chain
        if cyclic:
            st.has_cycle = True
        deref = chain + (r,)
        if v.expanded is None:
            v.expanded = {mark}
        else:
            v.expanded.add(mark)
        st.expanding.add(key)
        try:
            for expr, cenv, rc in r.conjuncts:
                if cenv is None:
                    cenv = Env(None)
                cenv = cenv.derive(deref, cyclic)
                if rc:
                    if embed is not None:
                        for cid in rc:
                            if type(cid) is _Mark:
                                continue
                            g = self._group(st, cid)
                            if embed not in g.also:
                                g.also.append(embed)
                    nctx = ctx + tuple(c for c in rc if c not in ctx) if ctx else rc
                else:
                    nctx = ctx
                self.add(st, expr, cenv, nctx, embed)
        finally:
            st.expanding.discard(key)

    def add_value(
        self,
        st: _State,
        val: Any,
        ctx: Ctx,
        embed: Group | None,
        pos: Pos | None,
        env: Env | None = None,
    ) -> None:
        if isinstance(val, Vertex):
            self.add_ref(st, val, ctx, embed, pos or _NOPOS, env)
            return
        if isinstance(val, Disj):
            alts = val.alts
            if len(alts) == 1:
                self.add_value(st, alts[0][0], ctx, embed, pos, env)
                return
            nd = _Disjunct(alts, ctx, embed, env)
            if st.disj:
                # unification is idempotent: a disjunction met again (a template applied
                # many times) is one choice, not a new one
                key = nd.key = self._disj_key(alts)
                if key is not None:
                    for od in st.disj:
                        okey = od.key
                        if okey is _UNSET:
                            okey = od.key = self._disj_key(od.alts)
                        if okey == key and od.group is embed and od.ctx == ctx:
                            return
            st.disj.append(nd)
            return
        if val is TOP:
            return
        if isinstance(val, Builtin) and val.validates is not None and val.validates[0] == 1:
            val = self.validator(val, [], A.Call(pos or _NOPOS, A.Lit(pos or _NOPOS, TOP), []))
        if isinstance(val, Builtin | Package):
            raise CueError(f"cannot use {val!r} as value", pos=[pos] if pos else [])
        cur = st.scalar
        if cur is TOP:
            if isinstance(val, Constraint) and val.kinds == K_ALL and not val.bounds:
                return
            st.scalar = val
            st.scalar_pos = pos
            return
        st.scalar = unify_scalars(cur, val, st.scalar_pos, pos)
        if pos is not None and st.scalar is val:
            st.scalar_pos = pos

    def _disj_key(self, alts: list[tuple[Any, bool]]) -> Any:
        parts: list[Any] = []
        for val, d in alts:
            k = self._value_key(val)
            if k is None:
                return None
            parts.append((k, d))
        return tuple(parts)

    def _value_key(self, val: Any) -> Any:
        """A key equal for two values known to be the same (None when unknown)."""
        if is_concrete_scalar(val):
            return ("s", type(val).__name__, val)
        if isinstance(val, Constraint):
            bounds: list[Any] = []
            for b in val.bounds:
                if isinstance(b, CallBound):
                    bounds.append(("f", id(b)))
                else:
                    bounds.append((b.op, type(b.value).__name__, b.value))
            return ("c", val.kinds, tuple(bounds))
        if isinstance(val, Vertex):
            if val.parent is None and val.status == NEW and len(val.conjuncts) == 1:
                # a literal evaluated where it stands: the same text in the same scope
                expr, env, ctx = val.conjuncts[0]
                return ("t", self._ast_key(expr), id(env), ctx)
            return ("r", id(val))
        return None

    def _ast_key(self, node: Any) -> Any:
        """The structure of a syntax tree without its positions."""
        cache = self.ast_keys
        hit = cache.get(id(node))
        if hit is not None and hit[0] is node:
            return hit[1]
        key = _ast_key(node)
        cache[id(node)] = (node, key)
        return key

    def _groups(self, st: _State, ctx: Ctx) -> list[Group]:
        """The field sets that a conjunct with closedness context ``ctx`` adds to: one per
        definition it comes from, and the field set of each literal that embedded
        something and declared it."""
        if not ctx:
            return []
        for cid in ctx:
            if type(cid) is _Mark:
                break
        else:
            return [self._group(st, cid) for cid in ctx]
        groups: list[Group] = []
        real: list[Group] = []
        unders: list[Group] = []
        for cid in ctx:
            if type(cid) is _Mark:
                eg = st.emb.get(cid.tok)
                if eg is None:
                    eg = st.emb[cid.tok] = Group()
                if cid.under:
                    unders.append(eg)
                else:
                    groups.append(eg)
            else:
                g = self._group(st, cid)
                groups.append(g)
                real.append(g)
        for g in real:
            for eg in unders:
                if eg not in g.also:
                    g.also.append(eg)
        return groups

    def _group(self, st: _State, cid: object) -> Group:
        g = st.groups.get(cid)
        if g is None:
            g = st.groups[cid] = Group()
        return g

    def add_struct(
        self, st: _State, s: A.StructLit, env: Env | None, ctx: Ctx, embed: Group | None
    ) -> None:
        v = st.v
        if env is None or not env.cyclic:
            st.non_cycle = True
        if s.pure:
            # a literal without embeddings is a struct, whatever its fields
            st.pure_struct = True
            if not v.is_struct:
                v.is_struct = True
                st.struct_pos = s.pos
        elif s.has_fields:
            if not v.is_struct:
                v.is_struct = True
                st.struct_pos = s.pos
        groups = self._groups(st, ctx)
        lit = embed if embed is not None else Group()
        groups.append(lit)
        frame = Env(env, v)
        dynamic: list[A.Field | A.Embed] = []
        ectx = ctx
        if not s.pure:
            # The fields of a literal that embeds values stay allowed next to what those
            # values close, at every depth (cue's closedness: an embedding is an "or" with
            # the literal's own declarations): mark the conjuncts of both sides.
            tok = object()
            ectx = ctx + (_Mark(True, tok),)
            ctx = ctx + (_Mark(False, tok),)
        for d in s.decls:
            t = type(d)
            if t is A.Field:
                assert isinstance(d, A.Field)
                if d.label.name is None:
                    # computed labels may refer to the fields of this literal: add them last
                    dynamic.append(d)
                else:
                    self._add_field(st, d, d.label.name, frame, ctx, groups)
            elif t is A.Embed:
                assert isinstance(d, A.Embed)
                if d.late:
                    dynamic.append(d)
                elif st.comp_first:
                    st.embeds.append((d.expr, frame, ectx, lit))
                else:
                    self._embed(st, d.expr, frame, ectx, lit)
            elif t is A.Comprehension:
                assert isinstance(d, A.Comprehension)
                st.deferred.append((d, frame, ctx, lit))
            elif t is A.Pattern:
                assert isinstance(d, A.Pattern)
                pat = self.eval(d.pattern, frame)
                if isinstance(pat, Vertex):
                    self.evaluate(pat)
                    if pat.is_struct or pat.is_list:
                        raise CueError(
                            f"invalid pattern {self.show(pat)}: must be a string constraint",
                            pos=[d.pattern.pos],
                        )
                    pat = pat.value
                st.patterns.append((pat, d.value, frame, ctx, d.alias))
                for g in groups:
                    g.patterns.append(pat)
            elif t is A.Ellipsis:
                for g in groups:
                    g.open = True
            # LetDecl: evaluated lazily on reference
        for d in dynamic:
            if type(d) is A.Embed:
                assert isinstance(d, A.Embed)
                if st.comp_first:
                    st.embeds.append((d.expr, frame, ectx, lit))
                else:
                    self._embed(st, d.expr, frame, ectx, lit)
            else:
                assert isinstance(d, A.Field)
                self._add_dynamic_field(st, d, frame, ctx, groups)

    def _embed(self, st: _State, expr: A.Node, frame: Env, ctx: Ctx, lit: Group) -> None:
        """Unify an embedded expression; one that is not yet complete (`#a + #b` before the
        conjuncts that set #a and #b) is tried again once all conjuncts are in."""
        try:
            self.add(st, expr, frame, ctx, lit)
        except CueError as e:
            if not e.incomplete or type(expr) is A.StructLit:
                raise
            if e.cycle:
                # it depends on the vertex itself: fine if the rest makes it concrete
                st.cyclic.append((expr, frame, e))
                return
            st.embeds.append((expr, frame, ctx, lit))

    def _add_field(
        self, st: _State, d: A.Field, name: str, frame: Env, ctx: Ctx, groups: list[Group]
    ) -> None:
        v = st.v
        marker = d.marker
        kind = REGULAR if not marker else (OPTIONAL if marker == "?" else REQUIRED)
        arc = self.get_arc(v, name, kind)
        if arc.status == DONE:
            st.stale = True
        self.add_arc_conjunct(arc, d.value, frame, ctx + ((v, name),) if is_def(name) else ctx)
        for g in groups:
            g.labels.add(name)

    def _add_dynamic_field(
        self, st: _State, d: A.Field, frame: Env, ctx: Ctx, groups: list[Group]
    ) -> None:
        lab = d.label
        assert lab.expr is not None
        raw = self.eval(lab.expr, frame)
        if isinstance(raw, Vertex):
            self.evaluate(raw)
            if not (raw.is_struct or raw.is_list):
                raw = raw.value
        if isinstance(raw, Constraint) and raw.kinds & K_STRING:
            # a label that is known to be a string but not which one (as CUE v0.4 reports it)
            raise CueError(
                f"invalid non-ground value {self.show(raw)} (must be concrete string)",
                pos=[lab.pos],
            )
        lv = self.concrete(raw, lab.expr.pos)
        if not isinstance(lv, str):
            raise CueError(
                f"invalid label type {kind_name(kind_of(lv))}: label must be a string",
                pos=[lab.pos],
            )
        self._add_field(st, d, regular_label(lv), frame, ctx, groups)

    def add_list(self, st: _State, lst: A.ListLit, env: Env | None, ctx: Ctx) -> None:
        v = st.v
        v.is_list = True
        if st.struct_pos is None:
            st.struct_pos = lst.pos
        i = 0
        for el in lst.elems:
            if type(el) is A.Comprehension:
                assert isinstance(el, A.Comprehension)
                for benv in self.comprehend(el.clauses, 0, env):
                    arc = self.get_arc(v, i, REGULAR)
                    self.add_arc_conjunct(arc, el.body, benv, ctx)
                    i += 1
            else:
                arc = self.get_arc(v, i, REGULAR)
                self.add_arc_conjunct(arc, el, env, ctx)
                i += 1
        st.lists.append(_ListPart(i, lst.open, lst.ellipsis, env, ctx, lst.pos))

    # =========================================================================================
    # comprehensions

    def comprehend(self, clauses: list[A.Node], idx: int, env: Env | None) -> Iterator[Env]:
        if idx == len(clauses):
            assert env is not None
            yield env
            return
        cl = clauses[idx]
        t = type(cl)
        if t is A.ForClause:
            assert isinstance(cl, A.ForClause)
            src = self.eval(cl.source, env)
            src = self.resolve_default(src, cl.source.pos)
            if isinstance(src, Vertex):
                self.evaluate(src)
                if src.is_list:
                    items: list[tuple[Any, Any]] = list(enumerate(elems(src)))
                elif src.is_struct:
                    items = [
                        (k, a)
                        for k, a in src.arcs.items()
                        if a.arc_type == REGULAR and not is_hidden_or_def(k)
                    ]
                    for _, a in items:
                        # a conflict in the source is an error even if only its labels are used
                        try:
                            self.evaluate(a)
                        except CueError as e:
                            if not e.incomplete:
                                raise
                else:
                    val = src.value
                    raise self._not_iterable(val, cl.source.pos)
            else:
                raise self._not_iterable(src, cl.source.pos)
            for k, a in items:
                binds = {cl.value: a}
                if cl.key is not None:
                    binds[cl.key] = label_text(k) if isinstance(k, str) else k
                yield from self.comprehend(clauses, idx + 1, Env(env, None, binds))
        elif t is A.IfClause:
            assert isinstance(cl, A.IfClause)
            c = self.concrete(self.eval(cl.cond, env), cl.cond.pos)
            if not isinstance(c, bool):
                raise CueError(
                    f"invalid type for if condition: {kind_name(kind_of(c))} (want bool)",
                    pos=[cl.cond.pos],
                )
            if c:
                yield from self.comprehend(clauses, idx + 1, env)
        else:
            assert isinstance(cl, A.LetClause)
            val = self.eval(cl.expr, env)
            yield from self.comprehend(clauses, idx + 1, Env(env, None, {cl.name: val}))

    def _not_iterable(self, val: Any, pos: Pos) -> CueError:
        if isinstance(val, Constraint) or val is TOP or isinstance(val, Disj):
            return CueError(
                f"incomplete value {self.show(val)} in for loop source", pos=[pos], incomplete=True
            )
        return CueError(
            f"cannot range over {self.show(val)} (found {kind_name(kind_of(val))}, want list or struct)",
            pos=[pos],
        )

    # =========================================================================================
    # expressions

    def lookup(self, ident: A.Ident, env: Env | None) -> Any:
        e = env
        for _ in range(ident.ups):
            assert e is not None
            e = e.up
        kind = ident.kind
        if kind == "field":
            assert e is not None and e.vertex is not None
            v = e.vertex
            fname = ident.name if ident.target is None else ident.target
            a = v.arcs.get(fname)
            if a is None:
                if v.status == NEW:
                    self.evaluate(v)
                    a = v.arcs.get(fname)
                if a is None:
                    raise CueError(
                        f'reference "{ident.name}" not found',
                        pos=[ident.pos],
                        incomplete=True,
                        missing=True,
                    )
            if a.arc_type == OPTIONAL:
                raise _optional_ref(a, ident.pos)
            return a
        if kind == "dynfield":
            # an alias of a field whose label is computed
            assert e is not None and e.vertex is not None
            f = ident.target
            lv = self.concrete(self.eval(f.label.expr, e), f.label.pos)
            if not isinstance(lv, str):
                raise CueError("invalid label type: label must be a string", pos=[f.label.pos])
            a = e.vertex.arcs.get(regular_label(lv))
            if a is None:
                raise CueError(
                    f'reference "{ident.name}" not found', pos=[ident.pos], incomplete=True
                )
            return a
        if kind == "bind":
            assert e is not None and e.binds is not None
            return e.binds[ident.name]
        if kind == "let":
            assert e is not None
            lets = e.lets
            if lets is None:
                lets = e.lets = {}
            if ident.name in lets:
                val = lets[ident.name]
                if isinstance(val, _LetInProgress):
                    if val.depth == self.depth:
                        # lets (or aliases) that refer to each other and to nothing else
                        where = e.vertex.path() if e.vertex is not None else ""
                        raise CueError(
                            "cyclic references in let clause or alias",
                            path=f"{where}.let[]" if where else "let[]",
                            pos=[ident.pos],
                        )
                    # back through a field being evaluated: a reference cycle
                    raise CueError(
                        f"cycle in evaluation of let {ident.name}",
                        pos=[ident.pos],
                        incomplete=True,
                        cycle=True,
                    )
                return val
            lets[ident.name] = _LetInProgress(self.depth)
            try:
                val = self.eval(ident.target.expr, e)
            except BaseException:
                del lets[ident.name]
                raise
            lets[ident.name] = val
            return val
        if kind == "type":
            return ident.target
        if kind == "builtin":
            from specflow.spec.cue.builtins import PREDECLARED

            return PREDECLARED[ident.target]
        if kind == "import":
            return Package(ident.target)
        raise CueError(f'reference "{ident.name}" not found', pos=[ident.pos])

    def eval(self, expr: A.Node, env: Env | None) -> Any:
        t = type(expr)
        if t is A.Lit:
            return expr.value  # type: ignore[attr-defined]
        if t is A.Ident:
            return self.lookup(expr, env)  # type: ignore[arg-type]
        if t is A.Selector:
            assert isinstance(expr, A.Selector)
            return self.select(expr, env)
        if t is A.Index:
            assert isinstance(expr, A.Index)
            return self.index(expr, env)
        if t is A.Binary:
            assert isinstance(expr, A.Binary)
            return self.binary(expr, env)
        if t is A.Interp:
            assert isinstance(expr, A.Interp)
            return self.interp(expr, env)
        if t is A.Call:
            assert isinstance(expr, A.Call)
            return self.call(expr, env)
        if t is A.StructLit or t is A.ListLit:
            tmp = Vertex(None, None)
            tmp.conjuncts.append((expr, env, ()))
            return tmp
        if t is A.Paren:
            return self.eval(expr.x, env)  # type: ignore[attr-defined]
        if t is A.Unary:
            assert isinstance(expr, A.Unary)
            return self.unary(expr, env)
        if t is A.Unify:
            assert isinstance(expr, A.Unify)
            vals = [self.eval(it, env) for it in expr.items]
            if all(not isinstance(x, Vertex | Disj | Builtin | Package) for x in vals):
                acc: Any = TOP
                for x, it in zip(vals, expr.items, strict=True):
                    acc = unify_scalars(acc, x, expr.pos, it.pos)
                return acc
            tmp = Vertex(None, None)
            for x, it in zip(vals, expr.items, strict=True):
                tmp.conjuncts.append((A.Lit(it.pos, x), env, ()))
            return tmp
        if t is A.Disjunction:
            assert isinstance(expr, A.Disjunction)
            return self.eval_disjunction(expr, env)
        if t is A.Default:
            return self.eval(expr.x, env)  # type: ignore[attr-defined]
        if t is A.Bottom:
            raise CueError("explicit error (_|_ literal) in source", pos=[expr.pos])
        if t is A.Slice:
            assert isinstance(expr, A.Slice)
            return self.slice(expr, env)
        raise CueError(f"unsupported expression {type(expr).__name__}", pos=[expr.pos])

    def eval_disjunction(self, expr: A.Disjunction, env: Env | None) -> Any:
        alts: list[tuple[Any, bool]] = []
        for a, d in expr.alts:
            try:
                val = self.eval(a, env)
            except CueError as e:
                if e.incomplete:
                    raise
                continue
            if isinstance(val, Disj):
                # a nested disjunction keeps its defaults inside an unmarked one; inside a
                # marked one a marked term keeps them (all of it is default when it has
                # none) and an unmarked term loses them
                inner_def = any(dd for _, dd in val.alts)
                for iv, idd in val.alts:
                    if expr.has_default:
                        alts.append((iv, d and (idd or not inner_def)))
                    else:
                        alts.append((iv, idd))
            else:
                alts.append((val, d and expr.has_default))
        if not alts:
            raise CueError("empty disjunction", pos=[expr.pos])
        if len(alts) == 1:
            return alts[0][0]
        return Disj(alts)

    def resolve_default(self, val: Any, pos: Pos) -> Any:
        if isinstance(val, Disj):
            d = val.default()
            if d is None:
                raise CueError(
                    f"incomplete value {self.show(val)}: ambiguous disjunction",
                    pos=[pos],
                    incomplete=True,
                )
            return self.resolve_default(d, pos)
        if isinstance(val, Vertex):
            self.evaluate(val)
            if isinstance(val.value, Disj) and not (val.is_struct or val.is_list):
                d = val.value.default()
                if d is None:
                    raise CueError(
                        f"incomplete value {self.show(val.value)}",
                        pos=[pos],
                        incomplete=True,
                    )
                return self.resolve_default(d, pos)
        return val

    def struct_of(self, val: Any, pos: Pos) -> Vertex:
        val = self.resolve_default(val, pos)
        if isinstance(val, Vertex):
            if val.is_struct or val.is_list:
                return val
            val = val.value
        if val is TOP or isinstance(val, Constraint):
            raise CueError(f"incomplete value {self.show(val)}", pos=[pos], incomplete=True)
        raise CueError(
            f"invalid operand {self.show(val)} (found {kind_name(kind_of(val))}, want struct)",
            pos=[pos],
        )

    def select(self, expr: A.Selector, env: Env | None) -> Any:
        base = self.eval(expr.x, env)
        if isinstance(base, Package):
            from specflow.spec.cue.builtins import package_member

            return package_member(base.path, expr.name, expr.pos)
        if self.partial and isinstance(base, Vertex) and base is self.partial[-1]:
            a = base.arcs.get(expr.name)
            if a is not None and a.arc_type == REGULAR:
                return a
        v = self.resolve_default(base, expr.pos)
        if isinstance(v, Vertex):
            if v.is_list:
                raise CueError(f"invalid selector {expr.name} on list", pos=[expr.pos])
            if not v.is_struct:
                val = v.value
                if val is TOP or isinstance(val, Constraint | Disj):
                    raise CueError(
                        f"incomplete value {self.show(val)}",
                        path=v.path() or None,
                        pos=[expr.pos],
                        incomplete=True,
                    )
                raise CueError(f"invalid selector {expr.name} on {self.show(val)}", pos=[expr.pos])
            a = v.arcs.get(expr.name)
            if a is None:
                raise CueError(
                    f"undefined field: {label_text(expr.name)}",
                    pos=[expr.pos],
                    incomplete=not v.closed,
                    missing=True,
                )
            if a.arc_type == OPTIONAL:
                raise _optional_ref(a, expr.pos)
            if a.arc_type != REGULAR:
                self.evaluate(a)
            return a
        if v is TOP or isinstance(v, Constraint):
            raise CueError(f"incomplete value {self.show(v)}", pos=[expr.pos], incomplete=True)
        raise CueError(f"invalid selector {expr.name} on {self.show(v)}", pos=[expr.pos])

    def index(self, expr: A.Index, env: Env | None) -> Any:
        base = self.resolve_default(self.eval(expr.x, env), expr.x.pos)
        idx = self.concrete(self.eval(expr.index, env), expr.index.pos)
        if isinstance(base, Vertex):
            if base.is_list:
                if type(idx) is not int:
                    if type(idx) is Decimal and idx == idx.to_integral_value():
                        raise CueError(
                            f"invalid index {fmt_scalar(idx)} (index must be integer)",
                            pos=[expr.index.pos],
                        )
                    raise CueError(
                        f"invalid index {fmt_scalar(idx)} (type {kind_name(kind_of(idx))})",
                        pos=[expr.index.pos],
                    )
                # the elements are the arcs labelled 0 to length-1
                a = base.arcs.get(idx) if idx >= 0 else None
                if a is None:
                    raise CueError(
                        f"index out of range [{idx}] with length {len(elems(base))}",
                        pos=[expr.pos],
                    )
                return a
            if base.is_struct:
                if not isinstance(idx, str):
                    raise CueError(f"invalid struct index {fmt_scalar(idx)}", pos=[expr.index.pos])
                a = base.arcs.get(regular_label(idx))
                if a is None:
                    raise CueError(
                        f"undefined field: {idx}",
                        pos=[expr.pos],
                        incomplete=not base.closed,
                        missing=True,
                    )
                if a.arc_type == OPTIONAL:
                    raise _optional_ref(a, expr.pos)
                return a
            base = base.value
        if isinstance(base, str | bytes):
            if type(idx) is not int:
                raise CueError(f"invalid index {fmt_scalar(idx)}", pos=[expr.index.pos])
            if idx < 0 or idx >= len(base):
                raise CueError(
                    f"index out of range [{idx}] with length {len(base)}", pos=[expr.pos]
                )
            return base[idx] if isinstance(base, bytes) else base.encode()[idx]
        if base is TOP or isinstance(base, Constraint | Disj):
            raise CueError(f"incomplete value {self.show(base)}", pos=[expr.pos], incomplete=True)
        raise CueError(f"invalid operation: cannot index {self.show(base)}", pos=[expr.pos])

    def slice(self, expr: A.Slice, env: Env | None) -> Any:
        base = self.resolve_default(self.eval(expr.x, env), expr.x.pos)
        lo = 0 if expr.lo is None else self.concrete(self.eval(expr.lo, env), expr.lo.pos)
        if isinstance(base, Vertex) and base.is_list:
            n = len(elems(base))
            hi = n if expr.hi is None else self.concrete(self.eval(expr.hi, env), expr.hi.pos)
            if type(lo) is not int or type(hi) is not int:
                raise CueError("slice indices must be integers", pos=[expr.pos])
            if lo < 0 or hi > n or lo > hi:
                raise CueError(f"invalid slice index: {lo}:{hi} (length {n})", pos=[expr.pos])
            return self.list_vertex([base.arcs[i] for i in range(lo, hi)])
        if isinstance(base, Vertex):
            base = self.concrete(base, expr.x.pos)
        if isinstance(base, str | bytes):
            n = len(base)
            hi = n if expr.hi is None else self.concrete(self.eval(expr.hi, env), expr.hi.pos)
            if type(lo) is not int or type(hi) is not int or lo < 0 or hi > n or lo > hi:
                raise CueError("invalid slice index", pos=[expr.pos])
            return base[lo:hi]
        raise CueError(f"cannot slice {self.show(base)}", pos=[expr.pos])

    def list_vertex(self, elems: list[Any]) -> Vertex:
        """A new list whose elements unify with the given values or vertices."""
        tmp = Vertex(None, None)
        tmp.conjuncts.append(
            (A.ListLit(_NOPOS, [A.Lit(_NOPOS, e) for e in elems], None, False), None, ())
        )
        return tmp

    def concrete(self, val: Any, pos: Pos | None, what: str = "") -> Any:
        """The concrete scalar (after defaults); lists and structs are returned as vertices."""
        if isinstance(val, Vertex):
            self.evaluate(val)
            if val.is_list or val.is_struct:
                return val
            inner = val.value
            if isinstance(inner, Disj):
                d = inner.default()
                if d is None:
                    raise CueError(
                        f"incomplete value {self.show(inner)}",
                        pos=[pos] if pos else [],
                        incomplete=True,
                    )
                return self.concrete(d, pos, what)
            if is_concrete_scalar(inner):
                return inner
            raise CueError(
                f"incomplete value {self.show(inner)}{what}",
                pos=[pos] if pos else [],
                incomplete=True,
            )
        if isinstance(val, Disj):
            d = val.default()
            if d is None:
                raise CueError(
                    f"incomplete value {self.show(val)}", pos=[pos] if pos else [], incomplete=True
                )
            return self.concrete(d, pos, what)
        if is_concrete_scalar(val):
            return val
        if isinstance(val, Builtin | Package):
            raise CueError(f"cannot use {val!r} as value", pos=[pos] if pos else [])
        raise CueError(
            f"incomplete value {self.show(val)}{what}", pos=[pos] if pos else [], incomplete=True
        )

    def show(self, val: Any) -> str:
        if isinstance(val, Vertex):
            if val.status == DONE and val.err is None:
                if val.is_list:
                    return "[...]"
                if val.is_struct:
                    return "{...}"
                return self.show(val.value)
            return "_"
        if isinstance(val, Disj):
            return " | ".join(("*" if d else "") + self.show(x) for x, d in val.alts)
        return _show(val)

    def interp(self, expr: A.Interp, env: Env | None) -> Any:
        out: list[str] = []
        for p in expr.parts:
            if isinstance(p, str):
                out.append(p)
                continue
            val = self.concrete(self.eval(p, env), p.pos, " in interpolation")
            if isinstance(val, Vertex):
                raise CueError(
                    f"invalid interpolation: cannot use {self.show(val)} as string",
                    pos=[p.pos],
                )
            out.append(interp_str(val))
        s = "".join(out)
        if expr.is_bytes:
            return s.encode("utf-8")
        return s

    def unary(self, expr: A.Unary, env: Env | None) -> Any:
        op = expr.op
        x = self.eval(expr.x, env)
        if op in ("<", "<=", ">", ">=", "!=", "=~", "!~"):
            val = self.concrete(x, expr.x.pos)
            if isinstance(val, Vertex):
                raise CueError(f"invalid operand for bound {op}", pos=[expr.pos])
            b = Bound(op, val, expr.pos)
            return Constraint(b.kinds(), (b,))
        val = self.concrete(x, expr.x.pos)
        if op == "-":
            if type(val) is int:
                return -val
            if type(val) is Decimal:
                return CTX.minus(val)
        elif op == "+":
            if type(val) in (int, Decimal):
                return val
        elif op == "!":
            if type(val) is bool:
                return not val
        raise CueError(
            f"invalid operation {op}{self.show(val)} (operator {op} not defined on {kind_name(kind_of(val))})",
            pos=[expr.pos],
        )

    def binary(self, expr: A.Binary, env: Env | None) -> Any:
        op = expr.op
        if op == "&&" or op == "||":
            a = self.concrete(self.eval(expr.x, env), expr.x.pos)
            if type(a) is not bool:
                raise CueError(
                    f"invalid operands to {op}: {self.show(a)} is not bool", pos=[expr.pos]
                )
            if op == "&&" and not a:
                return False
            if op == "||" and a:
                return True
            b = self.concrete(self.eval(expr.y, env), expr.y.pos)
            if type(b) is not bool:
                raise CueError(
                    f"invalid operands to {op}: {self.show(b)} is not bool", pos=[expr.pos]
                )
            return b
        if (op == "==" or op == "!=") and (type(expr.x) is A.Bottom or type(expr.y) is A.Bottom):
            other = expr.x if type(expr.y) is A.Bottom else expr.y
            bottom = type(other) is A.Bottom or self._is_bottom(other, env)
            return bottom if op == "==" else not bottom
        what = f" in operand to {op}"
        a = self.concrete(self.eval(expr.x, env), expr.x.pos, what)
        b = self.concrete(self.eval(expr.y, env), expr.y.pos, what)
        return self.apply_binary(op, a, b, expr.pos)

    def _is_bottom(self, expr: A.Node, env: Env | None) -> bool:
        """Whether ``expr`` is an error (``x == _|_``): a conflict, or a reference to a field
        that does not exist. A value that is merely not yet concrete is not an error."""
        try:
            val = self.eval(expr, env)
            if isinstance(val, Vertex):
                self.evaluate(val)
                if val.is_struct or val.is_list:
                    return False
                val = val.value
        except CueError as e:
            if e.incomplete and not e.missing:
                raise
            return True
        # as in cue v0.4, a value that is not concrete (a type, a bound, an ambiguous
        # disjunction) counts as an error here
        while isinstance(val, Disj):
            d = val.default()
            if d is None:
                return True
            val = d
        if isinstance(val, Vertex):
            return self._is_bottom(A.Lit(expr.pos, val), None)
        return not is_concrete_scalar(val)

    def apply_binary(self, op: str, a: Any, b: Any, pos: Pos) -> Any:
        ta, tb = type(a), type(b)
        num = (int, Decimal)
        if op in ("==", "!="):
            if isinstance(a, Vertex) or isinstance(b, Vertex):
                from specflow.spec.cue.export import export_value

                ea = export_value(self, a) if isinstance(a, Vertex) else a
                eb = export_value(self, b) if isinstance(b, Vertex) else b
                if (
                    op == "!="
                    and isinstance(ea, list)
                    and isinstance(eb, list)
                    and len(ea) != len(eb)
                ):
                    # CUE v0.4 (the reference) only reports lists of the same length as
                    # different
                    return False
                eq = _deep_eq(ea, eb)
            else:
                eq = scalar_eq(a, b)
            return eq if op == "==" else not eq
        if op in ("<", "<=", ">", ">="):
            if (ta in num and tb in num and ta is not bool and tb is not bool) or (
                ta is tb and ta in (str, bytes)
            ):
                return ordered(op, a, b)
            raise self._bad_operands(op, a, b, pos)
        if op in ("=~", "!~"):
            if ta is str and tb is str:
                bound = Bound(op, b, pos)
                return bound.check(a)
            raise self._bad_operands(op, a, b, pos)
        if ta in num and tb in num:
            try:
                if op == "+":
                    if ta is int and tb is int:
                        return a + b
                    return CTX.add(Decimal(a), Decimal(b))
                if op == "-":
                    if ta is int and tb is int:
                        return a - b
                    return CTX.subtract(Decimal(a), Decimal(b))
                if op == "*":
                    if ta is int and tb is int:
                        return a * b
                    return CTX.multiply(Decimal(a), Decimal(b))
                if op == "/":
                    if b == 0:
                        raise CueError("division by zero", pos=[pos])
                    return CTX.divide(Decimal(a), Decimal(b))
            except ArithmeticError as e:
                raise CueError(f"arithmetic error: {e}", pos=[pos]) from None
        if op == "+":
            if ta is str and tb is str:
                return a + b
            if ta is bytes and tb is bytes:
                return a + b
            if isinstance(a, Vertex) and isinstance(b, Vertex) and a.is_list and b.is_list:
                return self.list_vertex(elems(a) + elems(b))
        if op == "*":
            if ta is int and tb in (str, bytes):
                a, b, ta, tb = b, a, tb, ta
            if ta in (str, bytes) and tb is int:
                if b < 0:
                    raise CueError("negative repeat count", pos=[pos])
                return a * b
            if isinstance(b, Vertex) and ta is int:
                a, b = b, a
                ta, tb = type(a), type(b)
            if isinstance(a, Vertex) and a.is_list and tb is int:
                if b < 0:
                    raise CueError("negative repeat count", pos=[pos])
                return self.list_vertex(elems(a) * b)
        raise self._bad_operands(op, a, b, pos)

    def _bad_operands(self, op: str, a: Any, b: Any, pos: Pos) -> CueError:
        return CueError(
            f"invalid operands {self.show(a)} and {self.show(b)} to '{op}' "
            f"(type {self.kind_str(a)} and {self.kind_str(b)})",
            pos=[pos],
        )

    def kind_str(self, v: Any) -> str:
        if isinstance(v, Vertex):
            return "list" if v.is_list else "struct"
        return kind_name(kind_of(v))

    def call(self, expr: A.Call, env: Env | None) -> Any:
        fn = self.eval(expr.fn, env)
        if not isinstance(fn, Builtin):
            raise CueError(f"cannot call non-function {self.show(fn)}", pos=[expr.pos])
        args = [self.eval(a, env) for a in expr.args]
        if fn.validates is not None and len(args) == fn.validates[0] - 1:
            return self.validator(fn, args, expr)
        try:
            return fn.fn(self, args, expr)
        except CueError as e:
            if not e.pos:
                e.pos.append(expr.pos)
            if not e.msg.startswith(fn.name):
                e.msg = f"error in call to {fn.name}: {e.msg}"
            raise
        except (ArithmeticError, ValueError, OverflowError) as e:
            raise CueError(f"error in call to {fn.name}: {e}", pos=[expr.pos]) from None

    def validator(self, fn: Builtin, args: list[Any], call: A.Call) -> Constraint:
        """``fn`` with its first argument left out, as a constraint."""
        assert fn.validates is not None
        shown = ", ".join(self.show(a) for a in args)

        def test(value: Any) -> bool:
            try:
                ok = fn.fn(self, [value, *args], call)
            except CueError as e:
                if not e.msg.startswith(fn.name):
                    e.msg = f"error in call to {fn.name}: {e.msg}"
                if not e.pos:
                    e.pos.append(call.pos)
                raise
            except (ArithmeticError, ValueError, OverflowError) as e:
                raise CueError(f"error in call to {fn.name}: {e}", pos=[call.pos]) from None
            return ok is True

        b = CallBound(fn.name, shown, fn.validates[1], test, call.pos)
        return Constraint(b.kinds(), (b,))

    def match_pattern(self, pat: Any, label: str) -> bool:
        label = label_text(label)
        if isinstance(pat, Vertex):
            self.evaluate(pat)
            if pat.is_struct or pat.is_list:
                return False
            pat = pat.value
        if pat is TOP:
            return True
        if isinstance(pat, Constraint):
            if not pat.kinds & K_STRING:
                return False
            return all(b.check(label) for b in pat.bounds)
        if isinstance(pat, Disj):
            return any(self.match_pattern(p, label) for p, _ in pat.alts)
        if isinstance(pat, str):
            return pat == label
        return False


class _Mark:
    """In a conjunct's closedness context: the conjunct is declared by (``under`` False) or
    embedded in (``under`` True) the literal ``tok``."""

    __slots__ = ("under", "tok")

    def __init__(self, under: bool, tok: object) -> None:
        self.under = under
        self.tok = tok


class _LetInProgress:
    """The value of a let while it is being evaluated, with the depth of nested vertex
    evaluations it started at."""

    __slots__ = ("depth",)

    def __init__(self, depth: int) -> None:
        self.depth = depth


def _mode(marks: list[tuple[int, bool]], used: set[int]) -> int:
    """0: no default in play, 1: the defaults, 2: not the default (as cue's default modes)."""
    mode = 0
    for i, chose in marks:
        if i in used:
            if not chose:
                return 2
            mode = 1
    return mode


def _ast_key(node: Any) -> Any:
    if node is None or isinstance(node, str | int | bool):
        return node
    if isinstance(node, list | tuple):
        return tuple(_ast_key(x) for x in node)
    if isinstance(node, A.Lit):
        val = node.value
        if is_concrete_scalar(val):
            return ("Lit", type(val).__name__, val)
        return ("Lit", id(val))
    if isinstance(node, A.Ident):
        tgt = node.target
        return ("Ident", node.name, node.ups, node.kind, tgt if isinstance(tgt, str) else id(tgt))
    if isinstance(node, A.Node | A.Label):
        out: list[Any] = [type(node).__name__]
        for cls in type(node).__mro__:
            for slot in getattr(cls, "__slots__", ()):
                if slot in ("pos", "lets", "aliases", "dyn_aliases"):
                    continue
                out.append(_ast_key(getattr(node, slot, None)))
        return tuple(out)
    return ("id", id(node))


def _optional_ref(a: Vertex, pos: Pos) -> CueError:
    return CueError(
        f"cannot reference optional field: {label_text(str(a.label))}",
        pos=[pos],
        incomplete=True,
        missing=True,
    )


def _deep_eq(a: Any, b: Any) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_deep_eq(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_deep_eq(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict | list) or isinstance(b, dict | list):
        return False
    return scalar_eq(a, b)


def _conflict(a: Any, b: Any, pa: Pos | None, pb: Pos | None) -> CueError:
    ka, kb = kind_of(a), kind_of(b)
    msg = f"conflicting values {_show(a)} and {_show(b)}"
    if isinstance(a, Constraint):
        ka = a.kinds
    if isinstance(b, Constraint):
        kb = b.kinds
    if not ka & kb:
        msg += f" (mismatched types {kind_name(ka)} and {kind_name(kb)})"
    return CueError(msg, pos=[p for p in (pa, pb) if p is not None])


def _show(v: Any) -> str:
    if isinstance(v, Constraint):
        return repr(v)
    return fmt_scalar(v)


def unify_scalars(a: Any, b: Any, pa: Pos | None = None, pb: Pos | None = None) -> Any:
    """Unify two non-composite values: TOP, concrete scalars, Constraints."""
    if a is TOP:
        return b
    if b is TOP:
        return a
    ca = isinstance(a, Constraint)
    cb = isinstance(b, Constraint)
    if not ca and not cb:
        if type(a) is type(b) and scalar_eq(a, b):
            return a
        raise _conflict(a, b, pa, pb)
    if ca and cb:
        kinds = a.kinds & b.kinds
        if not kinds:
            raise _conflict(a, b, pa, pb)
        bounds = list(a.bounds)
        for bb in b.bounds:
            if not any(x.same(bb) for x in bounds):
                bounds.append(bb)
        return _simplify(Constraint(kinds, tuple(bounds)), pa, pb)
    first, pfirst, second, psecond = a, pa, b, pb
    if cb:
        a, b = b, a
        pa, pb = pb, pa
    # a is a Constraint, b concrete
    k = kind_of(b)
    if not a.kinds & k:
        raise _conflict(first, second, pfirst, psecond)
    for bound in a.bounds:
        if not bound.check(b):
            raise CueError(
                bound.failure(b), pos=[p for p in (pb, bound.pos) if p is not None]
            )
    return b


def _simplify(c: Constraint, pa: Pos | None, pb: Pos | None) -> Any:
    """Detect empty ranges and collapse ``>=x & <=x`` to x."""
    lo: Any = None
    lo_incl = True
    hi: Any = None
    hi_incl = True
    for b in c.bounds:
        if b.op in (">", ">=") and kind_of(b.value) & K_NUMBER:
            if lo is None or b.value > lo or (b.value == lo and b.op == ">"):
                lo, lo_incl = b.value, b.op == ">="
        elif b.op in ("<", "<=") and kind_of(b.value) & K_NUMBER:
            if hi is None or b.value < hi or (b.value == hi and b.op == "<"):
                hi, hi_incl = b.value, b.op == "<="
    if lo is not None and hi is not None:
        if lo > hi or (lo == hi and not (lo_incl and hi_incl)):
            raise CueError(
                f"conflicting values {c!r} (empty range)",
                pos=[p for p in (pa, pb) if p is not None],
            )
        if lo == hi and c.kinds & K_NUMBER:
            if c.kinds & K_NUMBER == K_INT and type(lo) is Decimal and lo != lo.to_integral_value():
                raise CueError(f"conflicting values {c!r}", pos=[p for p in (pa, pb) if p])
            if all(b.check(lo) for b in c.bounds):
                if c.kinds & K_NUMBER == K_INT and type(lo) is Decimal:
                    return int(lo)
                if c.kinds & K_NUMBER == K_FLOAT and type(lo) is int:
                    return Decimal(lo)
                return lo
    return c
