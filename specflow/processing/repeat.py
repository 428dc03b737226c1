"""zetta's ``repeat``: einops' ``repeat`` of an array, e.g. ``"c x y z -> c x y (z 2)"`` or
``"x y -> c x y"`` with ``c`` given. specflow's own task repeater is ``specflow.repeat``."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from specflow.builder.registry import register

Array = npt.NDArray[Any]

_TOKEN = re.compile(r"\(|\)|\.\.\.|[A-Za-z_][A-Za-z0-9_]*|\d+|\S")


def _groups(text: str) -> list[list[str]]:
    out: list[list[str]] = []
    current: list[str] | None = None
    for tok in _TOKEN.findall(text):
        if tok == "(":
            if current is not None:
                raise ValueError(f"repeat: nested parentheses in {text!r}")
            current = []
        elif tok == ")":
            if current is None:
                raise ValueError(f"repeat: unbalanced ')' in {text!r}")
            out.append(current)
            current = None
        elif not (tok == "..." or tok.isdigit() or tok[0].isalpha() or tok[0] == "_"):
            raise ValueError(f"repeat: cannot read {tok!r} in {text!r}")
        elif current is not None:
            current.append(tok)
        else:
            out.append([tok])
    if current is not None:
        raise ValueError(f"repeat: unbalanced '(' in {text!r}")
    return out


def repeat_array(data: Array, pattern: str, **axes_lengths: int) -> Array:
    """einops' ``repeat`` on a numpy array."""
    if "->" not in pattern:
        raise ValueError(f"repeat: pattern {pattern!r} has no '->'")
    left_text, right_text = pattern.split("->", 1)
    left, right = _groups(left_text), _groups(right_text)
    if any(len(g) != 1 for g in left):
        raise ValueError(f"repeat: the left side of {pattern!r} must name single axes")
    names = [g[0] for g in left]
    n_ell = data.ndim - (len(names) - names.count("..."))
    if names.count("...") > 1 or n_ell < 0 or ("..." not in names and n_ell != 0):
        raise ValueError(f"repeat: pattern {pattern!r} does not fit an array of shape "
                         f"{list(data.shape)}")
    have: list[str] = []
    sizes: dict[str, int] = {}
    dim = 0
    keep = []
    for name in names:
        if name == "...":
            for i in range(n_ell):
                have.append(f"...{i}")
                sizes[have[-1]] = int(data.shape[dim])
                keep.append(dim)
                dim += 1
            continue
        if name.isdigit():
            if int(name) != 1 or data.shape[dim] != 1:
                raise ValueError(f"repeat: axis {dim} has length {data.shape[dim]}, not {name}")
            dim += 1
            continue
        if name in sizes:
            raise ValueError(f"repeat: axis {name!r} appears twice on the left")
        have.append(name)
        sizes[name] = int(data.shape[dim])
        keep.append(dim)
        dim += 1
    arr = data.reshape([data.shape[d] for d in keep])
    out_groups: list[list[str]] = []
    for group in right:
        expanded: list[str] = []
        for name in group:
            expanded += [f"...{i}" for i in range(n_ell)] if name == "..." else [name]
        out_groups.append(expanded)
    elementary = [n for g in out_groups for n in g]
    missing = [n for n in have if n not in elementary]
    if missing:
        raise ValueError(f"repeat: {', '.join(missing)} on the left is missing on the right")
    new: dict[str, int] = {}
    for n in elementary:
        if n in sizes:
            continue
        if n.isdigit():
            new[n] = int(n)
        elif n in axes_lengths:
            new[n] = int(axes_lengths[n])
        else:
            raise ValueError(f"repeat: give the length of the new axis {n!r}")
    arr = arr.transpose([have.index(n) for n in elementary if n in sizes])
    view = [sizes[n] if n in sizes else 1 for n in elementary]
    full = [sizes[n] if n in sizes else new[n] for n in elementary]
    arr = np.broadcast_to(arr.reshape(view), full)
    length = {**sizes, **new}
    return np.ascontiguousarray(arr).reshape([math.prod(length[n] for n in g) for g in out_groups])


@register("repeat")
def repeat(data: Any, pattern: str, **axes_lengths: int) -> Any:
    """einops' ``repeat`` (zetta's ``repeat``): ``pattern`` names the axes of ``data`` and
    of the result; new axes get their lengths from ``axes_lengths`` (or a number in the
    pattern). A dict of arrays is repeated value by value."""
    if isinstance(data, Mapping):
        return {k: repeat_array(np.asarray(v), pattern, **axes_lengths) for k, v in data.items()}
    return repeat_array(np.asarray(data), pattern, **axes_lengths)
