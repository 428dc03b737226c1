"""The path from a spec (or a built target) to a finished run.

``run_spec`` loads, overrides, builds and executes a spec file in a new run; ``resume_run``
re-enters a stopped run; ``execute`` is the Python API for built targets. Each drives a
:class:`~specflow.run.record.Run` (which owns the checkpoint and the lease) with one
:class:`~specflow.run.settings.RunSettings`; the concrete backend is picked here by name.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from specflow.backends import Backend, BackendContext, make_backend
from specflow.backends.base import DriverInterrupt, Outcome
from specflow.backends.dask import DaskUnavailable
from specflow.builder import build, import_user_module
from specflow.builder.build import locate
from specflow.builder.imports import resolve_import
from specflow.execution.cache import ResultCache
from specflow.execution.dryrun import DryRunResult, dry_run
from specflow.execution.events import Event, EventBus
from specflow.execution.executor import Executor, RunReport
from specflow.execution.reuse import ReuseSource
from specflow.execution.rows import CheckpointError
from specflow.flow.runnable import check_runnable
from specflow.flow.task import Task
from specflow.run.entries import ExecutionRequest
from specflow.run.index import remember
from specflow.run.record import Run, file_sha256, import_record, say_default
from specflow.run.settings import OPT_INS, RunSettings
from specflow.spec import SpecError, apply_overrides, load_spec_with_source
from specflow.spec.source import SourceMap

if TYPE_CHECKING:
    from specflow.execution.checkpoint import Checkpoint

RUN_ROOT_ENV = "SPECFLOW_RUN_ROOT"
Say = Callable[[str], None]


def run_root() -> Path:
    return Path(os.environ.get(RUN_ROOT_ENV) or Path.cwd() / ".specflow" / "runs").absolute()


def cache_dir() -> Path:
    """Where pure operations' values are cached: ``cache/`` beside the run root."""
    return run_root().parent / "cache"


def spec_hash(spec: Any) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()


def new_run_id(spec_digest: str) -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{spec_digest[:6]}-{secrets.token_hex(2)}"


# -- preparing a spec -------------------------------------------------------------------
@dataclass
class PreparedRun:
    target: Any
    settings: dict[str, Any]
    backend_settings: dict[str, Any]


def prepare(spec: Any, source: SourceMap, *, opt_ins: Iterable[str] = ()) -> PreparedRun:
    """Build a loaded spec into its target and the settings it gives."""
    from specflow.builder.check import check_spec
    from specflow.zetta_execute import combine_executions

    granted = frozenset(opt_ins)
    problems = check_spec(spec, source, opt_ins=granted)
    if problems:
        raise problems[0]
    built = build(spec, source=source, opt_ins=granted)
    combined = combine_executions(built)  # a top-level list of executions (zetta's form)
    if combined is not None:
        built = combined
    if isinstance(built, ExecutionRequest):
        _check_runnable(built.target, "target", source)
        return PreparedRun(built.target, dict(built.settings), dict(built.backend_settings))
    _check_runnable(built, "", source)
    return PreparedRun(built, {}, {})


def _check_runnable(target: Any, path: str, source: SourceMap) -> None:
    try:
        check_runnable(target, path)
    except SpecError as exc:
        raise locate(exc, source) from None


def load(path: str, overrides: Sequence[str] = (),
         imports: Sequence[str] = ()) -> tuple[Any, SourceMap, list[dict[str, Any]]]:
    """Import the user's modules, load the spec and apply ``--set`` overrides."""
    names = [resolve_import(name) for name in imports]
    records = [import_record(name, import_user_module(name)) for name in names]
    spec, source = load_spec_with_source(path)
    spec = apply_overrides(spec, list(overrides))
    return spec, source, records


# -- driving ------------------------------------------------------------------------------
class Terminated(DriverInterrupt):
    """The driver received SIGTERM or SIGHUP: stop like Ctrl-C."""


@contextlib.contextmanager
def _stop_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP stop the run the way Ctrl-C does (record, cancel, interrupted)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_signal(signum: int, frame: Any) -> None:
        raise Terminated(signal.Signals(signum).name)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@contextlib.contextmanager
def _interruptible(run: Run) -> Iterator[None]:
    """From the moment a driver holds ``run``: SIGTERM and SIGHUP stop it as Ctrl-C does,
    also before its tasks start (the run is then on record as interrupted, not crashed)."""
    with _stop_signals():
        try:
            yield
        except KeyboardInterrupt:
            try:
                if run.checkpoint.run_info().status in ("created", "running", "resuming"):
                    run.checkpoint.set_status("interrupted")
            except CheckpointError:
                pass
            raise


def drive(
    target: Any,
    settings: RunSettings,
    *,
    run: Run | None,
    backend: Backend | None = None,
    listeners: Sequence[Callable[[Event], None]] = (),
    progress: bool = False,
    imports: Sequence[str] = (),
    quiet: bool = False,
    final_table: bool = False,
    reuse: ReuseSource | None = None,
    cache: ResultCache | None | bool = True,
) -> RunReport:
    """Execute ``target`` under ``settings``, recording into ``run``'s checkpoint.

    ``progress`` shows the live table; what tasks print is shown unless ``quiet``;
    ``final_table`` prints the table once at the end (callers that print their own summary
    leave it off). With ``reuse``, tasks done in earlier runs are recorded as reused instead
    of run."""
    if backend is None:
        bs = dict(settings.backend_settings)
        if settings.backend in ("local", "dask") and settings.workers:
            bs["workers"] = settings.workers
        if settings.backend not in ("local", "inline"):
            bs.pop("worker_tags", None)  # a cluster's workers say what they carry
        try:
            backend = make_backend(settings.backend, **bs)
        except (ValueError, DaskUnavailable) as exc:
            raise SpecError(f"backend {settings.backend}: {exc}", path="backend") from None
    bus = EventBus()
    for listener in listeners:
        bus.subscribe(listener)
    prog = None
    if progress or not quiet:
        from specflow.execution.progress import Progress

        prog = Progress(show_table=progress, final_table=final_table and progress)
    ckpt: Checkpoint | None = run.checkpoint if run is not None else None
    run_dir = run.run_dir if run is not None else Path.cwd()
    previous = tuple(ckpt.live_jobs()) if ckpt is not None else ()
    ctx = BackendContext(
        run_dir=run_dir, run_id=run_dir.name, imports=tuple(imports), previous_jobs=previous,
        semaphores=dict(settings.semaphores),
        # a run without a checkpoint has no run dir of its own: its task logs go elsewhere
        log_dir=None if ckpt is not None else Path(tempfile.mkdtemp(prefix="specflow-logs-")),
    )
    executor = Executor(
        backend, checkpoint=ckpt, keep_going=settings.keep_going,
        retry=settings.retry_policy(), events=bus, progress=prog, context=ctx,
        batch_size=settings.batch_size or 256, reuse=reuse,
        cache=ResultCache(cache_dir()) if cache is True else (cache or None),
    )
    try:
        with _stop_signals():
            return executor.run(target)
    except DaskUnavailable as exc:
        raise SpecError(f"backend {settings.backend}: {exc}") from None


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
    settings = RunSettings.merge({
        "backend": backend if isinstance(backend, str) else "local", "workers": workers,
        "keep_going": keep_going, "max_attempts": max_attempts,
        "retry_backoff": retry_backoff, "transient_errors": transient_errors,
        "semaphores": semaphores, "batch_size": batch_size,
    }, backend_settings=backend_settings)
    be = backend if isinstance(backend, Backend) else None
    records = [import_record(name, import_user_module(name)) for name in imports]
    abs_imports = [r["name"] for r in records]
    run: Run | None = None
    if checkpoint:
        if isinstance(checkpoint, (str, Path)):
            cpath = Path(checkpoint)
            rdir = Path(run_dir) if run_dir else cpath.parent
        else:
            digest = spec_hash(spec) if spec is not None else secrets.token_hex(8)
            rdir = Path(run_dir) if run_dir else run_root() / new_run_id(digest)
            cpath = rdir / "checkpoint.db"
        if cpath.exists():
            run = Run.open(cpath, drive=True)
            run.checkpoint.set_status("resuming", new_attempt=True)
        else:
            stored = spec if spec is not None else {}
            run = Run.create(
                rdir, spec=stored, spec_hash=spec_hash(stored), spec_file=None,
                spec_file_hash=None, overrides=[], imports=records, settings=settings,
                checkpoint_name=cpath.name,
            )
    try:
        # a run without a checkpoint keeps nothing: no cached values either
        return drive(target, settings, run=run, backend=be, listeners=listeners,
                     progress=progress, imports=abs_imports, quiet=not progress,
                     final_table=True, cache=run is not None)
    finally:
        if run is not None:
            run.close()


# -- dry runs -----------------------------------------------------------------------------
class CountingBackend(Backend):
    """Completes every task at once without running it: for ``--dry-run`` counts."""

    name = "dry-run"

    def __init__(self, values: Callable[[str], Any] | None = None) -> None:
        self._done: list[Outcome] = []
        #: the stand-in value of a task that would run (default: None)
        self._values = values

    def capacity(self) -> int:
        return 4096

    def submit(self, tasks: Sequence[Task]) -> None:
        values = self._values
        self._done.extend(Outcome(t.id, True, values(t.id) if values else None) for t in tasks)

    def wait(self, timeout: float) -> list[Outcome]:
        out, self._done = self._done, []
        return out

    def in_flight(self) -> int:
        return len(self._done)


def count_tasks(target: Any, *, graph: bool = False) -> DryRunResult:
    """The tasks per operation a real run of ``target`` executes, running none (with
    ``graph``, the flow graph too: the result's ``graph``)."""
    return dry_run(target, graph=graph)


def count_with_reuse(target: Any, reuse: ReuseSource) -> dict[str, tuple[int, int]]:
    """Per operation, how many tasks ``target`` would run and how many it would reuse from
    ``reuse`` (the executor's own reuse rule decides). A task that would run hands its flow
    the value the earlier run recorded for it, so the counts are exact for flows whose
    shape does not depend on those values changing."""
    report = Executor(CountingBackend(reuse.earlier_value), batch_size=4096,
                      reuse=reuse).run(target)
    if report.failures:
        raise SpecError(report.failures[0].error)
    return {op: (c.get("submitted", 0), c.get("reused", 0))
            for op, c in sorted(report.counts.items())}


def open_reuse(paths: Sequence[str | Path]) -> ReuseSource | None:
    """The done work of the earlier runs ``paths`` (run dirs or checkpoints), or None."""
    return ReuseSource(paths) if paths else None


# -- from a spec file ---------------------------------------------------------------------
def opt_ins_of(allow_shell: bool = False, allow_eval: bool = False) -> frozenset[str]:
    return frozenset(n for n, on in (("shell", allow_shell), ("eval", allow_eval)) if on)


def run_spec(
    path: str,
    *,
    overrides: Sequence[str] = (),
    imports: Sequence[str] = (),
    cli_settings: dict[str, Any] | None = None,
    run_dir: str | Path | None = None,
    opt_ins: Iterable[str] = (),
    progress: bool = True,
    listeners: Sequence[Callable[[Event], None]] = (),
    quiet: bool = False,
    reuse: Sequence[str | Path] = (),
) -> tuple[RunReport, Path]:
    """Build and run a spec file in a new run. A spec that does not build creates no run.
    ``reuse``: earlier runs whose done tasks are recorded as reused instead of run again."""
    spec, source, records = load(path, overrides, imports)
    opt = frozenset(opt_ins)
    prepared = prepare(spec, source, opt_ins=opt)
    settings = RunSettings.merge(prepared.settings, cli_settings,
                                 backend_settings=prepared.backend_settings, opt_ins=opt)
    digest = spec_hash(spec)
    rdir = Path(run_dir) if run_dir else run_root() / new_run_id(digest)
    if reuse:
        # absolute, so that a resume (which reopens them) finds them from anywhere
        cli_settings = {**(cli_settings or {}),
                        "reuse": [str(ReuseSource([p]).close_and_path()) for p in reuse]}
        settings = RunSettings.merge(prepared.settings, cli_settings,
                                     backend_settings=prepared.backend_settings, opt_ins=opt)
    source_runs = open_reuse(settings.reuse)
    try:
        run = Run.create(
            rdir, spec=spec, spec_hash=digest, spec_file=str(Path(path).resolve()),
            spec_file_hash=file_sha256(path), overrides=list(overrides), imports=records,
            settings=settings,
        )
        try:
            with _interruptible(run):
                remember(run_root(), run.run_dir)
                report = drive(prepared.target, settings, run=run,
                               progress=progress and not quiet, listeners=listeners,
                               imports=[r["name"] for r in records], quiet=quiet,
                               reuse=source_runs)
        finally:
            run.close()
    finally:
        if source_runs is not None:
            source_runs.close()
    return report, run.run_dir


def resume_run(
    checkpoint_path: str | Path,
    *,
    force: bool = False,
    cli_settings: dict[str, Any] | None = None,
    opt_ins: Iterable[str] = (),
    progress: bool = True,
    listeners: Sequence[Callable[[Event], None]] = (),
    say: Say = say_default,
    quiet: bool = False,
) -> tuple[RunReport, Path, int]:
    """Resume a run where it started. Returns its report, run dir, and how many tasks were
    skipped as done."""
    run = Run.open(checkpoint_path, drive=True)
    here = os.getcwd()
    try:
        with _interruptible(run):
            report = _resume(run, force=force, cli_settings=cli_settings, opt_ins=opt_ins,
                             progress=progress, listeners=listeners, say=say, quiet=quiet)
    finally:
        try:
            run.close()
        finally:
            os.chdir(here)
    return report, run.run_dir, report.resumed_done


def _resume(run: Run, *, force: bool, cli_settings: dict[str, Any] | None,
            opt_ins: Iterable[str], progress: bool,
            listeners: Sequence[Callable[[Event], None]], say: Say, quiet: bool) -> RunReport:
    if run.lease is not None and run.lease.took_over:
        say(f"taking over the run from its previous driver, {run.lease.took_over}, "
            "which is gone")
    info = run.info()
    start = info.start_dir
    if start and not Path(start).is_dir():
        raise SpecError(f"this run started in {start}, which no longer exists; recreate it "
                        "(the run's relative paths point there) to resume")
    if start and os.path.realpath(start) != os.path.realpath(os.getcwd()):
        say(f"resuming in {start}, where the run started")
        os.chdir(start)
    if info.spec_file and not force:
        now = file_sha256(info.spec_file)
        if now is not None and info.spec_file_hash and now != info.spec_file_hash:
            raise SpecError(
                f"the spec file {info.spec_file} changed since this run started; resuming "
                "would mix two different jobs (pass --force to resume with the stored spec)"
            )
    _check_imports(info.imports, force, say)
    names = [str(r["name"]) for r in info.imports]
    for name in names:
        import_user_module(name)
    opt = frozenset(opt_ins)
    missing = sorted(set(info.settings.get("opt_ins_at_start") or ()) - opt)
    source = SourceMap(info.spec_file or str(run.checkpoint.path))
    try:
        prepared = prepare(info.spec, source, opt_ins=opt)
    except SpecError as exc:
        if missing:
            flags = " ".join(OPT_INS[m] for m in missing if m in OPT_INS)
            raise SpecError(f"{exc}\nthis run was started with {flags}: opt-ins are "
                            f"never taken from a checkpoint; pass {flags} again") from None
        raise
    settings = RunSettings.from_record(info.settings, cli_settings, opt_ins=opt)
    source_runs = open_reuse(settings.reuse)
    run.checkpoint.set_status("resuming", new_attempt=True)
    try:
        return drive(prepared.target, settings, run=run, progress=progress and not quiet,
                     listeners=listeners, imports=names, quiet=quiet, reuse=source_runs)
    finally:
        if source_runs is not None:
            source_runs.close()


def _check_imports(records: list[dict[str, Any]], force: bool, say: Say) -> None:
    if not records:
        return
    say("importing the modules this run was started with: "
        + ", ".join(str(r["name"]) for r in records))
    for r in records:
        file, digest = r.get("file"), r.get("sha256")
        if not file or not digest:
            continue
        now = file_sha256(file)
        if now is None:
            raise SpecError(f"module {r['name']} ({file}) is gone; it was imported when the run "
                            "started")
        if now != digest and not force:
            raise SpecError(
                f"module {r['name']} ({file}) changed since this run started; resuming would "
                "mix results of old and new code (pass --force to resume anyway)"
            )
