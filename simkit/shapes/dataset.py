"""Voxelised training sets of procedural objects, with gravity's direction preserved."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from simkit.geometry import Mesh, VoxelGrid
from simkit.shapes.families import FAMILIES, _check_count, _check_family, _sample_one

__all__ = ["ShapeDataset", "dataset", "normalize_to_unit_cube"]

# Meshes voxelised together in one batched call (bounds the (B, R, R, R + 1) buffers).
_VOXEL_CHUNK = 64
# A progress bar is shown above this many objects.
_PROGRESS_MIN = 64


@dataclass(frozen=True, eq=False)
class ShapeDataset:
    """Voxel occupancies of procedural objects and their family labels.

    Attributes:
        voxels: (n, R, R, R) float32 in {0, 1}; index order (x, y, z), z up, so
            ``voxels[:, :, :, 0]`` is the layer on the ground.
        labels: (n,) int64 family labels: an index into ``families``.
        params: n JSON-serialisable parameter dicts (``build(families[labels[i]],
            params[i])`` rebuilds object i in metres).
        families: the label vocabulary, always :data:`FAMILIES`, so that labels mean
            the same family in every dataset whatever subset it was drawn from.
    """

    voxels: Tensor
    labels: Tensor
    params: list[dict[str, Any]]
    families: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def normalize_to_unit_cube(mesh: Mesh) -> Mesh:
    """Scale and shift a resting object into the unit cube [0, 1]^3, keeping "down".

    The largest bounding-box side becomes 1; the box is centred on x = y = 0.5 and its
    lowest point lies on z = 0, so the object stands on the cube's floor.

    Args:
        mesh: vertices (V, 3) float, metres, z up.

    Returns:
        The normalised mesh (dimensionless unit-cube coordinates).
    """
    lo, hi = mesh.bounds
    side = float((hi - lo).max())
    if not side > 0:
        raise ValueError("cannot normalise a mesh whose bounding box has zero size")
    shift = mesh.vertices.new_tensor([0.5, 0.5, 0.0])
    anchor = torch.stack([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]])
    return Mesh((mesh.vertices - anchor) / side + shift, mesh.faces)


def dataset(
    n: int,
    resolution: int = 16,
    seed: int = 0,
    families: Sequence[str] | None = None,
) -> ShapeDataset:
    """Draw a balanced, voxelised dataset of procedural objects.

    Object i belongs to ``families[i % k]`` (k families, cycled) and is that family's
    sample ``i // k`` under ``seed`` (see :func:`sample`). Each mesh is normalised into
    the unit cube with :func:`normalize_to_unit_cube` and voxelised as a solid (a voxel is
    occupied when its centre is inside) with :meth:`VoxelGrid.from_mesh`. A tqdm progress
    bar shows for n > 64 when stderr is a terminal.

    Args:
        n: number of objects, >= 0.
        resolution: R, voxels per side, >= 1.
        seed: non-negative integer seed; the same seed gives the same dataset.
        families: names from :data:`FAMILIES` to draw from, in cycling order; default all.

    Returns:
        A :class:`ShapeDataset` with voxels (n, R, R, R) float32 and labels (n,) int64.

    Raises:
        ValueError: negative ``n`` or ``seed``, bad ``resolution``, unknown, repeated or
            no families.
    """
    n = _check_count("n", n)
    seed = _check_count("seed", seed)
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
        raise ValueError(f"resolution must be a positive int, got {resolution!r}")
    chosen = FAMILIES if families is None else tuple(families)
    if isinstance(families, str) or not chosen:
        raise ValueError(f"families must be a non-empty sequence of names, got {families!r}")
    for family in chosen:
        _check_family(family)
    if len(set(chosen)) != len(chosen):
        raise ValueError(f"families must not repeat, got {list(chosen)}")

    k = len(chosen)
    samples = [
        _sample_one(chosen[i % k], i // k, seed)
        for i in tqdm(range(n), desc="shapes", disable=None if n > _PROGRESS_MIN else True)
    ]
    voxels = torch.zeros(n, resolution, resolution, resolution, dtype=torch.float32)
    for start in range(0, n, _VOXEL_CHUNK):
        chunk = [normalize_to_unit_cube(s.mesh) for s in samples[start : start + _VOXEL_CHUNK]]
        grid = VoxelGrid.from_mesh(
            chunk, resolution, origin=(0.0, 0.0, 0.0), pitch=1.0 / resolution
        )
        voxels[start : start + len(chunk)] = grid.occupancy.float()
    return ShapeDataset(
        voxels=voxels,
        labels=torch.tensor([s.label for s in samples], dtype=torch.int64),
        params=[s.params for s in samples],
        families=FAMILIES,
    )
