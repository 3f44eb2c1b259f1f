"""The cvxpylayers path for affine residuals, against lstsq, the LM layer, scipy's nnls /
lsq_linear, the equality-constrained KKT system, and finite differences."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("cvxpylayers")
from scipy.optimize import lsq_linear, nnls  # noqa: E402

from solvers.constraints import (  # noqa: E402
    LeastSquaresConfig,
    convex_least_squares,
    nonlinear_least_squares,
)
from solvers.constraints.convex import _layer  # noqa: E402

F64 = torch.float64


def _data(B: int = 3, m: int = 20, n: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, m, n, dtype=F64, generator=g), torch.randn(B, m, dtype=F64, generator=g)


def _lm(A: torch.Tensor, b: torch.Tensor, ridge: float = 0.0) -> torch.Tensor:
    return nonlinear_least_squares(
        lambda w, p: torch.einsum("bmn,bn->bm", p[0], w) - p[1],
        torch.zeros(A.shape[0], A.shape[2], dtype=A.dtype), (A, b), LeastSquaresConfig(ridge=ridge),
    ).w  # fmt: skip


def test_unconstrained_agrees_with_lstsq_and_lm_values_and_gradients() -> None:
    A, b = _data()
    A1, b1 = A.clone().requires_grad_(), b.clone().requires_grad_()
    A2, b2 = A.clone().requires_grad_(), b.clone().requires_grad_()
    A3, b3 = A.clone().requires_grad_(), b.clone().requires_grad_()
    res = convex_least_squares(A1, b1)
    ref = torch.linalg.lstsq(A2, b2.unsqueeze(-1)).solution.squeeze(-1)
    lm = _lm(A3, b3)
    torch.testing.assert_close(res.w, ref, atol=1e-8, rtol=0)
    torch.testing.assert_close(lm, ref, atol=1e-11, rtol=0)
    assert res.converged.all() and res.iterations is None
    c = torch.randn(3, 4, dtype=F64, generator=torch.Generator().manual_seed(1))
    g_cvx = torch.autograd.grad((res.w * c).sum(), (A1, b1))
    g_ref = torch.autograd.grad((ref * c).sum(), (A2, b2))
    g_lm = torch.autograd.grad((lm * c).sum(), (A3, b3))
    for x, y, z in zip(g_cvx, g_ref, g_lm, strict=True):
        torch.testing.assert_close(x, y, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(z, y, atol=1e-10, rtol=1e-9)


def test_ridge_agrees_with_lm() -> None:
    A, b = _data(seed=2)
    res = convex_least_squares(A, b, ridge=0.5)
    torch.testing.assert_close(res.w, _lm(A, b, ridge=0.5), atol=1e-8, rtol=0)


def test_nonnegative_matches_scipy_nnls() -> None:
    A, b = _data(seed=3)
    res = convex_least_squares(A, b, nonnegative=True)
    ref = torch.stack(
        [torch.from_numpy(nnls(a.numpy(), v.numpy())[0]) for a, v in zip(A, b, strict=True)]
    )
    assert (ref == 0).any()  # the constraint is active somewhere
    torch.testing.assert_close(res.w, ref, atol=1e-7, rtol=0)
    assert res.converged.all() and res.constraint_violation.max() < 1e-8


def test_bounds_match_scipy_lsq_linear() -> None:
    A, b = _data(seed=4)
    lo = torch.tensor([-0.2, -0.1, -1.0, 0.0], dtype=F64)
    res = convex_least_squares(A, b, bounds=(lo, 0.15))
    ref = torch.stack([
        torch.from_numpy(lsq_linear(a.numpy(), v.numpy(), bounds=(lo.numpy(), 0.15),
                                    method="bvls", tol=1e-14).x)
        for a, v in zip(A, b, strict=True)
    ])  # fmt: skip
    assert ((ref - 0.15).abs() < 1e-12).any()
    torch.testing.assert_close(res.w, ref, atol=1e-7, rtol=0)


def test_equality_and_conservation_inequality_match_kkt() -> None:
    """sum(w) = s through E w = d, and through an active G w ≤ h with G = −1ᵀ: both equal the
    KKT solution [[AᵀA, Eᵀ], [E, 0]] [w; ν] = [Aᵀb; d]."""
    A, b = _data(B=2, seed=5)
    lstsq = torch.linalg.lstsq(A, b.unsqueeze(-1)).solution.squeeze(-1)
    s = lstsq.sum(-1) + 1.0  # force the total up by one: the constraint binds
    E = torch.ones(2, 1, 4, dtype=F64)
    K = torch.zeros(2, 5, 5, dtype=F64)
    K[:, :4, :4], K[:, :4, 4:], K[:, 4:, :4] = A.mT @ A, E.mT, E
    rhs = torch.cat([(A.mT @ b.unsqueeze(-1)).squeeze(-1), s.unsqueeze(-1)], -1)
    ref = torch.linalg.solve(K, rhs)[:, :4]
    eq = convex_least_squares(A, b, equality=(E, s.unsqueeze(-1)))
    ineq = convex_least_squares(A, b, inequality=(-E, -s.unsqueeze(-1)))  # sum(w) ≥ s
    torch.testing.assert_close(eq.w, ref, atol=1e-7, rtol=0)
    torch.testing.assert_close(ineq.w, ref, atol=1e-7, rtol=0)
    assert eq.converged.all() and ineq.converged.all()


def test_gradient_with_active_constraints_vs_finite_differences() -> None:
    A, b = _data(B=1, m=10, n=3, seed=6)
    b = b.requires_grad_()
    res = convex_least_squares(A, b, nonnegative=True)
    c = torch.tensor([[1.0, -2.0, 0.5]], dtype=F64)
    (g,) = torch.autograd.grad((res.w * c).sum(), b)
    eps, fd = 1e-4, torch.zeros_like(b)
    with torch.no_grad():
        for j in range(b.shape[1]):
            e = torch.zeros_like(b)
            e[0, j] = eps
            wp = convex_least_squares(A, b + e, nonnegative=True).w
            wm = convex_least_squares(A, b - e, nonnegative=True).w
            fd[0, j] = ((wp - wm) * c).sum() / (2 * eps)
    torch.testing.assert_close(g, fd, atol=1e-5, rtol=1e-4)


def test_layer_cached_and_dtype_follows_input() -> None:
    A, b = _data(seed=7)
    convex_least_squares(A, b, nonnegative=True)
    hits = _layer.cache_info().hits
    res = convex_least_squares(A.float(), b.float(), nonnegative=True)
    assert _layer.cache_info().hits == hits + 1
    assert res.w.dtype == torch.float32 and res.residual_norm.dtype == torch.float32


def test_bad_inputs_and_infeasible() -> None:
    A, b = _data()
    with pytest.raises(ValueError, match="A must"):
        convex_least_squares(A[0], b)
    with pytest.raises(ValueError, match="b must"):
        convex_least_squares(A, b[:, :5])
    with pytest.raises(ValueError, match="ridge"):
        convex_least_squares(A, b, ridge=-1.0)
    with pytest.raises(ValueError, match="inequality"):
        convex_least_squares(A, b, inequality=(torch.ones(3, 1, 5, dtype=F64), torch.ones(3, 1)))
    with pytest.raises(ValueError, match="lower"):
        convex_least_squares(A, b, bounds=(torch.zeros(7), None))
    with pytest.raises(RuntimeError, match="solver"):
        convex_least_squares(A, b, bounds=(1.0, 0.0))
