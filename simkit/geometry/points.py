"""Point clouds: Chamfer distance, farthest-point sampling and normals."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:  # pragma: no cover
    import open3d

__all__ = ["PointCloud", "chamfer_distance", "farthest_point_sampling"]


def _as_batch(points: Tensor, name: str) -> tuple[Tensor, bool]:
    if not isinstance(points, Tensor):
        raise TypeError(f"{name} must be a torch tensor, got {type(points).__name__}")
    if not points.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {points.dtype}")
    if not bool(torch.isfinite(points).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    if points.ndim == 2 and points.shape[-1] == 3:
        return points[None], True
    if points.ndim == 3 and points.shape[-1] == 3:
        return points, False
    raise ValueError(f"{name} must have shape (P, 3) or (B, P, 3), got {tuple(points.shape)}")


def chamfer_distance(a: Tensor, b: Tensor, *, chunk: int = 64) -> Tensor:
    """Symmetric Chamfer distance as PointFlow defines it.

    ``CD(a, b) = mean_i min_j |a_i - b_j|^2 + mean_j min_i |a_i - b_j|^2``
    (squared distances, averaged per cloud, summed over the two directions).

    Args:
        a: (P, 3) or (B, P, 3) float points.
        b: (Q, 3) or (B, Q, 3) float points (same batch size as ``a``).
        chunk: clouds per batch of the (B, P, Q) distance matrix, to bound memory.

    Returns:
        () or (B,) distances, in squared units of the inputs.
    """
    a3, single_a = _as_batch(a, "a")
    b3, single_b = _as_batch(b, "b")
    if a3.shape[0] != b3.shape[0]:
        raise ValueError(f"batch sizes differ: {a3.shape[0]} and {b3.shape[0]}")
    if a3.shape[1] == 0 or b3.shape[1] == 0:
        raise ValueError("Chamfer distance of an empty point cloud is undefined")
    out = []
    for i in range(0, a3.shape[0], chunk):
        x, y = a3[i : i + chunk], b3[i : i + chunk]
        d = (x[:, :, None, :] - y[:, None, :, :]).pow(2).sum(-1)  # (b, P, Q), exact squares
        out.append(d.min(dim=2).values.mean(dim=1) + d.min(dim=1).values.mean(dim=1))
    res = torch.cat(out)
    return res[0] if (single_a and single_b) else res


def farthest_point_sampling(
    points: Tensor, n: int, *, generator: torch.Generator | None = None
) -> Tensor:
    """Indices of ``n`` points chosen greedily, each farthest from those chosen before.

    Args:
        points: (P, 3) or (B, P, 3) float.
        n: number to keep, 1 <= n <= P.
        generator: picks the first point at random; without one the first point is index 0.

    Returns:
        (n,) or (B, n) int64 indices.
    """
    pts, single = _as_batch(points, "points")
    bsz, p, _ = pts.shape
    if not isinstance(n, int) or not 1 <= n <= p:
        raise ValueError(f"n must be an int in [1, {p}], got {n!r}")
    idx = pts.new_zeros(bsz, n, dtype=torch.long)
    if generator is not None:
        idx[:, 0] = torch.randint(p, (bsz,), generator=generator, device=generator.device).to(
            pts.device
        )
    dist = torch.full((bsz, p), float("inf"), dtype=pts.dtype, device=pts.device)
    rows = torch.arange(bsz, device=pts.device)
    for k in range(1, n):
        last = pts[rows, idx[:, k - 1]]  # (B, 3)
        dist = torch.minimum(dist, (pts - last[:, None]).pow(2).sum(-1))
        idx[:, k] = dist.argmax(dim=1)
    return idx[0] if single else idx


@dataclass(frozen=True, eq=False)
class PointCloud:
    """A point cloud, optionally with normals.

    Attributes:
        points: (P, 3) float, metres.
        normals: (P, 3) float unit vectors, or None.
    """

    points: Tensor
    normals: Tensor | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.points, Tensor):
            raise TypeError(f"points must be a torch tensor, got {type(self.points).__name__}")
        if self.points.ndim != 2 or self.points.shape[1] != 3:
            raise ValueError(f"points must have shape (P, 3), got {tuple(self.points.shape)}")
        if not bool(torch.isfinite(self.points).all()):
            raise ValueError("points contain NaN or infinite values")
        if self.normals is not None and self.normals.shape != self.points.shape:
            raise ValueError(
                f"normals must match points' shape {tuple(self.points.shape)}, got {tuple(self.normals.shape)}"
            )

    def __len__(self) -> int:
        return int(self.points.shape[0])

    def to(self, device: Any = None, dtype: torch.dtype | None = None) -> PointCloud:
        normals = None if self.normals is None else self.normals.to(device=device, dtype=dtype)
        return PointCloud(self.points.to(device=device, dtype=dtype), normals)

    def chamfer_distance(self, other: PointCloud) -> Tensor:
        """Symmetric Chamfer distance to ``other`` (see :func:`chamfer_distance`)."""
        return chamfer_distance(self.points, other.points)

    def farthest_point_sample(
        self, n: int, *, generator: torch.Generator | None = None
    ) -> PointCloud:
        """A subset of ``n`` well-spread points (see :func:`farthest_point_sampling`)."""
        idx = farthest_point_sampling(self.points, n, generator=generator)
        return PointCloud(self.points[idx], None if self.normals is None else self.normals[idx])

    def to_open3d(self) -> open3d.geometry.PointCloud:
        import open3d as o3d

        pc = o3d.geometry.PointCloud(
            o3d.utility.Vector3dVector(self.points.detach().cpu().double().numpy())
        )
        if self.normals is not None:
            pc.normals = o3d.utility.Vector3dVector(self.normals.detach().cpu().double().numpy())
        return pc

    @classmethod
    def from_open3d(
        cls,
        pc: open3d.geometry.PointCloud,
        *,
        dtype: torch.dtype = torch.float64,
        device: Any = None,
    ) -> PointCloud:
        pts = torch.as_tensor(np.asarray(pc.points), dtype=dtype, device=device)
        normals = (
            torch.as_tensor(np.asarray(pc.normals), dtype=dtype, device=device)
            if pc.has_normals()
            else None
        )
        return cls(pts, normals)

    def estimate_normals(self, k: int = 30, *, orient_towards: Tensor | None = None) -> PointCloud:
        """Normals from a PCA of each point's ``k`` nearest neighbours (open3d).

        Args:
            k: neighbours per point, >= 3.
            orient_towards: (3,) a point the normals should face away from (e.g. the
                centroid of a closed surface); default: the cloud's centroid.
        """
        import open3d as o3d

        if not isinstance(k, int) or k < 3:
            raise ValueError(f"k must be an int >= 3, got {k!r}")
        pc = self.to_open3d()
        pc.estimate_normals(o3d.geometry.KDTreeSearchParamKNN(knn=k))
        normals = torch.as_tensor(
            np.asarray(pc.normals), dtype=self.points.dtype, device=self.points.device
        )
        inner = (
            self.points.mean(dim=0)
            if orient_towards is None
            else torch.as_tensor(orient_towards, dtype=self.points.dtype, device=self.points.device)
        )
        sign = torch.sign(((self.points - inner) * normals).sum(-1, keepdim=True))
        normals = normals * torch.where(sign == 0, torch.ones_like(sign), sign)
        return PointCloud(self.points, normals)
