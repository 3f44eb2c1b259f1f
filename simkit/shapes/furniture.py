"""Furniture families: table, chair, stool, shelf.

Each family is a frozen parameter set with ``sample(rng)`` (draw from the documented
ranges) and ``solid()`` (one watertight trimesh solid in metres, z up, resting on z = 0).
The ranges are wide enough that a sizeable share of instances cannot stand: legs bunched
under one side of a top, a heavy backrest leaning behind the back legs, a stool leaning
past its feet, a shelf whose cantilevered top board pulls it forward. Thicknesses are
drawn in proportion to the overall size (about 1/15 of it or more) so that every part
survives voxelisation at 16^3.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import trimesh

from simkit.shapes._checks import check_less, check_positive, check_range
from simkit.shapes._ranges import draw, draw_scaled
from simkit.shapes._solid import box, finish, shear, vertical_cylinder

__all__ = ["ChairParams", "ShelfParams", "StoolParams", "TableParams"]


@dataclass(frozen=True)
class TableParams:
    """A rectangular table top on square legs, with the leg frame free to slide under it.

    Attributes (metres unless noted; sampling range in brackets, where ``size`` is
    max(top_width, top_depth, height)):
        top_width: top extent along x [0.6, 1.4].
        top_depth: top extent along y [0.4, 0.9].
        top_thickness: [0.07, 0.1] x size.
        height: floor to the top surface [0.45, 1.0].
        leg_size: side of the square leg section [0.07, 0.1] x size.
        leg_spread: half the x distance between leg centres, as a fraction of the largest
            spread the top allows (dimensionless) [0.05, 0.5].
        leg_shift: shift of the leg frame along x, as a fraction of the free room left by
            the spread (dimensionless) [0.0, 1.0]; the top then overhangs on -x.
        legs: 4, or 3 with the leg at (-x, +y) on the overhanging side missing
            [3 with probability 0.3].
    """

    top_width: float
    top_depth: float
    top_thickness: float
    height: float
    leg_size: float
    leg_spread: float
    leg_shift: float
    legs: int = 4

    RANGES: ClassVar[dict[str, tuple[float, float]]] = {
        "top_width": (0.6, 1.4),
        "top_depth": (0.4, 0.9),
        "height": (0.45, 1.0),
        "leg_spread": (0.05, 0.5),
        "leg_shift": (0.0, 1.0),
    }
    SCALED_RANGES: ClassVar[dict[str, tuple[float, float]]] = {
        "top_thickness": (0.07, 0.1),
        "leg_size": (0.07, 0.1),
    }

    def __post_init__(self) -> None:
        check_positive(self, "top_width", "top_depth", "top_thickness", "height", "leg_size")
        check_range(self, "leg_spread", 0.0, 1.0)
        check_range(self, "leg_shift", 0.0, 1.0)
        check_less(self, "top_thickness", "height", 0.5)
        check_less(self, "leg_size", "top_depth", 0.5)
        check_less(self, "leg_size", "top_width", 0.5)
        if self.legs not in (3, 4):
            raise ValueError(f"TableParams.legs must be 3 or 4, got {self.legs!r}")

    @classmethod
    def sample(cls, rng: np.random.Generator) -> TableParams:
        """Draw a parameter set from the documented ranges."""
        values = draw(rng, cls.RANGES)
        size = max(values["top_width"], values["top_depth"], values["height"])
        values.update(draw_scaled(rng, cls.SCALED_RANGES, size))
        legs = 3 if rng.random() < 0.3 else 4
        return cls(**values, legs=legs)

    def solid(self) -> trimesh.Trimesh:
        """One watertight solid, metres, resting on z = 0."""
        w, d, t, h, s = (
            self.top_width,
            self.top_depth,
            self.top_thickness,
            self.height,
            self.leg_size,
        )
        room = w / 2 - s / 2  # largest |x| of a leg centre that stays under the top
        half_span = self.leg_spread * room
        centre = self.leg_shift * (room - half_span)
        y_leg = d / 2 - s
        parts = [box((-w / 2, -d / 2, h - t), (w / 2, d / 2, h))]
        for sx in (-1.0, 1.0):
            for sy in (-1.0, 1.0):
                if self.legs == 3 and sx < 0 and sy > 0:
                    continue
                x, y = centre + sx * half_span, sy * y_leg
                # Legs run half-way into the top so the union is a solid overlap.
                parts.append(box((x - s / 2, y - s / 2, 0.0), (x + s / 2, y + s / 2, h - t / 2)))
        return finish(parts)


@dataclass(frozen=True)
class ChairParams:
    """A square-legged chair with a backrest that may lean back and back legs set forward.

    Attributes (metres unless noted; sampling range in brackets, where ``size`` is
    seat_height + back_height):
        seat_width: seat extent along x [0.4, 0.55].
        seat_depth: seat extent along y; the back is at -y [0.4, 0.55].
        seat_height: floor to the seat surface [0.3, 0.55].
        seat_thickness: [0.07, 0.1] x size.
        leg_size: side of the square leg section [0.07, 0.1] x size.
        back_height: backrest height above the seat [0.3, 0.7].
        back_thickness: [0.07, 0.12] x size.
        back_lean: backward horizontal run of the backrest per metre of height
            (dimensionless, tan of the lean angle) [0.0, 1.2].
        back_leg_inset: forward shift of the back legs as a fraction of the seat depth
            (dimensionless) [0.0, 0.35].
    """

    seat_width: float
    seat_depth: float
    seat_height: float
    seat_thickness: float
    leg_size: float
    back_height: float
    back_thickness: float
    back_lean: float
    back_leg_inset: float

    RANGES: ClassVar[dict[str, tuple[float, float]]] = {
        "seat_width": (0.4, 0.55),
        "seat_depth": (0.4, 0.55),
        "seat_height": (0.3, 0.55),
        "back_height": (0.3, 0.7),
        "back_lean": (0.0, 1.2),
        "back_leg_inset": (0.0, 0.35),
    }
    SCALED_RANGES: ClassVar[dict[str, tuple[float, float]]] = {
        "seat_thickness": (0.07, 0.1),
        "leg_size": (0.07, 0.1),
        "back_thickness": (0.07, 0.12),
    }

    def __post_init__(self) -> None:
        check_positive(
            self,
            "seat_width",
            "seat_depth",
            "seat_height",
            "seat_thickness",
            "leg_size",
            "back_height",
            "back_thickness",
        )
        check_range(self, "back_lean", 0.0, 2.0)
        check_range(self, "back_leg_inset", 0.0, 0.8)
        check_less(self, "seat_thickness", "seat_height", 0.5)
        check_less(self, "leg_size", "seat_width", 0.5)
        check_less(self, "back_thickness", "seat_depth", 0.5)
        # The back legs must stay in front of the front edge of the backrest's footprint
        # and behind the front legs.
        check_less(self, "leg_size", "seat_depth", 0.5 * (1.0 - self.back_leg_inset))

    @classmethod
    def sample(cls, rng: np.random.Generator) -> ChairParams:
        """Draw a parameter set from the documented ranges."""
        values = draw(rng, cls.RANGES)
        size = values["seat_height"] + values["back_height"]
        values.update(draw_scaled(rng, cls.SCALED_RANGES, size))
        return cls(**values)

    def solid(self) -> trimesh.Trimesh:
        """One watertight solid, metres, resting on z = 0."""
        w, d, h, t, s = (
            self.seat_width,
            self.seat_depth,
            self.seat_height,
            self.seat_thickness,
            self.leg_size,
        )
        parts = [box((-w / 2, -d / 2, h - t), (w / 2, d / 2, h))]
        back = box(
            (-w / 2, -d / 2, h - t / 2), (w / 2, -d / 2 + self.back_thickness, h + self.back_height)
        )
        parts.append(shear(back, dy_dz=-self.back_lean, z0=h))
        x_leg = w / 2 - s / 2
        y_front = d / 2 - s / 2
        y_back = -d / 2 + s / 2 + self.back_leg_inset * d
        for x in (-x_leg, x_leg):
            for y in (y_back, y_front):
                parts.append(box((x - s / 2, y - s / 2, 0.0), (x + s / 2, y + s / 2, h - t / 2)))
        return finish(parts)


@dataclass(frozen=True)
class StoolParams:
    """A round stool on 3 or 4 round legs; the whole stool may lean (a horizontal shear).

    Attributes (metres unless noted; sampling range in brackets):
        seat_radius: [0.14, 0.24].
        seat_thickness: [0.07, 0.1] x height.
        height: floor to the seat surface, before the lean [0.35, 0.8].
        leg_radius: [0.05, 0.065] x height.
        leg_spread: radius of the circle through the leg axes, as a fraction of
            seat_radius - leg_radius (dimensionless) [0.3, 1.0].
        lean: horizontal run of the seat per metre of height (dimensionless) [0.0, 0.5].
        lean_direction: azimuth of the lean, radians [0, 2 pi).
        legs: 3 or 4 [equally likely].
    """

    seat_radius: float
    seat_thickness: float
    height: float
    leg_radius: float
    leg_spread: float
    lean: float
    lean_direction: float
    legs: int = 4

    RANGES: ClassVar[dict[str, tuple[float, float]]] = {
        "seat_radius": (0.14, 0.24),
        "height": (0.35, 0.8),
        "leg_spread": (0.3, 1.0),
        "lean": (0.0, 0.5),
        "lean_direction": (0.0, 2.0 * math.pi),
    }
    SCALED_RANGES: ClassVar[dict[str, tuple[float, float]]] = {
        "seat_thickness": (0.07, 0.1),
        "leg_radius": (0.05, 0.065),
    }

    def __post_init__(self) -> None:
        check_positive(self, "seat_radius", "seat_thickness", "height", "leg_radius")
        check_range(self, "leg_spread", 0.0, 1.0)
        check_range(self, "lean", 0.0, 2.0)
        check_range(self, "lean_direction", -2.0 * math.pi, 2.0 * math.pi)
        check_less(self, "seat_thickness", "height", 0.5)
        check_less(self, "leg_radius", "seat_radius", 0.5)
        if self.legs not in (3, 4):
            raise ValueError(f"StoolParams.legs must be 3 or 4, got {self.legs!r}")

    @classmethod
    def sample(cls, rng: np.random.Generator) -> StoolParams:
        """Draw a parameter set from the documented ranges."""
        values = draw(rng, cls.RANGES)
        values.update(draw_scaled(rng, cls.SCALED_RANGES, values["height"]))
        legs = int(rng.choice((3, 4)))
        return cls(**values, legs=legs)

    def solid(self) -> trimesh.Trimesh:
        """One watertight solid, metres, resting on z = 0."""
        r, t, h, rl = self.seat_radius, self.seat_thickness, self.height, self.leg_radius
        ring = self.leg_spread * (r - rl)
        parts = [vertical_cylinder(0.0, 0.0, h - t, h, r, sections=32)]
        for k in range(self.legs):
            phi = 2.0 * math.pi * k / self.legs
            parts.append(
                vertical_cylinder(
                    ring * math.cos(phi), ring * math.sin(phi), 0.0, h - t / 2, rl, 16
                )
            )
        upright = trimesh.boolean.union(parts, engine="manifold")
        leaned = shear(
            upright,
            dx_dz=self.lean * math.cos(self.lean_direction),
            dy_dz=self.lean * math.sin(self.lean_direction),
        )
        return finish([leaned])


@dataclass(frozen=True)
class ShelfParams:
    """A bookshelf: two side panels, evenly spaced boards and a top board that may jut
    forward (+y) past the sides as a cantilever.

    Attributes (metres unless noted; sampling range in brackets, where ``size`` is
    max(width, height, depth + top_overhang)):
        width: outer extent along x [0.5, 1.0].
        depth: side-panel extent along y [0.2, 0.4].
        height: [0.6, 1.4].
        top_overhang: forward reach of the top board past the sides [0.0, 1.1].
        panel_thickness: thickness of every panel and board [0.065, 0.09] x size.
        top_thickness: thickness of the top board [0.065, 0.1] x size.
        boards: interior boards between bottom and top [0 to 3, equally likely among
            those that leave gaps of at least twice panel_thickness].
    """

    width: float
    depth: float
    height: float
    panel_thickness: float
    top_overhang: float
    top_thickness: float
    boards: int = 3

    RANGES: ClassVar[dict[str, tuple[float, float]]] = {
        "width": (0.5, 1.0),
        "depth": (0.2, 0.4),
        "height": (0.6, 1.4),
        "top_overhang": (0.0, 1.1),
    }
    SCALED_RANGES: ClassVar[dict[str, tuple[float, float]]] = {
        "panel_thickness": (0.065, 0.09),
        "top_thickness": (0.065, 0.1),
    }

    def __post_init__(self) -> None:
        check_positive(self, "width", "depth", "height", "panel_thickness", "top_thickness")
        check_range(self, "top_overhang", 0.0, 10.0)
        check_less(self, "panel_thickness", "width", 0.25)
        check_less(self, "top_thickness", "height", 0.25)
        if not (isinstance(self.boards, int) and 0 <= self.boards <= 10):
            raise ValueError(f"ShelfParams.boards must be an int in [0, 10], got {self.boards!r}")
        gap = (0.95 * self.height - self.top_thickness) / (self.boards + 1)
        if gap < 2 * self.panel_thickness:
            raise ValueError(
                f"ShelfParams.height={self.height!r} is too low for {self.boards} boards of "
                f"thickness {self.panel_thickness!r} under a top of {self.top_thickness!r}"
            )

    @classmethod
    def sample(cls, rng: np.random.Generator) -> ShelfParams:
        """Draw a parameter set from the documented ranges."""
        values = draw(rng, cls.RANGES)
        size = max(values["width"], values["height"], values["depth"] + values["top_overhang"])
        values.update(draw_scaled(rng, cls.SCALED_RANGES, size))
        span = 0.95 * values["height"] - values["top_thickness"]
        most = int(np.clip(span // (2 * values["panel_thickness"]) - 1, 0, 3))
        boards = int(rng.integers(0, most + 1))
        return cls(**values, boards=boards)

    def solid(self) -> trimesh.Trimesh:
        """One watertight solid, metres, resting on z = 0."""
        w, d, h, p = self.width, self.depth, self.height, self.panel_thickness
        parts = [
            box((-w / 2, -d / 2, 0.0), (-w / 2 + p, d / 2, h)),
            box((w / 2 - p, -d / 2, 0.0), (w / 2, d / 2, h)),
            box((-w / 2, -d / 2, h - self.top_thickness), (w / 2, d / 2 + self.top_overhang, h)),
        ]
        # The bottom board sits just off the floor; interior boards are evenly spaced.
        levels = np.linspace(0.05 * h, h - self.top_thickness, self.boards + 2)[:-1]
        for z in levels:
            parts.append(box((-w / 2 + p / 2, -d / 2, z), (w / 2 - p / 2, d / 2, z + p)))
        return finish(parts)
