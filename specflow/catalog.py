"""Loading every built-in registered type (for the CLI, ``specflow types`` and the schema)."""

from __future__ import annotations

import importlib

BUILTIN_MODULES = (
    "specflow.builder.lambdas",
    "specflow.flow.builtin",
    "specflow.flow.ops",
    "specflow.flow.cluster_ops",
    "specflow.run.entries",
    "specflow.volumes",
    "specflow.processing",
    "specflow.zetta_execute",
)


def load_builtins() -> None:
    for name in BUILTIN_MODULES:
        importlib.import_module(name)
