"""The order chunk tasks are handed out in: brick by brick, so that tasks close in the order
are close in space.

Backends hand out consecutive tasks together (a batch to one worker), and a worker's
tensorstore cache holds the stored chunks its last tasks read: when consecutive tasks are
neighbours, the context one task reads around its chunk is mostly in that cache already.
In plain raster order, consecutive tasks are neighbours along one axis only.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from specflow.volumes.geometry import VolumetricIndex

#: chunks per brick edge: a brick of 4^3 = 64 chunks
BRICK = 4


def local_order(
    region: VolumetricIndex, chunk: Sequence[int], brick: int = BRICK
) -> Iterator[VolumetricIndex]:
    """The chunks of ``chunk`` voxels that tile ``region`` exactly (each once), bricks of
    ``brick``^3 chunks in raster order and the chunks of each brick in raster order. Lazy:
    it holds one brick's corner at a time, whatever the size of the region."""
    start, shape = region.start, region.shape
    grid = [s // c for s, c in zip(shape, chunk, strict=True)]
    if any(s % c for s, c in zip(shape, chunk, strict=True)):
        raise ValueError(f"an index of shape {list(shape)} is not tiled by chunks of "
                         f"{list(chunk)}")
    span = [brick * c for c in chunk]
    for bx in range(0, grid[0], brick):
        for by in range(0, grid[1], brick):
            for bz in range(0, grid[2], brick):
                lo = [a + g * c for a, g, c in zip(start, (bx, by, bz), chunk, strict=True)]
                hi = [min(x + s, a + n) for x, s, a, n in zip(lo, span, start, shape,
                                                                strict=True)]
                yield from VolumetricIndex.from_voxels(lo, hi, region.resolution).iter_chunks(
                    chunk, mode="exact")
