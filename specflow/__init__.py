"""specflow: declarative batch jobs from spec files.

A spec names registered operations and flows by ``"@type"``; specflow builds it into flows of
tasks, runs them on this machine or on a SLURM cluster, records every finished task in a
SQLite checkpoint and resumes a stopped run without redoing finished work.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

from specflow.builder import build, get_spec, register
from specflow.builder.registry import add_loader
from specflow.catalog import load_builtins
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

# built-in types are imported the first time a name is looked up that is not registered
add_loader(load_builtins)

#: public names whose modules load on first use, keeping `import specflow` light
_LAZY = {
    "execute": "specflow.run",
    "RunReport": "specflow.execution.executor",
    "RetryPolicy": "specflow.execution.executor",
    "Event": "specflow.execution.events",
    "EventBus": "specflow.execution.events",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'specflow' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)

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
