"""Convex, constrained linear least squares as a differentiable layer (cvxpylayers).

For residuals affine in the coefficients, r(w) = A w − b, the hard-constraint solve becomes the
convex program (per problem b of the batch)

    minimise_w  ½‖A w − b‖² + ½·ridge·‖w‖²
    subject to  lower ≤ w ≤ upper,  w ≥ 0,  E w = d,  G w ≤ h      (each optional)

which ``cvxpylayers`` solves and differentiates (through the KKT conditions, diffcp + SCS by
default) with respect to A, b, d, h and the bounds. With no constraint it is plain linear
least squares, which :func:`solvers.constraints.nonlinear_least_squares` or
``torch.linalg.lstsq`` solve to machine precision far faster (papers/pihcmoe.md sec. 6);
this path exists for the constraints (positivity, a conservation inequality, bounds).

The layer is built once per problem structure (m, N, constraints, ridge) and cached.
Accuracy is that of the conic solver: with the default ``solver_args`` (SCS, eps 1e-10) the
solution agrees with exact references to about 1e-8 and gradients to about 1e-6 on well-
conditioned problems; loosen ``eps_abs`` / ``eps_rel`` for speed.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

logger = logging.getLogger(__name__)

__all__ = ["ConvexResult", "convex_least_squares"]

_DEFAULT_SOLVER_ARGS: dict[str, Any] = {
    # diffcp would otherwise start a process pool over the batch
    "n_jobs_forward": 1,
    "eps_abs": 1e-10,
    "eps_rel": 1e-10,
    "max_iters": 100_000,
}


@dataclass(frozen=True)
class ConvexResult:
    """The outcome of :func:`convex_least_squares` for B problems.

    Attributes:
        w: (B, N) the minimiser, dtype and device of ``A``; differentiable in A, b and the
            constraint data.
        residual_norm: (B,) ‖A w − b‖₂ (the ridge term excluded).
        constraint_violation: (B,) the largest violation of any constraint at w (≥ 0; 0 when
            there are none): max of (lower − w)₊, (w − upper)₊, (−w)₊, |E w − d|, (G w − h)₊.
        converged: (B,) bool, w finite and ``constraint_violation ≤ feasibility_tol``.
        iterations: None: cvxpylayers does not report the conic solver's iteration counts.
    """

    w: Tensor
    residual_norm: Tensor
    constraint_violation: Tensor
    converged: Tensor
    iterations: Tensor | None = None


@functools.lru_cache(maxsize=32)
def _layer(
    m: int,
    n: int,
    lower: bool,
    upper: bool,
    nonnegative: bool,
    p_eq: int,
    p_in: int,
    ridge: float,
) -> Any:
    """A CvxpyLayer for one problem structure; parameters in the order A, b, lower, upper,
    E, d, G, h (those present)."""
    import cvxpy as cp
    from cvxpylayers.torch import CvxpyLayer

    A, b, w = cp.Parameter((m, n)), cp.Parameter(m), cp.Variable(n)
    parameters = [A, b]
    objective = 0.5 * cp.sum_squares(A @ w - b)
    if ridge > 0:
        objective = objective + 0.5 * ridge * cp.sum_squares(w)
    constraints = []
    if lower:
        lo = cp.Parameter(n)
        parameters.append(lo)
        constraints.append(w >= lo)
    if upper:
        hi = cp.Parameter(n)
        parameters.append(hi)
        constraints.append(w <= hi)
    if nonnegative:
        constraints.append(w >= 0)
    if p_eq:
        E, d = cp.Parameter((p_eq, n)), cp.Parameter(p_eq)
        parameters += [E, d]
        constraints.append(E @ w == d)
    if p_in:
        G, h = cp.Parameter((p_in, n)), cp.Parameter(p_in)
        parameters += [G, h]
        constraints.append(G @ w <= h)
    problem = cp.Problem(cp.Minimize(objective), constraints)
    if not problem.is_dpp():  # pragma: no cover - the construction above is DPP
        raise RuntimeError("internal: the least-squares program is not DPP")
    return CvxpyLayer(problem, parameters=parameters, variables=[w])


def _pair(name: str, value: Any, B: int, n: int, like: Tensor) -> tuple[Tensor, Tensor]:
    if not (isinstance(value, (tuple, list)) and len(value) == 2):
        raise ValueError(f"{name} must be a pair (matrix (B, p, N), vector (B, p)), got {value!r}")
    M, v = (torch.as_tensor(x, dtype=like.dtype, device=like.device) for x in value)
    if M.ndim != 3 or M.shape[0] != B or M.shape[2] != n or v.shape != M.shape[:2]:
        raise ValueError(
            f"{name} must be (matrix (B={B}, p, N={n}), vector (B, p)), got shapes "
            f"{tuple(M.shape)} and {tuple(v.shape)}"
        )
    return M, v


def _bound(name: str, value: Any, B: int, n: int, like: Tensor) -> Tensor | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        if math.isinf(value):
            return None
        value = torch.full((n,), float(value))
    t = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    if t.shape == (n,):
        t = t.expand(B, n)
    if t.shape != (B, n) or not torch.isfinite(t).all():
        raise ValueError(
            f"{name} bound must be a finite number, None, or a finite (N,) / (B, N) tensor with "
            f"N={n}, B={B}; got shape {tuple(t.shape)}"
        )
    return t


def convex_least_squares(
    A: Tensor,
    b: Tensor,
    *,
    bounds: tuple[Any, Any] | None = None,
    nonnegative: bool = False,
    equality: tuple[Tensor, Tensor] | None = None,
    inequality: tuple[Tensor, Tensor] | None = None,
    ridge: float = 0.0,
    solver_args: Mapping[str, Any] | None = None,
    feasibility_tol: float = 1e-6,
) -> ConvexResult:
    """Solve B constrained linear least-squares problems with a differentiable conic layer.

    Args:
        A: (B, m, N) float, the affine residual's matrix.
        b: (B, m) float, its offset: r(w) = A w − b.
        bounds: (lower, upper), each None, a number (±inf meaning none) or a finite (N,) or
            (B, N) tensor.
        nonnegative: Add w ≥ 0.
        equality: (E (B, p, N), d (B, p)): E w = d.
        inequality: (G (B, q, N), h (B, q)): G w ≤ h, e.g. a conservation inequality.
        ridge: μ ≥ 0, adds ½·μ·‖w‖² (same convention as ``LeastSquaresConfig.ridge``).
        solver_args: Overrides of the cvxpylayers / diffcp / SCS arguments (defaults: one
            process, eps_abs = eps_rel = 1e-10).
        feasibility_tol: The largest constraint violation still counted as ``converged``.

    Returns:
        A :class:`ConvexResult`. The solve runs on CPU in float64; results come back in A's
        dtype and on A's device.

    Raises:
        ValueError: shapes that do not match, non-finite data, or a negative ridge.
        RuntimeError: the conic solver failed (e.g. infeasible constraints).
    """
    if not isinstance(A, Tensor) or A.ndim != 3 or not A.is_floating_point():
        raise ValueError(f"A must be a floating (B, m, N) tensor, got {getattr(A, 'shape', A)}")
    B, m, n = A.shape
    if not isinstance(b, Tensor) or b.shape != (B, m):
        raise ValueError(f"b must be a (B, m) = {(B, m)} tensor, got {getattr(b, 'shape', b)}")
    if not (math.isfinite(ridge) and ridge >= 0):
        raise ValueError(f"ridge must be finite and >= 0, got {ridge!r}")
    if not (torch.isfinite(A).all() and torch.isfinite(b).all()):
        raise ValueError("A and b must be finite")
    lower, upper = (None, None) if bounds is None else bounds
    lo = _bound("lower", lower, B, n, A)
    hi = _bound("upper", upper, B, n, A)
    eq = None if equality is None else _pair("equality", equality, B, n, A)
    ineq = None if inequality is None else _pair("inequality", inequality, B, n, A)

    layer = _layer(
        m,
        n,
        lo is not None,
        hi is not None,
        bool(nonnegative),
        0 if eq is None else eq[0].shape[1],
        0 if ineq is None else ineq[0].shape[1],
        float(ridge),
    )
    inputs = [A, b]
    inputs += [t for t in (lo, hi) if t is not None]
    inputs += [] if eq is None else list(eq)
    inputs += [] if ineq is None else list(ineq)
    cpu64 = [t.to(device="cpu", dtype=torch.float64) for t in inputs]
    args = dict(_DEFAULT_SOLVER_ARGS)
    if torch.is_grad_enabled() and any(t.requires_grad for t in inputs):
        args["n_jobs_backward"] = 1  # only the differentiating path of diffcp accepts it
    args.update(solver_args or {})
    try:
        (w64,) = layer(*cpu64, solver_args=args)
    except Exception as err:  # the solvers raise their own (SolverError, diffcp's) types
        raise RuntimeError(f"convex_least_squares: the conic solver failed: {err}") from err

    with torch.no_grad():
        A64, b64 = cpu64[0], cpu64[1]
        rnorm = (torch.einsum("bmn,bn->bm", A64, w64) - b64).norm(dim=-1)
        viol = torch.zeros(B, dtype=torch.float64)
        if lo is not None:
            viol = torch.maximum(viol, (lo.double().cpu() - w64).amax(-1))
        if hi is not None:
            viol = torch.maximum(viol, (w64 - hi.double().cpu()).amax(-1))
        if nonnegative:
            viol = torch.maximum(viol, (-w64).amax(-1))
        if eq is not None:
            E, d = (t.double().cpu() for t in eq)
            viol = torch.maximum(viol, (torch.einsum("bpn,bn->bp", E, w64) - d).abs().amax(-1))
        if ineq is not None:
            G, h = (t.double().cpu() for t in ineq)
            viol = torch.maximum(viol, (torch.einsum("bpn,bn->bp", G, w64) - h).amax(-1))
        viol = viol.clamp_min(0)
        converged = torch.isfinite(w64).all(-1) & (viol <= feasibility_tol)
    dev = A.device
    return ConvexResult(
        w=w64.to(device=dev, dtype=A.dtype),
        residual_norm=rnorm.to(device=dev, dtype=A.dtype),
        constraint_violation=viol.to(device=dev, dtype=A.dtype),
        converged=converged.to(dev),
    )
