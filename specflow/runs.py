"""Runs: the path from a spec (or a built target) to a finished run with its checkpoint.

``run_spec`` loads, overrides, builds and executes a spec file in a new run dir;
``resume_run`` re-enters a stopped run from its checkpoint; ``execute`` is the Python API for
built targets. The concrete backend is picked here by name.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from specflow import __version__, resources
from specflow.backends import BACKEND_NAMES, Backend, BackendContext, make_backend
from specflow.backends.base import Outcome
from specflow.builder import build, import_user_module, register
from specflow.execution.checkpoint import Checkpoint
from specflow.execution.events import Event, EventBus
from specflow.execution.executor import Executor, RetryPolicy, RunReport
from specflow.flow.task import Task, TransientErrorCondition
from specflow.spec import SpecError, apply_overrides, load_spec_with_source
from specflow.spec.source import SourceMap

RUN_ROOT_ENV = "SPECFLOW_RUN_ROOT"


def run_root() -> Path:
    return Path(os.environ.get(RUN_ROOT_ENV) or Path.cwd() / ".specflow" / "runs")


# -- the top-level "execute" spec --------------------------------------------------------
EXECUTION_KEYS = (
    "backend", "workers", "keep_going", "max_attempts", "retry_backoff", "transient_errors",
    "semaphores", "batch_size",
)


@dataclass
class ExecutionRequest:
    """A spec's ``{"@type": "execute", "target": ..., <settings>}``."""

    target: Any
    settings: dict[str, Any] = field(default_factory=dict)
    backend_settings: dict[str, Any] = field(default_factory=dict)


def _request(target: Any, backend: str, settings: dict[str, Any], rest: dict[str, Any]) -> ExecutionRequest:
    if backend not in BACKEND_NAMES:
        raise SpecError(
            f"unknown backend {backend!r}; expected one of {', '.join(BACKEND_NAMES)}",
            path="backend",
        )
    s = {k: v for k, v in settings.items() if v is not None}
    s["backend"] = backend
    return ExecutionRequest(target, s, rest)


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
) -> ExecutionRequest:
    """Run ``target`` with these execution settings (command-line flags override them)."""
    return _request(target, backend, {
        "workers": workers, "keep_going": keep_going, "max_attempts": max_attempts,
        "retry_backoff": retry_backoff, "transient_errors": transient_errors,
        "semaphores": semaphores, "batch_size": batch_size,
    }, {})


@register("execute_on_slurm")
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
) -> ExecutionRequest:
    """Run ``target`` on a SLURM cluster through submitit."""
    slurm = {
        "partition": partition, "time_limit": time_limit, "cpus_per_task": cpus_per_task,
        "mem_gb": mem_gb, "gres": gres, "tasks_per_job": tasks_per_job,
        "array_parallelism": array_parallelism, "max_jobs_in_flight": max_jobs_in_flight,
        "setup": setup, "sbatch_options": sbatch_options,
    }
    return _request(target, "slurm", {
        "keep_going": keep_going, "max_attempts": max_attempts, "retry_backoff": retry_backoff,
        "transient_errors": transient_errors, "semaphores": semaphores,
    }, {k: v for k, v in slurm.items() if v is not None})


def _conditions(raw: Iterable[Any] | None) -> tuple[TransientErrorCondition, ...]:
    out = []
    for c in raw or ():
        if isinstance(c, TransientErrorCondition):
            out.append(c)
        elif isinstance(c, str):
            out.append(TransientErrorCondition(c))
        elif isinstance(c, dict):
            out.append(TransientErrorCondition(
                str(c.get("exception_type", c.get("type", "Exception"))),
                str(c.get("text", c.get("message", ""))), bool(c.get("regex", False)),
            ))
        else:
            raise SpecError(f"transient_errors: cannot read {c!r} (give a type name or "
                            "{exception_type, text})")
    return tuple(out)


# -- hashing ------------------------------------------------------------------------------
def spec_hash(spec: Any) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()


def file_hash(path: str | Path) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def new_run_id(spec_digest: str) -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{spec_digest[:6]}-{secrets.token_hex(2)}"


# -- executing ----------------------------------------------------------------------------
def execute(
    target: Any,
    *,
    backend: str | Backend = "local",
    workers: int | None = None,
    checkpoint: bool | str | Path = True,
    run_dir: str | Path | None = None,
    keep_going: bool = False,
    max_attempts: int = 3,
    retry_backoff: float = 0.5,
    transient_errors: Iterable[Any] | None = None,
    semaphores: dict[str, int] | None = None,
    listeners: Sequence[Callable[[Event], None]] = (),
    progress: bool = False,
    imports: Sequence[str] = (),
    batch_size: int | None = None,
    spec: Any = None,
    backend_settings: dict[str, Any] | None = None,
) -> RunReport:
    """Run ``target`` (a Flow, Task, flow schema or list) and return the run's report.

    With ``checkpoint=True`` the run gets a run dir (``run_dir`` or a new one under
    ``.specflow/runs/``) holding ``checkpoint.db``; a path names the checkpoint file itself;
    an existing checkpoint is resumed (tasks recorded done are skipped).
    """
    ckpt: Checkpoint | None = None
    rdir = Path(run_dir) if run_dir else None
    if checkpoint:
        if isinstance(checkpoint, (str, Path)):
            cpath = Path(checkpoint)
            rdir = rdir or cpath.parent
        else:
            digest = spec_hash(spec) if spec is not None else secrets.token_hex(8)
            rdir = rdir or run_root() / new_run_id(digest)
            cpath = rdir / "checkpoint.db"
        exists = cpath.exists()
        ckpt = Checkpoint(cpath, create=not exists)
        if not exists:
            stored = spec if spec is not None else {}
            ckpt.create_run(
                run_id=rdir.name, spec=stored, spec_hash=spec_hash(stored), spec_file=None,
                spec_file_hash=None, overrides=[], imports=list(imports),
                settings={"backend": backend if isinstance(backend, str) else backend.name},
                version=__version__,
            )
    rdir = rdir or Path.cwd()
    try:
        return _execute(
            target, backend=backend, workers=workers, checkpoint=ckpt, run_dir=rdir,
            keep_going=keep_going, max_attempts=max_attempts, retry_backoff=retry_backoff,
            transient=_conditions(transient_errors), semaphores=semaphores,
            listeners=listeners, progress=progress, imports=imports, batch_size=batch_size,
            backend_settings=backend_settings or {},
        )
    finally:
        if ckpt is not None:
            ckpt.close()


def _execute(
    target: Any,
    *,
    backend: str | Backend,
    workers: int | None,
    checkpoint: Checkpoint | None,
    run_dir: Path,
    keep_going: bool,
    max_attempts: int,
    retry_backoff: float,
    transient: tuple[TransientErrorCondition, ...],
    semaphores: dict[str, int] | None,
    listeners: Sequence[Callable[[Event], None]],
    progress: bool,
    imports: Sequence[str],
    batch_size: int | None,
    backend_settings: dict[str, Any],
) -> RunReport:
    if semaphores:
        resources.configure_semaphores(semaphores)
    if isinstance(backend, str):
        settings = dict(backend_settings)
        if backend == "local" and workers:
            settings["workers"] = workers
        be = make_backend(backend, **settings)
    else:
        be = backend
    bus = EventBus()
    for listener in listeners:
        bus.subscribe(listener)
    prog = None
    if progress:
        from specflow.execution.progress import Progress

        prog = Progress()
    previous = tuple(checkpoint.live_jobs()) if checkpoint is not None else ()
    ctx = BackendContext(
        run_dir=run_dir, run_id=run_dir.name, imports=tuple(imports), previous_jobs=previous,
        semaphores=dict(semaphores or {}),
    )
    executor = Executor(
        be, checkpoint=checkpoint, keep_going=keep_going,
        retry=RetryPolicy(max_attempts=max_attempts, backoff_base=retry_backoff,
                          transient=transient),
        events=bus, progress=prog, context=ctx, batch_size=batch_size or 256,
    )
    return executor.run(target)


# -- dry runs -----------------------------------------------------------------------------
class CountingBackend(Backend):
    """Completes every task at once without running it: for ``--dry-run`` counts."""

    name = "dry-run"

    def __init__(self) -> None:
        self._done: list[Outcome] = []

    def capacity(self) -> int:
        return 4096

    def submit(self, tasks: Sequence[Task]) -> None:
        self._done.extend(Outcome(t.id, True) for t in tasks)

    def wait(self, timeout: float) -> list[Outcome]:
        out, self._done = self._done, []
        return out

    def in_flight(self) -> int:
        return len(self._done)


def count_tasks(target: Any) -> dict[str, int]:
    """Tasks per operation that ``target`` would run (values of dependencies are None)."""
    report = Executor(CountingBackend(), batch_size=4096).run(target)
    return {op: c.get("submitted", 0) for op, c in sorted(report.counts.items())}


# -- from a spec file ---------------------------------------------------------------------
@dataclass
class PreparedRun:
    target: Any
    settings: dict[str, Any]
    backend_settings: dict[str, Any]


def opt_ins(*, allow_shell: bool = False, allow_eval: bool = False) -> frozenset[str]:
    """The opt-ins the command line granted (never taken from a checkpoint)."""
    return frozenset(n for n, on in (("shell", allow_shell), ("eval", allow_eval)) if on)


def prepare(
    spec: Any, source: SourceMap, *, allow_shell: bool = False, allow_eval: bool = False
) -> PreparedRun:
    """Build a loaded spec into its target and execution settings."""
    from specflow.builder.check import check_spec

    granted = opt_ins(allow_shell=allow_shell, allow_eval=allow_eval)
    problems = check_spec(spec, source, opt_ins=granted)
    if problems:
        raise problems[0]
    built = build(spec, source=source, opt_ins=granted)
    built = _one_execution(built)
    if isinstance(built, ExecutionRequest):
        return PreparedRun(built.target, dict(built.settings), dict(built.backend_settings))
    return PreparedRun(built, {}, {})


def _one_execution(built: Any) -> Any:
    """A top-level list of executions (zetta's form) as one execution of them in order."""
    from specflow.zetta_execute import combine_executions

    combined = combine_executions(built)
    return built if combined is None else combined


def load(path: str, overrides: Sequence[str] = (), imports: Sequence[str] = ()) -> tuple[Any, SourceMap]:
    for name in imports:
        import_user_module(name)
    spec, source = load_spec_with_source(path)
    spec = apply_overrides(spec, list(overrides))
    return spec, source


def run_spec(
    path: str,
    *,
    overrides: Sequence[str] = (),
    imports: Sequence[str] = (),
    cli_settings: dict[str, Any] | None = None,
    run_dir: str | Path | None = None,
    allow_shell: bool = False,
    allow_eval: bool = False,
    progress: bool = True,
    listeners: Sequence[Callable[[Event], None]] = (),
) -> tuple[RunReport, Path]:
    spec, source = load(path, overrides, imports)
    prepared = prepare(spec, source, allow_shell=allow_shell, allow_eval=allow_eval)
    settings = dict(prepared.settings)
    settings.update({k: v for k, v in (cli_settings or {}).items() if v is not None})
    settings.setdefault("backend", "local")
    digest = spec_hash(spec)
    rdir = Path(run_dir) if run_dir else run_root() / new_run_id(digest)
    cpath = rdir / "checkpoint.db"
    if cpath.exists():
        raise SpecError(
            f"{cpath} already exists: use `specflow resume {cpath}` or choose another --run-dir"
        )
    abs_imports = [_abs_import(i) for i in imports]
    ckpt = Checkpoint(cpath, create=True)
    try:
        ckpt.create_run(
            run_id=rdir.name, spec=spec, spec_hash=digest, spec_file=str(Path(path).resolve()),
            spec_file_hash=file_hash(path), overrides=list(overrides),
            imports=abs_imports,
            settings={**settings, "backend_settings": prepared.backend_settings},
            version=__version__,
        )
        report = _run_prepared(prepared, settings, ckpt, rdir, abs_imports, progress,
                               listeners)
    finally:
        ckpt.close()
    return report, rdir


def _abs_import(name: str) -> str:
    p = Path(name)
    return str(p.resolve()) if (name.endswith(".py") or p.exists()) else name


def _run_prepared(
    prepared: PreparedRun,
    settings: dict[str, Any],
    ckpt: Checkpoint,
    rdir: Path,
    imports: Sequence[str],
    progress: bool,
    listeners: Sequence[Callable[[Event], None]],
) -> RunReport:
    return _execute(
        prepared.target,
        backend=str(settings.get("backend", "local")),
        workers=settings.get("workers"),
        checkpoint=ckpt,
        run_dir=rdir,
        keep_going=bool(settings.get("keep_going", False)),
        max_attempts=int(settings.get("max_attempts", 3)),
        retry_backoff=float(settings.get("retry_backoff", 0.5)),
        transient=_conditions(settings.get("transient_errors")),
        semaphores=settings.get("semaphores"),
        listeners=listeners,
        progress=progress,
        imports=imports,
        batch_size=settings.get("batch_size"),
        backend_settings=dict(prepared.backend_settings),
    )


def resume_run(
    checkpoint_path: str | Path,
    *,
    force: bool = False,
    cli_settings: dict[str, Any] | None = None,
    progress: bool = True,
    listeners: Sequence[Callable[[Event], None]] = (),
    allow_shell: bool = False,
    allow_eval: bool = False,
) -> tuple[RunReport, Path, int]:
    """Resume a run. Returns its report, run dir, and how many tasks were skipped as done.
    Opt-ins (``allow_shell``, ``allow_eval``) come from the caller, never the checkpoint."""
    cpath = Path(checkpoint_path)
    if cpath.is_dir():
        cpath = cpath / "checkpoint.db"
    ckpt = Checkpoint(cpath)
    try:
        info = ckpt.run_info()
        if info.spec_file and not force:
            now = file_hash(info.spec_file)
            if now is not None and info.spec_file_hash and now != info.spec_file_hash:
                raise SpecError(
                    f"the spec file {info.spec_file} changed since this run started; resuming "
                    "would mix two different jobs (pass --force to resume with the stored spec)"
                )
        for name in info.imports:
            import_user_module(name)
        # opt-ins are granted by this command line only (older checkpoints stored one)
        settings = {k: v for k, v in info.settings.items()
                    if k not in ("backend_settings", "allow_shell", "allow_eval")}
        source = SourceMap(info.spec_file or str(cpath))
        prepared = prepare(info.spec, source, allow_shell=allow_shell, allow_eval=allow_eval)
        prepared.backend_settings.update(info.settings.get("backend_settings") or {})
        settings.update({k: v for k, v in (cli_settings or {}).items() if v is not None})
        ckpt.set_status("resuming", new_attempt=True)
        report = _run_prepared(
            prepared, settings, ckpt, cpath.parent, info.imports, progress, listeners
        )
    finally:
        ckpt.close()
    return report, cpath.parent, report.resumed_done
