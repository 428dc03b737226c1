"""The input layers zetta_utils' subchunkable integration specs read, built on disk.

The specs read ``assets/inputs/fafb_v15_img_128_128_40-2048-3072_2000-2050_{uint8,float32}``
relative to the directory they run in. The names and the specs' boxes (``[64 * 1024, 96 *
1024)`` in x and y at 4 nm, z from 2000, written at 128 nm) give the geometry: one scale at
128 x 128 x 40 nm, voxels [2048, 3072) x [2048, 3072) x [2000, 2050). The stored chunks are
1024 x 1024 x 1 (the specs' top-level chunk; their backend-chunk rules, e.g. a
``max_reduction_chunk_size`` of 256 being too small, imply chunks larger than 256).

The data is deterministic and different in every voxel of a slice; only the slices the specs
process (``DATA_Z``) are stored, the rest read as zero, which keeps the layers small.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import tensorstore as ts

RESOLUTION = (128, 128, 40)
VOXEL_OFFSET = (2048, 2048, 2000)
SIZE = (1024, 1024, 50)
CHUNK_SIZE = (1024, 1024, 1)
#: the z slices that hold data (every spec's box lies in z 2000..2005)
DATA_Z = (2000, 2008)
DTYPES = ("uint8", "float32")
INPUT_DIR = Path("assets") / "inputs"


def input_name(dtype: str) -> str:
    return f"fafb_v15_img_128_128_40-2048-3072_2000-2050_{dtype}"


def input_info(dtype: str) -> dict[str, Any]:
    """The info file of an input layer, as CloudVolume writes one."""
    return {
        "type": "image",
        "data_type": dtype,
        "num_channels": 1,
        "scales": [{
            "key": "128_128_40",
            "resolution": list(RESOLUTION),
            "voxel_offset": list(VOXEL_OFFSET),
            "size": list(SIZE),
            "chunk_sizes": [list(CHUNK_SIZE)],
            "encoding": "raw",
        }],
    }


def expected_input(dtype: str, start: tuple[int, int, int] | list[int],
                   stop: tuple[int, int, int] | list[int]) -> npt.NDArray[Any]:
    """The input's voxels over ``[start, stop)`` (voxels at 128 x 128 x 40 nm) as a
    (1, X, Y, Z) array: zero outside the stored region and outside ``DATA_Z``."""
    xs = np.arange(start[0], stop[0])[:, None, None]
    ys = np.arange(start[1], stop[1])[None, :, None]
    zs = np.arange(start[2], stop[2])[None, None, :]
    v = (xs * 7 + ys * 13 + zs * 31 + (xs * ys) % 17) % 251
    inside = ((xs >= VOXEL_OFFSET[0]) & (xs < VOXEL_OFFSET[0] + SIZE[0])
              & (ys >= VOXEL_OFFSET[1]) & (ys < VOXEL_OFFSET[1] + SIZE[1])
              & (zs >= DATA_Z[0]) & (zs < DATA_Z[1]))
    if dtype == "uint8":
        data = np.where(inside, v + 1, 0).astype(np.uint8)  # 1..251: no stored zero
    else:
        # signed, never zero inside: (v + 1 + x % 5) / 8 is a multiple of 1/8, 16.03125 is not
        data = np.where(inside, (v + 1 + xs % 5) / 8.0 - 16.03125, 0).astype(np.float32)
    return data[None]


def make_input(root: Path, dtype: str) -> Path:
    """Write one input layer under ``root / INPUT_DIR``; returns its path."""
    path = (root / INPUT_DIR / input_name(dtype)).resolve()
    path.mkdir(parents=True, exist_ok=True)
    (path / "info").write_text(json.dumps(input_info(dtype), indent=2))
    store = ts.open({"driver": "neuroglancer_precomputed", "kvstore": f"file://{path}/"},
                    read=True, write=True).result()
    lo = (VOXEL_OFFSET[0], VOXEL_OFFSET[1], DATA_Z[0])
    hi = (VOXEL_OFFSET[0] + SIZE[0], VOXEL_OFFSET[1] + SIZE[1], DATA_Z[1])
    data = expected_input(dtype, lo, hi)[0]  # x, y, z
    store[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2], 0].write(data).result()
    return path


def make_inputs(root: Path) -> dict[str, Path]:
    """Both input layers (uint8 and float32) under ``root / INPUT_DIR``."""
    return {dtype: make_input(root, dtype) for dtype in DTYPES}


def link_inputs(run_dir: Path, built_root: Path) -> Path:
    """Make ``run_dir / assets / inputs`` point at inputs built once under ``built_root``
    (specs only read them)."""
    target = run_dir / INPUT_DIR
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        target.symlink_to((built_root / INPUT_DIR).resolve(), target_is_directory=True)
    return target
