"""Neuroglancer precomputed ``info`` files, computed and merged the way zetta_utils does.

Two parameter sets describe the info a layer should have:

* :class:`InfoSpec` (``"@version": "0.4"`` and later): the scales to ensure
  (``info_scales``), each one's geometry derived from one bounding box, the other fields given
  or inherited from a reference layer; merged into an existing info by scale key, refused when
  it would change an existing scale or field unless ``info_overwrite``.
* :class:`LegacyInfoSpec` (before 0.4): an existing or reference info, field overrides, scales
  added from a reference scale, per-scale chunk size, voxel offset, size and encoding; an
  existing info is checked according to ``on_info_exists``.

Both only compute dictionaries; :func:`read_info` and :func:`write_info` move them through any
kvstore tensorstore reaches. Nothing here runs at build time: a layer applies its spec once,
when it is prepared for writing.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import tensorstore as ts
else:
    from specflow.volumes.lazy import tensorstore as ts


#: scale keys a new scale never inherits from its reference scale
NON_INHERITABLE_SCALE_KEYS = (
    "sharding", "encoding", "voxel_offset", "size", "chunk_sizes", "resolution", "key", "locked",
)

VOLUME_DTYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "float32")


class InfoError(ValueError):
    """An info spec that cannot be applied (missing fields, or a change that is refused)."""


# --------------------------------------------------------------------------- I/O


def _kv(url: str) -> Any:
    return ts.KvStore.open(url).result()


def read_info(url: str) -> dict[str, Any] | None:
    """The ``info`` of the layer at ``url`` (a kvstore URL ending in ``/``), or ``None``."""
    res = _kv(url).read("info").result()
    if res.state != "value":
        return None
    info = json.loads(bytes(res.value))
    if not isinstance(info, dict):
        raise InfoError(f"{url}info is not a JSON object")
    return info


def require_info(url: str) -> dict[str, Any]:
    info = read_info(url)
    if info is None:
        raise FileNotFoundError(f"the info file at '{url}info' does not exist")
    return info


def write_info(url: str, info: Mapping[str, Any]) -> None:
    _kv(url).write("info", json.dumps(info, indent=2).encode()).result()


# --------------------------------------------------------------------------- helpers


def _num(n: float) -> str:
    return str(int(n)) if int(n) == n else str(n)


def res_to_key(resolution: Sequence[float]) -> str:
    """The scale key of a resolution: ``[4, 4, 40]`` is ``"4_4_40"``."""
    return "_".join(_num(v) for v in resolution)


def _is_int(value: float, eps: float = 1e-5) -> bool:
    return abs(value - round(value)) < eps


def merge_and_sort_scales(
    existing: Sequence[dict[str, Any]], new: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The scales of both lists by key (``new`` wins), finest (smallest voxel volume) first."""
    by_key = {s["key"]: s for s in [*existing, *new]}
    return [by_key[k] for k in sorted(by_key, key=lambda k: math.prod(by_key[k]["resolution"]))]


def _diff(existing: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    lines = []
    for key in sorted(set(existing) | set(new)):
        if key not in existing:
            lines.append(f"  + {key}: {new[key]}")
        elif key not in new:
            lines.append(f"  - {key}: {existing[key]}")
        elif existing[key] != new[key]:
            lines.append(f"  {key}: {existing[key]} -> {new[key]}")
    return "\n".join(lines)


def _without_scales(info: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in info.items() if k != "scales"}


# --------------------------------------------------------------------------- 0.4


class InfoSpec:
    """The info of ``"@version": "0.4"`` layers: ``scales`` to ensure, their geometry from
    ``bbox`` (``{"start": [...], "end": [...]}`` in physical units) or the reference's first
    scale, the other fields given or (``inherit_all_params``) taken from the reference."""

    FIELDS = ("type", "data_type", "num_channels", "chunk_size", "encoding", "bbox")

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.params = dict(params)
        self.check()

    def check(self) -> None:
        """The checks that need no I/O (done when the layer is built)."""
        p = self.params
        if not p.get("scales"):
            raise InfoError("info_scales must list at least one scale")
        if p.get("reference_path") is None:
            missing = [f for f in self.FIELDS if p.get(f) is None]
            if missing:
                raise InfoError(
                    "without info_reference_path, these must be given: "
                    + ", ".join("info_" + m for m in missing)
                )
            if p.get("inherit_all_params"):
                raise InfoError("info_inherit_all_params needs info_reference_path")
        elif not p.get("inherit_all_params"):
            missing = [f for f in self.FIELDS[:-1] if p.get(f) is None]
            if missing:
                raise InfoError(
                    "without info_inherit_all_params, these must be given: "
                    + ", ".join("info_" + m for m in missing)
                )
        dtype = p.get("data_type")
        if dtype is not None and dtype not in VOLUME_DTYPES:
            raise InfoError(f"info_data_type must be one of {', '.join(VOLUME_DTYPES)}, "
                            f"not {dtype!r}")
        kind = p.get("type")
        if kind is not None and kind not in ("image", "segmentation"):
            raise InfoError(f"info_type must be image or segmentation, not {kind!r}")

    def _resolved(self) -> dict[str, Any]:
        p = dict(self.params)
        ref_path = p.get("reference_path")
        if ref_path is None:
            return p
        ref = require_info(ref_path)
        ref_scale = ref["scales"][0]
        if p.get("bbox") is None:
            res = ref_scale["resolution"]
            off = ref_scale.get("voxel_offset", [0, 0, 0])
            p["bbox"] = {
                "start": [o * r for o, r in zip(off, res, strict=True)],
                "end": [(o + s) * r for o, s, r in zip(off, ref_scale["size"], res, strict=True)],
            }
        if p.get("inherit_all_params"):
            for key in ("type", "data_type", "num_channels"):
                if p.get(key) is None:
                    p[key] = ref[key]
            if p.get("encoding") is None:
                p["encoding"] = ref_scale["encoding"]
            if p.get("chunk_size") is None:
                p["chunk_size"] = ref_scale["chunk_sizes"][0]
            inherited = {k: v for k, v in ref_scale.items() if k not in NON_INHERITABLE_SCALE_KEYS}
            p["extra_scale_data"] = {**inherited, **(p.get("extra_scale_data") or {})}
        return p

    def make_info(self) -> dict[str, Any]:
        p = self._resolved()
        start, end = p["bbox"]["start"], p["bbox"]["end"]
        shape = [e - s for s, e in zip(start, end, strict=True)]
        info: dict[str, Any] = {
            "num_channels": p["num_channels"], "data_type": p["data_type"], "type": p["type"],
            "scales": [],
        }
        for res in p["scales"]:
            scale: dict[str, Any] = {
                "chunk_sizes": [list(p["chunk_size"])], "encoding": p["encoding"],
                "resolution": list(res), "key": res_to_key(res),
            }
            if p.get("extra_scale_data") is not None:
                scale = {**scale, **p["extra_scale_data"]}
            scale["size"] = [math.ceil(k / m) for k, m in zip(shape, res, strict=True)]
            offset = [k / m for k, m in zip(start, res, strict=True)]
            # as zetta: a value within 1e-5 of an integer is truncated, any other is floored
            scale["voxel_offset"] = [int(o) if _is_int(o) else math.floor(o)
                                     for o in offset]
            info["scales"].append(scale)
        return info

    def update(self, url: str, *, overwrite: bool, keep_existing_scales: bool) -> bool:
        """Write the info to ``url`` (merged into an existing one); ``True`` when written."""
        existing = read_info(url)
        new = self.make_info()
        if existing is not None:
            if keep_existing_scales:
                if (new["data_type"] != existing.get("data_type")
                        or new["num_channels"] != existing.get("num_channels")):
                    raise InfoError(
                        f"the info at '{url}' has data_type {existing.get('data_type')!r} and "
                        f"num_channels {existing.get('num_channels')!r}; the spec asks for "
                        f"{new['data_type']!r} and {new['num_channels']!r}. Set "
                        "info_keep_existing_scales: false (and info_overwrite: true) to replace "
                        "its scales"
                    )
                new["scales"] = merge_and_sort_scales(existing.get("scales", []), new["scales"])
            if not overwrite:
                lost = [s for s in existing.get("scales", []) if s not in new["scales"]]
                if lost:
                    raise InfoError(
                        f"the new info is not a pure extension of the info at '{url}': these "
                        f"scales would change: {', '.join(str(s.get('key')) for s in lost)}. "
                        "Set info_overwrite: true to allow it"
                    )
                if _without_scales(existing) != _without_scales(new):
                    raise InfoError(
                        f"the new info is not a pure extension of the info at '{url}'; these "
                        "fields would change (set info_overwrite: true to allow it):\n"
                        + _diff(_without_scales(existing), _without_scales(new))
                    )
        if existing != new:
            write_info(url, new)
            return True
        return False


# --------------------------------------------------------------------------- legacy


class LegacyInfoSpec:
    """The info of layers before ``"@version": "0.4"`` (zetta's ``on_info_exists`` set)."""

    MODES = ("expect_same", "overwrite", "extend")

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.params = dict(params)
        mode = self.params.get("add_scales_mode", "merge")
        if mode not in ("merge", "replace"):
            raise InfoError(f"info_add_scales_mode must be merge or replace, not {mode!r}")

    def _has_request(self) -> bool:
        p = self.params
        return any(p.get(k) is not None for k in
                   ("reference_path", "field_overrides", "add_scales", "only_retain_scales"))

    def make_info(self, path_url: str) -> dict[str, Any] | None:
        p = self.params
        if not self._has_request() and not p.get("extend_if_exists", True):
            return None
        overrides = dict(p.get("field_overrides") or {})
        reference: dict[str, Any] = {}
        mode = p.get("add_scales_mode", "merge")
        if p.get("extend_if_exists", True):
            found = read_info(path_url)
            if found is not None:
                reference = found
                mode = "extend"
            elif (p.get("reference_path") is None and p.get("field_overrides") is None
                  and p.get("add_scales") is None and p.get("only_retain_scales") is None):
                return None
        if p.get("reference_path") is not None and not reference:
            reference = require_info(p["reference_path"])
        result = copy.deepcopy(reference)
        result.update(copy.deepcopy(overrides))
        if p.get("add_scales") is not None:
            if "scales" in overrides:
                raise InfoError("info_field_overrides must not hold scales when info_add_scales "
                                "is used")
            ref_scale = copy.deepcopy(_ref_scale(p.get("add_scales_ref"), reference))
            for name in p.get("add_scales_exclude_fields") or ():
                ref_scale.pop(name, None)
            new = [_make_scale(ref_scale, t) for t in p["add_scales"]]
            if mode == "replace" or "scales" not in result:
                result["scales"] = merge_and_sort_scales([], new)
            elif mode == "merge":
                result["scales"] = merge_and_sort_scales(result["scales"], new)
            else:
                keys = {s["key"] for s in result["scales"]}
                result["scales"] = merge_and_sort_scales(
                    result["scales"], [s for s in new if s["key"] not in keys])
        if "scales" in result:
            for field, one, per in (("chunk_sizes", "chunk_size", "chunk_size_map"),
                                    ("voxel_offset", "voxel_offset", "voxel_offset_map"),
                                    ("size", "dataset_size", "dataset_size_map"),
                                    ("encoding", "encoding", "encoding_map")):
                value, by_key = p.get(one), p.get(per)
                for s in result["scales"]:
                    if value is not None:
                        s[field] = _field_value(field, value)
                    if by_key is not None and s["key"] in by_key:
                        s[field] = _field_value(field, by_key[s["key"]])
        for key in ("num_channels", "data_type", "type"):
            if p.get(key):
                result[key] = p[key]
        retain = p.get("only_retain_scales")
        if retain:
            retain_keys = [res_to_key(r) for r in retain]
            kept = {s["key"]: s for s in result.get("scales", []) if s["key"] in retain_keys}
            for r, k in zip(retain, retain_keys, strict=True):
                if k not in kept:
                    raise InfoError(f"info_only_retain_scales: no scale {list(r)} to retain")
            result["scales"] = list(kept.values())
        return result

    def update(self, url: str, on_info_exists: str) -> bool:
        """Apply the spec to the info at ``url``; ``True`` when the info was written."""
        existing = read_info(url)
        new = self.make_info(url)
        if new is None:
            if existing is None:
                raise InfoError(
                    f"the layer at '{url}' has no info file and the spec does not describe one: "
                    "give info_reference_path, info_field_overrides or info_add_scales"
                )
            return False
        if existing is not None:
            if on_info_exists == "expect_same" and new != existing:
                raise InfoError(
                    f"the info the spec describes differs from the info at '{url}' while "
                    "on_info_exists is 'expect_same':\n" + _diff(existing, new)
                )
            if on_info_exists == "extend":
                try:
                    kept = all(s in new["scales"] for s in existing["scales"])
                except KeyError as exc:
                    raise InfoError(f"the info at '{url}' has no {exc}") from None
                if not kept:
                    raise InfoError(
                        f"the info the spec describes is not a pure extension of the info at "
                        f"'{url}' (on_info_exists is 'extend'): existing scales would change"
                    )
                if _without_scales(existing) != _without_scales(new):
                    raise InfoError(
                        f"the info the spec describes is not a pure extension of the info at "
                        f"'{url}' (on_info_exists is 'extend'); these fields would change:\n"
                        + _diff(_without_scales(existing), _without_scales(new))
                    )
        if existing != new:
            write_info(url, new)
            return True
        return False


def _field_value(field: str, value: Any) -> Any:
    if field == "chunk_sizes":
        return [list(value)]
    if field == "encoding":
        return value
    return list(value)


def _ref_scale(ref: str | Mapping[str, Any] | None, info: Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(ref, Mapping):
        return dict(ref)
    if "scales" not in info:
        raise InfoError("info_add_scales needs a reference info with scales "
                        "(info_reference_path), or a scale given as info_add_scales_ref")
    key = ref if ref is not None else merge_and_sort_scales(info["scales"], [])[0]["key"]
    for s in info["scales"]:
        if s["key"] == key:
            return dict(s)
    raise InfoError(f"the reference info has no scale {key!r} (info_add_scales_ref)")


def _make_scale(ref: dict[str, Any], target: Sequence[float] | Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = dict(target) if isinstance(target, Mapping) else {"resolution": target}
    mult = [k / v for k, v in zip(out["resolution"], ref["resolution"], strict=True)]
    expected = res_to_key(out["resolution"])
    if "key" not in out:
        out["key"] = expected
    elif out["key"] != expected:
        raise InfoError(f"scale key {out['key']!r} must be {expected!r} to match its resolution "
                        f"{list(out['resolution'])}")
    if "size" not in out:
        out["size"] = [math.ceil(k / m) for k, m in zip(ref["size"], mult, strict=True)]
    if "voxel_offset" not in out:
        ref.setdefault("voxel_offset", [0, 0, 0])
        offset = [k / m for k, m in zip(ref["voxel_offset"], mult, strict=True)]
        for i, o in enumerate(offset):
            if not _is_int(o):
                offset[i] = math.floor(o)
                out["size"][i] += 1
            else:  # the same value; stored as an integer, which every reader accepts
                offset[i] = int(round(o))
        out["voxel_offset"] = offset
    for k, v in ref.items():
        if k not in out:
            out[k] = copy.deepcopy(v)
    return out
