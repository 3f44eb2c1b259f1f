"""Household families: lamp, mug, vase.

Each family is a frozen parameter set with ``sample(rng)`` (draw from the documented
ranges) and ``solid()`` (one watertight trimesh solid in metres, z up, resting on z = 0).
Instability comes from the geometry: a lamp's arm and shade reaching past its base, a
round-bottomed mug pulled over by its handle, a vase whose body leans past its foot.
Thicknesses are drawn in proportion to the overall size so that every part survives
voxelisation at 16^3.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import trimesh
from scipy.interpolate import PchipInterpolator

from simkit.shapes._checks import check_less, check_positive, check_range
from simkit.shapes._ranges import draw, draw_scaled
from simkit.shapes._solid import box, finish, revolved, shear, vertical_cylinder, x_cylinder

__all__ = ["LampParams", "MugParams", "VaseParams"]


@dataclass(frozen=True)
class LampParams:
    """A desk lamp: a disc base, a vertical pole, a horizontal arm along +x and a
    conical shade (a solid frustum) hanging from the arm's end.

    Attributes (metres; sampling range in brackets, where ``size`` is
    max(pole_height, base_radius + reach + shade_bottom_radius)):
        base_radius: [0.08, 0.18].
        base_thickness: [0.07, 0.1] x size.
        pole_radius: radius of pole and arm [0.04, 0.055] x size.
        pole_height: floor to the arm axis [0.35, 0.8].
        reach: horizontal distance from the pole axis to the shade axis [0.0, 0.45].
        shade_top_radius: [0.05, 0.09].
        shade_bottom_radius: [0.09, 0.16].
        shade_height: [0.1, 0.2].
    """

    base_radius: float
    base_thickness: float
    pole_radius: float
    pole_height: float
    reach: float
    shade_top_radius: float
    shade_bottom_radius: float
    shade_height: float

    RANGES: ClassVar[dict[str, tuple[float, float]]] = {
        "base_radius": (0.08, 0.18),
        "pole_height": (0.35, 0.8),
        "reach": (0.0, 0.45),
        "shade_top_radius": (0.05, 0.09),
        "shade_bottom_radius": (0.09, 0.16),
        "shade_height": (0.1, 0.2),
    }
    SCALED_RANGES: ClassVar[dict[str, tuple[float, float]]] = {
        "base_thickness": (0.07, 0.1),
        "pole_radius": (0.04, 0.055),
    }

    def __post_init__(self) -> None:
        check_positive(
            self,
            "base_radius",
            "base_thickness",
            "pole_radius",
            "pole_height",
            "shade_top_radius",
            "shade_bottom_radius",
            "shade_height",
        )
        check_range(self, "reach", 0.0, 10.0)
        check_less(self, "pole_radius", "base_radius")
        check_less(self, "pole_radius", "shade_top_radius")
        if self.pole_height - self.shade_height < self.base_thickness + 0.02:
            raise ValueError(
                f"LampParams: the shade (shade_height={self.shade_height!r}) must hang at "
                f"least 0.02 m above the base; pole_height={self.pole_height!r} is too low"
            )

    @classmethod
    def sample(cls, rng: np.random.Generator) -> LampParams:
        """Draw a parameter set from the documented ranges."""
        values = draw(rng, cls.RANGES)
        size = max(
            values["pole_height"],
            values["base_radius"] + values["reach"] + values["shade_bottom_radius"],
        )
        values.update(draw_scaled(rng, cls.SCALED_RANGES, size))
        return cls(**values)

    def solid(self) -> trimesh.Trimesh:
        """One watertight solid, metres, resting on z = 0."""
        rp, za = self.pole_radius, self.pole_height
        parts = [
            vertical_cylinder(0.0, 0.0, 0.0, self.base_thickness, self.base_radius, sections=32),
            vertical_cylinder(0.0, 0.0, self.base_thickness / 2, za + rp, rp, sections=12),
            x_cylinder(-rp / 2, self.reach + rp / 2, 0.0, za, rp, sections=12),
        ]
        # Shade: a solid frustum whose top straddles the arm's end. (A thin shell would
        # vanish between voxel centres at 16^3.)
        top = za + rp / 2
        bottom = top - self.shade_height
        r0, r1 = self.shade_top_radius, self.shade_bottom_radius
        shade = revolved(np.array([(0.0, top), (r0, top), (r1, bottom), (0.0, bottom)]))
        shade.apply_translation((self.reach, 0.0, 0.0))
        parts.append(shade)
        return finish(parts)


@dataclass(frozen=True)
class MugParams:
    """A mug with a flat foot that rounds into the wall, and a torus handle along +x.

    A small foot (a round-bottomed mug) leaves a small contact disc that the handle's
    weight can pull the centre of mass out of.

    Attributes (metres unless noted; sampling range in brackets):
        radius: outer radius of the wall [0.3, 0.45] x height.
        height: [0.1, 0.2].
        wall: wall thickness [0.065, 0.09] x height.
        bottom_thickness: solid floor above the rounded bottom [0.06, 0.09] x height.
        foot_fraction: radius of the flat foot / radius (dimensionless) [0.0, 0.33].
        handle_radius: major radius of the handle torus [0.2, 0.36] x height.
        handle_thickness: minor radius of the handle torus [0.06, 0.1] x height.
    """

    radius: float
    height: float
    wall: float
    bottom_thickness: float
    foot_fraction: float
    handle_radius: float
    handle_thickness: float

    RANGES: ClassVar[dict[str, tuple[float, float]]] = {
        "height": (0.1, 0.2),
        "foot_fraction": (0.0, 0.33),
    }
    SCALED_RANGES: ClassVar[dict[str, tuple[float, float]]] = {
        "radius": (0.3, 0.45),
        "wall": (0.065, 0.09),
        "bottom_thickness": (0.06, 0.09),
        "handle_radius": (0.2, 0.36),
        "handle_thickness": (0.06, 0.1),
    }

    def __post_init__(self) -> None:
        check_positive(
            self,
            "radius",
            "height",
            "wall",
            "bottom_thickness",
            "handle_radius",
            "handle_thickness",
        )
        check_range(self, "foot_fraction", 0.0, 1.0)
        check_less(self, "wall", "radius", 0.5)
        check_less(self, "handle_thickness", "handle_radius")
        if self.handle_radius + self.handle_thickness >= 0.48 * self.height:
            raise ValueError(
                f"MugParams: handle_radius + handle_thickness must be < 0.48 * height, got "
                f"{self.handle_radius!r} + {self.handle_thickness!r} with height={self.height!r}"
            )
        if self._round_height() + self.bottom_thickness >= 0.5 * self.height:
            raise ValueError(
                f"MugParams: bottom_thickness={self.bottom_thickness!r} leaves no room for the "
                f"cup in height={self.height!r}"
            )

    def _round_height(self) -> float:
        # Height of the rounded part of the bottom, from the foot up to the vertical wall.
        return 0.4 * self.radius * (1.0 - self.foot_fraction)

    @classmethod
    def sample(cls, rng: np.random.Generator) -> MugParams:
        """Draw a parameter set from the documented ranges."""
        values = draw(rng, cls.RANGES)
        values.update(draw_scaled(rng, cls.SCALED_RANGES, values["height"]))
        return cls(**values)

    def solid(self) -> trimesh.Trimesh:
        """One watertight solid, metres, resting on z = 0."""
        r, h, w = self.radius, self.height, self.wall
        foot = self.foot_fraction * r
        zc = self._round_height()
        phi = np.linspace(0.0, math.pi / 2, 9)[1:-1]
        arc = np.stack([foot + (r - foot) * np.sin(phi), zc * (1.0 - np.cos(phi))], axis=1)
        floor = zc + self.bottom_thickness
        profile = np.concatenate(
            [
                # A foot narrower than 1% of the radius would only add sliver triangles.
                [(0.0, 0.0), (foot, 0.0)] if foot > 0.01 * r else [(0.0, 0.0)],
                arc,
                [(r, zc), (r, h), (r - w, h), (r - w, floor), (0.0, floor)],
            ]
        )
        body = revolved(profile, sections=32)
        # Handle: the outer half of a torus in the xz plane, its inner half cut away so
        # nothing pokes into the cup; the cut face sits inside the wall.
        R, a = self.handle_radius, self.handle_thickness
        torus = trimesh.creation.torus(R, a, major_sections=24, minor_sections=12)
        torus.apply_transform(trimesh.transformations.rotation_matrix(math.pi / 2, (1, 0, 0)))
        torus.apply_translation((r, 0.0, h / 2))
        cutter = box((r - 2 * R - 1.0, -R - 1.0, -1.0), (r - w / 2, R + 1.0, h + 1.0))
        handle = trimesh.boolean.difference([torus, cutter], engine="manifold")
        return finish([body, handle])


@dataclass(frozen=True)
class VaseParams:
    """A hollow vase revolved from a smooth profile; its body may lean (a shear along
    the lean direction that keeps the foot on the floor).

    Attributes (metres unless noted; sampling range in brackets):
        height: [0.2, 0.7].
        base_radius: foot radius [0.1, 0.25] x height.
        belly_radius: widest radius [0.2, 0.4] x height.
        belly_position: belly height / height (dimensionless) [0.25, 0.7].
        neck_radius: [0.15, 0.22] x height.
        lip_radius: [0.17, 0.28] x height.
        wall: [0.06, 0.07] x height.
        lean: horizontal run per metre of height (dimensionless) [0.0, 0.65].
        lean_direction: azimuth of the lean, radians [0, 2 pi).
    """

    height: float
    base_radius: float
    belly_radius: float
    belly_position: float
    neck_radius: float
    lip_radius: float
    wall: float
    lean: float
    lean_direction: float

    RANGES: ClassVar[dict[str, tuple[float, float]]] = {
        "height": (0.2, 0.7),
        "belly_position": (0.25, 0.7),
        "lean": (0.0, 0.65),
        "lean_direction": (0.0, 2.0 * math.pi),
    }
    SCALED_RANGES: ClassVar[dict[str, tuple[float, float]]] = {
        "base_radius": (0.1, 0.25),
        "belly_radius": (0.2, 0.4),
        "neck_radius": (0.15, 0.22),
        "lip_radius": (0.17, 0.28),
        "wall": (0.06, 0.07),
    }

    def __post_init__(self) -> None:
        check_positive(
            self, "height", "base_radius", "belly_radius", "neck_radius", "lip_radius", "wall"
        )
        check_range(self, "belly_position", 0.1, 0.8)
        check_range(self, "lean", 0.0, 3.0)
        check_range(self, "lean_direction", -2.0 * math.pi, 2.0 * math.pi)
        check_less(self, "wall", "neck_radius", 0.8)
        check_less(self, "wall", "base_radius", 0.8)
        check_less(self, "wall", "lip_radius", 0.8)
        check_less(self, "wall", "belly_radius", 0.8)
        check_less(self, "wall", "height", 0.1)

    @classmethod
    def sample(cls, rng: np.random.Generator) -> VaseParams:
        """Draw a parameter set from the documented ranges."""
        values = draw(rng, cls.RANGES)
        values.update(draw_scaled(rng, cls.SCALED_RANGES, values["height"]))
        return cls(**values)

    def solid(self) -> trimesh.Trimesh:
        """One watertight solid, metres, resting on z = 0."""
        h, w = self.height, self.wall
        knots_z = np.array([0.0, self.belly_position * h, 0.85 * h, h])
        knots_r = np.array([self.base_radius, self.belly_radius, self.neck_radius, self.lip_radius])
        # PCHIP keeps the outline between neighbouring knot radii (no overshoot below 0).
        outline = PchipInterpolator(knots_z, knots_r)
        floor = 2.0 * w
        z_out = np.linspace(0.0, h, 24)
        z_in = np.linspace(floor, h, 24)[::-1]
        outer = np.stack([outline(z_out), z_out], axis=1)
        inner = np.stack([outline(z_in) - w, z_in], axis=1)
        profile = np.concatenate([[(0.0, 0.0)], outer, inner, [(0.0, floor)]])
        body = revolved(profile, sections=32)
        leaned = shear(
            body,
            dx_dz=self.lean * math.cos(self.lean_direction),
            dy_dz=self.lean * math.sin(self.lean_direction),
        )
        return finish([leaned])
