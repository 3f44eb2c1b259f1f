"""Viscous Burgers ``u_t + u u_x = nu u_xx`` on the periodic interval ``[0, 2 pi)``.

Initial condition ``u0 = sin x + C``. The exact solution comes from the Cole-Hopf transform:
for ``v0 = sin x``, ``v = -2 nu phi_x / phi`` with ``phi`` the heat-equation solution for
``phi0(y) = exp(-(1 - cos y) / (2 nu))``, i.e. (substituting ``y = x - sqrt(4 nu t) eta``)

``v(x, t) = (s / t) * E[eta g(x - s eta)] / E[g(x - s eta)]``, ``s = sqrt(4 nu t)``,

where ``E`` is the expectation against ``exp(-eta^2)`` (Gauss-Hermite quadrature) and
``g(y) = exp(-(1 - cos y) / (2 nu))``. The constant ``C`` enters by the Galilean shift
``u(x, t) = C + v(x - C t, t)``. Units: ``x`` in radians, ``t`` in time units, ``nu`` in
radians^2 per time unit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from scipy.special import roots_hermite
from torch import Tensor

__all__ = ["BurgersParams", "exact_solution", "initial_condition", "residual"]


def _check_nu(nu: float, *, allow_zero: bool = True) -> None:
    ok = isinstance(nu, (int, float)) and math.isfinite(nu) and (nu >= 0 if allow_zero else nu > 0)
    if not ok:
        kind = "non-negative" if allow_zero else "positive"
        raise ValueError(f"nu must be a finite {kind} viscosity, got {nu!r}")


@dataclass(frozen=True)
class BurgersParams:
    """Parameters of ``u_t + u u_x = nu u_xx`` with ``u0 = sin x + C``.

    Attributes:
        nu: viscosity, ``>= 0`` (radians^2 per time unit).
        C: constant offset of the initial condition (a Galilean shift of speed ``C``).
    """

    nu: float = 0.01
    C: float = 0.0

    def __post_init__(self) -> None:
        _check_nu(self.nu)
        if not (isinstance(self.C, (int, float)) and math.isfinite(self.C)):
            raise ValueError(f"C must be a finite number, got {self.C!r}")


def initial_condition(x: Tensor, C: float = 0.0) -> Tensor:
    """``u0(x) = sin x + C``.

    Args:
        x: (...) float tensor, positions, radians.
        C: constant offset.

    Returns:
        (...) tensor, same dtype and device as ``x``.
    """
    return torch.sin(x) + C


def residual(u: Tensor, u_t: Tensor, u_x: Tensor, u_xx: Tensor, nu: float) -> Tensor:
    """PDE residual ``r = u_t + u u_x - nu u_xx``.

    Args:
        u: (...) solution values.
        u_t: (...) time derivative, same shape.
        u_x: (...) first space derivative, same shape.
        u_xx: (...) second space derivative, same shape.
        nu: viscosity, ``>= 0``.

    Returns:
        (...) residual.
    """
    _check_nu(float(nu))
    if not (u.shape == u_t.shape == u_x.shape == u_xx.shape):
        raise ValueError(
            f"u, u_t, u_x, u_xx must have equal shapes, got {tuple(u.shape)}, "
            f"{tuple(u_t.shape)}, {tuple(u_x.shape)}, {tuple(u_xx.shape)}"
        )
    return u_t + u * u_x - nu * u_xx


@lru_cache(maxsize=8)
def _hermite(n_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    # scipy's roots stay accurate for many nodes, where numpy's hermgauss overflows (> ~600);
    # the outer weights underflow to 0 and get log-weight -inf (they contribute nothing).
    nodes, weights = roots_hermite(n_nodes)
    log_w = np.full_like(weights, -np.inf)
    np.log(weights, out=log_w, where=weights > 0)
    return nodes, log_w


def exact_solution(
    x: Tensor,
    t: Tensor | float,
    nu: float,
    C: float = 0.0,
    *,
    n_nodes: int = 256,
    chunk: int = 1 << 16,
) -> Tensor:
    """Exact solution for ``u0 = sin x + C`` by Cole-Hopf and Gauss-Hermite quadrature.

    The quadrature runs in float64 with a log-sum-exp shift, so ``exp(-(1 - cos y)/(2 nu))``
    does not underflow for small ``nu``. With the default 256 nodes it agrees with 512 nodes
    to ~1e-13 (max over the grid, fronts included) for ``nu = 0.01``, ``t <= 1``; smaller
    ``nu t`` needs no more nodes, larger ``t / nu`` may (the integrand's peak moves out to
    ``|eta| ~ pi / sqrt(4 nu t)``, while the largest node is ~ ``sqrt(2 n_nodes)``).
    Differentiable in ``x`` and ``t`` (autograd; the result is float64 before the final cast).

    Args:
        x: (...) float tensor, positions, radians (any real values; the solution is periodic).
        t: (...) times >= 0, broadcastable with ``x`` (tensor or float).
        nu: viscosity, ``> 0``.
        C: constant offset of the initial condition.
        n_nodes: Gauss-Hermite nodes.
        chunk: points per quadrature batch (bounds the memory: chunk x n_nodes doubles).

    Returns:
        (broadcast shape) tensor, dtype and device of ``x``.
    """
    _check_nu(float(nu), allow_zero=False)
    if not isinstance(n_nodes, int) or n_nodes < 2:
        raise ValueError(f"n_nodes must be an integer >= 2, got {n_nodes!r}")
    if not isinstance(t, Tensor):
        t = torch.tensor(t, dtype=torch.float64, device=x.device)  # no float32 round-off
    if bool((t < 0).any()):
        raise ValueError(f"t must be >= 0, got min {float(t.min())!r}")
    xb, tb = torch.broadcast_tensors(x, t)
    shape = xb.shape
    xs = xb.reshape(-1).double() - C * tb.reshape(-1).double()  # Galilean shift (x - C t)
    ts = tb.reshape(-1).double()
    nodes_np, log_w_np = _hermite(n_nodes)
    eta = torch.as_tensor(nodes_np, dtype=torch.float64, device=x.device)
    log_w = torch.as_tensor(log_w_np, dtype=torch.float64, device=x.device)
    out = []
    for start in range(0, xs.numel(), chunk):
        xc, tc = xs[start : start + chunk], ts[start : start + chunk]
        positive = tc > 0
        t_safe = torch.where(positive, tc, torch.ones_like(tc))
        s = torch.sqrt(4.0 * nu * t_safe)
        y = xc[:, None] - s[:, None] * eta[None, :]
        log_terms = log_w[None, :] - (1.0 - torch.cos(y)) / (2.0 * nu)
        log_terms = log_terms - log_terms.detach().amax(dim=-1, keepdim=True)
        weights = torch.exp(log_terms)
        v = (s / t_safe) * (weights * eta).sum(-1) / weights.sum(-1)
        out.append(torch.where(positive, v, torch.sin(xc)))
    v_all = torch.cat(out) if out else xs.new_zeros(0)
    return (C + v_all).reshape(shape).to(x.dtype)
