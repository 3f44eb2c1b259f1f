"""Reference solvers against independent references: scipy's RK45 on an independently written
RHS, Cole-Hopf, the Taylor-Green vortex, conservation, time-convergence order, gradcheck."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from solvers.numerics.burgers import solve_burgers
from solvers.numerics.diffusion_sorption import (
    boundary_flux,
    diffusion_sorption_rhs,
    mass_balance_defect,
    solve_diffusion_sorption,
    total_mass,
)
from solvers.numerics.navier_stokes import solve_navier_stokes
from solvers.pdes.burgers import exact_solution
from solvers.pdes.diffusion_sorption import DiffusionSorptionParams, retardation
from solvers.pdes.navier_stokes import NavierStokesParams, gaussian_random_field, taylor_green

F64 = torch.float64


# ----------------------------------------------------------------------------- diffusion-sorption


def _numpy_rhs(c: np.ndarray, nx: int) -> np.ndarray:
    """PDEBench's finite-volume RHS, written out loop-free in numpy from the paper notes."""
    D, phi, rho_s, k_f, n_f = 5e-4, 0.29, 2880.0, 3.5e-4, 0.874
    dx = 1.0 / nx
    R = 1 + (1 - phi) / phi * rho_s * k_f * n_f * (c + 1e-6) ** (n_f - 1)
    lap = np.zeros_like(c)
    lap[1:-1] = c[:-2] - 2 * c[1:-1] + c[2:]
    lap[0] = -2 * c[0] + c[1]
    lap[-1] = c[-2] - 2 * c[-1]
    out = D / R * lap / dx**2
    out[0] += D / R[0] / dx**2 * 1.0
    out[-1] += D / R[-1] / dx**2 * (D * (c[-2] - c[-1]) / dx)
    return out


def test_ds_rhs_matches_independent_numpy() -> None:
    rng = np.random.default_rng(0)
    c = rng.uniform(0, 1, size=(3, 40))
    ours = diffusion_sorption_rhs(torch.from_numpy(c)).numpy()
    ref = np.stack([_numpy_rhs(row, 40) for row in c])
    np.testing.assert_allclose(ours, ref, rtol=1e-13, atol=0)


@pytest.mark.parametrize("nx,t_final,tight", [(64, 100.0, False), (128, 20.0, True)])
def test_ds_agrees_with_scipy_rk45(nx: int, t_final: float, tight: bool) -> None:
    u0 = torch.tensor([[0.02], [0.17]], dtype=F64).expand(2, nx).contiguous()
    t = torch.linspace(0.0, t_final, 6, dtype=F64)
    sol = solve_diffusion_sorption(u0, t)
    assert sol.converged and sol.u.shape == (2, 6, nx) and sol.rejected <= sol.steps
    refs = [
        solve_ivp(
            lambda _t, c: _numpy_rhs(c, nx),
            (0.0, t_final),
            u0[b].numpy(),
            method="RK45",
            t_eval=t.numpy(),
            rtol=1e-10,
            atol=1e-13,
        ).y.T
        for b in range(2)
    ]
    errs = [np.abs(sol.u[b].numpy() - refs[b]).max() / np.abs(refs[b]).max() for b in range(2)]
    assert max(errs) < 1e-3  # the contract; measured ~1.5e-4 at the default rtol=1e-4
    if tight:  # the error follows the tolerance (as rtol^(2/3): a second-order method)
        fine = solve_diffusion_sorption(u0[:1], t, rtol=1e-7, atol=1e-10)
        err = np.abs(fine.u[0].numpy() - refs[0]).max() / np.abs(refs[0]).max()
        assert err < 5e-6 and err < errs[0] / 20


def test_ds_semidiscrete_mass_balance_is_exact() -> None:
    # d/dt total_mass = sum_i dx R(u_i) du_i/dt = boundary_flux, for any state u
    p = DiffusionSorptionParams()
    u = torch.rand(4, 50, generator=torch.Generator().manual_seed(0), dtype=F64)
    dx = p.length / 50
    dmass_dt = (dx * retardation(u, p) * diffusion_sorption_rhs(u, p)).sum(-1)
    torch.testing.assert_close(dmass_dt, boundary_flux(u, p), rtol=1e-12, atol=1e-12)
    # and the chain rule through total_mass agrees
    uu = u.clone().requires_grad_()
    (grad,) = torch.autograd.grad(total_mass(uu, p).sum(), uu)
    torch.testing.assert_close((grad * diffusion_sorption_rhs(u, p)).sum(-1), boundary_flux(u, p))


def test_ds_mass_balance_over_a_rollout() -> None:
    nx = 32
    u0 = torch.full((2, nx), 0.1, dtype=F64)
    u0[1] = 0.05
    t = torch.linspace(0.0, 40.0, 801, dtype=F64)
    sol = solve_diffusion_sorption(u0, t, rtol=1e-7, atol=1e-10)
    defect = mass_balance_defect(sol)
    mass_change = (total_mass(sol.u[:, -1]) - total_mass(sol.u[:, 0])).abs().min()
    assert float(mass_change) > 1e-3 * float(total_mass(sol.u[:, -1]).max())  # mass did flow in
    assert float(defect.abs().max()) < 1e-5


def test_ds_float32_device_and_status() -> None:
    u0 = torch.full((1, 16), 0.1)
    sol = solve_diffusion_sorption(u0, torch.tensor([0.0, 10.0]))
    assert sol.u.dtype == torch.float32 and sol.x.dtype == torch.float32 and sol.converged
    torch.testing.assert_close(sol.x, (torch.arange(16) + 0.5) / 16)
    failed = solve_diffusion_sorption(u0, torch.tensor([0.0, 10.0]), max_steps=2)
    assert not failed.converged and "max_steps" in failed.status
    assert torch.isnan(failed.u[:, -1]).all() and torch.equal(failed.u[:, 0], u0)


def test_ds_gradcheck() -> None:
    # step sizes come from detached error estimates; at a tight tolerance their dependence on
    # u0 is far below gradcheck's tolerance, so autograd must match finite differences
    g = torch.Generator().manual_seed(0)
    u0 = (0.1 + 0.05 * torch.rand(1, 8, generator=g, dtype=F64)).requires_grad_()
    t = torch.tensor([0.0, 2.0], dtype=F64)

    def run(u: torch.Tensor) -> torch.Tensor:
        return solve_diffusion_sorption(u, t, rtol=1e-8, atol=1e-11).u[:, 1:]

    assert torch.autograd.gradcheck(run, (u0,), eps=1e-6, atol=1e-6, rtol=1e-4)


def test_ds_bad_input() -> None:
    t = torch.tensor([0.0, 1.0])
    with pytest.raises(ValueError, match="shape"):
        solve_diffusion_sorption(torch.zeros(4), t)
    with pytest.raises(ValueError, match="NaN"):
        solve_diffusion_sorption(torch.full((1, 4), math.nan), t)
    with pytest.raises(ValueError, match="increasing"):
        solve_diffusion_sorption(torch.zeros(1, 4), torch.tensor([0.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match="rtol"):
        solve_diffusion_sorption(torch.zeros(1, 4), t, rtol=-1.0)


# ----------------------------------------------------------------------------------- Burgers


def test_burgers_spectral_matches_cole_hopf_at_1024_modes() -> None:
    n, nu = 1024, 0.01
    x = torch.arange(n, dtype=F64) * (2 * math.pi / n)
    t = torch.linspace(0.0, 1.0, 6, dtype=F64)
    sol = solve_burgers(torch.sin(x)[None], t, nu)
    torch.testing.assert_close(sol.x, x)
    exact = exact_solution(x[None, :], t[:, None], nu)
    rel = (sol.u[0] - exact).abs().amax(-1) / exact.abs().amax(-1)
    assert float(rel.max()) < 1e-7  # measured 6e-9 (steep front at t = 1, width ~ 0.02)


def test_burgers_galilean_offset() -> None:
    n, nu, C = 256, 0.05, 0.6
    x = torch.arange(n, dtype=F64) * (2 * math.pi / n)
    t = torch.tensor([0.0, 0.5, 1.0], dtype=F64)
    sol = solve_burgers((torch.sin(x) + C)[None], t, nu)
    exact = exact_solution(x[None, :], t[:, None], nu, C=C)
    assert float((sol.u[0] - exact).abs().max()) < 3e-7  # default dt (CFL 0.5): 1.1e-7
    fine = solve_burgers((torch.sin(x) + C)[None], t, nu, dt=1e-3)
    assert float((fine.u[0] - exact).abs().max()) < 1e-9  # time error ~ dt^4: 3.4e-11


def test_burgers_gradcheck_and_dtype() -> None:
    u0 = (0.5 * torch.sin(torch.arange(8, dtype=F64) * math.pi / 4))[None].requires_grad_()
    t = torch.tensor([0.0, 0.1, 0.2], dtype=F64)
    assert torch.autograd.gradcheck(lambda u: solve_burgers(u, t, 0.1, dt=0.05).u, (u0,))
    sol32 = solve_burgers(torch.sin(torch.arange(16) * math.pi / 8)[None], t.float(), 0.1)
    assert sol32.u.dtype == torch.float32 and sol32.u.shape == (1, 3, 16)


def test_burgers_bad_input() -> None:
    t = torch.tensor([0.0, 1.0])
    with pytest.raises(ValueError, match="nu"):
        solve_burgers(torch.zeros(1, 16), t, -0.1)
    with pytest.raises(ValueError, match="shape"):
        solve_burgers(torch.zeros(16), t, 0.1)
    with pytest.raises(ValueError, match="increasing"):
        solve_burgers(torch.zeros(1, 16), torch.tensor([1.0, 0.0]), 0.1)
    with pytest.raises(ValueError, match="NaN"):
        solve_burgers(torch.full((1, 16), math.nan), t, 0.1)


# ----------------------------------------------------------------------------- Navier-Stokes


def _grid(n: int, length: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.arange(n, dtype=F64) * (length / n)
    return torch.meshgrid(x, x, indexing="ij")


@pytest.mark.parametrize("mode,length", [(1, 1.0), (2, 2 * math.pi)])
def test_taylor_green_decays_as_exact(mode: int, length: float) -> None:
    n, nu = 32, 0.01
    X, Y = _grid(n, length)
    w0 = taylor_green(X, Y, 0.0, nu, mode=mode, length=length)
    t = torch.linspace(0.0, 1.0, 5, dtype=F64)
    sol = solve_navier_stokes(w0[None], t, NavierStokesParams(nu=nu, length=length), dt=2e-3)
    exact = taylor_green(X, Y, t[:, None, None], nu, mode=mode, length=length)
    rel = (sol.w[0] - exact).abs().amax((-1, -2)) / exact.abs().amax((-1, -2))
    assert float(rel.max()) < 1e-6
    assert float(exact[-1].abs().max()) < 0.95 * float(exact[0].abs().max())  # it did decay


def test_ns_steady_forced_taylor_green() -> None:
    # f = -nu lap w_s keeps the Taylor-Green vortex w_s steady (its advection term is zero)
    n, nu = 32, 0.05
    X, Y = _grid(n)
    ws = taylor_green(X, Y, 0.0, nu)
    f = 2 * nu * (2 * math.pi) ** 2 * ws
    t = torch.tensor([0.0, 0.5], dtype=F64)
    for forcing in (f, lambda x, y, _t: 2 * nu * (2 * math.pi) ** 2 * taylor_green(x, y, 0.0, nu)):
        sol = solve_navier_stokes(ws[None], t, NavierStokesParams(nu=nu, forcing=forcing), dt=0.01)
        assert float((sol.w[0, -1] - ws).abs().max()) < 1e-12


def test_ns_second_order_in_time_and_conserves_mean() -> None:
    n = 32
    w0 = gaussian_random_field(1, n, generator=torch.Generator().manual_seed(0), dtype=F64) * 5
    w0 = w0 + 0.3  # a non-zero mean must be carried unchanged
    t = torch.tensor([0.0, 0.2], dtype=F64)
    params = NavierStokesParams(nu=1e-3)
    ref = solve_navier_stokes(w0, t, params, dt=0.2 / 256).w[0, -1]
    errs = [
        float((solve_navier_stokes(w0, t, params, dt=0.2 / k).w[0, -1] - ref).abs().max())
        for k in (16, 32)
    ]
    assert 3.3 < errs[0] / errs[1] < 4.7  # Heun + Crank-Nicolson: second order
    assert abs(float(ref.mean()) - 0.3) < 1e-12
    assert float((ref - w0[0]).abs().max()) > 0.05  # the flow did evolve


def test_ns_gradcheck() -> None:
    n = 8
    w0 = gaussian_random_field(1, n, generator=torch.Generator().manual_seed(1), dtype=F64)
    w0.requires_grad_()
    t = torch.tensor([0.0, 0.02], dtype=F64)
    params = NavierStokesParams(nu=1e-2)
    assert torch.autograd.gradcheck(
        lambda w: solve_navier_stokes(w, t, params, dt=0.01).w[:, -1], (w0,)
    )


def test_ns_bad_input() -> None:
    t = torch.tensor([0.0, 0.1])
    p = NavierStokesParams(nu=1e-3)
    with pytest.raises(ValueError, match="shape"):
        solve_navier_stokes(torch.zeros(1, 8, 6), t, p)
    with pytest.raises(ValueError, match="NaN"):
        solve_navier_stokes(torch.full((1, 8, 8), math.nan), t, p)
    with pytest.raises(ValueError, match="increasing"):
        solve_navier_stokes(torch.zeros(1, 8, 8), torch.tensor([0.0, 0.0]), p)
    with pytest.raises(ValueError, match="dt"):
        solve_navier_stokes(torch.zeros(1, 8, 8), t, p, dt=-1.0)


def test_ds_gradient_in_the_diffusion_coefficient_matches_finite_differences() -> None:
    # D as a scalar tensor: the inverse problem's path (scripts/inverse_diffusion_sorption.py).
    u0 = torch.full((1, 8), 0.1, dtype=torch.float64)
    t = torch.linspace(0.0, 20.0, 3, dtype=torch.float64)

    def misfit(d: torch.Tensor) -> torch.Tensor:
        sol = solve_diffusion_sorption(u0, t, DiffusionSorptionParams(D=d), rtol=1e-8, atol=1e-11)
        return sol.u[:, 1:].pow(2).sum()

    d = torch.tensor(5e-4, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(misfit(d), d)
    h = 1e-7
    with torch.no_grad():
        fd = (misfit(d + h) - misfit(d - h)) / (2 * h)
    assert float(grad) == pytest.approx(float(fd), rel=1e-4)
    with pytest.raises(ValueError, match="D must be"):
        DiffusionSorptionParams(D=torch.tensor(-1.0))
