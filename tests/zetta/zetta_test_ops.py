"""The test-only operation of zetta_utils' subchunkable integration tests, registered the way
a zetta user would register it with specflow (``specflow run -i`` imports this file)."""

from __future__ import annotations

from typing import Any

import specflow


@specflow.register("OnlyCopyTempOp")
class OnlyCopyTempOp:
    """Copies ``src`` into ``dst`` only when ``dst`` is an intermediary (its name holds
    ``_temp_``): with intermediaries skipped, nothing is written."""

    def get_input_resolution(self, dst_resolution: Any) -> Any:
        return dst_resolution

    def with_added_crop_pad(self, crop_pad: Any) -> OnlyCopyTempOp:
        return self

    def __call__(self, idx: Any, dst: Any, src: Any) -> None:
        if dst.backend.name.find("_temp_") > 0:
            dst[idx] = src[idx]
