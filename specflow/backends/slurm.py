"""Runs tasks as SLURM jobs, submitted through submitit.

Tasks are grouped: one SLURM job (an element of a job array) runs a list of tasks one after
another and returns their outcomes. Grouping keeps the per-task cost of a cluster low; the
group size adapts to the cluster's width and to how long tasks take, or is fixed with
``tasks_per_job``.

How the driver learns what happened, cheaply:

* every job appends one record per finished task to its own *outcome stream* file, so
  outcomes reach the executor while the job still runs, and a job that is killed midway still
  reports the tasks it finished;
* one ``squeue`` call per poll interval (filtered by this run's job name) gives every job's
  state; ``sacct`` is asked only about jobs that ``squeue`` no longer knows;
* a job that ended without reporting all its tasks (cancelled, failed, timed out, preempted,
  out of memory, node failure) returns ``lost`` outcomes for the rest, naming the job id, its
  state and its log file, so the executor retries them.

Each driver gets its own submitit folder under ``<run dir>/slurm/`` (SLURM job ids restart
when a cluster's state is wiped, so folders are never shared between drivers).
"""

from __future__ import annotations

import contextlib
import getpass
import math
import os
import pickle
import re
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from specflow.backends.base import (
    Backend,
    BackendContext,
    JobRecord,
    Outcome,
    import_modules,
    run_task,
    worker_name,
)
from specflow.flow.task import Task

#: job states after which a job will not report anything more
TERMINAL_STATES = frozenset({
    "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "PREEMPTED", "NODE_FAIL", "OUT_OF_MEMORY",
    "BOOT_FAIL", "DEADLINE", "REVOKED", "SPECIAL_EXIT",
})

#: seconds to wait for the outcome stream or the result file of a job that SLURM says ended
#: (shared file systems can show a file a little after its writer exited)
GRACE_COMPLETED_S = 15.0
GRACE_OTHER_S = 3.0
#: while jobs run, how long tasks submitted close together are gathered into one array
LINGER_S = 0.25
#: a job that neither squeue nor sacct has shown for this long is taken as lost
UNKNOWN_JOB_S = 300.0
#: interval of the squeue poll
POLL_S = 1.0
#: auto grouping: most work in one job, once task durations are known (further bounded by
#: half the time limit)
MAX_JOB_WORK_S = 1800.0
#: auto grouping: most tasks in one job before any duration is known
AUTO_MAX_TASKS_PER_JOB = 1000
#: auto grouping: most tasks handed out at once
AUTO_WINDOW = 20_000
DEFAULT_TIME_LIMIT_MIN = 60

_LEN = struct.Struct("<Q")


class SlurmError(RuntimeError):
    """SLURM could not be used (no cluster here, or a command failed)."""


# ------------------------------------------------------------------------------- worker side
def _encode(outcome: Outcome) -> bytes:
    """One stream record: the task id and the pickled outcome, behind their length. The
    outcome is pickled on its own so that a value the driver cannot unpickle spoils only
    that task's outcome."""
    try:
        inner = pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001 - fall back to cloudpickle, then to an honest failure
        try:
            import cloudpickle

            inner = cloudpickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # noqa: BLE001
            outcome.ok = False
            outcome.value = None
            outcome.error = (
                f"TaskTransportError: the task's return value cannot be pickled: "
                f"{type(exc).__name__}: {exc}"
            )
            outcome.exc_types = ("TaskTransportError",)
            inner = pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL)
    data = pickle.dumps((outcome.task_id, inner), protocol=pickle.HIGHEST_PROTOCOL)
    return _LEN.pack(len(data)) + data


def _unpickle_outcome(task_id: str, inner: bytes) -> Outcome:
    try:
        outcome = pickle.loads(inner)
        if isinstance(outcome, Outcome):
            return outcome
        raise TypeError(f"expected an Outcome, got {type(outcome).__name__}")
    except Exception as exc:  # noqa: BLE001 - reported as the task's failure
        now = time.time()
        return Outcome(
            task_id, False,
            error=f"TaskTransportError: the outcome cannot be unpickled here: "
                  f"{type(exc).__name__}: {exc}",
            exc_types=("TaskTransportError",), started=now, finished=now,
        )


def _decode(buf: bytes) -> tuple[list[tuple[str, bytes]], int]:
    """The complete records at the start of ``buf`` (task id, pickled outcome) and how many
    bytes they span."""
    out: list[tuple[str, bytes]] = []
    pos = 0
    n = len(buf)
    while pos + _LEN.size <= n:
        (size,) = _LEN.unpack_from(buf, pos)
        end = pos + _LEN.size + size
        if end > n:
            break
        try:
            task_id, inner = pickle.loads(buf[pos + _LEN.size : end])
        except Exception:  # noqa: BLE001 - a damaged record: read no further
            break
        out.append((str(task_id), bytes(inner)))
        pos = end
    return out, pos


#: stream records that are not a task's outcome start with this
_NOTE = "!"


def _note(kind: str, **data: Any) -> bytes:
    payload = pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL)
    rec = pickle.dumps((_NOTE + kind, payload), protocol=pickle.HIGHEST_PROTOCOL)
    return _LEN.pack(len(rec)) + rec


def _slurm_end_time(limit_s: float | None) -> float | None:
    """When this job must be done: SLURM's end time for it (``SLURM_JOB_END_TIME``, or
    ``EndTime`` from ``scontrol``), but no later than ``limit_s`` after it started (SLURM
    rounds limits up to whole minutes; the limit asked for is the one kept). Without SLURM's
    word, ``limit_s`` from now."""
    times: dict[str, float] = {}
    for key, env in (("EndTime", "SLURM_JOB_END_TIME"), ("StartTime", "SLURM_JOB_START_TIME")):
        with contextlib.suppress(KeyError, ValueError):
            times[key] = float(os.environ[env])
    jid = os.environ.get("SLURM_JOB_ID")
    if "EndTime" not in times and jid and shutil.which("scontrol"):
        try:
            proc = _run(["scontrol", "show", "job", jid], timeout=20)
            for key in ("StartTime", "EndTime"):
                m = re.search(rf"\b{key}=(\d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\d)", proc.stdout)
                if m:
                    times[key] = time.mktime(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S"))
        except (OSError, subprocess.SubprocessError, ValueError, OverflowError):
            pass
    ends = [times["EndTime"]] if "EndTime" in times else []
    if limit_s:
        ends.append(times.get("StartTime", time.time()) + limit_s)
    return min(ends) if ends else None


def run_job(stream: str, imports: Sequence[str], payload: bytes,
            plan: dict[str, Any] | None = None) -> list[Outcome]:
    """The body of one SLURM job: import the user's modules, unpickle the tasks, run them
    one after another, append each outcome to ``stream`` as it finishes, and return the
    outcomes. A job that runs again (requeued) skips the tasks its stream already holds.
    On SIGTERM (scancel, preemption) the running task may finish, no new one starts.

    ``plan`` makes the job walltime-aware: ``limit_s`` (its time limit), ``expected``
    (seconds per operation, from the run so far) and ``margin_s``. A task whose expected
    duration (the longest this job saw of its operation, else the run's mean, else its
    ``runtime_limit_sec``) would not fit before the job's end is not started: the job notes
    in its stream that it drained and returns, and the driver hands the rest to a new job."""
    from specflow.backends.tuning import tune_allocator, tune_collector

    began = time.time()
    tune_allocator()
    import_modules(imports)
    tasks: list[Task] = pickle.loads(payload)
    tune_collector()
    done: dict[str, Outcome] = {}
    try:
        with open(stream, "rb") as f:
            for task_id, inner in _decode(f.read())[0]:
                if not task_id.startswith(_NOTE):
                    done[task_id] = _unpickle_outcome(task_id, inner)
    except FileNotFoundError:
        pass
    stopping: list[int] = []

    def on_term(signum: int, frame: Any) -> None:
        stopping.append(signum)

    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, on_term) if in_main else None
    end = _slurm_end_time(plan.get("limit_s")) if plan and plan.get("limit_s") else None
    expected: dict[str, float] = dict((plan or {}).get("expected") or {})
    margin = float((plan or {}).get("margin_s") or 0.0)
    longest: dict[str, float] = {}
    fd = os.open(stream, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        if plan:
            os.write(fd, _note("begin", at=began, end=end))
        for i, task in enumerate(tasks):
            if stopping:
                break
            if task.id in done:
                continue
            if end is not None:
                need = longest.get(task.operation) or expected.get(task.operation) \
                    or task.runtime_limit_sec
                left = end - time.time()
                if need is not None and need + margin > left:
                    os.write(fd, _note("drain", at=time.time(), left_s=left, need_s=need,
                                       remaining=len(tasks) - i))
                    break
            outcome = run_task(task)
            os.write(fd, _encode(outcome))
            done[task.id] = outcome
            took = max(0.0, outcome.finished - outcome.started)
            longest[task.operation] = max(longest.get(task.operation, 0.0), took)
    finally:
        os.close(fd)
        if in_main:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
    return [done[t.id] for t in tasks if t.id in done]


# ------------------------------------------------------------------------------ driver side
@dataclass
class _Job:
    job_id: str
    tasks: dict[str, Task]
    n_tasks: int
    stream: Path
    log: Path
    result: Path
    submitted: float
    state: str = "PENDING"
    offset: int = 0
    ended_at: float | None = None
    last_seen: float = 0.0
    #: walltime: when the worker began, the work its tasks did, whether it drained
    began: float | None = None
    busy: float = 0.0
    last_finished: float = 0.0
    drained: str | None = None


def parse_time_limit(value: int | float | str | None) -> int:
    """Minutes from a number of minutes or a SLURM time (``MM``, ``MM:SS``, ``HH:MM:SS``,
    ``D-HH``, ``D-HH:MM``, ``D-HH:MM:SS``), rounded up."""
    if value is None:
        return DEFAULT_TIME_LIMIT_MIN
    if isinstance(value, bool):
        raise ValueError(f"time_limit: expected minutes or HH:MM:SS, got {value!r}")
    if isinstance(value, (int, float)):
        if value <= 0:
            raise ValueError(f"time_limit must be positive, got {value!r}")
        return max(1, math.ceil(value))
    text = str(value).strip()
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text)
    if not m:
        raise ValueError(f"time_limit: cannot read {value!r} (use minutes or HH:MM:SS)")
    days, a, b, c = (int(g) if g is not None else None for g in m.groups())
    assert a is not None
    if days is not None:  # D-HH[:MM[:SS]]
        seconds = days * 86400 + a * 3600 + (b or 0) * 60 + (c or 0)
    elif c is not None:  # HH:MM:SS
        seconds = a * 3600 + (b or 0) * 60 + c
    elif b is not None:  # MM:SS
        seconds = a * 60 + b
    else:  # MM
        seconds = a * 60
    if seconds <= 0:
        raise ValueError(f"time_limit must be positive, got {value!r}")
    return max(1, math.ceil(seconds / 60))


def parse_time_limit_s(value: int | float | str | None) -> int:
    """Seconds from the forms :func:`parse_time_limit` reads (a number is minutes)."""
    if isinstance(value, str) and not isinstance(value, bool):
        text = value.strip()
        m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text)
        if m:
            days, a, b, c = (int(g) if g is not None else None for g in m.groups())
            assert a is not None
            if days is not None:
                seconds = days * 86400 + a * 3600 + (b or 0) * 60 + (c or 0)
            elif c is not None:
                seconds = a * 3600 + (b or 0) * 60 + c
            elif b is not None:
                seconds = a * 60 + b
            else:
                seconds = a * 60
            if seconds > 0:
                return seconds
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return max(1, math.ceil(value * 60))
    return parse_time_limit(value) * 60


def _run(cmd: list[str], timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def _state_word(state: str) -> str:
    """``CANCELLED by 0`` → ``CANCELLED``; ``COMPLETED+`` → ``COMPLETED``."""
    word = state.strip().split(" ")[0].rstrip("+") if state.strip() else "UNKNOWN"
    return word.upper()


def _expand_ids(job_id: str) -> list[str]:
    """``12_[1-3,7%2]`` → ``12_1 12_2 12_3 12_7``; plain ids stay as they are."""
    m = re.fullmatch(r"(\d+)_\[([^\]]+)\]", job_id)
    if not m:
        return [job_id]
    main, spec = m.group(1), m.group(2).split("%")[0]
    out: list[str] = []
    for part in spec.split(","):
        if "-" in part:
            lo, hi = part.split("-", 1)
            out.extend(f"{main}_{i}" for i in range(int(lo), int(hi) + 1))
        elif part:
            out.append(f"{main}_{int(part)}")
    return out


def cluster_config() -> dict[str, str]:
    """``scontrol show config`` as a dict."""
    proc = _run(["scontrol", "show", "config"])
    if proc.returncode != 0:
        raise SlurmError(f"scontrol show config failed: {proc.stderr.strip()}")
    conf: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        if " = " in line:
            key, _, value = line.partition(" = ")
            conf[key.strip()] = value.strip()
    return conf


def partition_cpus(partition: str | None) -> int:
    """Total CPUs of ``partition`` (the default partition when None); 0 if unknown."""
    proc = _run(["sinfo", "-h", "-o", "%P|%C"])
    if proc.returncode != 0:
        return 0
    for line in proc.stdout.splitlines():
        name, _, cpus = line.partition("|")
        is_default = name.endswith("*")
        name = name.rstrip("*")
        if (partition is None and is_default) or name == partition:
            try:
                return int(cpus.split("/")[3])
            except (IndexError, ValueError):
                return 0
    return 0


def partition_names() -> set[str]:
    """The partitions of this cluster (empty when sinfo cannot tell)."""
    proc = _run(["sinfo", "-h", "-o", "%P"])
    if proc.returncode != 0:
        return set()
    return {line.strip().rstrip("*") for line in proc.stdout.splitlines() if line.strip()}


def partition_node_cpus(partition: str | None) -> int:
    """CPUs of the largest node of ``partition`` (the default one when None); 0 if unknown."""
    proc = _run(["sinfo", "-h", "-N", "-o", "%P|%c"])
    if proc.returncode != 0:
        return 0
    most = 0
    for line in proc.stdout.splitlines():
        name, _, cpus = line.partition("|")
        is_default = name.endswith("*")
        if (partition is None and is_default) or name.rstrip("*") == partition:
            try:
                most = max(most, int(cpus.strip()))
            except ValueError:
                continue
    return most


def _check_worker_types(raw: Any) -> dict[str, dict[str, Any]]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ValueError("worker_types must map a worker type's name to its job settings, "
                         "such as {gpu: {partition: gpu, gres: 'gpu:1'}}")
    out: dict[str, dict[str, Any]] = {}
    for name, entry in raw.items():
        if not isinstance(entry, dict):
            raise ValueError(f"worker_types.{name}: expected a mapping of job settings, "
                             f"got {type(entry).__name__}")
        unknown = sorted(set(entry) - _WORKER_TYPE_KEYS)
        if unknown:
            raise ValueError(f"worker_types.{name}: unknown setting(s) {', '.join(unknown)}; "
                             f"expected {', '.join(sorted(_WORKER_TYPE_KEYS))}")
        out[str(name)] = dict(entry)
    return out


class SlurmBackend(Backend):
    """Runs tasks on a SLURM cluster through submitit job arrays.

    Settings:
        partition: the partition to submit to (the cluster's default when None).
        time_limit: per job, minutes or ``HH:MM:SS`` (default 60 minutes).
        cpus_per_task, mem_gb (or mem, e.g. ``"500M"``), gres: what each job asks for.
        tasks_per_job: how many tasks one job runs; None adapts it to the cluster's width
            and to the measured task durations.
        array_parallelism: most elements of one array running at once.
        max_jobs_in_flight: most jobs submitted and not yet finished.
        setup: shell commands each job runs before the worker (module load, venv, ...).
        sbatch_options: more ``#SBATCH`` options, e.g. ``{"account": "lab", "qos": "low"}``.
        folder: where submitit keeps pickles and logs (default ``<run dir>/slurm``).
        python: the command that starts Python in a job (default: this interpreter).
        use_srun: run the worker through ``srun`` inside the job (one more launch step).
    """

    name = "slurm"

    def __init__(
        self,
        *,
        partition: str | None = None,
        time_limit: int | float | str | None = None,
        cpus_per_task: int | None = None,
        mem_gb: float | None = None,
        mem: str | None = None,
        gres: str | None = None,
        tasks_per_job: int | None = None,
        array_parallelism: int | None = None,
        max_jobs_in_flight: int = 512,
        setup: Sequence[str] | None = None,
        sbatch_options: dict[str, Any] | None = None,
        folder: str | os.PathLike[str] | None = None,
        python: str | None = None,
        use_srun: bool = False,
        poll_interval: float = POLL_S,
        job_name: str | None = None,
        min_job_minutes: float | None = None,
        walltime_margin_s: float | None = None,
        worker_types: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        if mem_gb is not None and mem is not None:
            raise ValueError("give mem_gb or mem, not both")
        if tasks_per_job is not None and tasks_per_job < 1:
            raise ValueError(f"tasks_per_job must be at least 1, got {tasks_per_job}")
        if array_parallelism is not None and array_parallelism < 1:
            raise ValueError(f"array_parallelism must be at least 1, got {array_parallelism}")
        if max_jobs_in_flight < 1:
            raise ValueError(f"max_jobs_in_flight must be at least 1, got {max_jobs_in_flight}")
        if cpus_per_task is not None and cpus_per_task < 1:
            raise ValueError(f"cpus_per_task must be at least 1, got {cpus_per_task}")
        self.partition = partition
        self.time_limit_min = parse_time_limit(time_limit)
        self.time_limit_s = parse_time_limit_s(time_limit)
        if min_job_minutes is not None and min_job_minutes < 0:
            raise ValueError(f"min_job_minutes must be >= 0, got {min_job_minutes}")
        self.min_job_s = (min_job_minutes or 0.0) * 60
        #: a job starts no task that would end closer than this to its time limit
        self.walltime_margin_s = (walltime_margin_s if walltime_margin_s is not None
                                  else min(60.0, max(1.0, self.time_limit_s * 0.1)))
        self.drained_jobs = 0
        self.cpus_per_task = cpus_per_task
        self.mem = mem if mem is not None else (_mem_text(mem_gb) if mem_gb is not None else None)
        self.gres = gres
        self.tasks_per_job = tasks_per_job
        self.array_parallelism = array_parallelism
        self.max_jobs_in_flight = max_jobs_in_flight
        self.setup = list(setup or [])
        self.sbatch_options = dict(sbatch_options or {})
        self.folder = Path(folder) if folder is not None else None
        self.python = python
        self.use_srun = use_srun
        self.poll_interval = poll_interval
        self.job_name = job_name
        self.worker_types = _check_worker_types(worker_types)
        # per (requirements, worker type): the job parameters of such tasks
        self._placements: dict[Any, tuple[tuple[str, Any], ...]] = {}
        self._executors: dict[tuple[tuple[str, Any], ...], Any] = {}
        self._partition_cpus: dict[str | None, int] = {}

        self._ctx: BackendContext | None = None
        self._name = job_name or "specflow"
        self._executor: Any = None
        self._dir: Path | None = None
        self._max_array = 1001
        self._slots = 1
        self._buffer: list[Task] = []
        self._last_submit = 0.0
        self._jobs: dict[str, _Job] = {}
        self._ready: list[Outcome] = []
        self._updates: dict[str, JobRecord] = {}
        self._last_poll = 0.0
        self._last_scan = 0.0
        # per operation: mean task duration and how many samples it is from
        self._durations: dict[str, tuple[float, int]] = {}
        self._auto_cap = AUTO_MAX_TASKS_PER_JOB
        self._submitted_jobs = 0
        self._in_jobs = 0  # tasks held by submitted jobs, not yet reported

    # -- setup ----------------------------------------------------------------------------
    def start(self, ctx: BackendContext) -> None:
        if shutil.which("sbatch") is None or shutil.which("squeue") is None:
            raise SlurmError("sbatch/squeue not found: this machine is not a SLURM submit host")
        self._ctx = ctx
        self._name = self.job_name or f"specflow-{ctx.run_id}"
        base = self.folder if self.folder is not None else Path(ctx.run_dir) / "slurm"
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self._dir = (base / f"driver-{stamp}-{os.getpid()}").absolute()
        (self._dir / "streams").mkdir(parents=True, exist_ok=True)
        try:
            self._max_array = max(1, int(cluster_config().get("MaxArraySize", "1001")))
        except (SlurmError, ValueError):
            self._max_array = 1001
        cpus = partition_cpus(self.partition)
        slots = max(1, cpus // (self.cpus_per_task or 1)) if cpus else 1
        if self.array_parallelism:
            slots = min(slots, self.array_parallelism)
        self._slots = max(1, min(slots, self.max_jobs_in_flight))
        self._executor = self._make_executor()
        if ctx.previous_jobs:
            self._cancel_previous(ctx.previous_jobs)

    def _make_executor(self, resources: tuple[tuple[str, Any], ...] = ()) -> Any:
        import submitit

        assert self._dir is not None
        ex = submitit.SlurmExecutor(
            folder=self._dir,
            python=self.python or shlex.quote(sys.executable),
        )
        params: dict[str, Any] = {
            "job_name": self._name,
            "time": self.time_limit_min,
            "stderr_to_stdout": True,
            "use_srun": self.use_srun,
            "array_parallelism": self.array_parallelism or self._max_array,
        }
        if self.partition:
            params["partition"] = self.partition
        if self.cpus_per_task:
            params["cpus_per_task"] = self.cpus_per_task
        if self.mem:
            params["mem"] = self.mem
        if self.gres:
            params["gres"] = self.gres
        if self.setup:
            params["setup"] = list(self.setup)
        extra = dict(self.sbatch_options)
        for key, value in resources:  # what the tasks of this array need
            if key == "sbatch_options":
                extra.update(dict(value))
            elif key == "constraint":
                extra["constraint"] = value
            elif key == "setup":
                params["setup"] = [*params.get("setup", []), *value]
            else:
                params[key] = value
        if self.time_limit_s % 60:  # a limit in seconds: SLURM reads MM:SS
            extra.setdefault("time", f"{self.time_limit_s // 60}:{self.time_limit_s % 60:02d}")
        if extra:
            params["additional_parameters"] = extra
        ex.update_parameters(**params)
        return ex

    def _cancel_previous(self, job_ids: Iterable[str]) -> None:
        """Cancel jobs an earlier driver of this run left behind, and wait until they have
        stopped, so that none of their tasks runs alongside this driver's. Their final
        states are reported through :meth:`job_updates`."""
        ids = sorted(set(job_ids))
        states = self._query_states(ids, own=False)
        alive = [j for j in ids if j in states and _state_word(states[j]) not in TERMINAL_STATES]
        if alive:
            _run(["scancel", *alive])
        deadline = time.monotonic() + 120
        while alive and time.monotonic() < deadline:
            time.sleep(0.5)
            now = self._query_states(alive, own=False)
            states.update(now)
            alive = [j for j in alive if j in now and
                     _state_word(now[j]) not in TERMINAL_STATES]
        for jid in ids:
            word = _state_word(states[jid]) if jid in states else ""
            if word in TERMINAL_STATES:
                self._updates[jid] = JobRecord(jid, word)

    # -- the Backend interface ------------------------------------------------------------
    def capacity(self) -> int:
        if self.tasks_per_job:
            window = self.max_jobs_in_flight * self.tasks_per_job
        else:
            window = min(AUTO_WINDOW, self.max_jobs_in_flight * self._auto_cap)
        return max(0, window - self.in_flight())

    def submit(self, tasks: Sequence[Task]) -> None:
        if not tasks:
            return
        self._buffer.extend(tasks)
        self._last_submit = time.monotonic()

    def in_flight(self) -> int:
        return len(self._buffer) + self._in_jobs + len(self._ready)

    def wait(self, timeout: float) -> list[Outcome]:
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            self._maybe_flush()
            self._scan()
            if self._ready:
                out, self._ready = self._ready, []
                return out
            now = time.monotonic()
            if now >= deadline or (not self._jobs and not self._buffer):
                return []
            time.sleep(min(self._scan_interval(), max(0.0, deadline - now)))

    def cancel(self) -> None:
        self._buffer.clear()
        jobs = list(self._jobs.values())
        if jobs:
            _run(["scancel", *sorted({j.job_id.split("_")[0] for j in jobs})])
        for job in jobs:
            self._set_state(job, "CANCELLED")
        self._jobs.clear()
        self._in_jobs = 0
        self._ready.clear()

    def close(self) -> None:
        if self._jobs or self._buffer:
            self.cancel()

    def job_updates(self) -> list[JobRecord]:
        out = list(self._updates.values())
        self._updates.clear()
        return out

    # -- submitting -----------------------------------------------------------------------
    def _maybe_flush(self) -> None:
        if not self._buffer:
            return
        # More tasks come from the executor only after outcomes unblock its flows: with no
        # job of ours running, everything it has is here. Otherwise outcomes may be about
        # to bring more, and a short wait gathers them into fewer, larger jobs.
        quiet = time.monotonic() - self._last_submit >= LINGER_S
        if not self._jobs or quiet or self.capacity() == 0:
            self._flush()

    def _estimate(self, tasks: Sequence[Task]) -> float | None:
        """Mean expected duration of ``tasks`` from their operations' past tasks; None
        while any operation among them has not finished a task yet."""
        counts: dict[str, int] = {}
        for t in tasks:
            counts[t.operation] = counts.get(t.operation, 0) + 1
        total = 0.0
        for op, k in counts.items():
            known = self._durations.get(op)
            if known is None:
                return None
            total += known[0] * k
        return total / max(1, len(tasks))

    def _job_size(self, tasks: Sequence[Task], slots: int | None = None) -> int:
        n = len(tasks)
        if self.tasks_per_job:
            return self.tasks_per_job
        # one job per slot of the cluster: as wide as it gets with the fewest job starts
        size = math.ceil(n / (slots or self._slots))
        cap = self._auto_cap
        per = self._estimate(tasks)
        if per is not None:
            # but not so much work in one job that it nears the time limit
            max_work = min(MAX_JOB_WORK_S, self.time_limit_s / 2)
            cap = min(cap, max(1, int(max_work / max(per, 1e-4))))
            if self.min_job_s:
                # few enough jobs that each runs for a useful while
                fits = max(1, int((self.time_limit_s - self.walltime_margin_s) / max(per, 1e-4)))
                size = max(size, min(fits, math.ceil(self.min_job_s / max(per, 1e-4))))
                cap = max(cap, min(size, fits))
        return max(1, min(size, cap, n))

    def _flush(self) -> None:
        if not self._buffer:
            return
        # tasks with different requirements go to different arrays, each with its resources
        by_resources: dict[tuple[tuple[str, Any], ...], list[Task]] = {}
        for t in self._buffer:
            by_resources.setdefault(self._resources_of(t), []).append(t)
        left: list[Task] = []
        for res, buffered in by_resources.items():
            left.extend(self._flush_group(res, buffered))
        self._buffer = left

    def _flush_group(self, res: tuple[tuple[str, Any], ...], buffered: list[Task]) -> list[Task]:
        """Submit what fits of ``buffered`` (tasks needing ``res``); returns the rest."""
        free = self.max_jobs_in_flight - len(self._jobs)
        if free <= 0:
            return buffered
        n = len(buffered)
        size = self._job_size(buffered, self._slots_for(res))
        n_jobs = min(math.ceil(n / size), free)
        take = min(n, n_jobs * size)
        tasks, rest = buffered[:take], buffered[take:]
        # spread evenly: job sizes differ by one at most
        groups = [tasks[i * take // n_jobs : (i + 1) * take // n_jobs] for i in range(n_jobs)]
        for start in range(0, len(groups), self._max_array):
            self._submit_array(groups[start : start + self._max_array], res)
        return rest

    # -- requirements ---------------------------------------------------------------------
    def _resources_of(self, task: Task) -> tuple[tuple[str, Any], ...]:
        """The job parameters ``task`` needs beyond the backend's own (empty: none)."""
        if task.requirements is None and task.worker_type is None:
            return ()
        key = (task.requirements, task.worker_type)
        found = self._placements.get(key)
        if found is None:
            found = self._placements[key] = self._placement(task)
        return found

    def _placement(self, task: Task) -> tuple[tuple[str, Any], ...]:
        out: dict[str, Any] = {}
        if task.worker_type is not None:
            entry = self.worker_types.get(task.worker_type)
            if entry is None:  # a partition of that name
                out["partition"] = task.worker_type
            else:
                for k, v in entry.items():
                    if k == "mem_gb":
                        out["mem"] = _mem_text(float(v))
                    elif k == "sbatch_options":  # hashable, to key the job arrays
                        out[k] = tuple(sorted(dict(v).items()))
                    elif k == "setup":
                        out[k] = tuple(v)
                    else:
                        out[k] = v
        req = task.requirements
        if req is not None:
            if req.cpus is not None:
                out["cpus_per_task"] = max(int(out.get("cpus_per_task") or 1),
                                           math.ceil(req.cpus))
            if req.mem_gb is not None:
                out["mem"] = _mem_text(req.mem_gb)
            if req.gpus:
                out["gres"] = f"gpu:{req.gpus}"
            if req.tags:
                out["constraint"] = "&".join(req.tags)
        return tuple(sorted(out.items(), key=lambda kv: kv[0]))

    def _slots_for(self, res: tuple[tuple[str, Any], ...]) -> int:
        if not res:
            return self._slots
        d = dict(res)
        partition = d.get("partition", self.partition)
        cpus = self._cpus_of(partition)
        per = int(d.get("cpus_per_task") or self.cpus_per_task or 1)
        slots = max(1, cpus // per) if cpus else 1
        if self.array_parallelism:
            slots = min(slots, self.array_parallelism)
        return max(1, min(slots, self.max_jobs_in_flight))

    def _cpus_of(self, partition: str | None) -> int:
        if partition not in self._partition_cpus:
            self._partition_cpus[partition] = partition_cpus(partition)
        return self._partition_cpus[partition]

    def unmet(self, task: Task) -> str | None:
        if task.worker_type is not None and task.worker_type not in self.worker_types:
            known = partition_names()
            if known and task.worker_type not in known:
                listed = ", ".join(sorted(self.worker_types)) or "none"
                return (f"worker_type {task.worker_type!r} is neither one of the backend's "
                        f"worker_types ({listed}) nor a partition of this cluster "
                        f"({', '.join(sorted(known))})")
        req = task.requirements
        if req is not None and req.cpus is not None:
            partition = dict(self._resources_of(task)).get("partition", self.partition)
            most = partition_node_cpus(partition)
            if most and req.cpus > most:
                return (f"it requires cpus={req.cpus:g}; the largest node of partition "
                        f"{partition or '(default)'} has {most} CPU(s)")
        return None

    def _submit_array(self, groups: list[list[Task]],
                      resources: tuple[tuple[str, Any], ...] = ()) -> None:
        assert self._dir is not None and self._ctx is not None
        import cloudpickle

        executor = self._executor
        if resources:
            executor = self._executors.get(resources)
            if executor is None:
                executor = self._executors[resources] = self._make_executor(resources)
        imports = tuple(self._ctx.imports)
        streams: list[Path] = []
        payloads: list[bytes] = []
        for group in groups:
            streams.append(self._dir / "streams" / f"{uuid.uuid4().hex}.out")
            payloads.append(cloudpickle.dumps(group, protocol=pickle.HIGHEST_PROTOCOL))
        plans = [self._plan(group) for group in groups]
        try:
            submitted = executor.map_array(
                run_job, [str(s) for s in streams], [imports] * len(groups), payloads, plans
            )
        except Exception as exc:  # noqa: BLE001 - sbatch refused: the tasks come back lost
            # (a controller that is restarting recovers; a bad setting fails again on every
            # retry and so fails the run after the executor's few lost attempts)
            now = time.time()
            why = f"SlurmSubmitError: sbatch failed: {type(exc).__name__}: {exc}"
            for group in groups:
                self._ready.extend(
                    Outcome(t.id, False, error=why, exc_types=("SlurmSubmitError",),
                            started=now, finished=now, worker=worker_name(), lost=True)
                    for t in group
                )
            return
        now = time.time()
        for sjob, group, stream in zip(submitted, groups, streams, strict=True):
            job = _Job(
                job_id=str(sjob.job_id),
                tasks={t.id: t for t in group},
                n_tasks=len(group),
                stream=stream,
                log=Path(sjob.paths.stdout),
                result=Path(sjob.paths.result_pickle),
                submitted=now,
                last_seen=time.monotonic(),
            )
            self._jobs[job.job_id] = job
            self._submitted_jobs += 1
            self._in_jobs += job.n_tasks
            self._updates[job.job_id] = JobRecord(job.job_id, "PENDING", job.n_tasks,
                                                  str(job.log))

    def _plan(self, group: Sequence[Task]) -> dict[str, Any]:
        """What a job needs to be walltime-aware (see :func:`run_job`)."""
        ops = {t.operation for t in group}
        return {"limit_s": self.time_limit_s, "margin_s": self.walltime_margin_s,
                "expected": {op: self._durations[op][0] for op in ops if op in self._durations}}

    # -- watching -------------------------------------------------------------------------
    def _scan_interval(self) -> float:
        return min(1.0, 0.05 + len(self._jobs) / 4000)

    def _scan(self) -> None:
        """Read new outcomes from the jobs' streams; poll SLURM now and then."""
        now = time.monotonic()
        if now - self._last_scan < self._scan_interval() and not self._ready:
            return
        self._last_scan = now
        for job in list(self._jobs.values()):
            self._read_stream(job)
        if self._jobs and now - self._last_poll >= self.poll_interval:
            self._last_poll = now
            self._poll()
        for job in list(self._jobs.values()):
            if job.ended_at is not None:
                self._settle(job)

    def _read_stream(self, job: _Job) -> None:
        try:
            size = job.stream.stat().st_size
        except FileNotFoundError:
            return
        if size <= job.offset:
            return
        if job.state == "PENDING":
            self._set_state(job, "RUNNING")
        with open(job.stream, "rb") as f:
            f.seek(job.offset)
            records, used = _decode(f.read(size - job.offset))
        job.offset += used
        for tid, inner in records:
            if tid.startswith(_NOTE):
                self._noted(job, tid[len(_NOTE):], inner)
        self._take(job, [_unpickle_outcome(tid, inner) for tid, inner in records
                         if tid in job.tasks])

    def _noted(self, job: _Job, kind: str, inner: bytes) -> None:
        try:
            data = pickle.loads(inner)
        except Exception:  # noqa: BLE001 - a damaged note only loses the note
            return
        if kind == "begin":
            job.began = float(data.get("at") or 0.0) or None
        elif kind == "drain":
            left = float(data.get("left_s") or 0.0)
            need = float(data.get("need_s") or 0.0)
            job.drained = (f"drained with {left:.0f} s left: {data.get('remaining')} task(s) "
                           f"of about {need:.1f} s each handed to a new job")
            self.drained_jobs += 1
            self._set_state(job, "DRAINING")

    def _take(self, job: _Job, outcomes: Iterable[Outcome]) -> None:
        for o in outcomes:
            task = job.tasks.pop(o.task_id, None)
            if task is None:
                continue  # a requeued job reporting a task again
            self._in_jobs -= 1
            o.log_path = str(job.log)
            job.busy += max(0.0, o.finished - o.started)
            job.last_finished = max(job.last_finished, o.finished)
            self._learn(task.operation, o)
            self._ready.append(o)
        if not job.tasks:
            # every task reported: keep the state SLURM gave if it already gave one
            self._finish(job, job.state if job.state in TERMINAL_STATES else "COMPLETED")

    def _learn(self, operation: str, o: Outcome) -> None:
        d = max(0.0, o.finished - o.started)
        mean, count = self._durations.get(operation, (0.0, 0))
        count += 1
        mean += (d - mean) / min(count, 100)
        self._durations[operation] = (mean, count)

    def _poll(self) -> None:
        states = self._query_states(list(self._jobs), own=True)
        now = time.monotonic()
        for job in list(self._jobs.values()):
            raw = states.get(job.job_id)
            if raw is None:
                # neither squeue nor sacct knows it (any more): after a while, it is lost
                if job.ended_at is None and now - job.last_seen > UNKNOWN_JOB_S:
                    job.ended_at = now
                    self._set_state(job, "LOST")
                continue
            job.last_seen = now
            word = _state_word(raw)
            if word in TERMINAL_STATES:
                if job.ended_at is None:
                    job.ended_at = now
                    self._set_state(job, word)
            else:
                # running, or back in the queue (requeued after it had seemed to end)
                job.ended_at = None
                if word != job.state:
                    self._set_state(job, word)

    def _query_states(self, job_ids: Sequence[str], *, own: bool) -> dict[str, str]:
        """States of ``job_ids``: ``squeue`` for what the controller still holds, ``sacct``
        for the rest; jobs neither knows (yet) are left out. ``own``: jobs of this driver
        (found by its job name); otherwise jobs of this user that specflow submitted (an
        earlier driver's). Job ids repeat when a cluster's state is wiped, so names are
        checked too."""

        def ours(name: str) -> bool:
            return name == self._name or (not own and name.startswith("specflow"))

        wanted = set(job_ids)
        states: dict[str, str] = {}
        who = ["-n", self._name] if own else ["-u", getpass.getuser()]
        proc = _run(["squeue", "-h", "-r", "-t", "all", *who, "-o", "%i|%T|%j"])
        if proc.returncode == 0:
            arrays: dict[str, str] = {}
            for line in proc.stdout.splitlines():
                parts = line.split("|", 2)
                if len(parts) == 3 and ours(parts[2].strip()):
                    jid, state = parts[0].strip(), parts[1].strip()
                    arrays[jid] = state
                    for j in _expand_ids(jid):
                        if j in wanted:
                            states[j] = state
            # pending elements of an array that ended (e.g. cancelled) are listed no more
            # one by one: the array's own record holds their state
            for j in wanted - set(states):
                main = j.split("_")[0]
                if "_" in j and _state_word(arrays.get(main, "")) in TERMINAL_STATES:
                    states[j] = arrays[main]
        missing = sorted(wanted - set(states))
        if missing and shutil.which("sacct"):
            mains = ",".join(sorted({m.split("_")[0] for m in missing}))
            cmd = ["sacct", "-X", "-n", "-P", "-o", "JobID,State,Submit,JobName",
                   "-S", "now-7days", "-j", mains]
            proc = _run(cmd)
            if proc.returncode == 0:
                latest: dict[str, str] = {}
                for line in proc.stdout.splitlines():
                    parts = line.split("|", 3)
                    if len(parts) < 4 or not ours(parts[3].strip()):
                        continue
                    for j in _expand_ids(parts[0].strip()):
                        if j in missing and parts[2] >= latest.get(j, ""):
                            latest[j] = parts[2]
                            states[j] = parts[1]
        return states

    def _settle(self, job: _Job) -> None:
        """A job SLURM says has ended: collect what it reported, then give up on the rest."""
        assert job.ended_at is not None
        self._read_stream(job)
        if job.job_id not in self._jobs:
            return  # the stream held everything
        if job.result.exists():
            try:
                with open(job.result, "rb") as f:
                    kind, value = pickle.load(f)
            except Exception:  # noqa: BLE001 - half-written or unreadable: wait, then lose
                kind, value = "unreadable", None
            if kind == "success" and isinstance(value, list):
                self._take(job, value)
                if job.job_id not in self._jobs:
                    return
                if job.drained:
                    self._requeue(job)
                    return
            elif kind == "error":
                self._fail_job(job, str(value))
                return
        grace = GRACE_COMPLETED_S if job.state == "COMPLETED" else GRACE_OTHER_S
        if time.monotonic() - job.ended_at < grace:
            return
        self._lose_job(job)

    def _requeue(self, job: _Job) -> None:
        """A job that drained before its time limit: the tasks it did not start go to a new
        job. They were never attempted, so nothing is counted against them."""
        rest = list(job.tasks.values())
        self._in_jobs -= len(rest)
        job.tasks.clear()
        self._buffer[:0] = rest
        self._last_submit = 0.0
        self._finish(job, "COMPLETED")

    def _fail_job(self, job: _Job, trace: str) -> None:
        """The job's Python code failed outside any task (e.g. a user module did not
        import): its remaining tasks fail with that traceback. Not lost: it would repeat."""
        last = trace.strip().splitlines()[-1] if trace.strip() else "unknown error"
        self._end_tasks(
            job, "FAILED", "SlurmJobError",
            f"job {job.job_id} failed outside its tasks: {last} (log: {job.log})",
            lost=False, trace=trace,
        )

    def _lose_job(self, job: _Job) -> None:
        state = job.state if job.state in TERMINAL_STATES else "LOST"
        if state == "COMPLETED":
            what = "completed without reporting"
        else:
            what = f"ended {state} before finishing"
        if state == "TIMEOUT" and not self.tasks_per_job:
            # smaller jobs next time, so that retried tasks fit in the time limit
            self._auto_cap = max(1, min(self._auto_cap, job.n_tasks // 2))
        self._end_tasks(
            job, state, "SlurmJobLost",
            f"job {job.job_id} {what} this task (state {state}; log: {job.log})", lost=True,
        )

    def _end_tasks(
        self, job: _Job, state: str, kind: str, why: str, *, lost: bool,
        trace: str | None = None,
    ) -> None:
        """Report every task ``job`` has not reported as failed with ``kind: why``, and
        finish the job in ``state``."""
        now = time.time()
        for task_id in job.tasks:
            self._ready.append(Outcome(
                task_id, False, error=f"{kind}: {why}", exc_types=(kind,), traceback=trace,
                started=now, finished=now, worker=f"slurm:{job.job_id}", lost=lost,
                log_path=str(job.log),
            ))
        self._in_jobs -= len(job.tasks)
        job.tasks.clear()
        self._finish(job, state)

    def _finish(self, job: _Job, state: str) -> None:
        self._jobs.pop(job.job_id, None)
        self._set_state(job, state)

    def _set_state(self, job: _Job, state: str) -> None:
        if state == job.state:
            return
        job.state = state
        rec = JobRecord(job.job_id, state, job.n_tasks, str(job.log))
        if job.began is not None and state in TERMINAL_STATES:
            # allocated: from the worker's start to its last task (or to now)
            end = max(job.last_finished, job.began)
            if state != "COMPLETED" or end <= job.began:
                end = max(end, time.time())
            rec.busy_s, rec.allocated_s = job.busy, max(end - job.began, job.busy)
        rec.note = job.drained
        self._updates[job.job_id] = rec

    def running_ids(self) -> set[str] | None:
        # a job runs its tasks one after another: the first without an outcome is running
        out = set()
        for job in self._jobs.values():
            if job.state == "RUNNING" or job.began is not None:
                first = next(iter(job.tasks), None)
                if first is not None:
                    out.add(first)
        return out

    # -- introspection (tests, benchmarks) ------------------------------------------------
    @property
    def folder_in_use(self) -> Path | None:
        """The submitit folder of this driver."""
        return self._dir

    def running_jobs(self) -> list[str]:
        """Ids of the jobs this backend submitted that have not finished."""
        return sorted(self._jobs)


def _mem_text(mem_gb: float) -> str:
    if mem_gb <= 0:
        raise ValueError(f"mem_gb must be positive, got {mem_gb}")
    if float(mem_gb).is_integer():
        return f"{int(mem_gb)}G"
    return f"{math.ceil(mem_gb * 1024)}M"


_SETTINGS = {
    "partition", "time_limit", "cpus_per_task", "mem_gb", "mem", "gres", "tasks_per_job",
    "array_parallelism", "max_jobs_in_flight", "setup", "sbatch_options", "folder", "python",
    "use_srun", "poll_interval", "job_name", "min_job_minutes", "walltime_margin_s",
    "worker_types",
}
#: what a ``worker_types`` entry may set for the jobs of its tasks
_WORKER_TYPE_KEYS = {"partition", "cpus_per_task", "mem_gb", "mem", "gres", "constraint",
                     "sbatch_options", "setup"}
_ALIASES = {"additional_parameters": "sbatch_options", "slurm_additional_parameters":
            "sbatch_options", "extra": "sbatch_options", "slurm_setup": "setup"}


def make_slurm_backend(**settings: Any) -> SlurmBackend:
    """A :class:`SlurmBackend` from spec or command-line settings (unset values dropped)."""
    clean: dict[str, Any] = {}
    for key, value in settings.items():
        key = _ALIASES.get(key, key)
        if key not in _SETTINGS:
            raise ValueError(
                f"unknown SLURM setting {key!r}; expected one of {', '.join(sorted(_SETTINGS))}"
            )
        if value is not None:
            clean[key] = value
    return SlurmBackend(**clean)


__all__ = [
    "SlurmBackend", "SlurmError", "make_slurm_backend", "parse_time_limit", "run_job",
]
