"""``make_ng_link``: a neuroglancer link to look at layers, made here, without a network.

zetta_utils' version posts the viewer state to a link-shortening server; specflow builds the
full link (the state in the URL fragment) and prints it, so nothing leaves the machine.
"""

from __future__ import annotations

import json
import sys
import urllib.parse
from collections.abc import Sequence
from typing import Any

from specflow.builder.registry import register

NEUROGLANCER = "https://neuroglancer-demo.appspot.com/"
LAYER_TYPES = ("image", "segmentation", "annotation")


def ng_state(
    layers: Sequence[Sequence[str | None]],
    position: Sequence[float] | None = None,
    scale_bar_nm: float = 20.0,
    layout: str = "xy",
    title: str = "specflow",
) -> dict[str, Any]:
    """The viewer state: one layer per ``(name, type, source)``."""
    out_layers = []
    for spec in layers:
        if len(spec) != 3:
            raise ValueError(f"each layer is [name, type, source], got {list(spec)}")
        name, kind, source = spec
        if kind not in LAYER_TYPES:
            raise ValueError(f"layer type must be one of {', '.join(LAYER_TYPES)}, not {kind!r}")
        layer: dict[str, Any] = {"type": kind, "name": name}
        if source is not None:
            layer["source"] = source if str(source).startswith("precomputed://") else (
                f"precomputed://{source}")
        out_layers.append(layer)
    if layout not in ("xy", "4panel"):
        raise ValueError(f"layout must be xy or 4panel, not {layout!r}")
    state: dict[str, Any] = {"title": title, "layers": out_layers, "layout": layout,
                             "crossSectionScale": scale_bar_nm / 100}
    if position is not None:
        state["position"] = [float(p) for p in position]
    return state


@register("make_ng_link")
def make_ng_link(
    layers: list[list[str | None]],
    position: list[float] | None = None,
    scale_bar_nm: float = 20.0,
    layout: str = "xy",
    title: str = "zutils",
    state_server_url: str | None = None,
    print_to_logger: bool = True,
) -> str:
    """A neuroglancer link showing ``layers`` (``[name, type, source]`` each), printed to
    stderr unless ``print_to_logger`` is false. ``state_server_url`` is accepted and not
    contacted: the state travels in the link itself."""
    state = ng_state(layers, position, scale_bar_nm, layout, title)
    link = NEUROGLANCER + "#!" + urllib.parse.quote(json.dumps(state, separators=(",", ":")))
    if print_to_logger:
        print(f"neuroglancer link ({title}): {link}", file=sys.stderr)
    return link
