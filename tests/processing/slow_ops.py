"""Operations for tests that run in worker processes: a Gaussian blur that first sleeps a
random while, so chunks finish in a different order every run, and one that holds its calls
past a number of them until a gate file exists."""

from __future__ import annotations

import os
import random
import time
import uuid
from pathlib import Path
from typing import Any

from specflow.builder import register
from specflow.processing.operations import gaussian_filter


@register("jittery_gaussian")
def jittery_gaussian(src: Any, sigma: float = 1.0, max_delay: float = 0.05) -> Any:
    time.sleep(random.random() * max_delay)
    return gaussian_filter(src, sigma=sigma)


@register("gated_gaussian")
def gated_gaussian(src: Any, sigma: float = 1.0, gate: str = "", free_calls: int = 0) -> Any:
    """The blur of ``jittery_gaussian`` without delays, that lets ``free_calls`` calls (over
    all processes) through and holds every later one until the file ``gate`` exists."""
    calls = Path(gate + ".calls")
    calls.mkdir(exist_ok=True)
    (calls / uuid.uuid4().hex).touch()
    if len(list(calls.iterdir())) > free_calls:
        while not os.path.exists(gate):
            time.sleep(0.05)
    return gaussian_filter(src, sigma=sigma)
