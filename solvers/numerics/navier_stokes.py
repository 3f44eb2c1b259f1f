"""Differentiable, batched pseudo-spectral solver for 2D periodic Navier-Stokes (vorticity).

The scheme of FNO's and Neural-Spectral-Methods' data generators: vorticity kept in Fourier
space (``rfft2``), velocity from the stream function, the advection term ``u w_x + v w_y``
evaluated on the grid and dealiased by the 2/3 rule (modes with ``|m| > n/3`` on either axis
dropped), viscosity by Crank-Nicolson and advection + forcing by Heun's method:

``w* = ((1 - a) w + dt F(w, t)) / (1 + a)``,
``w_new = ((1 - a) w + dt/2 (F(w, t) + F(w*, t + dt))) / (1 + a)``, ``a = dt nu |k|^2 / 2``,

with ``F = -(u w_x + v w_y) + f``. Each step costs two ``irfft2`` of 4 fields (u, v, w_x, w_y)
and two ``rfft2`` of 1 field (plus one ``rfft2`` per stage for a callable forcing); the state
returns to the grid only at the stored times. Grid convention: that of
:mod:`solvers.pdes.navier_stokes` (``w[..., i, j] = w(x_i, y_j)``, ``x_i = i L / n``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from solvers.pdes.navier_stokes import NavierStokesParams, wavenumbers

__all__ = ["NavierStokesSolution", "solve_navier_stokes"]


@dataclass(frozen=True)
class NavierStokesSolution:
    """A Navier-Stokes rollout.

    Attributes:
        w: (B, T, n, n) vorticity at the stored times (w[:, 0] is the initial condition).
        t: (T,) stored times.
        x: (n,) grid coordinates ``i L / n`` (the same along both axes).
        steps: time steps taken.
    """

    w: Tensor
    t: Tensor
    x: Tensor
    steps: int


def _check_inputs(w0: Tensor, t_eval: Tensor, dt: float) -> None:
    if not isinstance(w0, Tensor) or not w0.is_floating_point():
        raise ValueError(f"w0 must be a floating torch.Tensor, got {type(w0).__name__}")
    if w0.ndim != 3 or w0.shape[-1] != w0.shape[-2] or w0.shape[-1] < 4 or w0.shape[-1] % 2:
        raise ValueError(f"w0 must have shape (B, n, n) with n even >= 4, got {tuple(w0.shape)}")
    if not bool(torch.isfinite(w0).all()):
        raise ValueError("w0 contains NaN or infinite values")
    if not isinstance(t_eval, Tensor) or t_eval.ndim != 1 or t_eval.numel() < 1:
        raise ValueError("t_eval must be a 1D tensor of >= 1 times")
    if not bool(torch.isfinite(t_eval).all()):
        raise ValueError(f"t_eval must be finite, got {t_eval.tolist()}")
    if t_eval.numel() > 1 and not bool((t_eval[1:] > t_eval[:-1]).all()):
        raise ValueError(f"t_eval must be strictly increasing, got {t_eval.tolist()}")
    if not (isinstance(dt, (int, float)) and math.isfinite(dt) and dt > 0):
        raise ValueError(f"dt must be a finite positive number, got {dt!r}")


def solve_navier_stokes(
    w0: Tensor,
    t_eval: Tensor,
    params: NavierStokesParams,
    *,
    dt: float = 1e-3,
    dealias: bool = True,
) -> NavierStokesSolution:
    """Integrate the periodic vorticity equation from ``t_eval[0]``.

    Args:
        w0: (B, n, n) float vorticity at ``t_eval[0]`` (n even); its dtype and device are those
            of the computation and the result.
        t_eval: (T,) strictly increasing times; ``w[:, 0]`` is ``w0``.
        params: viscosity, box side and optional forcing (see ``NavierStokesParams``).
        dt: largest time step; each interval between stored times is split into equal steps
            no longer than ``dt``. The advection is explicit: keep ``dt max|u| n / L`` below ~1.
        dealias: apply the 2/3 rule to the advection term.

    Returns:
        The rollout: ``w`` (B, T, n, n), ``t``, the grid and the step count.
    """
    _check_inputs(w0, t_eval, dt)
    n = w0.shape[-1]
    real = w0.dtype
    kx, ky = wavenumbers(n, params.length, dtype=real, device=w0.device)
    k2 = kx**2 + ky**2
    inv_k2 = torch.where(k2 == 0, torch.zeros_like(k2), 1.0 / torch.where(k2 == 0, 1.0, k2))
    # Nyquist modes have no odd derivative in a real field
    kx_d = torch.where(kx.abs() == kx.abs().max(), torch.zeros_like(kx), kx)
    ky_d = torch.where(ky == ky.max(), torch.zeros_like(ky), ky)
    ikx, iky = 1j * kx_d, 1j * ky_d
    # spectral multipliers of u = psi_y, v = -psi_x, w_x, w_y (psi_hat = w_hat / |k|^2), so one
    # broadcast product gives the four fields for one inverse transform
    multipliers = torch.stack(
        torch.broadcast_tensors(iky * inv_k2, -ikx * inv_k2, ikx + 0 * iky, iky + 0 * ikx)
    )
    if dealias:
        mx = torch.fft.fftfreq(n, d=1.0 / n, device=w0.device).abs()[:, None]
        my = torch.fft.rfftfreq(n, d=1.0 / n, device=w0.device)[None, :]
        mask = ((mx <= n / 3) & (my <= n / 3)).to(real)
    else:
        mask = torch.ones_like(k2)
    grid = torch.arange(n, dtype=torch.float64, device=w0.device).mul(params.length / n).to(real)
    gx, gy = torch.meshgrid(grid, grid, indexing="ij")

    forcing = params.forcing
    f_hat_const = None
    if isinstance(forcing, Tensor):
        if forcing.shape[-2:] != (n, n):
            raise ValueError(f"forcing must have shape (..., {n}, {n}), got {tuple(forcing.shape)}")
        f_hat_const = torch.fft.rfft2(forcing.to(device=w0.device, dtype=real))

    def forcing_hat(t: float) -> Tensor | None:
        if f_hat_const is not None:
            return f_hat_const
        if forcing is None:
            return None
        return torch.fft.rfft2(forcing(gx, gy, t).to(real))

    def advection_hat(w_hat: Tensor) -> Tensor:
        """``rfft2(u w_x + v w_y)``, before dealiasing (the mask is folded into the update)."""
        fields = torch.fft.irfft2(w_hat[:, None] * multipliers, s=(n, n))
        return torch.fft.rfft2(fields[:, 0] * fields[:, 2] + fields[:, 1] * fields[:, 3])

    w_hat = torch.fft.rfft2(w0)
    times = [float(s) for s in t_eval.detach().cpu().double()]
    outputs = [w0]
    steps = 0
    for t_prev, t_next in zip(times[:-1], times[1:], strict=True):
        n_sub = max(1, math.ceil((t_next - t_prev) / dt - 1e-9))
        h = (t_next - t_prev) / n_sub
        a = 0.5 * h * params.nu * k2
        lhs = 1.0 / (1.0 + a)
        keep = (1.0 - a) * lhs  # Crank-Nicolson factor of the viscous term
        # F = -mask * advection_hat + f_hat, folded into the coefficients
        pred = -h * lhs * mask
        corr = -0.5 * h * lhs * mask
        for i in range(n_sub):
            t = t_prev + i * h
            kept = keep * w_hat
            A0 = advection_hat(w_hat)
            w_star = kept + pred * A0  # Euler predictor
            f0 = forcing_hat(t)
            if f0 is not None:
                w_star = w_star + (h * lhs) * f0
            A1 = advection_hat(w_star)
            w_new = kept + corr * (A0 + A1)  # Heun corrector
            if f0 is not None:
                f1 = f0 if f_hat_const is not None else forcing_hat(t + h)
                w_new = w_new + (0.5 * h * lhs) * (f0 + f1)
            w_hat = w_new
            steps += 1
        outputs.append(torch.fft.irfft2(w_hat, s=(n, n)))
    return NavierStokesSolution(
        w=torch.stack(outputs, dim=1), t=t_eval.to(real), x=grid, steps=steps
    )
