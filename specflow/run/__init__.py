"""A run: typed settings merged once, the run object that owns its checkpoint and lease,
the choice of backend by name, and ``specflow.execute``."""

from specflow.run.api import (
    RUN_ROOT_ENV,
    PreparedRun,
    count_tasks,
    count_with_reuse,
    execute,
    load,
    open_reuse,
    opt_ins_of,
    prepare,
    resume_run,
    run_root,
    run_spec,
    spec_hash,
)
from specflow.run.entries import ExecutionRequest
from specflow.run.record import Run, checkpoint_path, honest_status
from specflow.run.settings import RunSettings

__all__ = [
    "RUN_ROOT_ENV", "ExecutionRequest", "PreparedRun", "Run", "RunSettings", "checkpoint_path",
    "count_tasks", "count_with_reuse", "execute", "honest_status", "load", "open_reuse",
    "opt_ins_of", "prepare", "resume_run",
    "run_root", "run_spec", "spec_hash",
]
