"""Backends: where tasks run. Each serves :class:`specflow.backends.base.Backend`."""

from __future__ import annotations

from typing import Any

from specflow.backends.base import Backend, BackendContext, JobRecord, Outcome

BACKEND_NAMES = ("inline", "local", "slurm", "dask")


def make_backend(name: str, **settings: Any) -> Backend:
    """The backend called ``name``, configured with ``settings``."""
    if name == "inline":
        from specflow.backends.inline import InlineBackend

        return InlineBackend(**settings)
    if name == "local":
        from specflow.backends.local import LocalBackend

        return LocalBackend(**settings)
    if name == "slurm":
        from specflow.backends.slurm import make_slurm_backend

        backend: Backend = make_slurm_backend(**settings)
        return backend
    if name == "dask":
        from specflow.backends.dask import make_dask_backend

        return make_dask_backend(**settings)
    raise ValueError(f"unknown backend {name!r}; expected one of {', '.join(BACKEND_NAMES)}")


__all__ = ["BACKEND_NAMES", "Backend", "BackendContext", "JobRecord", "Outcome", "make_backend"]
