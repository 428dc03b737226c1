"""specflow: declarative batch jobs from spec files.

A spec names registered operations and flows by ``"@type"``; specflow builds it into flows of
tasks, runs them on this machine or on a SLURM cluster, records every finished task in a
SQLite checkpoint and resumes a stopped run without redoing finished work.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

from specflow.builder import build, get_spec, register
from specflow.flow import (
    Dependency,
    Flow,
    FlowSchema,
    Task,
    TaskableOperation,
    TransientErrorCondition,
    concurrent_flow,
    flow_schema,
    flow_schema_cls,
    sequential_flow,
    taskable_operation,
    taskable_operation_cls,
)
from specflow.spec import SpecError, load_spec


def _load_builtin_types() -> None:
    from specflow.catalog import load_builtins

    load_builtins()


from specflow.builder.registry import add_loader  # noqa: E402

add_loader(_load_builtin_types)


def __getattr__(name: str) -> Any:
    # the executor and its backends load on first use, keeping `import specflow` light
    if name in ("execute", "RunReport", "RetryPolicy", "Event", "EventBus"):
        if name == "execute":
            from specflow.runs import execute

            return execute
        if name in ("RunReport", "RetryPolicy"):
            from specflow.execution import executor

            return getattr(executor, name)
        from specflow.execution import events

        return getattr(events, name)
    raise AttributeError(f"module 'specflow' has no attribute {name!r}")

__all__ = [
    "Dependency",
    "Flow",
    "FlowSchema",
    "SpecError",
    "Task",
    "TaskableOperation",
    "TransientErrorCondition",
    "__version__",
    "build",
    "concurrent_flow",
    "execute",
    "flow_schema",
    "flow_schema_cls",
    "get_spec",
    "load_spec",
    "register",
    "sequential_flow",
    "taskable_operation",
    "taskable_operation_cls",
]
