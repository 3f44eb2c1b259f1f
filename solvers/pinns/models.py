"""Physics-informed networks in the Eulerian (:class:`PINN`) and Lagrangian
(:class:`LagrangianPINN`) frames.

Both share one call contract: ``residuals(x, t) -> dict`` of (N,) residuals at interior
collocation points (one forward pass gives every term), ``initial_residuals(x) -> dict``
at ``t = t0`` (empty for a hard initial condition), and ``eulerian(x, t) -> (n, T)``, the
field on an Eulerian grid (for the Lagrangian model, by periodic interpolation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from solvers.pinns.derivatives import DerivativeBackend, space_time_derivatives
from solvers.pinns.interpolate import periodic_interp
from solvers.pinns.problems import PDEProblem

__all__ = ["LagrangianPINN", "LagrangianPINNConfig", "PINN", "PINNConfig"]

ICMode = Literal["hard", "soft"]
DiffusionMode = Literal["label", "chain"]


def _check_int(value: int, name: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def _check_choice(value: str, name: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


@dataclass(frozen=True)
class PINNConfig:
    """Eulerian PINN ``u(x, t)``.

    Attributes:
        width: hidden width.
        depth: number of tanh hidden layers.
        periodic_embedding: feed ``(cos 2 pi x'/L, sin 2 pi x'/L, t')`` (exactly periodic
            in x) instead of ``(x', t')``; ``x' = x - lo``, ``t' = (t - t0)/(t1 - t0)``.
        fourier_features: number ``m`` of random Fourier features ``(sin zB, cos zB)``
            appended to the inputs ``z`` (0: none).
        fourier_scale: standard deviation of the Gaussian frequencies ``B``.
        fourier_seed: seed of ``B``.
        ic: ``"hard"`` (``u = u0(x) + t' N``) or ``"soft"`` (an initial-condition loss).
        derivatives: derivative backend, ``"autograd"`` or ``"func"``.
    """

    width: int = 50
    depth: int = 4
    periodic_embedding: bool = True
    fourier_features: int = 0
    fourier_scale: float = 1.0
    fourier_seed: int = 0
    ic: ICMode = "soft"
    derivatives: DerivativeBackend = "autograd"

    def __post_init__(self) -> None:
        _check_int(self.width, "width", 1)
        _check_int(self.depth, "depth", 1)
        _check_int(self.fourier_features, "fourier_features", 0)
        if not (math.isfinite(self.fourier_scale) and self.fourier_scale > 0):
            raise ValueError(f"fourier_scale must be positive, got {self.fourier_scale!r}")
        _check_choice(self.ic, "ic", ("hard", "soft"))
        _check_choice(self.derivatives, "derivatives", ("autograd", "func"))


@dataclass(frozen=True)
class LagrangianPINNConfig:
    """Lagrangian PINN: state ``u(xi, t)`` and characteristic ``X(xi, t)`` networks.

    Attributes:
        width: hidden width of both networks.
        depth_u: tanh hidden layers of the state network.
        depth_x: tanh hidden layers of the characteristic network.
        ic: ``"hard"`` (``X = xi + t' N_X``, ``u = u0 + t' N_u``) or ``"soft"``
            (``X = xi + D`` with ``D = N_X`` periodic, ``u = N_u``, plus IC losses).
        base_drift: add the inviscid characteristic ``t f(u0(xi), xi, t0)`` to ``X``.
        diffusion: ``"label"`` (``u_xixi``, as the paper's code) or ``"chain"`` (the exact
            ``u_XX = (u_xixi X_xi - u_xi X_xixi) / X_xi^3``).
        derivatives: derivative backend, ``"autograd"`` or ``"func"``.
    """

    width: int = 50
    depth_u: int = 4
    depth_x: int = 2
    ic: ICMode = "hard"
    base_drift: bool = False
    diffusion: DiffusionMode = "label"
    derivatives: DerivativeBackend = "autograd"

    def __post_init__(self) -> None:
        _check_int(self.width, "width", 1)
        _check_int(self.depth_u, "depth_u", 1)
        _check_int(self.depth_x, "depth_x", 1)
        _check_choice(self.ic, "ic", ("hard", "soft"))
        _check_choice(self.diffusion, "diffusion", ("label", "chain"))
        _check_choice(self.derivatives, "derivatives", ("autograd", "func"))


class _MLP(nn.Module):
    """tanh MLP ``in_dim -> width x depth -> 1`` with Glorot-normal weights, zero biases."""

    def __init__(self, in_dim: int, width: int, depth: int) -> None:
        super().__init__()
        dims = [in_dim] + [width] * depth + [1]
        self.layers = nn.ModuleList(
            nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:], strict=True)
        )
        for layer in self.layers:
            nn.init.xavier_normal_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, z: Tensor) -> Tensor:
        for layer in self.layers[:-1]:
            z = torch.tanh(layer(z))
        return self.layers[-1](z)[..., 0]


def _check_xt(x: Tensor, t: Tensor) -> None:
    if not isinstance(x, Tensor) or not isinstance(t, Tensor):
        raise TypeError("x and t must be tensors")
    if x.shape != t.shape:
        raise ValueError(
            f"x and t must have equal shapes, got {tuple(x.shape)} and {tuple(t.shape)}"
        )


class _Embedding(nn.Module):
    """Inputs of the networks: periodic (cos, sin) of x or the shifted x, scaled time,
    optional random Fourier features (Tancik et al. 2020)."""

    def __init__(self, problem: PDEProblem, periodic: bool, features: int, scale: float, seed: int):
        super().__init__()
        self.lo, self.length = problem.lo, problem.length
        self.t0, self.duration = problem.t0, problem.t1 - problem.t0
        self.periodic = periodic
        base = 3 if periodic else 2
        self.out_dim = base + 2 * features
        if features:
            g = torch.Generator().manual_seed(seed)
            self.register_buffer("B", torch.randn(base, features, generator=g) * scale)
        else:
            self.B = None

    def tau(self, t: Tensor) -> Tensor:
        return (t - self.t0) / self.duration

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        tau = self.tau(t)
        if self.periodic:
            phase = (2 * math.pi / self.length) * (x - self.lo)
            z = torch.stack([torch.cos(phase), torch.sin(phase), tau], dim=-1)
        else:
            z = torch.stack([(x - self.lo) / self.length, tau], dim=-1)
        if self.B is not None:
            zb = z @ self.B.to(z.dtype)
            z = torch.cat([z, torch.sin(zb), torch.cos(zb)], dim=-1)
        return z


class PINN(nn.Module):
    """Eulerian physics-informed network ``u(x, t)`` for a :class:`PDEProblem`.

    Args:
        problem: the PDE, domain and data.
        config: architecture options.
    """

    def __init__(self, problem: PDEProblem, config: PINNConfig | None = None) -> None:
        super().__init__()
        self.problem = problem
        self.config = config = config or PINNConfig()
        self.embed = _Embedding(
            problem,
            config.periodic_embedding,
            config.fourier_features,
            config.fourier_scale,
            config.fourier_seed,
        )
        self.net = _MLP(self.embed.out_dim, config.width, config.depth)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        """Field ``u``.

        Args:
            x: (...) positions.
            t: (...) times, same shape.

        Returns:
            (...) values, dtype of the parameters.
        """
        _check_xt(x, t)
        n = self.net(self.embed(x, t))
        if self.config.ic == "hard":
            n = self.problem.u0(x) + self.embed.tau(t) * n
        return n

    def residuals(self, x: Tensor, t: Tensor) -> dict[str, Tensor]:
        """PDE residual at interior collocation points.

        Args:
            x: (N,) positions.
            t: (N,) times.

        Returns:
            ``{"pde": (N,)}``.
        """
        _check_xt(x, t)
        second = (self.problem.nu != 0,)  # u_xx only where there is diffusion
        d = space_time_derivatives(
            lambda a, b: self(a, b)[:, None], x, t, self.config.derivatives, second
        )
        u, ux, ut, uxx = d.value[:, 0], d.d_x[:, 0], d.d_t[:, 0], d.d_xx[:, 0]
        return {"pde": self.problem.residual(u, ut, ux, uxx, x, t)}

    def initial_residuals(self, x: Tensor) -> dict[str, Tensor]:
        """``u(x, t0) - u0(x)`` at (N,) positions (``{}`` for a hard initial condition)."""
        if self.config.ic == "hard":
            return {}
        t = torch.full_like(x, self.problem.t0)
        return {"ic": self(x, t) - self.problem.u0(x)}

    @torch.no_grad()
    def eulerian(self, x: Tensor, t: Tensor) -> Tensor:
        """Field on the grid ``x`` (n,) x ``t`` (T,): an (n, T) tensor."""
        xx, tt = torch.meshgrid(x, t, indexing="ij")
        return self(xx.reshape(-1), tt.reshape(-1)).reshape(len(x), len(t))


class LagrangianPINN(nn.Module):
    """Lagrangian PINN (Mojgani et al. 2023): ``u(xi, t)`` along characteristics
    ``X(xi, t) = xi + D(xi, t)`` with a periodic displacement ``D``.

    Separate state and characteristic networks (no weight sharing), both on
    ``(cos 2 pi xi'/L, sin 2 pi xi'/L, t')``. Residuals (eq. 11-12):
    ``r_x = X_t - f(u, X, t)`` and ``r_u = u_t - nu u_XX - s(u)``.

    Args:
        problem: the PDE, domain and data.
        config: architecture options.
    """

    def __init__(self, problem: PDEProblem, config: LagrangianPINNConfig | None = None) -> None:
        super().__init__()
        self.problem = problem
        self.config = config = config or LagrangianPINNConfig()
        self.embed = _Embedding(problem, True, 0, 1.0, 0)
        self.u_net = _MLP(3, config.width, config.depth_u)
        self.x_net = _MLP(3, config.width, config.depth_x)

    def _drift(self, xi: Tensor) -> Tensor:
        # Inviscid characteristic speed f(u0(xi), xi, t0), times the duration (tau scale).
        p = self.problem
        t0 = torch.full_like(xi, p.t0)
        return p.speed(p.u0(xi), xi, t0) * (p.t1 - p.t0)

    def fields(self, xi: Tensor, t: Tensor) -> Tensor:
        """``(u, X)`` at labels ``xi`` and times ``t`` (both (...)): a (..., 2) tensor."""
        _check_xt(xi, t)
        z = self.embed(xi, t)
        tau = self.embed.tau(t)
        nu, nx = self.u_net(z), self.x_net(z)
        if self.config.ic == "hard":
            u = self.problem.u0(xi) + tau * nu
            disp = tau * nx
        else:
            u, disp = nu, nx
        if self.config.base_drift:
            disp = disp + tau * self._drift(xi)
        return torch.stack([u, xi + disp], dim=-1)

    def forward(self, xi: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """State ``u`` and position ``X`` at labels ``xi`` (...) and times ``t`` (...)."""
        f = self.fields(xi, t)
        return f[..., 0], f[..., 1]

    def residuals(self, xi: Tensor, t: Tensor) -> dict[str, Tensor]:
        """Characteristic and state residuals at (N,) labels and times.

        Returns:
            ``{"char": X_t - f(u, X, t), "state": u_t - nu u_XX - s(u)}``, each (N,).
        """
        _check_xt(xi, t)
        p = self.problem
        second = (p.nu != 0, p.nu != 0 and self.config.diffusion == "chain")
        d = space_time_derivatives(self.fields, xi, t, self.config.derivatives, second)
        u, X = d.value[:, 0], d.value[:, 1]
        u_t, X_t = d.d_t[:, 0], d.d_t[:, 1]
        out = {"char": X_t - p.speed(u, X, t)}
        r = u_t
        if p.nu:
            u_xi, u_xixi = d.d_x[:, 0], d.d_xx[:, 0]
            if self.config.diffusion == "label":
                lap = u_xixi  # the paper's code: d^2 u / d xi^2
            else:
                X_xi, X_xixi = d.d_x[:, 1], d.d_xx[:, 1]
                lap = (u_xixi * X_xi - u_xi * X_xixi) / X_xi**3  # exact w_XX
            r = r - p.nu * lap
        if p.source is not None:
            r = r - p.source(u)
        out["state"] = r
        return out

    def initial_residuals(self, xi: Tensor) -> dict[str, Tensor]:
        """``u(xi, t0) - u0(xi)`` and ``X(xi, t0) - xi`` (``{}`` for a hard IC)."""
        if self.config.ic == "hard":
            return {}
        u, X = self(xi, torch.full_like(xi, self.problem.t0))
        return {"ic_u": u - self.problem.u0(xi), "ic_x": X - xi}

    @torch.no_grad()
    def lagrangian(self, xi: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """``u`` and ``X`` on the label grid ``xi`` (n,) x ``t`` (T,): two (n, T) tensors."""
        xx, tt = torch.meshgrid(xi, t, indexing="ij")
        u, X = self(xx.reshape(-1), tt.reshape(-1))
        return u.reshape(len(xi), len(t)), X.reshape(len(xi), len(t))

    @torch.no_grad()
    def eulerian(
        self,
        x: Tensor,
        t: Tensor,
        *,
        xi: Tensor | None = None,
        method: Literal["linear", "cubic"] = "linear",
    ) -> Tensor:
        """Field on the Eulerian grid ``x`` (n,) x ``t`` (T,), an (n, T) tensor.

        Evaluates the networks at labels ``xi`` (default: ``x`` itself), wraps the
        positions ``X`` into the period and interpolates each time slice periodically.
        """
        xi = x if xi is None else xi
        u, X = self.lagrangian(xi, t)
        return periodic_interp(
            X.T, u.T, x.expand(len(t), -1), self.problem.lo, self.problem.length, method
        ).T
