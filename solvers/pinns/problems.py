"""Problem specifications that :class:`~solvers.pinns.PINN` and
:class:`~solvers.pinns.LagrangianPINN` consume.

Every problem is of the class the LPINN paper treats (Mojgani et al., eq. 11-12)::

    w_t + f(w, x, t) w_x = nu w_xx + s(w),    x periodic on [lo, lo + L), t in [t0, t1],

with the characteristic speed ``f``, the diffusivity ``nu`` and an optional source ``s``.
In the Lagrangian frame it splits into ``X_t = f`` and ``D_t w = nu w_XX + s(w)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor

from simkit.domain import Interval, SpaceTime, TimeInterval

__all__ = [
    "PDE_NAMES",
    "PDEProblem",
    "burgers_problem",
    "convection_problem",
    "make_problem",
    "reaction_diffusion_problem",
]

#: Names accepted by :func:`make_problem` (and the CLI's ``--pde``).
PDE_NAMES: tuple[str, ...] = ("convection", "convection-diffusion", "burgers", "reaction-diffusion")


@dataclass(frozen=True)
class PDEProblem:
    """A scalar 1D periodic PDE ``w_t + f w_x = nu w_xx + s(w)`` with its data.

    Attributes:
        name: one of :data:`PDE_NAMES` (or a user label).
        domain: ``SpaceTime(Interval(lo, hi, periodic=True), TimeInterval(t0, t1))``.
        speed: ``f(u, x, t) -> (...)``, the characteristic speed (``beta``; ``u`` for
            Burgers), taking (...) tensors.
        nu: diffusivity ``>= 0``.
        u0: initial condition ``u0(x) -> (...)`` for (...) positions.
        reference: ``reference(x, t) -> (n, T)`` float64 reference field on the periodic
            grid ``x`` (n,) and times ``t`` (T,) (the exact solution where one exists).
        source: optional ``s(u) -> (...)`` (reaction term), ``None`` for none.
        exact: optional exact solution ``exact(x, t) -> (...)`` at arbitrary broadcast
            points; ``None`` when there is none.
        offset: constant subtracted from the reference in the error's normaliser,
            ``||u - u_ref|| / ||u_ref - offset||`` (Burgers' mean ``C``, as the LPINN code).
        params: the physical parameters, for reports.
    """

    name: str
    domain: SpaceTime
    speed: Callable[[Tensor, Tensor, Tensor], Tensor]
    nu: float
    u0: Callable[[Tensor], Tensor]
    reference: Callable[[Tensor, Tensor], Tensor]
    source: Callable[[Tensor], Tensor] | None = None
    exact: Callable[[Tensor, Tensor], Tensor] | None = None
    offset: float = 0.0
    params: Mapping[str, float] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.domain, SpaceTime) or not isinstance(self.domain.space, Interval):
            raise TypeError(f"domain must be a 1D SpaceTime, got {self.domain!r}")
        if not self.domain.space.periodic:
            raise ValueError("the space interval must be periodic (Interval(..., periodic=True))")
        if not (math.isfinite(self.nu) and self.nu >= 0):
            raise ValueError(f"nu must be a finite non-negative diffusivity, got {self.nu!r}")

    @property
    def lo(self) -> float:
        """Left end of the periodic space interval."""
        return self.domain.space.lo

    @property
    def length(self) -> float:
        """Period ``L``."""
        return self.domain.space.length

    @property
    def t0(self) -> float:
        """Start time."""
        return self.domain.time.t0

    @property
    def t1(self) -> float:
        """End time."""
        return self.domain.time.t1

    def residual(
        self, u: Tensor, u_t: Tensor, u_x: Tensor, u_xx: Tensor, x: Tensor, t: Tensor
    ) -> Tensor:
        """Eulerian residual ``u_t + f(u, x, t) u_x - nu u_xx - s(u)``; all (...) tensors."""
        r = u_t + self.speed(u, x, t) * u_x - self.nu * u_xx
        if self.source is not None:
            r = r - self.source(u)
        return r


def _domain(length: float, t1: float) -> SpaceTime:
    return SpaceTime(Interval(0.0, length, periodic=True), TimeInterval(0.0, t1))


def _grid_field(fn: Callable[[Tensor, Tensor], Tensor]) -> Callable[[Tensor, Tensor], Tensor]:
    def reference(x: Tensor, t: Tensor) -> Tensor:
        x64, t64 = x.to(torch.float64), t.to(torch.float64)
        return fn(x64[:, None], t64[None, :])

    return reference


def convection_problem(beta: float, nu: float = 0.0, t1: float = 1.0) -> PDEProblem:
    """Convection(-diffusion) ``u_t + beta u_x = nu u_xx``, ``u0 = sin x`` on ``[0, 2 pi)``.

    Args:
        beta: speed ``>= 0``.
        nu: diffusivity ``>= 0`` (0: pure convection).
        t1: final time ``> 0``.
    """
    from solvers.pdes import convection

    p = convection.ConvectionParams(beta=beta, nu=nu)
    beta, nu = float(p.beta), float(p.nu)

    def exact(x: Tensor, t: Tensor) -> Tensor:
        return convection.exact_solution(x, t, beta, nu)

    return PDEProblem(
        name="convection" if nu == 0 else "convection-diffusion",
        domain=_domain(2 * math.pi, t1),
        speed=lambda u, x, t: torch.full_like(u, beta),
        nu=nu,
        u0=convection.initial_condition,
        reference=_grid_field(exact),
        exact=exact,
        params={"beta": beta, "nu": nu},
    )


def burgers_problem(nu: float = 0.01, C: float = 0.0, t1: float = 1.0) -> PDEProblem:
    """Viscous Burgers ``u_t + u u_x = nu u_xx``, ``u0 = sin x + C`` on ``[0, 2 pi)``.

    The reference is :func:`solvers.pdes.burgers.exact_solution` (Cole-Hopf, float64).

    Args:
        nu: viscosity ``> 0``.
        C: mean value of ``u0`` (a uniform convection speed).
        t1: final time ``> 0``.
    """
    from solvers.pdes import burgers

    p = burgers.BurgersParams(nu=nu, C=C)
    nu, C = float(p.nu), float(p.C)
    if not math.isfinite(C):
        raise ValueError(f"C must be finite, got {C!r}")

    def exact(x: Tensor, t: Tensor) -> Tensor:
        x, t = torch.broadcast_tensors(x, t)
        out = burgers.exact_solution(x.to(torch.float64), t.to(torch.float64), nu, C)
        return out.to(x.dtype)

    return PDEProblem(
        name="burgers",
        domain=_domain(2 * math.pi, t1),
        speed=lambda u, x, t: u,
        nu=nu,
        u0=lambda x: burgers.initial_condition(x, C),
        reference=_grid_field(exact),
        exact=exact,
        offset=C,
        params={"nu": nu, "C": C},
    )


def reaction_diffusion_problem(nu: float = 3.0, rho: float = 5.0, t1: float = 1.0) -> PDEProblem:
    """Reaction-diffusion ``u_t = nu u_xx + rho u (1 - u)`` with the Gaussian ``u0``.

    The reference is the Strang-split solver
    :func:`solvers.pdes.reaction_diffusion.reference_solution` on the evaluation grid.

    Args:
        nu: diffusivity ``>= 0``.
        rho: reaction rate ``>= 0``.
        t1: final time ``> 0``.
    """
    from solvers.pdes import reaction_diffusion as rd

    p = rd.ReactionDiffusionParams(nu=nu, rho=rho)
    nu, rho = float(p.nu), float(p.rho)
    length = 2 * math.pi

    def reference(x: Tensor, t: Tensor) -> Tensor:
        n = x.numel()
        expect = torch.arange(n, dtype=torch.float64) * (length / n)
        if x.ndim != 1 or not torch.allclose(x.detach().cpu().double(), expect, atol=1e-6):
            raise ValueError("reaction-diffusion reference needs the uniform periodic grid x")
        return rd.reference_solution(rd.initial_condition(expect), t, nu, rho, length)

    return PDEProblem(
        name="reaction-diffusion",
        domain=_domain(length, t1),
        speed=lambda u, x, t: torch.zeros_like(u),
        nu=nu,
        u0=rd.initial_condition,
        reference=reference,
        source=lambda u: rd.reaction(u, rho),
        params={"nu": nu, "rho": rho},
    )


def make_problem(
    name: str,
    *,
    beta: float = 30.0,
    nu: float | None = None,
    C: float = 0.0,
    rho: float = 5.0,
    t1: float = 1.0,
) -> PDEProblem:
    """Build a problem by name.

    Args:
        name: one of :data:`PDE_NAMES`.
        beta: convection speed (convection problems).
        nu: diffusivity; ``None`` picks the problem's default (convection 0,
            convection-diffusion 0.1, Burgers 0.01, reaction-diffusion 3).
        C: Burgers' mean value.
        rho: reaction rate (reaction-diffusion).
        t1: final time.
    """
    if name == "convection":
        return convection_problem(beta, 0.0 if nu is None else nu, t1)
    if name == "convection-diffusion":
        return convection_problem(beta, 0.1 if nu is None else nu, t1)
    if name == "burgers":
        return burgers_problem(0.01 if nu is None else nu, C, t1)
    if name == "reaction-diffusion":
        return reaction_diffusion_problem(3.0 if nu is None else nu, rho, t1)
    raise ValueError(f"unknown pde {name!r}; expected one of {PDE_NAMES}")
