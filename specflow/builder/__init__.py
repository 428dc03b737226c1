"""The builder: registered constructors and building specs into objects."""

from specflow.builder.build import BuildError, build
from specflow.builder.imports import import_user_module
from specflow.builder.not_provided import NotProvidedError
from specflow.builder.provenance import get_spec
from specflow.builder.registry import (
    entries,
    lookup,
    register,
    registered_names,
    unregister,
)

__all__ = [
    "BuildError",
    "NotProvidedError",
    "build",
    "entries",
    "get_spec",
    "import_user_module",
    "lookup",
    "register",
    "registered_names",
    "unregister",
]
