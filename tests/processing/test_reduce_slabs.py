"""When a staged flow hands out its reductions: each slab of reduction parts once, with the
tasks of every chunk whose staged output it combines, whatever the geometry and the order
chunks are handed out in."""

from __future__ import annotations

import random
from typing import Any

import pytest

from specflow.processing.subchunkable import _ReadySlabs, reduction_parts
from specflow.processing.subchunkable_rules import Level
from specflow.volumes.geometry import VolumetricIndex


def _geometry(rng: random.Random) -> tuple[VolumetricIndex, Level, tuple[int, ...], Any]:
    chunk = tuple(rng.randint(2, 9) for _ in range(3))
    blend = tuple(rng.randint(0, 3) for _ in range(3))
    gap = tuple(rng.choice([0, 0, rng.randint(1, 4)]) for _ in range(3))
    stride = tuple(c + g for c, g in zip(chunk, gap, strict=True))
    n = [rng.randint(1, 5) for _ in range(3)]
    start = [rng.randint(-10, 10) for _ in range(3)]
    stop = [s + (k - 1) * q + c for s, k, q, c in zip(start, n, stride, chunk, strict=True)]
    region = VolumetricIndex.from_voxels(start, stop, (1, 1, 1))
    return region, Level(chunk, (0, 0, 0), blend, "linear"), stride, gap


@pytest.mark.parametrize("seed", range(4))
def test_every_part_once_after_every_chunk_it_combines(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(40):
        region, top, stride, _gap = _geometry(rng)
        stored = tuple(rng.randint(1, 8) for _ in range(3))
        offset = tuple(rng.randint(-5, 5) for _ in range(3))
        max_size = rng.choice([None, tuple(rng.randint(1, 20) for _ in range(3))])
        slabs = _ReadySlabs(region, top, stride, stored, offset, max_size)
        chunks = list(region.iter_chunks(top.chunk, stride=stride))
        rng.shuffle(chunks)
        emitted: list[tuple[VolumetricIndex, set[tuple[int, ...]] | None]] = [
            (p, None) for p in slabs.uncovered()]
        handed: set[tuple[int, ...]] = set()
        for chunk in chunks:
            handed.add(chunk.start)
            for px, tasks in slabs.handed_out(chunk, chunk.start):  # type: ignore[arg-type]
                got = set(tasks)
                assert got <= handed  # only chunks already handed out
                emitted += [(p, got) for p in slabs.covered(px)]
        assert not slabs.left and not slabs.tasks  # nothing held at the end
        want = reduction_parts(region, stored, offset, max_size, top.chunk)
        assert sorted((p.start, p.stop) for p, _ in emitted) == \
            sorted((p.start, p.stop) for p in want)
        for part, deps in emitted:
            need = {c.start for c in chunks
                    if not c.padded(top.blend).intersection(part).is_empty()}
            if deps is None:
                assert not need  # an uncovered part waits for nothing, and needs nothing
            else:
                assert need and need <= deps
