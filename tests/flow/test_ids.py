from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
from user_ops import append, square

import specflow
from specflow.builder import build
from specflow.flow.ids import UnhashableArgumentError, task_id


def test_same_work_same_id_different_work_different_id() -> None:
    a = square.make_task(x=3)
    b = square.make_task(x=3)
    c = square.make_task(x=4)
    assert a.id == b.id != c.id
    # int and float, list and str, key order
    assert task_id("op", "f", {"x": 1}) != task_id("op", "f", {"x": 1.0})
    assert task_id("op", "f", {"a": 1, "b": 2}) == task_id("op", "f", {"b": 2, "a": 1})
    assert task_id("op", "f", {"x": True}) != task_id("op", "f", {"x": 1})
    assert task_id("op", "f", {1: "a"}) != task_id("op", "f", {"1": "a"})


def test_numpy_arrays_by_dtype_shape_and_bytes() -> None:
    x = np.arange(6, dtype=np.int32)
    assert task_id("op", "f", {"a": x}) == task_id("op", "f", {"a": x.copy()})
    assert task_id("op", "f", {"a": x}) != task_id("op", "f", {"a": x.reshape(2, 3)})
    assert task_id("op", "f", {"a": x}) != task_id("op", "f", {"a": x.astype(np.int64)})


@dataclasses.dataclass
class Box:
    lo: int
    hi: int


def test_built_objects_and_dataclasses_hash_by_content() -> None:
    p1 = build({"@type": "sleep", "seconds": 0.5})
    p2 = build({"@type": "sleep", "seconds": 0.5})
    assert task_id("op", "f", {"t": p1}) == task_id("op", "f", {"t": p2})
    assert task_id("op", "f", {"b": Box(1, 2)}) == task_id("op", "f", {"b": Box(1, 2)})
    assert task_id("op", "f", {"b": Box(1, 2)}) != task_id("op", "f", {"b": Box(1, 3)})


def test_unhashable_argument_is_an_error_not_a_random_id() -> None:
    class Opaque:
        __slots__ = ()

    with pytest.raises(UnhashableArgumentError, match="__specflow_id__"):
        task_id("op", "f", {"x": Opaque()})


def test_ids_are_stable_across_processes() -> None:
    here = append.make_task(path="/tmp/x", line="hello", delay=0.5).id
    code = (
        "import sys; sys.path.insert(0, 'tests'); from user_ops import append; "
        "print(append.make_task(path='/tmp/x', line='hello', delay=0.5).id)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={"PYTHONHASHSEED": "123", "PATH": ""},
                         cwd=str(__import__("pathlib").Path(__file__).parents[2]))
    assert out.stdout.strip() == here


def test_operations_pickle_by_reference_and_still_call_directly() -> None:
    import pickle

    assert square(5) == 25
    t = square.make_task(x=5)
    t2 = pickle.loads(pickle.dumps(t))
    assert t2() == 25 and t2.id == t.id
    assert pickle.loads(pickle.dumps(square)) is square


def test_taskable_operation_cls_ids_follow_state() -> None:
    @specflow.taskable_operation_cls
    class Mul:
        def __init__(self, k: int) -> None:
            self.k = k

        def __call__(self, x: int) -> int:
            return self.k * x

    assert Mul(2)(3) == 6
    assert Mul(2).make_task(x=1).id == Mul(2).make_task(x=1).id
    assert Mul(2).make_task(x=1).id != Mul(3).make_task(x=1).id
