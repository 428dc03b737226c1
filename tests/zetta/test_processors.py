"""zetta's mask processors, tensor functions and the constant layer, on small hand-made
masks whose answers follow from the operations' definitions."""

from __future__ import annotations

import pickle

import numpy as np

from specflow import build
from specflow.volumes import VolumetricIndex
from specflow.volumes.processors import (
    apply_mask_fn,
    binary_closing,
    coarsen,
    coarsen_mask,
    compare,
    erode,
    filter_cc,
)


def plane(rows: list[str]) -> np.ndarray:
    """A (1, X, Y, 1) mask from rows of '.' and '#'."""
    arr = np.array([[c == "#" for c in r] for r in rows], dtype=np.uint8)
    return arr[None, :, :, None]


def test_coarsen_counts_the_3x3_neighbourhood() -> None:
    block = plane(["......", "......", "..##..", "..##..", "......", "......"])
    assert np.array_equal(coarsen(block, width=1, thr=3), block)  # only the block has >= 3
    grown = coarsen(block, width=1, thr=2)  # plus the cells beside (not diagonal to) it
    assert np.array_equal(grown, plane(["......", "..##..", ".####.", ".####.", "..##..",
                                        "......"]))
    dot = plane([".....", ".....", "..#..", ".....", "....."])
    assert np.array_equal(coarsen_mask(dot, width=1), plane([".....", ".###.", ".###.", ".###.",
                                                             "....."]))
    assert coarsen_mask(dot, width=2).sum() == 25
    assert not np.any(coarsen(np.zeros((1, 4, 4, 1), np.uint8)))


def test_erode_keeps_the_interior() -> None:
    block = plane([".........", ".........", "..#####..", "..#####..", "..#####..",
                   "..#####..", "..#####..", ".........", "........."])
    inner = plane([".........", ".........", ".........", "...###...", "...###...",
                   "...###...", ".........", ".........", "........."])
    assert np.array_equal(erode(block, width=1, thr=3), inner.astype(bool))


def test_filter_cc_by_component_size() -> None:
    data = plane(["##...", "##...", ".....", "...#.", "....#"]) * 9  # 4 voxels, 2 diagonal
    big = filter_cc(data, mode="keep_large", thr=2)
    assert np.array_equal(big, plane(["##...", "##...", ".....", ".....", "....."]) * 9)
    small = filter_cc(data, mode="keep_small", thr=2)
    assert np.array_equal(small, plane([".....", ".....", ".....", "...#.", "....#"]) * 9)
    assert big.dtype == data.dtype


def test_binary_closing_fills_a_hole() -> None:
    ring = plane([".......", ".#####.", ".#####.", ".##.##.", ".#####.", ".#####.", "......."])
    closed = binary_closing(ring, iterations=1)
    assert closed.dtype == bool and closed[0, 3, 3, 0]
    assert np.array_equal(closed | ring.astype(bool), closed)  # nothing lost


def test_compare_fill_and_apply_mask() -> None:
    data = np.arange(6, dtype=np.float32).reshape(1, 1, 6, 1)
    assert compare(data, ">=", 3).ravel().tolist() == [False] * 3 + [True] * 3
    filled = compare(data, "<", 2, binarize=False, fill=-1)
    assert filled.ravel().tolist() == [-1, -1, 2, 3, 4, 5]
    masked = apply_mask_fn(data, [data == 1, data > 4], fill_value=7)
    assert masked.ravel().tolist() == [0, 7, 2, 3, 4, 7] and masked.dtype == np.float32


def test_constant_layer_with_read_procs() -> None:
    layer = build({"@type": "build_constant_volumetric_layer", "value": 3, "num_channels": 2,
                   "read_procs": [{"@type": "multiply", "@mode": "partial", "value": 2}]})
    idx = VolumetricIndex.from_voxels([0, 0, 0], [4, 5, 2], [8, 8, 40])
    got = pickle.loads(pickle.dumps(layer)).read(idx)
    assert got.shape == (2, 4, 5, 2) and got.dtype == np.float32 and np.all(got == 6)


def test_lists_of_layers_are_read_for_functions() -> None:
    from specflow.processing.operations import read_inputs

    src = build({"@type": "build_constant_volumetric_layer", "value": 5})
    on = build({"@type": "build_constant_volumetric_layer", "value": 1})
    off = build({"@type": "build_constant_volumetric_layer", "value": 0})
    idx = VolumetricIndex.from_voxels([0, 0, 0], [3, 2, 1], [4, 4, 40])
    args = read_inputs(idx, {"src": src, "masks": [off, on], "fill_value": 2})
    assert [m.shape for m in args["masks"]] == [(1, 3, 2, 1)] * 2
    assert np.all(apply_mask_fn(**args) == 2)
    args = read_inputs(idx, {"src": src, "masks": [off], "fill_value": 2})
    assert np.all(apply_mask_fn(**args) == 5)


def test_make_ng_link_holds_the_layers() -> None:
    import json
    import urllib.parse

    link = build({"@type": "make_ng_link", "title": "t", "position": [5, 6, 7],
                  "print_to_logger": False, "layers": [
                      ["img", "image", "gs://bucket/img"],
                      ["seg", "segmentation", "precomputed://gs://bucket/seg"]]})
    state = json.loads(urllib.parse.unquote(link.split("#!", 1)[1]))
    assert [(x["name"], x["type"], x["source"]) for x in state["layers"]] == [
        ("img", "image", "precomputed://gs://bucket/img"),
        ("seg", "segmentation", "precomputed://gs://bucket/seg")]
    assert state["position"] == [5, 6, 7] and state["title"] == "t"
