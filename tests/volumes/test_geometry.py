import pickle

import pytest

from specflow.builder import build
from specflow.flow.ids import task_digest_of
from specflow.volumes import BBox3D, VolumetricIndex


def test_bbox_from_coords_is_registered_and_physical() -> None:
    box = build({"@type": "BBox3D.from_coords", "start_coord": [1, 2, 3],
                 "end_coord": [5, 6, 7], "resolution": [4, 4, 40]})
    assert box == BBox3D((4, 8, 120), (20, 24, 280))
    assert box.size == (16, 16, 160)


def test_bbox_refuses_end_before_start() -> None:
    with pytest.raises(ValueError, match="end >= start"):
        BBox3D((0, 0, 10), (1, 1, 5))


def test_bbox_intersection_padding_snapping() -> None:
    a = BBox3D((0, 0, 0), (10, 10, 10))
    b = BBox3D((5, 5, 5), (20, 20, 20))
    assert a.intersection(b) == BBox3D((5, 5, 5), (10, 10, 10))
    assert a.intersection(BBox3D((30, 30, 30), (40, 40, 40))).is_empty()
    assert a.padded(1, 2) == BBox3D((-2, -2, -2), (12, 12, 12))
    odd = BBox3D((3, 3, 3), (13, 13, 13))
    assert odd.snapped((0, 0, 0), (4, 4, 4), "expand") == BBox3D((0, 0, 0), (16, 16, 16))
    assert odd.snapped((0, 0, 0), (4, 4, 4), "shrink") == BBox3D((4, 4, 4), (12, 12, 12))


def test_index_voxels_and_padding() -> None:
    idx = VolumetricIndex.from_voxels((2, 4, 6), (10, 12, 14), (4, 4, 40))
    assert idx.shape == (8, 8, 8)
    assert idx.padded(2).start == (0, 2, 4)
    assert idx.padded((1, 0, 2)).shape == (10, 8, 12)
    assert idx.cropped(1).shape == (6, 6, 6)
    assert idx.bbox.start == (8, 16, 240)


def test_index_refuses_off_grid_boxes() -> None:
    with pytest.raises(ValueError, match="not on the voxel grid"):
        VolumetricIndex((4, 4, 40), BBox3D((2, 0, 0), (8, 8, 80)))
    snapped = VolumetricIndex.from_bbox(BBox3D((2, 0, 0), (9, 8, 80)), (4, 4, 40), "expand")
    assert snapped.start == (0, 0, 0) and snapped.stop == (3, 2, 2)


def test_index_intersection_and_snapping() -> None:
    a = VolumetricIndex.from_voxels((0, 0, 0), (10, 10, 10), (1, 1, 1))
    b = VolumetricIndex.from_voxels((5, -5, 5), (15, 5, 8), (1, 1, 1))
    inter = a.intersection(b)
    assert inter.start == (5, 0, 5) and inter.stop == (10, 5, 8)
    s = VolumetricIndex.from_voxels((3, 3, 3), (13, 13, 13), (1, 1, 1))
    assert s.snapped((1, 1, 1), (4, 4, 4)).start == (1, 1, 1)
    assert s.snapped((1, 1, 1), (4, 4, 4)).stop == (13, 13, 13)
    assert s.snapped((0, 0, 0), (4, 4, 4), "shrink").stop == (12, 12, 12)
    assert s.is_aligned((3, 3, 3), (5, 5, 5)) and not s.is_aligned((0, 0, 0), (5, 5, 5))


def test_split_with_stride_offset_and_clipping() -> None:
    idx = VolumetricIndex.from_voxels((0, 0, 0), (10, 8, 4), (1, 1, 1))
    chunks = idx.split((4, 4, 4))
    assert len(chunks) == 3 * 2 * 1
    assert chunks[-1].stop == (10, 8, 4) and chunks[-1].shape == (2, 4, 4)
    overlapping = idx.split((4, 4, 4), stride=(2, 4, 4), mode="exact")
    assert [c.start[0] for c in overlapping if c.start[1:] == (0, 0)] == [0, 2, 4, 6]
    shifted = idx.split((4, 4, 4), offset=(2, 0, 0))
    assert shifted[0].start == (2, 0, 0)
    with pytest.raises(ValueError, match="not tiled exactly"):
        idx.split((4, 4, 4), mode="exact")


def test_ids_and_pickles_are_stable() -> None:
    a = VolumetricIndex.from_voxels((0, 0, 0), (8, 8, 8), (4, 4, 40))
    b = VolumetricIndex.from_voxels((0, 0, 0), (8, 8, 8), (4, 4, 40))
    assert task_digest_of(a) == task_digest_of(b)
    assert task_digest_of(a) != task_digest_of(a.padded(1))
    assert pickle.loads(pickle.dumps(a)) == a
    box = BBox3D((0, 0, 0), (1, 2, 3))
    assert task_digest_of(box) == task_digest_of(BBox3D((0.0, 0.0, 0.0), (1.0, 2.0, 3.0)))
