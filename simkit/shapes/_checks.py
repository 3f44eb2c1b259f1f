"""Validation of family parameter sets: one clear ValueError per bad field."""

from __future__ import annotations

import math
from typing import Any


def check_positive(params: Any, *names: str) -> None:
    """Raise ValueError unless each named field of ``params`` is a finite number > 0."""
    for name in names:
        value = getattr(params, name)
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ValueError(
                f"{type(params).__name__}.{name} must be a finite number > 0, got {value!r}"
            )


def check_range(params: Any, name: str, lo: float, hi: float) -> None:
    """Raise ValueError unless field ``name`` of ``params`` is a finite number in [lo, hi]."""
    value = getattr(params, name)
    if not (isinstance(value, (int, float)) and math.isfinite(value) and lo <= value <= hi):
        raise ValueError(f"{type(params).__name__}.{name} must lie in [{lo}, {hi}], got {value!r}")


def check_less(params: Any, small: str, large: str, factor: float = 1.0) -> None:
    """Raise ValueError unless ``params.small < factor * params.large``."""
    a, b = getattr(params, small), getattr(params, large)
    if not a < factor * b:
        what = large if factor == 1.0 else f"{factor} * {large}"
        raise ValueError(
            f"{type(params).__name__}.{small} must be < {what}, got {small}={a!r}, {large}={b!r}"
        )
