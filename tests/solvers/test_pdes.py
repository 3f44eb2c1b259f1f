"""PDE definitions: residuals of exact solutions, Cole-Hopf against direct quadrature,
retardation and mass density against the chain rule, GRF mean and covariance, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import quad

from solvers.pdes import burgers, diffusion_sorption, navier_stokes
from solvers.pdes.burgers import BurgersParams
from solvers.pdes.diffusion_sorption import DiffusionSorptionParams
from solvers.pdes.navier_stokes import NavierStokesParams

F64 = torch.float64


def _grad(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return torch.autograd.grad(y.sum(), x, create_graph=True)[0]


# ----------------------------------------------------------------------------- diffusion-sorption


def test_ds_params_validation() -> None:
    with pytest.raises(ValueError, match="porosity"):
        DiffusionSorptionParams(porosity=1.2)
    with pytest.raises(ValueError, match="D must"):
        DiffusionSorptionParams(D=-1.0)
    with pytest.raises(ValueError, match="t_final"):
        DiffusionSorptionParams(t_final=0.0)


def test_retardation_formula_and_clamp() -> None:
    p = DiffusionSorptionParams()
    u = torch.tensor([0.0, 0.01, 0.1, 1.0], dtype=F64)
    K = (1 - 0.29) / 0.29 * 2880.0 * 3.5e-4
    expected = 1 + K * 0.874 * (u.numpy() + 1e-6) ** (0.874 - 1)
    np.testing.assert_allclose(diffusion_sorption.retardation(u, p).numpy(), expected, rtol=1e-14)
    neg = diffusion_sorption.retardation(torch.tensor([-0.5, -1e-3], dtype=F64), p)
    assert torch.isfinite(neg).all()
    torch.testing.assert_close(neg, diffusion_sorption.retardation(torch.zeros(2, dtype=F64), p))


def test_retardation_derivative_and_mass_density_by_autograd() -> None:
    p = DiffusionSorptionParams()
    u = torch.linspace(1e-3, 1.0, 50, dtype=F64, requires_grad=True)
    R = diffusion_sorption.retardation(u, p)
    torch.testing.assert_close(_grad(R, u), diffusion_sorption.retardation_derivative(u, p))
    m = diffusion_sorption.sorbed_mass_density(u, p)
    torch.testing.assert_close(_grad(m, u), R)  # dm/du = R


def test_ds_residual_is_the_conservation_law() -> None:
    # R(u) * residual = m(u)_t - D u_xx for any smooth u(x, t): chain rule, independent of R
    p = DiffusionSorptionParams()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(200, generator=g, dtype=F64).requires_grad_()
    t = (500 * torch.rand(200, generator=g, dtype=F64)).requires_grad_()
    u = 0.5 + 0.3 * torch.sin(3 * x + 0.01 * t) * torch.exp(-t / 400)
    u_t, u_x = _grad(u, t), _grad(u, x)
    u_xx = _grad(u_x, x)
    r = diffusion_sorption.residual(u, u_t, u_xx, p)
    m_t = _grad(diffusion_sorption.sorbed_mass_density(u, p), t)
    torch.testing.assert_close(diffusion_sorption.retardation(u, p) * r, m_t - p.D * u_xx)
    with pytest.raises(ValueError, match="equal shapes"):
        diffusion_sorption.residual(u, u_t[:3], u_xx, p)


def test_ds_boundary_residuals() -> None:
    p = DiffusionSorptionParams()
    # u = c exp((x - L) / D) satisfies u = D u_x at x = L
    x = torch.tensor(1.0, dtype=F64, requires_grad=True)
    u = 0.3 * torch.exp((x - 1.0) / p.D)
    u_x = _grad(u, x)
    res = diffusion_sorption.boundary_residuals(torch.tensor(1.0, dtype=F64), u, u_x, p)
    assert abs(float(res.left)) < 1e-15 and abs(float(res.right.detach())) < 1e-15
    res = diffusion_sorption.boundary_residuals(torch.tensor(0.5), u, 0 * u_x, p)
    assert float(res.left) == pytest.approx(-0.5)
    assert float(res.right.detach()) == pytest.approx(0.3)


def test_ds_initial_condition_and_grid() -> None:
    u0 = diffusion_sorption.initial_condition(500, 16, generator=torch.Generator().manual_seed(3))
    assert u0.shape == (500, 16) and u0.dtype == torch.float32
    assert (u0 == u0[:, :1]).all()  # spatially constant
    assert 0.0 <= float(u0.min()) and float(u0.max()) <= 0.2
    assert abs(float(u0[:, 0].mean()) - 0.1) < 0.01  # U(0, 0.2): mean 0.1, sd 0.058 / sqrt(500)
    again = diffusion_sorption.initial_condition(
        500, 16, generator=torch.Generator().manual_seed(3)
    )
    assert torch.equal(u0, again)
    x = diffusion_sorption.cell_centres(4, dtype=F64)
    torch.testing.assert_close(x, torch.tensor([0.125, 0.375, 0.625, 0.875], dtype=F64))
    with pytest.raises(ValueError, match="n_samples"):
        diffusion_sorption.initial_condition(0, 16)


# ----------------------------------------------------------------------------------- Burgers


def _cole_hopf_quad(x: float, t: float, nu: float) -> float:
    """Cole-Hopf by adaptive quadrature on the real line (independent of the Hermite rule)."""
    s = math.sqrt(4 * nu * t)
    lo, hi = x - 14 * s, x + 14 * s
    ys = np.linspace(lo, hi, 4001)
    shift = np.max(-((x - ys) ** 2) / (4 * nu * t) - (1 - np.cos(ys)) / (2 * nu))

    def f(y: float, k: int) -> float:
        e = -((x - y) ** 2) / (4 * nu * t) - (1 - math.cos(y)) / (2 * nu) - shift
        return ((x - y) / t) ** k * math.exp(e)

    brk = [b for b in (0.0, 2 * math.pi, x) if lo < b < hi]
    num = quad(f, lo, hi, args=(1,), epsabs=0, epsrel=1e-12, limit=400, points=brk)[0]
    den = quad(f, lo, hi, args=(0,), epsabs=0, epsrel=1e-12, limit=400, points=brk)[0]
    return num / den


@pytest.mark.filterwarnings("ignore::scipy.integrate.IntegrationWarning")
def test_cole_hopf_against_direct_quadrature_including_the_front() -> None:
    nu = 0.01
    pts = [(0.5, 0.1), (3.0, 0.1), (math.pi - 0.01, 1.0), (math.pi + 0.003, 1.0), (2.0, 0.5)]
    for x, t in pts:
        ours = burgers.exact_solution(torch.tensor(x, dtype=F64), t, nu)
        assert abs(float(ours) - _cole_hopf_quad(x, t, nu)) < 1e-10, (x, t)


def test_cole_hopf_steep_front_and_initial_condition() -> None:
    x = torch.linspace(0, 2 * math.pi, 4097, dtype=F64)[:-1]
    u0 = burgers.exact_solution(x, 0.0, 0.01, C=0.25)
    torch.testing.assert_close(u0, burgers.initial_condition(x, C=0.25))
    u1 = burgers.exact_solution(x, 1.0, 0.01)
    jump = float(u1[: x.numel() // 2].max() - u1[x.numel() // 2 :].min())
    assert jump > 1.9  # a shock-like front of height ~2 at x = pi
    more = burgers.exact_solution(x, 1.0, 0.01, n_nodes=512)
    assert float((u1 - more).abs().max()) < 1e-12  # quadrature converged at the front


@pytest.mark.parametrize("C", [0.0, 0.7])
def test_burgers_exact_residual_by_autograd(C: float) -> None:
    nu = 0.02
    g = torch.Generator().manual_seed(1)
    x = (2 * math.pi * torch.rand(300, generator=g, dtype=F64)).requires_grad_()
    t = (0.05 + 0.95 * torch.rand(300, generator=g, dtype=F64)).requires_grad_()
    u = burgers.exact_solution(x, t, nu, C=C)
    u_t, u_x = _grad(u, t), _grad(u, x)
    u_xx = _grad(u_x, x)
    r = burgers.residual(u, u_t, u_x, u_xx, nu)
    assert float(r.detach().abs().max()) < 1e-8 * float((nu * u_xx).detach().abs().max())


def test_burgers_exact_residual_by_finite_differences() -> None:
    nu, n, h = 0.05, 512, 1e-4
    x = torch.arange(n, dtype=F64) * (2 * math.pi / n)
    dx = 2 * math.pi / n
    u = burgers.exact_solution(x, 0.5, nu)
    u_t = (burgers.exact_solution(x, 0.5 + h, nu) - burgers.exact_solution(x, 0.5 - h, nu)) / (
        2 * h
    )
    u_x = (torch.roll(u, -1) - torch.roll(u, 1)) / (2 * dx)
    u_xx = (torch.roll(u, -1) - 2 * u + torch.roll(u, 1)) / dx**2
    r = burgers.residual(u, u_t, u_x, u_xx, nu)
    scale = float(u_t.abs().max())
    assert float(r.abs().max()) < 2e-3 * scale  # second-order FD truncation only
    assert float(burgers.residual(u, 0 * u_t, u_x, u_xx, nu).abs().max()) > 0.3 * scale


def test_burgers_bad_input() -> None:
    with pytest.raises(ValueError, match="nu"):
        BurgersParams(nu=-0.1)
    with pytest.raises(ValueError, match="nu"):
        burgers.exact_solution(torch.zeros(3), 0.1, 0.0)
    with pytest.raises(ValueError, match="t must"):
        burgers.exact_solution(torch.zeros(3), -1.0, 0.1)


# ----------------------------------------------------------------------------- Navier-Stokes


def test_ns_params_validation() -> None:
    with pytest.raises(ValueError, match="nu"):
        NavierStokesParams(nu=-1e-3)
    with pytest.raises(ValueError, match="nu"):
        NavierStokesParams(nu=0.0)
    with pytest.raises(ValueError, match="forcing"):
        NavierStokesParams(nu=1e-3, forcing="kolmogorov")  # type: ignore[arg-type]


@pytest.mark.parametrize("mode,length", [(1, 1.0), (2, 2 * math.pi)])
def test_taylor_green_residual_by_autograd(mode: int, length: float) -> None:
    nu = 0.01
    g = torch.Generator().manual_seed(2)
    x, y, t = (torch.rand(100, generator=g, dtype=F64).requires_grad_() for _ in range(3))
    w = navier_stokes.taylor_green(x, y, t, nu, mode=mode, length=length)
    vel = navier_stokes.taylor_green_velocity(x, y, t, nu, mode=mode, length=length)
    w_x, w_y = _grad(w, x), _grad(w, y)
    lap = _grad(w_x, x) + _grad(w_y, y)
    r = navier_stokes.residual(_grad(w, t), vel.u, vel.v, w_x, w_y, lap, NavierStokesParams(nu=nu))
    assert float(r.detach().abs().max()) < 1e-12 * float(lap.detach().abs().max() * nu)
    # w = v_x - u_y and u_x + v_y = 0 for the stated velocity
    torch.testing.assert_close(_grad(vel.v, x) - _grad(vel.u, y), w)
    assert float((_grad(vel.u, x) + _grad(vel.v, y)).detach().abs().max()) < 1e-12


def test_velocity_from_vorticity_taylor_green() -> None:
    n, L = 32, 2.0
    x = torch.arange(n, dtype=F64) * (L / n)
    X, Y = torch.meshgrid(x, x, indexing="ij")
    w = navier_stokes.taylor_green(X, Y, 0.3, 0.01, mode=3, length=L, amplitude=2.0)
    vel = navier_stokes.velocity_from_vorticity(w + 5.0, length=L)  # the mean does not enter
    ref = navier_stokes.taylor_green_velocity(X, Y, 0.3, 0.01, mode=3, length=L, amplitude=2.0)
    torch.testing.assert_close(vel.u, ref.u, atol=1e-13, rtol=0)
    torch.testing.assert_close(vel.v, ref.v, atol=1e-13, rtol=0)


def test_velocity_of_grf_is_divergence_free_with_that_curl() -> None:
    n = 64
    w = navier_stokes.gaussian_random_field(
        2, n, generator=torch.Generator().manual_seed(0), dtype=F64
    )
    u, v = navier_stokes.velocity_from_vorticity(w)
    d = 1.0 / n

    def ddx(f: torch.Tensor, axis: int) -> torch.Tensor:  # 4th-order central differences
        return (
            -torch.roll(f, -2, axis)
            + 8 * torch.roll(f, -1, axis)
            - 8 * torch.roll(f, 1, axis)
            + torch.roll(f, 2, axis)
        ) / (12 * d)

    scale = float(w.abs().max())
    assert float((ddx(v, -2) - ddx(u, -1) - w).abs().max()) < 1e-3 * scale  # FD truncation
    assert float((ddx(u, -2) + ddx(v, -1)).abs().max()) < 1e-3 * scale


def test_grf_zero_mean_periodic_covariance() -> None:
    n, ls, N = 16, 0.8, 4000
    w = navier_stokes.gaussian_random_field(
        N, n, length_scale=ls, generator=torch.Generator().manual_seed(5), dtype=F64
    )
    assert w.shape == (N, n, n) and w.dtype == F64
    assert float(w.mean(dim=(-1, -2)).abs().max()) < 1e-14  # zero mean, every sample
    # covariance at lag (d, 0) against the periodic kernel minus its mean mode
    z = 1 / ls**2
    from scipy.special import ive

    lam00 = ive(0, z) ** 2
    emp = [float((w * torch.roll(w, -d, dims=-2)).mean()) for d in range(n)]
    for d in range(n):
        theory = math.exp(-2 * math.sin(math.pi * d / n) ** 2 / ls**2) - lam00
        assert abs(emp[d] - theory) < 0.03, d
    for d in range(1, n // 2):  # periodic: lag d and lag n - d agree
        assert abs(emp[d] - emp[n - d]) < 0.02
    assert torch.equal(
        w[:3],
        navier_stokes.gaussian_random_field(
            N, n, length_scale=ls, generator=torch.Generator().manual_seed(5), dtype=F64
        )[:3],
    )


def test_grf_matern_spectrum_and_errors() -> None:
    w = navier_stokes.gaussian_random_field(
        4, 32, alpha=2.5, tau=7.0, generator=torch.Generator().manual_seed(1)
    )
    assert w.shape == (4, 32, 32) and w.dtype == torch.float32
    assert float(w.double().mean(dim=(-1, -2)).abs().max()) < 1e-6
    with pytest.raises(ValueError, match="together"):
        navier_stokes.gaussian_random_field(1, 32, alpha=2.5)
    with pytest.raises(ValueError, match="even"):
        navier_stokes.gaussian_random_field(1, 31)
