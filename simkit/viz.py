"""Headless previews (matplotlib, Agg): a grid of meshes, a voxel grid.

Figures are built with :class:`matplotlib.figure.Figure` directly, never through
pyplot, so nothing touches global state or needs a display.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from simkit.io import atomic_write

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from simkit.geometry import Mesh, VoxelGrid

__all__ = ["plot_meshes", "plot_voxels", "save_figure"]

_LIGHT = np.array([0.4, -0.5, 0.77])
_BASE_RGB = np.array([0.36, 0.55, 0.80])
_ELEV, _AZIM = 20.0, -60.0  # degrees, matplotlib's view_init convention


def _towards_viewer() -> np.ndarray:
    """Unit vector from the scene towards the camera for (_ELEV, _AZIM)."""
    e, a = np.radians(_ELEV), np.radians(_AZIM)
    return np.array([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)])


def save_figure(fig: Figure, path: str | os.PathLike[str], *, dpi: int = 110) -> Path:
    """Render ``fig`` to PNG and write it to ``path`` atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    with atomic_write(path, "wb") as fh:
        fh.write(buf.getvalue())
    return Path(path)


def _shade(normals: np.ndarray, rgb: np.ndarray = _BASE_RGB) -> np.ndarray:
    light = _LIGHT / np.linalg.norm(_LIGHT)
    lam = 0.35 + 0.65 * np.clip(normals @ light, 0.0, 1.0)
    return np.concatenate([lam[:, None] * rgb, np.ones((len(lam), 1))], axis=1)


def _draw_mesh(ax, mesh: Mesh, rgb: np.ndarray = _BASE_RGB) -> None:  # noqa: ANN001 - a matplotlib 3D Axes
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    tri = mesh.triangles().detach().cpu().double().numpy()
    normals = mesh.face_normals().detach().cpu().double().numpy()
    # matplotlib sorts polygons by depth only, so hidden faces can paint over visible
    # ones; culling the faces that point away from the camera removes most artefacts.
    front = normals @ _towards_viewer() > 0
    colors = _shade(normals[front], rgb)
    # Edges in the face colour hide the anti-aliasing seams between triangles.
    ax.add_collection3d(
        Poly3DCollection(tri[front], facecolors=colors, edgecolors=colors, linewidths=0.3)
    )
    lo, hi = tri.reshape(-1, 3).min(0), tri.reshape(-1, 3).max(0)
    centre, half = 0.5 * (lo + hi), 0.5 * float((hi - lo).max()) or 1.0
    ax.set_xlim(centre[0] - half, centre[0] + half)
    ax.set_ylim(centre[1] - half, centre[1] + half)
    ax.set_zlim(lo[2], lo[2] + 2 * half)


def _panels(
    n: int, titles: Sequence[str] | None, what: str, ncols: int, panel_size: float
) -> tuple[Figure, list]:
    """A figure with ``n`` 3D panels (equal aspect, shared view, no axes), captioned."""
    from matplotlib.figure import Figure

    if n == 0:
        raise ValueError(f"need at least one {what} to plot")
    if titles is not None and len(titles) != n:
        raise ValueError(f"got {len(titles)} titles for {n} {what}s")
    ncols = max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(panel_size * ncols, panel_size * nrows))
    axes = []
    for i in range(n):
        ax = fig.add_subplot(nrows, ncols, i + 1, projection="3d")
        ax.set_box_aspect((1, 1, 1))
        ax.view_init(elev=_ELEV, azim=_AZIM)
        ax.set_axis_off()
        if titles is not None:
            ax.set_title(titles[i], fontsize=8)
        axes.append(ax)
    return fig, axes


def plot_meshes(
    meshes: Sequence[Mesh],
    path: str | os.PathLike[str] | None = None,
    *,
    titles: Sequence[str] | None = None,
    colors: Sequence[tuple[float, float, float]] | None = None,
    ncols: int = 4,
    panel_size: float = 2.6,
) -> Figure:
    """Shaded renders of meshes in a grid of panels (z up, ground at the bottom).

    Args:
        meshes: the meshes, one panel each.
        path: where to write the PNG (atomically); None to only return the figure.
        titles: one caption per mesh.
        colors: one RGB colour (floats in [0, 1]) per mesh; default a uniform blue.
        ncols: panels per row.
        panel_size: inches per panel.
    """
    if colors is not None and len(colors) != len(meshes):
        raise ValueError(f"got {len(colors)} colours for {len(meshes)} meshes")
    fig, axes = _panels(len(meshes), titles, "mesh", ncols, panel_size)
    for i, (ax, mesh) in enumerate(zip(axes, meshes, strict=True)):
        _draw_mesh(ax, mesh, _BASE_RGB if colors is None else np.asarray(colors[i], dtype=float))
    if path is not None:
        save_figure(fig, path)
    return fig


def plot_voxels(
    grid: VoxelGrid,
    path: str | os.PathLike[str] | None = None,
    *,
    titles: Sequence[str] | None = None,
    ncols: int = 4,
    panel_size: float = 2.6,
) -> Figure:
    """Cube renders of every grid in a :class:`~simkit.geometry.VoxelGrid` batch."""
    occ = grid.binary().cpu().numpy()
    fig, axes = _panels(len(occ), titles, "grid", ncols, panel_size)
    for ax, vox in zip(axes, occ, strict=True):
        ax.voxels(vox, facecolors=(*_BASE_RGB, 1.0), edgecolors=(0, 0, 0, 0.15), linewidth=0.2)
    if path is not None:
        save_figure(fig, path)
    return fig
