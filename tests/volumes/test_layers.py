import pickle
from pathlib import Path

import numpy as np
import pytest

from specflow.builder import build
from specflow.flow.ids import task_digest_of
from specflow.volumes import LayerMetadataError, TSLayer, VolumetricIndex, build_ts_layer

RES = (4.0, 4.0, 40.0)


def make(path: Path, fmt: str, **kw: object) -> TSLayer:
    settings = dict(info_dtype="uint16", info_size=[20, 18, 6], info_voxel_offset=[5, 3, 1],
                    info_chunk_size=[8, 8, 3], info_resolution=list(RES))
    settings.update(kw)  # type: ignore[arg-type]
    layer = build_ts_layer(str(path / f"layer_{fmt}"), format=fmt, **settings)  # type: ignore[arg-type]
    layer.prepare_for_write(RES)
    return layer


@pytest.mark.parametrize("fmt", ["zarr", "zarr3", "n5", "precomputed"])
def test_round_trip_with_offset_and_outside_reads(tmp_path: Path, fmt: str) -> None:
    layer = make(tmp_path, fmt)
    idx = VolumetricIndex.from_voxels((5, 3, 1), (25, 21, 7), RES)
    data = np.arange(np.prod(idx.shape), dtype=np.uint16).reshape(1, *idx.shape)
    layer.write(idx, data)
    again = pickle.loads(pickle.dumps(layer))  # a worker gets the settings, not handles
    assert np.array_equal(again.read(idx), data)
    grown = again.read(idx.padded(2))
    assert grown.shape == (1, 24, 22, 10)
    assert np.array_equal(grown[:, 2:-2, 2:-2, 2:-2], data)
    assert grown[:, :2].sum() == 0 and grown[:, :, :, -2:].sum() == 0
    reopened = build_ts_layer(str(tmp_path / f"layer_{fmt}"))
    assert reopened.format() == fmt
    scale = reopened.scales()[0]
    assert scale.voxel_offset == (5, 3, 1) and scale.size == (20, 18, 6)
    assert scale.resolution == RES


def test_write_clips_outside_and_rounds_floats(tmp_path: Path) -> None:
    layer = make(tmp_path, "zarr")
    idx = VolumetricIndex.from_voxels((0, 0, 0), (10, 10, 3), RES)
    layer.write(idx, np.full((1, 10, 10, 3), 2.6, dtype=np.float32))
    got = layer.read(idx)
    assert got.dtype == np.uint16
    assert (got[:, 5:, 3:, 1:] == 3).all() and got[:, :5].sum() == 0


def test_existing_metadata_is_not_changed_silently(tmp_path: Path) -> None:
    make(tmp_path, "zarr")
    with pytest.raises(LayerMetadataError, match="dtype is uint16, the spec asks for float32"):
        make(tmp_path, "zarr", info_dtype="float32")
    # the same metadata again is fine and keeps the data
    layer = make(tmp_path, "zarr")
    idx = VolumetricIndex.from_voxels((5, 3, 1), (9, 7, 2), RES)
    layer.write(idx, np.ones((1, 4, 4, 1), np.uint16))
    make(tmp_path, "zarr", info_overwrite=True)
    assert layer.read(idx).sum() == 16
    replaced = make(tmp_path, "zarr", info_dtype="float32", info_overwrite=True)
    assert replaced.scales()[0].dtype == "float32"
    assert replaced.read(idx).sum() == 0


def test_create_needs_info(tmp_path: Path) -> None:
    layer = build_ts_layer(str(tmp_path / "none"))
    with pytest.raises(ValueError, match="give info_dtype and info_size"):
        layer.prepare_for_write(RES)


def test_reference_path_and_other_resolutions(tmp_path: Path) -> None:
    src = make(tmp_path, "zarr", info_dtype="float32", info_voxel_offset=[0, 0, 0],
               info_size=[16, 16, 4])
    whole = VolumetricIndex.from_voxels((0, 0, 0), (16, 16, 4), RES)
    data = np.random.default_rng(0).random((1, 16, 16, 4), dtype=np.float32)
    src.write(whole, data)
    dst = build_ts_layer(str(tmp_path / "half"), info_reference_path=str(tmp_path / "layer_zarr"),
                         info_resolution=[8, 8, 40])
    info = dst.prepare_for_write((8, 8, 40))
    assert info.size == (8, 8, 4) and info.dtype == "float32"
    coarse = VolumetricIndex.from_voxels((0, 0, 0), (8, 8, 4), (8, 8, 40))
    with pytest.raises(ValueError, match="interpolation_mode"):
        src.read(coarse)
    avg = build_ts_layer(str(tmp_path / "layer_zarr"), interpolation_mode="average").read(coarse)
    want = data.reshape(1, 8, 2, 8, 2, 4).mean(axis=(2, 4))
    assert np.allclose(avg, want, atol=1e-6)
    up = build_ts_layer(str(tmp_path / "layer_zarr"), interpolation_mode="nearest")
    fine = VolumetricIndex.from_voxels((0, 0, 0), (32, 32, 4), (2, 2, 40))
    assert np.array_equal(up.read(fine)[:, ::2, ::2], data)


def test_segmentation_mode_downsampling(tmp_path: Path) -> None:
    seg = make(tmp_path, "precomputed", info_dtype="uint32", info_layer_type="segmentation",
               info_voxel_offset=[0, 0, 0], info_size=[4, 4, 1], info_chunk_size=[4, 4, 1],
               info_compression="compressed_segmentation")
    idx = VolumetricIndex.from_voxels((0, 0, 0), (4, 4, 1), RES)
    labels = np.array([[7, 7, 1, 2], [7, 3, 2, 2], [5, 5, 9, 9], [6, 6, 8, 8]], np.uint32)
    seg.write(idx, labels[None, :, :, None])
    ds = build_ts_layer(str(tmp_path / "layer_precomputed"), interpolation_mode="mode")
    got = ds.read(VolumetricIndex.from_voxels((0, 0, 0), (2, 2, 1), (8, 8, 40)))
    assert got[0, :, :, 0].tolist() == [[7, 2], [5, 8]]
    # precomputed layers take new scales
    seg.prepare_for_write((8, 8, 40))
    assert [s.resolution for s in seg.scales()] == [RES, (8.0, 8.0, 40.0)]


def test_layers_from_specs_hash_by_settings(tmp_path: Path) -> None:
    spec = {"@type": "build_ts_layer", "path": str(tmp_path / "x"), "info_dtype": "uint8"}
    a, b = build(spec), build(spec)
    assert task_digest_of(a) == task_digest_of(b)
    assert a.path.startswith("file://") and a.path.endswith("/")
    with pytest.raises(Exception, match="unknown interpolation_mode"):
        build({**spec, "interpolation_mode": "cubic"})


def test_a_prepare_stopped_while_writing_the_geometry_leaves_no_array(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import specflow.volumes.layers as layers

    def layer() -> TSLayer:
        return build_ts_layer(str(tmp_path / "l"), format="zarr", info_dtype="uint8",
                              info_size=[16, 16, 16], info_chunk_size=[8, 8, 8],
                              info_resolution=[8, 8, 16])

    def killed(url: str, key: str, data: bytes) -> None:
        raise KeyboardInterrupt  # the process ends here

    with monkeypatch.context() as m:
        m.setattr(layers, "kv_write", killed)
        with pytest.raises(KeyboardInterrupt):
            layer().prepare_for_write([8, 8, 16])
    # no array without its geometry (which would read as another resolution on resume)
    assert not (tmp_path / "l" / ".zarray").exists()
    again = layer()
    info = again.prepare_for_write([8, 8, 16])
    assert info.resolution == (8.0, 8.0, 16.0) and again.exists()
    assert layer().scales()[0].resolution == (8.0, 8.0, 16.0)
