"""File-level mesh operations behind ``simkit inspect`` and ``simkit convert``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from simkit.geometry.mesh import Mesh
from simkit.geometry.voxels import VoxelGrid

__all__ = ["ConvertResult", "MeshReport", "convert_mesh", "inspect_mesh"]


@dataclass(frozen=True)
class MeshReport:
    """What ``simkit inspect`` reports about a mesh file.

    ``volume``, ``mass``, ``center_of_mass`` and ``inertia`` are None when the mesh is
    not closed; ``error`` then says why.
    """

    path: str
    num_vertices: int
    num_faces: int
    watertight: bool
    winding_consistent: bool
    bounds: list[list[float]]
    area: float
    density: float
    volume: float | None
    mass: float | None
    center_of_mass: list[float] | None
    inertia: list[list[float]] | None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def inspect_mesh(
    path: str | os.PathLike[str], *, density: float = 1.0, device: Any = None
) -> MeshReport:
    """Load ``path`` and compute its size, topology and mass properties (float64)."""
    mesh = Mesh.load(path, device=device)
    props: dict[str, Any] = {
        "volume": None,
        "mass": None,
        "center_of_mass": None,
        "inertia": None,
        "error": None,
    }
    try:
        mp = mesh.mass_properties(density)
        d = mp.to_dict()
        props.update({k: d[k] for k in ("volume", "mass", "center_of_mass", "inertia")})
    except ValueError as exc:
        if "density" in str(exc):
            raise
        props["error"] = str(exc)
    return MeshReport(
        path=str(path),
        num_vertices=mesh.num_vertices,
        num_faces=mesh.num_faces,
        watertight=mesh.is_watertight,
        winding_consistent=mesh.is_winding_consistent,
        bounds=mesh.bounds.cpu().tolist(),
        area=float(mesh.area()),
        density=float(density),
        **props,
    )


@dataclass(frozen=True)
class ConvertResult:
    """Output of :func:`convert_mesh`."""

    source: str
    destination: str
    num_vertices: int
    num_faces: int
    voxelized: int | None


def convert_mesh(
    source: str | os.PathLike[str],
    destination: str | os.PathLike[str],
    *,
    voxelize: int | None = None,
    device: Any = None,
) -> ConvertResult:
    """Convert a mesh file to another format, optionally remeshing it through voxels.

    Args:
        source: input mesh file (.obj, .ply, .stl, .off, .glb).
        destination: output file; its suffix picks the format. Written atomically.
        voxelize: if given, the solid is voxelized at this resolution and re-surfaced
            by marching cubes, which makes any closed input watertight and manifold.
    """
    if Path(destination).resolve() == Path(source).resolve():
        raise ValueError(
            f"destination {str(destination)!r} is the source file; choose another path"
        )
    if voxelize is not None and (not isinstance(voxelize, int) or voxelize < 2):
        raise ValueError(f"voxelize must be an int resolution >= 2, got {voxelize!r}")
    mesh = Mesh.load(source, device=device)
    if voxelize is not None:
        grid = VoxelGrid.from_mesh(mesh, voxelize)
        if not bool(grid.binary().any()):
            raise ValueError(
                f"voxelizing {str(source)!r} at resolution {voxelize} left no voxel; use a higher resolution"
            )
        mesh = grid.to_mesh()[0]
    mesh.to(dtype=torch.float64).save(destination)
    return ConvertResult(str(source), str(destination), mesh.num_vertices, mesh.num_faces, voxelize)
