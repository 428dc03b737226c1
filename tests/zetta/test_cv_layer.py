"""build_cv_layer: zetta's precomputed layers on tensorstore.

The expected info files below are worked out by hand from zetta_utils' layer code
(``layer/precomputed.py`` for ``@version`` 0.4, ``layer/deprecated/precomputed.py`` before):
the keys it writes, the scale keys, and how size and voxel offset follow from a box.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorstore as ts
from fixtures import expected_input, input_info, input_name

from specflow import SpecError, build
from specflow.builder.not_provided import NotProvidedError
from specflow.volumes import BBox3D, CVLayer, LayerMetadataError, VolumetricIndex, build_cv_layer

SRC = f"assets/inputs/{input_name('uint8')}"
SRC_F = f"assets/inputs/{input_name('float32')}"
RES = [128, 128, 40]


def idx(start: list[int], stop: list[int], res: list[int] | None = None) -> VolumetricIndex:
    return VolumetricIndex.from_voxels(start, stop, res or RES)


def info_of(path: str | Path) -> dict[str, Any]:
    return json.loads((Path(path) / "info").read_text())


def plain_read(path: str | Path, start: list[int], stop: list[int], **scale: Any) -> Any:
    """Read with a plain neuroglancer_precomputed spec, as any tensorstore user would."""
    spec: dict[str, Any] = {"driver": "neuroglancer_precomputed",
                            "kvstore": f"file://{Path(path).resolve()}/"}
    if scale:
        spec["scale_metadata"] = scale
    store = ts.open(spec).result()
    out = store[start[0]:stop[0], start[1]:stop[1], start[2]:stop[2], :].read().result()
    return np.moveaxis(out, 3, 0)


def v04(**kw: Any) -> dict[str, Any]:
    return {"@version": "0.4", "@type": "build_cv_layer", **kw}


# --------------------------------------------------------------------------- reading


def test_reads_the_fixture_inputs(zetta_workdir: Path) -> None:
    for dtype, path in (("uint8", SRC), ("float32", SRC_F)):
        layer = build({"@type": "build_cv_layer", "path": path})
        region = idx([2040, 2100, 1999], [2300, 2200, 2003])  # crosses the stored edge
        got = layer.read(region)
        assert got.dtype == np.dtype(dtype)
        assert np.array_equal(got, expected_input(dtype, region.start, region.stop))
        assert np.count_nonzero(got[:, 8:, :, 1:]) == got[:, 8:, :, 1:].size


def test_building_touches_no_storage(workdir: Path) -> None:
    layer = build(v04(path="gs://no-such-bucket-specflow/x", info_reference_path="gs://nope/y",
                      info_scales=[[4, 4, 40]], info_inherit_all_params=True,
                      cv_kwargs={"cache": False}))
    assert isinstance(layer, CVLayer) and layer.path == "gs://no-such-bucket-specflow/x/"
    assert list(workdir.iterdir()) == []


# --------------------------------------------------------------------------- 0.4 info


def test_v04_inherit_all_params_info_and_data(zetta_workdir: Path) -> None:
    dst = build(v04(path="assets/outputs/copy", info_reference_path=SRC,
                    info_scales=[[128, 128, 40]], info_inherit_all_params=True))
    region = idx([2048, 2048, 2000], [2048 + 1024, 2048 + 512, 2003])
    dst.prepare_for_write(RES)
    # zetta: the scale from the reference's first scale; only these keys, key "128_128_40"
    assert info_of("assets/outputs/copy") == {
        "num_channels": 1, "data_type": "uint8", "type": "image",
        "scales": [{"chunk_sizes": [[1024, 1024, 1]], "encoding": "raw",
                    "resolution": [128, 128, 40], "key": "128_128_40",
                    "size": [1024, 1024, 50], "voxel_offset": [2048, 2048, 2000]}],
    }
    src = build({"@type": "build_cv_layer", "path": SRC})
    dst.write(region, src.read(region))
    back = plain_read("assets/outputs/copy", list(region.start), list(region.stop))
    assert np.array_equal(back, expected_input("uint8", region.start, region.stop))
    assert np.array_equal(dst.read(region), back)


def test_v04_info_bbox_rounds_like_zetta(zetta_workdir: Path) -> None:
    # test_uint8_copy_info_bbox_oddsize's box: start (65470, 65603, 2000), end (98271, 98237,
    # 2005) at 4 x 4 x 40 nm. At 128 nm: offset floor(65470*4/128)=2045, 65603*4/128 =
    # 2050.09 -> 2050; size ceil((98271-65470)*4/128)=1026, ceil((98237-65603)*4/128)=1020.
    bbox = {"@type": "BBox3D.from_coords", "start_coord": [64 * 1024 - 66, 64 * 1024 + 67, 2000],
            "end_coord": [96 * 1024 - 33, 96 * 1024 - 67, 2005], "resolution": [4, 4, 40]}
    dst = build(v04(path="assets/outputs/odd", info_reference_path=SRC, info_bbox=bbox,
                    info_scales=[[128, 128, 40], [64, 64, 40]], info_inherit_all_params=True))
    dst.prepare_for_write(RES)
    scales = info_of("assets/outputs/odd")["scales"]
    assert [s["key"] for s in scales] == ["128_128_40", "64_64_40"]
    assert scales[0]["voxel_offset"] == [2045, 2050, 2000]
    assert scales[0]["size"] == [1026, 1020, 5]
    assert scales[1]["voxel_offset"] == [4091, 4100, 2000]  # 4091.875 -> 4091; 4100.1875 -> 4100
    assert scales[1]["size"] == [2051, 2040, 5]  # ceil(2050.06), ceil(2039.6)


def test_v04_given_fields_sharding_and_scale_merge(workdir: Path) -> None:
    sharding = {"@type": "neuroglancer_uint64_sharded_v1", "preshift_bits": 0,
                "hash": "identity", "minishard_bits": 1, "shard_bits": 1,
                "minishard_index_encoding": "gzip", "data_encoding": "gzip"}
    # a spec cannot hold the sharding dict (its "@type" names a type), so the Python API
    spec = dict(path="file://" + str(workdir / "seg"), info_type="segmentation",
                info_data_type="uint32", info_num_channels=1, info_chunk_size=[16, 16, 2],
                info_encoding="raw", info_bbox=BBox3D((0, 0, 0), (64 * 8, 64 * 8, 4 * 40)),
                info_scales=[[8, 8, 40]], info_extra_scale_data={"sharding": sharding})
    dst = build_cv_layer(**spec)
    dst.prepare_for_write([8, 8, 40])
    assert info_of(workdir / "seg") == {
        "num_channels": 1, "data_type": "uint32", "type": "segmentation",
        "scales": [{"chunk_sizes": [[16, 16, 2]], "encoding": "raw", "resolution": [8, 8, 40],
                    "key": "8_8_40", "sharding": sharding, "size": [64, 64, 4],
                    "voxel_offset": [0, 0, 0]}],
    }
    data = (np.arange(64 * 64 * 4, dtype=np.uint32).reshape(1, 64, 64, 4) * 7919) % 100003
    region = idx([0, 0, 0], [64, 64, 4], [8, 8, 40])
    dst.write(region, data)
    assert np.array_equal(plain_read(workdir / "seg", [0, 0, 0], [64, 64, 4]), data)
    assert not (workdir / "seg" / "8_8_40" / "0-16_0-16_0-2").exists()  # sharded files

    # a coarser scale joins the existing one (zetta sorts by voxel volume, keeps the old)
    more = build_cv_layer(**{**spec, "info_scales": [[16, 16, 40]], "info_chunk_size": [8, 8, 2],
                             "info_extra_scale_data": None})
    more.prepare_for_write([16, 16, 40])
    scales = info_of(workdir / "seg")["scales"]
    assert [s["key"] for s in scales] == ["8_8_40", "16_16_40"]
    assert scales[1]["size"] == [32, 32, 4] and scales[1]["chunk_sizes"] == [[8, 8, 2]]
    # changing an existing scale is refused unless info_overwrite
    changed = build_cv_layer(**{**spec, "info_chunk_size": [32, 32, 2]})
    with pytest.raises(LayerMetadataError, match="8_8_40.*info_overwrite"):
        changed.prepare_for_write([8, 8, 40])
    build_cv_layer(**{**spec, "info_chunk_size": [32, 32, 2], "info_overwrite": True}
                   ).prepare_for_write([8, 8, 40])
    assert info_of(workdir / "seg")["scales"][0]["chunk_sizes"] == [[32, 32, 2]]


@pytest.mark.parametrize("encoding,dtype,extra", [
    ("png", "uint8", {}),
    ("compressed_segmentation", "uint64", {"compressed_segmentation_block_size": [8, 8, 8]}),
])
def test_v04_compressed_encodings_round_trip(workdir: Path, encoding: str, dtype: str,
                                             extra: dict[str, Any]) -> None:
    bbox = {"@type": "BBox3D", "start": [40, 40, 40], "end": [40 + 4 * 32, 40 + 4 * 32, 320]}
    dst = build(v04(path="enc", info_type="segmentation" if dtype == "uint64" else "image",
                    info_data_type=dtype, info_num_channels=1, info_chunk_size=[16, 16, 8],
                    info_encoding=encoding, info_bbox=bbox, info_scales=[[4, 4, 40]],
                    info_extra_scale_data=extra or None))
    dst.prepare_for_write([4, 4, 40])
    scale = info_of(workdir / "enc")["scales"][0]
    assert scale["encoding"] == encoding and scale["voxel_offset"] == [10, 10, 1]
    rng = np.random.default_rng(3)
    data = rng.integers(0, 200, size=(1, 32, 32, 7)).astype(dtype)
    region = idx([10, 10, 1], [42, 42, 8], [4, 4, 40])
    dst.write(region, data)
    assert np.array_equal(plain_read(workdir / "enc", [10, 10, 1], [42, 42, 8]), data)


def test_v04_refusals(workdir: Path) -> None:
    with pytest.raises(SpecError, match="info_scales"):
        build(v04(path="x", info_reference_path="y"))
    with pytest.raises(SpecError, match="info_data_type.*info_bbox|info_bbox"):
        build(v04(path="x", info_scales=[[4, 4, 40]], info_type="image"))
    with pytest.raises(SpecError, match="info_num_channels"):
        build(v04(path="x", info_scales=[[4, 4, 40]], info_reference_path="y",
                  info_type="image", info_data_type="uint8"))
    layer = build(v04(path="x", info_scales=[[4, 4, 40]], info_reference_path="nothing_here",
                      info_inherit_all_params=True))
    with pytest.raises(LayerMetadataError, match="does not exist"):
        layer.prepare_for_write([4, 4, 40])


# --------------------------------------------------------------------------- legacy info


def test_legacy_reference_overrides_and_chunk_size(zetta_workdir: Path) -> None:
    spec = {"@type": "build_cv_layer", "path": "assets/outputs/legacy",
            "info_reference_path": SRC, "on_info_exists": "overwrite",
            "info_field_overrides": {"data_type": "float32", "type": "image"},
            "info_chunk_size": [256, 256, 1], "cv_kwargs": {"cache": False}}
    dst = build(spec)
    dst.prepare_for_write(RES)
    want = input_info("uint8")  # the reference's info, copied, then updated
    want["data_type"] = "float32"
    want["scales"][0]["chunk_sizes"] = [[256, 256, 1]]
    assert info_of("assets/outputs/legacy") == want
    # an existing info is the new reference: the same spec again changes nothing
    build(spec).prepare_for_write(RES)
    assert info_of("assets/outputs/legacy") == want
    # expect_same refuses a difference
    other = {**spec, "on_info_exists": "expect_same", "info_chunk_size": [512, 512, 1]}
    with pytest.raises(LayerMetadataError, match="expect_same"):
        build(other).prepare_for_write(RES)
    # zetta treats any other mode (the corpus spells "overwite" too) as overwrite
    build({**other, "on_info_exists": "overwite"}).prepare_for_write(RES)
    assert info_of("assets/outputs/legacy")["scales"][0]["chunk_sizes"] == [[512, 512, 1]]


def test_legacy_add_scales(zetta_workdir: Path) -> None:
    spec = {"@type": "build_cv_layer", "path": "assets/outputs/added",
            "info_reference_path": SRC, "on_info_exists": "overwrite",
            "info_add_scales": [[256, 256, 40], {"resolution": [512, 512, 40],
                                                 "chunk_sizes": [[128, 128, 1]]}],
            "info_add_scales_ref": "128_128_40", "info_add_scales_mode": "merge"}
    build(spec).prepare_for_write([256, 256, 40])
    scales = info_of("assets/outputs/added")["scales"]
    assert [s["key"] for s in scales] == ["128_128_40", "256_256_40", "512_512_40"]
    # zetta: size ceil(1024 / 2), offset 2048 / 2, the rest copied from the reference scale
    assert scales[1] == {"resolution": [256, 256, 40], "key": "256_256_40", "size": [512, 512, 50],
                         "voxel_offset": [1024, 1024, 2000], "chunk_sizes": [[1024, 1024, 1]],
                         "encoding": "raw"}
    assert scales[2]["chunk_sizes"] == [[128, 128, 1]] and scales[2]["size"] == [256, 256, 50]
    # "extend" (the default) lets only new scales in
    extend = {k: v for k, v in spec.items() if k != "on_info_exists"}
    build({**extend, "info_add_scales": [[1024, 1024, 40]]}).prepare_for_write(
        [1024, 1024, 40])
    assert len(info_of("assets/outputs/added")["scales"]) == 4
    with pytest.raises(LayerMetadataError, match="pure extension"):
        build({**extend, "info_chunk_size": [64, 64, 1]}).prepare_for_write(RES)
    replace = {**spec, "path": "assets/outputs/replaced", "info_add_scales": [[256, 256, 40]],
               "info_add_scales_mode": "replace"}
    build(replace).prepare_for_write([256, 256, 40])
    assert [s["key"] for s in info_of("assets/outputs/replaced")["scales"]] == ["256_256_40"]


# --------------------------------------------------------------------------- processors


def test_processors_on_cv_and_ts_layers(zetta_workdir: Path) -> None:
    region = idx([2100, 2100, 2001], [2140, 2130, 2003])
    raw = expected_input("uint8", region.start, region.stop)
    src = build({"@type": "build_cv_layer", "path": SRC, "read_procs": [
        {"@type": "to_float32", "@mode": "partial"},
        {"@type": "divide", "@mode": "partial", "value": 2.0},
        {"@type": "add", "@mode": "partial", "value": -1},
    ]})
    got = src.read(region)
    assert got.dtype == np.float32 and np.allclose(got, raw / 2.0 - 1)
    shifted = build({"@type": "build_ts_layer", "path": SRC, "index_procs": [
        {"@type": "VolumetricIndexTranslator", "offset": [0, 0, 1], "resolution": [128, 128, 40]}
    ], "read_procs": [{"@type": "compare", "@mode": "partial", "mode": ">=", "value": 127}]})
    above = expected_input("uint8", [2100, 2100, 2002], [2140, 2130, 2004]) >= 127
    assert np.array_equal(shifted.read(region), above)
    # processors travel with a pickled layer, and change the layer's identity
    again = pickle.loads(pickle.dumps(shifted))
    assert np.array_equal(again.read(region), above)
    plain = build({"@type": "build_ts_layer", "path": SRC})
    assert plain.__specflow_id__() != shifted.__specflow_id__()


def test_write_procs_and_lambda(zetta_workdir: Path) -> None:
    spec = v04(path="assets/outputs/plus", info_reference_path=SRC, info_scales=[RES],
               info_inherit_all_params=True, write_procs=[
                   {"@type": "lambda", "lambda_str": "lambda data: data + 1"},
                   {"@type": "multiply", "@mode": "partial", "value": 2}])
    with pytest.raises(SpecError, match="--allow-eval") as err:
        build(spec)
    assert err.value.path == "write_procs[0].@type"
    dst = build(spec, opt_ins={"eval"})
    dst = pickle.loads(pickle.dumps(dst))  # as a worker gets it
    region = idx([2048, 2048, 2000], [2048 + 64, 2048 + 32, 2002])
    data = expected_input("uint8", region.start, region.stop)
    dst.prepare_for_write(RES)
    dst.write(region, data)
    back = plain_read("assets/outputs/plus", list(region.start), list(region.stop))
    assert np.array_equal(back, ((data + 1) * 2).astype(np.uint8))


def test_rearrange_and_squeeze() -> None:
    from specflow.volumes.processors import rearrange, squeeze

    a = np.arange(2 * 3 * 4).reshape(2, 3, 4, 1)
    assert rearrange(a, "c x y 1 -> c x y").shape == (2, 3, 4)
    assert np.array_equal(rearrange(a, "c x y z -> z c x y"), a.transpose(3, 0, 1, 2))
    assert np.array_equal(rearrange(rearrange(a, "c x y z -> z c x y"), "z c x y -> c x y z"), a)
    merged = rearrange(a, "c x y z -> (c x) y z")
    assert merged.shape == (6, 4, 1)
    assert np.array_equal(rearrange(merged, "(c x) y z -> c x y z", c=2), a)
    assert squeeze(a, dim=3).shape == (2, 3, 4)
    with pytest.raises(ValueError, match="left only"):
        rearrange(a, "c x y z -> c x y")


def test_unknown_interpolation_and_field_mode(workdir: Path) -> None:
    with pytest.raises(NotProvidedError, match="interpolation_mode: field. is not provided"):
        build({"@type": "build_cv_layer", "path": "x", "interpolation_mode": "field"})
    layer = build({"@type": "build_cv_layer", "path": "x", "interpolation_mode": "img",
                   "data_resolution": [4, 4, 40]})
    assert layer.settings["interpolation_mode"] == "average"



def test_build_ts_layer_takes_zetta_parameters(zetta_workdir: Path) -> None:
    legacy = build({"@type": "build_ts_layer", "path": "assets/outputs/ts_legacy",
                    "info_reference_path": SRC, "on_info_exists": "overwrite"})
    assert isinstance(legacy, CVLayer)
    legacy.prepare_for_write(RES)
    assert info_of("assets/outputs/ts_legacy") == input_info("uint8")  # the reference, copied
    new = build({"@version": "0.4", "@type": "build_ts_layer", "path": "assets/outputs/ts_new",
                 "info_reference_path": SRC, "info_scales": [[256, 256, 40]],
                 "info_inherit_all_params": True})
    new.prepare_for_write([256, 256, 40])
    (scale,) = info_of("assets/outputs/ts_new")["scales"]
    assert scale["key"] == "256_256_40" and scale["size"] == [512, 512, 50]
    assert scale["voxel_offset"] == [1024, 1024, 2000]
    with pytest.raises(SpecError, match="cannot be combined with format 'zarr'"):
        build({"@type": "build_ts_layer", "path": "x", "format": "zarr",
               "info_scales": [[4, 4, 40]]})


def test_path_forms(zetta_workdir: Path) -> None:
    region = idx([2050, 2050, 2000], [2060, 2055, 2002])
    want = expected_input("uint8", region.start, region.stop)
    absolute = os.path.abspath(SRC)
    for path in (SRC, f"file://{SRC}", f"precomputed://file://{absolute}"):
        layer = build({"@type": "build_cv_layer", "path": path})
        assert layer.path == f"file://{absolute}/"
        assert np.array_equal(layer.read(region), want)


def test_zetta_style_layer_access(zetta_workdir: Path) -> None:
    src = build({"@type": "build_cv_layer", "path": SRC})
    dst = build(v04(path="assets/temp/x_temp_0", info_reference_path=SRC, info_scales=[RES],
                    info_inherit_all_params=True))
    assert dst.backend.name.find("_temp_") > 0  # as zetta's OnlyCopyTempOp tests it
    region = idx([2048, 2048, 2000], [2048 + 16, 2048 + 8, 2001])
    dst[region] = src[region]
    assert np.array_equal(dst[region], expected_input("uint8", region.start, region.stop))
