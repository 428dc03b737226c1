"""zetta_utils' ways of starting a run, as spec types: ``mazepa.execute``,
``mazepa.execute_locally``, ``mazepa.execute_on_slurm`` and ``mazepa.execute_on_gcp_with_sqs``.

Each builds the same :class:`~specflow.run.entries.ExecutionRequest` as specflow's own ``execute``,
with zetta's parameter names mapped onto specflow's settings. Parameters that have no
counterpart are accepted with the meaning stated in :data:`ACCEPTED`; when a spec sets one to
something other than its default, the build says on stderr that it had no effect. A
top-level list of executions runs them one after another (:func:`combine_executions`).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from typing import Any

from specflow.builder import register
from specflow.run.entries import ExecutionRequest
from specflow.spec import SpecError

#: zetta parameters specflow accepts without acting on them, and why
ACCEPTED: dict[str, str] = {
    "batch_gap_sleep_sec": "specflow submits tasks as soon as workers are free, without pauses",
    "do_dryrun_estimation": "specflow does not count tasks before running; "
                            "`specflow run --dry-run` counts them exactly",
    "show_progress": "progress follows the command line (--progress/--no-progress)",
    "checkpoint": "specflow records every run in its own checkpoint (the run dir's "
                  "checkpoint.db) and resumes with `specflow resume`; a zetta checkpoint file "
                  "is not read",
    "checkpoint_interval_sec": "specflow commits finished tasks to its checkpoint as they "
                               "finish, in batches",
    "raise_on_failed_checkpoint": "specflow's checkpoint is a local SQLite file that a run "
                                  "cannot continue without",
    "write_progress_summary": "`specflow status` shows a run's progress at any time",
    "require_interrupt_confirm": "Ctrl-C stops the run; `specflow resume` continues it",
    "execution_id": "the run id is the run dir's name",
    "queues_dir": "specflow's local backend uses no queue files",
    "suppress_worker_logs": "worker output goes to the run's log",
    "resource_monitor_interval": "specflow does not monitor resources",
    "message_queue": "specflow's SLURM backend hands work to jobs without a message queue",
    "extra_ctx_managers": "not expressible in a spec",
    "task_queue": "specflow schedules tasks itself",
    "outcome_queue": "specflow schedules tasks itself",
    "state_constructor": "specflow keeps the run's state itself",
}

_DEFAULTS: dict[str, Any] = {
    "batch_gap_sleep_sec": 0.5, "do_dryrun_estimation": True, "show_progress": True,
    "checkpoint": None, "checkpoint_interval_sec": None, "raise_on_failed_checkpoint": True,
    "write_progress_summary": False, "require_interrupt_confirm": True, "execution_id": None,
    "queues_dir": None, "suppress_worker_logs": True, "resource_monitor_interval": None,
    "message_queue": "sqs", "extra_ctx_managers": (), "task_queue": None,
    "outcome_queue": None, "state_constructor": None,
}


def _note(entry: str, given: Mapping[str, Any], unused: Mapping[str, str] | None = None) -> None:
    """Say on stderr which given settings had no effect."""
    lines = []
    for k, v in given.items():
        if k in ACCEPTED and v != _DEFAULTS.get(k) and not (v in ((), []) and
                                                           _DEFAULTS.get(k) == ()):
            lines.append(f"  {k}: no effect ({ACCEPTED[k]})")
    for k, why in (unused or {}).items():
        lines.append(f"  {k}: not applied ({why})")
    if lines:
        print(f"{entry}:\n" + "\n".join(lines), file=sys.stderr)


def _queues(entry: str, task_queue: Any, outcome_queue: Any, state_constructor: Any) -> None:
    for name, v in (("task_queue", task_queue), ("outcome_queue", outcome_queue),
                    ("state_constructor", state_constructor)):
        if v is not None:
            raise SpecError(f"{entry}: {name} is not supported ({ACCEPTED[name]}); remove it",
                            path=name)


def _request(target: Any, backend: str, settings: dict[str, Any],
             backend_settings: dict[str, Any] | None = None) -> ExecutionRequest:
    s = {k: v for k, v in settings.items() if v is not None}
    s["backend"] = backend
    return ExecutionRequest(target, s, dict(backend_settings or {}))


@register("mazepa.execute")
def mazepa_execute(
    target: Any,
    task_queue: Any = None,
    outcome_queue: Any = None,
    max_batch_len: int = 1000,
    batch_gap_sleep_sec: float = 0.5,
    state_constructor: Any = None,
    execution_id: str | None = None,
    raise_on_failed_task: bool = True,
    do_dryrun_estimation: bool = True,
    show_progress: bool = True,
    checkpoint: str | None = None,
    checkpoint_interval_sec: float | None = 150,
    raise_on_failed_checkpoint: bool = True,
    write_progress_summary: bool = False,
    require_interrupt_confirm: bool = True,
) -> ExecutionRequest:
    """zetta's ``mazepa.execute``: run ``target`` on this machine (specflow's local backend,
    or the one named on the command line). ``max_batch_len`` is the batch size;
    ``raise_on_failed_task: false`` keeps going past failed tasks (skipping only what depends
    on them). The other parameters are accepted (see :data:`ACCEPTED`)."""
    _queues("mazepa.execute", task_queue, outcome_queue, state_constructor)
    _note("mazepa.execute", {
        "batch_gap_sleep_sec": batch_gap_sleep_sec, "execution_id": execution_id,
        "do_dryrun_estimation": do_dryrun_estimation, "show_progress": show_progress,
        "checkpoint": checkpoint, "raise_on_failed_checkpoint": raise_on_failed_checkpoint,
        "write_progress_summary": write_progress_summary,
        "require_interrupt_confirm": require_interrupt_confirm,
    })
    return _request(target, "local", {"batch_size": max_batch_len,
                                      "keep_going": not raise_on_failed_task})


@register("mazepa.execute_locally")
def execute_locally(
    target: Any,
    max_batch_len: int = 1000,
    batch_gap_sleep_sec: float = 0.5,
    state_constructor: Any = None,
    execution_id: str | None = None,
    raise_on_failed_task: bool = True,
    do_dryrun_estimation: bool = True,
    show_progress: bool = True,
    checkpoint: str | None = None,
    queues_dir: str | None = None,
    checkpoint_interval_sec: float | None = 150,
    raise_on_failed_checkpoint: bool = True,
    num_procs: int = 1,
    semaphores_spec: dict[str, int] | None = None,
    debug: bool = False,
    write_progress_summary: bool = False,
    require_interrupt_confirm: bool = True,
    suppress_worker_logs: bool = True,
    resource_monitor_interval: float | None = 1.0,
) -> ExecutionRequest:
    """zetta's ``mazepa.execute_locally``: ``num_procs`` worker processes (specflow's local
    backend), ``semaphores_spec`` bounds the ``read``/``write``/``cpu``/``cuda`` semaphores,
    ``debug: true`` runs in this process (the inline backend)."""
    _queues("mazepa.execute_locally", None, None, state_constructor)
    _note("mazepa.execute_locally", {
        "batch_gap_sleep_sec": batch_gap_sleep_sec, "execution_id": execution_id,
        "do_dryrun_estimation": do_dryrun_estimation, "show_progress": show_progress,
        "checkpoint": checkpoint, "queues_dir": queues_dir,
        "raise_on_failed_checkpoint": raise_on_failed_checkpoint,
        "write_progress_summary": write_progress_summary,
        "require_interrupt_confirm": require_interrupt_confirm,
        "suppress_worker_logs": suppress_worker_logs,
    })
    return _local(target, num_procs, semaphores_spec, debug, max_batch_len,
                  raise_on_failed_task)


def _local(target: Any, num_procs: int, semaphores_spec: dict[str, int] | None, debug: bool,
           max_batch_len: int, raise_on_failed_task: bool) -> ExecutionRequest:
    if num_procs < 1:
        raise SpecError(f"num_procs must be at least 1, got {num_procs}", path="num_procs")
    return _request(target, "inline" if debug else "local", {
        "workers": None if debug else num_procs, "semaphores": semaphores_spec or None,
        "batch_size": max_batch_len, "keep_going": not raise_on_failed_task,
    })


_DHMS = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")


def slurm_minutes(text: str) -> int:
    """A SLURM time (``D-H:M:S``, ``H:M:S``, ``M``, ``D-H`` ...) in whole minutes (rounded
    up)."""
    m = _DHMS.match(str(text).strip())
    if not m:
        raise SpecError(f"worker_resources.time: cannot read {text!r} (use D-HH:MM:SS)",
                        path="worker_resources.time")
    days, a, b, c = m.groups()
    parts = [int(x) for x in (a, b, c) if x is not None]
    if days is not None:  # D-H, D-H:M, D-H:M:S
        h, mi, s = (parts + [0, 0])[:3]
        seconds = ((int(days) * 24 + h) * 60 + mi) * 60 + s
    elif len(parts) == 1:  # M
        seconds = parts[0] * 60
    elif len(parts) == 2:  # M:S
        seconds = parts[0] * 60 + parts[1]
    else:  # H:M:S
        seconds = (parts[0] * 60 + parts[1]) * 60 + parts[2]
    return max(1, -(-seconds // 60))


def _mem_per_cpu(text: Any, cpus: int) -> str:
    """zetta's ``mem_per_cpu`` (``"4G"``, ``"500M"``, a number of MB) as the memory of a job."""
    m = re.match(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)B?\s*$", str(text), re.IGNORECASE)
    if not m:
        raise SpecError(f"worker_resources.mem_per_cpu: cannot read {text!r} (e.g. 4G)",
                        path="worker_resources.mem_per_cpu")
    mb = float(m.group(1)) * {"": 1, "K": 1 / 1024, "M": 1, "G": 1024, "T": 1024 ** 2}[
        m.group(2).upper()]
    return f"{max(1, round(mb * max(1, cpus)))}M"


_RESOURCE_KEYS = ("cpus_per_task", "mem_per_cpu", "gres", "array", "time", "partition")


def slurm_settings(worker_replicas: int, worker_resources: Mapping[str, Any],
                   init_command: str) -> dict[str, Any]:
    """zetta's SLURM worker settings as specflow's SLURM backend settings."""
    unknown = sorted(set(worker_resources) - set(_RESOURCE_KEYS))
    if unknown:
        raise SpecError(f"worker_resources: unknown {', '.join(unknown)}; expected "
                        f"{', '.join(_RESOURCE_KEYS)}", path="worker_resources")
    if worker_replicas < 1:
        raise SpecError(f"worker_replicas must be at least 1, got {worker_replicas}",
                        path="worker_replicas")
    out: dict[str, Any] = {"max_jobs_in_flight": int(worker_replicas)}
    cpus = int(worker_resources.get("cpus_per_task", 1))
    if "cpus_per_task" in worker_resources:
        out["cpus_per_task"] = cpus
    if worker_resources.get("mem_per_cpu") is not None:
        out["mem"] = _mem_per_cpu(worker_resources["mem_per_cpu"], cpus)
    for k in ("gres", "partition"):
        if worker_resources.get(k) is not None:
            out[k] = worker_resources[k]
    out["time_limit"] = slurm_minutes(str(worker_resources.get("time", "6-0:0:0")))
    if worker_resources.get("array") is not None:
        out["array_parallelism"] = _array_parallelism(worker_resources["array"])
    if init_command.strip():
        out["setup"] = [init_command]  # as execute_on_slurm's setup: run before the worker
    return out


def _array_parallelism(array: Any) -> int:
    """The ``%N`` limit of a SLURM array spec (``"0-99%10"``), or its size."""
    text = str(array)
    if "%" in text:
        return max(1, int(text.rsplit("%", 1)[1]))
    m = re.match(r"^(\d+)-(\d+)$", text)
    if m:
        return int(m.group(2)) - int(m.group(1)) + 1
    return max(1, int(text)) if text.isdigit() else 1


@register("mazepa.execute_on_slurm", opt_in_args={"init_command": "shell"})
def execute_on_slurm(
    target: Any,
    worker_replicas: int,
    worker_resources: dict[str, Any],
    init_command: str = "",
    max_batch_len: int = 10000,
    batch_gap_sleep_sec: float = 0.5,
    extra_ctx_managers: list[Any] | None = None,
    show_progress: bool = True,
    do_dryrun_estimation: bool = True,
    local_test: bool = False,
    debug: bool = False,
    checkpoint: str | None = None,
    checkpoint_interval_sec: float = 300.0,
    raise_on_failed_checkpoint: bool = True,
    num_procs: int = 1,
    semaphores_spec: dict[str, int] | None = None,
    message_queue: str = "sqs",
) -> ExecutionRequest:
    """zetta's ``mazepa.execute_on_slurm`` on specflow's SLURM backend: ``worker_replicas``
    bounds the jobs running at once (``max_jobs_in_flight``); ``worker_resources``
    (``cpus_per_task``, ``mem_per_cpu``, ``gres``, ``time``, ``partition``, ``array``) become
    the jobs' requests (memory per job = ``mem_per_cpu`` x ``cpus_per_task``);
    ``init_command`` runs before the worker in each job (as the SLURM backend's ``setup``);
    each job runs one worker process (``num_procs`` is not applied). ``local_test: true``
    runs on this machine with ``num_procs`` processes instead (``debug: true``: in this
    process)."""
    unused = {} if local_test or num_procs <= 1 else {
        "num_procs": "each SLURM job runs one worker process; ask for more jobs with "
                     "worker_replicas"}
    _note("mazepa.execute_on_slurm", {
        "batch_gap_sleep_sec": batch_gap_sleep_sec, "show_progress": show_progress,
        "do_dryrun_estimation": do_dryrun_estimation, "checkpoint": checkpoint,
        "raise_on_failed_checkpoint": raise_on_failed_checkpoint, "message_queue": message_queue,
        "extra_ctx_managers": tuple(extra_ctx_managers or ()),
    }, unused)
    if local_test:
        return _local(target, num_procs, semaphores_spec, debug, max_batch_len, True)
    if debug:
        raise SpecError("debug can only be true when local_test is also true", path="debug")
    backend = slurm_settings(worker_replicas, worker_resources, init_command)
    return _request(target, "slurm", {"semaphores": semaphores_spec or None,
                                      "batch_size": max_batch_len}, backend)


_CLOUD = {
    "worker_image": "the image workers run",
    "worker_groups": "GKE worker groups",
    "worker_replicas": "GKE worker count",
    "worker_labels": "GKE labels",
    "worker_cluster_name": "GKE cluster",
    "worker_cluster_region": "GKE cluster",
    "worker_cluster_project": "GKE cluster",
    "worker_resources": "GKE resources",
    "worker_resource_requests": "GKE resources",
    "provisioning_model": "GKE node type",
    "sqs_based_scaling": "SQS autoscaling",
    "idle_worker_timeout": "GKE workers",
    "local_test_queues_dir": "local queue files",
}


def _gcp(target: Any, cloud: dict[str, Any], num_procs: int,
         semaphores_spec: dict[str, int] | None, local_test: bool, debug: bool,
         max_batch_len: int, accepted: dict[str, Any]) -> ExecutionRequest:
    if debug and not local_test:
        raise SpecError("debug can only be true when local_test is also true", path="debug")
    unused = {k: f"{_CLOUD[k]}: specflow runs the target on the backend named on the command "
              "line (default local) instead" for k, v in cloud.items() if v is not None}
    _note("mazepa.execute_on_gcp_with_sqs", accepted, unused)
    return _local(target, num_procs, semaphores_spec, debug, max_batch_len, True)


@register("mazepa.execute_on_gcp_with_sqs", versions=">=0.0.3")
def execute_on_gcp_with_sqs(
    target: Any,
    worker_image: str,
    worker_groups: dict[str, Any],
    worker_cluster_name: str | None = None,
    worker_cluster_region: str | None = None,
    worker_cluster_project: str | None = None,
    max_batch_len: int = 10000,
    batch_gap_sleep_sec: float = 0.5,
    num_procs: int = 1,
    semaphores_spec: dict[str, int] | None = None,
    extra_ctx_managers: list[Any] | None = None,
    show_progress: bool = True,
    do_dryrun_estimation: bool = True,
    local_test: bool = False,
    local_test_queues_dir: str | None = None,
    debug: bool = False,
    checkpoint: str | None = None,
    checkpoint_interval_sec: float = 300.0,
    raise_on_failed_checkpoint: bool = True,
    write_progress_summary: bool = False,
    require_interrupt_confirm: bool = True,
    suppress_worker_logs: bool = True,
    resource_monitor_interval: float | None = None,
) -> ExecutionRequest:
    """zetta's ``mazepa.execute_on_gcp_with_sqs``: specflow does not start cloud workers; it
    runs the target on the backend named on the command line (``--backend``; default
    ``local`` with ``num_procs`` processes and ``semaphores_spec``) and says on stderr which
    cloud settings it did not apply."""
    return _gcp(target, {
        "worker_image": worker_image, "worker_groups": worker_groups,
        "worker_cluster_name": worker_cluster_name,
        "worker_cluster_region": worker_cluster_region,
        "worker_cluster_project": worker_cluster_project,
        "local_test_queues_dir": local_test_queues_dir,
    }, num_procs, semaphores_spec, local_test, debug, max_batch_len, {
        "batch_gap_sleep_sec": batch_gap_sleep_sec, "show_progress": show_progress,
        "do_dryrun_estimation": do_dryrun_estimation, "checkpoint": checkpoint,
        "raise_on_failed_checkpoint": raise_on_failed_checkpoint,
        "write_progress_summary": write_progress_summary,
        "require_interrupt_confirm": require_interrupt_confirm,
        "suppress_worker_logs": suppress_worker_logs,
        "extra_ctx_managers": tuple(extra_ctx_managers or ()),
    })


@register("mazepa.execute_on_gcp_with_sqs", versions="<=0.0.2")
def execute_on_gcp_with_sqs_v2(
    target: Any,
    worker_image: str,
    worker_replicas: int,
    worker_labels: dict[str, str] | None = None,
    worker_cluster_name: str | None = None,
    worker_cluster_region: str | None = None,
    worker_cluster_project: str | None = None,
    worker_resources: dict[str, Any] | None = None,
    max_batch_len: int = 10000,
    batch_gap_sleep_sec: float = 0.5,
    extra_ctx_managers: list[Any] | None = None,
    show_progress: bool = True,
    do_dryrun_estimation: bool = True,
    local_test: bool = False,
    local_test_queues_dir: str | None = None,
    debug: bool = False,
    checkpoint: str | None = None,
    checkpoint_interval_sec: float = 300.0,
    raise_on_failed_checkpoint: bool = True,
    worker_resource_requests: dict[str, Any] | None = None,
    num_procs: int = 1,
    semaphores_spec: dict[str, int] | None = None,
    provisioning_model: str = "spot",
    sqs_based_scaling: bool = True,
    idle_worker_timeout: int = 300,
) -> ExecutionRequest:
    """The older (``@version`` up to 0.0.2) ``mazepa.execute_on_gcp_with_sqs``: as the
    current one, with its older cloud settings (none of them applied)."""
    return _gcp(target, {
        "worker_image": worker_image, "worker_replicas": worker_replicas,
        "worker_labels": worker_labels, "worker_cluster_name": worker_cluster_name,
        "worker_cluster_region": worker_cluster_region,
        "worker_cluster_project": worker_cluster_project,
        "worker_resources": worker_resources,
        "worker_resource_requests": worker_resource_requests,
        "local_test_queues_dir": local_test_queues_dir,
        "provisioning_model": provisioning_model if provisioning_model != "spot" else None,
        "sqs_based_scaling": None if sqs_based_scaling else False,
        "idle_worker_timeout": idle_worker_timeout if idle_worker_timeout != 300 else None,
    }, num_procs, semaphores_spec, local_test, debug, max_batch_len, {
        "batch_gap_sleep_sec": batch_gap_sleep_sec, "show_progress": show_progress,
        "do_dryrun_estimation": do_dryrun_estimation, "checkpoint": checkpoint,
        "raise_on_failed_checkpoint": raise_on_failed_checkpoint,
        "extra_ctx_managers": tuple(extra_ctx_managers or ()),
    })


def combine_executions(built: Any) -> ExecutionRequest | None:
    """A top-level list of executions as one: their targets run one after another, with the
    settings of the first (later settings that differ are reported on stderr, since one run
    has one backend). None when ``built`` is not such a list."""
    if not (isinstance(built, list) and built
            and all(isinstance(x, ExecutionRequest) for x in built)):
        return None
    from specflow.flow.builtin import sequential_flow

    first = built[0]
    for i, other in enumerate(built[1:], start=1):
        differ = sorted(k for k in set(first.settings) | set(other.settings)
                        if first.settings.get(k) != other.settings.get(k))
        differ += sorted(f"backend.{k}" for k in set(first.backend_settings)
                         | set(other.backend_settings)
                         if first.backend_settings.get(k) != other.backend_settings.get(k))
        if differ:
            print(f"execution [{i}]: runs with the settings of execution [0]; its own "
                  f"{', '.join(differ)} differ and are not applied", file=sys.stderr)
    return ExecutionRequest(sequential_flow([x.target for x in built]), dict(first.settings),
                            dict(first.backend_settings))
