"""zetta_utils' own acceptance suite of the subchunkable flow, run unchanged from
``../shared/cue-conformance`` (the specs of ``tests/integration/subchunkable`` in its public
repository): the 36 specs of its ``test_subchunkable`` list must run and write the right
voxels, the 41 of ``test_subchunkable_val_exc`` must be refused by ``specflow run`` and
``specflow validate`` with exit status 2, naming what is wrong.

The specs run through specflow's command line (in this process, to keep the suite quick) in
one folder holding the input layers they read, on the inline backend (the spec that asks for
several local processes runs on the local backend with 2 workers).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorstore as ts
from fixtures import VOXEL_OFFSET, expected_input, link_inputs
from typer.testing import CliRunner

from specflow import execute
from specflow.builder import build
from specflow.cli import app
from specflow.processing import build_reduce_staged_flow

CASES = Path(__file__).resolve().parents[3] / "shared" / "cue-conformance" / "cases"
PREFIX = "tests__integration__subchunkable__specs__"
OPS = str(Path(__file__).with_name("zetta_test_ops.py"))

pytestmark = pytest.mark.skipif(not CASES.is_dir(), reason="../shared/cue-conformance is absent")

Z5 = (2000, 2005)
Z1 = (2000, 2001)
#: zetta's ``test_subchunkable`` list: what each spec must leave in its dst
MUST_RUN: dict[str, tuple[str, tuple[int, int] | None]] = {
    "test_uint8_no_dst": ("no dst", None),
    "test_uint8_copy_bbox": ("copy", Z5),
    "test_uint8_copy_auto_bbox": ("copy", (2000, 2050)),
    "test_uint8_copy_info_bbox_oddsize": ("copy", Z5),
    "test_uint8_copy_no_op_kwargs": ("42", Z5),
    "test_uint8_copy_coords": ("copy", Z5),
    "test_uint8_copy_fn_semaphores": ("copy", Z5),
    "test_uint8_copy_expand_bbox_resolution": ("copy", Z5),
    "test_uint8_copy_expand_bbox_processing": ("copy", Z5),
    "test_uint8_copy_expand_bbox_backend": ("copy", Z5),
    "test_uint8_copy_expand_bbox_resolution_backend_processing_do_nothing": ("copy", Z5),
    "test_uint8_copy_processing_gap": ("42", Z5),
    "test_uint8_copy_shrink_processing_chunk": ("copy", Z5),
    "test_uint8_copy_op": ("copy", Z5),
    "test_uint8_copy_auto_divisibility": ("copy", Z1),
    "test_uint8_copy_skip_intermediaries": ("nothing", Z5),
    "test_uint8_copy_dont_skip_intermediaries": ("copy", Z5),
    "test_uint8_copy_multilevel_no_checkerboard": ("copy", Z5),
    "test_uint8_copy_multilevel_checkerboard": ("copy", Z5),
    "test_uint8_copy_multilevel_checkerboard_cache_up_to_l0": ("copy", Z5),
    "test_uint8_copy_blend": ("copy", Z5),
    "test_uint8_copy_crop": ("copy", Z5),
    "test_uint8_copy_defer": ("defer +1", Z5),
    "test_uint8_copy_top_level_checkerboard": ("copy", Z5),
    "test_uint8_copy_writeproc": ("copy +1", Z5),
    "test_uint8_copy_writeproc_multilevel_no_checkerboard": ("copy +1", Z5),
    "test_uint8_copy_writeproc_multilevel_checkerboard": ("copy +1", Z5),
    "test_float32_copy": ("copy", Z5),
    "test_float32_copy_multilevel_no_checkerboard": ("copy", Z5),
    "test_float32_copy_multilevel_checkerboard": ("copy", Z5),
    "test_float32_copy_blend": ("copy", Z5),
    "test_float32_copy_crop": ("copy", Z5),
    "test_float32_copy_writeproc_multilevel_no_checkerboard": ("copy +1", Z5),
    "test_float32_copy_writeproc_multilevel_checkerboard": ("copy +1", Z5),
    "test_float32_copy_writeproc_multilevel_checkerboard_parallel": ("copy +1", Z5),
    "test_uint8_copy_postpad": ("copy", Z1),
}
#: specs of the same folder that zetta's list leaves out (they run too)
ALSO_RUN: dict[str, tuple[str, tuple[int, int] | None]] = {
    "test_float32_copy_writeproc": ("copy +1", Z5),
    "test_uint8_copy_writeproc_multilevel": ("copy +1", Z5),
    "test_uint8_copy_writeproc_multilevel_checkerboard_cache_up_to_0": ("copy +1", Z5),
}

#: zetta's ``test_subchunkable_val_exc`` list: the parameters each refusal must name
MUST_RAISE: dict[str, tuple[str, ...]] = {
    "test_uint8_exc_dst_tighten_bounds": ("dst_tighten_bounds",),
    "test_uint8_exc_no_bbox_or_coords_or_auto_bbox": ("bbox", "start_coord", "auto_bbox"),
    "test_uint8_exc_both_bbox_and_coords": ("bbox", "start_coord"),
    "test_uint8_exc_both_bbox_and_auto_bbox": ("auto_bbox", "bbox"),
    "test_uint8_exc_both_coords_and_auto_bbox": ("auto_bbox", "start_coord"),
    "test_uint8_exc_no_fn_or_op": ("fn", "op"),
    "test_uint8_exc_both_fn_and_op": ("fn", "op"),
    "test_uint8_exc_both_fn_semaphores_and_op": ("fn_semaphores", "op"),
    "test_uint8_exc_seq_of_seq_not_equal": ("processing_crop_pads", "levels"),
    "test_uint8_exc_generate_ng_link_but_not_verbose": ("generate_ng_link", "verbose"),
    "test_uint8_exc_level_intermediaries_dirs_not_equal": ("level_intermediaries_dirs",),
    "test_uint8_exc_skip_intermediaries_but_level_intermediaries_dirs":
        ("level_intermediaries_dirs", "skip_intermediaries"),
    "test_uint8_exc_skip_intermediaries_but_blend_pad": ("processing_blend_pads",
                                                         "skip_intermediaries"),
    "test_uint8_exc_skip_intermediaries_but_crop_pad": ("processing_crop_pads",
                                                        "skip_intermediaries"),
    "test_uint8_exc_skip_intermediaries_but_defer": ("defer", "skip_intermediaries"),
    "test_uint8_exc_skip_intermediaries_but_reduction_worker_type":
        ("reduction_worker_type", "skip_intermediaries"),
    "test_uint8_exc_not_skip_intermediaries_but_no_level_intermediaries_dirs":
        ("level_intermediaries_dirs", "skip_intermediaries"),
    "test_uint8_exc_shrink_processing_chunk_and_expand_bbox_processing":
        ("shrink_processing_chunk", "expand_bbox_processing"),
    "test_uint8_exc_bbox_non_integral_without_expand_bbox_resolution":
        ("expand_bbox_resolution", "voxel grid"),
    "test_uint8_exc_bbox_non_integral_without_expand_bbox_resolution_but_expand_bbox_processing":
        ("expand_bbox_resolution", "expand_bbox_processing", "voxel grid"),
    "test_uint8_exc_bbox_non_integral_without_expand_bbox_resolution_but_shrink_processing_chunk":
        ("expand_bbox_resolution", "shrink_processing_chunk", "voxel grid"),
    "test_uint8_exc_auto_divisibility_and_shrink_processing_chunk":
        ("auto_divisibility", "shrink_processing_chunk"),
    "test_uint8_exc_auto_divisibility_but_no_expand_bbox_processing":
        ("auto_divisibility", "expand_bbox_processing"),
    "test_uint8_exc_auto_divisibility_and_expand_bbox_backend":
        ("auto_divisibility", "expand_bbox_backend"),
    "test_uint8_exc_processing_gap_but_auto_divisibility": ("processing_gap", "auto_divisibility"),
    "test_uint8_exc_processing_gap_but_blend_pad_toplevel": ("processing_gap",
                                                             "processing_blend_pads"),
    "test_uint8_exc_processing_gap_but_expand_bbox_backend": ("processing_gap",
                                                              "expand_bbox_backend"),
    "test_uint8_exc_processing_gap_but_expand_bbox_resolution": ("processing_gap",
                                                                 "expand_bbox_resolution"),
    "test_uint8_exc_processing_gap_but_shrink_processing_chunk": ("processing_gap",
                                                                  "shrink_processing_chunk"),
    "test_uint8_exc_processing_gap_but_uneven": ("processing_gap", "even"),
    "test_uint8_exc_max_reduction_chunk_size_too_small_for_backend_chunk":
        ("max_reduction_chunk_size", "chunk size of dst"),
    "test_uint8_exc_max_reduction_chunk_size_too_small_for_processing_chunk":
        ("max_reduction_chunk_size", "processing_chunk_sizes[0]"),
    "test_uint8_exc_defer_on_not_toplevel": ("defer", "top level"),
    "test_uint8_exc_no_dst_but_defer": ("defer", "dst"),
    "test_uint8_exc_no_dst_but_max_reduction_chunk_size": ("max_reduction_chunk_size", "dst"),
    "test_uint8_exc_no_dst_but_not_skip_intermediaries": ("dst", "skip_intermediaries"),
    "test_uint8_exc_no_dst_but_expand_bbox_backend": ("expand_bbox_backend", "dst"),
    "test_uint8_exc_blend_too_large": ("processing_blend_pads", "half"),
    "test_uint8_exc_defer_but_skip_intermediaries": ("defer", "skip_intermediaries"),
    "test_uint8_exc_nondivisible_but_recommendable":
        ("processing_chunk_sizes[1]", "use processing_chunk_sizes[1] = [512, 512, 1]"),
    "test_uint8_exc_nondivisible_and_not_recommendable":
        ("processing_chunk_sizes[1]", "no chunk size fits evenly"),
}

runner = CliRunner()


@pytest.fixture(scope="module")
def suite_dir(tmp_path_factory: pytest.TempPathFactory, zetta_inputs: Path) -> Path:
    """One folder for the whole suite, holding ``assets/inputs`` (the specs' outputs go to
    ``assets/outputs``, their intermediaries to ``assets/temp*``)."""
    root = tmp_path_factory.mktemp("subchunkable_suite")
    link_inputs(root, zetta_inputs)
    return root


@pytest.fixture()
def in_suite(suite_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(suite_dir)
    monkeypatch.delenv("SPECFLOW_RUN_ROOT", raising=False)
    return suite_dir


def spec_path(name: str, exc: bool = False) -> Path:
    return CASES / f"{PREFIX}{'exc__' if exc else ''}{name}.cue"


def cli(*args: str) -> Any:
    return runner.invoke(app, list(args), catch_exceptions=True)


def exported(path: Path) -> dict[str, Any]:
    done = cli("export", str(path))
    assert done.exit_code == 0, done.output
    out: dict[str, Any] = json.loads(done.stdout)
    return out


def read_layer(path: Path, zrange: tuple[int, int]) -> tuple[np.ndarray, list[int], list[int]]:
    """The voxels of a precomputed layer over its x, y bounds and ``zrange`` (clipped to its
    bounds), read by tensorstore's own driver as (1, X, Y, Z); with the start and shape of
    what was read. Refuses a layer holding chunks outside ``zrange`` (a stray write there)."""
    info = json.loads((path / "info").read_text())
    scale = info["scales"][0]
    offset, size = scale["voxel_offset"], scale["size"]
    z0, z1 = max(zrange[0], offset[2]), min(zrange[1], offset[2] + size[2])
    for chunk in (path / scale["key"]).glob("*"):
        cz0, cz1 = (int(v) for v in chunk.name.split("_")[2].split("-"))
        assert cz0 < z1 and cz1 > z0, f"{chunk} was written outside z {zrange}"
    store = ts.open({"driver": "neuroglancer_precomputed",
                     "kvstore": f"file://{path.resolve()}/"}, read=True).result()
    data = store[:, :, z0:z1].read().result()  # x, y, z, c (world voxel coordinates)
    start = [offset[0], offset[1], z0]
    return np.moveaxis(np.asarray(data), -1, 0), start, [size[0], size[1], z1 - z0]


def expected(dtype: str, start: list[int], shape: list[int], kind: str) -> np.ndarray:
    """What the dst must hold over ``start``/``shape`` (the processed z range, all of the
    dst's x, y): the input (``copy``), the input + 1 (``copy +1``, a write proc), or 42
    (``42``) over the input's x, y extent; zero elsewhere."""
    stop = [o + s for o, s in zip(start, shape, strict=True)]
    src = expected_input(dtype, start, stop)
    xs = np.arange(start[0], stop[0])
    ys = np.arange(start[1], stop[1])
    inside = (((xs >= VOXEL_OFFSET[0]) & (xs < VOXEL_OFFSET[0] + 1024))[None, :, None, None]
              & ((ys >= VOXEL_OFFSET[1]) & (ys < VOXEL_OFFSET[1] + 1024))[None, None, :, None])
    inside = np.broadcast_to(inside, src.shape)
    if kind.startswith("42"):
        return np.where(inside, 42, 0).astype(src.dtype)
    plus = 1 if kind.endswith("+1") else 0
    return np.where(inside, src + plus, 0).astype(src.dtype)


def run_spec(name: str, tmp: Path) -> Any:
    args = ["run", str(spec_path(name)), "-i", OPS, "--allow-eval", "--no-progress",
            "--run-dir", str(tmp / f"run_{name}")]
    if name.endswith("_parallel"):
        args += ["--backend", "local", "--workers", "2"]
    else:
        args += ["--backend", "inline"]
    return cli(*args)


def check_run(name: str, kind: str, zrange: tuple[int, int] | None, tmp: Path) -> None:
    spec = exported(spec_path(name))
    checked = cli("validate", str(spec_path(name)), "-i", OPS, "--allow-eval")
    assert checked.exit_code == 0, checked.output
    done = run_spec(name, tmp)
    assert done.exit_code == 0, done.output
    assert "Traceback" not in done.output
    target = spec["target"]
    if kind == "no dst":
        assert target["dst"] is None
        assert re.search(r"subchunkable\.process_chunk\s*│\s*5\b", done.stdout), done.stdout
        return
    dst = Path(target["dst"]["path"])
    assert zrange is not None
    data, start, shape = read_layer(dst, zrange)
    dtype = "float32" if "float32" in name else "uint8"
    if kind == "nothing":  # OnlyCopyTempOp writes only into intermediaries
        assert not data.any()
        assert not any((dst / "128_128_40").glob("*"))
        return
    want = expected(dtype, start, shape, kind.replace("defer ", "copy "))
    if kind.startswith("defer"):
        # dst holds nothing yet; the staged outputs reduce to the copy (the write proc
        # applied once, as the reduction writes dst)
        assert not data.any()
        dirs = target["level_intermediaries_dirs"]
        (staging,) = Path(dirs[0]).glob("staging-*")
        layer = build({**target["dst"], "@version": spec.get("@version", "0")},
                      opt_ins={"eval"})
        execute(build_reduce_staged_flow(str(staging), layer, mode="linear"), backend="inline",
                checkpoint=False)
        data, start, shape = read_layer(dst, zrange)
    assert data.dtype == want.dtype
    bad = np.argwhere(data != want)
    assert len(bad) == 0, (f"{len(bad)} voxels differ, first at {bad[0].tolist()}: "
                           f"{data[tuple(bad[0])]} != {want[tuple(bad[0])]}")


@pytest.mark.parametrize("name", list(MUST_RUN))
def test_must_run(name: str, in_suite: Path, tmp_path: Path) -> None:
    kind, zrange = MUST_RUN[name]
    check_run(name, kind, zrange, tmp_path)


@pytest.mark.parametrize("name", list(ALSO_RUN))
def test_also_runs(name: str, in_suite: Path, tmp_path: Path) -> None:
    kind, zrange = ALSO_RUN[name]
    check_run(name, kind, zrange, tmp_path)


def _named(text: str, words: tuple[str, ...]) -> list[str]:
    flat = " ".join(text.split())
    return [w for w in words if w not in flat]


@pytest.mark.parametrize("name", list(MUST_RAISE))
def test_must_raise(name: str, in_suite: Path, tmp_path: Path) -> None:
    path = str(spec_path(name, exc=True))
    words = MUST_RAISE[name]
    for args in (["run", path, "-i", OPS, "--allow-eval", "--backend", "inline",
                  "--no-progress", "--run-dir", str(tmp_path / "run")],
                 ["validate", path, "-i", OPS, "--allow-eval"]):
        done = cli(*args)
        assert done.exit_code == 2, (args[0], done.output)
        assert isinstance(done.exception, SystemExit), (args[0], done.exception)
        assert "Traceback" not in done.output and "internal error" not in done.output
        assert not _named(done.output, words), (args[0], _named(done.output, words),
                                                done.output)
    assert not (tmp_path / "run" / "checkpoint.db").exists(), "a refused spec starts no run"


def test_the_lists_are_zettas() -> None:
    """The counts of zetta's lists: 36 specs that run, 41 (distinct) that are refused, all
    present in the shared corpus."""
    assert len(MUST_RUN) == 36 and len(MUST_RAISE) == 41
    for name in [*MUST_RUN, *ALSO_RUN]:
        assert spec_path(name).is_file(), name
    for name in MUST_RAISE:
        assert spec_path(name, exc=True).is_file(), name
    every = {p.name for p in CASES.glob(f"{PREFIX}exc__*.cue")}
    assert every == {spec_path(n, exc=True).name for n in MUST_RAISE}


def test_the_command_itself(in_suite: Path, tmp_path: Path) -> None:
    """The same through the ``specflow`` command in its own process: a refused spec exits 2
    without a traceback, a copy runs and writes the input."""
    import subprocess
    import sys

    def sf(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "specflow", *args], capture_output=True,
                              text=True, timeout=600)

    bad = sf("validate", str(spec_path("test_uint8_exc_processing_gap_but_uneven", exc=True)),
             "--allow-eval")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "processing_gap [512, 512, 1] must be even" in " ".join(bad.stderr.split())
    refused = sf("run", str(spec_path("test_uint8_copy_crop")), "--no-progress")
    assert refused.returncode == 2 and "--allow-eval" in refused.stderr
    ok = sf("run", str(spec_path("test_uint8_copy_crop")), "--allow-eval", "--backend",
            "inline", "--no-progress", "--run-dir", str(tmp_path / "run"))
    assert ok.returncode == 0, ok.stderr
    data, start, shape = read_layer(Path("assets/outputs/test_uint8_copy_crop"), Z5)
    assert np.array_equal(data, expected("uint8", start, shape, "copy"))
