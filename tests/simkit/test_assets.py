"""The shipped reference meshes: intact, closed, and reported exactly by `simkit inspect`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import trimesh
from click.testing import CliRunner

from simkit import shapes
from simkit.cli import main

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "meshes"
REFERENCE = json.loads((ASSETS / "reference.json").read_text())
RECORDS = {r["file"]: r for r in REFERENCE["meshes"]}


def test_one_reference_mesh_per_family():
    assert sorted(r["family"] for r in RECORDS.values()) == sorted(shapes.FAMILIES)
    assert {Path(f).suffix for f in RECORDS} >= {".obj", ".glb", ".ply"}


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_inspect_json_matches_trimesh(name):
    path = ASSETS / name
    res = CliRunner().invoke(main, ["inspect", str(path), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    ref = trimesh.load(path, force="mesh", process=False).mass_properties
    assert data["watertight"] and data["winding_consistent"]
    assert data["volume"] == pytest.approx(ref["volume"], rel=1e-6)
    scale = float(np.abs(ref["inertia"]).max())
    np.testing.assert_allclose(data["inertia"], ref["inertia"], rtol=1e-6, atol=1e-6 * scale)
    extent = float(np.ptp(np.asarray(data["bounds"]), axis=0).max())
    np.testing.assert_allclose(
        data["center_of_mass"], ref["center_mass"], rtol=1e-6, atol=1e-6 * extent
    )
    # The file still holds the object recorded when the assets were written.
    assert data["volume"] == pytest.approx(RECORDS[name]["trimesh_volume"], rel=1e-6)


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_asset_is_the_seeded_sample(name):
    """Regenerating from the recorded seed gives the shipped object (same volume)."""
    rec = RECORDS[name]
    mesh = shapes.sample(rec["family"], 1, seed=REFERENCE["seed"])[0].mesh
    assert float(mesh.volume()) == pytest.approx(rec["trimesh_volume"], rel=1e-6)
