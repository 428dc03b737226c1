"""Built-in flows, registered for specs."""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any

from specflow.builder.registry import register
from specflow.flow.core import Dependency, Flow, FlowSchema, flow_schema


def as_flow_item(stage: Any) -> Any:
    """A stage may be a task, a flow, a flow schema (called with no arguments) or a list."""
    if isinstance(stage, FlowSchema):
        return stage()
    if isinstance(stage, (list, tuple)):
        return [as_flow_item(s) for s in stage]
    return stage


@flow_schema
def _sequential(stages: Sequence[Any]) -> Generator[Any, Any, None]:
    for stage in stages:
        yield as_flow_item(stage)
        yield Dependency()


@flow_schema
def _concurrent(stages: Sequence[Any]) -> Generator[Any, Any, None]:
    for stage in stages:
        yield as_flow_item(stage)


@register("sequential_flow")
@register("mazepa.sequential_flow")
def sequential_flow(stages: list[Any]) -> Flow:
    """Run ``stages`` one after another: each waits for the one before it to finish."""
    return Flow(_sequential.fn, (list(stages),), name="sequential_flow")


@register("concurrent_flow")
@register("mazepa.concurrent_flow")
def concurrent_flow(stages: list[Any]) -> Flow:
    """Run ``stages`` side by side."""
    return Flow(_concurrent.fn, (list(stages),), name="concurrent_flow")
