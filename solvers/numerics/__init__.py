"""Differentiable reference solvers (batched torch, any device, autograd through the
rollout) and datasets in PDEBench's HDF5 layout (a resumable writer, a lazy reader)."""

from solvers.numerics.burgers import BurgersSolution, solve_burgers
from solvers.numerics.data import (
    PDE_NAMES,
    DatasetConfig,
    DatasetResult,
    PDEDataset,
    generate_dataset,
)
from solvers.numerics.diffusion_sorption import (
    DiffusionSorptionSolution,
    diffusion_sorption_rhs,
    mass_balance_defect,
    solve_diffusion_sorption,
)
from solvers.numerics.navier_stokes import NavierStokesSolution, solve_navier_stokes

__all__ = [
    "PDE_NAMES",
    "BurgersSolution",
    "DatasetConfig",
    "DatasetResult",
    "DiffusionSorptionSolution",
    "NavierStokesSolution",
    "PDEDataset",
    "diffusion_sorption_rhs",
    "generate_dataset",
    "mass_balance_defect",
    "solve_burgers",
    "solve_diffusion_sorption",
    "solve_navier_stokes",
]
