"""Quasi-static toppling: where does a nudged rigid body come to rest on flat ground?

The analytic counterpart of the simulation in :mod:`simkit.physics.stability`. It
ignores momentum: after the same 1-degree nudges, the body (its convex hull: the
only part that can touch flat ground) pivots about the point or edge of its support
nearest to the centre of mass's ground projection, by exactly the angle at which the
next hull vertex touches down, until the projection falls inside the support (at
rest) or the tilt passes the threshold (fallen). Unlike :func:`support_margin`, which
judges the first support only, this follows a round-bottomed mug that rolls a few
degrees to rest, or a table that tips onto the edge of its top.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.spatial import ConvexHull

from simkit.geometry import Mesh
from simkit.physics.stability import StabilityConfig, _rotation_matrix, nudge_azimuths
from simkit.physics.support import _support_projection

__all__ = ["QuasiStaticResult", "quasi_static_check"]

_CONTACT_RTOL = 1e-7  # contact tolerance, relative to the object's size


@dataclass(frozen=True)
class QuasiStaticResult:
    """Verdict of :func:`quasi_static_check`.

    Attributes:
        stable: every nudge direction came to rest below the tilt threshold.
        tilt_deg: the worst resting (or threshold-crossing) tilt over the directions.
        pivots: the most pivots one direction needed.
    """

    stable: bool
    tilt_deg: float
    pivots: int


def _settle(
    points: np.ndarray, com: np.ndarray, up: np.ndarray, threshold: float, max_pivots: int
) -> tuple[bool, float, int]:
    """Pivot a body until it rests or tilts past ``threshold`` (radians).

    Args:
        points: (K, 3) hull vertices; com: (3,); up: (3,) the body's up-vector, all in
            the world frame. Their height does not matter (the lowest point is the ground).
    """
    size = float(np.ptp(points, axis=0).max())
    tol = _CONTACT_RTOL * size
    for pivots in range(max_pivots + 1):
        tilt = math.acos(min(1.0, max(-1.0, float(up[2]))))
        if tilt > threshold:
            return False, tilt, pivots
        zmin = float(points[:, 2].min())
        contact = points[points[:, 2] <= zmin + tol, :2]
        q, margin = _support_projection(contact, com[:2])
        if margin > 0:
            return True, tilt, pivots
        d = com[:2] - q
        norm = float(np.linalg.norm(d))
        if norm <= tol:  # balanced exactly on the boundary: unstable equilibrium
            return False, tilt, pivots
        d /= norm
        pivot = np.array([q[0], q[1], zmin])
        rel = points - pivot
        ahead = rel[:, :2] @ d  # horizontal distance past the pivot, towards the COM
        height = rel[:, 2]
        candidates = (ahead > tol) & (height > tol)
        if not candidates.any():
            return False, math.pi, pivots  # nothing ahead to land on: it rolls over
        # Tipping by theta about the horizontal axis z x d lowers a point (ahead, height)
        # to height cos(theta) - ahead sin(theta): it lands at theta = atan2(height, ahead).
        theta = float(np.arctan2(height[candidates], ahead[candidates]).min())
        rot = _rotation_matrix(np.array([-d[1], d[0], 0.0]), theta)
        points = (points - pivot) @ rot.T + pivot
        com = (com - pivot) @ rot.T + pivot
        up = rot @ up
    return False, math.acos(min(1.0, float(up[2]))), max_pivots


def quasi_static_check(
    mesh: Mesh, config: StabilityConfig | None = None, *, max_pivots: int = 64
) -> QuasiStaticResult:
    """Quasi-static verdict for ``mesh`` under the nudges ``check_stability`` applies.

    Args:
        mesh: a watertight mesh, vertices (V, 3) metres, z up, upright as given.
        config: supplies ``nudge_deg``, ``trials``, ``seed`` (the same nudge directions as
            the simulation) and ``tilt_threshold_deg``; the rest is unused.
        max_pivots: give up (unstable) after this many pivots in one direction.

    Returns:
        A :class:`QuasiStaticResult`.
    """
    config = config or StabilityConfig()
    vertices = mesh.vertices.detach().cpu().double().numpy()
    com = mesh.center_of_mass().detach().cpu().double().numpy()
    hull = vertices[ConvexHull(vertices).vertices]
    threshold = math.radians(config.tilt_threshold_deg)
    nudge = math.radians(config.nudge_deg)
    worst_tilt, worst_pivots, stable = 0.0, 0, True
    for azimuth in nudge_azimuths(config):
        rot = (
            _rotation_matrix(np.array([-math.sin(azimuth), math.cos(azimuth), 0.0]), nudge)
            if nudge > 0
            else np.eye(3)
        )
        points = (hull - com) @ rot.T + com
        ok, tilt, pivots = _settle(points, com.copy(), rot[:, 2].copy(), threshold, max_pivots)
        stable &= ok
        worst_tilt, worst_pivots = max(worst_tilt, tilt), max(worst_pivots, pivots)
    return QuasiStaticResult(
        stable=bool(stable), tilt_deg=math.degrees(worst_tilt), pivots=worst_pivots
    )
