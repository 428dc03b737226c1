"""Tasks, flows and dependencies."""

from specflow.flow.builtin import concurrent_flow, sequential_flow
from specflow.flow.core import (
    Dependency,
    Flow,
    FlowSchema,
    TaskableOperation,
    flow_schema,
    flow_schema_cls,
    taskable_operation,
    taskable_operation_cls,
)
from specflow.flow.ids import UnhashableArgumentError, task_id
from specflow.flow.task import Task, TransientErrorCondition

__all__ = [
    "Dependency",
    "Flow",
    "FlowSchema",
    "Task",
    "TaskableOperation",
    "TransientErrorCondition",
    "UnhashableArgumentError",
    "concurrent_flow",
    "flow_schema",
    "flow_schema_cls",
    "sequential_flow",
    "task_id",
    "taskable_operation",
    "taskable_operation_cls",
]
