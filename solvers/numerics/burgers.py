"""Differentiable, batched pseudo-spectral solver for viscous Burgers on ``[0, 2 pi)``.

``u_t = -(u^2 / 2)_x + nu u_xx`` in Fourier space: the stiff viscous term ``L = -nu k^2`` is
integrated exactly and the nonlinear term by ETDRK4 (Cox & Matthews, J. Comput. Phys. 176,
2002), with the phi-function coefficients evaluated by the contour integrals of Kassam &
Trefethen (SIAM J. Sci. Comput. 26, 2005) so they are accurate for small ``h L`` too. The
product ``u^2`` is dealiased by the 3/2 rule (zero-padded to ``3 n / 2`` points), which
removes aliasing without truncating any of the ``n`` modes. Time steps are cut so that every
stored time is hit exactly. All operations are torch, so autograd runs through the rollout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["BurgersSolution", "solve_burgers"]

_LENGTH = 2.0 * math.pi
# points on the contour for the phi-functions (Kassam & Trefethen use 32 for real L)
_CONTOUR_POINTS = 64


@dataclass(frozen=True)
class BurgersSolution:
    """A Burgers rollout on the periodic grid ``x_i = 2 pi i / n``.

    Attributes:
        u: (B, T, n) solution at the stored times (u[:, 0] is the initial condition).
        t: (T,) stored times.
        x: (n,) grid points, radians.
        steps: ETDRK4 steps taken.
    """

    u: Tensor
    t: Tensor
    x: Tensor
    steps: int


def _etdrk4_coefficients(L: Tensor, h: float) -> tuple[Tensor, ...]:
    """``E, E2, Q, f1, f2, f3`` of ETDRK4 for the diagonal operator ``L`` (real, (K,))."""
    j = torch.arange(1, _CONTOUR_POINTS + 1, dtype=torch.float64, device=L.device)
    roots = torch.exp(1j * math.pi * (j - 0.5) / _CONTOUR_POINTS)
    hL = h * L.double()
    LR = hL[:, None] + roots[None, :]
    eLR = torch.exp(LR)
    Q = h * ((torch.exp(LR / 2) - 1.0) / LR).mean(-1).real
    f1 = h * ((-4.0 - LR + eLR * (4.0 - 3.0 * LR + LR**2)) / LR**3).mean(-1).real
    f2 = h * ((2.0 + LR + eLR * (LR - 2.0)) / LR**3).mean(-1).real
    f3 = h * ((-4.0 - 3.0 * LR - LR**2 + eLR * (4.0 - LR)) / LR**3).mean(-1).real
    return torch.exp(hL), torch.exp(hL / 2), Q, f1, f2, f3


def _check_inputs(u0: Tensor, t_eval: Tensor, nu: float) -> None:
    if not isinstance(u0, Tensor) or not u0.is_floating_point():
        raise ValueError(f"u0 must be a floating torch.Tensor, got {type(u0).__name__}")
    if u0.ndim != 2 or u0.shape[-1] < 4 or u0.shape[-1] % 2:
        raise ValueError(f"u0 must have shape (B, n) with n even and >= 4, got {tuple(u0.shape)}")
    if not bool(torch.isfinite(u0).all()):
        raise ValueError("u0 contains NaN or infinite values")
    if not (isinstance(nu, (int, float)) and math.isfinite(nu) and nu >= 0):
        raise ValueError(f"nu must be a finite non-negative viscosity, got {nu!r}")
    if not isinstance(t_eval, Tensor) or t_eval.ndim != 1 or t_eval.numel() < 1:
        raise ValueError("t_eval must be a 1D tensor of >= 1 times")
    if not bool(torch.isfinite(t_eval).all()):
        raise ValueError(f"t_eval must be finite, got {t_eval.tolist()}")
    if t_eval.numel() > 1 and not bool((t_eval[1:] > t_eval[:-1]).all()):
        raise ValueError(f"t_eval must be strictly increasing, got {t_eval.tolist()}")


def solve_burgers(
    u0: Tensor,
    t_eval: Tensor,
    nu: float,
    *,
    dt: float | None = None,
    cfl: float = 0.5,
    dealias: bool = True,
) -> BurgersSolution:
    """Integrate ``u_t + u u_x = nu u_xx`` on the periodic ``[0, 2 pi)`` from ``t_eval[0]``.

    Args:
        u0: (B, n) float tensor, initial values at ``x_i = 2 pi i / n`` (n even); its dtype
            and device are those of the computation and the result.
        t_eval: (T,) strictly increasing times; ``u[:, 0]`` is ``u0``.
        nu: viscosity, ``>= 0`` (0 is inviscid, valid only before a shock forms).
        dt: largest time step; if None, ``cfl * dx / max|u0|`` (advective CFL number
            ``cfl``; ETDRK4 treats the viscous term exactly, so it sets no limit). Each interval
            between stored times is split into equal steps no longer than ``dt``.
        cfl: CFL number of the automatic ``dt``.
        dealias: zero-pad to ``3 n / 2`` points for the product (the 3/2 rule); if False the
            product is taken on the ``n``-point grid (aliased).

    Returns:
        The rollout: ``u`` (B, T, n), ``t``, ``x`` and the number of steps.
    """
    _check_inputs(u0, t_eval, nu)
    n = u0.shape[-1]
    dx = _LENGTH / n
    if dt is None:
        amp = float(u0.detach().abs().max())
        dt = cfl * dx / max(amp, 1e-12)
    elif not (isinstance(dt, (int, float)) and dt > 0 and math.isfinite(dt)):
        raise ValueError(f"dt must be a finite positive number, got {dt!r}")

    real = u0.dtype
    k = torch.fft.rfftfreq(n, d=1.0 / n, dtype=torch.float64, device=u0.device)  # integers
    L = -nu * k**2
    k_deriv = torch.where(k == n // 2, torch.zeros_like(k), k)  # no derivative of Nyquist
    ik_half = (-0.5j * k_deriv).to(torch.complex128 if real == torch.float64 else torch.complex64)
    m = 3 * n // 2 if dealias else n
    n_freq = k.numel()

    def nonlinear(v_hat: Tensor) -> Tensor:
        # -(u^2/2)_x, products on m points; rfft/irfft with norm="forward" keep amplitudes
        u = torch.fft.irfft(v_hat, n=m, norm="forward")
        return ik_half * torch.fft.rfft(u * u, norm="forward")[..., :n_freq]

    v = torch.fft.rfft(u0, norm="forward")
    if n_freq > 1:  # the Nyquist mode is not representable in a real field's derivative
        v = torch.cat([v[..., :-1], torch.zeros_like(v[..., -1:])], dim=-1)
    times = [float(s) for s in t_eval.detach().cpu().double()]
    outputs = [u0]
    cache: dict[float, tuple[Tensor, ...]] = {}
    steps = 0
    for t_prev, t_next in zip(times[:-1], times[1:], strict=True):
        n_sub = max(1, math.ceil((t_next - t_prev) / dt - 1e-9))
        h = (t_next - t_prev) / n_sub
        key = round(h, 15)
        if key not in cache:
            cache[key] = tuple(c.to(real) for c in _etdrk4_coefficients(L, h))
        E, E2, Q, f1, f2, f3 = cache[key]
        for _ in range(n_sub):
            # ETDRK4 (Cox & Matthews 2002, eqs. 26-29)
            Nv = nonlinear(v)
            a = E2 * v + Q * Nv
            Na = nonlinear(a)
            b = E2 * v + Q * Na
            Nb = nonlinear(b)
            c = E2 * a + Q * (2.0 * Nb - Nv)
            Nc = nonlinear(c)
            v = E * v + f1 * Nv + 2.0 * f2 * (Na + Nb) + f3 * Nc
            steps += 1
        outputs.append(torch.fft.irfft(v, n=n, norm="forward"))
    x = torch.arange(n, dtype=torch.float64, device=u0.device).mul(dx).to(real)
    return BurgersSolution(u=torch.stack(outputs, dim=1), t=t_eval.to(real), x=x, steps=steps)
