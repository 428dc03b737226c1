"""A run's settings: one typed value, merged from the spec and the command line in one place.

The spec's top-level ``execute`` entry (see :mod:`specflow.run.entries`) gives defaults; the
command line overrides them. Opt-ins (``--allow-shell``, ``--allow-eval``) come from the
command line only: they are recorded in the checkpoint for the record, and never read back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from specflow.execution.executor import RetryPolicy
from specflow.flow.task import TransientErrorCondition
from specflow.spec import SpecError

BACKEND_NAMES = ("inline", "local", "slurm", "dask")
RESOURCE_NAMES = ("read", "write", "cpu", "cuda")
#: opt-in name -> its command-line flag
OPT_INS = {"shell": "--allow-shell", "eval": "--allow-eval"}


@dataclass(frozen=True)
class RunSettings:
    """Everything that says how a run executes (not what it executes)."""

    backend: str = "local"
    workers: int | None = None
    keep_going: bool = False
    max_attempts: int = 3
    retry_backoff: float = 0.5
    transient_errors: tuple[TransientErrorCondition, ...] = ()
    semaphores: Mapping[str, int] = field(default_factory=dict)
    batch_size: int | None = None
    #: opt-ins given on this command line (never taken from a checkpoint)
    opt_ins: frozenset[str] = frozenset()
    #: settings of the backend itself (e.g. SLURM partition), from the spec
    backend_settings: Mapping[str, Any] = field(default_factory=dict)
    #: checkpoints of earlier runs whose done tasks this run reuses (``--reuse``)
    reuse: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check(self)

    @classmethod
    def merge(
        cls,
        spec: Mapping[str, Any] | None = None,
        cli: Mapping[str, Any] | None = None,
        *,
        backend_settings: Mapping[str, Any] | None = None,
        opt_ins: Iterable[str] = (),
    ) -> RunSettings:
        """Spec settings overridden by the command line's (``None`` means "not given")."""
        values: dict[str, Any] = {}
        names = {f.name for f in dataclasses.fields(cls)} - {"opt_ins", "backend_settings"}
        cli = dict(cli or {})
        # backend settings given on the command line (e.g. --dask-address) win over the spec's
        backend_settings = {**(backend_settings or {}),
                            **{k: v for k, v in (cli.pop("backend_settings", None) or {}).items()
                               if v is not None}}
        for source, where in ((spec or {}), "spec"), (cli, "command line"):
            for k, v in source.items():
                if v is None:
                    continue
                if k not in names:
                    raise SpecError(f"unknown run setting {k!r} (from the {where})", path=k)
                values[k] = v
        if "transient_errors" in values:
            values["transient_errors"] = conditions(values["transient_errors"])
        if "semaphores" in values:
            values["semaphores"] = dict(values["semaphores"])
        if "reuse" in values:
            values["reuse"] = tuple(str(p) for p in values["reuse"])
        return cls(**values, opt_ins=frozenset(opt_ins),
                   backend_settings=dict(backend_settings or {}))

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(max_attempts=self.max_attempts, backoff_base=self.retry_backoff,
                           transient=self.transient_errors)

    def record(self) -> dict[str, Any]:
        """The JSON form kept in the checkpoint."""
        return {
            "backend": self.backend, "workers": self.workers, "keep_going": self.keep_going,
            "max_attempts": self.max_attempts, "retry_backoff": self.retry_backoff,
            "transient_errors": [
                {"exception_type": c.exception_type, "text": c.text, "regex": c.regex}
                for c in self.transient_errors
            ],
            "semaphores": dict(self.semaphores), "batch_size": self.batch_size,
            "backend_settings": dict(self.backend_settings),
            "opt_ins_at_start": sorted(self.opt_ins),
            "reuse": list(self.reuse),
        }

    @classmethod
    def from_record(
        cls, stored: Mapping[str, Any], cli: Mapping[str, Any] | None = None,
        *, opt_ins: Iterable[str] = (),
    ) -> RunSettings:
        """A resumed run's settings: the stored ones (opt-ins dropped), then the command
        line's."""
        spec = {k: v for k, v in stored.items()
                if k not in ("backend_settings", "opt_ins_at_start", "allow_shell")}
        return cls.merge(spec, cli, backend_settings=stored.get("backend_settings") or {},
                         opt_ins=opt_ins)


def _check(s: RunSettings) -> None:
    if s.backend not in BACKEND_NAMES:
        raise SpecError(
            f"unknown backend {s.backend!r}; expected one of {', '.join(BACKEND_NAMES)}",
            path="backend",
        )
    if s.workers is not None and (isinstance(s.workers, bool) or not isinstance(s.workers, int)
                                  or s.workers < 1):
        raise SpecError(f"workers must be a whole number >= 1, got {s.workers!r}", path="workers")
    if isinstance(s.max_attempts, bool) or not isinstance(s.max_attempts, int) or s.max_attempts < 1:
        raise SpecError(f"max_attempts must be a whole number >= 1, got {s.max_attempts!r}",
                        path="max_attempts")
    if isinstance(s.retry_backoff, bool) or not isinstance(s.retry_backoff, (int, float)) \
            or s.retry_backoff < 0:
        raise SpecError(f"retry_backoff must be a number >= 0, got {s.retry_backoff!r}",
                        path="retry_backoff")
    if s.batch_size is not None and (isinstance(s.batch_size, bool)
                                     or not isinstance(s.batch_size, int) or s.batch_size < 1):
        raise SpecError(f"batch_size must be a whole number >= 1, got {s.batch_size!r}",
                        path="batch_size")
    if not isinstance(s.semaphores, Mapping):
        raise SpecError("semaphores must be a mapping such as {read: 4}", path="semaphores")
    for name, n in s.semaphores.items():
        if name not in RESOURCE_NAMES:
            raise SpecError(
                f"unknown semaphore {name!r}; expected one of {', '.join(RESOURCE_NAMES)}",
                path=f"semaphores.{name}",
            )
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise SpecError(f"semaphore {name!r} needs a positive integer, got {n!r}",
                            path=f"semaphores.{name}")
    unknown = set(s.opt_ins) - set(OPT_INS)
    if unknown:
        raise SpecError(f"unknown opt-in(s): {', '.join(sorted(unknown))}")


def conditions(raw: Iterable[Any] | None) -> tuple[TransientErrorCondition, ...]:
    """Transient-error conditions from their spec forms (a type name or a mapping)."""
    if isinstance(raw, (str, Mapping)):
        raw = [raw]
    out = []
    for i, c in enumerate(raw or ()):
        if isinstance(c, TransientErrorCondition):
            out.append(c)
        elif isinstance(c, str):
            out.append(TransientErrorCondition(c))
        elif isinstance(c, Mapping):
            out.append(TransientErrorCondition(
                str(c.get("exception_type", c.get("type", "Exception"))),
                str(c.get("text", c.get("message", ""))), bool(c.get("regex", False)),
            ))
        else:
            raise SpecError(f"cannot read {c!r} as a transient error (give a type name or "
                            "{exception_type, text})", path=f"transient_errors[{i}]")
    return tuple(out)
