"""Operations for tests that run in worker processes: a Gaussian blur that first sleeps a
random while, so chunks finish in a different order every run."""

from __future__ import annotations

import random
import time
from typing import Any

from specflow.builder import register
from specflow.processing.operations import gaussian_filter


@register("jittery_gaussian")
def jittery_gaussian(src: Any, sigma: float = 1.0, max_delay: float = 0.05) -> Any:
    time.sleep(random.random() * max_delay)
    return gaussian_filter(src, sigma=sigma)
