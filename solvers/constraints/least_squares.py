"""Batched, differentiable nonlinear least squares: Levenberg–Marquardt with an implicit backward.

This is the hard-constraint solve of PI-HC-MoE (papers/pihcmoe.md, sec. 1): for every problem b
of a batch, find basis coefficients

    w*_b = argmin_w  F_b(w) = ½‖r(w, θ_b)‖² + ½·μ·‖w‖²,        r: R^N → R^m,  μ = ``ridge``,

with m ≫ N (about 20 000 residual rows, 16–64 unknowns). The reference solves it with
Optimistix / JaxOpt LM in a lock-step ``vmap``; here every problem has its own damping,
its own accept / reject decision and its own convergence mask, so finished problems stop
changing and stop costing Jacobian evaluations.

Gradients with respect to θ (``params``) come from the implicit function theorem (paper
Eq. 1/5), not from unrolling the iterations: at w*, g(w*, θ) = ∇_w F = J(w*, θ)ᵀ r(w*, θ) + μ·w*
= 0, hence dw*/dθ = −H⁻¹ ∂g/∂θ with H = ∂g/∂w. The backward solves H v = ∂L/∂w* and returns
the VJP of −g with respect to θ along v.

The solver is hand-written rather than taken from a library: Theseus / torchmin do not give a
per-problem masked batch over huge batches of tiny (N ≤ 64) dense problems with an implicit
backward into arbitrary residual parameters, which is the structure this layer exists for.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

logger = logging.getLogger(__name__)

__all__ = ["LeastSquaresConfig", "LeastSquaresResult", "nonlinear_least_squares"]

Params = Any  # a Tensor, or a (nested) tuple / list / dict of Tensors, each with leading dim B
ResidualFn = Callable[[Tensor, Params], Tensor]
JacobianFn = Callable[[Tensor, Params], Tensor]

# a trial step is accepted when the gain ratio (actual / predicted decrease) exceeds this
_MIN_GAIN_RATIO = 1e-4
# F's rounding floor, in units of eps64·F: near a minimum with nonzero residuals a step's true
# decrease (~ ‖g‖²/H) falls below what float64 can tell apart in F long before ‖g‖ is small, and
# a gain-ratio test alone then stalls w at ~√eps of w* (and an implicit backward at w* is only as
# good as g(w*) = 0). Below this floor a step is accepted on the model's word, if F did not rise
# by more than the floor; the gradient test decides when to stop.
_COST_FLOOR = 128.0


@dataclass(frozen=True)
class LeastSquaresConfig:
    """Settings of the batched Levenberg–Marquardt solve and of its implicit backward.

    Convergence is decided per problem; a problem is ``converged`` as soon as one test holds:

    * **gradient** (checked at every accepted point, MINPACK's scale-free test):
      ``max_j |g_j| / (‖Ĵ_j‖·‖r̂‖) ≤ gtol``, the largest cosine between the (ridge-augmented)
      residual r̂ = [r; √μ·w] and a column of its Jacobian Ĵ = [J; √μ·I], where g = Ĵᵀr̂ =
      Jᵀr + μ·w is the gradient of F. Also met when F = 0 exactly.
    * **step** (checked after every trial step, like MINPACK's test on its trust radius): a
      step δ with ``‖δ‖₂ ≤ xtol·(xtol + ‖w‖₂)``; when it is rejected, even steps below that
      resolution cannot decrease F, and w (the last accepted point) is kept.
    * **cost** (MINPACK's, checked after every trial step, accepted or not): the actual and
      the predicted relative decreases of F both satisfy ``|F_old − F_new| ≤ ftol·F_old``
      and ``predicted ≤ ftol·F_old``, with gain ratio ≤ 2.

    A trial step is accepted when its gain ratio (actual / predicted decrease of F) exceeds
    1e-4, or when the predicted decrease is below F's float64 resolution (128·eps·F) and F rose
    by no more than that: near a nonzero-residual minimum F stops telling better points from
    worse ones while ‖g‖ is still ~√eps, and only the gradient test can judge progress there.

    Attributes:
        max_iterations: The most LM trial steps (accepted or rejected) per problem.
        gtol: Gradient (cosine) tolerance, ≥ 0.
        xtol: Relative step tolerance, ≥ 0.
        ftol: Relative cost-decrease tolerance, ≥ 0.
        damping: Initial damping λ0 > 0.
        damping_increase: Factor (> 1) applied to λ after a rejected step.
        damping_decrease: Factor in (0, 1) applied to λ after an accepted step.
        min_damping: Floor of λ (≥ 0).
        max_damping: When λ would exceed it the problem is stalled: it stops, not converged.
        scaling: ``"diag"`` solves (JᵀJ + μI + λ·diag(JᵀJ + μI))δ = −g (Marquardt's scale-
            invariant damping; zero diagonal entries are floored at 1e-12 of the largest),
            ``"identity"`` solves (JᵀJ + μI + λ·I)δ = −g (Levenberg's).
        jacobian: ``"autograd"``: J by ``torch.func.jacfwd`` / ``jacrev`` vmapped over the
            batch (``residual_fn`` must then be vmap-compatible); ``"analytic"``: J from the
            ``jacobian_fn`` given to :func:`nonlinear_least_squares`.
        autograd_mode: ``"forward"`` (``jacfwd``: N JVPs, best when m ≫ N) or ``"reverse"``
            (``jacrev``: m VJPs).
        ridge: μ ≥ 0, the Tikhonov weight in F. The reference's residual row 1e-4·w is ridge=1e-8.
        hessian: The H of the implicit backward. ``"gauss_newton"``: H = JᵀJ + μI. It is the
            exact ∂g/∂w only when the residuals vanish at w* or r is affine in w; otherwise it
            drops Σ_i r_i ∇²_w r_i and the gradient is an approximation (its error grows with
            ‖r(w*)‖ and the curvature of r). ``"exact"``: H = ∂g/∂w by forward-over-reverse
            autodiff, what Optimistix' / JaxOpt's implicit adjoints use; solved by Cholesky,
            by LU where H is not positive definite.
    """

    max_iterations: int = 50
    gtol: float = 1e-10
    xtol: float = 1e-10
    ftol: float = 1e-12
    damping: float = 1e-6
    damping_increase: float = 10.0
    damping_decrease: float = 1 / 3
    min_damping: float = 1e-15
    max_damping: float = 1e16
    scaling: Literal["diag", "identity"] = "diag"
    jacobian: Literal["autograd", "analytic"] = "autograd"
    autograd_mode: Literal["forward", "reverse"] = "forward"
    ridge: float = 0.0
    hessian: Literal["gauss_newton", "exact"] = "gauss_newton"

    def __post_init__(self) -> None:
        if not isinstance(self.max_iterations, int) or self.max_iterations < 0:
            raise ValueError(f"max_iterations must be an int >= 0, got {self.max_iterations!r}")
        for name in ("gtol", "xtol", "ftol", "ridge", "min_damping"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if not (math.isfinite(self.damping) and self.damping > 0):
            raise ValueError(f"damping (λ0) must be finite and > 0, got {self.damping!r}")
        if not self.damping_increase > 1:
            raise ValueError(f"damping_increase must be > 1, got {self.damping_increase!r}")
        if not 0 < self.damping_decrease < 1:
            raise ValueError(f"damping_decrease must lie in (0, 1), got {self.damping_decrease!r}")
        if not self.max_damping > self.damping:
            raise ValueError(
                f"max_damping must exceed damping, got {self.max_damping!r} <= {self.damping!r}"
            )
        choices = {
            "scaling": ("diag", "identity"),
            "jacobian": ("autograd", "analytic"),
            "autograd_mode": ("forward", "reverse"),
            "hessian": ("gauss_newton", "exact"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class LeastSquaresResult:
    """The outcome of :func:`nonlinear_least_squares` for a batch of B problems.

    Attributes:
        w: (B, N) the last accepted coefficients, in the dtype and on the device of ``w0``;
            differentiable with respect to ``params`` (implicit function theorem).
        residual_norm: (B,) ‖r(w)‖₂ (the ridge term excluded), dtype of ``w0``; NaN / inf
            where the residual was not finite.
        iterations: (B,) int64, LM trial steps taken (accepted and rejected).
        converged: (B,) bool, one of the tests of :class:`LeastSquaresConfig` held. False for
            problems that ran out of iterations, stalled (λ > max_damping) or went non-finite.
        gradient_norm: (B,) ‖Jᵀr + μ·w‖_∞ at the last linearisation point: ``w`` itself,
            or for a problem that ended on a step / cost test the point before its final
            step (finished problems cost no further Jacobian). dtype of ``w0``.
        nonfinite: (B,) bool, the residual or Jacobian at ``w`` (or at ``w0``) was not finite.
    """

    w: Tensor
    residual_norm: Tensor
    iterations: Tensor
    converged: Tensor
    gradient_norm: Tensor
    nonfinite: Tensor


# ----------------------------------------------------------------------------- pytrees


def _tree_map(fn: Callable[[Tensor], Any], tree: Params) -> Params:
    if tree is None:
        return None
    if isinstance(tree, Tensor):
        return fn(tree)
    if isinstance(tree, Mapping):
        return {k: _tree_map(fn, v) for k, v in tree.items()}
    if isinstance(tree, (tuple, list)):
        return type(tree)(_tree_map(fn, v) for v in tree)
    raise TypeError(
        f"params must be a Tensor or a (nested) tuple / list / dict of Tensors, got {type(tree)}"
    )


def _leaves(tree: Params) -> list[Tensor]:
    out: list[Tensor] = []
    _tree_map(out.append, tree)
    return out


def _unflatten(tree: Params, leaves: list[Tensor] | tuple[Tensor, ...]) -> Params:
    it = iter(leaves)
    return _tree_map(lambda _: next(it), tree)


def _take(tree: Params, idx: Tensor, batch: int) -> Params:
    """The problems ``idx`` (sorted, unique) of every params tensor; no copy when all are taken."""
    if idx.numel() == batch:
        return tree
    return _tree_map(lambda t: t[idx], tree)


def _to64(x: Tensor) -> Tensor:
    return x.to(torch.float64) if x.is_floating_point() else x


# ----------------------------------------------------------------------------- Jacobians


def _residual64(residual_fn: ResidualFn, w: Tensor, params: Params) -> Tensor:
    return residual_fn(w, _tree_map(_to64, params)).to(torch.float64)


def _jacobian(
    residual_fn: ResidualFn,
    jacobian_fn: JacobianFn | None,
    w: Tensor,
    params: Params,
    config: LeastSquaresConfig,
    m: int,
) -> Tensor:
    """J = ∂r/∂w, (B, m, N) float64, for the batch (w, params)."""
    if jacobian_fn is not None:
        J = jacobian_fn(w, _tree_map(_to64, params))
        if not isinstance(J, Tensor) or J.shape != (w.shape[0], m, w.shape[1]):
            got = tuple(J.shape) if isinstance(J, Tensor) else type(J)
            raise ValueError(
                f"jacobian_fn must return a (B, m, N) = {(w.shape[0], m, w.shape[1])} tensor, "
                f"got {got}"
            )
        return J.to(torch.float64)

    def single(wi: Tensor, pi: Params) -> Tensor:
        # one problem: (N,) -> (m,), through the batched residual_fn with a batch of one
        return residual_fn(wi.unsqueeze(0), _tree_map(lambda t: t.unsqueeze(0), pi))[0]

    jac = torch.func.jacfwd if config.autograd_mode == "forward" else torch.func.jacrev
    p64 = _tree_map(_to64, params)
    in_dims = (0, _tree_map(lambda _: 0, p64))
    return torch.func.vmap(jac(single), in_dims=in_dims)(w, p64).to(torch.float64)


def _gradient_fn(
    residual_fn: ResidualFn, jacobian_fn: JacobianFn | None, ridge: float
) -> Callable[[Tensor, Params], Tensor]:
    """g(w, θ) = ∇_w F = Jᵀr + μ·w, (B, N), differentiable in θ (for the implicit VJP)."""
    if jacobian_fn is not None:

        def g_analytic(w: Tensor, params: Params) -> Tensor:
            p = _tree_map(_to64, params)
            r = residual_fn(w, p).to(torch.float64)
            J = jacobian_fn(w, p).to(torch.float64)
            return torch.einsum("bmn,bm->bn", J, r) + ridge * w

        return g_analytic

    def g_autograd(w: Tensor, params: Params) -> Tensor:
        def cost(wv: Tensor) -> Tensor:
            # problems are independent, so ∇ of the batch sum is the per-problem gradient
            return 0.5 * _residual64(residual_fn, wv, params).pow(2).sum()

        return torch.func.grad(cost)(w) + ridge * w

    return g_autograd


# ----------------------------------------------------------------------------- the solve


def _check_inputs(
    w0: Tensor, params: Params, config: LeastSquaresConfig, jacobian_fn: JacobianFn | None
) -> None:
    if not isinstance(config, LeastSquaresConfig):
        raise TypeError(f"config must be a LeastSquaresConfig, got {type(config)}")
    if not isinstance(w0, Tensor) or w0.ndim != 2 or not w0.is_floating_point():
        desc = f"shape {tuple(w0.shape)} dtype {w0.dtype}" if isinstance(w0, Tensor) else type(w0)
        raise ValueError(f"w0 must be a floating (B, N) tensor, got {desc}")
    if w0.shape[0] == 0 or w0.shape[1] == 0:
        raise ValueError(f"w0 must have B >= 1 problems and N >= 1 unknowns, got {tuple(w0.shape)}")
    if not torch.isfinite(w0).all():
        raise ValueError("w0 contains non-finite values")
    for leaf in _leaves(params):
        if leaf.ndim == 0 or leaf.shape[0] != w0.shape[0]:
            raise ValueError(
                f"every params tensor needs the leading batch dim B={w0.shape[0]} of w0, got "
                f"shape {tuple(leaf.shape)}"
            )
        if leaf.device != w0.device:
            raise ValueError(f"params on {leaf.device} but w0 on {w0.device}")
    if config.jacobian == "analytic" and jacobian_fn is None:
        raise ValueError('config.jacobian="analytic" needs a jacobian_fn')
    if config.jacobian == "autograd" and jacobian_fn is not None:
        raise ValueError(
            'a jacobian_fn was given but config.jacobian is "autograd"; set "analytic"'
        )


def _solve(
    residual_fn: ResidualFn,
    w0: Tensor,
    params: Params,
    config: LeastSquaresConfig,
    jacobian_fn: JacobianFn | None,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The LM iterations in float64 without autograd. Returns w, ‖r‖, iterations, converged,
    ‖g‖_∞, nonfinite (all float64 / int64 / bool)."""
    B, N = w0.shape
    mu = config.ridge
    device = w0.device
    w = w0.detach().to(torch.float64).clone()
    params = _tree_map(lambda t: t.detach(), params)
    eye = torch.eye(N, dtype=torch.float64, device=device)

    def residual(idx: Tensor, wv: Tensor) -> Tensor:
        p = _take(params, idx, B)
        r = _residual64(residual_fn, wv, p)
        if r.ndim != 2 or r.shape[0] != wv.shape[0]:
            raise ValueError(
                f"residual_fn must map (B, N) to (B, m), got {tuple(r.shape)} for "
                f"w of shape {tuple(wv.shape)}"
            )
        return r

    def cost(r: Tensor, wv: Tensor) -> Tensor:
        return 0.5 * (r.pow(2).sum(-1) + mu * wv.pow(2).sum(-1))

    everyone = torch.arange(B, device=device)
    r = residual(everyone, w)
    m = r.shape[1]
    F = cost(r, w)
    lam = torch.full((B,), config.damping, dtype=torch.float64, device=device)
    iterations = torch.zeros(B, dtype=torch.int64, device=device)
    converged = torch.zeros(B, dtype=torch.bool, device=device)
    nonfinite = ~torch.isfinite(r).all(-1)
    active = ~nonfinite
    stale = active.clone()  # problems whose J, g, JᵀJ must be (re)computed at the current w
    JTJ = torch.zeros(B, N, N, dtype=torch.float64, device=device)
    g = torch.zeros(B, N, dtype=torch.float64, device=device)
    col = torch.zeros(B, N, dtype=torch.float64, device=device)  # ‖Ĵ_j‖, for the gtol test

    for it in range(config.max_iterations + 1):
        # (re)linearise the problems that moved, then the gradient test at their new point
        if stale.any():
            idx = stale.nonzero().squeeze(1)
            J = _jacobian(residual_fn, jacobian_fn, w[idx], _take(params, idx, B), config, m)  # fmt: skip
            JTJ[idx] = J.mT @ J + mu * eye
            g[idx] = torch.einsum("bmn,bm->bn", J, r[idx]) + mu * w[idx]
            # a non-finite entry of J reaches diag(JᵀJ) = Σ J²: a cheap (B, N) test
            diag = JTJ[idx].diagonal(dim1=-2, dim2=-1)
            bad = ~(torch.isfinite(diag).all(-1) & torch.isfinite(g[idx]).all(-1))
            col[idx] = JTJ[idx].diagonal(dim1=-2, dim2=-1).clamp_min(0).sqrt()
            nonfinite[idx[bad]] = True
            active[idx[bad]] = False
            good = idx[~bad]
            rnorm = (2 * F[good]).sqrt()
            cosine = (g[good].abs() / (col[good] * rnorm.unsqueeze(-1)).clamp_min(1e-300)).amax(-1)
            done = (F[good] == 0) | (cosine <= config.gtol)
            converged[good[done]] = True
            active[good[done]] = False
            stale.zero_()
        if it == config.max_iterations or not active.any():
            break

        idx = active.nonzero().squeeze(1)
        A, gi, wi, Fi, lami = JTJ[idx], g[idx], w[idx], F[idx], lam[idx]
        if config.scaling == "diag":
            d = A.diagonal(dim1=-2, dim2=-1)
            D = d.clamp_min(1e-12 * d.amax(-1, keepdim=True).clamp_min(1e-300))
        else:
            D = torch.ones_like(gi)
        # (JᵀJ + μI + λ·D) δ = −g
        L, info = torch.linalg.cholesky_ex(A + torch.diag_embed(lami.unsqueeze(-1) * D))
        factored = info == 0
        L = torch.where(factored[:, None, None], L, torch.eye(N, dtype=L.dtype, device=device))
        delta = torch.cholesky_solve(-gi.unsqueeze(-1), L).squeeze(-1)
        delta = torch.where(factored.unsqueeze(-1), delta, torch.zeros_like(delta))
        w_trial = wi + delta
        r_trial = residual(idx, w_trial)
        F_trial = cost(r_trial, w_trial)
        # predicted decrease of the local quadratic model: ½ δᵀ(λDδ − g)
        predicted = 0.5 * (delta * (lami.unsqueeze(-1) * D * delta - gi)).sum(-1)
        # F_old − F_new as ½Σ(r_old − r_new)(r_old + r_new): no cancellation near the optimum
        ri = r[idx]
        actual = 0.5 * ((ri - r_trial) * (ri + r_trial)).sum(-1)
        actual = actual - 0.5 * mu * (delta * (2 * wi + delta)).sum(-1)
        finite_trial = torch.isfinite(F_trial) & torch.isfinite(r_trial).all(-1)
        rho = actual / predicted.clamp_min(1e-300)
        floor = _COST_FLOOR * torch.finfo(torch.float64).eps * Fi
        unresolved = (predicted <= floor) & (actual >= -floor)
        accept = factored & finite_trial & (predicted > 0) & ((rho > _MIN_GAIN_RATIO) | unresolved)
        iterations[idx] += 1

        acc = idx[accept]
        w[acc] = w_trial[accept]
        r[acc] = r_trial[accept]
        F[acc] = F_trial[accept]
        lam[acc] = (lam[acc] * config.damping_decrease).clamp_min(config.min_damping)
        rej = idx[~accept]
        lam[rej] = lam[rej] * config.damping_increase

        # step and cost tests on the accepted steps
        step_small = delta.norm(dim=-1) <= config.xtol * (config.xtol + w_trial.norm(dim=-1))
        # MINPACK's cost test also ends on a rejected step: the model predicts no real progress
        cost_small = (actual.abs() <= config.ftol * Fi) & (predicted <= config.ftol * Fi)
        cost_small = cost_small & factored & finite_trial & (rho <= 2)
        # as MINPACK's xtol (on its trust radius), a tiny step ends the solve accepted or not:
        # a rejected one means even steps below the resolution xtol·‖w‖ cannot decrease F
        done = (step_small & factored & finite_trial) | cost_small
        converged[idx[done]] = True
        active[idx[done]] = False
        stale[acc] = active[acc]  # finished problems cost no further Jacobian
        stalled = idx[~accept][lam[rej] > config.max_damping]
        active[stalled] = False

    residual_norm = r.norm(dim=-1)
    return w, residual_norm, iterations, converged, g.abs().amax(-1), nonfinite


# ----------------------------------------------------------------------------- implicit backward


class _ImplicitSolution(torch.autograd.Function):
    """Identity on w* in the forward; the implicit-function-theorem VJP into θ in the backward."""

    @staticmethod
    def forward(ctx: Any, w_star: Tensor, spec: dict[str, Any], *leaves: Tensor) -> Tensor:
        ctx.spec = spec
        ctx.save_for_backward(w_star, *leaves)
        return w_star.clone()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_w: Tensor) -> tuple[Tensor | None, ...]:
        w_star, *leaves = ctx.saved_tensors
        spec = ctx.spec
        config: LeastSquaresConfig = spec["config"]
        residual_fn, jacobian_fn, tree = spec["residual_fn"], spec["jacobian_fn"], spec["tree"]
        needs = ctx.needs_input_grad[2:]
        if not any(needs):
            return (None, None, *[None] * len(leaves))

        g_fn = _gradient_fn(residual_fn, jacobian_fn, config.ridge)
        # problems flagged non-finite get a zero gradient instead of a NaN one
        ok = (~spec["nonfinite"]).nonzero().squeeze(1)
        w = w_star.detach()[ok]
        p_det = _take(_unflatten(tree, [t.detach() for t in leaves]), ok, len(w_star))
        N = w.shape[1]
        if config.hessian == "gauss_newton":
            r = _residual64(residual_fn, w, p_det)
            J = _jacobian(residual_fn, jacobian_fn, w, p_det, config, r.shape[1])
            H = J.mT @ J + config.ridge * torch.eye(N, dtype=w.dtype, device=w.device)
        else:
            # exact H = ∂g/∂w: one JVP of g per unknown (g is block diagonal over the batch)
            basis = torch.eye(N, dtype=w.dtype, device=w.device)

            def column(e: Tensor) -> Tensor:
                return torch.func.jvp(lambda wv: g_fn(wv, p_det), (w,), (e.expand_as(w),))[1]

            H = torch.func.vmap(column)(basis).permute(1, 2, 0)  # H[b, :, j] = ∂g_b/∂w_j
            H = 0.5 * (H + H.mT)
        rhs = grad_w.to(torch.float64)[ok].unsqueeze(-1)
        L, info = torch.linalg.cholesky_ex(H)
        v = torch.cholesky_solve(rhs, L).squeeze(-1)
        bad = info != 0
        if bad.any():
            # H not positive definite (a saddle, or a rank-deficient J): least squares (gelsy)
            v[bad] = torch.linalg.lstsq(H[bad], rhs[bad]).solution.squeeze(-1)
            logger.debug("implicit backward: H not positive definite for %d problems", int(bad.sum()))  # fmt: skip

        # dL/dθ = −vᵀ ∂g/∂θ: a VJP of g(w*, ·) along −v, for the leaves that need a gradient
        wanted = [i for i, need in enumerate(needs) if need and leaves[i].is_floating_point()]

        def g_of_leaves(*ls: Tensor) -> Tensor:
            full = [t.detach() for t in leaves]
            for i, leaf in zip(wanted, ls, strict=True):
                full[i] = leaf
            return g_fn(w, _take(_unflatten(tree, full), ok, len(w_star)))

        _, vjp = torch.func.vjp(g_of_leaves, *[leaves[i] for i in wanted])
        grads = vjp(-v)
        out: list[Tensor | None] = [None] * len(leaves)
        for i, gr in zip(wanted, grads, strict=True):
            out[i] = gr
        return (None, None, *out)


# ----------------------------------------------------------------------------- public


def nonlinear_least_squares(
    residual_fn: ResidualFn,
    w0: Tensor,
    params: Params = None,
    config: LeastSquaresConfig | None = None,
    *,
    jacobian_fn: JacobianFn | None = None,
) -> LeastSquaresResult:
    """Solve a batch of independent nonlinear least-squares problems by Levenberg–Marquardt.

    For each b: w*_b = argmin_w ½‖r(w, θ_b)‖² + ½·ridge·‖w‖² (see :class:`LeastSquaresConfig`
    for the damping, the acceptance of steps and the convergence tests). Every problem keeps
    its own damping λ_b and mask: a finished problem is no longer updated and no longer costs
    residual or Jacobian evaluations.

    Precision: the iterations and the backward run in float64 whatever the input dtype
    (``w`` and the floating ``params`` are cast); the results come back in ``w0``'s dtype.

    Differentiation: ``result.w`` is differentiable with respect to every floating ``params``
    tensor that requires grad, by the implicit function theorem at the returned w (no
    unrolling; valid where the problem converged, an approximation elsewhere). ``w0`` gets no
    gradient.

    Args:
        residual_fn: ``r = residual_fn(w, params)``, w: (B', N) float64, params: the same
            structure as ``params`` restricted to B' problems, r: (B', m). Row b of r may depend
            only on row b of w and of each params tensor. With ``jacobian="autograd"`` it must
            be composable with ``torch.func`` (``vmap`` / ``jacfwd``): no in-place writes
            into inputs, no ``.item()``, no data-dependent Python branching.
        w0: (B, N) floating starting coefficients (e.g. ones, as the reference for DS).
        params: θ: None, a tensor (B, ...), or a (nested) tuple / list / dict of tensors, each
            with leading batch dimension B and on ``w0``'s device.
        config: Solver settings; ``LeastSquaresConfig()`` when None.
        jacobian_fn: With ``config.jacobian="analytic"``: ``J = jacobian_fn(w, params)``,
            (B', m, N) = ∂r/∂w. It must be differentiable in params for the backward.

    Returns:
        A :class:`LeastSquaresResult`. Problems whose residual turns non-finite are flagged
        (``nonfinite``, ``converged`` False) and keep their last finite w.

    Raises:
        ValueError: w0 not a finite floating 2-D tensor, params without the batch dim B,
            residual_fn output not (B, m), a Jacobian of the wrong shape, or a mismatch
            between ``config.jacobian`` and ``jacobian_fn``.
        TypeError: params not a tensor / container of tensors, or config of the wrong type.
    """
    config = LeastSquaresConfig() if config is None else config
    _check_inputs(w0, params, config, jacobian_fn)
    with torch.no_grad():
        w, rnorm, iterations, converged, gnorm, nonfinite = _solve(
            residual_fn, w0, params, config, jacobian_fn
        )
    leaves = _leaves(params)
    if torch.is_grad_enabled() and any(t.requires_grad for t in leaves):
        spec = {
            "config": config,
            "residual_fn": residual_fn,
            "jacobian_fn": jacobian_fn,
            "tree": params,
            "nonfinite": nonfinite,
        }
        w = _ImplicitSolution.apply(w, spec, *leaves)
    n_bad = int((~converged).sum())
    if n_bad:
        logger.debug("nonlinear_least_squares: %d of %d problems not converged", n_bad, len(w))
    return LeastSquaresResult(
        w=w.to(w0.dtype),
        residual_norm=rnorm.to(w0.dtype),
        iterations=iterations,
        converged=converged,
        gradient_norm=gnorm.to(w0.dtype),
        nonfinite=nonfinite,
    )
