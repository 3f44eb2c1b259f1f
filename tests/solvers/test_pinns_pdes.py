"""PDE definitions used by the PINNs: residuals, exact and reference solutions."""

from __future__ import annotations

import math

import pytest
import torch

from solvers.pdes import convection
from solvers.pdes import reaction_diffusion as rd
from solvers.pinns import make_problem, space_time_derivatives
from solvers.pinns.problems import PDE_NAMES

f64 = torch.float64


def _points(n: int = 200, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return 2 * math.pi * torch.rand(n, generator=g, dtype=f64), torch.rand(
        n, generator=g, dtype=f64
    )


@pytest.mark.parametrize("backend", ["autograd", "func"])
@pytest.mark.parametrize(("beta", "nu"), [(30.0, 0.0), (5.0, 0.3)])
def test_convection_exact_solution_has_zero_residual(backend: str, beta: float, nu: float) -> None:
    x, t = _points()
    d = space_time_derivatives(
        lambda a, b: convection.exact_solution(a, b, beta, nu)[:, None], x, t, backend
    )
    r = convection.residual(d.d_t[:, 0], d.d_x[:, 0], d.d_xx[:, 0], beta, nu)
    assert r.abs().max() < 1e-10 * (1 + beta)
    # and the problem spec's generic residual agrees with the module's
    p = make_problem("convection-diffusion", beta=beta, nu=nu)
    r2 = p.residual(d.value[:, 0], d.d_t[:, 0], d.d_x[:, 0], d.d_xx[:, 0], x, t)
    torch.testing.assert_close(r, r2)
    # initial condition
    torch.testing.assert_close(p.exact(x, torch.zeros_like(x)), torch.sin(x))


def test_convection_residual_is_nonzero_for_a_wrong_field() -> None:
    x, t = _points()
    d = space_time_derivatives(lambda a, b: convection.exact_solution(a, b, 10.0)[:, None], x, t)
    r = convection.residual(d.d_t[:, 0], d.d_x[:, 0], d.d_xx[:, 0], 11.0)
    torch.testing.assert_close(r, d.d_x[:, 0])  # (11 - 10) u_x


def test_burgers_exact_solution_has_small_residual() -> None:
    burgers = pytest.importorskip("solvers.pdes.burgers")
    p = make_problem("burgers", nu=0.01, C=2.0)
    x, t = _points(64)
    t = 0.5 * t  # away from the front at t ~ 1
    d = space_time_derivatives(lambda a, b: p.exact(a, b)[:, None], x, t)
    u = d.value[:, 0]
    r = burgers.residual(u, d.d_t[:, 0], d.d_x[:, 0], d.d_xx[:, 0], 0.01)
    assert r.abs().max() < 1e-6
    r2 = p.residual(u, d.d_t[:, 0], d.d_x[:, 0], d.d_xx[:, 0], x, t)
    torch.testing.assert_close(r, r2)


def test_reaction_diffusion_residual_and_reference() -> None:
    n = 128
    x = torch.arange(n, dtype=f64) * (2 * math.pi / n)
    t = torch.tensor([0.0, 0.25, 0.5], dtype=f64)
    # rho = 0: heat equation, a Fourier mode decays exactly
    u = rd.reference_solution(torch.sin(3 * x) + 0.5, t, nu=0.2, rho=0.0)
    exact = torch.sin(3 * x)[:, None] * torch.exp(-0.2 * 9 * t)[None, :] + 0.5
    torch.testing.assert_close(u, exact, atol=1e-12, rtol=0)
    # nu = 0: the logistic ODE pointwise, exactly
    u0 = rd.initial_condition(x)
    u = rd.reference_solution(u0, t, nu=0.0, rho=5.0)
    g = torch.exp(5.0 * t)[None, :]
    torch.testing.assert_close(u, u0[:, None] * g / (u0[:, None] * g + 1 - u0[:, None]))
    # full problem: Strang splitting converges at second order
    coarse = rd.reference_solution(u0, t, 3.0, 5.0, dt=2e-3)
    fine = rd.reference_solution(u0, t, 3.0, 5.0, dt=1e-3)
    finer = rd.reference_solution(u0, t, 3.0, 5.0, dt=5e-4)
    e1, e2 = (coarse - finer).abs().max(), (fine - finer).abs().max()
    assert e2 < 1e-5
    assert 2.5 < float(e1 / e2) < 5.0  # (4 - 1) / (1 - 1/4)... ~ 3-5 for O(dt^2)
    # residual of the module on an analytic field: u = x t -> u_t = x, u_xx = 0
    xx, tt = x[:10], torch.full((10,), 0.3, dtype=f64)
    uu = xx * tt
    r = rd.residual(uu, xx, torch.zeros_like(xx), 1.0, 2.0)
    torch.testing.assert_close(r, xx - 2.0 * uu * (1 - uu))


def test_problem_specs() -> None:
    for name in PDE_NAMES:
        p = make_problem(name)
        assert p.length == pytest.approx(2 * math.pi) and p.t1 == 1.0
        x = torch.linspace(0, 6, 7, dtype=f64)
        assert p.u0(x).shape == x.shape
    assert make_problem("convection").nu == 0.0
    assert make_problem("convection-diffusion").nu == 0.1
    assert make_problem("reaction-diffusion").source is not None
    p = make_problem("reaction-diffusion", nu=1.0)
    x = p.domain.axis_coords((64, 3), dtype=f64)
    ref = p.reference(*x)
    assert ref.shape == (64, 3)
    torch.testing.assert_close(ref[:, 0], rd.initial_condition(x[0]))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: make_problem("convection", beta=-1.0), "beta"),
        (lambda: make_problem("convection", beta=float("nan")), "beta"),
        (lambda: make_problem("heat"), "unknown pde"),
        (lambda: make_problem("convection", t1=0.0), "empty domain"),
        (lambda: make_problem("reaction-diffusion", rho=-1.0), "rho"),
        (lambda: convection.ConvectionParams(beta=-2.0), "beta"),
        (
            lambda: convection.residual(torch.zeros(3), torch.zeros(4), torch.zeros(3), 1.0),
            "equal shapes",
        ),
        (
            lambda: rd.residual(torch.zeros(3), torch.zeros(3), torch.zeros(2), 1.0, 1.0),
            "equal shapes",
        ),
        (lambda: rd.reference_solution(torch.zeros(8), torch.tensor([0.5, 0.1]), 1, 1), "t must"),
    ],
)
def test_bad_input_raises_value_error(call, match: str) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match=match):
        call()
