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
from collections.abc import Callable, Generator, Iterable, Sequence
from typing import Any, TypeVar

from specflow.builder.provenance import get_spec
from specflow.flow.ids import IdPrefix, task_id
from specflow.flow.task import Task, TransientErrorCondition

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

    @classmethod
    def of(cls, **options: Any) -> TaskOptions:
        options["transient"] = _as_conditions(options.get("transient"))
        return cls(**options)


class TaskableOperation:
    """A function that can also be turned into tasks."""

    def __init__(self, fn: Callable[..., Any], options: TaskOptions | None = None,
                 **option_values: Any) -> None:
        self.fn = fn
        self.options = options or TaskOptions.of(**option_values)
        functools.update_wrapper(self, fn)
        self._identity_cache: Any = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

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
        return Task(
            fn=self,
            kwargs=kwargs,
            id=task_id(name, self._identity(), kwargs),
            operation=name,
            priority=o.priority,
            runtime_limit_sec=o.runtime_limit_sec,
            max_attempts=o.max_attempts,
            transient=o.transient,
        )

    def task_maker(self, **common: Any) -> TaskMaker:
        """A maker of many tasks of this operation that share the arguments ``common``: they
        are hashed once, and each ``make_task(**own)`` hashes only its own arguments. The
        tasks are those (and have the ids) ``make_task(**common, **own)`` gives."""
        return TaskMaker(self, common)

    def with_options(self, **options: Any) -> TaskableOperation:
        """A copy with other task settings (``priority``, ``runtime_limit_sec``, ...)."""
        if "transient" in options:
            options["transient"] = _as_conditions(options["transient"])
        return TaskableOperation(self.fn, dataclasses.replace(self.options, **options))

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

    def make_task(self, **own: Any) -> Task:
        o = self.op.options
        return Task(
            fn=self.op,
            kwargs={**self.common, **own},
            id=self._prefix.task_id(own),
            operation=self._name,
            priority=o.priority,
            runtime_limit_sec=o.runtime_limit_sec,
            max_attempts=o.max_attempts,
            transient=o.transient,
        )


def _rebuild_operation(fn: Callable[..., Any], options: TaskOptions) -> TaskableOperation:
    if isinstance(fn, TaskableOperation):
        fn = fn.fn
    return TaskableOperation(fn, options)


def taskable_operation(
    fn: Callable[..., Any] | None = None,
    *,
    operation_name: str | None = None,
    priority: int = 0,
    runtime_limit_sec: float | None = None,
    max_attempts: int | None = None,
    transient: Iterable[TransientErrorCondition | str | tuple[str, str]] | None = None,
) -> Any:
    """Make ``fn`` an operation (usable bare or with options)."""
    options = TaskOptions.of(
        operation_name=operation_name, priority=priority, runtime_limit_sec=runtime_limit_sec,
        max_attempts=max_attempts, transient=transient,
    )

    def deco(f: Callable[..., Any]) -> TaskableOperation:
        return TaskableOperation(f, options)

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
) -> Any:
    """Make a class with ``__call__`` an operation: its instances gain ``make_task``."""

    def deco(c: C) -> C:
        if not callable(getattr(c, "__call__", None)):  # noqa: B004
            raise TypeError(f"{c.__qualname__} needs a __call__ method to be an operation")
        c.__specflow_operation_name__ = operation_name  # type: ignore[attr-defined]
        c.__specflow_task_priority__ = priority  # type: ignore[attr-defined]
        c.__specflow_runtime_limit_sec__ = runtime_limit_sec  # type: ignore[attr-defined]
        c.__specflow_max_attempts__ = max_attempts  # type: ignore[attr-defined]
        c.__specflow_transient__ = _as_conditions(transient)  # type: ignore[attr-defined]
        c.make_task = _cls_make_task  # type: ignore[attr-defined]
        return c

    return deco(cls) if cls is not None else deco


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
    """A lazy flow: the generator is created when the executor first advances it."""

    __slots__ = ("fn", "args", "kwargs", "name", "seq")

    def __init__(
        self,
        fn: Callable[..., Generator[Any, Any, Any]],
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
        name: str | None = None,
    ) -> None:
        self.fn = fn
        self.args = tuple(args)
        self.kwargs = kwargs or {}
        self.name: str = name or str(getattr(fn, "__name__", "flow"))
        self.seq = next(_flow_counter)

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
