"""Physics-informed networks in the Eulerian (PINN) and Lagrangian (LPINN) frames.

- :mod:`~solvers.pinns.problems`: :class:`PDEProblem` specs (convection(-diffusion),
  viscous Burgers ``sin x + C``, reaction-diffusion) and :func:`make_problem`.
- :mod:`~solvers.pinns.models`: :class:`PINN` and :class:`LagrangianPINN`.
- :mod:`~solvers.pinns.derivatives`: ``u, u_x, u_t, u_xx`` in one pass.
- :mod:`~solvers.pinns.train`: Adam then L-BFGS, checkpoints, :class:`TrainResult`, :func:`run`.
- :mod:`~solvers.pinns.interpolate`, :mod:`~solvers.pinns.metrics`: Eulerian reconstruction
  and the two relative-L2 metrics.
"""

from solvers.pinns.derivatives import SpaceTimeDerivatives, space_time_derivatives
from solvers.pinns.interpolate import periodic_interp
from solvers.pinns.metrics import Evaluation, evaluate, relative_l2, relative_l2_spectral
from solvers.pinns.models import PINN, LagrangianPINN, LagrangianPINNConfig, PINNConfig
from solvers.pinns.plot import plot_fields
from solvers.pinns.problems import (
    PDE_NAMES,
    PDEProblem,
    burgers_problem,
    convection_problem,
    make_problem,
    reaction_diffusion_problem,
)
from solvers.pinns.train import (
    MODEL_NAMES,
    PINNRunConfig,
    TrainConfig,
    TrainResult,
    build_model,
    run,
    train,
)

__all__ = [
    "MODEL_NAMES",
    "PDE_NAMES",
    "Evaluation",
    "LagrangianPINN",
    "LagrangianPINNConfig",
    "PDEProblem",
    "PINN",
    "PINNConfig",
    "PINNRunConfig",
    "SpaceTimeDerivatives",
    "TrainConfig",
    "TrainResult",
    "build_model",
    "burgers_problem",
    "convection_problem",
    "evaluate",
    "make_problem",
    "periodic_interp",
    "plot_fields",
    "reaction_diffusion_problem",
    "relative_l2",
    "relative_l2_spectral",
    "run",
    "space_time_derivatives",
    "train",
]
