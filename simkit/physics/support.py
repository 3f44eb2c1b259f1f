"""Analytic stability check: the centre of mass against the support polygon.

A rigid body resting on flat ground under gravity along -z is in (static) equilibrium
exactly when the vertical line through its centre of mass meets the support polygon, the
convex hull of its contact points with the ground. ``support_margin`` measures how far
inside (positive) or outside (negative) that line falls.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.spatial import ConvexHull
from torch import Tensor

from simkit.geometry import Mesh, VoxelGrid

__all__ = ["support_margin", "voxel_support_margin"]

# Relative size below which the spread of the contact points along an axis counts as zero
# (the support is a segment or a single point).
_DEGENERATE_RTOL = 1e-9


def support_margin(mesh: Mesh | VoxelGrid, *, contact_tol: float = 1e-4) -> float | Tensor:
    """Signed distance from the centre of mass's ground projection to the support polygon.

    Contact points are the vertices within ``contact_tol`` of the lowest z; the support
    polygon is the 2D convex hull of their (x, y). The centre of mass is the mesh's, at
    uniform density. When the contact set is degenerate (collinear points or a single
    point), the support is that segment or point and the margin is minus the distance to
    it, so it is never positive.

    A :class:`~simkit.geometry.VoxelGrid` is handled by :func:`voxel_support_margin`
    (batched in torch; returns a (B,) tensor).

    Args:
        mesh: a watertight :class:`~simkit.geometry.Mesh`, vertices (V, 3) float, metres,
            z up. It is taken as resting where it is: only its lowest vertices touch ground.
        contact_tol: height above the lowest vertex (metres, >= 0) within which a vertex
            counts as touching the ground.

    Returns:
        The margin in metres: > 0 when the projected centre of mass lies strictly inside
        the support polygon (the distance to its nearest edge), < 0 when it lies outside
        (minus the distance to the polygon), 0 on the boundary.

    Raises:
        TypeError: if ``mesh`` is not a :class:`~simkit.geometry.Mesh`.
        ValueError: if ``contact_tol`` is negative or not finite, or the mesh is not a
            closed, outward-wound solid (from :meth:`Mesh.center_of_mass`).
    """
    if isinstance(mesh, VoxelGrid):
        return voxel_support_margin(mesh)
    if not isinstance(mesh, Mesh):
        raise TypeError(
            f"support_margin takes a simkit.geometry.Mesh, got {type(mesh).__name__}; "
            "wrap a trimesh with Mesh.from_trimesh"
        )
    if not (isinstance(contact_tol, (int, float)) and math.isfinite(contact_tol)):
        raise ValueError(f"contact_tol must be a finite number, got {contact_tol!r}")
    if contact_tol < 0:
        raise ValueError(f"contact_tol must be >= 0 metres, got {contact_tol!r}")
    vertices = mesh.vertices.detach().cpu().double().numpy()
    com = mesh.center_of_mass().detach().cpu().double().numpy()
    return _margin(vertices, com, contact_tol)


def voxel_support_margin(grid: VoxelGrid) -> Tensor:
    """Support margins of a batch of voxel objects, in torch on the grid's device.

    Each object rests on its lowest occupied layer; the support polygon is the convex
    hull of the bottom squares of that layer's voxels, and the centre of mass is the
    voxels' (exact). The hulls of all grids are built at once by gift wrapping on the
    integer lattice of square corners (exact arithmetic), then the margin is the
    distance to the nearest edge line (inside) or minus the distance to the polygon.

    Args:
        grid: occupancy (B, R, R, R); every grid must hold at least one voxel.

    Returns:
        (B,) margins in metres, in the grid's float dtype.

    Raises:
        ValueError: an empty grid.
    """
    if not isinstance(grid, VoxelGrid):
        raise TypeError(f"voxel_support_margin takes a VoxelGrid, got {type(grid).__name__}")
    occ = grid.binary()
    com = grid.mass_properties().center_of_mass.to(torch.float64)  # raises on empty grids
    bsz, res, dev = occ.shape[0], occ.shape[1], occ.device
    rows = torch.arange(bsz, device=dev)
    has_layer = occ.any(dim=1).any(dim=1)  # (B, R) over z
    lowest = torch.where(has_layer, torch.arange(res, device=dev), res).min(dim=1).values
    bottom = occ[rows, :, :, lowest]  # (B, R, R) over (x, y)
    corner = torch.zeros(bsz, res + 1, res + 1, dtype=torch.bool, device=dev)
    for dx in (0, 1):
        for dy in (0, 1):
            corner[:, dx : dx + res, dy : dy + res] |= bottom
    lattice = torch.arange(res + 1, device=dev, dtype=torch.float64)
    pts = torch.stack(torch.meshgrid(lattice, lattice, indexing="ij"), dim=-1).reshape(-1, 2)
    hull, count = _gift_wrap(pts, corner.reshape(bsz, -1))
    pitch = grid.pitch.to(torch.float64)
    p = (com[:, :2] - grid.origin[:, :2].to(torch.float64)) / pitch[:, None]  # voxel units
    return (_polygon_margin(hull, count, p) * pitch).to(grid.origin.dtype)


def _gift_wrap(pts: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Counter-clockwise convex hulls of masked integer points, batched (Jarvis march).

    Args:
        pts: (P, 2) float64 points with integer coordinates (exact cross products).
        mask: (B, P) bool, at least one point per row.

    Returns:
        hull: (B, H, 2) vertices, padded by repeating the last one; count: (B,) vertices.
    """
    bsz = mask.shape[0]
    big = float(pts.abs().max()) * 4 + 4
    key = torch.where(mask, pts[:, 0] * big + pts[:, 1], torch.inf)  # lowest x, then lowest y
    start = key.argmin(dim=1)
    current = start.clone()
    vertices = [pts[current]]
    count = torch.ones(bsz, dtype=torch.long, device=pts.device)
    done = torch.zeros(bsz, dtype=torch.bool, device=pts.device)
    for _ in range(mask.shape[1]):
        c = pts[current]  # (B, 2)
        cand = current.clone()
        # Tournament over all points at once: r beats the candidate q when r lies right
        # of c->q, or on that line farther away; the winner leaves every point on its left.
        v = pts[None] - c[:, None]  # (B, P, 2)
        dist = (v * v).sum(-1)
        for _ in range(mask.shape[1]):
            q = pts[cand] - c
            cross = q[:, None, 0] * v[..., 1] - q[:, None, 1] * v[..., 0]
            qd = (q * q).sum(-1, keepdim=True)
            beats = mask & ((cross < 0) | ((cross == 0) & (dist > qd))) & (dist > 0)
            if not bool(beats.any()):
                break
            # Move to the beating point that is most clockwise (fewest rounds).
            score = torch.where(beats, -cross / dist.clamp_min(1e-300).sqrt(), -torch.inf)
            cand = torch.where(beats.any(dim=1), score.argmax(dim=1), cand)
        closed = (cand == start) | done
        count = count + (~closed).long()
        current = torch.where(closed, current, cand)
        done = closed
        vertices.append(pts[current])
        if bool(done.all()):
            break
    return torch.stack(vertices, dim=1), count


def _polygon_margin(hull: Tensor, count: Tensor, p: Tensor) -> Tensor:
    """Signed distance of p (B, 2) to the CCW polygons (B, H, 2) with ``count`` vertices."""
    h = hull.shape[1]
    idx = torch.arange(h, device=hull.device)
    valid = idx[None] < count[:, None]  # (B, H) edges i -> i+1 (mod count)
    nxt = torch.where(idx[None] + 1 < count[:, None], idx[None] + 1, 0)
    a = hull
    b = torch.gather(hull, 1, nxt[..., None].expand(-1, -1, 2))
    e = b - a
    length = e.norm(dim=-1).clamp_min(1e-300)
    w = p[:, None] - a
    signed = (e[..., 0] * w[..., 1] - e[..., 1] * w[..., 0]) / length  # > 0: left (inside)
    inside = torch.where(valid, signed, torch.inf).min(dim=1).values
    t = ((w * e).sum(-1) / (length * length)).clamp(0, 1)
    seg = (w - t[..., None] * e).norm(dim=-1)
    outside = -torch.where(valid, seg, torch.inf).min(dim=1).values
    return torch.where(inside >= 0, inside, outside)


def _margin(vertices: np.ndarray, com: np.ndarray, contact_tol: float) -> float:
    """support_margin on plain arrays: vertices (V, 3) float64, com (3,) float64, metres."""
    if vertices.ndim != 2 or vertices.shape[1] != 3 or len(vertices) == 0:
        raise ValueError(f"vertices must be a non-empty (V, 3) array, got shape {vertices.shape}")
    if not np.all(np.isfinite(com)):
        raise ValueError(f"centre of mass must be finite, got {com.tolist()}")
    z = vertices[:, 2]
    contact = vertices[z <= z.min() + contact_tol, :2]
    return _support_projection(contact, com[:2])[1]


def _support_projection(contact: np.ndarray, point: np.ndarray) -> tuple[np.ndarray, float]:
    """Nearest point of the support set to ``point``, and the signed margin.

    Args:
        contact: (K, 2) float64 contact points on the ground, K >= 1.
        point: (2,) float64, the centre of mass's ground projection.

    Returns:
        ``(q, margin)``: q (2,) is the point of the support set (the convex hull of
        ``contact``, or its segment or point when degenerate) nearest to ``point``
        (``point`` itself when inside); margin > 0 is the distance to the boundary from
        inside, margin <= 0 minus the distance from outside.
    """
    if len(contact) == 1:
        return contact[0], -float(np.linalg.norm(point - contact[0]))
    # The contact set's principal spreads tell a polygon from a segment or a point.
    mean = contact.mean(axis=0)
    centred = contact - mean
    _, spread, axes = np.linalg.svd(centred, full_matrices=False)
    scale = max(float(np.abs(contact).max()), float(spread[0]), 1.0)
    if spread[0] <= _DEGENERATE_RTOL * scale:
        return mean, -float(np.linalg.norm(point - mean))
    if spread[1] <= _DEGENERATE_RTOL * scale:
        along = centred @ axes[0]
        q = _closest_on_segment(point, mean + along.min() * axes[0], mean + along.max() * axes[0])
        return q, -float(np.linalg.norm(point - q))
    hull = ConvexHull(contact)
    # hull.equations rows are (n_x, n_y, offset) with unit outward normals: n . p + offset
    # is the signed distance to each edge's line, <= 0 for every edge iff p is inside.
    signed = hull.equations[:, :2] @ point + hull.equations[:, 2]
    if np.all(signed <= 0):
        # Inside a convex polygon the distance to the boundary is that to the nearest line.
        return point, float(-signed.max())
    ring = contact[hull.vertices]
    candidates = [
        _closest_on_segment(point, ring[i], ring[(i + 1) % len(ring)]) for i in range(len(ring))
    ]
    q = min(candidates, key=lambda c: float(np.linalg.norm(point - c)))
    return q, -float(np.linalg.norm(point - q))


def _closest_on_segment(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The point of segment ab nearest to p, all (2,) float64."""
    ab = b - a
    length2 = float(ab @ ab)
    t = 0.0 if length2 == 0.0 else min(1.0, max(0.0, float((p - a) @ ab) / length2))
    return a + t * ab
