"""specflow: declarative batch jobs from spec files.

A spec names registered operations and flows by ``"@type"``; specflow builds it into flows of
tasks, runs them on this machine or on a SLURM cluster, records every finished task in a
SQLite checkpoint and resumes a stopped run without redoing finished work.
"""

from __future__ import annotations

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
    "flow_schema",
    "flow_schema_cls",
    "get_spec",
    "load_spec",
    "register",
    "sequential_flow",
    "taskable_operation",
    "taskable_operation_cls",
]
