"""A number as a record holds it: finite ints and floats pass, anything else (None, NaN, inf, a bool, text a
hand-edited file left) reads as None."""

from __future__ import annotations

import math
from typing import Any


def finite_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)
