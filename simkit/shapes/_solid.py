"""Constructive solid geometry for the procedural families: primitives, shear, union.

Every helper returns a watertight :class:`trimesh.Trimesh` in metres, z up. The families
place primitives with these helpers and call :func:`finish` once, which unites the parts
into one solid with the manifold3d engine and rests it on the ground plane z = 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import trimesh

# Facet counts chosen so that every family stays well below 5k faces after the union.
CYLINDER_SECTIONS = 24
REVOLVE_SECTIONS = 32


def box(lo: Sequence[float], hi: Sequence[float]) -> trimesh.Trimesh:
    """Axis-aligned box between two corners.

    Args:
        lo: (3,) float, metres; the minimum corner.
        hi: (3,) float, metres; the maximum corner, strictly greater than ``lo``.

    Returns:
        A 12-face watertight box.
    """
    bounds = np.array([lo, hi], dtype=np.float64)
    if np.any(bounds[1] <= bounds[0]):
        raise ValueError(f"box needs hi > lo on every axis, got lo={lo}, hi={hi}")
    return trimesh.creation.box(bounds=bounds)


def vertical_cylinder(
    x: float, y: float, z0: float, z1: float, radius: float, sections: int = CYLINDER_SECTIONS
) -> trimesh.Trimesh:
    """Cylinder with a vertical axis through (x, y), spanning z0 <= z <= z1 (metres)."""
    if z1 <= z0 or radius <= 0:
        raise ValueError(f"cylinder needs z1 > z0 and radius > 0, got {z0=}, {z1=}, {radius=}")
    return trimesh.creation.cylinder(
        radius=radius, segment=[[x, y, z0], [x, y, z1]], sections=sections
    )


def x_cylinder(
    x0: float, x1: float, y: float, z: float, radius: float, sections: int = CYLINDER_SECTIONS
) -> trimesh.Trimesh:
    """Cylinder with its axis along x through (y, z), spanning x0 <= x <= x1 (metres)."""
    if x1 <= x0 or radius <= 0:
        raise ValueError(f"cylinder needs x1 > x0 and radius > 0, got {x0=}, {x1=}, {radius=}")
    return trimesh.creation.cylinder(
        radius=radius, segment=[[x0, y, z], [x1, y, z]], sections=sections
    )


def revolved(profile: np.ndarray, sections: int = REVOLVE_SECTIONS) -> trimesh.Trimesh:
    """Solid of revolution about the z axis.

    Args:
        profile: (P, 2) float, metres; a closed (r, z) outline that starts and ends on the
            axis (r = 0) and does not cross itself. Either orientation is accepted.
        sections: facets around the axis.

    Returns:
        A watertight solid with positive volume.
    """
    profile = np.asarray(profile, dtype=np.float64)
    if profile.ndim != 2 or profile.shape[1] != 2 or np.any(profile[:, 0] < 0):
        raise ValueError(f"profile must be (P, 2) with r >= 0, got shape {profile.shape}")
    mesh = trimesh.creation.revolve(profile, sections=sections)
    if mesh.volume < 0:
        mesh.invert()
    return mesh


def shear(
    mesh: trimesh.Trimesh, dx_dz: float = 0.0, dy_dz: float = 0.0, z0: float = 0.0
) -> trimesh.Trimesh:
    """Shear horizontally in proportion to height: x += dx_dz * (z - z0), y += dy_dz * (z - z0).

    A shear keeps volume and keeps horizontal faces horizontal, so a body sheared about
    z0 = 0 still rests on the same footprint while its upper part leans.
    """
    matrix = np.eye(4)
    matrix[0, 2] = dx_dz
    matrix[1, 2] = dy_dz
    matrix[0, 3] = -dx_dz * z0
    matrix[1, 3] = -dy_dz * z0
    out = mesh.copy()
    out.apply_transform(matrix)
    return out


def finish(parts: Sequence[trimesh.Trimesh]) -> trimesh.Trimesh:
    """Unite the parts into one solid, rest it on z = 0 and centre its bounding box in x, y.

    Args:
        parts: watertight, overlapping primitives (metres).

    Returns:
        One watertight solid whose lowest vertex lies exactly on z = 0.

    Raises:
        RuntimeError: if the boolean union is not one connected watertight solid (a bug in a
            family's layout, not a user error).
    """
    solid = parts[0] if len(parts) == 1 else trimesh.boolean.union(list(parts), engine="manifold")
    if not solid.is_watertight or solid.volume <= 0 or solid.body_count != 1:
        raise RuntimeError("procedural shape union is not one connected watertight solid")
    lo, hi = solid.bounds
    offset = np.array([-(lo[0] + hi[0]) / 2.0, -(lo[1] + hi[1]) / 2.0, 0.0])
    vertices = np.array(solid.vertices, dtype=np.float64) + offset
    # Subtract the minimum itself, not -lo[2] via a float sum, so min z is exactly 0.
    vertices[:, 2] -= vertices[:, 2].min()
    return trimesh.Trimesh(vertices=vertices, faces=np.array(solid.faces), process=False)
