"""Error metrics of a trained PINN / LPINN against a reference field.

- :func:`relative_l2`: ``||u - u_ref||_F / ||u_ref - c||_F`` over the flattened grid, the
  standard (Krishnapriyan et al.; ``c = 0`` there).
- :func:`relative_l2_spectral`: the LPINN reference code's variant, ``numpy.linalg.norm(E, 2)``
  on the (n - 2 cut) x T error matrix, i.e. the *spectral* norm (largest singular value),
  over the same norm of ``u_ref - c``. The two are not comparable.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from solvers.pinns.interpolate import periodic_interp

__all__ = ["Evaluation", "evaluate", "relative_l2", "relative_l2_spectral"]


def _check_pair(pred: Tensor, ref: Tensor) -> None:
    if pred.shape != ref.shape:
        raise ValueError(
            f"pred and ref must have equal shapes, got {tuple(pred.shape)} and {tuple(ref.shape)}"
        )
    if pred.numel() == 0:
        raise ValueError("pred and ref are empty")


def relative_l2(pred: Tensor, ref: Tensor, offset: float = 0.0) -> float:
    """Frobenius relative error ``||pred - ref|| / ||ref - offset||`` (float64).

    Args:
        pred: (...) prediction.
        ref: (...) reference, same shape.
        offset: constant removed from ``ref`` in the normaliser (Burgers' mean ``C``).
    """
    _check_pair(pred, ref)
    p, r = pred.detach().double(), ref.detach().double().to(pred.device)
    den = torch.linalg.vector_norm(r - offset)
    if den == 0:
        raise ValueError("the reference minus offset is identically zero: relative error undefined")
    return float(torch.linalg.vector_norm(p - r) / den)


def relative_l2_spectral(pred: Tensor, ref: Tensor, offset: float = 0.0, cut: int = 2) -> float:
    """Spectral-norm relative error of the LPINN code: ``||E||_2 / ||ref - offset||_2``.

    Args:
        pred: (n, T) prediction on the Eulerian grid.
        ref: (n, T) reference.
        offset: constant removed from ``ref`` in the normaliser.
        cut: grid points dropped at each end of the space axis (the code's ``cut=2``).
    """
    _check_pair(pred, ref)
    if pred.ndim != 2 or pred.shape[0] <= 2 * cut:
        raise ValueError(f"expected an (n, T) field with n > 2 cut, got {tuple(pred.shape)}")
    sl = slice(cut, pred.shape[0] - cut)
    p, r = pred.detach().double()[sl], ref.detach().double().to(pred.device)[sl]
    den = torch.linalg.matrix_norm(r - offset, ord=2)
    if den == 0:
        raise ValueError("the reference minus offset is identically zero: relative error undefined")
    return float(torch.linalg.matrix_norm(p - r, ord=2) / den)


@dataclass(frozen=True)
class Evaluation:
    """Errors of a model on the evaluation grid.

    Attributes:
        rel_l2: Frobenius relative L2 on the Eulerian grid (the standard).
        rel_l2_spectral: the LPINN code's spectral-norm variant.
        rel_l2_lagrangian: for a Lagrangian model, the relative error of ``u(xi, t)``
            against the reference at the predicted positions ``X(xi, t)`` (no interpolation
            error); ``None`` for an Eulerian model.
        max_abs: largest absolute error on the grid.
    """

    rel_l2: float
    rel_l2_spectral: float
    rel_l2_lagrangian: float | None
    max_abs: float

    def to_dict(self) -> dict[str, float | None]:
        """Plain dict for JSON."""
        return asdict(self)


def evaluate(
    model: torch.nn.Module, x: Tensor, t: Tensor, u_ref: Tensor, *, with_field: bool = False
) -> Evaluation | tuple[Evaluation, Tensor]:
    """Evaluate a :class:`~solvers.pinns.PINN` or :class:`~solvers.pinns.LagrangianPINN`.

    Args:
        model: the trained model (its ``problem`` gives the offset and exact solution).
        x: (n,) uniform periodic Eulerian grid.
        t: (T,) times.
        u_ref: (n, T) reference field on that grid.
        with_field: also return the (n, T) predicted Eulerian field.

    Returns:
        An :class:`Evaluation` (and the field when ``with_field``).
    """
    from solvers.pinns.models import LagrangianPINN

    problem = model.problem
    pred = model.eulerian(x, t)
    ref = u_ref.to(device=pred.device)
    lag = None
    if isinstance(model, LagrangianPINN):
        u, X = model.lagrangian(x, t)
        if problem.exact is not None:
            u_at = problem.exact(X.double(), t.double()[None, :].expand_as(X))
        else:  # cubic interpolation of the reference, slice by slice
            u_at = periodic_interp(
                x.double().expand(len(t), -1),
                ref.double().T,
                X.double().T,
                problem.lo,
                problem.length,
                "cubic",
            ).T
        lag = relative_l2(u, u_at, problem.offset)
    ev = Evaluation(
        rel_l2=relative_l2(pred, ref, problem.offset),
        rel_l2_spectral=relative_l2_spectral(pred, ref, problem.offset),
        rel_l2_lagrangian=lag,
        max_abs=float((pred.double() - ref.double()).abs().max()),
    )
    return (ev, pred) if with_field else ev
