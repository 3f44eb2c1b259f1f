"""FNO backbones with basis heads (solvers.operators.fno)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from solvers.operators import BasisFNO, BasisFNOConfig, pihcmoe_inputs

_GELU_MIN = -0.17  # min_x x * Phi(x) = -0.16997... at x = -0.7518


def _small(**kw) -> BasisFNOConfig:
    return BasisFNOConfig(**{**dict(n_basis=5, modes=4, width=8, n_layers=2), **kw})


def _grid_1d(b=2, nt=6, nx=12, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    u0 = torch.rand(b, nx, generator=g, dtype=dtype)
    return u0, torch.linspace(0, 500, nt, dtype=dtype), torch.arange(nx, dtype=dtype) / nx


# --------------------------------------------------------------------------------------
# pihcmoe_inputs
# --------------------------------------------------------------------------------------


def test_inputs_1d_channel_layout():
    u0, t, x = _grid_1d()
    a = pihcmoe_inputs(u0, t, x)
    assert a.shape == (2, 3, 6, 12)
    for b in range(2):
        for k in range(6):
            for i in range(12):
                assert a[b, 0, k, i] == t[k]
                assert a[b, 1, k, i] == x[i]
                assert a[b, 2, k, i] == u0[b, i]
    # the IC channel is constant in time
    assert torch.equal(a[:, 2], u0[:, None, :].expand(2, 6, 12))
    assert (a[:, 2].diff(dim=1) == 0).all()


def test_inputs_2d_channel_layout_and_rescaling():
    g = torch.Generator().manual_seed(1)
    w0 = torch.randn(3, 8, 6, generator=g)
    t, x, y = torch.linspace(0, 5, 4), torch.arange(8) / 8, torch.arange(6) / 6 * 2.0
    a = pihcmoe_inputs(w0, t, x, y, t_range=(0.0, 5.0), y_range=(0.0, 2.0))
    assert a.shape == (3, 4, 4, 8, 6)
    torch.testing.assert_close(a[0, 0, :, 0, 0], t / 5.0)  # rescaled to [0, 1]
    torch.testing.assert_close(a[1, 1, 2, :, 3], x)  # no range: as given
    torch.testing.assert_close(a[2, 2, 3, 5, :], y / 2.0)
    assert torch.equal(a[:, 3], w0[:, None].expand(3, 4, 8, 6))
    assert float(a[:, 0].min()) == 0.0 and float(a[:, 0].max()) == 1.0


def test_inputs_follow_u0_dtype():
    u0, t, x = _grid_1d(dtype=torch.float64)
    a = pihcmoe_inputs(u0, t.float(), x.float())
    assert a.dtype == torch.float64 and a.device == u0.device


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        ((torch.zeros(2, 3, 4), torch.zeros(5), torch.zeros(3)), {}, ValueError, "u0 must be"),
        (
            (torch.zeros(2, 3), torch.zeros(5), torch.zeros(4)),
            {},
            ValueError,
            r"x must have shape \(3,\)",
        ),
        ((torch.zeros(2, 3), torch.zeros(5, 1), torch.zeros(3)), {}, ValueError, "t must be"),
        (
            (torch.zeros(2, 3), torch.zeros(5), torch.zeros(3), torch.zeros(2)),
            {},
            ValueError,
            "with y given",
        ),
        (
            (torch.zeros(2, 3, 4), torch.zeros(5), torch.zeros(3), torch.zeros(5)),
            {},
            ValueError,
            r"y must have shape \(4,\)",
        ),
        (
            (torch.zeros(2, 3, dtype=torch.long), torch.zeros(5), torch.zeros(3)),
            {},
            TypeError,
            "floating",
        ),
        (([[0.0]], torch.zeros(5), torch.zeros(3)), {}, TypeError, "torch.Tensor"),
        (
            (torch.full((2, 3), math.nan), torch.zeros(5), torch.zeros(3)),
            {},
            ValueError,
            "non-finite",
        ),
        (
            (torch.zeros(2, 3), torch.zeros(5), torch.tensor([0.0, math.inf, 1.0])),
            {},
            ValueError,
            "non-finite",
        ),
        (
            (torch.zeros(2, 3), torch.zeros(5), torch.zeros(3)),
            {"t_range": (1.0, 1.0)},
            ValueError,
            "lo < hi",
        ),
        (
            (torch.zeros(2, 3), torch.zeros(5), torch.zeros(3)),
            {"x_range": "ab"},
            ValueError,
            "x_range",
        ),
    ],
)
def test_inputs_reject_bad_values(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        pihcmoe_inputs(*args, **kwargs)


# --------------------------------------------------------------------------------------
# BasisFNO
# --------------------------------------------------------------------------------------


def test_basis_fno_1d_shapes_gelu_and_gradients():
    torch.manual_seed(0)
    model = BasisFNO(_small())
    u0, t, x = _grid_1d()
    u0.requires_grad_(True)
    basis = model(u0, t, x)
    assert basis.shape == (2, 5, 6, 12) and basis.dtype == torch.float32
    assert float(basis.detach().min()) >= _GELU_MIN  # the final GELU
    # without the GELU: the raw FNO output on the same inputs, and GELU of it above
    raw = BasisFNO(_small(final_gelu=False))
    raw.load_state_dict(model.state_dict())
    out = raw(u0, t, x)
    torch.testing.assert_close(F.gelu(out), basis)
    assert float(out.detach().min()) < 0  # the raw output does go negative

    basis.square().mean().backward()
    assert u0.grad is not None and float(u0.grad.abs().sum()) > 0
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert float(p.grad.abs().sum()) > 0, name


def test_basis_fno_2d_shapes():
    torch.manual_seed(0)
    model = BasisFNO(_small(spatial_dims=2, modes=(4, 4, 4), n_basis=3))
    w0 = torch.randn(2, 8, 6)
    basis = model(w0, torch.linspace(0, 1, 5), torch.arange(8) / 8, torch.arange(6) / 6)
    assert basis.shape == (2, 3, 5, 8, 6)
    with pytest.raises(ValueError, match="spatial_dims=2: pass y"):
        model(w0, torch.linspace(0, 1, 5), torch.arange(8) / 8)
    with pytest.raises(ValueError, match="spatial_dims=1: do not pass y"):
        BasisFNO(_small())(torch.zeros(1, 8), torch.zeros(2), torch.zeros(8), torch.zeros(3))


def test_basis_fno_accepts_other_grids_and_is_consistent_under_refinement():
    """Discretisation invariance: one model on coarse and fine grids of the same domain.

    With band-limited inputs on periodic-style grids, the fine-grid output subsampled onto
    the coarse grid stays close to the coarse-grid output (pointwise layers commute with
    subsampling; only the spectral layers' aliasing differs).
    """
    torch.manual_seed(0)
    model = BasisFNO(_small(final_gelu=False))

    def run(nt, nx):
        t, x = torch.arange(nt) / nt, torch.arange(nx) / nx
        u0 = (0.1 * torch.sin(2 * math.pi * x))[None]
        return model(u0, t, x)

    coarse, fine = run(16, 32), run(32, 64)
    assert fine.shape == (1, 5, 32, 64) and run(7, 13).shape == (1, 5, 7, 13)
    rel = float((fine[..., ::2, ::2] - coarse).detach().norm() / coarse.detach().norm())
    assert rel < 0.1, rel
    # a control: a model with other weights gives a very different field
    other = BasisFNO(_small(final_gelu=False))
    t, x = torch.arange(16) / 16, torch.arange(32) / 32
    ctrl = float((other((0.1 * torch.sin(2 * math.pi * x))[None], t, x) - coarse).detach().norm())
    assert rel * float(coarse.detach().norm()) < 0.2 * ctrl


def test_basis_fno_dtype_conversion_keeps_complex_weights():
    torch.manual_seed(0)
    model = BasisFNO(_small())
    u0, t, x = _grid_1d()
    out32 = model(u0, t, x)
    model.to(torch.float64)
    kinds = {p.dtype for p in model.parameters()}
    assert kinds == {torch.float64, torch.complex128}
    out64 = model(u0.double(), t.double(), x.double())
    assert out64.dtype == torch.float64
    torch.testing.assert_close(out64.float(), out32, rtol=1e-4, atol=1e-5)
    with pytest.raises(TypeError, match="model is torch.float64"):
        model(u0, t, x)
    model.float()
    assert {p.dtype for p in model.parameters()} == {torch.float32, torch.complex64}
    torch.testing.assert_close(model(u0, t, x), out32)


def test_basis_fno_gradient_matches_finite_differences():
    """Autograd's Jacobian d basis / d u0 against central differences, in float64.

    torch.autograd.gradcheck cannot be used: neuralop 2.0's SpectralConv accumulates the
    spectrum in complex64 even for a float64 model, so outputs carry float32 rounding
    (~1e-7 relative) that a gradcheck step of 1e-6 amplifies. A step of 1e-3 keeps that
    below 1e-4 while the O(eps^2) truncation error stays ~1e-6.
    """
    torch.manual_seed(0)
    model = BasisFNO(_small(n_basis=2, width=4, n_layers=1)).double()
    u0, t, x = _grid_1d(b=1, nt=8, nx=12, dtype=torch.float64)

    def f(u):
        return model(u, t, x)

    jac = torch.autograd.functional.jacobian(f, u0).reshape(-1, 12)
    eps = 1e-3
    fd = torch.stack(
        [
            ((f(u0 + eps * e) - f(u0 - eps * e)) / (2 * eps)).detach().reshape(-1)
            for e in torch.eye(12, dtype=torch.float64)[:, None, :]
        ],
        dim=1,
    )
    scale = float(jac.abs().max())
    assert scale > 0
    assert float((jac - fd).abs().max()) < 2e-3 * scale


@pytest.mark.gpu
def test_basis_fno_on_cuda():
    model = BasisFNO(_small()).to("cuda")
    u0, t, x = (v.cuda() for v in _grid_1d())
    out = model(u0, t, x)
    assert out.device.type == "cuda"


def test_save_and_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = BasisFNO(_small(t_range=(0.0, 500.0))).double()
    model.save_pretrained(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "config.json",
        "model.safetensors",
    ]
    loaded = BasisFNO.from_pretrained(tmp_path / "m")
    assert loaded.config == model.config
    u0, t, x = _grid_1d(dtype=torch.float64)
    assert torch.equal(loaded(u0, t, x), model(u0, t, x))
    with pytest.raises(FileNotFoundError, match="config.json"):
        BasisFNO.from_pretrained(tmp_path)


def test_paper_configs():
    ds = BasisFNOConfig.paper_diffusion_sorption()
    assert ds.n_basis == 16 and ds.in_channels == 3 and ds.modes == (16, 14)
    ns = BasisFNOConfig.paper_navier_stokes()
    assert ns.n_basis == 64 and ns.in_channels == 4 and ns.spatial_dims == 2
    # the spectral weights of the original FNO3D: 8 layers x 64 x 64 x (4 corners x 8^3),
    # complex (2 reals each): about 134M, the paper's hard-constraint model
    spectral = 8 * 64 * 64 * (16 * 16 * (14 // 2 + 1)) * 2
    assert spectral == 8 * 64 * 64 * (4 * 8**3) * 2
    model = BasisFNO(BasisFNOConfig.paper_diffusion_sorption())
    n_real = sum(p.numel() * (2 if p.is_complex() else 1) for p in model.parameters())
    assert 4.5e6 < n_real < 5.5e6  # the paper's FNO2D has about 4.75M


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(spatial_dims=3), "spatial_dims must be 1 or 2"),
        (dict(n_basis=0), "n_basis must be a positive integer"),
        (dict(width=2.5), "width must be a positive integer"),
        (dict(modes=(4, 4, 4)), "modes must be a positive int or 2"),
        (dict(modes=0), "modes must be"),
        (dict(projection_channel_ratio=0), "projection_channel_ratio"),
        (dict(y_range=(0, 1)), "y_range applies to spatial_dims=2"),
        (dict(t_range=(2, 1)), "lo < hi"),
    ],
)
def test_config_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BasisFNOConfig(**kwargs)
    with pytest.raises(TypeError, match="BasisFNOConfig"):
        BasisFNO({"n_basis": 3})  # type: ignore[arg-type]
