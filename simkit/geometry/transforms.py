"""Batched rotations: uniform random rotations, quaternions and axis-angle."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["axis_angle_to_matrix", "quaternion_to_matrix", "random_rotations", "rigid_transform"]


def _check_float(x: Tensor, name: str) -> None:
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError(
            f"{name} must be a floating-point tensor, got {getattr(x, 'dtype', type(x).__name__)}"
        )
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or infinite values")


def quaternion_to_matrix(q: Tensor) -> Tensor:
    """Rotation matrices from quaternions.

    Args:
        q: (..., 4) float quaternions (w, x, y, z); normalised here, need not be unit.

    Returns:
        (..., 3, 3) rotation matrices.
    """
    _check_float(q, "quaternion")
    if q.shape[-1] != 4:
        raise ValueError(f"quaternions must have a trailing dimension of 4, got {tuple(q.shape)}")
    norm = q.norm(dim=-1, keepdim=True)
    if bool((norm == 0).any()):
        raise ValueError("zero quaternion has no rotation")
    w, x, y, z = (q / norm).unbind(-1)
    rows = [
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ]  # fmt: skip
    return torch.stack(rows, dim=-1).reshape(*q.shape[:-1], 3, 3)


def random_rotations(
    n: int,
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: Any = None,
) -> Tensor:
    """``n`` rotations drawn uniformly (Haar measure on SO(3)).

    A standard normal 4-vector, normalised, is uniform on S^3, and the unit quaternions
    cover SO(3) twice evenly (Shoemake 1992).

    Returns:
        (n, 3, 3) rotation matrices.
    """
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    q = torch.randn(n, 4, generator=generator, dtype=dtype, device=device)
    return quaternion_to_matrix(q)


def axis_angle_to_matrix(axis: Tensor, angle: Tensor | float) -> Tensor:
    """Rotation by ``angle`` (radians, right-handed) about ``axis`` (Rodrigues' formula).

    Args:
        axis: (..., 3) float, need not be unit length (must be non-zero).
        angle: (...) float radians, broadcast against ``axis``'s batch shape.

    Returns:
        (..., 3, 3) rotation matrices.
    """
    axis = torch.as_tensor(axis)
    _check_float(axis, "axis")
    if axis.shape[-1] != 3:
        raise ValueError(f"axis must have a trailing dimension of 3, got {tuple(axis.shape)}")
    norm = axis.norm(dim=-1, keepdim=True)
    if bool((norm == 0).any()):
        raise ValueError("rotation axis must be non-zero")
    k = axis / norm
    angle = torch.as_tensor(angle, dtype=k.dtype, device=k.device)
    _check_float(angle, "angle")
    batch = torch.broadcast_shapes(k.shape[:-1], angle.shape)
    k = k.expand(*batch, 3)
    angle = angle.expand(batch)
    zero = torch.zeros_like(k[..., 0])
    kx, ky, kz = k.unbind(-1)
    cross = torch.stack([zero, -kz, ky, kz, zero, -kx, -ky, kx, zero], dim=-1).reshape(*batch, 3, 3)
    eye = torch.eye(3, dtype=k.dtype, device=k.device).expand(*batch, 3, 3)
    s, c = torch.sin(angle)[..., None, None], torch.cos(angle)[..., None, None]
    return eye + s * cross + (1 - c) * (cross @ cross)


def rigid_transform(rotation: Tensor, translation: Tensor) -> Tensor:
    """(..., 4, 4) homogeneous transforms from (..., 3, 3) rotations and (..., 3) translations."""
    if rotation.shape[-2:] != (3, 3) or translation.shape[-1] != 3:
        raise ValueError(
            f"expected rotation (..., 3, 3) and translation (..., 3), got {tuple(rotation.shape)} "
            f"and {tuple(translation.shape)}"
        )
    batch = torch.broadcast_shapes(rotation.shape[:-2], translation.shape[:-1])
    out = rotation.new_zeros(*batch, 4, 4)
    out[..., :3, :3] = rotation
    out[..., :3, 3] = translation
    out[..., 3, 3] = 1
    return out
