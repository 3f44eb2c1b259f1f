"""Triangle meshes as torch tensors, with exact, differentiable mass properties.

A :class:`Mesh` is a frozen pair of tensors on one device. Mass properties come from
the divergence theorem over signed tetrahedra (one per face, apex at a reference
point), so they are exact for closed, consistently wound meshes and differentiable in
the vertices. File formats and conversions go through trimesh and open3d at the edges.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from simkit.io import atomic_write

if TYPE_CHECKING:  # pragma: no cover
    import open3d
    import trimesh

    from simkit.geometry.points import PointCloud

__all__ = ["MESH_SUFFIXES", "MassProperties", "Mesh", "batch_mass_properties"]

#: File suffixes :meth:`Mesh.load` and :meth:`Mesh.save` understand (through trimesh).
MESH_SUFFIXES: tuple[str, ...] = (".obj", ".ply", ".stl", ".off", ".glb")

# Second moment of the canonical tetrahedron (0, e1, e2, e3): int x x^T dV = (I + 11^T) / 120.
_TET_SECOND_MOMENT_DENOM = 120.0
# The six distinct entries (i, j), i <= j, of a symmetric 3x3 matrix.
_SYM_I, _SYM_J = (0, 0, 0, 1, 1, 2), (0, 1, 2, 1, 2, 2)


def _check_density(density: object) -> None:
    """Raise ValueError unless ``density`` is a positive finite real number (not a bool)."""
    if isinstance(density, bool) or not isinstance(density, (int, float, np.integer, np.floating)):
        raise ValueError(f"density must be a positive finite number, got {density!r}")
    if not (np.isfinite(density) and density > 0):
        raise ValueError(f"density must be a positive finite number, got {density!r}")


@dataclass(frozen=True, eq=False)
class MassProperties:
    """Rigid-body properties of a solid of uniform density.

    Attributes:
        volume: () float, m^3.
        mass: () float, kg (``density * volume``).
        center_of_mass: (3,) float, m.
        inertia: (3, 3) float, kg m^2, about the centre of mass, in the mesh frame.
        density: kg/m^3.
    """

    volume: Tensor
    mass: Tensor
    center_of_mass: Tensor
    inertia: Tensor
    density: float

    def principal_inertia(self) -> tuple[Tensor, Tensor]:
        """Principal moments (3,) ascending and axes (3, 3) as columns."""
        moments, axes = torch.linalg.eigh(self.inertia)
        return moments, axes

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python view for JSON output."""
        return {
            "volume": float(self.volume),
            "mass": float(self.mass),
            "density": self.density,
            "center_of_mass": [float(v) for v in self.center_of_mass],
            "inertia": [[float(v) for v in row] for row in self.inertia],
        }


@dataclass(frozen=True, eq=False)
class Mesh:
    """A triangle mesh.

    Attributes:
        vertices: (V, 3) floating tensor, metres.
        faces: (F, 3) int64 tensor of vertex indices, counter-clockwise seen from
            outside (outward normals by the right-hand rule).

    Both tensors live on the same device. The constructor validates shapes, dtypes,
    finiteness and index range, and raises :class:`ValueError`/:class:`TypeError`
    naming the problem. Meshes are immutable values compared by identity (``==`` on
    tensors has no single truth value); derived topology is cached per instance.
    """

    vertices: Tensor
    faces: Tensor

    def __post_init__(self) -> None:
        v, f = self.vertices, self.faces
        if not isinstance(v, Tensor) or not isinstance(f, Tensor):
            raise TypeError(
                "Mesh(vertices, faces) takes torch tensors, got "
                f"{type(v).__name__} and {type(f).__name__}; use Mesh.from_arrays for numpy"
            )
        if v.ndim != 2 or v.shape[1] != 3:
            raise ValueError(f"vertices must have shape (V, 3), got {tuple(v.shape)}")
        if f.ndim != 2 or f.shape[1] != 3:
            raise ValueError(f"faces must have shape (F, 3), got {tuple(f.shape)}")
        if not v.is_floating_point():
            raise TypeError(f"vertices must be a floating tensor, got {v.dtype}")
        if f.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"faces must be an integer tensor (int64), got {f.dtype}")
        if v.device != f.device:
            raise ValueError(f"vertices on {v.device} but faces on {f.device}")
        if v.shape[0] == 0 or f.shape[0] == 0:
            raise ValueError(
                f"empty mesh: {v.shape[0]} vertices and {f.shape[0]} faces; a Mesh needs at least one face"
            )
        if not bool(torch.isfinite(v).all()):
            bad = int((~torch.isfinite(v)).any(dim=1).sum())
            raise ValueError(f"vertices contain NaN or infinite values ({bad} bad vertices)")
        if f.dtype != torch.int64:
            object.__setattr__(self, "faces", f.long())
        lo, hi = int(self.faces.min()), int(self.faces.max())
        if lo < 0 or hi >= v.shape[0]:
            raise ValueError(
                f"face indices must lie in [0, {v.shape[0] - 1}], found range [{lo}, {hi}]"
            )

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_arrays(
        cls, vertices: Any, faces: Any, *, dtype: torch.dtype = torch.float64, device: Any = None
    ) -> Mesh:
        """Build from array-likes (numpy, lists) of shapes (V, 3) and (F, 3)."""
        v = torch.as_tensor(np.ascontiguousarray(vertices), dtype=dtype, device=device)
        f_arr = np.asarray(faces)
        if f_arr.size and not np.issubdtype(f_arr.dtype, np.integer):
            if not (np.all(np.isfinite(f_arr)) and np.all(f_arr == np.round(f_arr))):
                raise ValueError("faces must hold integer vertex indices; got non-integer values")
        f = torch.as_tensor(np.ascontiguousarray(f_arr, dtype=np.int64), device=device)
        return cls(v, f)

    @classmethod
    def from_trimesh(
        cls, mesh: trimesh.Trimesh, *, dtype: torch.dtype = torch.float64, device: Any = None
    ) -> Mesh:
        """Wrap a :class:`trimesh.Trimesh` (vertices and faces are copied as they are)."""
        return cls.from_arrays(mesh.vertices, mesh.faces, dtype=dtype, device=device)

    def to_trimesh(self) -> trimesh.Trimesh:
        """A :class:`trimesh.Trimesh` with the same vertices and faces (no processing)."""
        import trimesh

        return trimesh.Trimesh(
            vertices=self.vertices.detach().cpu().double().numpy(),
            faces=self.faces.cpu().numpy(),
            process=False,
        )

    @classmethod
    def from_open3d(
        cls,
        mesh: open3d.geometry.TriangleMesh,
        *,
        dtype: torch.dtype = torch.float64,
        device: Any = None,
    ) -> Mesh:
        """Wrap an :class:`open3d.geometry.TriangleMesh`."""
        return cls.from_arrays(
            np.asarray(mesh.vertices), np.asarray(mesh.triangles), dtype=dtype, device=device
        )

    def to_open3d(self) -> open3d.geometry.TriangleMesh:
        """An :class:`open3d.geometry.TriangleMesh` with the same vertices and faces."""
        import open3d as o3d

        return o3d.geometry.TriangleMesh(
            o3d.utility.Vector3dVector(self.vertices.detach().cpu().double().numpy()),
            o3d.utility.Vector3iVector(self.faces.cpu().numpy().astype(np.int32)),
        )

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, dtype: torch.dtype = torch.float64, device: Any = None
    ) -> Mesh:
        """Read a mesh file (.obj, .ply, .stl, .off, .glb) through trimesh.

        Multi-part files (a .glb scene, an .obj with groups) are merged into one mesh.
        Vertices are kept as stored: nothing is merged or reordered.

        Raises:
            FileNotFoundError: ``path`` does not exist.
            ValueError: unknown suffix, or the file holds no triangles.
        """
        import trimesh

        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in MESH_SUFFIXES:
            raise ValueError(
                f"unknown mesh file suffix {path.suffix!r} in {str(path)!r}; expected one of {MESH_SUFFIXES}"
            )
        if not path.is_file():
            raise FileNotFoundError(f"mesh file not found: {str(path)!r}")
        loaded = trimesh.load(path, process=False, force="mesh")
        if not isinstance(loaded, trimesh.Trimesh) or len(loaded.faces) == 0:
            raise ValueError(f"{str(path)!r} contains no triangles")
        if suffix == ".stl":
            # STL stores three separate corners per triangle; join the ones that coincide
            # so a closed surface is watertight again.
            loaded.merge_vertices(merge_tex=True, merge_norm=True)
        return cls.from_trimesh(loaded, dtype=dtype, device=device)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the mesh to ``path`` atomically; the suffix chooses the format."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in MESH_SUFFIXES:
            raise ValueError(
                f"unknown mesh file suffix {path.suffix!r} in {str(path)!r}; expected one of {MESH_SUFFIXES}"
            )
        data = self.to_trimesh().export(file_type=suffix[1:])
        with atomic_write(path, "wb") as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
        return path

    # ------------------------------------------------------------------ basic views

    @property
    def device(self) -> torch.device:
        return self.vertices.device

    @property
    def dtype(self) -> torch.dtype:
        return self.vertices.dtype

    @property
    def num_vertices(self) -> int:
        return int(self.vertices.shape[0])

    @property
    def num_faces(self) -> int:
        return int(self.faces.shape[0])

    def to(self, device: Any = None, dtype: torch.dtype | None = None) -> Mesh:
        """Move to ``device`` and/or cast the vertices to floating ``dtype``."""
        return Mesh(self.vertices.to(device=device, dtype=dtype), self.faces.to(device=device))

    def triangles(self) -> Tensor:
        """(F, 3, 3) vertex positions of each face."""
        return self.vertices[self.faces]

    def face_normals(self) -> Tensor:
        """(F, 3) unit outward normals (zero for degenerate faces)."""
        tri = self.triangles()
        n = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1)
        return n / n.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(n.dtype).tiny)

    def face_areas(self) -> Tensor:
        """(F,) triangle areas, m^2."""
        tri = self.triangles()
        return 0.5 * torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1).norm(
            dim=-1
        )

    def area(self) -> Tensor:
        """Total surface area, m^2."""
        return self.face_areas().sum()

    @property
    def bounds(self) -> Tensor:
        """(2, 3) axis-aligned bounding box: row 0 the minimum corner, row 1 the maximum."""
        return torch.stack([self.vertices.min(dim=0).values, self.vertices.max(dim=0).values])

    @property
    def extents(self) -> Tensor:
        """(3,) side lengths of the bounding box."""
        b = self.bounds
        return b[1] - b[0]

    # ------------------------------------------------------------------ topology

    @functools.cached_property
    def _edge_defects(self) -> tuple[int, int]:
        """(undirected edges not shared by exactly two faces, directed edges that repeat).

        Computed once per mesh (meshes are immutable).
        """
        open_edges, repeated = _edge_defects([self])
        return int(open_edges[0]), int(repeated[0])

    @property
    def is_watertight(self) -> bool:
        """Every edge is shared by exactly two faces (trimesh's definition)."""
        return self._edge_defects[0] == 0

    @property
    def is_winding_consistent(self) -> bool:
        """No directed edge occurs twice: neighbouring faces agree on orientation."""
        return self._edge_defects[1] == 0

    def _require_closed(self, what: str) -> None:
        _raise_if_open(what, *self._edge_defects)

    # ------------------------------------------------------------------ mass properties

    def mass_properties(self, density: float = 1.0) -> MassProperties:
        """Volume, mass, centre of mass and inertia tensor of the enclosed solid.

        Computed in float64 (returned in the vertices' dtype), differentiable in the
        vertices. Matches :attr:`trimesh.Trimesh.mass_properties` on watertight meshes.
        For many meshes at once, :func:`batch_mass_properties` is faster.

        Args:
            density: kg/m^3, > 0.

        Raises:
            ValueError: the mesh is not watertight or not consistently wound, the
                faces point inward (negative volume), or density is not positive.
        """
        mp = batch_mass_properties([self], density)
        return MassProperties(
            mp.volume[0], mp.mass[0], mp.center_of_mass[0], mp.inertia[0], mp.density
        )

    def volume(self) -> Tensor:
        """Enclosed volume, m^3 (see :meth:`mass_properties` for requirements)."""
        return self.mass_properties().volume

    def center_of_mass(self) -> Tensor:
        """(3,) centre of mass of the solid at uniform density, m."""
        return self.mass_properties().center_of_mass

    def inertia(self, density: float = 1.0) -> Tensor:
        """(3, 3) inertia tensor about the centre of mass, kg m^2."""
        return self.mass_properties(density).inertia

    # ------------------------------------------------------------------ sampling

    def sample_surface(self, n: int, generator: torch.Generator | None = None) -> PointCloud:
        """Sample ``n`` points uniformly by area on the surface.

        Args:
            n: number of points, >= 1.
            generator: torch generator on the mesh's device, for reproducibility.

        Returns:
            A :class:`~simkit.geometry.points.PointCloud` with points (n, 3) and the
            normals (n, 3) of the faces they lie on.
        """
        from simkit.geometry.points import PointCloud

        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive int, got {n!r}")
        areas = self.face_areas().detach()
        total = float(areas.sum())
        if not total > 0:
            raise ValueError("cannot sample the surface of a mesh with zero area")
        face = torch.multinomial(areas / total, n, replacement=True, generator=generator)
        u = torch.rand(n, 2, generator=generator, device=self.device, dtype=self.dtype)
        # Uniform barycentric coordinates by the square-root map (Osada et al. 2002).
        su = u[:, 0].sqrt()
        w = torch.stack([1 - su, su * (1 - u[:, 1]), su * u[:, 1]], dim=1)
        tri = self.triangles()[face]
        points = (w[:, :, None] * tri).sum(dim=1)
        return PointCloud(points, normals=self.face_normals()[face])

    # ------------------------------------------------------------------ transforms

    def transformed(self, matrix: Tensor) -> Mesh:
        """Apply a (3, 3) linear map or a (4, 4) homogeneous transform.

        A reflection (negative determinant) also reverses the faces so that normals
        keep pointing outward.
        """
        m = torch.as_tensor(matrix, dtype=self.dtype, device=self.device)
        if m.shape == (4, 4):
            lin, t = m[:3, :3], m[:3, 3]
        elif m.shape == (3, 3):
            lin, t = m, m.new_zeros(3)
        else:
            raise ValueError(f"transform must be (3, 3) or (4, 4), got {tuple(m.shape)}")
        if not bool(torch.isfinite(m).all()):
            raise ValueError("transform contains NaN or infinite values")
        faces = self.faces.flip(1) if float(torch.linalg.det(lin)) < 0 else self.faces
        return Mesh(self.vertices @ lin.T + t, faces)

    def translated(self, offset: Tensor | Any) -> Mesh:
        """Shift by ``offset`` (3,), metres."""
        t = torch.as_tensor(offset, dtype=self.dtype, device=self.device)
        if t.shape != (3,):
            raise ValueError(f"offset must have shape (3,), got {tuple(t.shape)}")
        return Mesh(self.vertices + t, self.faces)

    def rotated(self, rotation: Tensor, center: Tensor | Any | None = None) -> Mesh:
        """Rotate by a (3, 3) rotation matrix about ``center`` (default: the origin)."""
        r = torch.as_tensor(rotation, dtype=self.dtype, device=self.device)
        if r.shape != (3, 3):
            raise ValueError(f"rotation must be (3, 3), got {tuple(r.shape)}")
        eye = torch.eye(3, dtype=r.dtype, device=r.device)
        if not torch.allclose(r @ r.T, eye, atol=1e-5) or float(torch.linalg.det(r)) <= 0:
            raise ValueError("rotation must be a proper rotation matrix (orthonormal, det = +1)")
        c = (
            self.vertices.new_zeros(3)
            if center is None
            else torch.as_tensor(center, dtype=self.dtype, device=self.device)
        )
        return Mesh((self.vertices - c) @ r.T + c, self.faces)

    def scaled(self, factor: float | Tensor | Any) -> Mesh:
        """Scale about the origin by a scalar or per-axis (3,) factor (all > 0)."""
        s = torch.as_tensor(factor, dtype=self.dtype, device=self.device)
        if s.shape not in ((), (3,)) or not bool((s > 0).all()):
            raise ValueError(f"scale factor must be a positive scalar or (3,), got {factor!r}")
        return Mesh(self.vertices * s, self.faces)

    def inverted(self) -> Mesh:
        """The same surface with every face reversed (normals flipped)."""
        return Mesh(self.vertices, self.faces.flip(1))

    def normalized(self, size: float = 1.0) -> Mesh:
        """Centre the bounding box at the origin and scale its longest side to ``size``."""
        if not size > 0:
            raise ValueError(f"size must be > 0, got {size!r}")
        b = self.bounds
        longest = float((b[1] - b[0]).max())
        if longest <= 0:
            raise ValueError("cannot normalize a mesh whose bounding box has zero size")
        return Mesh((self.vertices - 0.5 * (b[0] + b[1])) * (size / longest), self.faces)

    @staticmethod
    def concatenate(meshes: list[Mesh]) -> Mesh:
        """One mesh holding all the given meshes' faces (no boolean union)."""
        if not meshes:
            raise ValueError("concatenate needs at least one mesh")
        offsets = np.cumsum([0] + [m.num_vertices for m in meshes[:-1]])
        return Mesh(
            torch.cat([m.vertices for m in meshes]),
            torch.cat([m.faces + int(o) for m, o in zip(meshes, offsets, strict=True)]),
        )

    def __repr__(self) -> str:
        return f"Mesh(V={self.num_vertices}, F={self.num_faces}, dtype={self.dtype}, device={self.device})"


def _edge_defects(meshes: list[Mesh]) -> tuple[Tensor, Tensor]:
    """Per mesh: undirected edges not shared by exactly two faces, and repeated directed edges.

    One sort over all meshes' edges: vertex indices are offset so that edges of
    different meshes never coincide, and each edge key is traced back to its mesh.

    Returns:
        Two (B,) int64 tensors on the meshes' device.
    """
    device = meshes[0].device
    sizes = torch.tensor([m.num_vertices for m in meshes], device=device)
    offsets = torch.cumsum(sizes, 0) - sizes
    total = int(sizes.sum())
    faces = torch.cat([m.faces + int(o) for m, o in zip(meshes, offsets, strict=True)])
    directed = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    undirected = directed.sort(dim=1).values
    mesh_of = torch.searchsorted(offsets, directed[:, 0].contiguous(), right=True) - 1  # (E,)
    bsz = len(meshes)

    ukeys, uorder = (undirected[:, 0] * total + undirected[:, 1]).sort()
    _, counts = torch.unique_consecutive(ukeys, return_counts=True)
    first = torch.cumsum(counts, 0) - counts  # index of each unique edge's first occurrence
    bad_edge_mesh = mesh_of[uorder[first[counts != 2]]]
    open_edges = torch.bincount(bad_edge_mesh, minlength=bsz)

    dkeys, dorder = (directed[:, 0] * total + directed[:, 1]).sort()
    dup = torch.nonzero(dkeys[1:] == dkeys[:-1]).flatten() + 1
    repeated = torch.bincount(mesh_of[dorder[dup]], minlength=bsz)
    return open_edges, repeated


def _raise_if_open(what: str, open_edges: int, repeated: int) -> None:
    if open_edges:
        raise ValueError(
            f"{what} needs a watertight mesh, but {open_edges} edge(s) are not shared by exactly "
            "two faces (holes or non-manifold edges); repair it first, e.g. by voxelizing "
            "(VoxelGrid.from_mesh(...).to_mesh())"
        )
    if repeated:
        raise ValueError(
            f"{what} needs consistently wound faces, but {repeated} directed edge(s) repeat; "
            "fix the winding (trimesh.repair.fix_winding)"
        )


def batch_mass_properties(meshes: list[Mesh], density: float = 1.0) -> MassProperties:
    """Mass properties of several closed meshes in one vectorized pass.

    Each face (a, b, c), taken relative to a reference point p (the mesh's vertex
    centroid, which limits cancellation), spans a signed tetrahedron with apex p of
    volume det[a-p, b-p, c-p] / 6. Summing its integrals over a closed, outward-wound
    surface gives the solid's (divergence theorem): with s = a + b + c,
    int dV = sum det / 6, int x dV = sum det s / 24 and
    int x x^T dV = sum det (a a^T + b b^T + c c^T + s s^T) / 120.

    Args:
        meshes: closed, consistently wound meshes on one device (any float dtype;
            the sums run in float64).
        density: kg/m^3, > 0.

    Returns:
        MassProperties with volume and mass (B,), center_of_mass (B, 3) and inertia
        (B, 3, 3) about each centre of mass, in the first mesh's dtype; differentiable
        in the vertices.

    Raises:
        ValueError: a mesh is open, inconsistently wound or inward-facing (the message
            names which), density is not positive, or the list is empty.
    """
    _check_density(density)
    if not meshes:
        raise ValueError("batch_mass_properties needs at least one mesh")
    for n, m in enumerate(meshes):
        if not isinstance(m, Mesh):
            raise TypeError(f"item {n} is a {type(m).__name__}, expected a Mesh")
    open_edges, repeated = _edge_defects(meshes)
    for n in torch.nonzero((open_edges > 0) | (repeated > 0)).flatten().tolist():
        what = "mass properties" if len(meshes) == 1 else f"mass properties of mesh {n}"
        _raise_if_open(what, int(open_edges[n]), int(repeated[n]))
    device = meshes[0].device
    verts = [m.vertices.to(torch.float64) for m in meshes]
    refs = torch.stack([v.detach().mean(dim=0) for v in verts])  # results do not depend on it
    tri = torch.cat(
        [(v - r)[m.faces] for v, r, m in zip(verts, refs, meshes, strict=True)]
    )  # (F, 3, 3)
    seg = torch.repeat_interleave(
        torch.arange(len(meshes), device=device),
        torch.tensor([m.num_faces for m in meshes], device=device),
    )
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    det = (a * torch.linalg.cross(b, c, dim=-1)).sum(dim=-1)  # (F,) = 6 x signed volume
    s = a + b + c
    i, j = list(_SYM_I), list(_SYM_J)
    sym = (tri[:, :, i] * tri[:, :, j]).sum(dim=1) + s[:, i] * s[:, j]  # (F, 6)
    per_face = torch.cat([det[:, None], det[:, None] * s, det[:, None] * sym], dim=1)  # (F, 10)
    sums = per_face.new_zeros(len(meshes), 10).index_add(0, seg, per_face)
    volume = sums[:, 0] / 6.0
    bad = torch.nonzero(~(volume.detach() > 0)).flatten().tolist()
    if bad:
        raise ValueError(
            f"signed volume of mesh(es) {bad} is <= 0 ({float(volume[bad[0]].detach()):.3g}): the faces "
            "are wound inward (use Mesh.inverted()) or the mesh is degenerate"
        )
    com_rel = sums[:, 1:4] / 24.0 / volume[:, None]
    second_sym = sums[:, 4:] / _TET_SECOND_MOMENT_DENOM
    second = second_sym.new_zeros(len(meshes), 3, 3)
    second[:, i, j] = second_sym
    second[:, j, i] = second_sym
    cov = (
        second - volume[:, None, None] * com_rel[:, :, None] * com_rel[:, None, :]
    )  # about the COM
    eye = torch.eye(3, dtype=cov.dtype, device=device)
    trace = torch.diagonal(cov, dim1=1, dim2=2).sum(-1)
    inertia = density * (trace[:, None, None] * eye - cov)
    dt = meshes[0].dtype
    return MassProperties(
        volume=volume.to(dt),
        mass=(density * volume).to(dt),
        center_of_mass=(com_rel + refs).to(dt),
        inertia=inertia.to(dt),
        density=float(density),
    )
