"""Previews render what they are given: panels, colours, and nothing for bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh
from matplotlib.image import imread

from simkit.geometry import Mesh, VoxelGrid
from simkit.viz import plot_meshes, plot_voxels


def _coloured_fraction(
    img: np.ndarray, rgb: tuple[float, float, float], tol: float = 0.25
) -> float:
    """Fraction of pixels whose hue matches ``rgb`` up to shading (a scale factor)."""
    px = img[..., :3].reshape(-1, 3)
    norm = np.linalg.norm(px, axis=1, keepdims=True)
    target = np.asarray(rgb) / np.linalg.norm(rgb)
    lit = norm[:, 0] > 0.1
    cos = (px[lit] / norm[lit]) @ target
    return float((cos > 1 - tol * 0.1).sum()) / len(px)


def test_plot_meshes_draws_each_panel_in_its_colour(tmp_path):
    box = Mesh.from_trimesh(trimesh.creation.box((0.5, 0.5, 1.0)))
    sphere = Mesh.from_trimesh(trimesh.creation.icosphere(2))
    path = tmp_path / "grid.png"
    blue, orange = (0.2, 0.4, 0.9), (0.9, 0.45, 0.1)
    plot_meshes([box, sphere], path, titles=["box", "sphere"], colors=[blue, orange], ncols=2)
    img = imread(path)
    left, right = img[:, : img.shape[1] // 2], img[:, img.shape[1] // 2 :]
    # Each half shows its own object in its own colour, and not the other's.
    assert _coloured_fraction(left, blue) > 0.02 and _coloured_fraction(left, orange) < 1e-3
    assert _coloured_fraction(right, orange) > 0.02 and _coloured_fraction(right, blue) < 1e-3


def test_plot_voxels_writes_png(tmp_path):
    occ = torch.zeros(2, 6, 6, 6, dtype=torch.bool)
    occ[0, 1:4, 1:4, 0:5] = True
    occ[1, 2, 2, 2] = True
    path = tmp_path / "vox.png"
    plot_voxels(VoxelGrid(occ, torch.zeros(3), 0.1), path, titles=["block", "voxel"])
    img = imread(path)
    assert img.ndim == 3 and (img[..., :3] < 0.9).any()


def test_bad_input():
    box = Mesh.from_trimesh(trimesh.creation.box())
    with pytest.raises(ValueError, match="at least one"):
        plot_meshes([])
    with pytest.raises(ValueError, match="titles"):
        plot_meshes([box], titles=["a", "b"])
    with pytest.raises(ValueError, match="colours"):
        plot_meshes([box], colors=[(1, 0, 0), (0, 1, 0)])
