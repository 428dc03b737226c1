"""The executor: pulls tasks from flows lazily, hands batches to a backend, feeds outcomes
back to the flows, retries transient failures, and records everything in the checkpoint.

Memory grows with the tasks in flight (plus one id per finished task for deduplication),
never with the total number of tasks a flow will yield.
"""

from __future__ import annotations

import gc
import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Generator, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from specflow.backends.base import Backend, BackendContext, Outcome
from specflow.backends.tuning import relaxed_gc_thresholds
from specflow.execution.cache import MISSING as _CACHE_MISSING
from specflow.execution.cache import is_pure
from specflow.execution.events import Event, EventBus
from specflow.execution.reuse import MISSING as _REUSE_MISSING
from specflow.execution.rows import FlowRow
from specflow.execution.values import ValueNotStored
from specflow.flow.core import Dependency, Flow, FlowSchema, TaskableOperation
from specflow.flow.summary import summarise
from specflow.flow.task import Task, TransientErrorCondition, with_requirements
from specflow.spec import SpecError

if TYPE_CHECKING:
    from specflow.execution.checkpoint import Checkpoint

#: tasks per operation whose argument summary is recorded when the operation has no summariser
#: of its own (failures always get one): summaries cost a few microseconds each
SUMMARY_SAMPLE = 1000
#: items of the root flow whose values are kept as the run's stages
MAX_STAGES = 50
#: how often (seconds) the checkpoint's snapshot of unfinished tasks is refreshed
LIVE_INTERVAL = 0.5


class FlowError(Exception):
    """A flow yielded something it must not, or its generator raised."""


class _Unavailable:
    """A done task's value that the checkpoint could not give back (see ValueStore)."""

    __slots__ = ("why",)

    def __init__(self, why: str) -> None:
        self.why = why


@dataclass
class RetryPolicy:
    """How failed attempts are retried.

    A failure is retried when it matches a transient condition (the task's own or these),
    up to ``max_attempts`` attempts in all, waiting ``backoff_base * 2**(attempt-1)`` seconds
    (at most ``backoff_max``) before each retry. A task whose worker or job vanished is
    retried up to ``max_lost_attempts`` times.
    """

    max_attempts: int = 3
    backoff_base: float = 0.5
    backoff_max: float = 60.0
    transient: tuple[TransientErrorCondition, ...] = ()
    max_lost_attempts: int = 5

    def delay(self, attempt: int) -> float:
        return float(min(self.backoff_max, self.backoff_base * (2 ** max(0, attempt - 1))))


@dataclass
class Failure:
    task_id: str
    operation: str
    error: str
    traceback: str | None
    attempts: int
    log_path: str | None = None
    #: a short summary of the task's arguments
    args: str | None = None


@dataclass
class RunReport:
    """What a run did."""

    status: str = "running"  # done | failed | interrupted
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    skipped_flows: list[str] = field(default_factory=list)
    resumed_done: int = 0
    duplicates: int = 0
    started: float = field(default_factory=time.time)
    finished: float = 0.0
    #: tasks per operation that the flows declared they will yield (where they know)
    expected: dict[str, int] = field(default_factory=dict)
    #: what the run's flow returned
    result: Any = None

    @property
    def exit_code(self) -> int:
        return {"done": 0, "failed": 1, "interrupted": 130}.get(self.status, 1)

    @property
    def duration(self) -> float:
        return (self.finished or time.time()) - self.started

    def total(self, key: str) -> int:
        return sum(c.get(key, 0) for c in self.counts.values())


class _FlowRun:
    __slots__ = (
        "flow", "gen", "parent", "pending", "waiting", "wait_target", "exhausted",
        "failed", "closed", "result", "name", "stages", "executed", "tainted", "placement",
    )

    def __init__(self, flow: Flow, parent: _FlowRun | None) -> None:
        self.flow = flow
        self.gen: Generator[Any, Any, Any] | None = None
        self.parent = parent
        self.pending: set[Any] = set()  # task ids and child _FlowRuns not yet complete
        self.waiting: set[Any] | None = None
        self.wait_target: Any = None
        self.exhausted = False
        self.failed = False
        self.closed = False
        self.result: Any = None
        self.name: str = str(flow.name)
        self.stages: list[Any] | None = None  # the root's: what it yielded, in order
        # reuse: this flow (or a flow under it) yielded work that runs in this run; past a
        # barrier on such work, nothing below the flow is reused
        self.executed = False
        self.tainted: bool = parent.tainted if parent is not None else False
        #: requirements and worker type for tasks under it that state none (the nearest
        #: flow's that says)
        self.placement: tuple[Any, str | None] | None = (
            flow.placement or (parent.placement if parent is not None else None))


class _TaskState:
    __slots__ = ("task", "attempts", "parents", "lost", "since", "args")

    def __init__(self, task: Task) -> None:
        self.task = task
        self.attempts = 0
        self.lost = 0
        self.parents: list[_FlowRun] = []
        #: when it was last handed to the backend (None: waiting to be)
        self.since: float | None = None
        self.args: str | None = None


_OK = 0
_FAILED = 1
_UNCHECKED = object()


class RequirementError(SpecError):
    """A task states requirements (or a worker type) no worker of the backend meets."""


class Executor:
    """Runs one target to completion on one backend."""

    def __init__(
        self,
        backend: Backend,
        *,
        checkpoint: Checkpoint | None = None,
        keep_going: bool = False,
        retry: RetryPolicy | None = None,
        events: EventBus | None = None,
        progress: Any = None,
        context: BackendContext | None = None,
        batch_size: int = 256,
        reuse: Any = None,
        cache: Any = None,
    ) -> None:
        self.backend = backend
        #: values of pure operations (:class:`specflow.execution.cache.ResultCache`)
        self.cache = cache
        #: done work of earlier runs (:class:`specflow.execution.reuse.ReuseSource`)
        self.reuse = reuse
        self._executed: set[str] = set()
        self._preloaded_reused: set[str] = set()
        self.checkpoint = checkpoint
        self.keep_going = keep_going
        self.retry = retry or RetryPolicy()
        self.events = events or EventBus()
        self.progress = progress
        self.context = context
        self.batch_size = batch_size
        self.report = RunReport()
        self._seq = itertools.count()
        self._ready: list[tuple[int, int, _TaskState]] = []
        self._delayed: list[tuple[float, int, _TaskState]] = []
        self._runnable: deque[_FlowRun] = deque()
        self._active: dict[str, _TaskState] = {}
        self._done: set[str] = set()
        self._failed: dict[str, str] = {}
        self._values: dict[str, Any] = {}
        self._preloaded: set[str] = set()
        self._preloaded_values: dict[str, str] = {}
        self._root: _FlowRun | None = None
        self._stop = False
        self._summaries_left: dict[str, int] = {}
        self._recent_output = getattr(backend, "recent_output", None)
        self._runs_in_wait = bool(getattr(backend, "runs_in_wait", False))
        self._placement_checked: dict[Any, Any] = {}
        self._watch_lock = threading.Lock()
        #: tasks the watcher thread recorded as running (see _watch_current)
        self._watch_written: set[str] = set()
        self._live_changed = True
        self._live_next = 0.0
        self._live_running: set[str] | None = None
        #: what the checkpoint's live record says now, by task id
        self._live_written: dict[str, str] = {}

    # -- public ------------------------------------------------------------------------
    def run(self, target: Any) -> RunReport:
        root_flow = _as_flow(target)
        self._root = _FlowRun(root_flow, None)
        self._root.stages = []
        self._expect(root_flow)
        self._runnable.append(self._root)
        if self.checkpoint is not None:
            self._preloaded, self._preloaded_values = self.checkpoint.done()
            if self.reuse is not None:
                # resuming a run that reuses: what it executed itself still bars reuse below
                self._preloaded_reused = self.checkpoint.reused_ids()
            self.checkpoint.set_status("running")
            self.checkpoint.record_live(())  # what an earlier driver left is not live
            self.checkpoint.start_autoflush()
            watch_stop = self._start_watch()
        self.backend.start(self.context or BackendContext(run_dir=_cwd(), run_id="adhoc"))
        if self.progress is not None:
            stream = getattr(self.backend, "console_stream", None)
            if stream is not None and hasattr(self.progress, "use_stream"):
                self.progress.use_stream(stream())
        self._emit("run_started")
        # the loop allocates many short-lived objects; frequent young-generation collections
        # would cost more than the tasks themselves
        gc_thresholds = gc.get_threshold()
        gc.set_threshold(*relaxed_gc_thresholds())
        try:
            self._loop()
            if self._stop:
                self._drain()
                self.backend.cancel()
            if self.report.status == "running":
                self.report.status = "failed" if self.report.failures else "done"
        except KeyboardInterrupt:
            self.report.status = "interrupted"
            self._stop = True
            try:
                self._drain()
            except KeyboardInterrupt:
                pass
            self.backend.cancel()
        except BaseException:
            self.report.status = "failed"
            self.backend.cancel()
            raise
        finally:
            gc.set_threshold(*gc_thresholds)
            self.report.finished = time.time()
            self._close_flows()
            if self._root is not None:
                self.report.result = self._root.result
            try:
                # the display ends first: it may write to a stream the backend closes
                if self.progress is not None:
                    self.progress.finish(self.report, self._output())
            finally:
                try:
                    self.backend.close()
                finally:
                    if self.checkpoint is not None:
                        watch_stop.set()
                        self.checkpoint.stop_autoflush()
                        try:
                            self._record_jobs()
                            self._record_flows()
                            self._record_cancelled()
                        finally:
                            self.checkpoint.flush()
                            self.checkpoint.record_live(())
                            self.checkpoint.set_status(self.report.status)
                    self._emit("run_finished", data={"status": self.report.status})
        return self.report

    # -- main loop ---------------------------------------------------------------------
    def _loop(self) -> None:
        backend = self.backend
        ckpt = self.checkpoint
        while not self._stop:
            self._release_delayed()
            self._expand()
            if self._stop:
                break
            self._submit()
            if self._root is not None and self._is_complete(self._root) and not self._active:
                break
            if backend.in_flight() == 0 and not self._ready:
                if self._delayed:
                    time.sleep(max(0.0, min(0.5, self._delayed[0][0] - time.monotonic())))
                    continue
                if not self._runnable:
                    self._deadlock()
                    break
                continue
            timeout = 0.2
            if self._delayed:
                timeout = max(0.0, min(timeout, self._delayed[0][0] - time.monotonic()))
            if ckpt is not None:
                self._record_live()
            outcomes = backend.wait(timeout)
            for outcome in outcomes:
                self._on_outcome(outcome)
            if ckpt is not None:
                ckpt.maybe_flush()
                self._record_jobs()
            if self.progress is not None:
                self.progress.update(self.report, self._output())

    def _deadlock(self) -> None:
        root = self._root
        if root is None or self._is_complete(root):
            return
        stuck = [f.name for f in self._all_flows() if f.waiting]
        msg = "flows are waiting on work that will never finish: " + ", ".join(stuck[:5] or ["?"])
        self.report.failures.append(Failure("flow:deadlock", "flow", f"FlowError: {msg}", None, 1))
        self.report.status = "failed"

    # -- expansion ---------------------------------------------------------------------
    def _watermark(self) -> int:
        return max(2 * self.batch_size, self.backend.capacity() + self.batch_size)

    def _expand(self) -> None:
        runnable = self._runnable
        mark = self._watermark()
        while runnable and len(self._ready) < mark and not self._stop:
            fr = runnable[0]
            if fr.closed or fr.waiting:
                runnable.popleft()
                continue
            if not self._advance(fr, mark):
                runnable.popleft()

    def _advance(self, fr: _FlowRun, mark: int) -> bool:
        """Step ``fr`` until it blocks, ends, or the ready queue is full.
        Returns True while the flow can still make progress."""
        if fr.gen is None:
            try:
                fr.gen = fr.flow.generator()
            except Exception as exc:
                self._flow_raised(fr, exc)
                return False
        send: Any = None
        if fr.wait_target is not None:
            # durable before destructive: what the flow waited on is on record before it
            # goes on (it may delete or overwrite what those tasks produced)
            if self.checkpoint is not None:
                self.checkpoint.flush()
            target = fr.wait_target.target
            self._past_barrier(fr, fr.wait_target)
            fr.wait_target = None
            try:
                send = self._value_of(target)
            except FlowError as exc:
                self._flow_raised(fr, exc)
                return False
        gen = fr.gen
        ready = self._ready
        while len(ready) < mark:
            try:
                item = gen.send(send)
            except StopIteration as stop:
                fr.exhausted = True
                fr.result = stop.value
                if not fr.pending:
                    self._flow_complete(fr)
                return False
            except Exception as exc:
                self._flow_raised(fr, exc)
                return False
            send = None
            if isinstance(item, Dependency):
                try:
                    waiting = self._dependency_keys(fr, item)
                except FlowError as exc:  # the flow asked for something it cannot have
                    self._flow_raised(fr, exc)
                    return False
                if waiting is None:  # depends on something that failed
                    self._abandon(fr, f"a dependency of flow {fr.name!r} failed")
                    return False
                if waiting:
                    fr.waiting = waiting
                    fr.wait_target = item
                    return False
                self._past_barrier(fr, item)
                if self.checkpoint is not None and self.checkpoint.pending():
                    self.checkpoint.flush()
                try:
                    send = self._value_of(item.target)
                except FlowError as exc:
                    self._flow_raised(fr, exc)
                    return False
                continue
            self._take(fr, item)
            if fr.closed:
                return False
        return True

    def _take(self, fr: _FlowRun, item: Any) -> None:
        if isinstance(item, Task):
            if fr.stages is not None and len(fr.stages) < MAX_STAGES:
                fr.stages.append(item)
            self._take_task(fr, item)
        elif isinstance(item, Flow):
            child = _FlowRun(item, fr)
            if fr.stages is not None and len(fr.stages) < MAX_STAGES:
                fr.stages.append(child)
            if item.expected:
                self._expect(item)
            fr.pending.add(child)
            self._runnable.append(child)
        elif isinstance(item, (list, tuple)):
            for x in item:
                self._take(fr, x)
        elif isinstance(item, FlowSchema):
            self._take(fr, item())
        elif item is None:
            return
        else:
            self._flow_raised(
                fr,
                FlowError(
                    f"flow {fr.name!r} yielded {type(item).__name__}; a flow yields Tasks, "
                    "Flows, lists of those, or Dependency markers"
                ),
            )

    def _take_task(self, fr: _FlowRun, task: Task) -> None:
        if fr.placement is not None:
            task = with_requirements(task, *fr.placement)
        if task.requirements is not None or task.worker_type is not None:
            self._check_placement(task)
        tid = task.id
        if tid in self._done:
            self.report.duplicates += 1
            if self.reuse is not None and tid in self._executed:
                self._mark_executed(fr)
            return
        st = self._active.get(tid)
        if st is not None:
            self.report.duplicates += 1
            st.parents.append(fr)
            fr.pending.add(tid)
            if self.reuse is not None:
                self._mark_executed(fr)
            return
        if tid in self._failed:
            fr.failed = True
            return
        if tid in self._preloaded:
            self._preloaded.discard(tid)
            self._done.add(tid)
            raw = self._preloaded_values.pop(tid, None)
            if raw is not None:
                assert self.checkpoint is not None
                try:
                    self._values[tid] = self.checkpoint.value_of(raw)
                except (ValueNotStored, ValueError) as exc:
                    self._values[tid] = _Unavailable(f"task {tid[:12]} ({task.operation}): {exc}")
            self.report.resumed_done += 1
            self._count(task.operation, "cached")
            if self.reuse is not None and tid not in self._preloaded_reused:
                self._executed.add(tid)
                self._mark_executed(fr)
            return
        if self.cache is not None and self._from_cache(task):
            return
        if self.reuse is not None:
            if not fr.tainted and self._reused(task):
                return
            self._executed.add(tid)
            self._mark_executed(fr)
        st = _TaskState(task)
        st.parents.append(fr)
        self._active[tid] = st
        fr.pending.add(tid)
        heapq.heappush(self._ready, (-task.priority, next(self._seq), st))

    def _check_placement(self, task: Task) -> None:
        """Refuse, before it runs, a task no worker of the backend can take."""
        key = (task.requirements, task.worker_type)
        problem = self._placement_checked.get(key, _UNCHECKED)
        if problem is _UNCHECKED:
            problem = self.backend.unmet(task)
            self._placement_checked[key] = problem
        if problem is not None:
            raise RequirementError(
                f"{task.operation} task {task.id[:12]} cannot run on the {self.backend.name} "
                f"backend: {problem}")

    # -- reuse of earlier runs' work -----------------------------------------------------
    def _reused(self, task: Task) -> bool:
        """Record ``task`` as reused when an earlier run did it (see ReuseSource)."""
        tid = task.id
        try:
            value = self.reuse.lookup(task)
        except (ValueNotStored, ValueError) as exc:
            value = _Unavailable(f"task {tid[:12]} ({task.operation}) of an earlier run: {exc}")
        if value is _REUSE_MISSING:
            return False
        self._done.add(tid)
        stored = None if type(value) is _Unavailable else value
        if value is not None:
            self._values[tid] = value
        self._count(task.operation, "reused")
        if self.checkpoint is not None:
            self.checkpoint.record(tid, task.operation, "reused", 0, None, None, value=stored)
        return True

    def _from_cache(self, task: Task) -> bool:
        """A pure task whose value is cached is not run (its value is all it gives)."""
        if not is_pure(task):
            return False
        value = self.cache.get(task.id)
        if value is _CACHE_MISSING:
            return False
        tid = task.id
        self._done.add(tid)
        if value is not None:
            self._values[tid] = value
        self._count(task.operation, "reused")
        if self.checkpoint is not None:
            self.checkpoint.record(tid, task.operation, "reused", 0, None, None, value=value,
                                   worker="cache")
        return True

    @staticmethod
    def _mark_executed(fr: _FlowRun | None) -> None:
        while fr is not None and not fr.executed:
            fr.executed = True
            fr = fr.parent

    def _past_barrier(self, fr: _FlowRun, dep: Dependency) -> None:
        """``fr`` goes on past ``dep``: if it waited on work executed in this run, nothing it
        yields from here on is reused."""
        if self.reuse is None or fr.tainted:
            return
        if dep.target is None:
            fr.tainted = fr.executed
            return
        for k in self._keys_of_done(fr, dep.target):
            if k:
                fr.tainted = True
                return

    def _keys_of_done(self, fr: _FlowRun, target: Any) -> Iterable[bool]:
        if isinstance(target, Task):
            yield target.id in self._executed
        elif isinstance(target, Flow):
            # a finished child flow has left fr.pending: fall back to what fr knows
            found = [c for c in fr.pending if isinstance(c, _FlowRun) and c.flow is target]
            yield found[0].executed if found else fr.executed
        elif isinstance(target, (list, tuple)):
            for t in target:
                yield from self._keys_of_done(fr, t)

    # -- dependencies ------------------------------------------------------------------
    def _keys_of(self, fr: _FlowRun, target: Any) -> Iterable[Any]:
        if isinstance(target, Task):
            yield target.id
        elif isinstance(target, Flow):
            for c in fr.pending:
                if isinstance(c, _FlowRun) and c.flow is target:
                    yield c
                    return
        elif isinstance(target, (list, tuple)):
            for t in target:
                yield from self._keys_of(fr, t)
        elif target is not None:
            raise FlowError(f"cannot depend on a {type(target).__name__}")

    def _dependency_keys(self, fr: _FlowRun, dep: Dependency) -> set[Any] | None:
        if dep.target is None:
            if fr.failed:
                return None
            return set(fr.pending)
        keys: set[Any] = set()
        for k in self._keys_of(fr, dep.target):
            if isinstance(k, str):
                if k in self._failed:
                    return None
                if k in self._active:
                    keys.add(k)
                    if k not in fr.pending:
                        fr.pending.add(k)
                        self._active[k].parents.append(fr)
                elif k not in self._done:
                    raise FlowError(
                        f"flow {fr.name!r} waits on a task it never yielded ({k[:12]})"
                    )
            else:
                if k.failed:
                    return None
                keys.add(k)
        return keys

    def _value_of(self, target: Any) -> Any:
        if isinstance(target, Task):
            v = self._values.get(target.id)
            if type(v) is _Unavailable:
                raise FlowError(
                    f"the value of a finished {v.why}; this flow needs it, and the checkpoint "
                    "could not keep it (return plain data, numpy arrays or bytes from tasks "
                    "whose value a flow reads)"
                )
            return v
        if isinstance(target, (list, tuple)):
            return [self._value_of(t) for t in target]
        return None

    # -- outcomes ----------------------------------------------------------------------
    def _submit(self) -> None:
        backend = self.backend
        ready = self._ready
        want_event = self.events.wants("task_started")
        while ready:
            room = backend.capacity()
            if room <= 0:
                return
            n = min(room, len(ready))
            batch = [heapq.heappop(ready)[2] for _ in range(n)]
            tasks = []
            now = time.time()
            self._live_changed = True
            for st in batch:
                st.attempts += 1
                st.since = now
                tasks.append(st.task)
                self._count(st.task.operation, "submitted")
                if want_event:
                    self._emit("task_started", st.task, st.attempts)
            backend.submit(tasks)

    def _on_outcome(self, o: Outcome) -> None:
        st = self._active.get(o.task_id)
        if st is None:
            return  # a late duplicate outcome
        self._live_changed = True
        st.since = None
        task = st.task
        if o.ok:
            self._succeed(st, o)
            return
        if o.lost:
            st.lost += 1
            st.attempts -= 1  # a lost attempt is not the task's own
            if st.lost < self.retry.max_lost_attempts:
                self._schedule_retry(st, o, delay=min(self.retry.backoff_base, 1.0))
                return
        elif st.attempts < (task.max_attempts or self.retry.max_attempts) and self._transient(task, o):
            self._schedule_retry(st, o, delay=self.retry.delay(st.attempts))
            return
        self._fail(st, o)

    def _transient(self, task: Task, o: Outcome) -> bool:
        msg = o.error or ""
        for cond in itertools.chain(task.transient, self.retry.transient):
            if cond.matches(o.exc_types, msg):
                return True
        return False

    def _schedule_retry(self, st: _TaskState, o: Outcome, delay: float) -> None:
        self._count(st.task.operation, "retried")
        self._emit("task_retried", st.task, st.attempts, error=o.error)
        heapq.heappush(self._delayed, (time.monotonic() + delay, next(self._seq), st))

    def _release_delayed(self) -> None:
        now = time.monotonic()
        delayed = self._delayed
        while delayed and delayed[0][0] <= now:
            st = heapq.heappop(delayed)[2]
            heapq.heappush(self._ready, (-st.task.priority, next(self._seq), st))

    def _succeed(self, st: _TaskState, o: Outcome) -> None:
        task = st.task
        tid = task.id
        del self._active[tid]
        self._done.add(tid)
        if o.value is not None:
            self._values[tid] = o.value
        if self.cache is not None and is_pure(task):
            self.cache.put(tid, o.value)
        self._count(task.operation, "done")
        if self.checkpoint is not None:
            self.checkpoint.record(
                tid, task.operation, "done", st.attempts, o.started, o.finished,
                value=o.value, worker=o.worker, log_path=o.log_path, args=self._args_of(task),
            )
        if self.events.wants("task_succeeded"):
            self._emit("task_succeeded", task, st.attempts, data={"value": o.value})
        for parent in st.parents:
            self._child_complete(parent, tid, _OK)

    def _fail(self, st: _TaskState, o: Outcome) -> None:
        task = st.task
        tid = task.id
        del self._active[tid]
        self._failed[tid] = o.error or "failed"
        self._count(task.operation, "failed")
        timed_out = "TaskTimeoutError" in {t.rsplit(".", 1)[-1] for t in o.exc_types}
        if timed_out:
            self._count(task.operation, "timeout")
        attempts = st.attempts + st.lost
        args = st.args if st.args is not None else summarise(task)  # the live record's
        self.report.failures.append(
            Failure(tid, task.operation, o.error or "failed", o.traceback, attempts, o.log_path,
                    args)
        )
        if self.checkpoint is not None:
            self.checkpoint.record(
                tid, task.operation, "timeout" if timed_out else "failed", attempts,
                o.started, o.finished,
                error=o.error, traceback=o.traceback, worker=o.worker, log_path=o.log_path,
                args=args,
            )
            self.checkpoint.flush()
        self._emit("task_failed", task, attempts, error=o.error)
        if not self.keep_going:
            self._fail_fast()
            return
        for parent in st.parents:
            self._child_complete(parent, tid, _FAILED)

    def _child_complete(self, fr: _FlowRun, key: Any, result: int) -> None:
        fr.pending.discard(key)
        if result == _FAILED:
            fr.failed = True
        if fr.closed:
            if not fr.pending:
                self._flow_complete(fr)
            return
        if fr.waiting is not None and key in fr.waiting:
            if result == _FAILED:
                self._abandon(fr, f"a dependency of flow {fr.name!r} failed")
                return
            fr.waiting.discard(key)
            if not fr.waiting:
                fr.waiting = None
                self._runnable.append(fr)
        if fr.exhausted and not fr.pending:
            self._flow_complete(fr)

    def _flow_complete(self, fr: _FlowRun) -> None:
        if fr.parent is not None:
            self._child_complete(fr.parent, fr, _FAILED if fr.failed else _OK)

    def _abandon(self, fr: _FlowRun, why: str) -> None:
        """Skip the rest of a flow that depends on a failure (keep-going)."""
        fr.failed = True
        fr.closed = True
        fr.exhausted = True
        fr.waiting = None
        if fr.gen is not None:
            fr.gen.close()
        self.report.skipped_flows.append(fr.name)
        self._emit("task_skipped", None, 0, error=why, data={"flow": fr.name})
        if not fr.pending:
            self._flow_complete(fr)

    def _flow_raised(self, fr: _FlowRun, exc: BaseException) -> None:
        import traceback as tb

        text = "".join(tb.format_exception(exc))
        fid = f"flow:{fr.name}:{fr.flow.seq}"
        self.report.failures.append(
            Failure(fid, fr.name, f"{type(exc).__name__}: {exc}", text, 1)
        )
        self._count(fr.name, "failed")
        self._emit("task_failed", None, 1, error=f"flow {fr.name}: {exc}")
        if not self.keep_going:
            self._fail_fast()
            return
        self._abandon(fr, f"flow {fr.name!r} raised")

    def _fail_fast(self) -> None:
        # the loop stops; run() records what already finished, then cancels the rest
        self._stop = True
        self.report.status = "failed"

    def _drain(self, rounds: int = 3) -> None:
        """Take the outcomes the backend already has (tasks that finished), so that every
        way of stopping records them before the rest is cancelled."""
        for _ in range(rounds):
            try:
                outcomes = self.backend.finished()
            except Exception:  # noqa: BLE001 - the backend may be half torn down
                return
            if not outcomes:
                return
            for o in outcomes:
                self._on_outcome(o)

    def _is_complete(self, fr: _FlowRun) -> bool:
        return fr.exhausted and not fr.pending

    def _close_flows(self) -> None:
        for fr in self._all_flows():
            if fr.gen is not None and not fr.exhausted:
                try:
                    fr.gen.close()
                except Exception:  # noqa: BLE001 - closing is best effort at shutdown
                    pass

    def _all_flows(self) -> list[_FlowRun]:
        """Every flow still known: the tree under the root, and the runnable queue."""
        out: list[_FlowRun] = []
        seen: set[int] = set()
        stack = [self._root, *self._runnable] if self._root else list(self._runnable)
        while stack:
            f = stack.pop()
            if id(f) in seen:
                continue
            seen.add(id(f))
            out.append(f)
            stack.extend(c for c in f.pending if isinstance(c, _FlowRun))
        return out

    # -- bookkeeping -------------------------------------------------------------------
    def _expect(self, flow: Flow) -> None:
        expected = self.report.expected
        for op, n in flow.expected.items():
            expected[op] = expected.get(op, 0) + n

    def _args_of(self, task: Task) -> str | None:
        """The argument summary of a done task: always for operations with a summariser of
        their own, for the first :data:`SUMMARY_SAMPLE` tasks of the others."""
        op = task.operation
        left = self._summaries_left.get(op)
        if left is None:
            left = -1 if _has_own_summary(task.fn) else SUMMARY_SAMPLE
        if left == 0:
            return None
        self._summaries_left[op] = left - 1 if left > 0 else -1
        return summarise(task)

    def _output(self) -> list[str]:
        """Lines that tasks printed since the last call (backends that capture them)."""
        if self._recent_output is None:
            return []
        try:
            return list(self._recent_output())
        except Exception:  # noqa: BLE001 - showing output never stops a run
            return []

    def _record_live(self, force: bool = False) -> None:
        """Bring the checkpoint's record of the tasks without a final state up to date:
        pending (not handed to the backend yet, or waiting to be retried), queued (handed
        over, not started) and running (backends that cannot tell started from queued: all
        handed over are running). Only what changed since the last time is written."""
        now = time.monotonic()
        if self.checkpoint is None or not (force or now >= self._live_next):
            return
        self._live_next = now + LIVE_INTERVAL
        running = self.backend.running_ids()
        if not (self._live_changed or running != self._live_running):
            return  # nothing was handed over, finished or started since the last time
        self._live_changed = False
        self._live_running = running
        written = self._live_written
        with self._watch_lock:
            for tid in self._watch_written:
                written[tid] = "watched"  # differs from every status: rewritten or removed
            self._watch_written.clear()
        now_status: dict[str, str] = {}
        upserts: list[tuple[str, str, str, int, float | None, str | None]] = []
        for tid, st in self._active.items():
            if st.since is None:
                status = "pending"
            else:
                status = "running" if running is None or tid in running else "queued"
            now_status[tid] = status
            if written.get(tid) != status:
                if status == "running" and st.args is None:
                    st.args = summarise(st.task)
                upserts.append((tid, st.task.operation, status, st.attempts, st.since, st.args))
        gone = [tid for tid in written if tid not in now_status]
        if upserts or gone:
            self.checkpoint.update_live(upserts, gone)
        self._live_written = now_status

    def _start_watch(self) -> threading.Event:
        """For a backend that runs each task inside ``wait()`` (inline), where the driver's
        thread is busy with the task: a thread that records the task as running once it
        has run for :data:`LIVE_INTERVAL`."""
        stop = threading.Event()
        ckpt = self.checkpoint
        if not self._runs_in_wait or ckpt is None:
            return stop

        def watch() -> None:
            shown = None
            while not stop.wait(LIVE_INTERVAL / 2):
                current = getattr(self.backend, "current", None)
                if current is None or current[0] == shown:
                    continue
                tid, op, started = current
                if time.time() - started < LIVE_INTERVAL:
                    continue
                with self._watch_lock:
                    self._watch_written.add(tid)
                try:
                    ckpt.update_live([(tid, op, "running", 1, started, None)], ())
                except Exception:  # noqa: BLE001 - showing progress never stops a run
                    return
                shown = tid

        threading.Thread(target=watch, name="specflow-live", daemon=True).start()
        return stop

    def _record_cancelled(self) -> None:
        """Tasks a stopped run leaves without an outcome are on record as cancelled (a
        resume runs them)."""
        assert self.checkpoint is not None
        for tid, st in self._active.items():
            self.checkpoint.record(tid, st.task.operation, "cancelled", st.attempts, None, None,
                                   args=st.args)
            self._count(st.task.operation, "cancelled")

    def _record_flows(self) -> None:
        root = self._root
        if root is None or self.checkpoint is None:
            return
        store = self.checkpoint.values

        def flow_status(fr: _FlowRun) -> str:
            if fr.failed:
                return "failed"
            return "done" if self._is_complete(fr) else "not finished"

        rows = [FlowRow("run", root.name, self.report.status if flow_status(root) != "done"
                        else "done", store.store(f"flow-run-{root.flow.seq}", root.result), None)]
        for i, item in enumerate(root.stages or ()):
            pos = f"stage {i + 1}"
            if isinstance(item, Task):
                tid = item.id
                status = ("done" if tid in self._done else "failed" if tid in self._failed
                          else "not finished")
                value = self._values.get(tid)
                raw = None if type(value) is _Unavailable else store.store(tid, value)
                rows.append(FlowRow(pos, item.operation, status, raw, tid))
            else:
                rows.append(FlowRow(pos, item.name, flow_status(item),
                                    store.store(f"flow-{item.flow.seq}", item.result), None))
        for name in self.report.skipped_flows:
            rows.append(FlowRow("skipped", name, "skipped", None, None))
        self.checkpoint.record_flows(rows)

    def _count(self, op: str, key: str) -> None:
        c = self.report.counts.get(op)
        if c is None:
            c = self.report.counts[op] = {
                "submitted": 0, "done": 0, "failed": 0, "retried": 0, "cached": 0,
                "reused": 0, "timeout": 0, "cancelled": 0,
            }
        c[key] += 1

    def _emit(
        self,
        kind: str,
        task: Task | None = None,
        attempt: int = 0,
        error: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        if not self.events.wants(kind):
            return
        self.events.emit(
            Event(
                kind,
                task.id if task else None,
                task.operation if task else None,
                attempt,
                error,
                data or {},
            )
        )

    def _record_jobs(self) -> None:
        updates = self.backend.job_updates()
        if updates and self.checkpoint is not None:
            self.checkpoint.record_jobs(self.backend.name, updates)


def _has_own_summary(fn: Any) -> bool:
    if isinstance(fn, TaskableOperation):
        return fn.options.summary is not None
    return callable(getattr(fn, "summarise_args", None))


def _as_flow(target: Any) -> Flow:
    if isinstance(target, Flow):
        return target
    if isinstance(target, FlowSchema):
        return target()
    if isinstance(target, (Task, list, tuple)):
        items = target

        def _single() -> Generator[Any, Any, None]:
            yield items

        return Flow(_single, name="target")
    if callable(target) and callable(getattr(target, "flow", None)):
        flow = target()
        if isinstance(flow, Flow):
            return flow
    raise FlowError(
        f"cannot execute a {type(target).__name__}: the target must be a Flow, a Task, a "
        "flow schema or a list of them"
    )


def _cwd() -> Any:
    from pathlib import Path

    return Path.cwd()
