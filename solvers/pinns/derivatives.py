"""Space-time derivatives of pointwise fields: ``u, u_x, u_t, u_xx`` in one pass.

Two interchangeable backends:

- ``"func"``: ``torch.func`` forward mode. Nested ``jvp`` for the ``x`` direction and
  ``vmap`` over the two outer tangents ``(1, 0)`` and ``(0, 1)``; the primal is not
  batched by ``vmap`` (the points are unbatched), so it is evaluated once.
- ``"autograd"`` (default): reverse mode, ``torch.autograd.grad`` of the summed field
  with ``create_graph=True`` (one call for ``u_x, u_t``, one for ``u_xx``).

Both rely on the field acting pointwise (an MLP applied to each point independently):
then a tangent (or cotangent) of all ones gives every point its own derivative, the same
as ``vmap`` over points of a per-point derivative, without forming a Jacobian. Both stay
differentiable in the network parameters. On a CPU with width-50 tanh MLPs and ~2k
points, forward mode through ``torch.func`` measured ~2.3x slower per training step than
reverse mode (dual-tensor overhead), hence the default; the tests check each against the
other and against analytic derivatives.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor
from torch.func import jvp, vmap

__all__ = ["DerivativeBackend", "SpaceTimeDerivatives", "space_time_derivatives"]

DerivativeBackend = Literal["autograd", "func"]


@dataclass(frozen=True)
class SpaceTimeDerivatives:
    """A field and its derivatives at N points (k output components).

    Attributes:
        value: (N, k) field values.
        d_x: (N, k) first derivative in the space (label) coordinate.
        d_t: (N, k) first derivative in time.
        d_xx: (N, k) second derivative in space.
    """

    value: Tensor
    d_x: Tensor
    d_t: Tensor
    d_xx: Tensor


def _by_func(fn: Callable[[Tensor, Tensor], Tensor], x: Tensor, t: Tensor) -> SpaceTimeDerivatives:
    ones, zeros = torch.ones_like(x), torch.zeros_like(x)

    def first(xx: Tensor, tt: Tensor) -> tuple[Tensor, Tensor]:
        return jvp(fn, (xx, tt), (ones, zeros))  # (value, d/dx)

    def along(vx: Tensor, vt: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        (value, value_x), (dvalue, dvalue_x) = jvp(first, (x, t), (vx, vt))
        return value, value_x, dvalue, dvalue_x

    value, value_x, dvalue, dvalue_x = vmap(along, out_dims=(None, None, 0, 0))(
        torch.stack([ones, zeros]), torch.stack([zeros, ones])
    )
    return SpaceTimeDerivatives(value=value, d_x=value_x, d_t=dvalue[1], d_xx=dvalue_x[0])


def _by_autograd(
    fn: Callable[[Tensor, Tensor], Tensor], x: Tensor, t: Tensor, second: tuple[bool, ...] | None
) -> SpaceTimeDerivatives:
    with torch.enable_grad():
        xx = x.detach().requires_grad_(True)
        tt = t.detach().requires_grad_(True)
        value = fn(xx, tt)
        k = value.shape[-1]
        d_x, d_t, d_xx = [], [], []
        for j in range(k):
            gx, gt = torch.autograd.grad(
                value[:, j].sum(), (xx, tt), create_graph=True, materialize_grads=True
            )
            if second is None or second[j]:
                (gxx,) = torch.autograd.grad(
                    gx.sum(), xx, create_graph=True, materialize_grads=True
                )
            else:
                gxx = torch.zeros_like(gx)
            d_x.append(gx)
            d_t.append(gt)
            d_xx.append(gxx)
    return SpaceTimeDerivatives(
        value=value,
        d_x=torch.stack(d_x, dim=-1),
        d_t=torch.stack(d_t, dim=-1),
        d_xx=torch.stack(d_xx, dim=-1),
    )


def space_time_derivatives(
    fn: Callable[[Tensor, Tensor], Tensor],
    x: Tensor,
    t: Tensor,
    backend: DerivativeBackend = "autograd",
    second: tuple[bool, ...] | None = None,
) -> SpaceTimeDerivatives:
    """Evaluate a pointwise field and its derivatives ``d_x, d_t, d_xx``.

    Args:
        fn: ``fn(x, t) -> (N, k)``; must treat each of the N points independently.
        x: (N,) float space (or label) coordinates.
        t: (N,) float times, same dtype and device.
        backend: ``"autograd"`` (reverse mode) or ``"func"`` (``torch.func`` forward mode).
        second: per output component, whether its ``d_xx`` is needed (``None``: all).
            The autograd backend skips the others (their ``d_xx`` is zero); ``func``
            always computes all.

    Returns:
        :class:`SpaceTimeDerivatives` of (N, k) tensors, differentiable in ``fn``'s
        parameters.
    """
    if x.ndim != 1 or x.shape != t.shape:
        raise ValueError(
            f"x and t must be 1D of equal length, got {tuple(x.shape)} and {tuple(t.shape)}"
        )
    if backend == "autograd":
        return _by_autograd(fn, x, t, second)
    if backend == "func":
        return _by_func(fn, x, t)
    raise ValueError(f"unknown derivative backend {backend!r}; expected 'autograd' or 'func'")
