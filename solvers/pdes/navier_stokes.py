"""2D incompressible Navier-Stokes in vorticity form on the periodic box ``[0, L)^2``.

``w_t + u w_x + v w_y = nu (w_xx + w_yy) + f``, ``w = v_x - u_y``, ``u_x + v_y = 0``.
The velocity comes from the stream function: ``-lap psi = w``, ``u = psi_y``, ``v = -psi_x``.

Array convention (as FNO's and PI-HC-MoE's data): a field ``w[..., i, j]`` holds
``w(x_i, y_j)`` with ``x_i = i L / n`` along the second-to-last axis and ``y_j = j L / n``
along the last axis (``torch.meshgrid(x, y, indexing="ij")``). Units: lengths in box units,
``nu`` in length^2 per time, ``w`` in 1/time.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch
from scipy.special import ive
from torch import Tensor

__all__ = [
    "NavierStokesParams",
    "Velocity",
    "gaussian_random_field",
    "residual",
    "taylor_green",
    "taylor_green_velocity",
    "velocity_from_vorticity",
    "wavenumbers",
]

Forcing = Callable[[Tensor, Tensor, float], Tensor]


@dataclass(frozen=True)
class NavierStokesParams:
    """Parameters of the periodic vorticity equation.

    Attributes:
        nu: kinematic viscosity, > 0 (length^2 per time).
        length: side ``L`` of the periodic box, > 0.
        forcing: None (unforced), a (n, n) or (B, n, n) tensor ``f(x, y)`` (time-independent),
            or a callable ``f(x, y, t) -> (n, n) or (B, n, n)`` taking the ``indexing="ij"``
            grids ``x, y`` (n, n) and the time ``t`` (float).
    """

    nu: float = 1e-4
    length: float = 1.0
    forcing: Tensor | Forcing | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not (isinstance(self.nu, (int, float)) and math.isfinite(self.nu) and self.nu > 0):
            raise ValueError(f"nu must be a finite positive viscosity, got {self.nu!r}")
        if not (
            isinstance(self.length, (int, float)) and math.isfinite(self.length) and self.length > 0
        ):
            raise ValueError(f"length must be a finite positive number, got {self.length!r}")
        if self.forcing is not None and not (
            isinstance(self.forcing, Tensor) or callable(self.forcing)
        ):
            raise ValueError(
                f"forcing must be None, a tensor or a callable, got {type(self.forcing).__name__}"
            )


class Velocity(NamedTuple):
    """A velocity field: ``u`` (x-component) and ``v`` (y-component), each (..., n, n)."""

    u: Tensor
    v: Tensor


def wavenumbers(
    n: int, length: float = 1.0, *, dtype: torch.dtype = torch.float64, device=None
) -> tuple[Tensor, Tensor]:
    """Angular wavenumbers of ``rfft2`` on an ``n x n`` grid of the box ``[0, L)^2``.

    Args:
        n: grid points per side.
        length: box side ``L``.
        dtype: real dtype of the result.
        device: device of the result.

    Returns:
        ``kx`` (n, 1) along the x axis (full FFT axis) and ``ky`` (1, n // 2 + 1) along the
        y axis (half axis), both ``2 pi / L`` times integers.
    """
    scale = 2.0 * math.pi / length
    kx = torch.fft.fftfreq(n, d=1.0 / n, dtype=torch.float64, device=device) * scale
    ky = torch.fft.rfftfreq(n, d=1.0 / n, dtype=torch.float64, device=device) * scale
    return kx.to(dtype)[:, None], ky.to(dtype)[None, :]


def _check_square(w: Tensor, name: str = "w") -> int:
    if not isinstance(w, Tensor) or not w.is_floating_point():
        raise ValueError(f"{name} must be a floating torch.Tensor")
    if w.ndim < 2 or w.shape[-1] != w.shape[-2] or w.shape[-1] < 4 or w.shape[-1] % 2:
        raise ValueError(
            f"{name} must have shape (..., n, n) with n even >= 4, got {tuple(w.shape)}"
        )
    return w.shape[-1]


def velocity_from_vorticity(w: Tensor, length: float = 1.0) -> Velocity:
    """Divergence-free velocity of a periodic vorticity field, by the FFT stream function.

    ``psi_hat = w_hat / |k|^2`` (the mean mode is set to 0), ``u = psi_y``, ``v = -psi_x``.
    The mean of ``w`` does not enter (a periodic velocity has zero-mean vorticity).

    Args:
        w: (..., n, n) float vorticity on the grid of the module docstring, 1/time.
        length: box side ``L``.

    Returns:
        ``Velocity(u, v)``, each (..., n, n), same dtype and device as ``w``.
    """
    n = _check_square(w)
    kx, ky = wavenumbers(n, length, dtype=w.dtype, device=w.device)
    k2 = kx**2 + ky**2
    # psi_hat = w_hat / |k|^2, with the mean mode set to 0 (1 / |k|^2 -> 0 at k = 0)
    inv_k2 = torch.where(k2 == 0, torch.zeros_like(k2), 1.0 / torch.where(k2 == 0, 1.0, k2))
    psi_hat = torch.fft.rfft2(w) * inv_k2
    # Nyquist modes have no odd derivative in a real field
    kx_d = torch.where(kx.abs() == kx.abs().max(), torch.zeros_like(kx), kx)
    ky_d = torch.where(ky == ky.max(), torch.zeros_like(ky), ky)
    u = torch.fft.irfft2(1j * ky_d * psi_hat, s=(n, n))
    v = torch.fft.irfft2(-1j * kx_d * psi_hat, s=(n, n))
    return Velocity(u, v)


def residual(
    w_t: Tensor,
    u: Tensor,
    v: Tensor,
    w_x: Tensor,
    w_y: Tensor,
    lap_w: Tensor,
    params: NavierStokesParams,
    forcing: Tensor | None = None,
) -> Tensor:
    """PDE residual ``r = w_t + u w_x + v w_y - nu lap w - f``.

    Args:
        w_t: (...) time derivative of the vorticity.
        u: (...) x-velocity.
        v: (...) y-velocity.
        w_x: (...) x-derivative of the vorticity.
        w_y: (...) y-derivative of the vorticity.
        lap_w: (...) Laplacian of the vorticity.
        params: viscosity (and forcing, when it is a tensor).
        forcing: (...) forcing at the same points; overrides ``params.forcing``. A callable
            ``params.forcing`` must be evaluated by the caller and passed here.

    Returns:
        (...) residual, broadcast shape of the inputs.
    """
    if forcing is None and params.forcing is not None:
        if not isinstance(params.forcing, Tensor):
            raise ValueError(
                "params.forcing is a callable; evaluate it at the points and pass forcing="
            )
        forcing = params.forcing
    r = w_t + u * w_x + v * w_y - params.nu * lap_w
    return r if forcing is None else r - forcing


def _wavenumber(mode: int, length: float) -> float:
    if not isinstance(mode, int) or mode < 1:
        raise ValueError(f"mode must be an integer >= 1, got {mode!r}")
    return 2.0 * math.pi * mode / length


def taylor_green(
    x: Tensor,
    y: Tensor,
    t: Tensor | float,
    nu: float,
    *,
    mode: int = 1,
    amplitude: float = 1.0,
    length: float = 1.0,
) -> Tensor:
    """Exact vorticity of the Taylor-Green vortex on the periodic box.

    Velocity ``u = A cos(kx) sin(ky) e^{-2 nu k^2 t}``, ``v = -A sin(kx) cos(ky) e^{-2 nu k^2 t}``
    with ``k = 2 pi mode / L``; vorticity ``w = v_x - u_y = -2 A k cos(kx) cos(ky) e^{-2 nu k^2 t}``.
    The advection term vanishes identically, so it solves the unforced equation exactly.

    Args:
        x: (...) x positions.
        y: (...) y positions, broadcastable with ``x``.
        t: (...) times, broadcastable (tensor or float).
        nu: viscosity, > 0.
        mode: integer wavenumber (periods per box side).
        amplitude: ``A``, velocity scale.
        length: box side ``L``.

    Returns:
        (broadcast shape) vorticity, dtype and device of ``x``.
    """
    k = _wavenumber(mode, length)
    decay = torch.exp(-2.0 * nu * k * k * torch.as_tensor(t, dtype=x.dtype, device=x.device))
    return -2.0 * amplitude * k * torch.cos(k * x) * torch.cos(k * y) * decay


def taylor_green_velocity(
    x: Tensor,
    y: Tensor,
    t: Tensor | float,
    nu: float,
    *,
    mode: int = 1,
    amplitude: float = 1.0,
    length: float = 1.0,
) -> Velocity:
    """Exact velocity of the Taylor-Green vortex of :func:`taylor_green`.

    Args:
        x: (...) x positions.
        y: (...) y positions, broadcastable with ``x``.
        t: (...) times, broadcastable.
        nu: viscosity, > 0.
        mode: integer wavenumber.
        amplitude: velocity scale ``A``.
        length: box side ``L``.

    Returns:
        ``Velocity(u, v)`` at the points.
    """
    k = _wavenumber(mode, length)
    decay = torch.exp(-2.0 * nu * k * k * torch.as_tensor(t, dtype=x.dtype, device=x.device))
    u = amplitude * torch.cos(k * x) * torch.sin(k * y) * decay
    v = -amplitude * torch.sin(k * x) * torch.cos(k * y) * decay
    return Velocity(u, v)


def _periodic_kernel_coefficients(n: int, length_scale: float) -> np.ndarray:
    """Fourier coefficients ``c_m`` of the 1D periodic kernel ``exp(-2 sin^2(pi d / L) / l^2)``.

    ``exp(z cos theta) = sum_m I_m(z) e^{i m theta}`` with ``z = 1 / l^2`` gives
    ``c_m = e^{-z} I_m(z) = ive(m, z)``.
    """
    m = np.abs(np.fft.fftfreq(n, d=1.0 / n))
    return ive(m, 1.0 / length_scale**2)


def gaussian_random_field(
    batch: int,
    n: int,
    *,
    length_scale: float | None = None,
    alpha: float | None = None,
    tau: float | None = None,
    sigma: float = 1.0,
    length: float = 1.0,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """Zero-mean periodic Gaussian random field on the ``n x n`` grid of ``[0, L)^2``.

    Two covariances (the field is exactly that Gaussian process on the grid, with its mean
    mode removed):

    - periodic kernel (default, ``length_scale = 0.8`` as in PI-HC-MoE):
      ``k(d) = sigma^2 prod_axes exp(-2 sin^2(pi d / L) / length_scale^2)``;
    - Matern-like spectrum (``alpha``, ``tau`` given, the form of FNO's generators): the
      Fourier variance of mode ``k`` is ``sigma^2 tau^(2 alpha - 2) (|2 pi k / L|^2 + tau^2)^(-alpha)``.

    Sampling: real white noise ``xi`` on the grid, ``w = irfft2(sqrt(lambda_k) n rfft2(xi))``,
    whose covariance is ``sum_k lambda_k e^{i k (x - x')}`` exactly (circulant embedding).

    Args:
        batch: number of fields, >= 1.
        n: grid points per side, even >= 4.
        length_scale: periodic-kernel length scale (relative to ``L``); default 0.8.
        alpha: Matern-like smoothness; give with ``tau`` instead of ``length_scale``.
        tau: Matern-like inverse length.
        sigma: amplitude.
        length: box side ``L``.
        generator: random generator on ``device``; same seed, same result.
        dtype: floating dtype of the result.
        device: device of the result.

    Returns:
        (batch, n, n) tensor, zero mean over the grid for every sample.
    """
    if not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be an integer >= 1, got {batch!r}")
    if not isinstance(n, int) or n < 4 or n % 2:
        raise ValueError(f"n must be an even integer >= 4, got {n!r}")
    if (alpha is None) != (tau is None):
        raise ValueError(f"give alpha and tau together, got alpha={alpha!r}, tau={tau!r}")
    if alpha is not None and length_scale is not None:
        raise ValueError("give either length_scale or (alpha, tau), not both")
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma!r}")
    if alpha is None:
        ls = 0.8 if length_scale is None else length_scale
        if not ls > 0:
            raise ValueError(f"length_scale must be positive, got {length_scale!r}")
        c = _periodic_kernel_coefficients(n, ls)
        lam = np.outer(c, c[: n // 2 + 1])
    else:
        if not (alpha > 0 and tau > 0):
            raise ValueError(f"alpha and tau must be positive, got {alpha!r}, {tau!r}")
        kx, ky = wavenumbers(n, length)
        k2 = (kx**2 + ky**2).numpy()
        lam = tau ** (2.0 * alpha - 2.0) * (k2 + tau**2) ** (-alpha)
    lam = sigma**2 * lam
    lam[0, 0] = 0.0  # zero mean
    amp = torch.as_tensor(n * np.sqrt(lam), device=device)
    xi = torch.randn(batch, n, n, generator=generator, dtype=torch.float64, device=device)
    w = torch.fft.irfft2(torch.fft.rfft2(xi) * amp, s=(n, n))
    return w.to(dtype)
