"""The command line, through click's CliRunner and as a real process."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import trimesh
from click.testing import CliRunner

from simkit.cli import main
from simkit.cli.shapes import FAMILY_NAMES


@pytest.fixture()
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture()
def box_obj(tmp_path):
    path = tmp_path / "box.obj"
    box = trimesh.creation.box((0.3, 0.5, 0.7))
    box.apply_translation((1.0, -2.0, 0.35))
    box.export(path)
    return path, box


def test_help_imports_nothing_heavy():
    """`simkit --help` must not import torch or optional modules (DESIGN: CLI contract)."""
    code = (
        "import sys; from simkit.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'open3d', 'pybullet', 'diffusers', 'cvxpylayers', 'ray', 'trimesh') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "HEAVY []" in out, out


def test_python_dash_m(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "simkit", "--version"], capture_output=True, text=True, check=True
    )
    assert "simkit" in out.stdout


def test_family_names_match_library():
    from simkit import shapes

    assert tuple(FAMILY_NAMES) == tuple(shapes.FAMILIES)


def test_inspect_json_matches_trimesh(runner, box_obj):
    path, box = box_obj
    res = runner.invoke(main, ["inspect", str(path), "--json", "--density", "2.0"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    box.density = 2.0
    ref = box.mass_properties
    assert data["watertight"] is True
    assert data["volume"] == pytest.approx(ref["volume"], rel=1e-9)
    assert data["mass"] == pytest.approx(ref["mass"], rel=1e-9)
    np.testing.assert_allclose(data["center_of_mass"], ref["center_mass"], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(data["inertia"], ref["inertia"], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(data["bounds"], box.bounds, atol=1e-12)


def test_inspect_open_mesh_reports_why(runner, tmp_path):
    box = trimesh.creation.box()
    open_box = trimesh.Trimesh(box.vertices, box.faces[:-2], process=False)
    path = tmp_path / "open.ply"
    open_box.export(path)
    res = runner.invoke(main, ["inspect", str(path), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["watertight"] is False and data["volume"] is None
    assert "watertight" in data["error"]
    human = runner.invoke(main, ["inspect", str(path)])
    assert "mass properties unavailable" in human.output


def test_inspect_bad_input(runner, tmp_path):
    missing = runner.invoke(main, ["inspect", str(tmp_path / "nope.obj")])
    assert missing.exit_code != 0 and "not found" in missing.output
    (tmp_path / "mesh.xyz").write_text("1 2 3\n")
    unknown = runner.invoke(main, ["inspect", str(tmp_path / "mesh.xyz")])
    assert unknown.exit_code != 0 and "suffix" in unknown.output
    bad_device = runner.invoke(main, ["inspect", str(tmp_path / "mesh.xyz"), "--device", "tpu"])
    assert bad_device.exit_code != 0 and "device" in bad_device.output


def test_convert_round_trip_and_voxelize(runner, box_obj, tmp_path):
    path, box = box_obj
    out = tmp_path / "box.glb"
    res = runner.invoke(main, ["convert", str(path), str(out), "--json"])
    assert res.exit_code == 0, res.output
    back = trimesh.load(out, force="mesh")
    assert back.volume == pytest.approx(box.volume, rel=1e-6)

    vox = tmp_path / "box_vox.stl"
    res = runner.invoke(main, ["convert", str(path), str(vox), "--voxelize", "24"])
    assert res.exit_code == 0, res.output
    remeshed = trimesh.load(vox, force="mesh")
    assert remeshed.is_watertight
    # Marching cubes on a 24^3 grid: within a voxel layer of the true volume.
    assert remeshed.volume == pytest.approx(box.volume, rel=0.15)

    same = runner.invoke(main, ["convert", str(path), str(path)])
    assert same.exit_code != 0 and "source" in same.output


def test_shapes_writes_meshes_and_png(runner, tmp_path):
    out = tmp_path / "tables"
    res = runner.invoke(
        main, ["shapes", "--family", "table", "--n", "8", "--out", str(out), "--seed", "1"]
    )
    assert res.exit_code == 0, res.output
    files = sorted(out.glob("table_*.obj"))
    assert len(files) == 8
    png = out / "preview.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    manifest = json.loads((out / "shapes.json").read_text())
    assert len(manifest["objects"]) == 8
    for f in files:
        assert trimesh.load(f, force="mesh").is_watertight

    again = tmp_path / "again"
    runner.invoke(
        main,
        [
            "shapes",
            "--family",
            "table",
            "--n",
            "2",
            "--out",
            str(again),
            "--seed",
            "1",
            "--no-preview",
        ],
    )
    assert (again / "table_0.obj").read_bytes() == (out / "table_0.obj").read_bytes()
    assert not (again / "preview.png").exists()


def test_shapes_rejects_unknown_family(runner, tmp_path):
    res = runner.invoke(main, ["shapes", "--family", "spaceship", "--out", str(tmp_path)])
    assert res.exit_code != 0 and "spaceship" in res.output


def test_demo_json(runner, tmp_path):
    out = tmp_path / "demo"
    args = [
        "demo",
        "--out",
        str(out),
        "--n-per-family",
        "1",
        "--family",
        "table",
        "--family",
        "bracket_l",
        "--resolution",
        "16",
        "--json",
    ]
    res = runner.invoke(main, args)
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert [r["family"] for r in data["records"]] == ["table", "bracket_l"]
    for r in data["records"]:
        mesh = trimesh.load(r["mesh_files"][0], force="mesh")
        assert r["volume_m3"] == pytest.approx(mesh.volume, rel=1e-6)
        assert r["stands"] == (r["support_margin_m"] > 0)
        # Voxelizing moves the surface by at most about one voxel: |dV| <= area * pitch.
        pitch = float(mesh.extents.max()) / 16
        assert abs(r["voxel_volume_m3"] - mesh.volume) <= mesh.area * pitch
        assert abs(r["remeshed_volume_m3"] - mesh.volume) <= mesh.area * pitch
    assert (out / "preview.png").exists() and (out / "report.json").exists()


def test_info_json(runner):
    res = runner.invoke(main, ["info", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    import torch

    assert (
        data["packages"]["torch"] == torch.__version__.split("+")[0]
        or data["packages"]["torch"] == torch.__version__
    )
    assert data["cuda_available"] == torch.cuda.is_available()


def test_stability_json_over_a_folder(runner, tmp_path):
    folder = tmp_path / "objs"
    folder.mkdir()
    trimesh.creation.box((0.4, 0.4, 0.2)).export(folder / "flat.obj")
    tipped = trimesh.creation.cone(0.2, 0.5)
    tipped.apply_transform(trimesh.transformations.rotation_matrix(np.pi, [1, 0, 0]))
    tipped.export(folder / "cone_on_tip.stl")
    box = trimesh.creation.box()
    trimesh.Trimesh(box.vertices, box.faces[:-2], process=False).export(folder / "open.ply")
    res = runner.invoke(
        main, ["stability", str(folder), "--json", "--backend", "serial", "--sim-time", "3"]
    )
    assert res.exit_code == 0, res.output
    data = {r["file"].rsplit("/", 1)[-1]: r for r in json.loads(res.output)}
    assert data["flat.obj"]["stable"] is True and data["flat.obj"]["support_margin_m"] > 0
    assert data["cone_on_tip.stl"]["stable"] is False and data["cone_on_tip.stl"]["tilt_deg"] > 20
    assert data["open.ply"]["error"] and "watertight" in data["open.ply"]["error"]
    human = runner.invoke(
        main, ["stability", str(folder), "--backend", "serial", "--sim-time", "3"]
    )
    assert "1/3 stand; 1 could not be simulated" in human.output


def test_stability_bad_paths(runner, tmp_path):
    res = runner.invoke(main, ["stability", str(tmp_path / "missing")])
    assert res.exit_code != 0 and "no such file" in res.output
    res = runner.invoke(main, ["stability", str(tmp_path)])
    assert res.exit_code != 0 and "no mesh files" in res.output


def test_stability_vhacd_collider_keeps_json_stdout_clean(tmp_path):
    # V-HACD prints from C++ to file descriptor 1: only a real process shows whether it
    # reaches stdout (CliRunner swaps sys.stdout, not the descriptor).
    folder = tmp_path / "objs"
    folder.mkdir()
    post = trimesh.creation.box(bounds=[[0, -0.15, 0], [0.3, 0.15, 0.6]])
    arm = trimesh.creation.box(bounds=[[0.15, -0.15, 0.5], [1.2, 0.15, 0.6]])
    trimesh.boolean.union([post, arm], engine="manifold").export(folder / "bracket.obj")
    trimesh.creation.box((0.4, 0.4, 0.2)).export(folder / "flat.obj")
    cmd = [sys.executable, "-m", "simkit", "stability", str(folder), "--json"]
    out = subprocess.run(
        [*cmd, "--collider", "vhacd", "--backend", "serial", "--sim-time", "3"],
        capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip
    data = {r["file"].rsplit("/", 1)[-1]: r for r in json.loads(out.stdout)}
    assert data["flat.obj"]["stable"] is True
    assert data["bracket.obj"]["stable"] is False  # centre of mass beyond the post
