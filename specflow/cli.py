"""The ``specflow`` command line."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
import yaml
from rich.console import Console
from rich.table import Table

from specflow import __version__

app = typer.Typer(
    name="specflow",
    help="Run declarative batch jobs from CUE, YAML or JSON spec files.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)

_state: dict[str, bool] = {"traceback": False}

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

ImportOpt = Annotated[
    list[str] | None,
    typer.Option("--import", "-i", help="Import a module or .py file that registers operations."),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a spec value: PATH=VALUE (VALUE is YAML), repeatable."),
]


def _fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(code)


def _guard(fn: Callable[[], int]) -> int:
    """Run a command body, turning known errors into messages and exit codes."""
    from specflow.execution.checkpoint import CheckpointError
    from specflow.spec import SpecError

    try:
        return fn()
    except typer.Exit:
        raise
    except (SpecError, CheckpointError) as exc:
        if _state["traceback"]:
            traceback.print_exc()
        err.print("[bold red]error:[/] ", end="")
        err.print(str(exc), markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_USAGE) from None
    except KeyboardInterrupt:
        err.print("interrupted")
        raise typer.Exit(130) from None


def _load_builtins() -> None:
    from specflow.catalog import load_builtins

    load_builtins()


@app.callback()
def main_callback(
    show_traceback: Annotated[
        bool, typer.Option("--traceback", help="Show Python tracebacks for errors.")
    ] = False,
    version: Annotated[bool, typer.Option("--version", help="Print the version.")] = False,
) -> None:
    _state["traceback"] = show_traceback
    if version:
        out.print(f"specflow {__version__}")
        raise typer.Exit(0)


# -- run / resume -------------------------------------------------------------------------
@app.command()
def run(
    spec: Annotated[str, typer.Argument(help="The spec file (.cue, .yaml, .yml, .json).")],
    imports: ImportOpt = None,
    set_: SetOpt = None,
    backend: Annotated[
        str | None, typer.Option("--backend", "-b", help="inline | local | slurm | dask")
    ] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (local, dask).")] = None,
    dask_address: Annotated[str | None, typer.Option(
        help="dask: connect to the scheduler at tcp://HOST:PORT instead of an embedded cluster."
    )] = None,
    run_dir: Annotated[str | None, typer.Option(help="Where the run's files go.")] = None,
    keep_going: Annotated[
        bool | None,
        typer.Option("--keep-going/--fail-fast", help="Skip only dependents of failed tasks."),
    ] = None,
    max_attempts: Annotated[int | None, typer.Option(help="Attempts for transient errors.")] = None,
    dry_run: Annotated[bool, typer.Option(help="Build and count tasks; run nothing.")] = False,
    allow_shell: Annotated[bool, typer.Option(help="Allow `shell` operations.")] = False,
    progress: Annotated[bool, typer.Option(help="Show progress.")] = True,
    reuse: Annotated[list[str] | None, typer.Option(
        help="Reuse tasks done in this earlier run (run dir or checkpoint); repeatable."
    )] = None,
    explain: Annotated[bool, typer.Option(
        help="With --reuse: name the spec fields that differ from the earlier run."
    )] = False,
) -> None:
    """Build SPEC and run it, recording every finished task in a checkpoint."""

    def body() -> int:
        from specflow import run as runs

        _load_builtins()
        _check_backend(backend)
        opt_ins = runs.opt_ins_of(allow_shell=allow_shell)
        if explain and not reuse:
            _fail("--explain compares with an earlier run: give it with --reuse EARLIER")
        if reuse and (dry_run or explain):
            if _reuse_preview(spec, set_ or [], imports or [], reuse, opt_ins, dry_run, explain):
                return EXIT_OK
        if dry_run:
            loaded, source, _ = runs.load(spec, set_ or [], imports or [])
            prepared = runs.prepare(loaded, source, opt_ins=opt_ins)
            counts = runs.count_tasks(prepared.target)
            t = Table(title=f"{spec}: tasks per operation (dry run)", title_justify="left")
            t.add_column("operation")
            t.add_column("tasks", justify="right")
            for op, n in counts.items():
                t.add_row(op, f"{n:,}")
            t.add_row("[bold]total[/]", f"[bold]{sum(counts.values()):,}[/]")
            out.print(t)
            return EXIT_OK
        cli_settings = {"backend": backend, "workers": workers, "keep_going": keep_going,
                        "max_attempts": max_attempts,
                        "backend_settings": {"address": dask_address}}
        report, rdir = runs.run_spec(
            spec, overrides=set_ or [], imports=imports or [], cli_settings=cli_settings,
            run_dir=run_dir, opt_ins=opt_ins, progress=progress, reuse=reuse or [],
        )
        _summary(report, rdir)
        return report.exit_code

    raise typer.Exit(_guard(body))


@app.command()
def resume(
    checkpoint: Annotated[str, typer.Argument(help="The run's checkpoint.db (or its run dir).")],
    force: Annotated[bool, typer.Option(help="Resume even if the spec file changed.")] = False,
    backend: Annotated[str | None, typer.Option("--backend", "-b")] = None,
    workers: Annotated[int | None, typer.Option()] = None,
    dask_address: Annotated[str | None, typer.Option(help="dask: scheduler tcp://HOST:PORT.")] = None,
    keep_going: Annotated[bool | None, typer.Option("--keep-going/--fail-fast")] = None,
    allow_shell: Annotated[
        bool, typer.Option(help="Allow `shell` operations (never taken from the checkpoint).")
    ] = False,
    progress: Annotated[bool, typer.Option(help="Show progress.")] = True,
) -> None:
    """Resume a stopped run where it started: tasks recorded as done are skipped."""

    def body() -> int:
        from specflow import run as runs

        _load_builtins()
        _check_backend(backend)
        report, rdir, skipped = runs.resume_run(
            checkpoint, force=force, progress=progress,
            opt_ins=runs.opt_ins_of(allow_shell=allow_shell),
            cli_settings={"backend": backend, "workers": workers, "keep_going": keep_going,
                          "backend_settings": {"address": dask_address}},
            say=lambda text: err.print(text, markup=False, highlight=False, soft_wrap=True),
        )
        out.print(f"resumed: skipped {skipped:,} task{'s' if skipped != 1 else ''} already done")
        _summary(report, rdir)
        return report.exit_code

    raise typer.Exit(_guard(body))


def _reuse_preview(spec: str, overrides: list[str], imports: list[str], reuse: list[str],
                   opt_ins: frozenset[str], dry_run: bool, explain: bool) -> bool:
    """``--explain`` and ``--dry-run`` with ``--reuse``; True when nothing should run."""
    from specflow import run as runs
    from specflow.execution.reuse import spec_differences

    loaded, source, _ = runs.load(spec, overrides, imports)
    source_runs = runs.open_reuse(reuse)
    assert source_runs is not None
    try:
        if explain:
            for path, old in source_runs.specs():
                diff = spec_differences(old, loaded)
                out.print(f"differs from {path}: " + ("nothing" if not diff else ""),
                          markup=False, highlight=False)
                for d in diff:
                    out.print(f"  {d}", markup=False, highlight=False)
        if not dry_run:
            return False
        prepared = runs.prepare(loaded, source, opt_ins=opt_ins)
        counts = runs.count_with_reuse(prepared.target, source_runs)
    finally:
        source_runs.close()
    t = Table(title=f"{spec}: tasks per operation (dry run, reusing {len(reuse)} run(s))",
              title_justify="left")
    for c, j in (("operation", "left"), ("run", "right"), ("reused", "right")):
        t.add_column(c, justify=j)  # type: ignore[arg-type]
    for op, (n_run, n_reused) in counts.items():
        t.add_row(op, f"{n_run:,}", f"{n_reused:,}")
    t.add_row("[bold]total[/]", f"[bold]{sum(c[0] for c in counts.values()):,}[/]",
              f"[bold]{sum(c[1] for c in counts.values()):,}[/]")
    out.print(t)
    return True


def _check_backend(backend: str | None) -> None:
    from specflow.backends import BACKEND_NAMES

    if backend is not None and backend not in BACKEND_NAMES:
        _fail(f"--backend {backend}: expected one of {', '.join(BACKEND_NAMES)}")


def _summary(report: Any, rdir: Path) -> None:
    t = Table(title=f"run {report.status} in {report.duration:,.2f} s", title_justify="left")
    t.add_column("operation")
    cols = ("done", "failed", "retried", "cached", "reused")
    for c in cols:
        t.add_column(c, justify="right")
    for op, c in sorted(report.counts.items()):
        t.add_row(op, *(f"{c.get(k, 0):,}" for k in cols))
    out.print(t)
    if report.duplicates:
        out.print(f"{report.duplicates:,} duplicate task(s) ran once")
    for f in report.failures[:5]:
        err.print(f"[red]failed[/] {f.operation} {f.task_id[:12]} after {f.attempts} "
                  f"attempt(s): ", end="")
        err.print(f.error, markup=False, highlight=False)
    if len(report.failures) > 5:
        err.print(f"... and {len(report.failures) - 5} more failures")
    if report.skipped_flows:
        err.print(f"skipped {len(report.skipped_flows)} flow(s) that depend on failed tasks")
    ck = rdir / "checkpoint.db"
    out.print(f"checkpoint: {ck}")
    if report.status != "done":
        out.print(f"resume with: specflow resume {ck}")


# -- validate / export / types / schema --------------------------------------------------
@app.command()
def validate(
    specs: Annotated[list[str], typer.Argument(help="Spec files to check.")],
    imports: ImportOpt = None,
    set_: SetOpt = None,
) -> None:
    """Load each spec and check it against the registry and its JSON Schema, running and
    building nothing. Reports every problem; exit 2 on any."""

    def body() -> int:
        import jsonschema

        from specflow import run as runs
        from specflow.builder.check import check_spec
        from specflow.builder.schema import registry_schema
        from specflow.spec import SpecError
        from specflow.spec.source import format_path

        _load_builtins()
        validator = jsonschema.Draft202012Validator(registry_schema())
        bad = 0
        for path in specs:
            try:
                loaded, source, _ = runs.load(path, set_ or [], imports or [])
            except SpecError as exc:
                bad += 1
                err.print(f"[red]✗[/] {path}: ", end="")
                err.print(str(exc), markup=False, highlight=False)
                continue
            problems = check_spec(loaded, source)
            if not problems:
                for e in validator.iter_errors(loaded):
                    where = format_path(list(e.absolute_path))
                    problems.append(SpecError(_short_schema_error(e), path=where or None,
                                              locations=[source.locate(where)]))
            if problems:
                bad += 1
                err.print(f"[red]✗[/] {path}: {len(problems)} problem(s)")
                for problem in problems:
                    err.print("  " + str(problem).replace("\n", "\n  "), markup=False,
                              highlight=False)
            else:
                out.print(f"[green]✓[/] {path}")
        return EXIT_USAGE if bad else EXIT_OK

    raise typer.Exit(_guard(body))


def _short_schema_error(e: Any) -> str:
    msg = str(e.message)
    return msg if len(msg) < 200 else msg[:197] + "..."


@app.command()
def export(
    spec: Annotated[str, typer.Argument(help="The spec file.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="json | yaml")] = "json",
    imports: ImportOpt = None,
    set_: SetOpt = None,
) -> None:
    """Print the resolved spec (after CUE evaluation and --set overrides)."""

    def body() -> int:
        from specflow import run as runs

        if fmt not in ("json", "yaml"):
            _fail(f"--format {fmt}: expected json or yaml")
        loaded, _, _ = runs.load(spec, set_ or [], imports or [])
        if fmt == "json":
            sys.stdout.write(json.dumps(loaded, indent=2) + "\n")
        else:
            sys.stdout.write(yaml.safe_dump(loaded, sort_keys=False))
        return EXIT_OK

    raise typer.Exit(_guard(body))


@app.command()
def types(
    imports: ImportOpt = None,
    name: Annotated[str | None, typer.Argument(help="Show only types containing this.")] = None,
) -> None:
    """List every registered @type with its signature and versions."""

    def body() -> int:
        from specflow.builder import entries, import_user_module

        _load_builtins()
        for i in imports or []:
            import_user_module(i)
        t = Table(title="registered types", title_justify="left")
        t.add_column("@type")
        t.add_column("versions")
        t.add_column("signature")
        t.add_column("from")
        for e in entries():
            if name and name not in e.name:
                continue
            sig = e.signature()
            shown = str(sig) if sig else "(...)"
            if getattr(getattr(e.fn, "options", None), "pure", False):
                shown += "  (pure)"
            t.add_row(e.name, str(e.versions), shown, e.module)
        out.print(t)
        return EXIT_OK

    raise typer.Exit(_guard(body))


@app.command()
def schema(
    output: Annotated[str | None, typer.Option("--output", "-o", help="File to write.")] = None,
    imports: ImportOpt = None,
) -> None:
    """Write the JSON Schema of specs, generated from the registry."""

    def body() -> int:
        from specflow.builder import import_user_module
        from specflow.builder.schema import registry_schema

        _load_builtins()
        for i in imports or []:
            import_user_module(i)
        text = json.dumps(registry_schema(), indent=2, sort_keys=True) + "\n"
        if output:
            Path(output).parent.mkdir(parents=True, exist_ok=True)
            Path(output).write_text(text)
            out.print(f"wrote {output}")
        else:
            sys.stdout.write(text)
        return EXIT_OK

    raise typer.Exit(_guard(body))


# -- status / runs ------------------------------------------------------------------------
@app.command()
def status(
    checkpoint: Annotated[str, typer.Argument(help="The run's checkpoint.db (or its run dir).")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    tracebacks: Annotated[bool, typer.Option(help="Show failures' tracebacks.")] = False,
) -> None:
    """Per-operation counts, failures with their errors, timings and jobs of a run."""

    def body() -> int:
        from specflow.run import Run

        with Run.open(checkpoint, drive=False) as run:
            ck = run.checkpoint
            info = run.info()
            state = run.status()
            counts = ck.counts()
            timings = ck.timings()
            failures: list[dict[str, Any]] = [
                {"id": r.id, "operation": r.operation, "attempts": r.attempts, "error": r.error,
                 "traceback": r.traceback, "log_path": r.log_path, "worker": r.worker}
                for r in ck.task_rows("failed")
            ]
            jobs = ck.jobs()
        data = {
            "run": info.id, "status": state, "spec_file": info.spec_file,
            "created": info.created, "updated": info.updated, "attempt": info.attempt,
            "specflow_version": info.specflow_version, "counts": counts, "timings": timings,
            "failures": failures, "jobs": jobs,
        }
        if as_json:
            sys.stdout.write(json.dumps(data, indent=2) + "\n")
            return EXIT_OK
        out.print(f"run [bold]{info.id}[/] · {state} · started "
                  f"{_when(info.created)} · updated {_when(info.updated)}")
        if info.spec_file:
            out.print(f"spec: {info.spec_file}")
        t = Table(title_justify="left")
        t.add_column("operation")
        t.add_column("done", justify="right")
        t.add_column("failed", justify="right")
        t.add_column("reused", justify="right")
        t.add_column("mean s", justify="right")
        t.add_column("max s", justify="right")
        for op, c in sorted(counts.items()):
            tm = timings.get(op, {})
            n = tm.get("n", 0)
            mean = f"{tm['total_s'] / n:.3f}" if n else "-"
            mx = f"{tm['max_s']:.3f}" if n else "-"
            t.add_row(op, f"{c.get('done', 0):,}", f"{c.get('failed', 0):,}",
                      f"{c.get('reused', 0):,}", mean, mx)
        out.print(t)
        for f in failures:
            out.print(f"[red]failed[/] {f['operation']} {str(f['id'])[:12]} "
                      f"({f['attempts']} attempts): ", end="")
            out.print(f["error"] or "", markup=False, highlight=False)
            if f["log_path"]:
                out.print(f"  log: {f['log_path']}", markup=False)
            if tracebacks and f["traceback"]:
                out.print(f["traceback"], markup=False, highlight=False)
        if jobs:
            j = Table(title="jobs", title_justify="left")
            for col in ("job_id", "state", "n_tasks", "efficiency", "log_path"):
                j.add_column(col)
            for job in jobs:
                busy, alloc = job.get("busy_s"), job.get("allocated_s")
                eff = (f"{busy / alloc:.0%} ({busy:.0f}/{alloc:.0f} s)"
                       if busy is not None and alloc else "-")
                j.add_row(str(job["job_id"]), job["state"], str(job["n_tasks"]), eff,
                          job["log_path"] or "")
                if job.get("note"):
                    j.add_row("", f"  {job['note']}", "", "", "")
            out.print(j)
        return EXIT_OK

    raise typer.Exit(_guard(body))


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


@app.command()
def runs(
    root: Annotated[str | None, typer.Option(help="Run root (default .specflow/runs).")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """The runs under the run root with their state."""

    def body() -> int:
        from specflow.execution.checkpoint import CheckpointError
        from specflow.run import Run, run_root

        base = Path(root) if root else run_root()
        rows: list[dict[str, Any]] = []
        for cpath in sorted(base.glob("*/checkpoint.db")):
            try:
                with Run.open(cpath, drive=False) as opened:
                    info = opened.info()
                    state = opened.status()
                    counts = opened.checkpoint.counts()
                done = sum(c.get("done", 0) for c in counts.values())
                failed = sum(c.get("failed", 0) for c in counts.values())
                rows.append({"run": info.id, "status": state, "created": info.created,
                             "done": done, "failed": failed, "spec": info.spec_file,
                             "checkpoint": str(cpath)})
            except (CheckpointError, OSError) as exc:
                try:
                    created = cpath.stat().st_mtime
                except OSError:
                    created = 0.0
                rows.append({"run": cpath.parent.name, "status": "damaged",
                             "problem": str(exc), "created": created, "done": 0, "failed": 0,
                             "spec": None, "checkpoint": str(cpath)})
        if as_json:
            sys.stdout.write(json.dumps(rows, indent=2) + "\n")
            return EXIT_OK
        if not rows:
            out.print(f"no runs under {base}")
            return EXIT_OK
        t = Table(title=str(base), title_justify="left")
        for c in ("run", "status", "started", "done", "failed", "spec"):
            t.add_column(c)
        for r in rows:
            t.add_row(r["run"], r["status"], _when(r["created"]), f"{r['done']:,}",
                      f"{r['failed']:,}", r["spec"] or "")
        out.print(t)
        return EXIT_OK

    raise typer.Exit(_guard(body))


def main() -> None:
    """Entry point of the ``specflow`` script."""
    if "--traceback" in sys.argv[1:]:
        sys.argv.remove("--traceback")
        _state["traceback"] = True
        sys.argv.insert(1, "--traceback")
    try:
        app()
    except SystemExit:
        raise
    except Exception:  # an unexpected failure: say so plainly, traceback on request
        if _state["traceback"] or os.environ.get("SPECFLOW_TRACEBACK"):
            raise
        etype, exc, _ = sys.exc_info()
        err.print(f"[bold red]internal error:[/] {etype.__name__ if etype else ''}: {exc}")
        err.print("run again with --traceback to see where it happened")
        sys.exit(EXIT_FAILED)


