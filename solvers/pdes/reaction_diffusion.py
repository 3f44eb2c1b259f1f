"""Reaction-diffusion ``u_t = nu u_xx + rho u (1 - u)`` (Fisher-KPP) on a periodic interval.

The setting of Krishnapriyan et al. (NeurIPS 2021): ``x in [0, 2 pi)`` periodic,
``t in [0, 1]``, Gaussian initial condition centred at ``pi`` with ``sigma = pi / 4``.
No closed form: :func:`reference_solution` integrates it by Strang splitting, the logistic
reaction solved exactly and the diffusion exactly in Fourier space, both in float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "ReactionDiffusionParams",
    "initial_condition",
    "reaction",
    "reference_solution",
    "residual",
]


def _check_params(nu: float, rho: float) -> None:
    if not math.isfinite(nu) or nu < 0:
        raise ValueError(f"nu must be a finite non-negative diffusivity, got {nu!r}")
    if not math.isfinite(rho) or rho < 0:
        raise ValueError(f"rho must be a finite non-negative reaction rate, got {rho!r}")


@dataclass(frozen=True)
class ReactionDiffusionParams:
    """Parameters of ``u_t = nu u_xx + rho u (1 - u)``.

    Attributes:
        nu: diffusivity, ``>= 0``.
        rho: reaction rate, ``>= 0``.
    """

    nu: float = 3.0
    rho: float = 5.0

    def __post_init__(self) -> None:
        _check_params(float(self.nu), float(self.rho))


def initial_condition(x: Tensor) -> Tensor:
    """``u0(x) = exp(-(x - pi)^2 / (2 (pi/4)^2))``.

    Args:
        x: (...) positions on ``[0, 2 pi)``.

    Returns:
        (...) tensor, same dtype and device as ``x``.
    """
    sigma = math.pi / 4
    return torch.exp(-((x - math.pi) ** 2) / (2 * sigma**2))


def reaction(u: Tensor, rho: float) -> Tensor:
    """The logistic source ``rho u (1 - u)``."""
    return rho * u * (1 - u)


def residual(u: Tensor, u_t: Tensor, u_xx: Tensor, nu: float, rho: float) -> Tensor:
    """PDE residual ``r = u_t - nu u_xx - rho u (1 - u)``.

    Args:
        u: (...) field.
        u_t: (...) time derivative, same shape.
        u_xx: (...) second space derivative, same shape.
        nu: diffusivity, ``>= 0``.
        rho: reaction rate, ``>= 0``.

    Returns:
        (...) residual.
    """
    _check_params(float(nu), float(rho))
    if not (u.shape == u_t.shape == u_xx.shape):
        raise ValueError(
            f"u, u_t, u_xx must have equal shapes, got {tuple(u.shape)}, "
            f"{tuple(u_t.shape)}, {tuple(u_xx.shape)}"
        )
    return u_t - nu * u_xx - reaction(u, rho)


def _react(u: Tensor, rho: float, h: float) -> Tensor:
    # Exact flow of u' = rho u (1 - u): u e^{rho h} / (u e^{rho h} + 1 - u).
    g = math.exp(rho * h)
    return u * g / (u * g + 1 - u)


def reference_solution(
    u0: Tensor, t: Tensor, nu: float, rho: float, length: float = 2 * math.pi, dt: float = 1e-3
) -> Tensor:
    """Strang-split solution: half reaction, full diffusion, half reaction per step.

    Both sub-flows are exact (logistic formula; ``exp(-nu k^2 h)`` per Fourier mode), so
    the only error is the second-order splitting error ``O(dt^2)``.

    Args:
        u0: (n,) initial values on the uniform periodic grid ``x_i = lo + i L / n``.
        t: (T,) non-decreasing output times ``>= 0``.
        nu: diffusivity, ``>= 0``.
        rho: reaction rate, ``>= 0``.
        length: period ``L > 0``.
        dt: largest step.

    Returns:
        (n, T) float64 solution on the grid, column ``j`` at time ``t[j]``, on ``u0``'s device.
    """
    _check_params(float(nu), float(rho))
    if u0.ndim != 1 or u0.numel() < 2:
        raise ValueError(f"u0 must have shape (n,) with n >= 2, got {tuple(u0.shape)}")
    if t.ndim != 1 or t.numel() == 0:
        raise ValueError(f"t must have shape (T,) with T >= 1, got {tuple(t.shape)}")
    if not (length > 0 and math.isfinite(length)) or not dt > 0:
        raise ValueError(f"length and dt must be positive, got length={length!r}, dt={dt!r}")
    times = t.detach().to("cpu", torch.float64).tolist()
    if times[0] < 0 or any(b < a for a, b in zip(times[:-1], times[1:], strict=True)):
        raise ValueError(f"t must be non-decreasing and >= 0, got {times[:5]}...")
    n = u0.numel()
    u = u0.detach().to(torch.float64)
    k = 2 * math.pi / length * torch.fft.fftfreq(n, d=1.0 / n, dtype=torch.float64)
    k = k.to(u.device)
    out = []
    now = 0.0
    for target in times:
        span = target - now
        steps = max(1, math.ceil(span / dt - 1e-12)) if span > 0 else 0
        if steps:
            h = span / steps
            decay = torch.exp(-nu * k**2 * h)
            for _ in range(steps):
                u = _react(u, rho, h / 2)
                u = torch.fft.ifft(torch.fft.fft(u) * decay).real
                u = _react(u, rho, h / 2)
        now = target
        out.append(u.clone())
    return torch.stack(out, dim=1)
