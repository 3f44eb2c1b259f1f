"""Bracket families: L bracket (a post with an arm on top) and T bracket (a stem with a
cross bar on top), both standing on the post or stem.

Each family is a frozen parameter set with ``sample(rng)`` (draw from the documented
ranges) and ``solid()`` (one watertight trimesh solid in metres, z up, resting on z = 0).
A long arm, or a bar set off-centre, carries the centre of mass past the footprint.
Widths and thicknesses are drawn in proportion to the height so that every part survives
voxelisation at 16^3.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import trimesh

from simkit.shapes._checks import check_less, check_positive, check_range
from simkit.shapes._ranges import draw, draw_scaled
from simkit.shapes._solid import box, finish

__all__ = ["BracketLParams", "BracketTParams"]


@dataclass(frozen=True)
class BracketLParams:
    """An L bracket standing on its post: post x in [0, post_width], z in [0, post_height],
    and an arm on top reaching arm_length past the post along +x.

    Attributes (metres; sampling range in brackets):
        post_width: [0.1, 0.25] x post_height.
        depth: extent along y of post and arm [0.15, 0.4] x post_height.
        post_height: [0.15, 0.6].
        arm_length: overhang of the arm past the post [0.1, 0.75] x post_height.
        arm_thickness: [0.1, 0.2] x post_height.
    """

    post_width: float
    depth: float
    post_height: float
    arm_length: float
    arm_thickness: float

    RANGES: ClassVar[dict[str, tuple[float, float]]] = {
        "post_height": (0.15, 0.6),
    }
    SCALED_RANGES: ClassVar[dict[str, tuple[float, float]]] = {
        "post_width": (0.1, 0.25),
        "depth": (0.15, 0.4),
        "arm_length": (0.1, 0.75),
        "arm_thickness": (0.1, 0.2),
    }

    def __post_init__(self) -> None:
        check_positive(self, "post_width", "depth", "post_height", "arm_length", "arm_thickness")
        check_less(self, "arm_thickness", "post_height")

    @classmethod
    def sample(cls, rng: np.random.Generator) -> BracketLParams:
        """Draw a parameter set from the documented ranges."""
        values = draw(rng, cls.RANGES)
        values.update(draw_scaled(rng, cls.SCALED_RANGES, values["post_height"]))
        return cls(**values)

    def solid(self) -> trimesh.Trimesh:
        """One watertight solid, metres, resting on z = 0."""
        w, d, h = self.post_width, self.depth, self.post_height
        post = box((0.0, -d / 2, 0.0), (w, d / 2, h))
        arm = box((w / 2, -d / 2, h - self.arm_thickness), (w + self.arm_length, d / 2, h))
        return finish([post, arm])


@dataclass(frozen=True)
class BracketTParams:
    """A T bracket standing on its stem, with a cross bar on top along x that may be set
    off-centre towards +x.

    Attributes (metres unless noted; sampling range in brackets):
        stem_width: [0.1, 0.25] x stem_height.
        depth: extent along y of stem and bar [0.15, 0.4] x stem_height.
        stem_height: [0.15, 0.6].
        bar_length: [0.6, 1.5] x stem_height.
        bar_thickness: [0.1, 0.18] x stem_height.
        bar_offset: shift of the bar's centre towards +x, as a fraction of the largest
            shift that keeps the stem under the bar (dimensionless) [0.0, 0.72].
    """

    stem_width: float
    depth: float
    stem_height: float
    bar_length: float
    bar_thickness: float
    bar_offset: float

    RANGES: ClassVar[dict[str, tuple[float, float]]] = {
        "stem_height": (0.15, 0.6),
        "bar_offset": (0.0, 0.72),
    }
    SCALED_RANGES: ClassVar[dict[str, tuple[float, float]]] = {
        "stem_width": (0.1, 0.25),
        "depth": (0.15, 0.4),
        "bar_length": (0.6, 1.5),
        "bar_thickness": (0.1, 0.18),
    }

    def __post_init__(self) -> None:
        check_positive(self, "stem_width", "depth", "stem_height", "bar_length", "bar_thickness")
        check_range(self, "bar_offset", 0.0, 1.0)
        check_less(self, "bar_thickness", "stem_height")
        check_less(self, "stem_width", "bar_length")

    @classmethod
    def sample(cls, rng: np.random.Generator) -> BracketTParams:
        """Draw a parameter set from the documented ranges."""
        values = draw(rng, cls.RANGES)
        values.update(draw_scaled(rng, cls.SCALED_RANGES, values["stem_height"]))
        return cls(**values)

    def solid(self) -> trimesh.Trimesh:
        """One watertight solid, metres, resting on z = 0."""
        w, d, h, b = self.stem_width, self.depth, self.stem_height, self.bar_length
        centre = self.bar_offset * (b - w) / 2
        stem = box((-w / 2, -d / 2, 0.0), (w / 2, d / 2, h))
        bar = box((centre - b / 2, -d / 2, h - self.bar_thickness), (centre + b / 2, d / 2, h))
        return finish([stem, bar])
