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


def _chunk_ids_code() -> str:
    return (
        "import sys, dataclasses; sys.path.insert(0, 'tests'); from user_ops import append; "
        "from specflow.builder import build; "
        "common = {'path': build({'@type': 'sleep', 'seconds': 0.5}), 'delay': 0.5}; "
        "m = append.task_maker(**common); "
        "print(' '.join(m.make_task(line=f'c{i}').id for i in range(3)))"
    )


def test_task_maker_ids_are_make_task_ids() -> None:
    # shared arguments without a JSON form (a built object): the prefix path
    common = {"path": build({"@type": "sleep", "seconds": 0.5}), "delay": 0.5}
    maker = append.task_maker(**common)
    for i in range(3):
        fast = maker.make_task(line=f"c{i}")
        assert fast.id == append.make_task(line=f"c{i}", **common).id
        assert fast.kwargs == {**common, "line": f"c{i}"}
    # a different own argument (another chunk) gives another id, and so do other shared ones
    ids = {maker.make_task(line=f"c{i}").id for i in range(100)}
    assert len(ids) == 100
    other = append.task_maker(path=common["path"], delay=0.25)
    assert other.make_task(line="c0").id != maker.make_task(line="c0").id
    # an argument both shared and own is a mistake, refused; own ones in any order and number
    both = append.task_maker(line="shared", **common)
    with pytest.raises(TypeError, match="given twice"):
        both.make_task(line="own")
    few = append.task_maker(path=common["path"])
    assert few.make_task(line="a", delay=1.0).id == few.make_task(delay=1.0, line="a").id \
        == append.make_task(path=common["path"], line="a", delay=1.0).id
    # plain JSON arguments take the JSON path, still the same ids as make_task
    plain = append.task_maker(path="/tmp/x", delay=0.0)
    assert plain.make_task(line="a").id == append.make_task(path="/tmp/x", line="a", delay=0.0).id \
        != plain.make_task(line="b").id


def test_task_maker_ids_are_stable_across_processes() -> None:
    common = {"path": build({"@type": "sleep", "seconds": 0.5}), "delay": 0.5}
    maker = append.task_maker(**common)
    here = " ".join(maker.make_task(line=f"c{i}").id for i in range(3))
    out = subprocess.run([sys.executable, "-c", _chunk_ids_code()], capture_output=True,
                         text=True, check=True, env={"PYTHONHASHSEED": "7", "PATH": ""},
                         cwd=str(__import__("pathlib").Path(__file__).parents[2]))
    assert out.stdout.strip() == here
    assert len(set(here.split())) == 3
