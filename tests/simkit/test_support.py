"""support_margin against analytic margins of boxes, brackets and cones."""

from __future__ import annotations

import math

import numpy as np
import pytest
import trimesh
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial import ConvexHull

from simkit.geometry import Mesh
from simkit.physics import support_margin
from simkit.shapes import BracketLParams, build


def _mesh(tm: trimesh.Trimesh) -> Mesh:
    return Mesh.from_trimesh(tm)


def _box(a: float, b: float, c: float) -> trimesh.Trimesh:
    return trimesh.creation.box(extents=(a, b, c))


def _rotated(
    tm: trimesh.Trimesh, angle: float, axis: tuple[float, float, float]
) -> trimesh.Trimesh:
    out = tm.copy()
    out.apply_transform(trimesh.transformations.rotation_matrix(angle, axis))
    return out


def test_box_margin_is_half_its_smaller_side() -> None:
    assert support_margin(_mesh(_box(0.4, 0.3, 1.0))) == pytest.approx(0.15, abs=1e-12)
    assert support_margin(_mesh(_box(0.2, 0.9, 0.05))) == pytest.approx(0.1, abs=1e-12)


@settings(max_examples=30, deadline=None)
@given(
    extents=st.tuples(*[st.floats(0.05, 2.0)] * 3),
    shift=st.tuples(st.floats(-5, 5), st.floats(-5, 5), st.floats(-5, 5)),
    yaw=st.floats(0.0, 2 * math.pi),
)
def test_box_margin_invariant_to_translation_and_yaw(extents, shift, yaw) -> None:
    tm = _rotated(_box(*extents), yaw, (0, 0, 1))
    tm.apply_translation(shift)
    assert support_margin(_mesh(tm)) == pytest.approx(min(extents[:2]) / 2, abs=1e-9)


@pytest.mark.parametrize(("a", "c", "theta"), [(0.4, 1.0, 0.3), (1.0, 0.2, 1.2), (0.5, 0.5, 0.2)])
def test_box_tilted_onto_an_edge_is_negative(a: float, c: float, theta: float) -> None:
    # Rotated about y by theta, the box rests on one edge (a segment along y). The lowest
    # corner (a/2, -c/2) lands at x = a/2 cos(theta) - c/2 sin(theta); the centre of mass
    # stays at x = 0.
    tm = _rotated(_box(a, 0.3, c), theta, (0, 1, 0))
    expected = -abs(a / 2 * math.cos(theta) - c / 2 * math.sin(theta))
    assert expected < 0
    assert support_margin(_mesh(tm)) == pytest.approx(expected, abs=1e-9)


def test_cube_balanced_on_an_edge_has_zero_margin() -> None:
    # At 45 degrees the centre of mass is exactly above the supporting edge.
    tm = _rotated(_box(0.5, 0.3, 0.5), math.pi / 4, (0, 1, 0))
    assert abs(support_margin(_mesh(tm))) < 1e-9


def test_contact_tol_decides_what_touches() -> None:
    # Tilting by 1e-5 rad lifts the far edge by 4e-6 m: face contact at the default
    # tolerance, edge contact when the tolerance is zero.
    tm = _rotated(_box(0.4, 0.3, 0.2), 1e-5, (0, 1, 0))
    mesh = _mesh(tm)
    assert support_margin(mesh) == pytest.approx(0.15, abs=1e-5)
    assert support_margin(mesh, contact_tol=0.0) == pytest.approx(-0.2, abs=1e-5)


def _l_bracket_margin(w: float, d: float, h: float, arm: float, t: float) -> float:
    """Hand-computed margin of a post [0, w] x [0, h] with an arm [w, w + arm] x [h - t, h]."""
    v_post, v_arm = w * h * d, arm * t * d
    com_x = (v_post * w / 2 + v_arm * (w + arm / 2)) / (v_post + v_arm)
    if com_x > w:
        return -(com_x - w)
    return min(com_x, w - com_x, d / 2)


@pytest.mark.parametrize(
    ("w", "d", "h", "arm", "t"),
    [(0.1, 0.2, 0.5, 0.6, 0.1), (0.08, 0.15, 0.4, 0.35, 0.06), (0.12, 0.3, 0.5, 0.05, 0.05)],
)
def test_l_bracket_margin_matches_hand_computation(w, d, h, arm, t) -> None:
    post = trimesh.creation.box(bounds=[[0, -d / 2, 0], [w, d / 2, h]])
    beam = trimesh.creation.box(bounds=[[w / 2, -d / 2, h - t], [w + arm, d / 2, h]])
    union = trimesh.boolean.union([post, beam], engine="manifold")
    expected = _l_bracket_margin(w, d, h, arm, t)
    # manifold3d stores vertices in float32: agreement to ~1e-7 m.
    assert support_margin(_mesh(union)) == pytest.approx(expected, abs=1e-6)
    # The procedural family builds the same solid (then recentres it).
    params = BracketLParams(post_width=w, depth=d, post_height=h, arm_length=arm, arm_thickness=t)
    assert support_margin(build("bracket_l", params)) == pytest.approx(expected, abs=1e-6)


def test_l_bracket_overhang_tips_it() -> None:
    assert _l_bracket_margin(0.1, 0.2, 0.5, 0.6, 0.1) == pytest.approx(-(0.0265 / 0.11 - 0.1))
    assert _l_bracket_margin(0.1, 0.2, 0.5, 0.6, 0.1) < 0


@pytest.mark.parametrize("sections", [16, 64])
def test_cone_on_its_base_margin_is_the_base_radius(sections: int) -> None:
    r = 0.3
    mesh = _mesh(trimesh.creation.cone(radius=r, height=0.6, sections=sections))
    margin = support_margin(mesh)
    # The support polygon is the regular n-gon inscribed in the base: inradius r cos(pi/n).
    assert margin == pytest.approx(r * math.cos(math.pi / sections), abs=1e-9)
    assert r * (1 - 0.02) < margin <= r


def test_cone_on_its_tip() -> None:
    cone = trimesh.creation.cone(radius=0.3, height=0.6, sections=32)
    upside_down = _rotated(cone, math.pi, (1, 0, 0))
    assert support_margin(_mesh(upside_down)) <= 0.0
    assert abs(support_margin(_mesh(upside_down))) < 1e-9
    # Tilted by alpha about the tip, the centre of mass (3/4 of the height from the tip)
    # moves 3h/4 sin(alpha) sideways from the single contact point.
    alpha = 0.1
    tilted = _rotated(cone, math.pi + alpha, (1, 0, 0))
    assert support_margin(_mesh(tilted)) == pytest.approx(-0.75 * 0.6 * math.sin(alpha), rel=1e-9)


def _reference_margin(polygon: np.ndarray, p: np.ndarray) -> float:
    """Signed distance to a convex CCW polygon by brute force over its edges."""
    a, b = polygon, np.roll(polygon, -1, axis=0)
    ab = b - a
    t = np.clip(((p - a) * ab).sum(axis=1) / (ab * ab).sum(axis=1), 0.0, 1.0)
    dist = np.linalg.norm(p - (a + t[:, None] * ab), axis=1).min()
    cross = ab[:, 0] * (p[1] - a[:, 1]) - ab[:, 1] * (p[0] - a[:, 0])
    return float(dist if np.all(cross >= 0) else -dist)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(3, 12),
    apex=st.tuples(st.floats(-1.5, 1.5), st.floats(-1.5, 1.5), st.floats(0.1, 2.0)),
)
def test_pyramid_margin_matches_brute_force(seed: int, n: int, apex) -> None:
    # A pyramid over a random convex base leaning over an arbitrary apex: its centre of
    # mass (from trimesh, an independent implementation) may fall inside or outside.
    rng = np.random.default_rng(seed)
    # One vertex per angular sector keeps the base vertices well apart and in convex position.
    angles = (np.arange(n) + rng.uniform(0.1, 0.9, n)) * 2 * np.pi / n
    radii = rng.uniform(0.5, 1.0, n)
    base = np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
    points = np.concatenate([np.column_stack([base, np.zeros(n)]), [apex]])
    hull = trimesh.convex.convex_hull(points)
    polygon = base[ConvexHull(base).vertices]  # counter-clockwise
    expected = _reference_margin(polygon, np.asarray(hull.center_mass)[:2])
    assert support_margin(_mesh(hull)) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("tol", [-1e-3, float("nan"), float("inf")])
def test_bad_contact_tol_raises(tol: float) -> None:
    with pytest.raises(ValueError, match="contact_tol"):
        support_margin(_mesh(_box(1, 1, 1)), contact_tol=tol)


def test_non_mesh_raises_type_error() -> None:
    with pytest.raises(TypeError, match="Mesh.from_trimesh"):
        support_margin(_box(1, 1, 1))  # a trimesh, not a Mesh


# ---------------------------------------------------------------------- voxel grids (batched)


def _corner_reference(occ: np.ndarray, com_xy: np.ndarray, pitch: float) -> float:
    """The same margin by scipy: hull of the lowest layer's square corners."""
    from simkit.physics.support import _support_projection

    k = np.nonzero(occ.any(axis=(0, 1)))[0].min()
    ij = np.argwhere(occ[:, :, k])
    corners = (
        np.unique(np.concatenate([ij + [dx, dy] for dx in (0, 1) for dy in (0, 1)]), axis=0) * pitch
    )
    return _support_projection(corners.astype(float), com_xy)[1]


def test_voxel_support_margin_matches_scipy_on_procedural_objects():
    import torch

    from simkit import shapes
    from simkit.geometry import VoxelGrid
    from simkit.physics import voxel_support_margin

    data = shapes.dataset(45, resolution=24, seed=3)
    grid = VoxelGrid(data.voxels > 0.5, torch.zeros(3, dtype=torch.float64), 1 / 24)
    margins = voxel_support_margin(grid)
    com = grid.mass_properties().center_of_mass.numpy()
    occ = grid.binary().numpy()
    ref = [_corner_reference(occ[b], com[b, :2], 1 / 24) for b in range(len(occ))]
    np.testing.assert_allclose(margins.numpy(), ref, atol=1e-12)
    assert (margins < 0).any() and (margins > 0).any()


def test_voxel_support_margin_closed_forms():
    import torch

    from simkit.geometry import VoxelGrid
    from simkit.physics import support_margin

    occ = torch.zeros(2, 8, 8, 8, dtype=torch.bool)
    occ[0, 2:6, 1:7, 0:3] = True  # a 4 x 6 block: margin = half the short side = 2 voxels
    occ[1, 0:2, 0:2, 0:1] = True  # a 2 x 2 foot ...
    occ[1, 0:8, 0:2, 1:2] = True  # ... under an 8-long arm: COM x = (4*1 + 16*4) / 20 = 3.4
    grid = VoxelGrid(occ, torch.zeros(3, dtype=torch.float64), 0.5)
    margins = support_margin(grid)
    assert float(margins[0]) == pytest.approx(2 * 0.5, abs=1e-12)
    assert float(margins[1]) == pytest.approx(-(3.4 - 2.0) * 0.5, abs=1e-12)
