"""The spec's top-level ``execute`` entries: a target plus how to run it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from specflow.builder import register


@dataclass
class ExecutionRequest:
    """A spec's ``{"@type": "execute", "target": ..., <settings>}``: the target and the
    settings the spec gives (the command line overrides them; see ``RunSettings.merge``)."""

    target: Any
    settings: dict[str, Any] = field(default_factory=dict)
    backend_settings: dict[str, Any] = field(default_factory=dict)


def request(target: Any, settings: dict[str, Any],
            backend_settings: dict[str, Any] | None = None) -> ExecutionRequest:
    """The request, its settings checked now (so that a mistake names its spec path)."""
    from specflow.run.settings import RunSettings

    given = {k: v for k, v in settings.items() if v is not None}
    RunSettings.merge(given)
    return ExecutionRequest(
        target, given, {k: v for k, v in (backend_settings or {}).items() if v is not None},
    )


@register("execute")
def execute_spec(
    target: Any,
    backend: str = "local",
    workers: int | None = None,
    keep_going: bool | None = None,
    max_attempts: int | None = None,
    retry_backoff: float | None = None,
    transient_errors: list[Any] | None = None,
    semaphores: dict[str, int] | None = None,
    batch_size: int | None = None,
    worker_tags: list[str] | None = None,
) -> ExecutionRequest:
    """Run ``target`` with these execution settings (command-line flags override them).
    ``worker_tags``: the tags this machine's workers carry (for tasks whose requirements
    name tags; local and inline backends)."""
    return request(target, {
        "backend": backend, "workers": workers, "keep_going": keep_going,
        "max_attempts": max_attempts, "retry_backoff": retry_backoff,
        "transient_errors": transient_errors, "semaphores": semaphores,
        "batch_size": batch_size,
    }, {"worker_tags": worker_tags})


@register("execute_on_slurm", opt_in_args={"setup": "shell"})
def execute_on_slurm(
    target: Any,
    keep_going: bool | None = None,
    max_attempts: int | None = None,
    retry_backoff: float | None = None,
    transient_errors: list[Any] | None = None,
    semaphores: dict[str, int] | None = None,
    partition: str | None = None,
    time_limit: Any = None,
    cpus_per_task: int | None = None,
    mem_gb: float | None = None,
    gres: str | None = None,
    tasks_per_job: int | None = None,
    array_parallelism: int | None = None,
    max_jobs_in_flight: int | None = None,
    setup: list[str] | None = None,
    sbatch_options: dict[str, Any] | None = None,
    worker_types: dict[str, dict[str, Any]] | None = None,
    job_name: str | None = None,
) -> ExecutionRequest:
    """Run ``target`` on a SLURM cluster through submitit. ``worker_types`` maps a worker
    type's name (a task's ``@worker_type``, zetta's ``op_worker_type``) to the job settings
    of its tasks (``partition``, ``cpus_per_task``, ``mem_gb``, ``gres``, ``constraint``,
    ``sbatch_options``, ``setup``); a worker type not listed is taken as a partition."""
    return request(target, {
        "backend": "slurm", "keep_going": keep_going, "max_attempts": max_attempts,
        "retry_backoff": retry_backoff, "transient_errors": transient_errors,
        "semaphores": semaphores,
    }, {
        "partition": partition, "time_limit": time_limit, "cpus_per_task": cpus_per_task,
        "mem_gb": mem_gb, "gres": gres, "tasks_per_job": tasks_per_job,
        "array_parallelism": array_parallelism, "max_jobs_in_flight": max_jobs_in_flight,
        "setup": setup, "sbatch_options": sbatch_options, "worker_types": worker_types,
        "job_name": job_name,
    })


@register("execute_on_dask")
def execute_on_dask(
    target: Any,
    address: str | None = None,
    workers: int | None = None,
    keep_going: bool | None = None,
    max_attempts: int | None = None,
    retry_backoff: float | None = None,
    transient_errors: list[Any] | None = None,
    semaphores: dict[str, int] | None = None,
    resources: dict[str, float] | None = None,
    max_batch: int | None = None,
    connect_timeout: float | None = None,
) -> ExecutionRequest:
    """Run ``target`` on dask.distributed: an embedded cluster of ``workers`` processes on
    this machine, or the existing scheduler at ``address`` (``tcp://HOST:PORT``)."""
    return request(target, {
        "backend": "dask", "workers": workers, "keep_going": keep_going,
        "max_attempts": max_attempts, "retry_backoff": retry_backoff,
        "transient_errors": transient_errors, "semaphores": semaphores,
    }, {"address": address, "resources": resources, "max_batch": max_batch,
        "connect_timeout": connect_timeout})
