"""``op.task_maker(**common)(**rest)`` is ``op.make_task(**common, **rest)``: the same ids."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import specflow
from specflow.volumes import VolumetricIndex, build_ts_layer


@specflow.taskable_operation
def work(**kwargs: Any) -> None:
    return None


def chunk(i: int) -> VolumetricIndex:
    return VolumetricIndex.from_voxels((i, 0, 0), (i + 4, 4, 4), (1, 1, 1))


@pytest.mark.parametrize("common", [
    {"dst": build_ts_layer("/tmp/a.zarr"), "opts": {"src": build_ts_layer("/tmp/b.zarr"),
                                                    "k": [1, 2.5, None]}, "n": 3},
    {"x": 1, "y": {"nested": [1, 2]}},  # plain data
    {"arr": np.arange(6).reshape(2, 3), "t": (1, "two")},
    {},
])
def test_same_tasks_as_make_task(common: dict[str, Any]) -> None:
    make = work.task_maker(**common)
    for rest in ({"chunk": chunk(0)}, {"chunk": chunk(8), "zz": np.float32(2)},
                 {"a": "x", "b": [chunk(1)]}, {}):
        want = work.make_task(**common, **rest)
        got = make(**rest)
        assert got.id == want.id
        assert got.kwargs.keys() == want.kwargs.keys()
        assert all(got.kwargs[k] is want.kwargs[k] for k in got.kwargs)
        assert got.operation == want.operation


def test_an_argument_given_twice_is_refused() -> None:
    make = work.task_maker(dst=build_ts_layer("/tmp/a.zarr"))
    with pytest.raises(TypeError, match="given twice"):
        make(dst=1)
