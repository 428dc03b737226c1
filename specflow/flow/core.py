"""Operations, flows and dependencies: the model a user writes jobs in.

* ``@taskable_operation`` / ``@taskable_operation_cls`` turn a function or a class into an
  operation: calling it still runs it directly, ``op.make_task(**kwargs)`` makes a
  :class:`Task` whose id is content-addressed.
* ``@flow_schema`` / ``@flow_schema_cls`` turn a generator function or a class with a
  ``flow`` generator method into a flow schema; calling it gives a lazy :class:`Flow`.
* A flow yields tasks, flows, lists of those, and :class:`Dependency` markers;
  ``value = yield Dependency(task)`` gives the flow the task's return value.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import itertools
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from specflow.builder.provenance import get_spec
from specflow.flow.ids import IdPrefix, task_id
from specflow.flow.task import Requirements, Task, TransientErrorCondition, with_requirements

F = TypeVar("F", bound=Callable[..., Any])
C = TypeVar("C", bound=type)

FlowItem = Any  # Task | Flow | Dependency | list of those


def _as_conditions(
    transient: Iterable[TransientErrorCondition | str | tuple[str, str]] | None,
) -> tuple[TransientErrorCondition, ...]:
    out: list[TransientErrorCondition] = []
    for c in transient or ():
        if isinstance(c, TransientErrorCondition):
            out.append(c)
        elif isinstance(c, str):
            out.append(TransientErrorCondition(c))
        else:
            out.append(TransientErrorCondition(c[0], c[1]))
    return tuple(out)


def _lookup_attr(module: str, qualname: str) -> Any:
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


@dataclasses.dataclass(frozen=True)
class TaskOptions:
    """How the tasks of one operation run: their name in progress and the checkpoint,
    priority, runtime limit, attempts, and which errors are transient."""

    operation_name: str | None = None
    priority: int = 0
    runtime_limit_sec: float | None = None
    max_attempts: int | None = None
    transient: tuple[TransientErrorCondition, ...] = ()
    #: ``summary(**kwargs) -> str``: a short description of one task's arguments (see
    #: :mod:`specflow.flow.summary`); without it the arguments are listed, cut short
    summary: Callable[..., str] | None = None
    #: names of the arguments that are outputs (layers or paths the task writes); a task
    #: reused from an earlier run needs them to still exist
    outputs: tuple[str, ...] = ()
    #: the value depends only on the arguments and the task writes nothing: its value may
    #: be cached across runs
    pure: bool = False
    #: what a worker needs to run the tasks, and which kind of worker runs them
    requirements: Requirements | None = None
    worker_type: str | None = None

    @classmethod
    def of(cls, **options: Any) -> TaskOptions:
        options["transient"] = _as_conditions(options.get("transient"))
        options["outputs"] = tuple(options.get("outputs") or ())
        if options.get("requirements") is not None:
            options["requirements"] = Requirements.of(options["requirements"])
        return cls(**options)

    def place(self, task: Task) -> Task:
        """``task`` with these options' requirements and worker type, if any."""
        if self.requirements is None and self.worker_type is None:
            return task
        return with_requirements(task, self.requirements, self.worker_type)


class TaskableOperation:
    """A function that can also be turned into tasks.

    ``dry_run`` (a function of the task's arguments returning what the task would return,
    without side effects) and ``pure`` (the function itself has no side effects) tell a dry
    run how to get a task's value without running it (see :mod:`specflow.flow.dry`).
    """

    def __init__(self, fn: Callable[..., Any], options: TaskOptions | None = None, *,
                 dry_run: Callable[..., Any] | None = None, pure: bool = False,
                 prefetch: Callable[..., None] | None = None,
                 **option_values: Any) -> None:
        self.fn = fn
        #: ``prefetch(**kwargs)`` starts the reads a task of these arguments will make; a
        #: runner calls it for the next task while the current one runs (its errors are
        #: ignored: the task itself meets them)
        self.prefetch = prefetch
        self.options = options or TaskOptions.of(**option_values)
        functools.update_wrapper(self, fn)
        self._identity_cache: Any = None
        self.dry_run = dry_run
        self.pure = pure or self.options.pure
        if pure and not self.options.pure:
            self.options = dataclasses.replace(self.options, pure=True)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def summarise_args(self, **kwargs: Any) -> str | None:
        """This operation's own summary of a task's arguments (None: the generic one)."""
        summary = self.options.summary
        return summary(**kwargs) if summary is not None else None

    @property
    def name(self) -> str:
        return str(
            self.options.operation_name
            or self.__dict__.get("__specflow_type__")
            or getattr(self.fn, "__name__", "operation")
        )

    def _identity(self) -> Any:
        if self._identity_cache is None:
            self._identity_cache = [
                f"{self.fn.__module__}.{self.fn.__qualname__}",
                getattr(self, "__specflow_type__", None),
            ]
        return self._identity_cache

    def make_task(self, **kwargs: Any) -> Task:
        name = self.name
        o = self.options
        return o.place(Task(
            fn=self,
            kwargs=kwargs,
            id=task_id(name, self._identity(), kwargs),
            operation=name,
            priority=o.priority,
            runtime_limit_sec=o.runtime_limit_sec,
            max_attempts=o.max_attempts,
            transient=o.transient,
        ))

    def task_maker(self, **common: Any) -> TaskMaker:
        """A maker of many tasks of this operation that share the arguments ``common``: they
        are hashed once, and each ``make_task(**own)`` hashes only its own arguments. The
        tasks are those (and have the ids) ``make_task(**common, **own)`` gives."""
        return TaskMaker(self, common)

    def with_options(self, **options: Any) -> TaskableOperation:
        """A copy with other task settings (``priority``, ``runtime_limit_sec``, ...)."""
        if "transient" in options:
            options["transient"] = _as_conditions(options["transient"])
        if options.get("requirements") is not None:
            options["requirements"] = Requirements.of(options["requirements"])
        return TaskableOperation(self.fn, dataclasses.replace(self.options, **options),
                                 dry_run=self.dry_run, pure=self.pure, prefetch=self.prefetch)

    def __reduce__(self) -> Any:
        module = getattr(self.fn, "__module__", None)
        qualname = getattr(self.fn, "__qualname__", "")
        fn_ref: Any = self.fn
        if module and "<locals>" not in qualname:
            try:
                found = _lookup_attr(module, qualname)
            except (ImportError, AttributeError):
                found = None
            if found is self:
                return (_lookup_attr, (module, qualname))
            if isinstance(found, TaskableOperation) and found.fn is self.fn:
                # a copy with other options: the function travels as its module's wrapper
                fn_ref = found
        if self.prefetch is not None:
            return (_rebuild_operation, (fn_ref, self.options, self.prefetch))
        return (_rebuild_operation, (fn_ref, self.options))

    def __repr__(self) -> str:
        return f"<operation {self.name}>"


class TaskMaker:
    """Tasks of one operation sharing most of their arguments (see
    :meth:`TaskableOperation.task_maker`)."""

    __slots__ = ("op", "common", "_prefix", "_name")

    def __init__(self, op: TaskableOperation, common: dict[str, Any]) -> None:
        self.op = op
        self.common = dict(common)
        self._name = op.name
        self._prefix = IdPrefix(self._name, op._identity(), self.common)

    def __call__(self, **own: Any) -> Task:
        return self.make_task(**own)

    def make_task(self, **own: Any) -> Task:
        twice = self.common.keys() & own.keys()
        if twice:
            raise TypeError(f"argument(s) given twice: {', '.join(sorted(twice))}")
        o = self.op.options
        return o.place(Task(
            fn=self.op,
            kwargs={**self.common, **own},
            id=self._prefix.task_id(own),
            operation=self._name,
            priority=o.priority,
            runtime_limit_sec=o.runtime_limit_sec,
            max_attempts=o.max_attempts,
            transient=o.transient,
        ))


def _rebuild_operation(fn: Callable[..., Any], options: TaskOptions,
                       prefetch: Callable[..., None] | None = None) -> TaskableOperation:
    if isinstance(fn, TaskableOperation):
        fn = fn.fn
    return TaskableOperation(fn, options, prefetch=prefetch)


def taskable_operation(
    fn: Callable[..., Any] | None = None,
    *,
    operation_name: str | None = None,
    priority: int = 0,
    runtime_limit_sec: float | None = None,
    max_attempts: int | None = None,
    transient: Iterable[TransientErrorCondition | str | tuple[str, str]] | None = None,
    dry_run: Callable[..., Any] | None = None,
    pure: bool = False,
    summary: Callable[..., str] | None = None,
    outputs: Iterable[str] = (),
    requirements: Requirements | Mapping[str, Any] | None = None,
    worker_type: str | None = None,
) -> Any:
    """Make ``fn`` an operation (usable bare or with options).

    ``pure=True`` says ``fn`` has no side effects and its value depends only on its
    arguments: a dry run calls it for its value, and its values are cached across runs.
    ``dry_run=g`` gives a side-effect-free ``g`` taking the same arguments that returns what
    ``fn`` would return (for dry runs); without either, a dry run does not know the task's
    value. ``summary(**kwargs)`` gives a short description of a task's arguments for failure
    lines and reports. ``outputs`` names the arguments it writes to (a reused task needs them
    to still exist). ``requirements`` (cpus, mem_gb, gpus, platform, tags,
    timeout_seconds, max_retries) and ``worker_type`` say where its tasks may run."""
    options = TaskOptions.of(
        operation_name=operation_name, priority=priority, runtime_limit_sec=runtime_limit_sec,
        max_attempts=max_attempts, transient=transient, summary=summary, outputs=outputs,
        pure=pure, requirements=requirements, worker_type=worker_type,
    )

    def deco(f: Callable[..., Any]) -> TaskableOperation:
        return TaskableOperation(f, options, dry_run=dry_run, pure=pure)

    return deco(fn) if fn is not None else deco


def _cls_make_task(self: Any, **kwargs: Any) -> Task:
    cls = type(self)
    name = (
        getattr(cls, "__specflow_operation_name__", None)
        or getattr(cls, "__specflow_type__", None)
        or cls.__name__
    )
    identity = [f"{cls.__module__}.{cls.__qualname__}", get_spec(self)]
    if identity[1] is None:
        identity[1] = _object_state(self)
    return Task(
        fn=self,
        kwargs=kwargs,
        id=task_id(name, identity, kwargs),
        operation=name,
        priority=getattr(self, "priority", None) or cls.__specflow_task_priority__,
        runtime_limit_sec=cls.__specflow_runtime_limit_sec__,
        max_attempts=cls.__specflow_max_attempts__,
        transient=cls.__specflow_transient__,
    )


def _object_state(obj: Any) -> Any:
    state = getattr(obj, "__dict__", None)
    return dict(state) if isinstance(state, dict) else repr(obj)


def taskable_operation_cls(
    cls: C | None = None,
    *,
    operation_name: str | None = None,
    priority: int = 0,
    runtime_limit_sec: float | None = None,
    max_attempts: int | None = None,
    transient: Iterable[TransientErrorCondition | str | tuple[str, str]] | None = None,
    dry_run: Callable[..., Any] | None = None,
    pure: bool = False,
) -> Any:
    """Make a class with ``__call__`` an operation: its instances gain ``make_task``.
    ``pure`` and ``dry_run`` as for :func:`taskable_operation` (``dry_run`` is called with the
    instance first, like a method)."""

    def deco(c: C) -> C:
        if not callable(getattr(c, "__call__", None)):  # noqa: B004
            raise TypeError(f"{c.__qualname__} needs a __call__ method to be an operation")
        c.__specflow_operation_name__ = operation_name  # type: ignore[attr-defined]
        c.__specflow_task_priority__ = priority  # type: ignore[attr-defined]
        c.__specflow_runtime_limit_sec__ = runtime_limit_sec  # type: ignore[attr-defined]
        c.__specflow_max_attempts__ = max_attempts  # type: ignore[attr-defined]
        c.__specflow_transient__ = _as_conditions(transient)  # type: ignore[attr-defined]
        c.__specflow_dry_run__ = dry_run  # type: ignore[attr-defined]
        c.__specflow_pure__ = pure  # type: ignore[attr-defined]
        c.make_task = _cls_make_task  # type: ignore[attr-defined]
        return c

    return deco(cls) if cls is not None else deco


def dry_behaviour(fn: Any) -> tuple[Callable[..., Any] | None, bool]:
    """How a dry run gets the value of a task whose ``fn`` this is: its dry-value function
    (bound to the instance for class operations) and whether ``fn`` is pure."""
    if isinstance(fn, TaskableOperation):
        return fn.dry_run, fn.pure
    cls = type(fn)
    dry = getattr(cls, "__specflow_dry_run__", None)
    pure = bool(getattr(cls, "__specflow_pure__", False))
    if dry is not None:
        return functools.partial(dry, fn), pure
    return None, pure


class Dependency:
    """``yield Dependency()`` waits for everything the flow yielded so far;
    ``yield Dependency(x)`` waits for ``x`` (a task, a flow, or a list of them) only."""

    __slots__ = ("target",)

    def __init__(self, target: Any = None) -> None:
        self.target = target

    def __repr__(self) -> str:
        return f"Dependency({self.target!r})" if self.target is not None else "Dependency()"


_flow_counter = itertools.count()


class Flow:
    """A lazy flow: the generator is created when the executor first advances it.

    ``expected`` declares how many tasks of each operation the flow will yield, where it
    knows (a subchunkable flow knows its chunks): progress then shows totals and ETAs.
    """

    __slots__ = ("fn", "args", "kwargs", "name", "seq", "expected", "placement")

    def __init__(
        self,
        fn: Callable[..., Generator[Any, Any, Any]],
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
        name: str | None = None,
        expected: Mapping[str, int] | None = None,
    ) -> None:
        self.fn = fn
        self.args = tuple(args)
        self.kwargs = kwargs or {}
        self.name: str = name or str(getattr(fn, "__name__", "flow"))
        self.seq = next(_flow_counter)
        self.expected: dict[str, int] = dict(expected) if expected else {}
        #: requirements and worker type for the tasks under this flow that state none
        self.placement: tuple[Requirements | None, str | None] | None = None

    def expect(self, operation: str, count: int) -> Flow:
        """Declare that this flow yields ``count`` tasks of ``operation`` (adds up)."""
        self.expected[operation] = self.expected.get(operation, 0) + int(count)
        return self

    def generator(self) -> Generator[Any, Any, Any]:
        gen = self.fn(*self.args, **self.kwargs)
        if not hasattr(gen, "send"):
            raise TypeError(
                f"flow {self.name!r} did not return a generator (use `yield` to emit tasks)"
            )
        return gen

    def __repr__(self) -> str:
        return f"Flow({self.name})"


class FlowSchema:
    """A generator function that makes flows: ``schema(*args, **kwargs) -> Flow``."""

    def __init__(self, fn: Callable[..., Generator[Any, Any, Any]], name: str | None = None) -> None:
        self.fn = fn
        self.flow_name = name or getattr(fn, "__name__", "flow")
        functools.update_wrapper(self, fn)

    def __call__(self, *args: Any, **kwargs: Any) -> Flow:
        return Flow(self.fn, args, kwargs, name=getattr(self, "__specflow_type__", None) or self.flow_name)

    def __reduce__(self) -> Any:
        return (_lookup_attr, (self.fn.__module__, self.fn.__qualname__))

    def __repr__(self) -> str:
        return f"<flow schema {self.flow_name}>"


def flow_schema(fn: Callable[..., Generator[Any, Any, Any]] | None = None, *, name: str | None = None) -> Any:
    """Make a generator function a flow schema (usable bare or with ``name=``)."""

    def deco(f: Callable[..., Generator[Any, Any, Any]]) -> FlowSchema:
        return FlowSchema(f, name)

    return deco(fn) if fn is not None else deco


def _cls_flow_call(self: Any, *args: Any, **kwargs: Any) -> Flow:
    name = getattr(type(self), "__specflow_type__", None) or type(self).__name__
    return Flow(self.flow, args, kwargs, name=name)


def flow_schema_cls(cls: C) -> C:
    """Make a class with a ``flow(self, ...)`` generator method a flow schema: calling an
    instance gives a :class:`Flow`."""
    if not callable(getattr(cls, "flow", None)):
        raise TypeError(f"{cls.__qualname__} needs a `flow` generator method to be a flow schema")
    cls.__call__ = _cls_flow_call  # type: ignore[method-assign]
    return cls
