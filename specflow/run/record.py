"""A run's record: its run dir, its checkpoint from open to close, and its driver's lease.

:class:`Run` is the one owner of a checkpoint in the driver (``run``, ``resume``,
``specflow.execute``) and the one reader for ``status`` and ``runs``, which see a run whose
driver is gone as ``crashed``.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from specflow import __version__
from specflow.execution.rows import CheckpointError, RunInfo, TaskRow
from specflow.run.lease import Lease, LeaseHeld, driver_gone
from specflow.run.settings import RunSettings
from specflow.spec import SpecError

if TYPE_CHECKING:
    from specflow.execution.checkpoint import Checkpoint

CHECKPOINT_NAME = "checkpoint.db"
#: statuses of a run that has a driver while it is true
LIVE_STATUSES = ("created", "running", "resuming")


def checkpoint_path(path: str | os.PathLike[str]) -> Path:
    """A run dir or a checkpoint file → the checkpoint file."""
    p = Path(path)
    return p / CHECKPOINT_NAME if p.is_dir() else p


def honest_status(info: RunInfo, checkpoint: Checkpoint) -> str:
    """The stored status, or ``crashed`` for a live status whose driver is provably gone."""
    if info.status in LIVE_STATUSES and driver_gone(checkpoint.path.parent, checkpoint.lease()):
        return "crashed"
    return info.status


def file_sha256(path: str | Path) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def import_record(name: str, module: Any) -> dict[str, Any]:
    """What a run remembers of a module it imported: how to import it again, and a hash of
    its code to notice a change."""
    file = getattr(module, "__file__", None)
    p = Path(name)
    given = str(p.resolve()) if (name.endswith(".py") or p.exists()) else name
    return {"name": given, "file": file, "sha256": file_sha256(file) if file else None}


@dataclass
class Run:
    """One run, open for driving (holding its lease) or for reading."""

    run_dir: Path
    checkpoint: Checkpoint
    lease: Lease | None = None

    @property
    def id(self) -> str:
        return self.run_dir.name

    @classmethod
    def create(
        cls,
        run_dir: Path,
        *,
        spec: Any,
        spec_hash: str,
        spec_file: str | None,
        spec_file_hash: str | None,
        overrides: list[str],
        imports: list[dict[str, Any]],
        settings: RunSettings,
        checkpoint_name: str = CHECKPOINT_NAME,
    ) -> Run:
        """A new run in ``run_dir`` (its checkpoint named ``checkpoint_name``), its lease
        held by this process."""
        shown = run_dir
        run_dir = run_dir.absolute()
        for parent in (run_dir, *run_dir.parents):
            if parent.exists():
                if not parent.is_dir():
                    raise SpecError(f"--run-dir {shown}: {parent} is a file, not a folder")
                break
        cpath = run_dir / checkpoint_name
        if cpath.exists():
            raise SpecError(
                f"{cpath} already exists: use `specflow resume {cpath}` or choose another --run-dir"
            )
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SpecError(f"cannot create the run dir {shown}: {exc.strerror or exc}") from None
        from sqlalchemy import exc as sa_exc

        from specflow.execution.checkpoint import Checkpoint

        try:
            ck = Checkpoint(cpath, create=True)
        except (CheckpointError, OSError, sa_exc.OperationalError) as exc:
            _discard(run_dir, checkpoint_name)
            text = str(getattr(exc, "orig", None) or getattr(exc, "strerror", None) or exc)
            raise SpecError(f"cannot create the run in {shown}: {text[:300]}") from None
        try:
            lease = Lease.acquire(run_dir, ck)
        except LeaseHeld as exc:
            ck.close()
            raise SpecError(str(exc)) from None
        except BaseException:
            ck.close()
            raise
        run = cls(run_dir, ck, lease)
        try:
            if ck.has_run():
                raise SpecError(f"{cpath} already exists: use `specflow resume {cpath}`")
            ck.create_run(
                run_id=run_dir.name, spec=spec, spec_hash=spec_hash, spec_file=spec_file,
                spec_file_hash=spec_file_hash, overrides=overrides, imports=imports,
                settings=settings.record(), version=__version__, start_dir=os.getcwd(),
            )
        except (OSError, sa_exc.OperationalError) as exc:
            run.close()
            _discard(run_dir, checkpoint_name)
            text = str(getattr(exc, "orig", None) or exc)[:300]
            raise SpecError(f"cannot create the run in {shown}: {text}") from None
        except BaseException:
            run.close()
            raise
        return run

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, drive: bool) -> Run:
        """An existing run; with ``drive`` its lease is taken (refused while another live
        driver holds it)."""
        from specflow.execution.checkpoint import Checkpoint

        cpath = checkpoint_path(path).absolute()
        ck = Checkpoint(cpath)
        lease = None
        if drive:
            try:
                lease = Lease.acquire(cpath.parent, ck)
            except LeaseHeld as exc:
                ck.close()
                raise SpecError(str(exc)) from None
            except BaseException:
                ck.close()
                raise
        return cls(cpath.parent, ck, lease)

    def info(self) -> RunInfo:
        return self.checkpoint.run_info()

    def status(self) -> str:
        return honest_status(self.info(), self.checkpoint)

    def is_live(self) -> bool:
        """Whether a driver is running this run now (its snapshot of unfinished tasks is
        current)."""
        return self.status() in LIVE_STATUSES

    def counts(self) -> dict[str, dict[str, int]]:
        """``{operation: {status: n}}``, with pending/queued/running while the run is live."""
        return self.checkpoint.counts(live=self.is_live())

    def task_rows(self, status: str | Iterable[str] | None = None, *,
                  operation: str | None = None, limit: int | None = None) -> Iterator[TaskRow]:
        """Each task's newest state (see :meth:`Checkpoint.task_rows`)."""
        return self.checkpoint.task_rows(status, operation=operation, limit=limit,
                                         live=self.is_live())

    def close(self) -> None:
        try:
            self.checkpoint.flush()
        finally:
            try:
                if self.lease is not None:
                    self.lease.release()
                    self.lease = None
            finally:
                self.checkpoint.close()

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _discard(run_dir: Path, checkpoint_name: str = CHECKPOINT_NAME) -> None:
    """Remove what a failed creation of a run left in ``run_dir`` (and the dir if empty)."""
    for name in (checkpoint_name, f"{checkpoint_name}-wal", f"{checkpoint_name}-shm",
                 f"{checkpoint_name}-journal", "driver.lock"):
        try:
            (run_dir / name).unlink(missing_ok=True)
        except OSError:
            pass
    try:
        run_dir.rmdir()
    except OSError:
        pass


def say_default(text: str) -> None:
    print(text, file=sys.stderr)
