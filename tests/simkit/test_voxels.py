"""Tests for simkit.geometry.voxels: solid voxelization against inside tests, marching
cubes surfaces, exact voxel mass properties, connected components."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest
import torch
import trimesh
from hypothesis import given, settings
from hypothesis import strategies as st

from simkit.geometry import Mesh, VoxelGrid

F64 = torch.float64


def _convex_inside(tm: trimesh.Trimesh, pts: np.ndarray) -> np.ndarray:
    """Exact inside test for a convex mesh: behind every face plane."""
    signed = np.einsum("pfk,fk->pf", pts[:, None, :] - tm.triangles[None, :, 0, :], tm.face_normals)
    return (signed < 0).all(axis=1)


def _hull(seed: int) -> trimesh.Trimesh:
    rng = np.random.default_rng(seed)
    return trimesh.convex.convex_hull(rng.normal(size=(30, 3)) * [1.0, 0.6, 1.4])


def _torus() -> trimesh.Trimesh:
    return trimesh.creation.torus(
        major_radius=1.0, minor_radius=0.35, major_sections=32, minor_sections=16
    )


def _grid(occ: np.ndarray, origin=(0.0, 0.0, 0.0), pitch: float = 1.0) -> VoxelGrid:
    o = torch.from_numpy(np.asarray(occ, dtype=bool))
    if o.ndim == 3:
        o = o[None]
    return VoxelGrid(o, torch.tensor(origin, dtype=F64), torch.tensor(pitch, dtype=F64))


# --------------------------------------------------------------------------------------
# Voxelization
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("res", [17, 24])
def test_from_mesh_sphere_matches_exact_inside_test(res: int) -> None:
    tm = trimesh.creation.icosphere(subdivisions=3, radius=1.0).apply_translation([0.2, -0.1, 0.05])
    grid = VoxelGrid.from_mesh(Mesh.from_trimesh(tm), res)
    assert grid.occupancy.shape == (1, res, res, res) and grid.occupancy.dtype == torch.bool
    centers = grid.centers()[0].reshape(-1, 3).numpy()
    inside = _convex_inside(tm, centers)
    mismatches = int((grid.occupancy[0].reshape(-1).numpy() != inside).sum())
    assert mismatches <= 3, mismatches
    # Default frame: the cube centred on the bounding box, side = longest extent.
    b = tm.bounds
    side = (b[1] - b[0]).max()
    assert float(grid.pitch[0]) == pytest.approx(side / res)
    np.testing.assert_allclose(grid.origin[0].numpy(), 0.5 * (b[0] + b[1]) - side / 2)


@pytest.mark.parametrize("name", ["torus", "hull"])
def test_from_mesh_matches_trimesh_contains(name: str) -> None:
    tm = _torus() if name == "torus" else _hull(3)
    grid = VoxelGrid.from_mesh(Mesh.from_trimesh(tm), 20)
    centers = grid.centers()[0].reshape(-1, 3).numpy()
    inside = tm.contains(centers)
    occ = grid.occupancy[0].reshape(-1).numpy()
    assert int((occ != inside).sum()) <= 3
    if name == "torus":
        # The hole is empty: the column through the centre has no occupied voxel.
        mid = grid.resolution // 2
        assert not grid.occupancy[0, mid - 1 : mid + 1, mid - 1 : mid + 1, :].any()
        assert occ.sum() > 0


def test_from_mesh_grid_aligned_box_is_exact() -> None:
    # A (1, 0.5, 0.25) box on an 8^3 grid of pitch 1/8: exactly 8 x 4 x 2 voxels, and the
    # union of those voxels *is* the box, so the mass properties agree exactly.
    mesh = Mesh.from_trimesh(trimesh.creation.box(extents=(1.0, 0.5, 0.25))).translated(
        [3.0, 1.0, -2.0]
    )
    grid = VoxelGrid.from_mesh(mesh, 8)
    occ = grid.occupancy[0]
    assert int(occ.sum()) == 64
    assert bool(occ[:, 2:6, 3:5].all())
    mv, mm = grid.mass_properties(2.0), mesh.mass_properties(2.0)
    torch.testing.assert_close(mv.volume[0], mm.volume, rtol=1e-12, atol=0)
    torch.testing.assert_close(mv.center_of_mass[0], mm.center_of_mass, rtol=0, atol=1e-12)
    torch.testing.assert_close(mv.inertia[0], mm.inertia, rtol=0, atol=1e-12)


def test_from_mesh_batched_equals_one_by_one() -> None:
    meshes = [
        Mesh.from_trimesh(trimesh.creation.icosphere(subdivisions=2, radius=0.7)),
        Mesh.from_trimesh(_torus()).translated([5.0, 0.0, 1.0]),
        Mesh.from_trimesh(_hull(1)),
    ]
    batched = VoxelGrid.from_mesh(meshes, 16)
    assert len(batched) == 3 and batched.batch_size == 3
    for i, m in enumerate(meshes):
        single = VoxelGrid.from_mesh(m, 16)
        torch.testing.assert_close(batched.occupancy[i], single.occupancy[0], rtol=0, atol=0)
        torch.testing.assert_close(batched.origin[i], single.origin[0])
        torch.testing.assert_close(batched.pitch[i], single.pitch[0])
        item = batched[i]
        assert item.batch_size == 1
        torch.testing.assert_close(item.occupancy, single.occupancy, rtol=0, atol=0)
    torch.testing.assert_close(batched[-1].occupancy, batched.occupancy[2:], rtol=0, atol=0)
    assert batched[0:2].batch_size == 2
    with pytest.raises(IndexError):
        batched[3]


def test_from_mesh_explicit_origin_and_pitch() -> None:
    # A grid covering only the positive octant of a sphere centred at the origin (the
    # mesh crosses the grid's walls): occupancy is still the exact inside test.
    tm = trimesh.creation.icosphere(subdivisions=3, radius=1.0)
    mesh = Mesh.from_trimesh(tm)
    res, pitch = 12, 0.1
    grid = VoxelGrid.from_mesh(mesh, res, origin=[0.0, 0.0, 0.0], pitch=pitch)
    np.testing.assert_allclose(grid.origin.numpy(), [[0.0, 0.0, 0.0]])
    np.testing.assert_allclose(grid.pitch.numpy(), [pitch])
    centers = grid.centers()[0].reshape(-1, 3).numpy()
    np.testing.assert_allclose(centers[0], [0.05, 0.05, 0.05])
    np.testing.assert_allclose(centers[-1], [1.15, 1.15, 1.15])
    inside = _convex_inside(tm, centers)
    assert int((grid.occupancy[0].reshape(-1).numpy() != inside).sum()) <= 2
    # Batched with a shared frame.
    two = VoxelGrid.from_mesh(
        [mesh, mesh.translated([0.5, 0.0, 0.0])], res, origin=[0.0, 0.0, 0.0], pitch=pitch
    )
    torch.testing.assert_close(two.occupancy[0], grid.occupancy[0], rtol=0, atol=0)
    shifted = _convex_inside(tm, centers - [0.5, 0.0, 0.0])
    assert int((two.occupancy[1].reshape(-1).numpy() != shifted).sum()) <= 2


def test_from_mesh_hollow_shell() -> None:
    # Outer sphere plus an inverted inner sphere: a hollow ball. Parity fills the shell
    # only, and the mesh's mass properties are the difference (trimesh agrees).
    outer = trimesh.creation.icosphere(subdivisions=3, radius=1.0)
    inner = trimesh.creation.icosphere(subdivisions=3, radius=0.5).apply_translation(
        [0.1, 0.0, 0.0]
    )
    shell = Mesh.concatenate([Mesh.from_trimesh(outer), Mesh.from_trimesh(inner).inverted()])
    assert float(shell.volume()) == pytest.approx(outer.volume - inner.volume, rel=1e-12)
    grid = VoxelGrid.from_mesh(shell, 20)
    centers = grid.centers()[0].reshape(-1, 3).numpy()
    expected = _convex_inside(outer, centers) & ~_convex_inside(inner, centers)
    assert int((grid.occupancy[0].reshape(-1).numpy() != expected).sum()) <= 3
    # The cavity encloses empty space: marching cubes gives two nested closed surfaces.
    (back,) = grid.to_mesh()
    assert back.is_watertight and back.to_trimesh().body_count == 2
    assert float(back.volume()) == pytest.approx(outer.volume - inner.volume, rel=0.1)


def test_from_mesh_errors() -> None:
    box = trimesh.creation.box()
    closed = Mesh.from_trimesh(box)
    open_box = Mesh.from_arrays(box.vertices, box.faces[1:])
    with pytest.raises(ValueError, match="watertight"):
        VoxelGrid.from_mesh(open_box, 8)
    with pytest.raises(ValueError, match="watertight"):
        VoxelGrid.from_mesh([closed, open_box], 8)
    for bad in (0, -2, 4.0):
        with pytest.raises(ValueError, match="resolution"):
            VoxelGrid.from_mesh(closed, bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        VoxelGrid.from_mesh(closed, 8, origin=[0.0, 0.0, 0.0])
    with pytest.raises(ValueError):
        VoxelGrid.from_mesh(closed, 8, pitch=0.1)
    with pytest.raises(ValueError):
        VoxelGrid.from_mesh(closed, 8, origin=[0.0, 0.0, 0.0], pitch=0.0)
    with pytest.raises(ValueError):
        VoxelGrid.from_mesh([], 8)
    with pytest.raises(TypeError):
        VoxelGrid.from_mesh([closed, box], 8)  # type: ignore[list-item]


def test_constructor_validation() -> None:
    occ = torch.ones(1, 4, 4, 4, dtype=torch.bool)
    z = torch.zeros(3)
    VoxelGrid(occ, z, 1.0)  # valid
    with pytest.raises(TypeError):
        VoxelGrid(occ.numpy(), z, 1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        VoxelGrid(occ[0], z, 1.0)  # no batch dimension
    with pytest.raises(ValueError):
        VoxelGrid(torch.ones(1, 4, 4, 3, dtype=torch.bool), z, 1.0)  # not cubic
    with pytest.raises(ValueError):
        VoxelGrid(torch.ones(1, 0, 0, 0, dtype=torch.bool), z, 1.0)
    with pytest.raises(ValueError, match="NaN"):
        VoxelGrid(torch.full((1, 2, 2, 2), float("nan")), z, 1.0)
    with pytest.raises(ValueError):
        VoxelGrid(occ, torch.zeros(2, 3), 1.0)  # batch of 1
    with pytest.raises(ValueError):
        VoxelGrid(occ, torch.zeros(2), 1.0)
    with pytest.raises(ValueError):
        VoxelGrid(occ, torch.tensor([0.0, float("inf"), 0.0]), 1.0)
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError):
            VoxelGrid(occ, z, bad)
    with pytest.raises(ValueError):
        VoxelGrid(occ, z, torch.ones(2))
    # Broadcasting of a (3,) origin and scalar pitch over the batch.
    g = VoxelGrid(torch.ones(3, 2, 2, 2, dtype=torch.bool), torch.tensor([1.0, 2.0, 3.0]), 0.5)
    assert g.origin.shape == (3, 3) and g.pitch.shape == (3,)
    assert "R=2" in repr(g)


def test_centers_follow_the_convention() -> None:
    g = _grid(np.ones((3, 3, 3)), origin=(1.0, -2.0, 0.5), pitch=0.25)
    c = g.centers()
    assert c.shape == (1, 3, 3, 3, 3)
    for i, j, k in [(0, 0, 0), (2, 1, 0), (1, 2, 2)]:
        expected = np.array([1.0, -2.0, 0.5]) + 0.25 * (np.array([i, j, k]) + 0.5)
        np.testing.assert_allclose(c[0, i, j, k].numpy(), expected)


# --------------------------------------------------------------------------------------
# Marching cubes surfaces
# --------------------------------------------------------------------------------------


def _bfs_components(occ: np.ndarray, connectivity: int) -> list[set]:
    """Plain flood fill: components as sets of voxel indices."""
    offsets = [
        (a, b, c)
        for a in (-1, 0, 1)
        for b in (-1, 0, 1)
        for c in (-1, 0, 1)
        if 0 < abs(a) + abs(b) + abs(c) <= connectivity
    ]
    seen = np.zeros(occ.shape, dtype=bool)
    comps = []
    for start in zip(*np.nonzero(occ), strict=True):
        if seen[start]:
            continue
        comp, queue = set(), deque([start])
        seen[start] = True
        while queue:
            v = queue.popleft()
            comp.add(tuple(int(x) for x in v))
            for o in offsets:
                w = (v[0] + o[0], v[1] + o[1], v[2] + o[2])
                if all(0 <= w[d] < occ.shape[d] for d in range(3)) and occ[w] and not seen[w]:
                    seen[w] = True
                    queue.append(w)
        comps.append(comp)
    return comps


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    res=st.integers(1, 6),
    fill=st.floats(0.05, 0.95),
)
def test_to_mesh_random_grids_are_closed_manifolds(seed: int, res: int, fill: float) -> None:
    occ = np.random.default_rng(seed).random((res, res, res)) < fill
    if not occ.any():
        occ[0, 0, 0] = True
    grid = _grid(occ, origin=(0.5, -1.0, 2.0), pitch=0.3)
    (mesh,) = grid.to_mesh()
    tm = mesh.to_trimesh()
    assert mesh.is_watertight and mesh.is_winding_consistent
    assert tm.is_watertight and tm.is_winding_consistent
    vol = float(mesh.volume())
    assert vol > 0
    assert vol == pytest.approx(tm.volume, rel=1e-9)
    # Below the voxels' own volume, above the inscribed octahedra (1/6 per voxel).
    assert occ.sum() * 0.3**3 / 6 * 0.99 < vol < occ.sum() * 0.3**3
    # One closed surface per 6-connected solid and one per enclosed cavity (the empty
    # space is 26-connected where the solid is 6-connected).
    cavities = len(_bfs_components(np.pad(~occ, 1, constant_values=True), 3)) - 1
    assert tm.body_count == len(_bfs_components(occ, 1)) + cavities
    # Inside the occupied voxels' bounding box.
    idx = np.argwhere(occ)
    lo = np.array([0.5, -1.0, 2.0]) + 0.3 * idx.min(0)
    hi = np.array([0.5, -1.0, 2.0]) + 0.3 * (idx.max(0) + 1)
    b = mesh.bounds.numpy()
    assert (b[0] >= lo - 1e-12).all() and (b[1] <= hi + 1e-12).all()


def test_to_mesh_single_voxel_is_an_octahedron() -> None:
    # The iso-surface of a lone voxel cuts each of the six axis edges at 1 - level, so it
    # is the octahedron of radius (1 - level) h: volume 4/3 r^3, centred on the voxel.
    h, level = 2.0, 0.5 + 1e-4
    origin = (1.0, 2.0, 3.0)
    (mesh,) = _grid(np.ones((1, 1, 1)), origin=origin, pitch=h).to_mesh()
    assert mesh.num_vertices == 6 and mesh.num_faces == 8
    r = (1 - level) * h
    mp = mesh.mass_properties()
    assert float(mp.volume) == pytest.approx(4 / 3 * r**3, rel=1e-6)
    np.testing.assert_allclose(mp.center_of_mass.numpy(), np.array(origin) + h / 2, atol=1e-12)
    # Regular octahedron inertia: m r^2 / 5 about any axis.
    np.testing.assert_allclose(
        mp.inertia.numpy(), np.eye(3) * float(mp.mass) * r**2 / 5, rtol=1e-5, atol=1e-12
    )


@pytest.mark.parametrize(
    "cells",
    [
        [(0, 0, 0), (1, 1, 1)],  # corner contact
        [(0, 0, 0), (1, 1, 0)],  # edge contact
    ],
)
def test_to_mesh_diagonal_contact_gives_separate_closed_surfaces(cells) -> None:
    occ = np.zeros((2, 2, 2), dtype=bool)
    for c in cells:
        occ[c] = True
    (mesh,) = _grid(occ).to_mesh()
    tm = mesh.to_trimesh()
    assert mesh.is_watertight and mesh.is_winding_consistent and tm.is_watertight
    assert tm.body_count == 2
    single = float(_grid(np.ones((1, 1, 1))).to_mesh()[0].volume())
    assert float(mesh.volume()) == pytest.approx(2 * single, rel=1e-6)  # skimage: float32


def test_mesh_to_voxels_to_mesh_volume() -> None:
    tm = trimesh.creation.icosphere(subdivisions=4, radius=1.0)
    grid = VoxelGrid.from_mesh(Mesh.from_trimesh(tm), 32)
    (back,) = grid.to_mesh()
    assert back.is_watertight and back.is_winding_consistent
    assert float(back.volume()) == pytest.approx(tm.volume, rel=0.03)
    assert float(grid.mass_properties().volume[0]) == pytest.approx(tm.volume, rel=0.03)
    np.testing.assert_allclose(back.center_of_mass().numpy(), 0.0, atol=0.01)


def test_to_mesh_float_occupancy_and_dtype() -> None:
    occ = torch.zeros(1, 4, 4, 4)
    occ[0, 1:3, 1:3, 1:3] = 0.9
    occ[0, 0, 0, 0] = 0.3  # below the level: ignored
    g = VoxelGrid(occ, torch.zeros(3, dtype=torch.float32), 0.5)
    (mesh,) = g.to_mesh()
    assert mesh.dtype == torch.float32
    (ref,) = _grid(occ[0].numpy() > 0.5, pitch=0.5).to_mesh()
    assert ref.dtype == F64
    # Same topology; vertex positions differ only by interpolation between 0.9 and 0.
    assert mesh.is_watertight and mesh.to_trimesh().body_count == 1
    torch.testing.assert_close(g.binary(), torch.from_numpy(occ.numpy() > 0.5))
    np.testing.assert_allclose(mesh.center_of_mass().numpy(), 1.0, atol=1e-5)


def test_to_mesh_batched_and_empty() -> None:
    occ = torch.zeros(2, 3, 3, 3, dtype=torch.bool)
    occ[0, 1, 1, 1] = True
    occ[1, :2, :2, :2] = True
    meshes = VoxelGrid(
        occ, torch.zeros(2, 3, dtype=F64), torch.tensor([1.0, 2.0], dtype=F64)
    ).to_mesh()
    assert len(meshes) == 2 and all(m.is_watertight for m in meshes)
    np.testing.assert_allclose(meshes[0].center_of_mass().numpy(), 1.5, atol=1e-12)
    np.testing.assert_allclose(meshes[1].center_of_mass().numpy(), 2.0, atol=1e-12)
    empty = _grid(np.zeros((3, 3, 3)))
    with pytest.raises(ValueError, match="empty"):
        empty.to_mesh()


# --------------------------------------------------------------------------------------
# Mass properties
# --------------------------------------------------------------------------------------


def _union_of_boxes(occ: np.ndarray, origin: np.ndarray, h: float) -> trimesh.Trimesh:
    boxes = []
    for idx in np.argwhere(occ):
        b = trimesh.creation.box(extents=(h, h, h))
        b.apply_translation(origin + h * (idx + 0.5))
        boxes.append(b)
    return trimesh.util.concatenate(boxes)


@pytest.mark.parametrize("seed", range(3))
def test_voxel_mass_properties_match_union_of_boxes(seed: int) -> None:
    rng = np.random.default_rng(seed)
    occ = rng.random((5, 5, 5)) < 0.35
    origin = rng.normal(size=3)
    h = float(rng.uniform(0.1, 2.0))
    mp = _grid(occ, origin=tuple(origin), pitch=h).mass_properties(3.0)
    ref = _union_of_boxes(occ, origin, h)
    ref.density = 3.0
    p = ref.mass_properties
    assert float(mp.volume[0]) == pytest.approx(p["volume"], rel=1e-9)
    assert float(mp.mass[0]) == pytest.approx(p["mass"], rel=1e-9)
    np.testing.assert_allclose(mp.center_of_mass[0].numpy(), p["center_mass"], atol=1e-9 * h)
    np.testing.assert_allclose(
        mp.inertia[0].numpy(), p["inertia"], atol=1e-9 * np.abs(p["inertia"]).max()
    )


def test_voxel_mass_properties_solid_block_closed_form() -> None:
    occ = np.zeros((8, 8, 8), dtype=bool)
    occ[1:4, 2:7, 3:5] = True  # 3 x 5 x 2 voxels
    h, rho = 0.2, 5.0
    origin = np.array([-1.0, 0.5, 2.0])
    mp = _grid(occ, origin=tuple(origin), pitch=h).mass_properties(rho)
    a, b, c = 3 * h, 5 * h, 2 * h
    m = rho * a * b * c
    assert float(mp.volume[0]) == pytest.approx(a * b * c, rel=1e-12)
    assert float(mp.mass[0]) == pytest.approx(m, rel=1e-12)
    np.testing.assert_allclose(
        mp.center_of_mass[0].numpy(), origin + h * np.array([2.5, 4.5, 4.0]), atol=1e-12
    )
    expected = np.diag([m * (b**2 + c**2), m * (a**2 + c**2), m * (a**2 + b**2)]) / 12
    np.testing.assert_allclose(mp.inertia[0].numpy(), expected, atol=1e-12)


def test_voxel_mass_properties_batched_and_validated() -> None:
    occ = np.zeros((2, 4, 4, 4), dtype=bool)
    occ[0, 0, 0, 0] = True
    occ[1, 1:3, 1:3, :] = True
    g = VoxelGrid(
        torch.from_numpy(occ), torch.zeros(2, 3, dtype=F64), torch.tensor([1.0, 0.5], dtype=F64)
    )
    mp = g.mass_properties(2.0)
    assert (
        mp.volume.shape == (2,)
        and mp.center_of_mass.shape == (2, 3)
        and mp.inertia.shape == (2, 3, 3)
    )
    for i in range(2):
        single = g[i].mass_properties(2.0)
        torch.testing.assert_close(mp.inertia[i], single.inertia[0])
        torch.testing.assert_close(mp.center_of_mass[i], single.center_of_mass[0])
    # A single unit voxel: m = 2, I = m (1 + 1) / 12.
    np.testing.assert_allclose(mp.inertia[0].numpy(), np.eye(3) * 2.0 * 2 / 12, atol=1e-14)
    with pytest.raises(ValueError, match="empty"):
        _grid(np.zeros((3, 3, 3))).mass_properties()
    with pytest.raises(ValueError, match="density"):
        g.mass_properties(0.0)
    # Float occupancy is thresholded at 0.5.
    f = VoxelGrid(torch.from_numpy(occ).float() * 0.6, torch.zeros(3), 1.0)
    assert f.mass_properties().volume.dtype == torch.float32
    np.testing.assert_allclose(f.mass_properties().volume.numpy(), [1.0, 16.0])


# --------------------------------------------------------------------------------------
# Connected components
# --------------------------------------------------------------------------------------


def test_components_two_blocks() -> None:
    occ = np.zeros((8, 8, 8), dtype=bool)
    occ[0:2, 0:2, 0:2] = True  # 8 voxels
    occ[4:7, 4:7, 4:7] = True  # 27 voxels
    g = _grid(occ)
    labels, counts = g.connected_components()
    assert counts.tolist() == [2]
    lab = labels[0].numpy()
    assert (lab[4:7, 4:7, 4:7] == 1).all() and (lab[0:2, 0:2, 0:2] == 2).all()
    assert (lab[~occ] == 0).all()
    largest = g.largest_component()
    np.testing.assert_array_equal(largest.occupancy[0].numpy(), lab == 1)
    torch.testing.assert_close(largest.origin, g.origin)


@pytest.mark.parametrize(
    ("cells", "expected"),
    [
        ([(0, 0, 0), (1, 1, 1)], {1: 2, 2: 2, 3: 1}),  # corner contact only
        ([(0, 0, 0), (1, 1, 0)], {1: 2, 2: 1, 3: 1}),  # edge contact
        ([(0, 0, 0), (1, 0, 0)], {1: 1, 2: 1, 3: 1}),  # face contact
    ],
)
def test_components_connectivity(cells, expected) -> None:
    occ = np.zeros((3, 3, 3), dtype=bool)
    for c in cells:
        occ[c] = True
    g = _grid(occ)
    for conn, n in expected.items():
        _, counts = g.connected_components(conn)
        assert counts.tolist() == [n], conn
    for bad in (0, 4, "face"):
        with pytest.raises(ValueError):
            g.connected_components(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("cells", "added"),
    [
        ([(0, 0, 0), (1, 1, 0)], [(1, 0, 0)]),  # edge in the floor: step in x
        ([(0, 0, 1), (1, 0, 0)], [(0, 0, 0)]),  # edge across z: the bridge goes low
        ([(1, 0, 1), (0, 0, 0)], [(1, 0, 0)]),
        ([(0, 0, 0), (1, 1, 1)], [(1, 0, 0), (1, 1, 0)]),  # corner: x, then y, then z
        ([(0, 1, 1), (1, 0, 0)], [(0, 0, 0), (0, 1, 0)]),
    ],
)
def test_bridge_diagonals_fills_the_low_path(cells, added) -> None:
    occ = np.zeros((3, 3, 3), dtype=bool)
    for c in cells:
        occ[c] = True
    bridged = _grid(occ).bridge_diagonals()
    new = np.argwhere(bridged.occupancy[0].numpy() & ~occ)
    assert sorted(map(tuple, new.tolist())) == sorted(added)
    assert bridged.connected_components(1)[1].tolist() == [1]
    torch.testing.assert_close(bridged.origin, _grid(occ).origin)


def test_bridge_diagonals_against_flood_fill() -> None:
    rng = np.random.default_rng(11)
    occ = rng.random((6, 7, 7, 7)) < 0.18  # sparse: many edge and corner contacts
    occ[5] = False
    g = VoxelGrid(torch.from_numpy(occ), torch.zeros(3), 1.0)
    bridged = g.bridge_diagonals().occupancy.numpy()
    for b in range(6):
        n6, n26 = len(_bfs_components(occ[b], 1)), len(_bfs_components(occ[b], 3))
        assert (bridged[b] | occ[b] == bridged[b]).all()  # nothing removed
        # As many face-connected solids as there were 26-connected ones, each the same
        # set of original voxels, at no more than two voxels a join.
        comps = _bfs_components(bridged[b], 1)
        assert len(comps) == n26
        originals = sorted(sorted(c & set(zip(*np.nonzero(occ[b]), strict=True))) for c in comps)
        assert originals == sorted(sorted(c) for c in _bfs_components(occ[b], 3))
        assert 0 <= bridged[b].sum() - occ[b].sum() <= 2 * (n6 - n26)
    # Already face-connected solids are left alone.
    single = _bfs_components(occ[0], 1)[0]
    one = np.zeros_like(occ[0])
    one[tuple(np.array(sorted(single)).T)] = True
    np.testing.assert_array_equal(_grid(one).bridge_diagonals().occupancy[0].numpy(), one)


def test_bridge_diagonals_makes_procedural_objects_one_watertight_mesh() -> None:
    from simkit.shapes import dataset

    data = dataset(4, resolution=16, seed=0, families=["vase"])
    grid = VoxelGrid(data.voxels > 0.5, torch.zeros(3), 1.0 / 16)
    _, before = grid.connected_components(1)
    assert bool((before > 1).any())  # thin walls that step diagonally fall apart...
    bridged = grid.bridge_diagonals()
    _, after = bridged.connected_components(1)
    assert after.tolist() == [1] * 4  # ...and are one solid once bridged
    for mesh in bridged.to_mesh():
        assert mesh.is_watertight and len(mesh.to_trimesh().split(only_watertight=False)) == 1


@pytest.mark.parametrize("connectivity", [1, 2, 3])
def test_components_match_flood_fill(connectivity: int) -> None:
    rng = np.random.default_rng(connectivity)
    occ = rng.random((3, 7, 7, 7)) < 0.3
    occ[2] = False  # an empty grid in the batch
    g = VoxelGrid(torch.from_numpy(occ), torch.zeros(3), 1.0)
    labels, counts = g.connected_components(connectivity)
    assert labels.dtype == torch.int64 and counts.dtype == torch.int64
    for b in range(3):
        comps = _bfs_components(occ[b], connectivity)
        assert int(counts[b]) == len(comps)
        lab = labels[b].numpy()
        sizes = [int((lab == i).sum()) for i in range(1, len(comps) + 1)]
        assert sizes == sorted((len(c) for c in comps), reverse=True)  # largest first
        for comp in comps:  # each flood-fill component is exactly one label
            vals = {int(lab[c]) for c in comp}
            assert len(vals) == 1 and 0 not in vals
        assert (lab[~occ[b]] == 0).all()
    largest = g.largest_component(connectivity)
    assert not largest.occupancy[2].any()  # an empty grid stays empty
    for b in range(2):
        biggest = max(_bfs_components(occ[b], connectivity), key=len)
        assert int(largest.occupancy[b].sum()) == len(biggest)


def test_python_float_pitch_keeps_float64_precision() -> None:
    occ = torch.ones(1, 2, 2, 2, dtype=torch.bool)
    g = VoxelGrid(occ, torch.zeros(3, dtype=F64), 0.2)
    assert g.pitch.dtype == F64
    assert float(g.pitch[0]) == 0.2
    assert float(g.mass_properties().volume[0]) == pytest.approx(8 * 0.2**3, rel=1e-14)


@pytest.mark.parametrize("origin", [[0.0, 0.0], [0.0, 0.0, float("nan")]])
def test_from_mesh_bad_origin_raises_value_error(origin) -> None:
    box = Mesh.from_trimesh(trimesh.creation.box())
    with pytest.raises(ValueError, match="origin"):
        VoxelGrid.from_mesh(box, 4, origin=origin, pitch=0.1)
