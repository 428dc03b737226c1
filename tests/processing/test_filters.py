"""The separable filters run in slabs of X planes so that a large block stays in a core's
cache; the slabs must give exactly the float32 result of filtering the block in one piece."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from specflow.processing import gaussian_filter, mean_filter
from specflow.processing import operations as ops


def _reference_box_mean(a: Any, radius: tuple[int, int, int]) -> Any:
    """The box mean written out directly: per axis X, Y, Z, the centre, then for each distance
    the neighbour below and the one above (zeros outside), then the scale."""
    acc = np.array(a, dtype=np.float32, copy=True)
    for axis, r in zip((1, 2, 3), radius, strict=True):
        res = acc.copy()
        for k in range(1, min(r, acc.shape[axis] - 1) + 1):
            for dst, src in ((slice(k, None), slice(None, -k)), (slice(None, -k), slice(k, None))):
                d, s = [slice(None)] * 4, [slice(None)] * 4
                d[axis], s[axis] = dst, src
                res[tuple(d)] += acc[tuple(s)]
        acc = res
    n = (2 * radius[0] + 1) * (2 * radius[1] + 1) * (2 * radius[2] + 1)
    return acc * np.float32(1.0 / n)


@pytest.mark.parametrize("shape", [(1, 150, 40, 30), (2, 33, 17, 9), (1, 7, 5, 300)])
@pytest.mark.parametrize("radius", [(2, 2, 2), (3, 1, 0), (0, 2, 4)])
def test_the_slabbed_box_mean_is_bit_identical_to_the_whole_block(
        shape: tuple[int, ...], radius: tuple[int, int, int],
        monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(7)
    a = rng.random(shape, dtype=np.float32) * 100
    want = _reference_box_mean(a, radius)
    assert np.array_equal(mean_filter(a, radius=list(radius)), want)
    # slabs of a few planes each (more slabs than planes of context): still the same bits
    plane = shape[0] * shape[2] * shape[3] * 4
    monkeypatch.setattr(ops, "SLAB_BYTES", plane)
    monkeypatch.setattr(ops, "MIN_SLAB_PLANES", 1)
    assert np.array_equal(mean_filter(a, radius=list(radius)), want)


def test_the_slabbed_gaussian_and_integer_input_match_one_piece(
        monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    image = rng.integers(0, 255, (1, 90, 24, 20), dtype=np.uint8)
    whole_g = gaussian_filter(image, sigma=[1.5, 0.8, 1.0])
    whole_m = mean_filter(image, radius=2)
    assert whole_g.dtype == np.float32 and whole_m.dtype == np.float32
    monkeypatch.setattr(ops, "SLAB_BYTES", 24 * 20 * 4 * 3)
    monkeypatch.setattr(ops, "MIN_SLAB_PLANES", 1)
    assert np.array_equal(gaussian_filter(image, sigma=[1.5, 0.8, 1.0]), whole_g)
    assert np.array_equal(mean_filter(image, radius=2), whole_m)
    # float64 input keeps its dtype, slabbed or not
    data = rng.random((1, 40, 6, 6))
    got = mean_filter(data, radius=1)
    assert got.dtype == np.float64
    monkeypatch.setattr(ops, "SLAB_BYTES", 10 ** 9)
    assert np.array_equal(mean_filter(data, radius=1), got)
