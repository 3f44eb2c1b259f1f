"""Linear convection(-diffusion) ``u_t + beta u_x = nu u_xx`` on a periodic interval.

The failure-mode problem of Krishnapriyan et al. (NeurIPS 2021): ``u0 = sin x`` on
``x in [0, 2 pi)`` periodic, ``t in [0, 1]``. With ``u0 = sin(k x)`` the exact solution
is ``u = exp(-nu k^2 t) sin(k (x - beta t))`` (a damped travelling wave).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["ConvectionParams", "exact_solution", "initial_condition", "residual"]


def _check_params(beta: float, nu: float) -> None:
    if not math.isfinite(beta) or beta < 0:
        raise ValueError(f"beta must be a finite non-negative speed, got {beta!r}")
    if not math.isfinite(nu) or nu < 0:
        raise ValueError(f"nu must be a finite non-negative diffusivity, got {nu!r}")


@dataclass(frozen=True)
class ConvectionParams:
    """Parameters of ``u_t + beta u_x = nu u_xx``.

    Attributes:
        beta: convection speed, ``>= 0`` (length per time).
        nu: diffusivity, ``>= 0`` (length^2 per time); 0 is pure convection.
    """

    beta: float = 30.0
    nu: float = 0.0

    def __post_init__(self) -> None:
        _check_params(float(self.beta), float(self.nu))


def initial_condition(x: Tensor) -> Tensor:
    """``u0(x) = sin x``.

    Args:
        x: (...) float tensor, positions.

    Returns:
        (...) tensor, same dtype and device as ``x``.
    """
    return torch.sin(x)


def residual(u_t: Tensor, u_x: Tensor, u_xx: Tensor, beta: float, nu: float = 0.0) -> Tensor:
    """PDE residual ``r = u_t + beta u_x - nu u_xx``.

    Args:
        u_t: (...) time derivative.
        u_x: (...) first space derivative, same shape.
        u_xx: (...) second space derivative, same shape.
        beta: convection speed, ``>= 0``.
        nu: diffusivity, ``>= 0``.

    Returns:
        (...) residual.
    """
    _check_params(float(beta), float(nu))
    if not (u_t.shape == u_x.shape == u_xx.shape):
        raise ValueError(
            f"u_t, u_x, u_xx must have equal shapes, got {tuple(u_t.shape)}, "
            f"{tuple(u_x.shape)}, {tuple(u_xx.shape)}"
        )
    return u_t + beta * u_x - nu * u_xx


def exact_solution(x: Tensor, t: Tensor, beta: float, nu: float = 0.0) -> Tensor:
    """``u(x, t) = exp(-nu t) sin(x - beta t)`` for ``u0 = sin x``.

    Args:
        x: (...) positions, broadcastable with ``t``.
        t: (...) times.
        beta: convection speed, ``>= 0``.
        nu: diffusivity, ``>= 0``.

    Returns:
        Broadcast shape of ``x`` and ``t``, their promoted dtype.
    """
    _check_params(float(beta), float(nu))
    return torch.exp(-nu * t) * torch.sin(x - beta * t)
