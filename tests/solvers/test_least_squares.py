"""Batched Levenberg–Marquardt and its implicit backward, checked against independent references:
``torch.linalg.lstsq`` / normal equations, problems with known minimisers, finite differences of
the solution map, and an unrolled (differentiated-through) Gauss–Newton solve."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from solvers.constraints import LeastSquaresConfig, nonlinear_least_squares

F64 = torch.float64
# cost-based stopping pins w only to ~√eps; tight solves rely on the gradient and step tests
TIGHT = LeastSquaresConfig(gtol=1e-12, xtol=1e-14, ftol=0.0)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _linear(w: torch.Tensor, p: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    A, b = p
    return torch.einsum("bmn,bn->bm", A, w) - b


def _rosenbrock(w: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """r = (a − x, √c·(y − x²)): minimiser (a, a²) with zero residual."""
    a, c = p[:, :1], p[:, 1:2]
    return torch.cat([a - w[:, :1], c.sqrt() * (w[:, 1:2] - w[:, :1] ** 2)], dim=1)


def _expfit(w: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """r = a·exp(−k t) − y on t = linspace(0, 2, m), w = (a, k)."""
    t = torch.linspace(0.0, 2.0, y.shape[-1], dtype=w.dtype, device=w.device)
    return w[:, :1] * torch.exp(-w[:, 1:2] * t) - y


def _freundlich(w: torch.Tensor, p: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """r = (A w)^n − y, a pointwise Freundlich-type power of a linear map (guarded at u ≤ 0)."""
    A, y = p
    u = torch.einsum("bmn,bn->bm", A, w)
    return u.clamp_min(1e-12) ** 0.874 - y


def _exp_data(noise: float, seed: int = 0, m: int = 30) -> tuple[torch.Tensor, torch.Tensor]:
    w_true = torch.tensor([[2.0, 1.3], [0.5, 0.2], [1.0, 3.0]], dtype=F64)
    y = w_true[:, :1] * torch.exp(-w_true[:, 1:2] * torch.linspace(0.0, 2.0, m, dtype=F64))
    return w_true, y + noise * torch.randn(y.shape, dtype=F64, generator=_gen(seed))


# ----------------------------------------------------------------------------- forward


def test_linear_equals_lstsq_in_two_iterations() -> None:
    g = _gen(1)
    A = torch.randn(5, 40, 6, dtype=F64, generator=g)
    b = torch.randn(5, 40, dtype=F64, generator=g)
    res = nonlinear_least_squares(_linear, torch.zeros(5, 6, dtype=F64), (A, b))
    ref = torch.linalg.lstsq(A, b.unsqueeze(-1)).solution.squeeze(-1)
    torch.testing.assert_close(res.w, ref, atol=1e-11, rtol=0)
    assert res.converged.all()
    assert (res.iterations <= 2).all() and (res.iterations >= 1).all()
    torch.testing.assert_close(res.residual_norm, (_linear(ref, (A, b))).norm(dim=-1))


def test_ridge_matches_regularised_normal_equations() -> None:
    g = _gen(2)
    A = torch.randn(3, 30, 4, dtype=F64, generator=g)
    b = torch.randn(3, 30, dtype=F64, generator=g)
    mu = 0.7
    res = nonlinear_least_squares(
        _linear, torch.ones(3, 4, dtype=F64), (A, b), LeastSquaresConfig(ridge=mu)
    )
    H = A.mT @ A + mu * torch.eye(4, dtype=F64)
    ref = torch.linalg.solve(H, (A.mT @ b.unsqueeze(-1))).squeeze(-1)
    torch.testing.assert_close(res.w, ref, atol=1e-11, rtol=0)
    assert res.converged.all()


def test_rosenbrock_batch_known_minimisers() -> None:
    p = torch.tensor([[1.0, 100.0], [2.0, 1.0], [0.5, 1000.0], [-1.5, 10.0]], dtype=F64)
    w0 = torch.tensor([[-1.2, 1.0], [0.0, 0.0], [3.0, 3.0], [-3.0, -4.0]], dtype=F64)
    res = nonlinear_least_squares(_rosenbrock, w0, p)
    expected = torch.stack([p[:, 0], p[:, 0] ** 2], dim=1)
    torch.testing.assert_close(res.w, expected, atol=1e-9, rtol=0)
    assert res.converged.all()
    assert res.residual_norm.max() < 1e-9


def test_exponential_fit_recovers_parameters() -> None:
    w_true, y = _exp_data(noise=0.0)
    res = nonlinear_least_squares(_expfit, torch.ones(3, 2, dtype=F64), y)
    torch.testing.assert_close(res.w, w_true, atol=1e-9, rtol=0)
    assert res.converged.all()


def test_freundlich_power_of_linear_map() -> None:
    g = _gen(3)
    B, m, N = 4, 200, 5
    A = torch.rand(B, m, N, dtype=F64, generator=g)
    w_true = 0.5 + torch.rand(B, N, dtype=F64, generator=g)
    y = torch.einsum("bmn,bn->bm", A, w_true) ** 0.874
    res = nonlinear_least_squares(_freundlich, torch.ones(B, N, dtype=F64), (A, y))
    torch.testing.assert_close(res.w, w_true, atol=1e-8, rtol=0)
    assert res.converged.all()


def test_masks_freeze_finished_problems() -> None:
    """An easy (linear) problem batched with hard ones: once it converges it is never evaluated
    again, its w is bit-identical to solving it alone, and iteration counts differ."""
    p = torch.tensor([[1.0, 0.0], [1.0, 100.0], [0.5, 1000.0]], dtype=F64)  # c=0: linear
    w0 = torch.tensor([[-1.2, 1.0], [-1.2, 1.0], [3.0, 3.0]], dtype=F64)
    seen: list[torch.Tensor] = []

    def recording(w: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        seen.append(q[:, 1].clone())
        return _rosenbrock(w, q)

    def jacobian(w: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        seen.append(q[:, 1].clone())
        sc = q[:, 1].sqrt()
        J = torch.zeros(len(w), 2, 2, dtype=w.dtype)
        J[:, 0, 0] = -1.0
        J[:, 1, 0], J[:, 1, 1] = -2 * w[:, 0] * sc, sc
        return J

    cfg = LeastSquaresConfig(jacobian="analytic")
    res = nonlinear_least_squares(recording, w0, p, cfg, jacobian_fn=jacobian)
    alone = nonlinear_least_squares(_rosenbrock, w0[:1], p[:1])
    assert res.converged.all()
    assert res.iterations[0] < res.iterations[1] and res.iterations[0] < res.iterations[2]
    assert torch.equal(res.w[0], alone.w[0])
    # residual + Jacobian evaluations that include problem 0 stop after its own iterations
    with_easy = sum(int((s == 0.0).any()) for s in seen)
    assert with_easy <= 2 * (int(res.iterations[0]) + 1)
    assert len(seen) > with_easy


def test_not_converged_when_iterations_run_out() -> None:
    p = torch.tensor([[1.0, 100.0], [2.0, 0.0]], dtype=F64)
    w0 = torch.tensor([[-1.2, 1.0], [0.0, 0.0]], dtype=F64)
    res = nonlinear_least_squares(_rosenbrock, w0, p, LeastSquaresConfig(max_iterations=3))
    assert res.converged.tolist() == [False, True]
    assert res.iterations[0] == 3
    assert torch.isfinite(res.w).all()


def test_nan_residual_flagged_not_propagated() -> None:
    # problem 1 has c < 0, so √c is NaN from the start; problem 0 must be unaffected
    p = torch.tensor([[1.0, 100.0], [1.0, -1.0]], dtype=F64)
    w0 = torch.tensor([[-1.2, 1.0], [0.3, 0.3]], dtype=F64)
    res = nonlinear_least_squares(_rosenbrock, w0, p)
    assert res.converged.tolist() == [True, False]
    assert res.nonfinite.tolist() == [False, True]
    torch.testing.assert_close(res.w[1], w0[1])  # kept, not NaN
    torch.testing.assert_close(res.w[0], torch.ones(2, dtype=F64), atol=1e-9, rtol=0)


def test_nan_on_trial_steps_is_rejected() -> None:
    """r = log(w) − y is NaN for w < 0; overshooting trial steps must be rejected, not taken."""
    y = torch.tensor([[3.0], [-4.0]], dtype=F64)
    res = nonlinear_least_squares(
        lambda w, q: torch.log(w) - q, torch.full((2, 1), 1e-3, dtype=F64), y,
        LeastSquaresConfig(damping=1e-12),
    )  # fmt: skip
    assert res.converged.all() and not res.nonfinite.any()
    torch.testing.assert_close(res.w, y.exp(), rtol=1e-10, atol=0)


def test_analytic_jacobian_equals_autograd() -> None:
    g = _gen(4)
    A = torch.rand(3, 50, 4, dtype=F64, generator=g)
    y = torch.rand(3, 50, dtype=F64, generator=g) + 0.5
    A.requires_grad_()
    y.requires_grad_()

    def jac(w: torch.Tensor, p: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        u = torch.einsum("bmn,bn->bm", p[0], w).clamp_min(1e-12)
        return (0.874 * u ** (0.874 - 1)).unsqueeze(-1) * p[0]

    auto = nonlinear_least_squares(_freundlich, torch.ones(3, 4, dtype=F64), (A, y))
    ana = nonlinear_least_squares(
        _freundlich, torch.ones(3, 4, dtype=F64), (A, y), LeastSquaresConfig(jacobian="analytic"),
        jacobian_fn=jac,
    )  # fmt: skip
    rev = nonlinear_least_squares(
        _freundlich, torch.ones(3, 4, dtype=F64), (A, y), LeastSquaresConfig(autograd_mode="reverse")
    )  # fmt: skip
    torch.testing.assert_close(ana.w, auto.w, atol=1e-12, rtol=0)
    torch.testing.assert_close(rev.w, auto.w, atol=1e-12, rtol=0)
    c = torch.randn(3, 4, dtype=F64, generator=g)
    ga = torch.autograd.grad((auto.w * c).sum(), (A, y))
    gb = torch.autograd.grad((ana.w * c).sum(), (A, y))
    for x, z in zip(ga, gb, strict=True):
        torch.testing.assert_close(x, z, atol=1e-10, rtol=1e-8)


def test_params_as_dict_and_float32_in_float32_out() -> None:
    _, y = _exp_data(noise=0.0)
    y32 = y.float().requires_grad_()
    res = nonlinear_least_squares(lambda w, p: _expfit(w, p["y"]), torch.ones(3, 2), {"y": y32})
    assert res.w.dtype == torch.float32 and res.residual_norm.dtype == torch.float32
    assert res.w.device == y32.device
    (gy,) = torch.autograd.grad(res.w.sum(), y32)
    assert gy.dtype == torch.float32 and torch.isfinite(gy).all()
    ref = nonlinear_least_squares(_expfit, torch.ones(3, 2, dtype=F64), y32.detach().double())
    torch.testing.assert_close(res.w.double(), ref.w, atol=1e-6, rtol=0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_follows_inputs() -> None:
    _, y = _exp_data(noise=0.01)
    res = nonlinear_least_squares(_expfit, torch.ones(3, 2, device="cuda"), y.cuda().float())
    assert res.w.is_cuda and res.w.dtype == torch.float32 and res.converged.all()


def test_bad_inputs_raise_value_error() -> None:
    y = torch.zeros(3, 30, dtype=F64)
    with pytest.raises(ValueError, match="w0"):
        nonlinear_least_squares(_expfit, torch.ones(2, dtype=F64), y)
    with pytest.raises(ValueError, match="batch dim"):
        nonlinear_least_squares(_expfit, torch.ones(2, 2, dtype=F64), y)
    with pytest.raises(ValueError, match="residual_fn"):
        nonlinear_least_squares(lambda w, p: p, torch.ones(3, 2, dtype=F64), y[:, 0])
    with pytest.raises(ValueError, match="jacobian_fn"):
        nonlinear_least_squares(
            _expfit, torch.ones(3, 2, dtype=F64), y, LeastSquaresConfig(jacobian="analytic")
        )
    with pytest.raises(ValueError, match=r"\(B, m, N\)"):
        nonlinear_least_squares(
            _expfit, torch.ones(3, 2, dtype=F64), y, LeastSquaresConfig(jacobian="analytic"),
            jacobian_fn=lambda w, p: torch.zeros(3, 2),
        )  # fmt: skip
    for bad in ({"gtol": -1.0}, {"xtol": -1e-3}, {"ftol": float("nan")}, {"damping": 0.0},
                {"max_iterations": -1}, {"damping_decrease": 1.5}, {"scaling": "nope"}):  # fmt: skip
        with pytest.raises(ValueError, match=next(iter(bad))):
            LeastSquaresConfig(**bad)


# ----------------------------------------------------------------------------- backward


def test_gradcheck_linear_gauss_newton() -> None:
    """r affine in w: Gauss–Newton H is exact, the implicit gradient is lstsq's."""
    g = _gen(5)
    A = torch.randn(2, 8, 3, dtype=F64, generator=g).requires_grad_()
    b = torch.randn(2, 8, dtype=F64, generator=g).requires_grad_()

    def solve(A: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return nonlinear_least_squares(_linear, torch.zeros(2, 3, dtype=F64), (A, b)).w

    assert torch.autograd.gradcheck(solve, (A, b))


def test_gradcheck_nonzero_residual_exact_hessian() -> None:
    # one well-conditioned problem: gradcheck's eps = 1e-6 needs w* to ~1e-12
    y = _exp_data(noise=0.05, m=8)[1][:1].requires_grad_()
    cfg = dataclasses.replace(TIGHT, hessian="exact")

    def solve(y: torch.Tensor) -> torch.Tensor:
        return nonlinear_least_squares(_expfit, torch.ones(1, 2, dtype=F64), y, cfg).w

    assert torch.autograd.gradcheck(solve, (y,))


def test_nonzero_residual_solves_reach_stationarity_below_cost_resolution() -> None:
    """With residuals of ~0.05 at w*, a step that still halves ‖g‖ ~ 1e-9 changes F by less
    than float64 resolves in F; the solve must still drive g(w*) to ~0, which the implicit
    backward assumes. A gain-ratio test alone left about a fifth of these at ‖g‖ ~ 1e-9."""
    t = torch.linspace(0.0, 2.0, 8, dtype=F64)
    y = 2.0 * torch.exp(-1.3 * t) + 0.05 * torch.randn(256, 8, dtype=F64, generator=_gen(3))
    res = nonlinear_least_squares(_expfit, torch.ones(256, 2, dtype=F64), y, TIGHT)
    assert res.converged.all()
    # independent check of stationarity: autograd gradient of F at the returned w
    w = res.w.clone().requires_grad_()
    (g,) = torch.autograd.grad(0.5 * _expfit(w, y).pow(2).sum(), w)
    assert g.abs().max() < 1e-11
    assert res.gradient_norm.max() < 1e-11


def _fd_solution_map(y: torch.Tensor, c: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """Central differences of ⟨c, w*(y)⟩ with tightly converged solves."""
    out = torch.zeros_like(y)
    for i in range(y.shape[0]):
        for j in range(y.shape[1]):
            e = torch.zeros_like(y)
            e[i, j] = eps
            wp = nonlinear_least_squares(_expfit, torch.ones_like(c), y + e, TIGHT).w
            wm = nonlinear_least_squares(_expfit, torch.ones_like(c), y - e, TIGHT).w
            out[i, j] = ((wp - wm) * c).sum() / (2 * eps)
    return out


def test_gauss_newton_vs_exact_hessian_against_finite_differences() -> None:
    """Nonzero residuals at w*: the exact-Hessian gradient matches finite differences of the
    solution map; the Gauss–Newton one is close but measurably off (the documented gap)."""
    y = _exp_data(noise=0.05, seed=1, m=8)[1][:1]
    c = torch.randn(1, 2, dtype=F64, generator=_gen(6))
    fd = _fd_solution_map(y, c)
    grads = {}
    for h in ("exact", "gauss_newton"):
        yy = y.clone().requires_grad_()
        w = nonlinear_least_squares(_expfit, torch.ones(1, 2, dtype=F64), yy, LeastSquaresConfig(hessian=h)).w  # fmt: skip
        (grads[h],) = torch.autograd.grad((w * c).sum(), yy)
    torch.testing.assert_close(grads["exact"], fd, atol=1e-7, rtol=1e-6)
    gap = (grads["gauss_newton"] - fd).norm() / fd.norm()
    assert 1e-4 < gap < 0.2


def test_implicit_gradient_equals_unrolled_converged_solve() -> None:
    """Differentiate through 40 plain Gauss–Newton steps (autograd unrolled): at convergence its
    derivative is the fixed point of the linearised iteration, i.e. the exact IFT gradient."""
    _, y = _exp_data(noise=0.05, seed=2)
    c = torch.randn(3, 2, dtype=F64, generator=_gen(7))
    yy = y.clone().requires_grad_()
    w = nonlinear_least_squares(_expfit, torch.ones(3, 2, dtype=F64), yy, LeastSquaresConfig(hessian="exact")).w  # fmt: skip
    (implicit,) = torch.autograd.grad((w * c).sum(), yy)

    yu = y.clone().requires_grad_()
    wu = w.detach().clone()  # start at the solution: the unrolled map is then contractive
    for _ in range(40):
        J = torch.func.vmap(torch.func.jacfwd(lambda wi, yi: _expfit(wi[None], yi[None])[0]))(wu, yu)  # fmt: skip
        r = _expfit(wu, yu)
        step = torch.linalg.solve(J.mT @ J, (J.mT @ r.unsqueeze(-1))).squeeze(-1)
        wu = wu - step
    (unrolled,) = torch.autograd.grad((wu * c).sum(), yu)
    torch.testing.assert_close(implicit, unrolled, atol=1e-9, rtol=1e-7)


def test_gradients_flow_into_a_network_and_not_into_w0() -> None:
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 30).double()
    z = torch.randn(4, 3, dtype=F64)
    w0 = torch.ones(4, 2, dtype=F64, requires_grad=True)
    y = 1.0 + 0.1 * torch.tanh(net(z))
    res = nonlinear_least_squares(_expfit, w0, y)
    loss = res.w.pow(2).sum()
    gw0, gweight = torch.autograd.grad(loss, (w0, net.weight), allow_unused=True)
    assert gw0 is None
    assert gweight is not None and torch.isfinite(gweight).all() and gweight.abs().sum() > 0


def test_nonfinite_problem_gets_zero_gradient_not_nan() -> None:
    p = torch.tensor([[1.0, 100.0], [1.0, -1.0]], dtype=F64, requires_grad=True)
    res = nonlinear_least_squares(
        _rosenbrock, torch.tensor([[-1.2, 1.0], [0.3, 0.3]], dtype=F64), p
    )
    (gp,) = torch.autograd.grad(res.w.sum(), p)
    assert res.nonfinite.tolist() == [False, True]
    assert torch.isfinite(gp).all() and (gp[1] == 0).all()
    # w* = (a, a²) does not depend on c: d(w1 + w2)/da = 1 + 2a
    torch.testing.assert_close(gp[0], torch.tensor([3.0, 0.0], dtype=F64), atol=1e-8, rtol=0)
