"""Lossless storage of task return values in the checkpoint.

A flow that reads a dependency's value must get, after a resume, exactly what an
uninterrupted run would have handed it. Values are stored as JSON with tagged forms for
what JSON cannot say: tuples, sets, dicts with non-string keys, bytes, numpy arrays and
scalars, non-finite floats. A value whose text is larger than :data:`INLINE_LIMIT` goes to a
file beside the checkpoint (written and synced before its row is committed); the row keeps a
reference. A value that cannot be stored at all is recorded as such, and a flow that needs
it after a resume fails saying so — it never receives ``None`` instead.

Decoding never imports or calls anything named by the data: only the tags below exist.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

#: values whose encoded text is longer than this go to a file in ``values/``
INLINE_LIMIT = 16 * 1024
TAG = "$sf"


class ValueNotStored(Exception):
    """A task's value could not be kept in the checkpoint (it is not data)."""


class _Unencodable(Exception):
    pass


def _enc(v: Any) -> Any:
    t = type(v)
    if t is str or t is bool or t is int or v is None:
        return v
    if t is float:
        if math.isfinite(v):
            return v
        return {TAG: "float", "v": repr(v)}
    if t is list:
        return [_enc(x) for x in v]
    if t is dict:
        if all(type(k) is str for k in v) and TAG not in v:
            return {k: _enc(x) for k, x in v.items()}
        return {TAG: "dict", "v": [[_enc(k), _enc(x)] for k, x in v.items()]}
    if t is tuple:
        return {TAG: "tuple", "v": [_enc(x) for x in v]}
    if t is set or t is frozenset:
        items = [_enc(x) for x in v]
        items.sort(key=lambda x: json.dumps(x, sort_keys=True))
        return {TAG: t.__name__, "v": items}
    if t is bytes or t is bytearray:
        return {TAG: t.__name__, "v": base64.b64encode(bytes(v)).decode("ascii")}
    if t is complex:
        return {TAG: "complex", "v": [repr(v.real), repr(v.imag)]}
    mod = t.__module__
    if mod == "numpy":
        import numpy as np

        if isinstance(v, np.ndarray):
            if v.dtype.hasobject:
                raise _Unencodable(f"a numpy array of dtype {v.dtype}")
            arr = np.ascontiguousarray(v)
            return {TAG: "ndarray", "dtype": arr.dtype.str, "shape": list(arr.shape),
                    "v": base64.b64encode(arr.tobytes()).decode("ascii")}
        if isinstance(v, np.generic):
            arr = np.asarray(v)
            return {TAG: "npscalar", "dtype": arr.dtype.str,
                    "v": base64.b64encode(arr.tobytes()).decode("ascii")}
    # subclasses of plain types (e.g. IntEnum, str subclasses) keep their plain value only
    # when nothing is lost: an exact type check above failed, so refuse
    raise _Unencodable(f"a {mod}.{t.__qualname__}")


def _dec(v: Any) -> Any:
    t = type(v)
    if t is list:
        return [_dec(x) for x in v]
    if t is not dict:
        return v
    tag = v.get(TAG)
    if tag is None:
        return {k: _dec(x) for k, x in v.items()}
    if tag == "tuple":
        return tuple(_dec(x) for x in v["v"])
    if tag == "dict":
        return {_dec(k): _dec(x) for k, x in v["v"]}
    if tag == "set":
        return {_dec(x) for x in v["v"]}
    if tag == "frozenset":
        return frozenset(_dec(x) for x in v["v"])
    if tag == "bytes":
        return base64.b64decode(v["v"])
    if tag == "bytearray":
        return bytearray(base64.b64decode(v["v"]))
    if tag == "float":
        return float(v["v"])
    if tag == "complex":
        return complex(float(v["v"][0]), float(v["v"][1]))
    if tag in ("ndarray", "npscalar"):
        import numpy as np

        dtype = np.dtype(v["dtype"])
        if dtype.hasobject:
            raise ValueError("stored array with an object dtype")
        raw = base64.b64decode(v["v"])
        if tag == "npscalar":
            return np.frombuffer(raw, dtype=dtype)[0]
        return np.frombuffer(raw, dtype=dtype).reshape(v["shape"]).copy()
    raise ValueError(f"unknown stored value tag {tag!r}")


def encode(value: Any) -> str:
    """The stored text of ``value``; raises :class:`ValueNotStored` when it is not data."""
    try:
        return json.dumps(_enc(value), separators=(",", ":"), allow_nan=False)
    except _Unencodable as exc:
        raise ValueNotStored(f"cannot store {exc} (store plain data, numpy arrays or bytes)") from None
    except RecursionError:
        raise ValueNotStored("cannot store a value nested this deeply") from None
    except (TypeError, ValueError) as exc:
        raise ValueNotStored(f"cannot store the value: {exc}") from None


def decode(text: str) -> Any:
    return _dec(json.loads(text))


#: stored in the row when a value could not be stored
NOT_STORED = json.dumps({TAG: "not-stored"})


class ValueStore:
    """Where a run's large values live: ``<run_dir>/values/``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def store(self, task_id: str, value: Any) -> str | None:
        """The row text for ``value`` (None for None). Large values are written to a file
        and synced first; the row refers to the file and its digest."""
        if value is None:
            return None
        try:
            text = encode(value)
        except ValueNotStored as exc:
            return json.dumps({TAG: "not-stored", "why": str(exc)[:500]})
        if len(text) <= INLINE_LIMIT:
            return text
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"{task_id}.json"
        path = self.folder / name
        tmp = self.folder / f".{name}.{os.getpid()}.tmp"
        data = text.encode()
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        return json.dumps({TAG: "file", "name": name, "sha256": hashlib.sha256(data).hexdigest()})

    def load(self, raw: str) -> Any:
        """The value of a stored row; raises :class:`ValueNotStored` for one that was not
        kept, or whose file is gone or damaged."""
        obj = json.loads(raw)
        if type(obj) is dict:
            tag = obj.get(TAG)
            if tag == "not-stored":
                raise ValueNotStored(obj.get("why") or "the value was not stored")
            if tag == "file":
                name = str(obj.get("name", ""))
                if "/" in name or name.startswith("."):
                    raise ValueNotStored(f"bad value file name {name!r}")
                path = self.folder / name
                try:
                    data = path.read_bytes()
                except OSError:
                    raise ValueNotStored(f"its value file {path} is missing") from None
                if hashlib.sha256(data).hexdigest() != obj.get("sha256"):
                    raise ValueNotStored(f"its value file {path} is damaged")
                return decode(data.decode())
        return _dec(obj)
