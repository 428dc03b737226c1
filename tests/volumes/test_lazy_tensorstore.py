"""A driving process that only describes local layers does not load tensorstore (it takes a
second or more to load; the workers that need it start meanwhile)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

from specflow.volumes import build_ts_layer


def test_building_a_flow_over_local_layers_leaves_tensorstore_unloaded(tmp_path: Path) -> None:
    src = build_ts_layer(str(tmp_path / "src"), format="zarr", info_dtype="float32",
                         info_size=[16, 16, 16], info_chunk_size=[8, 8, 8],
                         info_resolution=[1, 1, 1])
    src.prepare_for_write([1, 1, 1])
    script = textwrap.dedent(f"""
        import sys
        from specflow.processing import build_subchunkable_apply_flow, mean_filter
        from specflow.run import count_tasks
        from specflow.volumes import BBox3D, build_ts_layer
        src = build_ts_layer({str(tmp_path / "src")!r}, readonly=True)
        dst = build_ts_layer({str(tmp_path / "dst")!r}, info_reference_path={str(tmp_path / "src")!r})
        flow = build_subchunkable_apply_flow(
            dst=dst, dst_resolution=[1, 1, 1], bbox=BBox3D((0, 0, 0), (16, 16, 16)),
            fn=mean_filter, op_kwargs={{"src": src}}, processing_chunk_sizes=[[8, 8, 8]],
            processing_crop_pads=[[1, 1, 1]], skip_intermediaries=True)
        print(src.scales()[0].size, "tensorstore" in sys.modules)
        import tensorstore  # noqa: F401 - and it still loads when used
        print("tensorstore" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, cwd=tmp_path)
    first, second = out.stdout.strip().splitlines()
    assert first == "(16, 16, 16) False"
    assert second == "True"
    # the layer still reads and writes once tensorstore is needed
    src.write(src.scales()[0].index, np.ones((1, 16, 16, 16), np.float32))
    assert float(src.read(src.scales()[0].index).sum()) == 16 ** 3
