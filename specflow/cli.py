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
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
def _width(stream: Any) -> int | None:
    """A terminal's own width; elsewhere wide enough that lines are not cut at 80 columns
    (``COLUMNS`` still decides when it is set)."""
    if os.environ.get("COLUMNS") or (hasattr(stream, "isatty") and stream.isatty()):
        return None
    return 250


out = Console(width=_width(sys.stdout))
err = Console(stderr=True, width=_width(sys.stderr))

_state: dict[str, bool] = {"traceback": False}

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

ImportOpt = Annotated[
    list[str] | None,
    typer.Option("--import", "-i", help="Import a module or .py file that registers operations "
                 "(a bare NAME finds NAME.py in the current directory), repeatable."),
]
BackendOpt = Annotated[
    str | None,
    typer.Option("--backend", "-b", help="Where tasks run: inline | local | slurm | dask."),
]
WorkersOpt = Annotated[
    int | None, typer.Option(min=1, help="Worker processes of the local and dask backends (>= 1).")
]
KeepGoingOpt = Annotated[
    bool | None,
    typer.Option("--keep-going/--fail-fast",
                 help="After a failure, skip only its dependents (default: stop the run)."),
]
ProgressOpt = Annotated[
    bool, typer.Option(help="Show the live progress table (task output is shown either way).")
]
QuietOpt = Annotated[
    bool, typer.Option("--quiet", "-q", help="Show neither progress nor task output (it is "
                       "still in the run's logs).")
]
AllowShellOpt = Annotated[
    bool, typer.Option("--allow-shell", help="Allow `shell` operations (run shell commands).")
]
AllowEvalOpt = Annotated[
    bool, typer.Option("--allow-eval", help="Allow `lambda` (evaluates Python text).")
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a spec value: PATH=VALUE (VALUE is YAML), repeatable."),
]


EventsLogOpt = Annotated[
    str | None,
    typer.Option("--events-log", help="Append the run's lifecycle events to FILE as JSON lines."),
]


def _event_listeners(path: str | None) -> list[Any]:
    if not path:
        return []
    from specflow.execution.events import EventLog

    try:
        return [EventLog(path)]
    except OSError as exc:
        _fail(f"--events-log {path}: {exc.strerror or exc}")


def _line(text: str, *, error: bool = False) -> None:
    """A line that may carry a path or a command: printed as it is, never wrapped."""
    (err if error else out).print(text, markup=False, highlight=False, soft_wrap=True)


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


def _print_version(value: bool) -> None:
    if value:
        sys.stdout.write(f"specflow {__version__}\n")
        raise typer.Exit(0)


@app.callback()
def main_callback(
    show_traceback: Annotated[
        bool, typer.Option("--traceback", help="Show Python tracebacks for errors.")
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", "-V", is_eager=True, callback=_print_version,
                           help="Print specflow's version and exit.")
    ] = False,
) -> None:
    _state["traceback"] = show_traceback


# -- run / resume -------------------------------------------------------------------------
@app.command()
def run(
    spec: Annotated[str, typer.Argument(help="The spec file (.cue, .yaml, .yml, .json).")],
    imports: ImportOpt = None,
    set_: SetOpt = None,
    backend: BackendOpt = None,
    workers: WorkersOpt = None,
    dask_address: Annotated[str | None, typer.Option(
        help="dask: connect to the scheduler at tcp://HOST:PORT instead of an embedded cluster."
    )] = None,
    run_dir: Annotated[str | None, typer.Option(
        help="Where the run's files go (default: a new folder under .specflow/runs).")] = None,
    keep_going: KeepGoingOpt = None,
    max_attempts: Annotated[int | None, typer.Option(
        min=1, help="Attempts in all for a task whose error is transient.")] = None,
    dry_run: Annotated[bool, typer.Option(
        help="Count per operation the tasks the run would execute; run and write nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option(
        "--json", help="With --dry-run: print the counts as JSON.")] = False,
    graph: Annotated[bool, typer.Option(
        "--graph", help="With --dry-run: show the flow graph (flows, waits, operations with "
        "their counts) instead of the counts table.")] = False,
    graph_format: Annotated[str | None, typer.Option(
        "--graph-format", metavar="text|dot|json",
        help="With --graph: a text tree (default), Graphviz DOT, or JSON.")] = None,
    graph_out: Annotated[str | None, typer.Option(
        "--graph-out", metavar="FILE",
        help="With --graph: write the graph to FILE and print the counts as usual.")] = None,
    allow_shell: AllowShellOpt = False,
    allow_eval: AllowEvalOpt = False,
    progress: ProgressOpt = True,
    quiet: QuietOpt = False,
    events_log: EventsLogOpt = None,
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
        opt_ins = runs.opt_ins_of(allow_shell=allow_shell, allow_eval=allow_eval)
        if as_json and not dry_run:
            _fail("--json goes with --dry-run (a run's JSON is `specflow status RUN --json`)")
        fmt = _check_graph_options(graph, graph_format, graph_out, dry_run, as_json, reuse)
        if explain and not reuse:
            _fail("--explain compares with an earlier run: give it with --reuse EARLIER")
        if reuse and (dry_run or explain):
            if _reuse_preview(spec, set_ or [], imports or [], reuse, opt_ins, dry_run, explain):
                return EXIT_OK
        if dry_run:
            sys.dont_write_bytecode = True  # not even the imported modules' caches
            loaded, source, _ = runs.load(spec, set_ or [], imports or [])
            prepared = runs.prepare(loaded, source, opt_ins=opt_ins)
            if graph:
                return _print_graph(spec, runs.count_tasks(prepared.target, graph=True), fmt,
                                    graph_out)
            return _print_dry_run(spec, runs.count_tasks(prepared.target), as_json)
        cli_settings = {"backend": backend, "workers": workers, "keep_going": keep_going,
                        "max_attempts": max_attempts,
                        "backend_settings": {"address": dask_address}}
        report, rdir = runs.run_spec(
            spec, overrides=set_ or [], imports=imports or [], cli_settings=cli_settings,
            run_dir=run_dir, opt_ins=opt_ins, progress=progress, quiet=quiet,
            listeners=_event_listeners(events_log), reuse=reuse or [],
        )
        _summary(report, rdir)
        return report.exit_code

    raise typer.Exit(_guard(body))


GRAPH_FORMATS = ("text", "dot", "json")


def _check_graph_options(graph: bool, fmt: str | None, out_path: str | None, dry_run: bool,
                         as_json: bool, reuse: list[str] | None) -> str:
    """The graph format, once the graph options are known to go together (else exit 2)."""
    if not graph:
        if fmt is not None or out_path is not None:
            given = "--graph-format" if fmt is not None else "--graph-out"
            _fail(f"{given} goes with --graph (and --dry-run): "
                  "specflow run SPEC --dry-run --graph ...")
        return "text"
    if not dry_run:
        _fail("--graph shows the flows a dry run walks, running nothing: add --dry-run "
              "(specflow run SPEC --dry-run --graph)")
    if as_json:
        _fail("--graph with --json: use --graph-format json (it holds the counts too)")
    if reuse:
        _fail("--graph does not tell reused tasks apart: drop --reuse (a dry run with "
              "--reuse counts them)")
    fmt = fmt or "text"
    if fmt not in GRAPH_FORMATS:
        _fail(f"--graph-format {fmt}: expected one of {', '.join(GRAPH_FORMATS)}")
    return fmt


def _print_graph(spec: str, result: Any, fmt: str, out_path: str | None) -> int:
    """Print (or write to ``out_path``) the flow graph of a dry run; the exit status as for
    :func:`_print_dry_run`."""
    from specflow.execution.flowgraph import render_dot, render_json, render_text

    at_least = "" if result.exact else "at least "
    title = f"{spec}: {at_least}{result.total:,} tasks (dry run)"
    if fmt == "dot":
        text = render_dot(result.graph, title)
    elif fmt == "json":
        text = render_json(result.graph, result.as_dict())
    else:
        text = f"{title}\n" + render_text(result.graph)
    if out_path is not None:
        try:
            Path(out_path).write_text(text, encoding="utf-8")
        except OSError as exc:
            _fail(f"--graph-out {out_path}: cannot write it ({exc.strerror or exc})")
        code = _print_dry_run(spec, result, False)
        out.print(f"flow graph ({fmt}) written to {out_path}", markup=False, highlight=False,
                  soft_wrap=True)
        return code
    sys.stdout.write(text)
    sys.stdout.flush()
    notes = err if fmt != "text" else out  # DOT and JSON keep stdout for themselves
    if result.duplicates and fmt == "text":
        notes.print(f"{result.duplicates:,} duplicate task(s) would run once", highlight=False)
    return _dry_run_ending(result, notes)


def _dry_run_ending(result: Any, notes: Console) -> int:
    """What a dry run could not count, and the failure it found (exit 2) if any."""
    if result.unknown:
        notes.print(f"at least {result.total:,} tasks: the rest depends on values only a run "
                    "produces", highlight=False)
        for u in result.unknown[:10]:
            notes.print(f"  counting stopped in flow {u.flow!r}: {u.reason}", markup=False,
                        highlight=False, soft_wrap=True)
        if len(result.unknown) > 10:
            notes.print(f"  ... and {len(result.unknown) - 10} more flows", highlight=False)
    if result.failure is not None:
        err.print("[bold red]error:[/] the run would fail: ", end="")
        err.print(result.failure.reason, markup=False, highlight=False, soft_wrap=True)
        return EXIT_USAGE
    return EXIT_OK


def _print_dry_run(spec: str, result: Any, as_json: bool) -> int:
    """Print a dry run's counts. Exit 0 when they are exact or only a run can tell the rest;
    2 when the walk found a failure the real run would meet."""
    if as_json:
        sys.stdout.write(json.dumps(result.as_dict(), indent=2) + "\n")
    else:
        out.print(f"{spec}: tasks per operation (dry run)", markup=False, highlight=False,
                  soft_wrap=True)
        t = Table()
        t.add_column("operation")
        t.add_column("tasks", justify="right")
        at_least = "" if result.exact else "≥ "
        for op, n in sorted(result.counts.items()):
            t.add_row(op, f"{at_least}{n:,}")
        t.add_row("[bold]total[/]", f"[bold]{at_least}{result.total:,}[/]")
        out.print(t)
        if result.duplicates:
            out.print(f"{result.duplicates:,} duplicate task(s) would run once")
        return _dry_run_ending(result, out)
    if result.failure is not None:
        err.print("[bold red]error:[/] the run would fail: ", end="")
        err.print(result.failure.reason, markup=False, highlight=False, soft_wrap=True)
        return EXIT_USAGE
    return EXIT_OK


@app.command()
def resume(
    checkpoint: Annotated[str, typer.Argument(help="The run's checkpoint.db (or its run dir).")],
    force: Annotated[bool, typer.Option(
        help="Resume even if the spec file or an imported module changed.")] = False,
    backend: BackendOpt = None,
    workers: WorkersOpt = None,
    dask_address: Annotated[str | None, typer.Option(help="dask: scheduler tcp://HOST:PORT.")] = None,
    keep_going: KeepGoingOpt = None,
    allow_shell: AllowShellOpt = False,
    allow_eval: AllowEvalOpt = False,
    progress: ProgressOpt = True,
    quiet: QuietOpt = False,
    events_log: EventsLogOpt = None,
) -> None:
    """Resume a stopped run where it started: tasks recorded as done are skipped. Opt-ins
    (--allow-shell, --allow-eval) must be given again: they are never taken from the
    checkpoint."""

    def body() -> int:
        from specflow import run as runs

        _load_builtins()
        _check_backend(backend)
        report, rdir, skipped = runs.resume_run(
            checkpoint, force=force, progress=progress, quiet=quiet,
            opt_ins=runs.opt_ins_of(allow_shell=allow_shell, allow_eval=allow_eval),
            cli_settings={"backend": backend, "workers": workers, "keep_going": keep_going,
                          "backend_settings": {"address": dask_address}},
            say=lambda text: err.print(text, markup=False, highlight=False, soft_wrap=True),
            listeners=_event_listeners(events_log),
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
    ck = rdir / "checkpoint.db"
    if report.result is not None:
        _line(f"result: {_short(report.result)}")
    for f in report.failures[:5]:
        _failure_lines(f.operation, f.task_id, f.attempts, f.error, f.args, f.log_path, ck)
    if len(report.failures) > 5:
        _line(f"... and {len(report.failures) - 5} more failures: specflow status {ck} "
              "--failures", error=True)
    if report.skipped_flows:
        err.print(f"skipped {len(report.skipped_flows)} flow(s) that depend on failed tasks")
    _line(f"checkpoint: {ck}")
    if report.status != "done":
        _line(f"resume with: specflow resume {ck}")


def _short(value: Any, limit: int = 300) -> str:
    from specflow.run.inspect import jsonable

    text = json.dumps(jsonable(value), default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _failure_lines(op: str, task_id: str, attempts: int, error: str | None, args: str | None,
                   log: str | None, ck: Path | str, *, to_err: bool = True) -> None:
    con = err if to_err else out
    con.print(f"[red]failed[/] {op} {task_id[:12]} after {attempts} attempt(s): ", end="",
              soft_wrap=True)
    con.print(error or "failed", markup=False, highlight=False, soft_wrap=True)
    if args:
        _line(f"  input: {args}", error=to_err)
    if log:
        _line(f"  log: {log}", error=to_err)
    if not task_id.startswith("flow:"):
        _line(f"  traceback: specflow status {ck} --task {task_id[:12]}", error=to_err)


# -- validate / export / types / schema --------------------------------------------------
@app.command()
def validate(
    specs: Annotated[list[str], typer.Argument(help="Spec files to check.")],
    imports: ImportOpt = None,
    set_: SetOpt = None,
    allow_shell: AllowShellOpt = False,
    allow_eval: AllowEvalOpt = False,
) -> None:
    """Check each spec as `run` would before running a task: against the registry and its
    JSON Schema, then built (building writes nothing) and its flows walked like a dry run,
    for their first tasks. Runs and writes nothing. Reports every problem; exit 2 on any (a
    type that needs an opt-in the command line does not give is one)."""

    def body() -> int:
        import jsonschema

        from specflow import run as runs
        from specflow.builder import import_user_module
        from specflow.builder.check import check_spec
        from specflow.builder.schema import registry_schema
        from specflow.spec import SpecError
        from specflow.spec.source import format_path

        sys.dont_write_bytecode = True  # validating writes nothing, not even module caches
        _load_builtins()
        for name in imports or []:  # before the schema: it must know the module's types
            import_user_module(name)
        validator = jsonschema.Draft202012Validator(registry_schema())
        granted = runs.opt_ins_of(allow_shell=allow_shell, allow_eval=allow_eval)
        bad = 0
        for path in specs:
            try:
                loaded, source, _ = runs.load(path, set_ or [])
            except SpecError as exc:
                bad += 1
                err.print(f"[red]✗[/] {path}: ", end="")
                err.print(str(exc), markup=False, highlight=False)
                continue
            problems = check_spec(loaded, source, opt_ins=granted)
            if not problems:
                for e in validator.iter_errors(loaded):
                    where = format_path(list(e.absolute_path))
                    problems.append(SpecError(_short_schema_error(e), path=where or None,
                                              locations=[source.locate(where)]))
            notes: list[str] = []
            if not problems:
                problems, notes = _check_as_run(loaded, source, granted)
            if problems:
                bad += 1
                err.print(f"[red]✗[/] {path}: {len(problems)} problem(s)")
                for problem in problems:
                    err.print("  " + str(problem).replace("\n", "\n  "), markup=False,
                              highlight=False)
            else:
                out.print(f"[green]✓[/] {path}")
            for note in notes:
                out.print(f"  note: {note}", markup=False, highlight=False, soft_wrap=True)
        return EXIT_USAGE if bad else EXIT_OK

    raise typer.Exit(_guard(body))


VALIDATE_TASKS_PER_FLOW = 1000


def _check_as_run(loaded: Any, source: Any,
                  granted: frozenset[str] = frozenset()) -> tuple[list[Any], list[str]]:
    """What ``run`` would refuse before running a task: the spec is built (building writes
    nothing) and must be runnable, and every flow is walked as a dry run does, for its first
    tasks, so that flows refusing their configuration are found. Returns the problems and
    notes (the opt-ins the run will need)."""
    from specflow import run as runs
    from specflow.execution.dryrun import DryRun
    from specflow.spec import SpecError

    notes = []
    if _uses_type(loaded, "shell"):
        notes.append("the run will need --allow-shell (the spec runs shell commands)")
    try:
        prepared = runs.prepare(loaded, source, opt_ins=granted)
    except SpecError as exc:
        return [exc], notes
    result = DryRun(tasks_per_flow=VALIDATE_TASKS_PER_FLOW).run(prepared.target)
    if result.failure is not None:
        return [SpecError(f"the run would fail: {result.failure.reason}")], notes
    return [], notes


def _uses_type(spec: Any, name: str) -> bool:
    stack = [spec]
    seen: set[int] = set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, dict):
            if node.get("@type") == name:
                return True
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


def _short_schema_error(e: Any) -> str:
    msg = str(e.message)
    return msg if len(msg) < 200 else msg[:197] + "..."


def _is_run(path: str) -> bool:
    p = Path(path)
    return (p.is_dir() and (p / "checkpoint.db").is_file()) or (p.is_file() and p.suffix == ".db")


@app.command()
def export(
    spec: Annotated[str, typer.Argument(
        help="A spec file, or a run (its run dir or checkpoint.db).")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="json | yaml")] = "json",
    imports: ImportOpt = None,
    set_: SetOpt = None,
    spec_only: Annotated[bool, typer.Option(
        help="For a run: print only its resolved spec (a spec file you can run).")] = False,
) -> None:
    """Print the resolved spec (after CUE evaluation and --set overrides), or what a run used.

    For a run (its run dir or checkpoint.db): the resolved spec, overrides, imports and
    settings it used."""

    def body() -> int:
        from specflow import run as runs

        if fmt not in ("json", "yaml"):
            _fail(f"--format {fmt}: expected json or yaml")
        data: Any
        if _is_run(spec):
            from specflow.run import Run

            with Run.open(spec, drive=False) as opened:
                info = opened.info()
            from specflow.spec import apply_overrides

            resolved = apply_overrides(info.spec, set_ or [])
            data = resolved if spec_only else {
                "run": info.id, "spec_file": info.spec_file, "spec": resolved,
                "overrides": info.overrides, "imports": [r["name"] for r in info.imports],
                "settings": info.settings, "specflow_version": info.specflow_version,
                "start_dir": info.start_dir,
            }
        else:
            data, _, _ = runs.load(spec, set_ or [], imports or [])
        if fmt == "json":
            sys.stdout.write(json.dumps(data, indent=2) + "\n")
        else:
            sys.stdout.write(yaml.safe_dump(data, sort_keys=False))
        return EXIT_OK

    raise typer.Exit(_guard(body))


def _first_line(doc: str | None) -> str:
    for line in (doc or "").strip().splitlines():
        if line.strip():
            return line.strip()
    return ""


@app.command()
def types(
    imports: ImportOpt = None,
    name: Annotated[str | None, typer.Argument(
        help="A type's name: its full signature and doc (or the types whose name contains "
             "it).")] = None,
) -> None:
    """Every registered @type, one line each with the first line of its doc."""

    def body() -> int:
        import inspect

        from specflow.builder import entries, import_user_module

        _load_builtins()
        for i in imports or []:
            import_user_module(i)
        every = list(entries())
        exact = [e for e in every if e.name == name]
        if exact:
            e = exact[0]
            sig = e.signature()
            pure = getattr(getattr(e.fn, "options", None), "pure", False)
            _line(f"{e.name}{sig if sig else '(...)'}{'  (pure)' if pure else ''}")
            _line(f"  versions: {e.versions} · from {e.module}")
            doc = inspect.getdoc(e.fn) or ""
            if doc:
                _line("")
                for line in doc.splitlines():
                    _line(f"  {line}".rstrip())
            return EXIT_OK
        shown = [e for e in every if not name or name in e.name]
        if not shown:
            _fail(f"no registered type named {name!r} (see `specflow types`)")
        width = max(len(e.name) for e in shown)
        for e in shown:
            doc = _first_line(inspect.getdoc(e.fn))
            _line(f"{e.name.ljust(width)}  {doc}".rstrip())
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


# -- status / runs / clean / report -------------------------------------------------------
RunArg = Annotated[str, typer.Argument(help="The run's checkpoint.db (or its run dir).")]


@app.command()
def status(
    checkpoint: RunArg,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    tracebacks: Annotated[bool, typer.Option(help="Show failures' tracebacks.")] = False,
    failures_only: Annotated[bool, typer.Option(
        "--failures", help="Show only the failed tasks.")] = False,
    tasks: Annotated[bool, typer.Option(
        "--tasks", help="List every task (id, operation, status, attempts, input, value, ...).")
    ] = False,
    op: Annotated[str | None, typer.Option(
        "--op", help="Only tasks of this operation (with --failures or --tasks).")] = None,
    limit: Annotated[int | None, typer.Option(
        min=0, help="At most this many tasks (with --failures or --tasks).")] = None,
    task: Annotated[str | None, typer.Option(
        "--task", help="One task in full, by its id or an id prefix: input, value, log and "
        "traceback.")] = None,
    state: Annotated[list[str] | None, typer.Option(
        "--state", help="With --tasks: only tasks in this state (pending, queued, running, "
        "done, failed, cancelled, timeout, skipped, reused); may be repeated.")] = None,
) -> None:
    """Counts and times per operation, values, failures with their inputs, and jobs of a run."""
    from specflow.execution.checkpoint import TASK_STATUSES

    for st in state or ():
        if st not in TASK_STATUSES:
            _fail(f"--state {st}: expected one of {', '.join(TASK_STATUSES)}")

    def body() -> int:
        from specflow.run import Run
        from specflow.run.inspect import dumps, run_data, task_dict

        with Run.open(checkpoint, drive=False) as run:
            ck_path = run.checkpoint.path
            if task is not None:
                found = [r for r in run.task_rows() if r.id.startswith(task)]
                if not found:
                    _fail(f"--task {task}: no task of this run has an id starting so")
                if len(found) > 1:
                    _fail(f"--task {task}: {len(found)} tasks match; give more of the id")
                one = task_dict(run.checkpoint, found[0])
                if as_json:
                    sys.stdout.write(dumps(one) + "\n")
                    return EXIT_OK
                for k in ("id", "operation", "status", "attempts", "args", "worker", "log",
                          "started", "finished"):
                    v = one[k]
                    if k in ("started", "finished") and v:
                        v = _when(v)
                    _line(f"{'input' if k == 'args' else k}: {v if v is not None else '-'}")
                if one["value"] is not None:
                    _line(f"value: {_short(one['value'], 2000)}")
                if one["error"]:
                    _line(f"error: {one['error']}")
                if one["traceback"]:
                    _line(one["traceback"].rstrip())
                return EXIT_OK
            data = run_data(run, tasks=tasks, operation=op, limit=limit, states=state)
        if as_json:
            sys.stdout.write(dumps(data) + "\n")
            return EXIT_OK
        failures: list[dict[str, Any]] = data["failures"]
        if not failures_only:
            _status_text(data)
        if tasks:
            t = Table(title="tasks", title_justify="left")
            for col in ("id", "operation", "status", "attempts", "s", "input"):
                t.add_column(col, overflow="fold")
            for r in data["tasks"]:
                dur = (f"{r['finished'] - r['started']:.3f}"
                       if r["started"] is not None and r["finished"] is not None else "-")
                t.add_row(r["id"][:12], r["operation"], r["status"], str(r["attempts"]), dur,
                          r["args"] or "")
            out.print(t)
        shown = failures if (failures_only or limit is not None) else failures[:10]
        for f in shown:
            _failure_lines(f["operation"], f["id"], f["attempts"], f["error"], f["args"],
                           f["log"], ck_path, to_err=False)
            if tracebacks and f["traceback"]:
                _line(f["traceback"].rstrip())
        if len(shown) < len(failures):
            _line(f"... and {len(failures) - len(shown):,} more failures: specflow status "
                  f"{ck_path} --failures")
        if failures_only and not failures:
            out.print("no failed tasks" + (f" of {op}" if op else ""))
        return EXIT_OK

    raise typer.Exit(_guard(body))


def _status_text(data: dict[str, Any]) -> None:
    _line(f"run {data['run']} · {data['status']} · {data['backend'] or '?'} backend · started "
          f"{_when(data['created'])} · {_duration(data['duration'])} · attempt {data['attempt']}")
    if data["spec_file"]:
        _line(f"spec: {data['spec_file']}")
    t = Table(title_justify="left")
    t.add_column("operation")
    from specflow.run.inspect import status_columns

    shown = status_columns(data["totals"])
    for c in (*shown, "retries", "mean s", "p95 s", "max s"):
        t.add_column(c, justify="right")
    for op, c in sorted(data["counts"].items()):
        tm = data["timings"].get(op, {})
        n = tm.get("n", 0)
        t.add_row(op, *(f"{c.get(k, 0):,}" for k in shown),
                  f"{tm.get('retries', 0):,}",
                  f"{tm['mean_s']:.3f}" if n else "-", f"{tm['p95_s']:.3f}" if n else "-",
                  f"{tm['max_s']:.3f}" if n else "-")
    out.print(t)
    if data["result"] is not None:
        _line(f"result: {_short(data['result'])}")
    for st in data["stages"]:
        value = "" if st["value"] is None else f" → {_short(st['value'], 200)}"
        _line(f"  {st['position']}: {st['name']} ({st['status']}){value}")
    if data["skipped_flows"]:
        names = sorted(set(data["skipped_flows"]))
        _line(f"skipped: {len(data['skipped_flows']):,} flow(s) that depend on failed work "
              f"({', '.join(names[:5])}{', …' if len(names) > 5 else ''})")
    if data["jobs"]:
        j = Table(title="jobs", title_justify="left")
        for col in ("job_id", "state", "n_tasks", "efficiency", "log_path"):
            j.add_column(col, overflow="fold")
        for job in data["jobs"]:
            busy, alloc = job.get("busy_s"), job.get("allocated_s")
            eff = (f"{busy / alloc:.0%} ({busy:.0f}/{alloc:.0f} s)"
                   if busy is not None and alloc else "-")
            j.add_row(str(job["job_id"]), job["state"], str(job["n_tasks"]), eff,
                      job["log_path"] or "")
            if job.get("note"):
                j.add_row("", f"  {job['note']}", "", "", "")
        out.print(j)


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    m, sec = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{sec:02d}s" if h else f"{m}m{sec:02d}s"


def _run_rows(base: Path, include_indexed: bool) -> list[dict[str, Any]]:
    from specflow.execution.checkpoint import CheckpointError
    from specflow.run import Run
    from specflow.run.index import indexed

    paths = sorted(base.glob("*/checkpoint.db"))
    if include_indexed:
        paths += [p / "checkpoint.db" for p in indexed(base)]
    rows: list[dict[str, Any]] = []
    for cpath in paths:
        try:
            with Run.open(cpath, drive=False) as opened:
                info = opened.info()
                state = opened.status()
                counts = opened.counts()
            done = sum(c.get("done", 0) + c.get("reused", 0) for c in counts.values())
            failed = sum(c.get("failed", 0) + c.get("timeout", 0) for c in counts.values())
            rows.append({"run": info.id, "status": state, "created": info.created,
                         "updated": info.updated,
                         "duration": max(0.0, info.updated - info.created),
                         "backend": info.settings.get("backend"), "attempts": info.attempt,
                         "done": done, "failed": failed, "spec": info.spec_file,
                         "run_dir": str(cpath.parent), "checkpoint": str(cpath)})
        except (CheckpointError, OSError) as exc:
            try:
                created = cpath.stat().st_mtime
            except OSError:
                created = 0.0
            rows.append({"run": cpath.parent.name, "status": "damaged", "problem": str(exc),
                         "created": created, "updated": created, "duration": 0.0,
                         "backend": None, "attempts": 0, "done": 0, "failed": 0, "spec": None,
                         "run_dir": str(cpath.parent), "checkpoint": str(cpath)})
    rows.sort(key=lambda r: r["created"])
    return rows


RootOpt = Annotated[str | None, typer.Option(
    help="The run root (default .specflow/runs, or $SPECFLOW_RUN_ROOT).")]
AllOpt = Annotated[bool, typer.Option(
    "--all", help="Include runs made with --run-dir elsewhere (from the run root's index).")]


@app.command()
def runs(
    root: RootOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    include_all: AllOpt = False,
) -> None:
    """The runs under the run root with their state, duration, backend and attempts."""

    def body() -> int:
        from specflow.run import run_root

        base = Path(root).absolute() if root else run_root()
        rows = _run_rows(base, include_all)
        if as_json:
            sys.stdout.write(json.dumps(rows, indent=2) + "\n")
            return EXIT_OK
        if not rows:
            _line(f"no runs under {base}")
        t = Table(title=str(base), title_justify="left")
        for c in ("run", "status", "started", "duration", "backend", "attempts", "done",
                  "failed", "spec"):
            t.add_column(c, overflow="fold")
        for r in rows:
            t.add_row(r["run"], r["status"], _when(r["created"]), _duration(r["duration"]),
                      r["backend"] or "", str(r["attempts"]), f"{r['done']:,}",
                      f"{r['failed']:,}", r["spec"] or "")
        if rows:
            out.print(t)
        if not include_all:
            from specflow.run.index import indexed

            n = len(indexed(base))
            if n:
                out.print(f"(and {n} run(s) made with --run-dir elsewhere: --all lists them)")
        return EXIT_OK

    raise typer.Exit(_guard(body))


def _age(text: str) -> float:
    import re

    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text)
    if not m:
        _fail(f"--older-than {text}: expected a number with a unit, e.g. 7d, 12h, 30m")
    unit = {"": 86400, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}[m.group(2)]
    return float(m.group(1)) * unit


@app.command()
def clean(
    older_than: Annotated[str | None, typer.Option(
        help="Remove runs last updated longer ago than this (e.g. 7d, 12h, 30m).")] = None,
    keep: Annotated[int | None, typer.Option(
        min=0, help="Keep the newest N runs, remove older ones.")] = None,
    root: RootOpt = None,
    include_all: AllOpt = False,
    dry_run: Annotated[bool, typer.Option(
        help="Only say which runs would be removed.")] = False,
    cache: Annotated[bool, typer.Option(
        "--cache", help="Also empty the cache of pure operations' values (.specflow/cache).")
    ] = False,
) -> None:
    """Remove old runs' folders (and, with --cache, cached values). A run whose driver is
    alive is never removed."""

    def body() -> int:
        import shutil

        from specflow.run import run_root
        from specflow.run.index import forget
        from specflow.run.record import LIVE_STATUSES

        if cache:
            from specflow.execution.cache import clear_cache
            from specflow.run.api import cache_dir

            folder = cache_dir()
            if dry_run:
                _line(f"would empty the cache {folder}")
            else:
                n, size = clear_cache(folder)
                _line(f"removed {n:,} cached value(s), {size:,} bytes, from {folder}")
            if older_than is None and keep is None:
                return EXIT_OK
        if older_than is None and keep is None:
            _fail("say what to remove: --older-than AGE and/or --keep N (or --cache)")
        max_age = _age(older_than) if older_than is not None else None
        base = Path(root).absolute() if root else run_root()
        rows = _run_rows(base, include_all)
        rows.sort(key=lambda r: r["updated"], reverse=True)
        now = dt.datetime.now().timestamp()
        doomed = []
        for i, r in enumerate(rows):
            old = max_age is None or now - r["updated"] > max_age
            beyond = keep is None or i >= keep
            if old and beyond:
                doomed.append(r)
        removed: set[Path] = set()
        for r in doomed:
            if r["status"] in LIVE_STATUSES:
                _line(f"kept {r['run_dir']}: its driver is alive ({r['status']})")
                continue
            if dry_run:
                _line(f"would remove {r['run_dir']} ({r['status']}, updated "
                      f"{_when(r['updated'])})")
                continue
            shutil.rmtree(r["run_dir"], ignore_errors=True)
            removed.add(Path(r["run_dir"]))
            _line(f"removed {r['run_dir']}")
        if removed:
            forget(base, removed)
        if not doomed:
            out.print("nothing to remove")
        return EXIT_OK

    raise typer.Exit(_guard(body))


@app.command()
def report(
    checkpoint: RunArg,
    output: Annotated[str | None, typer.Option(
        "--output", "-o", help="The HTML file to write (default: report.html in the run dir).")
    ] = None,
    trace: Annotated[str | None, typer.Option(
        help="Also write a per-task trace (tab-separated, one row per task) to this file.")
    ] = None,
) -> None:
    """Write one self-contained HTML page that shows a run.

    Summary, operations, a timeline of every task by worker, failures with their inputs,
    tracebacks and logs, and for volume runs a map of the processed chunks."""

    def body() -> int:
        from specflow.run import Run
        from specflow.run.report import write_report, write_trace

        with Run.open(checkpoint, drive=False) as run:
            target = Path(output) if output else run.run_dir / "report.html"
            write_report(run, target)
            _line(f"report: {target}")
            if trace:
                n = write_trace(run, Path(trace))
                _line(f"trace: {trace} ({n:,} tasks)")
        return EXIT_OK

    raise typer.Exit(_guard(body))


# -- serve --------------------------------------------------------------------------------
@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on (non-loopback needs --token).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8765,
    token: Annotated[
        str | None, typer.Option(help="Require `Authorization: Bearer TOKEN` on every request.")
    ] = None,
    root: Annotated[str | None, typer.Option(help="Run root (default .specflow/runs).")] = None,
    allow_shell: Annotated[bool, typer.Option(help="Let submitted specs use `shell`.")] = False,
    allow_eval: Annotated[bool, typer.Option(help="Let submitted specs use `lambda`.")] = False,
    max_runs: Annotated[int, typer.Option(help="Runs at once, at most.", min=1)] = 4,
) -> None:
    """Accept specs over HTTP, run them under the run root, and show them on a live
    dashboard (needs `pip install 'specflow[serve]'`)."""

    def body() -> int:
        from specflow.run import run_root

        try:
            from specflow.serve import ServeConfig
            from specflow.serve import serve as serve_http
            from specflow.serve.app import is_loopback
        except ImportError as exc:  # pragma: no cover - the extra is not installed
            _fail(f"specflow serve needs the serve extra (pip install 'specflow[serve]'): {exc}")
        if not is_loopback(host) and not token:
            _fail(f"--host {host} is reachable from other machines: give --token TOKEN")
        _load_builtins()
        opt = frozenset(n for n, on in (("shell", allow_shell), ("eval", allow_eval)) if on)
        base = Path(root) if root else run_root()
        err.print(f"specflow serve: http://{host}:{port}/ (runs under {base})",
                  markup=False, highlight=False, soft_wrap=True)
        serve_http(ServeConfig(host=host, port=port, token=token, root=base, opt_ins=opt,
                               max_runs=max_runs))
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


