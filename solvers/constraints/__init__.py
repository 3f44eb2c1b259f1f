"""Constraint layers: batched nonlinear least squares (LM, implicit backward), a convex layer,
the PI-HC hard constraint and its mixture of experts (PI-HC-MoE).

``solvers.constraints.convex`` needs cvxpy / cvxpylayers; it is imported lazily on first use of
its names, so importing this package stays light.
"""

from __future__ import annotations

from typing import Any

from solvers.constraints.hard import (
    HardConstraint,
    HardConstraintConfig,
    HardConstraintResult,
)
from solvers.constraints.least_squares import (
    LeastSquaresConfig,
    LeastSquaresResult,
    nonlinear_least_squares,
)
from solvers.constraints.moe import MixtureOfExperts, MoEConfig

__all__ = [
    "ConvexResult",
    "HardConstraint",
    "HardConstraintConfig",
    "HardConstraintResult",
    "LeastSquaresConfig",
    "LeastSquaresResult",
    "MixtureOfExperts",
    "MoEConfig",
    "convex_least_squares",
    "nonlinear_least_squares",
]

_CONVEX = ("ConvexResult", "convex_least_squares")


def __getattr__(name: str) -> Any:
    if name in _CONVEX:
        from solvers.constraints import convex

        return getattr(convex, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
