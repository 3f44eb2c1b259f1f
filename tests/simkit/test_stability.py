"""check_stability: simulated verdicts against hand-built physics and support_margin."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import trimesh
from hypothesis import given, settings
from hypothesis import strategies as st

from simkit.geometry import Mesh, VoxelGrid
from simkit.physics import (
    StabilityConfig,
    StabilityResult,
    check_stability,
    collider_parts,
    support_margin,
)
from simkit.shapes import FAMILIES, sample

pytest.importorskip("pybullet")


def _mesh(tm: trimesh.Trimesh) -> Mesh:
    return Mesh.from_trimesh(tm)


def _union(*parts: trimesh.Trimesh) -> Mesh:
    return _mesh(trimesh.boolean.union(list(parts), engine="manifold"))


def _l_bracket(
    arm: float, *, w: float = 0.3, d: float = 0.3, h: float = 0.6, t: float = 0.1
) -> Mesh:
    """A post [0, w] x [0, h] with an arm [w/2, w + arm] x [h - t, h], depth d (metres).

    Its vertices sit far from its centre of mass (the post's corner is the origin).
    """
    post = trimesh.creation.box(bounds=[[0, -d / 2, 0], [w, d / 2, h]])
    beam = trimesh.creation.box(bounds=[[w / 2, -d / 2, h - t], [w + arm, d / 2, h]])
    return _union(post, beam)


def _table(legs: tuple[int, ...]) -> Mesh:
    """A 1.0 x 0.6 m top, 0.05 m thick, on 0.7 m legs at the corners listed (0..3)."""
    top = trimesh.creation.box(bounds=[[-0.5, -0.3, 0.7], [0.5, 0.3, 0.75]])
    corners = [(-0.5, -0.3), (0.42, -0.3), (-0.5, 0.22), (0.42, 0.22)]
    parts = [top]
    for i in legs:
        x, y = corners[i]
        parts.append(trimesh.creation.box(bounds=[[x, y, 0.0], [x + 0.08, y + 0.08, 0.71]]))
    return _union(*parts)


def _yawed(mesh: Mesh, angle: float) -> Mesh:
    rot = torch.tensor(
        trimesh.transformations.rotation_matrix(angle, (0, 0, 1))[:3, :3], dtype=mesh.dtype
    )
    return mesh.transformed(rot)


# ---------------------------------------------------------------- physics verdicts


@pytest.mark.parametrize(
    "extents",
    [(1.0, 1.0, 1.0), (0.2, 0.2, 1.0), (0.1, 0.15, 1.0), (1.0, 0.6, 0.05), (0.3, 0.05, 0.6)],
)
def test_boxes_on_a_face_stand(extents) -> None:
    mesh = _mesh(trimesh.creation.box(extents=extents))
    result = check_stability(mesh)
    assert support_margin(mesh) > 0
    assert result.stable
    assert result.error is None
    # The 1 degree nudge settles back onto the face.
    assert result.tilt_deg < 0.5
    # Early stopping: every trial came to rest well before the 10 s limit.
    assert result.simulated_time_s < 0.5 * result.trials * 10.0


def test_cone_falls_on_its_tip_and_stands_on_its_base() -> None:
    cone = trimesh.creation.cone(radius=0.3, height=1.0, sections=48)
    tip = cone.copy()
    tip.apply_transform(trimesh.transformations.rotation_matrix(math.pi, (1, 0, 0)))
    on_base = check_stability(_mesh(cone))
    on_tip = check_stability(_mesh(tip))
    assert on_base.stable and on_base.tilt_deg < 0.5
    assert not on_tip.stable
    assert on_tip.tilt_deg > 20.0
    # It fell sideways: its centre of mass moved a good part of its height.
    assert on_tip.displacement_m > 0.1


@pytest.mark.parametrize(("arm", "stands"), [(0.3, True), (0.6, True), (0.9, False), (1.1, False)])
def test_l_bracket_verdict_follows_the_support_polygon(arm: float, stands: bool) -> None:
    mesh = _l_bracket(arm)
    # Hand computation (see test_support): post 0.3 x 0.6, arm (0.15 + arm) x 0.1.
    v_post, v_arm = 0.3 * 0.6, (0.15 + arm) * 0.1
    com_x = (v_post * 0.15 + v_arm * (0.15 + (0.15 + arm) / 2)) / (v_post + v_arm)
    assert (com_x < 0.3) == stands
    assert (support_margin(mesh) > 0) == stands
    assert check_stability(mesh).stable == stands


@pytest.mark.parametrize(
    ("legs", "stands"), [((0, 1, 2, 3), True), ((0, 1, 2), True), ((0, 1), False), ((0,), False)]
)
def test_table_falls_once_legs_removed_leave_com_outside(legs, stands) -> None:
    # The legs sit at the corners of a 1.0 x 0.6 top; the centre of mass is near the
    # top's centre (0, 0). Legs 0, 1, 2 keep it inside their triangle; legs 0, 1 (one
    # long side) or leg 0 alone leave it outside.
    mesh = _table(legs)
    assert (support_margin(mesh) > 0.005) == stands
    result = check_stability(mesh)
    assert result.stable == stands
    assert (result.tilt_deg > 20.0) == (not stands)


# ---------------------------------------------------------------- invariances


@pytest.mark.parametrize("arm", [0.5, 1.0])
def test_com_far_from_the_vertex_origin_gets_the_same_verdict(arm: float) -> None:
    mesh = _l_bracket(arm)
    com = mesh.center_of_mass()
    centred = mesh.translated(-com + torch.tensor([0.0, 0.0, float(com[2])], dtype=mesh.dtype))
    far = mesh.translated([250.0, -120.0, 40.0])
    verdicts = {check_stability(m).stable for m in (mesh, centred, far)}
    assert verdicts == {arm < 0.75}


@pytest.mark.parametrize("arm", [0.5, 1.0])
@pytest.mark.parametrize(
    "transform",
    ["translate", "yaw", "scale_0.1", "scale_10", "scale_0.1_true_size", "scale_10_true_size"],
)
def test_verdict_invariant_to_translation_yaw_and_scale(arm: float, transform: str) -> None:
    mesh = _l_bracket(arm)
    config = StabilityConfig()
    if transform == "translate":
        moved = mesh.translated([3.0, -7.0, 2.5])
    elif transform == "yaw":
        moved = _yawed(mesh, 2.2)
    else:
        factor = float(transform.split("_")[1])
        moved = mesh.transformed(torch.eye(3, dtype=mesh.dtype) * factor)
        if transform.endswith("true_size"):
            # Simulate at the object's real size (5 cm ... 15 m), not normalised.
            config = StabilityConfig(reference_size_m=None)
    result = check_stability(moved, config)
    assert result.stable == (arm < 0.75)
    if not result.stable:
        assert result.tilt_deg > config.tilt_threshold_deg


@settings(max_examples=12, deadline=None)
@given(
    extents=st.tuples(st.floats(0.1, 1.0), st.floats(0.1, 1.0), st.floats(0.05, 2.0)),
    shift=st.tuples(st.floats(-50, 50), st.floats(-50, 50), st.floats(-5, 5)),
    yaw=st.floats(0.0, 2 * math.pi),
)
def test_upright_boxes_stand_wherever_and_however_yawed(extents, shift, yaw) -> None:
    # Static tipping angle atan(min side / height) >= 2.9 degrees, well above the nudge.
    mesh = _yawed(_mesh(trimesh.creation.box(extents=extents)), yaw).translated(list(shift))
    result = check_stability(mesh, StabilityConfig(trials=2))
    assert result.stable and result.tilt_deg < 1.0


def test_simulator_agrees_with_support_margin_on_procedural_shapes() -> None:
    import pybullet as p

    objects = [s.mesh for family in FAMILIES for s in sample(family, 6, seed=3)]
    margins = [support_margin(m) for m in objects]
    chosen = [(m, g) for m, g in zip(objects, margins, strict=True) if abs(g) > 0.005][:40]
    assert len(chosen) >= 30
    client = p.connect(p.DIRECT)
    try:
        verdicts = [check_stability(m, client=client).stable for m, _ in chosen]
    finally:
        p.disconnect(client)
    agree = [v == (g > 0) for v, (_, g) in zip(verdicts, chosen, strict=True)]
    rate = sum(agree) / len(agree)
    disagree = [round(g, 4) for ok, (_, g) in zip(agree, chosen, strict=True) if not ok]
    print(f"simulator/support_margin agreement: {sum(agree)}/{len(agree)} = {rate:.3f}; "
          f"margins of disagreements: {disagree}")  # fmt: skip
    assert rate >= 0.95, (rate, disagree)
    # Both verdicts occur, so agreement is not a constant answer.
    assert 0 < sum(verdicts) < len(verdicts)


# ---------------------------------------------------------------- inputs and contract


def test_voxel_grid_and_file_inputs(tmp_path) -> None:
    occ = torch.zeros(1, 16, 16, 16, dtype=torch.bool)
    occ[0, 4:12, 4:12, 0:6] = True  # a squat block: stands
    block = VoxelGrid(occ, origin=torch.zeros(3), pitch=0.05)
    assert check_stability(block).stable
    lean = torch.zeros(1, 16, 16, 16, dtype=torch.bool)
    lean[0, 0:2, 0:2, 0:12] = True  # a thin post
    lean[0, 0:16, 0:2, 10:12] = True  # with a long arm at the top: falls
    assert not check_stability(VoxelGrid(lean, origin=torch.zeros(3), pitch=0.05)).stable

    path = tmp_path / "bracket.obj"
    _l_bracket(1.0).save(path)
    assert not check_stability(path).stable
    assert not check_stability(str(path)).stable


def test_bad_inputs_raise_value_errors(tmp_path) -> None:
    box = trimesh.creation.box(extents=(1, 1, 1))
    open_mesh = Mesh.from_arrays(box.vertices, box.faces[:-1])
    with pytest.raises(ValueError, match="watertight|closed|open"):
        check_stability(open_mesh)
    # Closed but flat: two triangles back to back enclose no volume.
    flat = Mesh.from_arrays([[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 1, 2], [0, 2, 1]])
    with pytest.raises(ValueError, match="volume"):
        check_stability(flat)
    nan_file = tmp_path / "nan.obj"
    nan_file.write_text(
        "v 0 0 0\nv 1 0 0\nv 0 nan 0\nv 0 0 1\nf 1 3 2\nf 1 2 4\nf 1 4 3\nf 2 3 4\n"
    )
    with pytest.raises(ValueError, match="NaN"):
        check_stability(nan_file)
    empty = VoxelGrid(torch.zeros(1, 8, 8, 8, dtype=torch.bool), origin=torch.zeros(3), pitch=0.1)
    with pytest.raises(ValueError, match="empty"):
        check_stability(empty)
    batch = VoxelGrid(torch.ones(2, 4, 4, 4, dtype=torch.bool), origin=torch.zeros(3), pitch=0.1)
    with pytest.raises(ValueError, match="batch of 2"):
        check_stability(batch)
    with pytest.raises(TypeError, match="Mesh, a VoxelGrid"):
        check_stability(box)  # a trimesh, not a simkit Mesh
    with pytest.raises(FileNotFoundError):
        check_stability(tmp_path / "missing.obj")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("sim_time_s", 0.0),
        ("time_step_s", -1.0),
        ("density", float("nan")),
        ("tilt_threshold_deg", 0.0),
        ("nudge_deg", 25.0),
        ("trials", 0),
        ("seed", -1),
        ("collider", "mesh"),
        ("decomposition_resolution", 0),
        ("lateral_friction", -0.1),
    ],
)
def test_config_validation_names_the_bad_value(field: str, value) -> None:
    with pytest.raises(ValueError, match=field):
        StabilityConfig(**{field: value})


def test_same_seed_same_result_and_client_reuse_changes_nothing() -> None:
    import pybullet as p

    mesh = _table((0, 1, 2, 3))
    first = check_stability(mesh, StabilityConfig(seed=7))
    assert check_stability(mesh, StabilityConfig(seed=7)) == first
    client = p.connect(p.DIRECT)
    try:
        check_stability(_l_bracket(1.0), client=client)  # leave state behind
        assert check_stability(mesh, StabilityConfig(seed=7), client=client) == first
    finally:
        p.disconnect(client)
    # A different seed turns the nudge directions: the trial paths differ.
    other = check_stability(mesh, StabilityConfig(seed=8))
    assert other.stable == first.stable
    assert other.final_position != first.final_position


def test_result_fields_and_to_dict() -> None:
    result = check_stability(_l_bracket(1.0), StabilityConfig(trials=2))
    assert isinstance(result, StabilityResult)
    assert result.trials == 1  # the first trial fell: the rest were skipped
    every = check_stability(_l_bracket(1.0), StabilityConfig(trials=3, stop_at_first_fall=False))
    assert every.trials == 3 and not every.stable
    assert every.simulated_time_s > result.simulated_time_s
    q = np.array(result.final_orientation)
    assert np.linalg.norm(q) == pytest.approx(1.0, abs=1e-9)
    # The quaternion's rotation tilts the up-vector by tilt_deg.
    up = trimesh.transformations.quaternion_matrix([q[3], *q[:3]])[:3, 2]
    assert math.degrees(math.acos(up[2])) == pytest.approx(result.tilt_deg, abs=1e-6)
    assert result.final_position[2] > 0
    data = json.loads(json.dumps(result.to_dict()))
    assert data["stable"] is False and data["error"] is None
    assert len(data["final_position"]) == 3 and len(data["final_orientation"]) == 4


def test_error_result_is_explicit_and_json_safe() -> None:
    result = StabilityResult.from_error("ValueError: mesh is not watertight")
    assert not result.stable and result.trials == 0
    assert math.isnan(result.tilt_deg)
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert data["error"] == "ValueError: mesh is not watertight"
    assert data["tilt_deg"] is None and data["final_position"] == [None, None, None]
    with pytest.raises(ValueError, match="message"):
        StabilityResult.from_error("")


def test_assess_files_reads_each_file_once(tmp_path, monkeypatch) -> None:
    from simkit.physics.files import assess_files

    _l_bracket(1.0).save(tmp_path / "bracket.obj")
    _table((0, 1, 2, 3)).save(tmp_path / "table.obj")
    (tmp_path / "broken.obj").write_text("v 0 0 0\nf 1 1 1\n")
    calls = []
    load = Mesh.load

    def counting_load(path, *args, **kwargs):
        calls.append(str(path))
        return load(path, *args, **kwargs)

    monkeypatch.setattr(Mesh, "load", staticmethod(counting_load))
    verdicts = assess_files([tmp_path], StabilityConfig(trials=2), backend="serial")
    by_name = {v.file.rsplit("/", 1)[-1]: v for v in verdicts}
    assert not by_name["bracket.obj"].result.stable
    assert by_name["table.obj"].result.stable and by_name["table.obj"].support_margin_m > 0
    broken = by_name["broken.obj"]
    assert broken.result.error is not None and broken.support_margin_m is None
    # One read per good file; a file that fails to load is retried where it is simulated
    # (so that its result carries the loader's error).
    assert sorted(c.rsplit("/", 1)[-1] for c in calls if "broken" not in c) == [
        "bracket.obj",
        "table.obj",
    ]


def test_rotation_helpers_match_scipy():
    from scipy.spatial.transform import Rotation

    from simkit.physics.stability import _quat_from_matrix, _rotation_matrix

    rng = np.random.default_rng(0)
    for _ in range(50):
        axis, angle = rng.normal(size=3) * rng.uniform(0.1, 5), rng.uniform(-math.pi, math.pi)
        want = Rotation.from_rotvec(axis / np.linalg.norm(axis) * angle)
        np.testing.assert_allclose(_rotation_matrix(axis, angle), want.as_matrix(), atol=1e-12)
        q = np.array(_quat_from_matrix(want.as_matrix()))
        ref = want.as_quat()
        np.testing.assert_allclose(q * np.sign(q @ ref), ref, atol=1e-12)  # q and -q agree


# ---------------------------------------------------------------- convex decomposition


def _inside_any(parts: list[np.ndarray], point: np.ndarray) -> bool:
    from scipy.spatial import Delaunay

    return any(Delaunay(part).find_simplex(point[None])[0] >= 0 for part in parts)


def test_vhacd_collider_keeps_the_notch_that_the_hull_fills() -> None:
    mesh = _l_bracket(0.6)  # post [0, 0.3] x [0, 0.6], arm [0.15, 0.9] x [0.5, 0.6]
    hull = collider_parts(mesh)
    parts = collider_parts(mesh, StabilityConfig(collider="vhacd"))
    notch = np.array([0.6, 0.0, 0.4])  # under the arm, outside the solid, inside the hull
    solid = [np.array([0.1, 0.0, 0.3]), np.array([0.8, 0.0, 0.55])]  # post, arm tip
    assert len(hull) == 1 and _inside_any(hull, notch)
    assert len(parts) >= 2
    assert not _inside_any(parts, notch)
    assert all(_inside_any(parts, q) for q in solid)
    # The parts cover the solid and little else: their volume is near the solid's (V-HACD
    # parts stand about one voxel proud of the surface), the hull's is far above it.
    from scipy.spatial import ConvexHull

    solid_volume = float(mesh.mass_properties(1.0).volume)
    parts_volume = sum(ConvexHull(part).volume for part in parts)
    hull_volume = ConvexHull(hull[0]).volume
    assert abs(parts_volume - solid_volume) < 0.15 * solid_volume
    assert hull_volume > 1.4 * solid_volume


@pytest.mark.parametrize(("arm", "stands"), [(0.6, True), (0.9, False)])
def test_vhacd_collider_gives_the_hull_verdict_on_flat_ground(arm: float, stands: bool) -> None:
    # A plane touches a body only at points of its convex hull, so on flat ground the
    # decomposition must give the same verdict as the hull (and the support polygon).
    # At V-HACD's default resolution: a coarse one (20,000 voxels) rounds the post's
    # bottom edges by a voxel, and the arm-0.6 bracket, 4 cm inside its edge, then tips.
    config = StabilityConfig(collider="vhacd")
    result = check_stability(_l_bracket(arm), config)
    assert result.error is None
    assert result.stable == stands
    assert (result.tilt_deg > 20.0) == (not stands)


def test_vhacd_collider_in_the_process_pool_and_quiet_on_stdout(capfd) -> None:
    from simkit.physics import evaluate

    config = StabilityConfig(collider="vhacd")
    objs = [_table((0, 1, 2, 3)), _table((0,))]
    pooled = evaluate(objs, config, workers=2, backend="process", progress=False)
    serial = [check_stability(o, config) for o in objs]
    assert [r.stable for r in pooled] == [True, False]
    assert pooled == serial
    # V-HACD prints from C++; none of it may reach stdout (simkit stability --json).
    assert capfd.readouterr().out == ""


def test_prepared_body_without_surface_is_refused_for_vhacd() -> None:
    from simkit.physics.stability import prepare_bodies

    (body,) = prepare_bodies([_table((0, 1, 2, 3))], 500.0)
    with pytest.raises(ValueError, match="keep_surface"):
        check_stability(body, StabilityConfig(collider="vhacd"))
