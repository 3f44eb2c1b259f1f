"""Constraint layers: batched nonlinear least squares (LM, implicit backward) and a convex layer.

``solvers.constraints.convex`` needs cvxpy / cvxpylayers; it is imported lazily on first use of
its names, so importing this package stays light.
"""

from __future__ import annotations

from typing import Any

from solvers.constraints.least_squares import (
    LeastSquaresConfig,
    LeastSquaresResult,
    nonlinear_least_squares,
)

__all__ = [
    "ConvexResult",
    "LeastSquaresConfig",
    "LeastSquaresResult",
    "convex_least_squares",
    "nonlinear_least_squares",
]

_CONVEX = ("ConvexResult", "convex_least_squares")


def __getattr__(name: str) -> Any:
    if name in _CONVEX:
        from solvers.constraints import convex

        return getattr(convex, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
