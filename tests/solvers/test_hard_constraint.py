"""PI-HC's constraint layer: exact solutions in the basis span, the analytic Jacobian, the
implicit gradient against finite differences, reporting of failures and bad input."""

from __future__ import annotations

import math

import pytest
import torch

from solvers.constraints import HardConstraint, HardConstraintConfig
from solvers.constraints.hard import (
    _features,
    _make_fns,
    physics_loss,
)
from solvers.pdes.diffusion_sorption import cell_centres
from solvers.pdes.navier_stokes import gaussian_random_field, taylor_green

F64 = torch.float64


def _ds_grid(T: int = 11, X: int = 32):
    return torch.linspace(0, 500, T, dtype=F64), cell_centres(X, dtype=F64)


def _ds_basis(B: int, N: int, T: int, X: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 0.3 * torch.rand(B, N, T, X, generator=g, dtype=F64)


def test_ds_steady_state_recovered_exactly():
    # u*(x) = 1 − x/(1 − D): u_xx = 0, u(0) = 1, u(1) = D u_x(1); constant in time (so u_t = 0)
    T, X, D = 11, 32, 5e-4
    t, x = _ds_grid(T, X)
    u_star = (1 - x / (1 - D)).expand(T, X)
    basis = _ds_basis(3, 6, T, X)
    basis[:, 2] = u_star  # hide it among random functions
    cfg = HardConstraintConfig(n_points=200, ridge=0.0, diffusivity=D)
    out = HardConstraint(cfg)(basis, u_star[0].expand(3, X), t, x)
    assert out.converged.all()
    torch.testing.assert_close(out.field, u_star.expand(3, T, X), atol=1e-10, rtol=0)
    expected = torch.zeros(3, 1, 6, dtype=F64)
    expected[..., 2] = 1
    torch.testing.assert_close(out.weights, expected, atol=1e-9, rtol=0)
    assert out.residual_norm.max() < 1e-10


def test_ns_taylor_green_recovered():
    B, N, T, n, nu = 2, 5, 9, 16, 1e-3
    t = torch.linspace(0, 1, T, dtype=F64)
    x = torch.arange(n, dtype=F64) / n
    X, Y = torch.meshgrid(x, x, indexing="ij")
    w_ex = taylor_green(X, Y, t[:, None, None], nu)
    cfg = HardConstraintConfig(pde="navier-stokes", viscosity=nu, n_points=None, ridge=0.0)
    tau = (t - t[0]) / (t[-1] - t[0])
    # w = w0 + c·τ·b·ω: the exact solution is ω = e_0 for b_0 = (w − w0)/(c·τ)
    b0 = (w_ex - w_ex[0]) / (cfg.mollifier * tau.clamp_min(1e-300))[:, None, None]
    b0[0] = 0.0
    g = torch.Generator().manual_seed(1)
    basis = gaussian_random_field(B * N * T, n, generator=g, dtype=F64).reshape(B, N, T, n, n)
    basis[:, 0] = b0
    out = HardConstraint(cfg)(basis, w_ex[0].expand(B, n, n), t, x, x)
    assert out.converged.all()
    # the only error is the time finite difference of e^{-λt} (λ = 2νk² ≈ 0.08)
    rel = (out.field - w_ex).norm() / (w_ex - w_ex[0]).norm() / math.sqrt(B)
    assert rel < 3e-4
    assert (out.weights[..., 0] - 1).abs().max() < 3e-4


@pytest.mark.parametrize("pde", ["diffusion-sorption", "navier-stokes"])
@pytest.mark.parametrize("squared", [False, True])
def test_analytic_jacobian_matches_autograd(pde, squared):
    scale = 500.0 if squared else 1.0
    g = torch.Generator().manual_seed(0)
    if pde == "diffusion-sorption":
        t, x = _ds_grid(6, 12)
        y = None
        basis = _ds_basis(2, 4, 6, 12)
        u0 = torch.full((2, 12), 0.1, dtype=F64)
    else:
        t, x = torch.linspace(0, 1, 4, dtype=F64), torch.arange(8, dtype=F64) / 8
        y = x
        basis = torch.randn(2, 4, 4, 8, 8, generator=g, dtype=F64) * 50
        u0 = torch.randn(2, 8, 8, generator=g, dtype=F64)
    cfg = HardConstraintConfig(pde=pde, squared_residual=squared, residual_scale=scale)
    f = _features(basis, u0, t, x, y, cfg)
    params = {"maps": f.maps, "offsets": f.offsets}
    if f.rows is not None:
        params.update(rows=f.rows, targets=f.targets)
    residual_fn, jacobian_fn = _make_fns(cfg)
    w = torch.rand(2, 4, generator=g, dtype=F64) + 0.5
    J = jacobian_fn(w, params)
    J_ad = torch.func.jacfwd(lambda wv: residual_fn(wv, params))(w)  # (B, m, B, N)
    J_ad = torch.stack([J_ad[b, :, b] for b in range(2)])
    torch.testing.assert_close(J, J_ad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("pde", ["diffusion-sorption", "navier-stokes"])
@pytest.mark.parametrize("squared", [False, True])
def test_analytic_hessian_of_the_backward_matches_autodiff(pde, squared):
    from solvers.constraints.hard import _gradient, _hessian

    g = torch.Generator().manual_seed(1)
    if pde == "diffusion-sorption":
        t, x = _ds_grid(6, 12)
        y, basis = None, _ds_basis(2, 4, 6, 12)
        u0 = torch.full((2, 12), 0.1, dtype=F64)
    else:
        t, x = torch.linspace(0, 1, 4, dtype=F64), torch.arange(8, dtype=F64) / 8
        y, basis = x, torch.randn(2, 4, 4, 8, 8, generator=g, dtype=F64) * 50
        u0 = torch.randn(2, 8, 8, generator=g, dtype=F64)
    cfg = HardConstraintConfig(pde=pde, squared_residual=squared, residual_scale=300.0)
    f = _features(basis, u0, t, x, y, cfg)
    params = {"maps": f.maps, "offsets": f.offsets}
    if f.rows is not None:
        params.update(rows=f.rows, targets=f.targets)
    w = torch.rand(2, 4, generator=g, dtype=F64) + 0.5
    H_ad = torch.func.jacfwd(lambda wv: _gradient(wv, params, cfg))(w)
    H_ad = torch.stack([H_ad[b, :, b] for b in range(2)])
    torch.testing.assert_close(_hessian(w, params, cfg), H_ad, rtol=1e-9, atol=1e-9)
    # Gauss-Newton drops Σ ρ_i ∇²ρ_i, which is not zero here
    gn = HardConstraintConfig(
        pde=pde, squared_residual=squared, residual_scale=300.0, hessian="gauss_newton"
    )
    assert not torch.allclose(_hessian(w, params, gn), H_ad, rtol=1e-6, atol=0)


def test_constrained_residual_far_below_unconstrained():
    # the solve minimises the sampled least-squares objective over the span of the basis: with
    # every grid point sampled its cost must lie far below that of any raw basis function
    # (the soft ansatz u = b_i) and of their mean
    T, X, N = 11, 32, 8
    t, x = _ds_grid(T, X)
    # smooth functions x^p (t/T)^q, p < 4, q < 2, plus a little noise
    p = torch.arange(4, dtype=F64).repeat(2)
    q = torch.arange(2, dtype=F64).repeat_interleave(4)
    smooth = x[None, None, :] ** p[:, None, None] * (t[None, :, None] / 500) ** q[:, None, None]
    basis = smooth.expand(2, N, T, X) + 0.01 * _ds_basis(2, N, T, X, seed=3)
    u0 = torch.full((2, X), 0.1, dtype=F64)
    cfg = HardConstraintConfig(n_points=None)
    out = HardConstraint(cfg)(basis, u0, t, x)
    f = _features(basis, u0, t, x, None, cfg)
    params = {"maps": f.maps, "offsets": f.offsets, "rows": f.rows, "targets": f.targets}
    residual_fn, _ = _make_fns(cfg)

    def cost(w):
        return 0.5 * residual_fn(w, params).pow(2).sum(-1)

    raw = [cost(torch.eye(N, dtype=F64)[i].expand(2, N)) for i in range(N)]
    raw.append(cost(torch.full((2, N), 1 / N, dtype=F64)))
    hard = cost(out.weights[:, 0])
    assert (hard < 0.1 * torch.stack(raw).min(0).values).all()


@pytest.mark.parametrize("hessian", ["exact", "gauss_newton"])
def test_implicit_gradient_matches_finite_differences(hessian):
    # a tiny float64 "network": basis = softplus(features · θ), then the layer and the loss
    T, X, N = 8, 16, 4
    t, x = _ds_grid(T, X)
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(2, T, X, 3, generator=g, dtype=F64)
    theta0 = 0.3 * torch.randn(3, N, generator=g, dtype=F64)
    u0 = torch.full((2, X), 0.12, dtype=F64)
    cfg = HardConstraintConfig(
        n_points=60, hessian=hessian, gtol=1e-14, xtol=1e-14, ftol=1e-16, max_iterations=200
    )
    layer = HardConstraint(cfg)

    def loss(theta):
        basis = torch.nn.functional.softplus(feats @ theta).permute(0, 3, 1, 2)
        out = layer(basis, u0, t, x)
        assert out.converged.all()
        return physics_loss(out.field, u0, t, x, cfg)[0]

    theta = theta0.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(loss(theta), theta)
    d = torch.randn(3, N, generator=g, dtype=F64)
    # eps 1e-4: the solve's own precision (~1e-10 in ω) divided by eps must stay below the
    # tolerance, and the O(eps²) truncation too
    eps = 1e-4
    with torch.no_grad():
        fd = (loss(theta0 + eps * d) - loss(theta0 - eps * d)) / (2 * eps)
    assert float((grad * d).sum()) == pytest.approx(float(fd), rel=2e-5)


def test_not_converged_is_reported_and_can_raise():
    t, x = _ds_grid()
    basis = _ds_basis(2, 6, 11, 32)
    u0 = torch.full((2, 32), 0.1, dtype=F64)
    out = HardConstraint(HardConstraintConfig(n_points=100, max_iterations=1))(basis, u0, t, x)
    assert not out.converged.any()
    assert out.not_converged_fraction == 1.0
    with pytest.raises(RuntimeError, match="did not converge"):
        HardConstraint(
            HardConstraintConfig(n_points=100, max_iterations=1, require_convergence=True)
        )(basis, u0, t, x)


def test_bad_input_is_rejected():
    t, x = _ds_grid()
    basis = _ds_basis(2, 6, 11, 32)
    u0 = torch.full((2, 32), 0.1, dtype=F64)
    bad = basis.clone()
    bad[0, 1, 3, 4] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        HardConstraint()(bad, u0, t, x)
    with pytest.raises(ValueError, match="n_points=4 is below the basis size N=6"):
        HardConstraint(HardConstraintConfig(n_points=4))(basis, u0, t, x)
    with pytest.raises(ValueError, match="u0 must have shape"):
        HardConstraint()(basis, u0[:, :5], t, x)
    with pytest.raises(ValueError, match="pde must be one of"):
        HardConstraintConfig(pde="heat")


def test_rank_deficient_basis_gives_the_regularised_solution():
    # a duplicated basis function: the ridge splits its weight equally, the field is unchanged
    t, x = _ds_grid()
    basis = _ds_basis(2, 5, 11, 32, seed=4)
    u0 = torch.full((2, 32), 0.1, dtype=F64)
    cfg = HardConstraintConfig(n_points=None)
    ref = HardConstraint(cfg)(basis, u0, t, x)
    dup = torch.cat([basis, basis[:, :1]], dim=1)
    out = HardConstraint(cfg)(dup, u0, t, x)
    assert out.converged.all() and torch.isfinite(out.field).all()
    torch.testing.assert_close(out.field, ref.field, atol=1e-6, rtol=0)
    torch.testing.assert_close(out.weights[..., 0], out.weights[..., 5], atol=1e-6, rtol=0)


def test_sampling_is_seeded():
    t, x = _ds_grid()
    basis = _ds_basis(2, 6, 11, 32)
    u0 = torch.full((2, 32), 0.1, dtype=F64)
    layer = HardConstraint(HardConstraintConfig(n_points=50))
    a = layer(basis, u0, t, x, generator=torch.Generator().manual_seed(5))
    b = layer(basis, u0, t, x, generator=torch.Generator().manual_seed(5))
    c = layer(basis, u0, t, x, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a.field, b.field)
    assert not torch.allclose(a.field, c.field)
