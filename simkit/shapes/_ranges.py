"""Uniform draws of family parameters from documented (lo, hi) ranges."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def draw(rng: np.random.Generator, ranges: Mapping[str, tuple[float, float]]) -> dict[str, float]:
    """Draw each named parameter uniformly from its [lo, hi] range.

    Draws happen in the mapping's insertion order, so a fixed generator state gives a
    fixed parameter set. Values are plain Python floats (JSON-serialisable).
    """
    return {name: float(rng.uniform(lo, hi)) for name, (lo, hi) in ranges.items()}


def draw_scaled(
    rng: np.random.Generator, ranges: Mapping[str, tuple[float, float]], scale: float
) -> dict[str, float]:
    """Draw each parameter as ``scale`` times a uniform fraction from its [lo, hi] range.

    Thicknesses are drawn relative to an object's overall size so that no part is much
    thinner than a voxel once the object is normalised into a 16^3 grid.
    """
    return {name: float(scale * rng.uniform(lo, hi)) for name, (lo, hi) in ranges.items()}
