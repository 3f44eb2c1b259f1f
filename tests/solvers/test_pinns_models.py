"""Models, derivatives, interpolation and metrics of solvers.pinns."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from solvers.pinns import (
    PINN,
    LagrangianPINN,
    LagrangianPINNConfig,
    PINNConfig,
    build_model,
    make_problem,
    periodic_interp,
    relative_l2,
    relative_l2_spectral,
    space_time_derivatives,
)

f64 = torch.float64


def _pts(n: int = 100, seed: int = 0, t_max: float = 1.0):
    g = torch.Generator().manual_seed(seed)
    return 2 * math.pi * torch.rand(n, generator=g, dtype=f64), t_max * torch.rand(
        n, generator=g, dtype=f64
    )


# ---------------------------------------------------------------- derivatives


@pytest.mark.parametrize("backend", ["autograd", "func"])
def test_derivatives_match_analytic(backend: str) -> None:
    x, t = _pts()

    def fn(a, b):  # two components
        return torch.stack([torch.sin(2 * a) * torch.exp(-b), a**2 * b**3], dim=-1)

    d = space_time_derivatives(fn, x, t, backend)
    e = torch.exp(-t)
    torch.testing.assert_close(d.value, fn(x, t))
    torch.testing.assert_close(d.d_x, torch.stack([2 * torch.cos(2 * x) * e, 2 * x * t**3], -1))
    torch.testing.assert_close(d.d_t, torch.stack([-torch.sin(2 * x) * e, 3 * x**2 * t**2], -1))
    torch.testing.assert_close(d.d_xx, torch.stack([-4 * torch.sin(2 * x) * e, 2 * t**3], -1))


def test_backends_agree_on_networks_and_parameter_gradients() -> None:
    p = make_problem("burgers", C=1.0)
    x, t = _pts(64)
    grads = []
    for backend in ("autograd", "func"):
        m = build_model(
            p, "lpinn", LagrangianPINNConfig(diffusion="chain", derivatives=backend), dtype=f64
        )
        r = m.residuals(x, t)
        loss = sum(v.square().mean() for v in r.values())
        grads.append(torch.autograd.grad(loss, list(m.parameters())))
        if backend == "autograd":
            ref = r
        else:
            for k in r:
                torch.testing.assert_close(r[k], ref[k])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b)


def test_skipping_second_derivatives() -> None:
    x, t = _pts(10)
    d = space_time_derivatives(
        lambda a, b: torch.stack([a**3, a**3], -1), x, t, second=(True, False)
    )
    torch.testing.assert_close(d.d_xx[:, 0], 6 * x)
    assert (d.d_xx[:, 1] == 0).all()


# ---------------------------------------------------------------- models


def test_periodic_embedding_is_exactly_periodic() -> None:
    p = make_problem("convection", beta=30.0)
    x, t = _pts(50)
    L = p.length
    for cfg in (PINNConfig(ic="soft"), PINNConfig(fourier_features=8, fourier_scale=2.0)):
        m = build_model(p, "pinn", cfg, dtype=f64)
        with torch.no_grad():
            torch.testing.assert_close(m(x + L, t), m(x, t), atol=1e-12, rtol=0)
            torch.testing.assert_close(m(x - 3 * L, t), m(x, t), atol=1e-12, rtol=0)
    lp = build_model(p, "lpinn", LagrangianPINNConfig(ic="soft"), dtype=f64)
    with torch.no_grad():
        u1, X1 = lp(x + L, t)
        u0, X0 = lp(x, t)
    torch.testing.assert_close(u1, u0, atol=1e-12, rtol=0)
    torch.testing.assert_close(X1 - L, X0, atol=1e-12, rtol=0)  # D periodic, X = xi + D


def test_hard_initial_conditions_are_exact() -> None:
    p = make_problem("burgers", C=3.0)
    x, _ = _pts(40)
    zero = torch.zeros_like(x)
    m = build_model(p, "pinn", PINNConfig(ic="hard"), dtype=f64)
    lp = build_model(p, "lpinn", LagrangianPINNConfig(ic="hard", base_drift=True), dtype=f64)
    with torch.no_grad():
        torch.testing.assert_close(m(x, zero), p.u0(x), atol=0, rtol=0)
        u, X = lp(x, zero)
    torch.testing.assert_close(u, p.u0(x), atol=0, rtol=0)
    torch.testing.assert_close(X, x, atol=0, rtol=0)
    assert m.initial_residuals(x) == {} and lp.initial_residuals(x) == {}
    soft = build_model(p, "lpinn", LagrangianPINNConfig(ic="soft"), dtype=f64)
    assert set(soft.initial_residuals(x)) == {"ic_u", "ic_x"}


def _zero_heads(model: torch.nn.Module) -> None:
    with torch.no_grad():
        for net in (model.u_net, model.x_net):
            net.layers[-1].weight.zero_()
            net.layers[-1].bias.zero_()


def test_lpinn_exact_characteristic_for_constant_speed() -> None:
    # With D = beta t (base drift, zero correction) and u = u0(xi), the LPINN is the exact
    # solution: both residuals vanish and the Eulerian reconstruction matches sin(x - beta t).
    p = make_problem("convection", beta=30.0)
    lp = build_model(p, "lpinn", LagrangianPINNConfig(base_drift=True), dtype=f64)
    _zero_heads(lp)
    x, t = _pts(80)
    r = lp.residuals(x, t)
    assert r["char"].abs().max() < 1e-12 and r["state"].abs().max() < 1e-12
    with torch.no_grad():
        u, X = lp(x, t)
    torch.testing.assert_close(X, x + 30.0 * t)
    ex, et = p.domain.axis_coords((256, 20), dtype=f64)
    field = lp.eulerian(ex, et, method="cubic")
    assert relative_l2(field, p.reference(ex, et)) < 1e-5
    # a wrong speed leaves exactly the speed error in the characteristic residual
    q = make_problem("convection", beta=31.0)
    lq = build_model(q, "lpinn", LagrangianPINNConfig(base_drift=False), dtype=f64)
    _zero_heads(lq)
    torch.testing.assert_close(lq.residuals(x, t)["char"], torch.full_like(x, -31.0))


def test_lpinn_chain_rule_diffusion_term() -> None:
    # Burgers, zero corrections: u = u0(xi) = sin xi, X = xi + t sin xi. Then
    # u_XX = -sin xi / (1 + t cos xi)^3 and the state residual is -nu u_XX (u_t = 0),
    # while the paper's label form gives -nu u_xixi = nu sin xi.
    p = make_problem("burgers", nu=0.05, C=0.0)
    x, t = _pts(60, t_max=0.5)
    for diffusion, expect in (
        ("chain", 0.05 * torch.sin(x) / (1 + t * torch.cos(x)) ** 3),
        ("label", 0.05 * torch.sin(x)),
    ):
        lp = build_model(
            p, "lpinn", LagrangianPINNConfig(base_drift=True, diffusion=diffusion), dtype=f64
        )
        _zero_heads(lp)
        r = lp.residuals(x, t)
        torch.testing.assert_close(r["state"], expect)
        torch.testing.assert_close(r["char"], torch.zeros_like(x), atol=1e-12, rtol=0)


def test_pinn_residual_matches_problem_residual() -> None:
    p = make_problem("reaction-diffusion", nu=1.0, rho=2.0)
    m = build_model(p, "pinn", PINNConfig(ic="hard"), dtype=f64)
    x, t = _pts(30)
    r = m.residuals(x, t)["pde"]
    xx, tt = x.clone().requires_grad_(), t.clone().requires_grad_()
    u = m(xx, tt)
    ux, ut = torch.autograd.grad(u.sum(), (xx, tt), create_graph=True)
    (uxx,) = torch.autograd.grad(ux.sum(), xx)
    torch.testing.assert_close(r, ut - 1.0 * uxx - 2.0 * u * (1 - u))


def test_same_seed_same_model_and_rng_untouched() -> None:
    p = make_problem("convection")
    state = torch.random.get_rng_state()
    a = build_model(p, "lpinn", seed=3)
    b = build_model(p, "lpinn", seed=3)
    c = build_model(p, "lpinn", seed=4)
    assert torch.equal(torch.random.get_rng_state(), state)
    for (ka, va), (_, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(va, vb), ka
    assert not torch.equal(a.u_net.layers[0].weight, c.u_net.layers[0].weight)
    assert a.u_net.layers[0].weight.data_ptr() != a.x_net.layers[0].weight.data_ptr()


# ---------------------------------------------------------------- interpolation, metrics


@pytest.mark.parametrize("method", ["linear", "cubic"])
def test_interp_exact_on_linear_fields(method: str) -> None:
    g = torch.Generator().manual_seed(0)
    L = 2 * math.pi
    xp = torch.sort(torch.rand(3, 40, generator=g, dtype=f64) * L, dim=1).values
    fp = 2.0 * xp - 1.0
    # queries strictly between the first and last node of each row
    lo, hi = xp[:, 2:3], xp[:, -3:-2]
    q = lo + (hi - lo) * torch.rand(3, 25, generator=g, dtype=f64)
    out = periodic_interp(xp, fp, q, 0.0, L, method)
    torch.testing.assert_close(out, 2.0 * q - 1.0)
    # shuffled nodes, nodes shifted by whole periods, queries shifted too: same result
    perm = torch.randperm(40, generator=g)
    shifts = L * torch.randint(-3, 4, (3, 40), generator=g).to(f64)
    out2 = periodic_interp(xp[:, perm] + shifts, fp[:, perm], q - 2 * L, 0.0, L, method)
    torch.testing.assert_close(out2, out)


def test_interp_periodic_wrap_and_accuracy() -> None:
    L = 2 * math.pi
    xp = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]], dtype=f64)
    fp = torch.tensor([[10.0, 0.0, 0.0, 0.0, 0.0, 4.0]], dtype=f64)
    # across the seam: between x = 6 (f = 4) and x = 1 + L (f = 10)
    seam = 1.0 + L
    q = torch.tensor([[6.0 + 0.25 * (seam - 6.0), 0.5]], dtype=f64)
    w = (0.5 + L - 6.0) / (seam - 6.0)
    torch.testing.assert_close(
        periodic_interp(xp, fp, q, 0.0, L), torch.tensor([[5.5, 4 + w * 6]], dtype=f64)
    )
    # smooth periodic data: cubic much more accurate than linear
    xs = torch.linspace(0, L, 65, dtype=f64)[:-1][None] + 0.3
    xq = torch.rand(1, 500, dtype=f64, generator=torch.Generator().manual_seed(1)) * L
    err = {
        m: float((periodic_interp(xs, torch.sin(xs), xq, 0.0, L, m) - torch.sin(xq)).abs().max())
        for m in ("linear", "cubic")
    }
    assert err["linear"] < 2e-3 and err["cubic"] < 1e-4 and err["cubic"] < err["linear"] / 10


def test_metrics() -> None:
    g = torch.Generator().manual_seed(0)
    ref = torch.randn(20, 7, generator=g, dtype=f64) + 5.0
    pred = ref + 0.1 * torch.randn(20, 7, generator=g, dtype=f64)
    e = (pred - ref).numpy()
    assert relative_l2(pred, ref) == pytest.approx(np.linalg.norm(e) / np.linalg.norm(ref.numpy()))
    assert relative_l2(pred, ref, offset=5.0) == pytest.approx(
        np.linalg.norm(e) / np.linalg.norm(ref.numpy() - 5.0)
    )
    spec = relative_l2_spectral(pred, ref, 5.0, cut=2)
    assert spec == pytest.approx(
        np.linalg.norm(e[2:-2], 2) / np.linalg.norm(ref.numpy()[2:-2] - 5.0, 2)
    )
    assert relative_l2(ref, ref) == 0.0


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: relative_l2(torch.zeros(3), torch.ones(4)), "equal shapes"),
        (lambda: relative_l2(torch.zeros(3), torch.zeros(3)), "identically zero"),
        (
            lambda: periodic_interp(torch.zeros(2, 5), torch.zeros(2, 4), torch.zeros(2, 3), 0, 1),
            "expected",
        ),
        (
            lambda: periodic_interp(torch.zeros(1, 5), torch.zeros(1, 5), torch.zeros(1, 3), 0, -1),
            "length",
        ),
        (
            lambda: periodic_interp(
                torch.zeros(1, 2), torch.zeros(1, 2), torch.zeros(1, 3), 0, 1, "cubic"
            ),
            "nodes",
        ),
        (lambda: build_model(make_problem("convection"), "xpinn"), "unknown model"),
        (lambda: PINNConfig(width=0), "width"),
        (lambda: LagrangianPINNConfig(diffusion="exact"), "diffusion"),
        (
            lambda: PINN(make_problem("convection")).residuals(torch.zeros(5), torch.zeros(4)),
            "equal",
        ),
        (
            lambda: LagrangianPINN(make_problem("convection")).residuals(
                torch.zeros(5), torch.zeros(4)
            ),
            "equal",
        ),
    ],
)
def test_bad_input_raises_value_error(call, match: str) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match=match):
        call()
