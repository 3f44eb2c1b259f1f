"""Differentiable, batched finite-volume solver for 1D diffusion-sorption (PDEBench's scheme).

Space: PDEBench's finite volumes (``pdebench/data_gen/src/sim_diff_sorp.py``), ``nx`` cells of
width ``dx = L / nx`` with centres ``(i + 1/2) dx``, and the semi-discrete system

``du_i/dt = D / R(u_i) * (u_{i-1} - 2 u_i + u_{i+1}) / dx^2``

with the ghost values PDEBench's code implies: ``u_{-1} = solubility`` on the left (Dirichlet
through the ghost) and ``u_{nx} = D (u_{nx-2} - u_{nx-1}) / dx`` on the right (a tiny term, so
the right end is close to absorbing; the PDE's own ``u = D u_x`` is *not* what the data follow).

Time: PDEBench integrates this with scipy's explicit RK45, which is stability-limited
(``D / (R dx^2) ~ 600 /s`` at 1024 cells, so ~1e5 steps over 500 s). Here a linearly implicit
Rosenbrock method with step control is used instead: the L-stable second-order W-method of
Shampine and Reichelt (MATLAB's ``ode23s``, SIAM J. Sci. Comput. 18, 1997) with its embedded
third-order error estimate. The W matrix ``I - h d J`` uses a tridiagonal approximation ``J`` of
the Jacobian (the diffusion part, plus the stabilising part of the sorption term), which keeps
``W`` a strictly diagonally dominant M-matrix; a W-method keeps its order with any ``J``.
The tridiagonal systems are solved by parallel cyclic reduction, written here because torch
has no batched tridiagonal solver; PCR is vectorised over cells (``log2 nx`` levels) and is
stable without pivoting for diagonally dominant matrices. Step control is shared over the batch
(the worst sample decides); steps are cut to land exactly on the stored times.

Everything is plain torch, so autograd runs through the whole rollout (the step sizes are
chosen from detached error estimates: the gradient is that of the discrete map actually run).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from solvers.pdes.diffusion_sorption import (
    DiffusionSorptionParams,
    cell_centres,
    retardation,
    retardation_derivative,
    sorbed_mass_density,
)

__all__ = [
    "DiffusionSorptionSolution",
    "boundary_flux",
    "diffusion_sorption_rhs",
    "mass_balance_defect",
    "solve_diffusion_sorption",
    "total_mass",
]

logger = logging.getLogger(__name__)

# ode23s constants (Shampine & Reichelt 1997, section 3): d = 1 / (2 + sqrt 2), e32 = 6 + sqrt 2.
_D = 1.0 / (2.0 + math.sqrt(2.0))
_E32 = 6.0 + math.sqrt(2.0)


@dataclass(frozen=True)
class DiffusionSorptionSolution:
    """A diffusion-sorption rollout.

    Attributes:
        u: (B, T, nx) concentration at the stored times (u[:, 0] is the initial condition).
        t: (T,) stored times, s.
        x: (nx,) cell centres ``(i + 1/2) dx``, m.
        steps: accepted time steps.
        rejected: rejected time steps.
        n_rhs: right-hand-side evaluations.
        converged: True when every stored time was reached with finite values.
        status: a short message; why the integration stopped when ``converged`` is False.
    """

    u: Tensor
    t: Tensor
    x: Tensor
    steps: int
    rejected: int
    n_rhs: int
    converged: bool
    status: str


def _neighbours(u: Tensor, params: DiffusionSorptionParams) -> tuple[Tensor, Tensor]:
    """Left and right neighbours of every cell, with PDEBench's ghost values."""
    dx = params.length / u.shape[-1]
    left = F.pad(u[..., :-1], (1, 0), value=params.solubility)
    ghost_right = params.D * (u[..., -2:-1] - u[..., -1:]) / dx
    right = torch.cat([u[..., 1:], ghost_right], dim=-1)
    return left, right


def _laplacian(u: Tensor, params: DiffusionSorptionParams) -> Tensor:
    """``(u_{i-1} - 2 u_i + u_{i+1}) / dx^2`` with the ghost values of the module docstring."""
    dx = params.length / u.shape[-1]
    left, right = _neighbours(u, params)
    return (left - 2.0 * u + right) / (dx * dx)


def _check_field(u: Tensor, name: str) -> None:
    if not isinstance(u, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(u).__name__}")
    if not u.is_floating_point():
        raise ValueError(f"{name} must be a floating tensor, got dtype {u.dtype}")
    if u.ndim < 1 or u.shape[-1] < 2:
        raise ValueError(f"{name} must have shape (..., nx) with nx >= 2, got {tuple(u.shape)}")


def diffusion_sorption_rhs(u: Tensor, params: DiffusionSorptionParams | None = None) -> Tensor:
    """Semi-discrete right-hand side ``du/dt`` of PDEBench's finite-volume scheme.

    Args:
        u: (..., nx) float tensor, cell averages of the concentration.
        params: the problem's constants; PDEBench's by default.

    Returns:
        (..., nx) tensor, 1/s, same dtype and device as ``u``.
    """
    params = params or DiffusionSorptionParams()
    _check_field(u, "u")
    return params.D / retardation(u, params) * _laplacian(u, params)


def _approx_jacobian(u: Tensor, params: DiffusionSorptionParams) -> tuple[Tensor, Tensor, Tensor]:
    """Tridiagonal ``J ~ df/du``: sub-, main and super-diagonal, each (..., nx).

    Exact for the diffusion part ``D / R(u_i) * lap_i``; of the sorption part
    ``d(D / R)/du * lap`` only the non-positive values are kept, so ``I - h d J`` stays an
    M-matrix (the W-method is second order for any ``J``).
    """
    nx = u.shape[-1]
    dx = params.length / nx
    inv_dx2 = 1.0 / (dx * dx)
    R = retardation(u, params)
    r = params.D / R
    dr = -params.D * retardation_derivative(u, params) / (R * R)
    sorption = (dr * _laplacian(u, params)).clamp_max(0.0)
    off = r * inv_dx2
    # the right ghost D (u_{n-2} - u_{n-1}) / dx couples the last two cells
    ghost = F.pad(off[..., -1:] * (params.D / dx), (nx - 1, 0))
    diag = -2.0 * off + sorption - ghost
    sub = F.pad(off[..., 1:], (1, 0)) + ghost
    sup = F.pad(off[..., :-1], (0, 1))
    return sub, diag, sup


def _shift_down(x: Tensor, s: int, fill: float) -> Tensor:
    """``y_i = x_{i-s}``, with ``fill`` for ``i < s``."""
    return F.pad(x[..., :-s], (s, 0), value=fill)


def _shift_up(x: Tensor, s: int, fill: float) -> Tensor:
    """``y_i = x_{i+s}``, with ``fill`` for ``i >= n - s``."""
    return F.pad(x[..., s:], (0, s), value=fill)


@dataclass(frozen=True)
class _PCRFactor:
    """Parallel cyclic reduction of a tridiagonal matrix, reusable for many right sides."""

    alphas: tuple[Tensor, ...]
    betas: tuple[Tensor, ...]
    strides: tuple[int, ...]
    diag: Tensor

    @classmethod
    def factor(cls, a: Tensor, b: Tensor, c: Tensor) -> _PCRFactor:
        """Factor rows ``a_i x_{i-1} + b_i x_i + c_i x_{i+1}``; ``a_0 = c_{n-1} = 0``."""
        n = b.shape[-1]
        alphas, betas, strides = [], [], []
        s = 1
        while s < n:
            # eliminate x_{i-s} and x_{i+s} from row i using rows i-s and i+s
            alpha = -a / _shift_down(b, s, 1.0)
            beta = -c / _shift_up(b, s, 1.0)
            b = b + alpha * _shift_down(c, s, 0.0) + beta * _shift_up(a, s, 0.0)
            a = alpha * _shift_down(a, s, 0.0)
            c = beta * _shift_up(c, s, 0.0)
            alphas.append(alpha)
            betas.append(beta)
            strides.append(s)
            s *= 2
        return cls(tuple(alphas), tuple(betas), tuple(strides), b)

    def solve(self, d: Tensor) -> Tensor:
        for alpha, beta, s in zip(self.alphas, self.betas, self.strides, strict=True):
            d = d + alpha * _shift_down(d, s, 0.0) + beta * _shift_up(d, s, 0.0)
        return d / self.diag


def _check_times(t_eval: Tensor) -> None:
    if not isinstance(t_eval, Tensor) or t_eval.ndim != 1 or t_eval.numel() < 1:
        raise ValueError(
            f"t_eval must be a 1D tensor of >= 1 times, got "
            f"{tuple(t_eval.shape) if isinstance(t_eval, Tensor) else type(t_eval).__name__}"
        )
    if not torch.isfinite(t_eval).all():
        raise ValueError(f"t_eval must be finite, got {t_eval.tolist()}")
    if t_eval.numel() > 1 and not bool((t_eval[1:] > t_eval[:-1]).all()):
        raise ValueError(f"t_eval must be strictly increasing, got {t_eval.tolist()}")


def solve_diffusion_sorption(
    u0: Tensor,
    t_eval: Tensor,
    params: DiffusionSorptionParams | None = None,
    *,
    rtol: float = 1e-4,
    atol: float = 1e-7,
    first_step: float | None = None,
    max_step: float | None = None,
    max_steps: int = 100_000,
) -> DiffusionSorptionSolution:
    """Integrate PDEBench's finite-volume diffusion-sorption scheme from ``t_eval[0]``.

    Args:
        u0: (B, nx) float tensor, initial cell averages at time ``t_eval[0]``; its dtype and
            device are those of the computation and the result.
        t_eval: (T,) strictly increasing times, s; ``u[:, 0]`` is ``u0``.
        params: the problem's constants; PDEBench's by default.
        rtol: relative tolerance of the local error (per step, RMS over cells, worst sample).
        atol: absolute tolerance of the local error.
        first_step: initial step, s; estimated from the right-hand side if None.
        max_step: upper bound on the step, s; unbounded if None.
        max_steps: give up (``converged=False``) after this many attempted steps.

    Returns:
        The rollout with ``u`` (B, T, nx), the stored times, the cell centres and step counts.
        When the integration fails (step underflow, non-finite values, ``max_steps``) the
        remaining stored times hold NaN, ``converged`` is False and ``status`` says why.
    """
    params = params or DiffusionSorptionParams()
    _check_field(u0, "u0")
    if u0.ndim != 2:
        raise ValueError(f"u0 must have shape (B, nx), got {tuple(u0.shape)}")
    if not bool(torch.isfinite(u0).all()):
        raise ValueError("u0 contains NaN or infinite values")
    _check_times(t_eval)
    for name, value in (("rtol", rtol), ("atol", atol)):
        if not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
            raise ValueError(f"{name} must be a finite positive number, got {value!r}")
    if max_step is not None and not max_step > 0:
        raise ValueError(f"max_step must be positive, got {max_step!r}")
    if first_step is not None and not first_step > 0:
        raise ValueError(f"first_step must be positive, got {first_step!r}")

    times = [float(v) for v in t_eval.detach().cpu().double()]
    t_out = t_eval.to(u0.dtype)
    x = cell_centres(u0.shape[-1], params, dtype=u0.dtype, device=u0.device)
    span = times[-1] - times[0]
    h_max = max_step if max_step is not None else max(span, 1e-300)

    def rhs(y: Tensor) -> Tensor:
        return params.D / retardation(y, params) * _laplacian(y, params)

    def scale(*ys: Tensor) -> Tensor:
        m = ys[0].detach().abs()
        for y in ys[1:]:
            m = torch.maximum(m, y.detach().abs())
        return atol + rtol * m

    def norm(v: Tensor, sc: Tensor) -> float:
        # RMS over cells, worst sample of the batch
        return float((v.detach() / sc).pow(2).mean(dim=-1).sqrt().max())

    y = u0
    f0 = rhs(y)
    n_rhs = 1
    if first_step is None:
        sc = scale(y)
        d0, d1 = norm(y, sc), norm(f0, sc)
        h = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
        h = min(h, h_max, span if span > 0 else h)
    else:
        h = min(first_step, h_max)

    outputs = [y]
    steps = rejected = attempts = 0
    status = "reached the final time"
    converged = True
    t = times[0]
    for target in times[1:]:
        while t < target:
            if attempts >= max_steps:
                converged, status = False, f"max_steps={max_steps} exceeded at t={t:.6g}"
                break
            attempts += 1
            h_step = min(h, target - t)
            last = t + h_step >= target - 1e-12 * max(abs(target), 1.0)
            if last:
                h_step = target - t
            if h_step <= 16 * math.ulp(max(abs(t), 1.0)):
                converged, status = False, f"step size underflow at t={t:.6g}"
                break
            sub, diag, sup = _approx_jacobian(y, params)
            hd = h_step * _D
            lu = _PCRFactor.factor(-hd * sub, 1.0 - hd * diag, -hd * sup)
            # ode23s stages (autonomous): W k1 = F0, W (k2 - k1) = F1 - k1, ...
            k1 = lu.solve(f0)
            f1 = rhs(y + 0.5 * h_step * k1)
            k2 = lu.solve(f1 - k1) + k1
            y_new = y + h_step * k2
            f2 = rhs(y_new)
            k3 = lu.solve(f2 - _E32 * (k2 - f1) - 2.0 * (k1 - f0))
            n_rhs += 2
            err = (h_step / 6.0) * (k1 - 2.0 * k2 + k3)
            err_norm = norm(err, scale(y, y_new))
            if not math.isfinite(err_norm):
                err_norm = math.inf
            if err_norm <= 1.0:
                steps += 1
                t = target if last else t + h_step
                y, f0 = y_new, f2
                factor = 5.0 if err_norm == 0 else min(5.0, 0.9 * err_norm ** (-1.0 / 3.0))
                # a step cut to land on a stored time says nothing about the next step size
                h = min(h_max, max(h, h_step * factor) if last else h_step * factor)
            else:
                rejected += 1
                h = h_step * max(0.2, 0.9 * err_norm ** (-1.0 / 3.0))
        if not converged:
            break
        outputs.append(y)
    if not converged:
        logger.warning("diffusion-sorption integration stopped: %s", status)
        nan = torch.full_like(u0, math.nan)
        outputs += [nan] * (len(times) - len(outputs))
    elif not bool(torch.isfinite(y).all()):
        converged, status = False, "non-finite values in the solution"
        logger.warning("diffusion-sorption integration: %s", status)
    return DiffusionSorptionSolution(
        u=torch.stack(outputs, dim=1),
        t=t_out,
        x=x,
        steps=steps,
        rejected=rejected,
        n_rhs=n_rhs,
        converged=converged,
        status=status,
    )


def total_mass(u: Tensor, params: DiffusionSorptionParams | None = None) -> Tensor:
    """Total solute (dissolved + sorbed) ``sum_i dx m(u_i)``, ``m`` the sorbed mass density.

    The scheme conserves it up to the boundary fluxes: ``d/dt total_mass = boundary_flux``.

    Args:
        u: (..., nx) cell averages.
        params: the problem's constants; PDEBench's by default.

    Returns:
        (...) tensor, m (concentration times length).
    """
    params = params or DiffusionSorptionParams()
    _check_field(u, "u")
    dx = params.length / u.shape[-1]
    return dx * sorbed_mass_density(u, params).sum(dim=-1)


def boundary_flux(u: Tensor, params: DiffusionSorptionParams | None = None) -> Tensor:
    """Net inflow through both ends of the discrete scheme, ``D / dx ((g_L - u_0) + (g_R - u_{n-1}))``.

    ``g_L = solubility`` and ``g_R = D (u_{n-2} - u_{n-1}) / dx`` are the ghost values. Since
    ``R(u_i) du_i/dt = D lap_i`` and the Laplacian telescopes, this equals the time derivative
    of :func:`total_mass` exactly at the semi-discrete level.

    Args:
        u: (..., nx) cell averages.
        params: the problem's constants; PDEBench's by default.

    Returns:
        (...) tensor, m/s.
    """
    params = params or DiffusionSorptionParams()
    _check_field(u, "u")
    dx = params.length / u.shape[-1]
    g_right = params.D * (u[..., -2] - u[..., -1]) / dx
    return params.D / dx * ((params.solubility - u[..., 0]) + (g_right - u[..., -1]))


def mass_balance_defect(
    solution: DiffusionSorptionSolution, params: DiffusionSorptionParams | None = None
) -> Tensor:
    """``M(t) - M(t_0) - int_{t_0}^t flux`` at the stored times, relative to ``max |M|``.

    The flux integral is the trapezoid rule on the stored times, so the defect measures the
    time integrator's conservation error plus the trapezoid error (second order in the
    spacing of the stored times; store densely to make it small).

    Args:
        solution: a rollout from :func:`solve_diffusion_sorption`.
        params: the constants it was run with.

    Returns:
        (B, T) relative defect, zero at the first time.
    """
    params = params or DiffusionSorptionParams()
    mass = total_mass(solution.u, params)
    flux = boundary_flux(solution.u, params)
    dt = (solution.t[1:] - solution.t[:-1]).to(flux.dtype)
    increments = 0.5 * (flux[:, 1:] + flux[:, :-1]) * dt
    inflow = F.pad(torch.cumsum(increments, dim=-1), (1, 0))
    scale = mass.abs().amax(dim=-1, keepdim=True).clamp_min(torch.finfo(mass.dtype).tiny)
    return (mass - mass[:, :1] - inflow) / scale
