"""Tests for simkit.geometry.mesh: mass properties against trimesh and closed forms,
gradients against finite differences, invariances, topology, file round trips, sampling."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import trimesh
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.spatial.transform import Rotation

from simkit.geometry import MESH_SUFFIXES, MassProperties, Mesh, PointCloud

F64 = torch.float64


def _primitives() -> dict[str, trimesh.Trimesh]:
    return {
        "box": trimesh.creation.box(extents=(1.0, 2.0, 3.0)),
        "icosphere": trimesh.creation.icosphere(subdivisions=2, radius=1.5),
        "cylinder": trimesh.creation.cylinder(radius=0.5, height=2.0, sections=24),
        "capsule": trimesh.creation.capsule(height=1.0, radius=0.4, count=[12, 12]),
        "annulus": trimesh.creation.annulus(r_min=0.3, r_max=0.8, height=0.5, sections=24),
        "torus": trimesh.creation.torus(
            major_radius=1.0, minor_radius=0.3, major_sections=24, minor_sections=12
        ),
    }


def _hull(seed: int, n: int = 40) -> trimesh.Trimesh:
    rng = np.random.default_rng(seed)
    pts = rng.normal(size=(n, 3)) * rng.uniform(0.5, 2.0, size=3)
    return trimesh.convex.convex_hull(pts)


def _rigid(seed: int, offset_scale: float = 3.0) -> np.ndarray:
    """A random proper rigid transform (4, 4)."""
    rng = np.random.default_rng(1000 + seed)
    t = np.eye(4)
    t[:3, :3] = Rotation.random(random_state=rng).as_matrix()
    t[:3, 3] = rng.normal(size=3) * offset_scale
    return t


def _reference(tm: trimesh.Trimesh, density: float) -> dict:
    tm = tm.copy()
    tm.density = density
    return tm.mass_properties


def _assert_matches_trimesh(mp: MassProperties, ref: dict, rtol: float = 1e-6) -> None:
    vol = ref["volume"]
    assert float(mp.volume) == pytest.approx(vol, rel=rtol)
    assert float(mp.mass) == pytest.approx(ref["mass"], rel=rtol)
    # COM: relative to the size of the body (vol^(1/3)) and to its distance from the origin.
    scale = vol ** (1 / 3) + np.abs(ref["center_mass"]).max()
    np.testing.assert_allclose(
        mp.center_of_mass.numpy(), ref["center_mass"], rtol=0, atol=rtol * scale
    )
    inertia_ref = np.asarray(ref["inertia"])
    np.testing.assert_allclose(
        mp.inertia.numpy(), inertia_ref, rtol=0, atol=rtol * np.abs(inertia_ref).max()
    )


def _box(extents=(1.0, 2.0, 3.0)) -> Mesh:
    return Mesh.from_trimesh(trimesh.creation.box(extents=extents))


def _tetra() -> Mesh:
    v = [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]]
    f = [[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]]  # outward
    return Mesh.from_arrays(v, f)


# --------------------------------------------------------------------------------------
# Mass properties against trimesh
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(_primitives()))
def test_mass_properties_match_trimesh_on_primitives(name: str) -> None:
    tm = _primitives()[name]
    assert tm.is_watertight and tm.is_winding_consistent
    _assert_matches_trimesh(Mesh.from_trimesh(tm).mass_properties(2.5), _reference(tm, 2.5))
    # Moved by a rigid transform, both sides move together.
    moved = tm.copy().apply_transform(_rigid(len(name)))
    _assert_matches_trimesh(Mesh.from_trimesh(moved).mass_properties(0.7), _reference(moved, 0.7))


@pytest.mark.parametrize("seed", range(5))
def test_mass_properties_match_trimesh_on_random_convex_hulls(seed: int) -> None:
    tm = _hull(seed)
    _assert_matches_trimesh(Mesh.from_trimesh(tm).mass_properties(1.3), _reference(tm, 1.3))
    # Far from the origin (cancellation) and rotated.
    moved = tm.copy().apply_transform(_rigid(seed, offset_scale=50.0))
    mesh = Mesh.from_trimesh(tm).transformed(torch.from_numpy(_rigid(seed, offset_scale=50.0)))
    _assert_matches_trimesh(mesh.mass_properties(1.3), _reference(moved, 1.3))


def test_box_closed_form() -> None:
    a, b, c, rho = 0.7, 1.9, 3.1, 4.0
    mesh = _box((a, b, c)).translated([10.0, -3.0, 2.0])
    mp = mesh.mass_properties(rho)
    m = rho * a * b * c
    assert float(mp.volume) == pytest.approx(a * b * c, rel=1e-12)
    assert float(mp.mass) == pytest.approx(m, rel=1e-12)
    np.testing.assert_allclose(mp.center_of_mass.numpy(), [10.0, -3.0, 2.0], atol=1e-12)
    expected = np.diag([m * (b**2 + c**2), m * (a**2 + c**2), m * (a**2 + b**2)]) / 12.0
    np.testing.assert_allclose(mp.inertia.numpy(), expected, rtol=1e-12, atol=1e-12)
    # Principal moments ascending and principal axes along the box edges.
    moments, axes = mp.principal_inertia()
    np.testing.assert_allclose(moments.numpy(), np.sort(np.diag(expected)), rtol=1e-12)
    np.testing.assert_allclose(np.abs(axes.numpy()), np.eye(3)[:, ::-1], atol=1e-9)


def test_tetrahedron_closed_form() -> None:
    # Unit right tetrahedron: V = 1/6, COM = (1/4, 1/4, 1/4); about the COM the second
    # moment is C_ii = 1/60 - V/16 = 1/160, C_ij = 1/120 - V/16 = -1/480, so
    # I_ii = 1/80 and I_ij = 1/480.
    mp = _tetra().mass_properties(1.0)
    assert float(mp.volume) == pytest.approx(1 / 6, rel=1e-14)
    np.testing.assert_allclose(mp.center_of_mass.numpy(), [0.25] * 3, atol=1e-15)
    expected = np.full((3, 3), 1 / 480)
    np.fill_diagonal(expected, 1 / 80)
    np.testing.assert_allclose(mp.inertia.numpy(), expected, rtol=1e-12)


@pytest.mark.parametrize("sections", [5, 12, 40])
def test_regular_prism_closed_form(sections: int) -> None:
    # trimesh's cylinder is a regular n-gon prism with circumradius r. Area
    # A = n r^2 sin(a) / 2 with a = 2 pi / n; polar moment J = A r^2 (2 + cos a) / 6
    # (sum over the n isosceles triangles about the apex), isotropic in-plane.
    r, h, rho = 0.8, 1.7, 2.0
    mp = Mesh.from_trimesh(
        trimesh.creation.cylinder(radius=r, height=h, sections=sections)
    ).mass_properties(rho)
    alpha = 2 * math.pi / sections
    area = sections * r**2 * math.sin(alpha) / 2
    m = rho * area * h
    k2 = r**2 * (2 + math.cos(alpha)) / 6  # J / A
    assert float(mp.volume) == pytest.approx(area * h, rel=1e-12)
    expected = np.diag([m * (k2 / 2 + h**2 / 12), m * (k2 / 2 + h**2 / 12), m * k2])
    np.testing.assert_allclose(mp.inertia.numpy(), expected, rtol=1e-10, atol=1e-12 * m)
    np.testing.assert_allclose(mp.center_of_mass.numpy(), 0.0, atol=1e-12)


def test_icosphere_converges_to_solid_sphere() -> None:
    r, rho = 1.3, 3.0
    errors = []
    for sub in (1, 2, 3):
        tm = trimesh.creation.icosphere(subdivisions=sub, radius=r)
        mp = Mesh.from_trimesh(tm).mass_properties(rho)
        _assert_matches_trimesh(mp, _reference(tm, rho))  # exact against trimesh
        moments = torch.diagonal(mp.inertia).numpy()
        sphere = 0.4 * float(mp.mass) * r**2
        # Isotropic (icosahedral symmetry) and close to 2/5 m r^2.
        np.testing.assert_allclose(moments, moments.mean(), rtol=1e-9)
        assert np.abs(mp.inertia.numpy() - np.diag(moments)).max() < 1e-9 * moments.max()
        errors.append(
            (abs(moments.mean() / sphere - 1), abs(float(mp.volume) / (4 / 3 * math.pi * r**3) - 1))
        )
    assert errors[-1][0] < 0.01 and errors[-1][1] < 0.01
    assert errors[0] > errors[1] > errors[2]  # both errors shrink with refinement


def test_density_scales_mass_and_inertia_and_is_validated() -> None:
    mesh = Mesh.from_trimesh(_hull(3))
    a, b = mesh.mass_properties(1.0), mesh.mass_properties(7.5)
    torch.testing.assert_close(b.volume, a.volume)
    torch.testing.assert_close(b.mass, 7.5 * a.volume)
    torch.testing.assert_close(b.center_of_mass, a.center_of_mass)
    torch.testing.assert_close(b.inertia, 7.5 * a.inertia)
    assert b.density == 7.5
    torch.testing.assert_close(mesh.inertia(7.5), b.inertia)
    torch.testing.assert_close(mesh.volume(), a.volume)
    torch.testing.assert_close(mesh.center_of_mass(), a.center_of_mass)
    for bad in (0.0, -1.0, float("nan"), float("inf"), "1"):
        with pytest.raises(ValueError, match="density"):
            mesh.mass_properties(bad)  # type: ignore[arg-type]


def test_mass_properties_to_dict_is_plain_python() -> None:
    mp = _box((1.0, 2.0, 3.0)).mass_properties(2.0)
    d = mp.to_dict()
    assert d["volume"] == pytest.approx(6.0) and d["mass"] == pytest.approx(12.0)
    assert d["density"] == 2.0
    assert isinstance(d["inertia"][0][0], float) and len(d["center_of_mass"]) == 3
    assert d["inertia"][0][0] == pytest.approx(12.0 * (4 + 9) / 12)


# --------------------------------------------------------------------------------------
# Gradients
# --------------------------------------------------------------------------------------


def _perturbed_box() -> tuple[torch.Tensor, torch.Tensor]:
    mesh = _box((1.0, 1.5, 0.8))
    g = torch.Generator().manual_seed(0)
    v = mesh.vertices + 0.05 * torch.randn(mesh.vertices.shape, generator=g, dtype=F64)
    return v, mesh.faces


@pytest.mark.parametrize("which", ["volume", "center_of_mass", "inertia"])
@pytest.mark.parametrize("shape", ["tetra", "box"])
def test_mass_properties_gradcheck(which: str, shape: str) -> None:
    if shape == "tetra":
        t = _tetra()
        shift = torch.tensor([[1, 2, 0], [0, -1, 3], [2, 0, 1], [0, 1, -2]], dtype=F64)
        v0, faces = t.vertices + 0.01 * shift, t.faces
    else:
        v0, faces = _perturbed_box()
    v = v0.clone().requires_grad_(True)

    def f(x: torch.Tensor) -> torch.Tensor:
        return getattr(Mesh(x, faces).mass_properties(1.7), which)

    assert torch.autograd.gradcheck(f, (v,), eps=1e-6, atol=1e-7, rtol=1e-5)


def test_volume_gradient_identities() -> None:
    # V is translation invariant (sum of vertex gradients = 0) and homogeneous of
    # degree 3 (Euler: sum_i v_i . dV/dv_i = 3 V).
    v0, faces = _perturbed_box()
    v = v0.clone().requires_grad_(True)
    vol = Mesh(v, faces).volume()
    (grad,) = torch.autograd.grad(vol, v)
    np.testing.assert_allclose(grad.sum(0).numpy(), 0.0, atol=1e-12)
    assert float((grad * v0).sum()) == pytest.approx(3 * float(vol.detach()), rel=1e-12)
    # For a closed surface, dV/dv_i = (1/6) sum over faces (i, j, k) of v_j x v_k.
    manual = torch.zeros_like(v0)
    for a, b, c in faces.tolist():
        manual[a] += torch.linalg.cross(v0[b], v0[c]) / 6
        manual[b] += torch.linalg.cross(v0[c], v0[a]) / 6
        manual[c] += torch.linalg.cross(v0[a], v0[b]) / 6
    torch.testing.assert_close(grad, manual, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------------------
# Invariances
# --------------------------------------------------------------------------------------

_HULL_MESH = Mesh.from_trimesh(_hull(7))
_HULL_MP = _HULL_MESH.mass_properties(2.0)


@settings(max_examples=25, deadline=None)
@given(
    q=st.lists(st.floats(-1, 1), min_size=4, max_size=4).filter(lambda q: np.linalg.norm(q) > 0.1),
    t=st.lists(st.floats(-20, 20), min_size=3, max_size=3),
)
def test_mass_properties_under_rigid_motion(q: list[float], t: list[float]) -> None:
    r = torch.from_numpy(Rotation.from_quat(q).as_matrix())
    tt = torch.tensor(t, dtype=F64)
    moved = _HULL_MESH.rotated(r).translated(tt)
    mp = moved.mass_properties(2.0)
    assert float(mp.volume) == pytest.approx(float(_HULL_MP.volume), rel=1e-10)
    torch.testing.assert_close(
        mp.center_of_mass, r @ _HULL_MP.center_of_mass + tt, rtol=0, atol=1e-9
    )
    torch.testing.assert_close(mp.inertia, r @ _HULL_MP.inertia @ r.T, rtol=0, atol=1e-9)
    # Rotating about the COM leaves the COM in place.
    about = _HULL_MESH.rotated(r, center=_HULL_MP.center_of_mass).mass_properties(2.0)
    torch.testing.assert_close(about.center_of_mass, _HULL_MP.center_of_mass, rtol=0, atol=1e-9)
    # The homogeneous-matrix path gives the same mesh.
    hom = torch.eye(4, dtype=F64)
    hom[:3, :3], hom[:3, 3] = r, tt
    torch.testing.assert_close(_HULL_MESH.transformed(hom).vertices, moved.vertices)


def test_scaling_laws() -> None:
    mesh = Mesh.from_trimesh(_hull(11))
    mp = mesh.mass_properties()
    s = 1.7
    up = mesh.scaled(s).mass_properties()
    assert float(up.volume) == pytest.approx(s**3 * float(mp.volume), rel=1e-12)
    torch.testing.assert_close(up.center_of_mass, s * mp.center_of_mass)
    torch.testing.assert_close(up.inertia, s**5 * mp.inertia)
    box = _box((1.0, 1.0, 1.0)).scaled([0.5, 2.0, 3.0]).mass_properties()
    assert float(box.volume) == pytest.approx(3.0, rel=1e-12)
    torch.testing.assert_close(
        box.inertia,
        torch.diag(torch.tensor([3.0 * 13 / 12, 3.0 * 9.25 / 12, 3.0 * 4.25 / 12], dtype=F64)),
    )
    for bad in (0.0, -1.0, [1.0, 0.0, 1.0], [1.0, 2.0]):
        with pytest.raises(ValueError):
            mesh.scaled(bad)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_reflection_keeps_positive_volume_and_mirrors_inertia(axis: int) -> None:
    mesh = Mesh.from_trimesh(_hull(5)).translated([1.0, 2.0, 3.0])
    mp = mesh.mass_properties()
    p = torch.eye(3, dtype=F64)
    p[axis, axis] = -1.0
    mirrored = mesh.transformed(p)
    assert mirrored.is_watertight and mirrored.is_winding_consistent
    mq = mirrored.mass_properties()
    assert float(mq.volume) == pytest.approx(float(mp.volume), rel=1e-12)
    torch.testing.assert_close(mq.center_of_mass, p @ mp.center_of_mass)
    torch.testing.assert_close(mq.inertia, p @ mp.inertia @ p.T)
    # Normals still outward: the reflected face normals are the mirrored originals.
    torch.testing.assert_close(mirrored.face_normals(), mesh.face_normals() @ p.T)


def test_transform_validation() -> None:
    mesh = _tetra()
    with pytest.raises(ValueError):
        mesh.transformed(torch.eye(2))
    with pytest.raises(ValueError):
        mesh.transformed(torch.full((3, 3), float("nan")))
    with pytest.raises(ValueError):
        mesh.translated([1.0, 2.0])
    with pytest.raises(ValueError):
        mesh.rotated(torch.diag(torch.tensor([1.0, 1.0, -1.0])))  # improper
    with pytest.raises(ValueError):
        mesh.rotated(2 * torch.eye(3))  # not orthonormal
    with pytest.raises(ValueError):
        mesh.rotated(torch.eye(4))


# --------------------------------------------------------------------------------------
# Topology
# --------------------------------------------------------------------------------------


def _open_box() -> Mesh:
    tm = trimesh.creation.box()
    return Mesh.from_arrays(tm.vertices, tm.faces[1:])


def _flipped_face_box() -> Mesh:
    tm = trimesh.creation.box()
    faces = tm.faces.copy()
    faces[0] = faces[0][::-1]
    return Mesh.from_arrays(tm.vertices, faces)


def test_watertight_and_winding_flags_agree_with_trimesh() -> None:
    cases = {
        "closed": _box(),
        "open": _open_box(),
        "flipped": _flipped_face_box(),
        "torus": Mesh.from_trimesh(_primitives()["torus"]),
        "two_faces_removed": Mesh.from_arrays(
            trimesh.creation.box().vertices, trimesh.creation.box().faces[2:]
        ),
    }
    expected = {
        "closed": (True, True),
        "open": (False, True),
        "flipped": (True, False),
        "torus": (True, True),
        "two_faces_removed": (False, True),
    }
    for name, mesh in cases.items():
        tm = mesh.to_trimesh()
        assert (mesh.is_watertight, mesh.is_winding_consistent) == expected[name], name
        assert mesh.is_watertight == tm.is_watertight, name
        assert mesh.is_winding_consistent == tm.is_winding_consistent, name


def test_open_mesh_mass_properties_raise() -> None:
    with pytest.raises(ValueError, match="watertight"):
        _open_box().mass_properties()
    with pytest.raises(ValueError, match="watertight"):
        _open_box().volume()


def test_inconsistent_winding_raises() -> None:
    with pytest.raises(ValueError, match="wound"):
        _flipped_face_box().mass_properties()


def test_inverted_mesh_raises_negative_volume() -> None:
    mesh = Mesh.from_trimesh(_hull(2))
    inv = mesh.inverted()
    assert inv.is_watertight and inv.is_winding_consistent
    torch.testing.assert_close(inv.face_normals(), -mesh.face_normals())
    with pytest.raises(ValueError, match="inward|negative|<= 0"):
        inv.mass_properties()
    # Inverting twice restores it.
    torch.testing.assert_close(inv.inverted().volume(), mesh.volume())


# --------------------------------------------------------------------------------------
# Construction and validation
# --------------------------------------------------------------------------------------


def test_constructor_validation() -> None:
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], dtype=float)
    f = np.array([[0, 1, 2]])
    Mesh.from_arrays(v, f)  # valid
    bad_nan = v.copy()
    bad_nan[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        Mesh.from_arrays(bad_nan, f)
    bad_inf = v.copy()
    bad_inf[0, 0] = np.inf
    with pytest.raises(ValueError):
        Mesh.from_arrays(bad_inf, f)
    with pytest.raises(ValueError, match="empty"):
        Mesh.from_arrays(np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64))
    with pytest.raises(ValueError, match="empty"):
        Mesh.from_arrays(v, np.zeros((0, 3), dtype=np.int64))
    with pytest.raises(ValueError):
        Mesh.from_arrays(np.zeros(0), np.zeros(0))
    with pytest.raises(ValueError, match=r"\(V, 3\)"):
        Mesh.from_arrays(v[:, :2], f)
    with pytest.raises(ValueError, match=r"\(F, 3\)"):
        Mesh.from_arrays(v, np.array([[0, 1, 2, 0]]))
    with pytest.raises(ValueError, match="face indices"):
        Mesh.from_arrays(v, np.array([[0, 1, 3]]))
    with pytest.raises(ValueError, match="face indices"):
        Mesh.from_arrays(v, np.array([[0, 1, -1]]))
    with pytest.raises(TypeError):
        Mesh(v, f)  # numpy, not tensors
    with pytest.raises(TypeError):
        Mesh(torch.from_numpy(v), torch.from_numpy(f).double())
    with pytest.raises(TypeError):
        Mesh(torch.from_numpy(v).long(), torch.from_numpy(f))
    # int32 faces are accepted and widened.
    m = Mesh(torch.from_numpy(v), torch.from_numpy(f).int())
    assert m.faces.dtype == torch.int64


def test_dtype_conversion() -> None:
    mesh = Mesh.from_trimesh(_hull(4))
    m32 = mesh.to(dtype=torch.float32)
    assert m32.dtype == torch.float32 and m32.faces.dtype == torch.int64
    torch.testing.assert_close(m32.vertices, mesh.vertices.float())
    mp32, mp64 = m32.mass_properties(), mesh.mass_properties()
    assert mp32.volume.dtype == torch.float32 and mp32.inertia.dtype == torch.float32
    assert float(mp32.volume) == pytest.approx(float(mp64.volume), rel=1e-5)
    np.testing.assert_allclose(
        mp32.inertia.numpy(), mp64.inertia.numpy(), atol=1e-5 * float(mp64.inertia.abs().max())
    )
    back = m32.to(dtype=torch.float64)
    assert back.dtype == F64 and mesh.to(device="cpu").device.type == "cpu"
    assert Mesh.from_trimesh(_hull(4), dtype=torch.float32).dtype == torch.float32


def test_basic_views_match_trimesh() -> None:
    tm = _hull(8)
    mesh = Mesh.from_trimesh(tm)
    assert mesh.num_vertices == len(tm.vertices) and mesh.num_faces == len(tm.faces)
    assert float(mesh.area()) == pytest.approx(tm.area, rel=1e-12)
    np.testing.assert_allclose(mesh.face_areas().numpy(), tm.area_faces, rtol=1e-12)
    np.testing.assert_allclose(mesh.face_normals().numpy(), tm.face_normals, atol=1e-12)
    np.testing.assert_allclose(mesh.bounds.numpy(), tm.bounds)
    np.testing.assert_allclose(mesh.extents.numpy(), tm.extents)
    np.testing.assert_allclose(mesh.triangles().numpy(), tm.triangles)
    assert "V=" in repr(mesh)


# --------------------------------------------------------------------------------------
# Conversions and files
# --------------------------------------------------------------------------------------


def test_trimesh_round_trip() -> None:
    mesh = Mesh.from_trimesh(_primitives()["torus"])
    tm = mesh.to_trimesh()
    assert isinstance(tm, trimesh.Trimesh)
    back = Mesh.from_trimesh(tm)
    torch.testing.assert_close(back.vertices, mesh.vertices, rtol=0, atol=0)
    torch.testing.assert_close(back.faces, mesh.faces, rtol=0, atol=0)
    assert tm.volume == pytest.approx(float(mesh.volume()), rel=1e-12)


def test_open3d_round_trip() -> None:
    mesh = Mesh.from_trimesh(_hull(1))
    o3 = mesh.to_open3d()
    np.testing.assert_array_equal(np.asarray(o3.vertices), mesh.vertices.numpy())
    np.testing.assert_array_equal(np.asarray(o3.triangles), mesh.faces.numpy())
    assert o3.is_watertight()
    assert o3.get_volume() == pytest.approx(float(mesh.volume()), rel=1e-9)
    back = Mesh.from_open3d(o3)
    torch.testing.assert_close(back.vertices, mesh.vertices, rtol=0, atol=0)
    torch.testing.assert_close(back.faces, mesh.faces, rtol=0, atol=0)


def _file_mesh() -> Mesh:
    # An asymmetric, off-centre solid so that a lost face or axis would show.
    return Mesh.from_trimesh(_hull(9)).translated([0.3, -1.2, 2.5])


@pytest.mark.parametrize("suffix", MESH_SUFFIXES)
def test_file_round_trip_geometry(tmp_path, suffix: str) -> None:
    mesh = _file_mesh()
    path = mesh.save(tmp_path / f"shape{suffix}")
    assert path.is_file()
    back = Mesh.load(path)
    assert back.dtype == F64
    # The same triangles in the same order and winding (formats storing float32 lose
    # precision beyond ~1e-7).
    assert back.num_faces == mesh.num_faces
    np.testing.assert_allclose(back.triangles().numpy(), mesh.triangles().numpy(), atol=1e-6)
    np.testing.assert_allclose(back.face_normals().numpy(), mesh.face_normals().numpy(), atol=1e-5)
    assert float(back.area()) == pytest.approx(float(mesh.area()), rel=1e-6)


@pytest.mark.parametrize("suffix", MESH_SUFFIXES)
def test_file_round_trip_preserves_volume(tmp_path, suffix: str) -> None:
    mesh = _file_mesh()
    back = Mesh.load(mesh.save(tmp_path / f"shape{suffix}"))
    mp, mq = mesh.mass_properties(), back.mass_properties()
    assert float(mq.volume) == pytest.approx(float(mp.volume), rel=1e-6)
    torch.testing.assert_close(mq.center_of_mass, mp.center_of_mass, rtol=0, atol=1e-6)


def test_load_loads_with_dtype_and_uppercase_suffix(tmp_path) -> None:
    mesh = _file_mesh()
    path = mesh.save(tmp_path / "shape.OBJ")
    back = Mesh.load(path, dtype=torch.float32)
    assert back.dtype == torch.float32 and back.num_faces == mesh.num_faces


def test_file_errors(tmp_path) -> None:
    mesh = _tetra()
    with pytest.raises(ValueError, match="suffix"):
        mesh.save(tmp_path / "shape.xyz")
    with pytest.raises(ValueError, match="suffix"):
        mesh.save(tmp_path / "shape")
    (tmp_path / "shape.xyz").write_text("nothing")
    with pytest.raises(ValueError, match="suffix"):
        Mesh.load(tmp_path / "shape.xyz")
    with pytest.raises(FileNotFoundError):
        Mesh.load(tmp_path / "missing.obj")
    assert not (tmp_path / "missing.obj").exists()


# --------------------------------------------------------------------------------------
# Surface sampling
# --------------------------------------------------------------------------------------


def test_sample_surface_box_points_on_faces_and_area_weighted() -> None:
    ext = np.array([1.0, 2.0, 4.0])
    half = ext / 2
    mesh = _box(tuple(ext))
    n = 20000
    pc = mesh.sample_surface(n, generator=torch.Generator().manual_seed(0))
    assert isinstance(pc, PointCloud)
    p = pc.points.numpy()
    assert p.shape == (n, 3)
    ratio = np.abs(p) / half  # (n, 3), each <= 1, exactly one coordinate at 1
    assert (ratio <= 1 + 1e-12).all()
    on_face = np.abs(ratio - 1) < 1e-12
    assert (on_face.sum(1) >= 1).all()
    axis = ratio.argmax(1)
    # Normals are the outward face normals: +-e_axis, sign of the coordinate.
    expected_n = np.zeros_like(p)
    expected_n[np.arange(n), axis] = np.sign(p[np.arange(n), axis])
    np.testing.assert_allclose(pc.normals.numpy(), expected_n, atol=1e-12)
    # Face-pair areas: x-faces 2*(2*4) = 16, y-faces 2*(1*4) = 8, z-faces 2*(1*2) = 4.
    counts = np.bincount(axis, minlength=3)
    areas = np.array([16.0, 8.0, 4.0])
    chi = stats.chisquare(counts, n * areas / areas.sum())
    assert chi.pvalue > 1e-3, (counts, chi)
    # Within a face the points are uniform (both triangles, correct barycentric law).
    on_x = p[axis == 0]
    assert stats.kstest(on_x[:, 1], stats.uniform(-half[1], ext[1]).cdf).pvalue > 1e-3
    assert stats.kstest(on_x[:, 2], stats.uniform(-half[2], ext[2]).cdf).pvalue > 1e-3


def test_sample_surface_uniform_within_a_triangle() -> None:
    # On one right triangle (0,0,0),(1,0,0),(0,1,0) uniform density gives
    # P(x <= s) = 1 - (1 - s)^2 for the first coordinate.
    mesh = Mesh.from_arrays([[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 1, 2]])
    p = mesh.sample_surface(5000, generator=torch.Generator().manual_seed(3)).points.numpy()
    assert (p[:, 0] >= 0).all() and (p[:, 1] >= 0).all() and (p.sum(1) <= 1 + 1e-12).all()
    np.testing.assert_array_equal(p[:, 2], 0.0)
    assert stats.kstest(p[:, 0], lambda s: 1 - (1 - np.clip(s, 0, 1)) ** 2).pvalue > 1e-3
    assert stats.kstest(p[:, 1], lambda s: 1 - (1 - np.clip(s, 0, 1)) ** 2).pvalue > 1e-3


def test_sample_surface_points_lie_on_convex_hull() -> None:
    tm = _hull(6)
    mesh = Mesh.from_trimesh(tm)
    pc = mesh.sample_surface(3000, generator=torch.Generator().manual_seed(1))
    p = pc.points.numpy()
    # Signed distance to each face plane: all <= 0 inside, max = 0 on the surface.
    signed = np.einsum("pfk,fk->pf", p[:, None, :] - tm.triangles[None, :, 0, :], tm.face_normals)
    np.testing.assert_allclose(signed.max(1), 0.0, atol=1e-12)
    # Each point's normal is the normal of a face it lies on.
    best = signed.argmax(1)
    np.testing.assert_allclose(
        np.abs((pc.normals.numpy() * tm.face_normals[best]).sum(1)), 1.0, atol=1e-9
    )


def test_sample_surface_reproducible_and_validated() -> None:
    mesh = Mesh.from_trimesh(_hull(2))
    a = mesh.sample_surface(500, generator=torch.Generator().manual_seed(42))
    b = mesh.sample_surface(500, generator=torch.Generator().manual_seed(42))
    c = mesh.sample_surface(500, generator=torch.Generator().manual_seed(43))
    torch.testing.assert_close(a.points, b.points, rtol=0, atol=0)
    torch.testing.assert_close(a.normals, b.normals, rtol=0, atol=0)
    assert not torch.allclose(a.points, c.points)
    assert a.points.dtype == F64
    assert mesh.to(dtype=torch.float32).sample_surface(10).points.dtype == torch.float32
    for bad in (0, -3, 2.5):
        with pytest.raises(ValueError):
            mesh.sample_surface(bad)  # type: ignore[arg-type]
    degenerate = Mesh.from_arrays([[0, 0, 0], [1, 0, 0], [2, 0, 0]], [[0, 1, 2]])
    with pytest.raises(ValueError, match="zero area"):
        degenerate.sample_surface(5)


# --------------------------------------------------------------------------------------
# normalized, concatenate
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1.0, 2.5])
def test_normalized(size: float) -> None:
    mesh = Mesh.from_trimesh(_hull(10)).translated([5.0, -7.0, 3.0])
    norm = mesh.normalized(size)
    b = norm.bounds.numpy()
    np.testing.assert_allclose(b[0] + b[1], 0.0, atol=1e-12)
    ext = b[1] - b[0]
    assert ext.max() == pytest.approx(size, rel=1e-12)
    # Shape preserved: extents in the same ratio, volume scaled by (size / longest)^3.
    e0 = mesh.extents.numpy()
    np.testing.assert_allclose(ext / ext.max(), e0 / e0.max(), rtol=1e-12)
    k = size / e0.max()
    assert float(norm.volume()) == pytest.approx(k**3 * float(mesh.volume()), rel=1e-12)
    with pytest.raises(ValueError):
        mesh.normalized(0.0)
    with pytest.raises(ValueError):
        Mesh.from_arrays([[1, 1, 1]] * 3, [[0, 1, 2]]).normalized()


def test_concatenate_matches_trimesh() -> None:
    a = _box((1.0, 2.0, 3.0))
    b = Mesh.from_trimesh(_hull(0)).translated([10.0, 0.0, 0.0])
    both = Mesh.concatenate([a, b])
    assert both.num_vertices == a.num_vertices + b.num_vertices
    assert both.num_faces == a.num_faces + b.num_faces
    ref = trimesh.util.concatenate([a.to_trimesh(), b.to_trimesh()])
    _assert_matches_trimesh(both.mass_properties(1.5), _reference(ref, 1.5))
    ma, mb = a.mass_properties(), b.mass_properties()
    com = (ma.mass * ma.center_of_mass + mb.mass * mb.center_of_mass) / (ma.mass + mb.mass)
    torch.testing.assert_close(both.center_of_mass(), com)
    torch.testing.assert_close(Mesh.concatenate([a]).vertices, a.vertices)
    with pytest.raises(ValueError):
        Mesh.concatenate([])


# ---------------------------------------------------------------------- batched


def test_batch_mass_properties_matches_trimesh_and_single():
    from simkit.geometry import batch_mass_properties

    rng = np.random.default_rng(7)
    tms = [trimesh.creation.icosphere(2), trimesh.creation.torus(0.5, 0.2)]
    tms += [
        trimesh.convex.convex_hull(rng.normal(size=(40, 3)) + rng.normal(size=3) * 5)
        for _ in range(3)
    ]
    meshes = [Mesh.from_trimesh(t) for t in tms]
    batch = batch_mass_properties(meshes, density=3.0)
    assert batch.volume.shape == (5,) and batch.inertia.shape == (5, 3, 3)
    for k, (t, m) in enumerate(zip(tms, meshes, strict=True)):
        t.density = 3.0
        ref = t.mass_properties
        assert float(batch.mass[k]) == pytest.approx(ref["mass"], rel=1e-9)
        np.testing.assert_allclose(
            batch.center_of_mass[k].numpy(), ref["center_mass"], rtol=1e-9, atol=1e-12
        )
        np.testing.assert_allclose(batch.inertia[k].numpy(), ref["inertia"], rtol=1e-9, atol=1e-12)
        single = m.mass_properties(3.0)
        torch.testing.assert_close(single.inertia, batch.inertia[k])


def test_batch_mass_properties_names_the_bad_mesh():
    from simkit.geometry import batch_mass_properties

    good = Mesh.from_trimesh(trimesh.creation.box())
    bad = Mesh(good.vertices, good.faces[:-1])
    with pytest.raises(ValueError, match="mesh 1"):
        batch_mass_properties([good, bad])
    with pytest.raises(ValueError, match=r"\[1\]"):
        batch_mass_properties([good, good.inverted()])
    with pytest.raises(ValueError, match="at least one"):
        batch_mass_properties([])
