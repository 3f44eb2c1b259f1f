"""PDE definitions: residuals, initial and boundary data, exact solutions where they exist.

One module per PDE; their functions share names (``residual``, ``initial_condition``,
``exact_solution``), so use them through the module::

    from solvers.pdes import burgers
    r = burgers.residual(u, u_t, u_x, u_xx, nu=0.01)

Residuals take the derivative tensors as arguments, so the same function serves finite
differences on a grid and autograd at collocation points.
"""

from solvers.pdes import burgers, convection, diffusion_sorption, navier_stokes, reaction_diffusion
from solvers.pdes.burgers import BurgersParams
from solvers.pdes.convection import ConvectionParams
from solvers.pdes.diffusion_sorption import DiffusionSorptionParams
from solvers.pdes.navier_stokes import NavierStokesParams
from solvers.pdes.reaction_diffusion import ReactionDiffusionParams

__all__ = [
    "BurgersParams",
    "ConvectionParams",
    "DiffusionSorptionParams",
    "NavierStokesParams",
    "ReactionDiffusionParams",
    "burgers",
    "convection",
    "diffusion_sorption",
    "navier_stokes",
    "reaction_diffusion",
]
