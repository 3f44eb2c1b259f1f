"""1D diffusion-sorption ``u_t = D / R(u) u_xx`` (PDEBench; PI-HC-MoE section 2).

A solute of concentration ``u`` diffuses through a porous medium on ``x in (0, L)``,
``t in (0, T]``, retarded by Freundlich sorption. The retardation factor is

``R(u) = 1 + ((1 - phi) / phi) * rho_s * k_f * n_f * (u + 1e-6)^(n_f - 1)``

(PDEBench ``sim_diff_sorp.py``; the ``1e-6`` keeps ``R`` finite at ``u = 0``). Boundaries:
Dirichlet ``u(0, t) = solubility`` on the left and ``u(L, t) = D u_x(L, t)`` on the right.
PDEBench's initial condition is spatially constant, one draw of ``U(0, 0.2)`` per sample.

The functions take the field and its derivatives as tensors, so the same residual serves
finite-difference grids and autograd collocation points. Units: ``x`` in metres (the
domain is ``[0, length]``), ``t`` in seconds, ``u`` dimensionless (relative to solubility).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "DiffusionSorptionBoundaryResiduals",
    "DiffusionSorptionParams",
    "boundary_residuals",
    "cell_centres",
    "initial_condition",
    "residual",
    "retardation",
    "retardation_derivative",
    "sorbed_mass_density",
]

# PDEBench adds this to c before the power, so that R(0) is finite.
_R_EPS = 1e-6


@dataclass(frozen=True)
class DiffusionSorptionParams:
    """Physical constants of the diffusion-sorption problem (PDEBench defaults).

    Attributes:
        D: effective diffusion coefficient, m^2/s, > 0 (a float, or a scalar tensor so that
            gradients reach it through the solvers: inverse problems).
        porosity: phi, dimensionless, in (0, 1).
        rho_s: bulk density of the solid, kg/m^3, > 0.
        k_f: Freundlich coefficient, > 0.
        n_f: Freundlich exponent, > 0.
        solubility: left Dirichlet value u(0, t), > 0.
        length: domain length L, m, > 0 (x in [0, L]).
        t_final: final time T, s, > 0.
    """

    D: float | Tensor = 5e-4
    porosity: float = 0.29
    rho_s: float = 2880.0
    k_f: float = 3.5e-4
    n_f: float = 0.874
    solubility: float = 1.0
    length: float = 1.0
    t_final: float = 500.0

    def __post_init__(self) -> None:
        for name in ("D", "rho_s", "k_f", "n_f", "solubility", "length", "t_final"):
            value = getattr(self, name)
            if name == "D" and isinstance(value, Tensor) and value.numel() == 1:
                value = float(
                    value.detach()
                )  # a scalar tensor: differentiable D (inverse problems)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a finite positive number, got {value!r}")
        phi = self.porosity
        if not isinstance(phi, (int, float)) or not 0.0 < phi < 1.0:
            raise ValueError(f"porosity must lie in (0, 1), got {phi!r}")

    @property
    def sorption_coefficient(self) -> float:
        """``K = ((1 - phi) / phi) * rho_s * k_f``, the prefactor of the sorbed mass."""
        return (1.0 - self.porosity) / self.porosity * self.rho_s * self.k_f


def _clamped(u: Tensor) -> Tensor:
    # Concentrations are physically >= 0; a numerical undershoot below 0 would make
    # (u + 1e-6)^(n_f - 1) NaN for u < -1e-6, so R is evaluated at max(u, 0).
    return u.clamp_min(0.0) + _R_EPS


def retardation(u: Tensor, params: DiffusionSorptionParams) -> Tensor:
    """Retardation factor ``R(u) = 1 + K n_f (u + 1e-6)^(n_f - 1)``, ``K`` as in the params.

    Negative concentrations are clamped to 0 before the power (``R(u) = R(0)`` for
    ``u < 0``), so an undershoot of a numerical scheme never produces NaN; PDEBench's
    formula is unchanged for ``u >= 0``.

    Args:
        u: (...) float tensor, concentration (dimensionless).
        params: the problem's constants.

    Returns:
        (...) tensor ``R >= 1``, same dtype and device as ``u``.
    """
    K = params.sorption_coefficient
    return 1.0 + K * params.n_f * _clamped(u) ** (params.n_f - 1.0)


def retardation_derivative(u: Tensor, params: DiffusionSorptionParams) -> Tensor:
    """``dR/du = K n_f (n_f - 1) (u + 1e-6)^(n_f - 2)`` for ``u > 0``, and 0 for ``u < 0``.

    Args:
        u: (...) float tensor, concentration.
        params: the problem's constants.

    Returns:
        (...) tensor, same dtype and device as ``u``.
    """
    K = params.sorption_coefficient
    d = K * params.n_f * (params.n_f - 1.0) * _clamped(u) ** (params.n_f - 2.0)
    return torch.where(u < 0, torch.zeros_like(d), d)


def sorbed_mass_density(u: Tensor, params: DiffusionSorptionParams) -> Tensor:
    """Total (dissolved + sorbed) solute per unit pore volume, ``m(u) = u + K (u + 1e-6)^n_f``.

    ``dm/du = R(u)``, so ``R(u) u_t = D u_xx`` is the conservation law ``m(u)_t = D u_xx``.

    Args:
        u: (...) float tensor, concentration.
        params: the problem's constants.

    Returns:
        (...) tensor, same dtype and device as ``u``.
    """
    return u + params.sorption_coefficient * _clamped(u) ** params.n_f


def residual(u: Tensor, u_t: Tensor, u_xx: Tensor, params: DiffusionSorptionParams) -> Tensor:
    """PDE residual ``r = u_t - D / R(u) * u_xx``.

    Args:
        u: (...) concentration.
        u_t: (...) time derivative, 1/s, same shape as ``u``.
        u_xx: (...) second space derivative, 1/m^2, same shape as ``u``.
        params: the problem's constants.

    Returns:
        (...) residual, 1/s.
    """
    if not (u.shape == u_t.shape == u_xx.shape):
        raise ValueError(
            f"u, u_t, u_xx must have equal shapes, got {tuple(u.shape)}, "
            f"{tuple(u_t.shape)}, {tuple(u_xx.shape)}"
        )
    return u_t - params.D / retardation(u, params) * u_xx


@dataclass(frozen=True)
class DiffusionSorptionBoundaryResiduals:
    """Boundary residuals, zero for an exact solution.

    Attributes:
        left: (...) ``u(0, t) - solubility``.
        right: (...) ``u(L, t) - D u_x(L, t)``.
    """

    left: Tensor
    right: Tensor


def boundary_residuals(
    u_left: Tensor, u_right: Tensor, u_x_right: Tensor, params: DiffusionSorptionParams
) -> DiffusionSorptionBoundaryResiduals:
    """Residuals of the two boundary conditions.

    Args:
        u_left: (...) ``u(0, t)`` at some times.
        u_right: (...) ``u(L, t)`` at some times.
        u_x_right: (...) ``u_x(L, t)``, 1/m, same shape as ``u_right``.
        params: the problem's constants.

    Returns:
        The left (Dirichlet ``u = solubility``) and right (``u - D u_x = 0``) residuals.
    """
    if u_right.shape != u_x_right.shape:
        raise ValueError(
            f"u_right and u_x_right must have equal shapes, got {tuple(u_right.shape)} "
            f"and {tuple(u_x_right.shape)}"
        )
    return DiffusionSorptionBoundaryResiduals(
        left=u_left - params.solubility, right=u_right - params.D * u_x_right
    )


def cell_centres(
    nx: int,
    params: DiffusionSorptionParams | None = None,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """Finite-volume cell centres ``x_i = (i + 1/2) dx``, ``dx = L / nx`` (PDEBench's grid).

    Args:
        nx: number of cells, >= 2.
        params: the problem's constants (for ``length``); defaults to PDEBench's.
        dtype: floating dtype of the result.
        device: device of the result.

    Returns:
        (nx,) tensor, metres.
    """
    if not isinstance(nx, int) or nx < 2:
        raise ValueError(f"nx must be an integer >= 2, got {nx!r}")
    length = (params or DiffusionSorptionParams()).length
    dx = length / nx
    return (torch.arange(nx, dtype=torch.float64, device=device) + 0.5).mul(dx).to(dtype)


def initial_condition(
    n_samples: int,
    nx: int,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    *,
    low: float = 0.0,
    high: float = 0.2,
    device: torch.device | str | None = None,
) -> Tensor:
    """PDEBench's initial condition: one constant ``u0 ~ U(low, high)`` per sample.

    Args:
        n_samples: number of samples, >= 1.
        nx: number of cells, >= 1.
        generator: random generator (on ``device``); same seed, same result.
        dtype: floating dtype of the result.
        low: lower bound of the uniform law, >= 0.
        high: upper bound, > ``low``.
        device: device of the result.

    Returns:
        (n_samples, nx) tensor, constant along the last axis.
    """
    if not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"n_samples must be an integer >= 1, got {n_samples!r}")
    if not isinstance(nx, int) or nx < 1:
        raise ValueError(f"nx must be an integer >= 1, got {nx!r}")
    if not (0.0 <= low < high):
        raise ValueError(f"need 0 <= low < high, got low={low!r}, high={high!r}")
    level = torch.rand(n_samples, 1, generator=generator, dtype=torch.float64, device=device)
    return (low + (high - low) * level).expand(n_samples, nx).to(dtype).contiguous()
