"""generators.schedulers.PFGMPPScheduler: exact sampling, diffusers parity, conformance."""

from __future__ import annotations

import math

import pytest
import torch
from diffusers import EDMDPMSolverMultistepScheduler, EDMEulerScheduler

from generators.pfgmpp import ideal_denoiser, sample_prior
from generators.schedulers import PFGMPPScheduler, PFGMPPSchedulerOutput

ATOMS = torch.tensor([[1.0, 0.0], [-0.5, 0.8], [-0.5, -0.8]], dtype=torch.float64)
WEIGHTS = torch.tensor([0.6, 0.3, 0.1], dtype=torch.float64)


def _run(sched: PFGMPPScheduler, x: torch.Tensor, denoiser, trajectory: list | None = None):
    """The standard pipeline loop with a ``denoiser(x, sigma) -> x0`` ("sample" prediction)."""
    calls = 0
    for t in sched.timesteps:
        sigma = torch.full((x.shape[0],), sched.current_sigma, dtype=x.dtype)
        assert sched.timestep_to_sigma(t).item() == pytest.approx(sched.current_sigma, rel=1e-6)
        x = sched.step(denoiser(x, sigma), t, x).prev_sample
        calls += 1
        if trajectory is not None:
            trajectory.append(x)
    return x, calls


@pytest.mark.parametrize("D", [4.0, 64.0, None])
def test_exact_sampling_lands_on_atoms_with_right_frequencies(D: float | None) -> None:
    n = 2000
    sched = PFGMPPScheduler(sigma_max=80.0, D=D, solver="heun", prediction_type="sample")
    sched.set_timesteps(40)
    x = sched.sample_prior((n, 2), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x, calls = _run(sched, x, lambda x, s: ideal_denoiser(x, s, ATOMS, WEIGHTS, D))
    assert calls == 79
    dist = torch.cdist(x, ATOMS)
    assert dist.min(dim=1).values.max() < 1e-2  # every sample is on an atom
    freq = torch.bincount(dist.argmin(dim=1), minlength=3).double() / n
    sd = torch.sqrt(WEIGHTS * (1 - WEIGHTS) / n)
    assert torch.all((freq - WEIGHTS).abs() < 4 * sd), (freq, WEIGHTS)


def test_mismatched_d_gives_wrong_frequencies() -> None:
    """Negative control: a D=1 prior run with the Gaussian (D = ∞) denoiser is not exact."""
    n = 2000
    sched = PFGMPPScheduler(D=1.0, solver="heun", prediction_type="sample")
    sched.set_timesteps(20)
    x = sched.sample_prior((n, 2), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x, _ = _run(sched, x, lambda x, s: ideal_denoiser(x, s, ATOMS, WEIGHTS, None))
    freq = torch.bincount(torch.cdist(x, ATOMS).argmin(dim=1), minlength=3).double() / n
    sd = torch.sqrt(WEIGHTS * (1 - WEIGHTS) / n)
    assert torch.any((freq - WEIGHTS).abs() > 6 * sd), freq


def _toy_model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A nonlinear stand-in for F(c_in x, c_noise) that depends on both inputs."""
    return torch.tanh(1.7 * x + 0.3) * (1.0 + 0.2 * t) - 0.1 * x.flip(-1)


def _loop(sched, x: torch.Tensor) -> torch.Tensor:
    for t in sched.timesteps:
        x = sched.step(_toy_model(sched.scale_model_input(x, t), t), t, x).prev_sample
    return x


@pytest.mark.parametrize("steps", [1, 2, 7, 18])
def test_euler_d_none_matches_diffusers_edm_euler(steps: int) -> None:
    ours = PFGMPPScheduler(D=None, solver="euler")
    ref = EDMEulerScheduler()
    ours.set_timesteps(steps)
    ref.set_timesteps(steps)
    assert torch.equal(ours.sigmas, ref.sigmas)
    assert torch.equal(ours.timesteps, ref.timesteps)
    latents = torch.randn(3, 2, 4, generator=torch.Generator().manual_seed(steps)) * 80.0
    a, b = _loop(ours, latents.clone()), _loop(ref, latents.clone())
    assert torch.allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("steps", [3, 10, 20])
def test_dpmpp_2m_d_none_matches_diffusers_edm_dpmsolver(steps: int) -> None:
    ours = PFGMPPScheduler(D=None, solver="dpmpp_2m")
    ref = EDMDPMSolverMultistepScheduler(solver_order=2)
    ours.set_timesteps(steps)
    ref.set_timesteps(steps)
    # diffusers builds its ramp in float32: the schedules agree to float32 rounding
    assert torch.allclose(ours.sigmas, ref.sigmas, rtol=1e-6)
    latents = torch.randn(3, 5, generator=torch.Generator().manual_seed(steps)) * 80.0
    a, b = _loop(ours, latents.clone()), _loop(ref, latents.clone())
    assert torch.allclose(a, b, rtol=1e-4, atol=1e-4)


def test_heun_matches_hand_written_edm_algorithm_1() -> None:
    """Karras et al. (2022) alg. 1 (deterministic), written out here as the reference."""
    steps, D = 9, 16.0
    sched = PFGMPPScheduler(D=D, solver="heun", prediction_type="sample")
    sched.set_timesteps(steps)
    x0 = sched.sample_prior(
        (64, 2), generator=torch.Generator().manual_seed(1), dtype=torch.float64
    )

    def den(x, s):
        return ideal_denoiser(x, s, ATOMS, WEIGHTS, D)

    got, calls = _run(sched, x0.clone(), den)
    assert calls == 2 * steps - 1
    i = torch.arange(steps, dtype=torch.float64)
    t = (80 ** (1 / 7) + i / (steps - 1) * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    t = torch.cat([t, torch.zeros(1, dtype=torch.float64)]).tolist()
    x = x0.clone()
    for k in range(steps):
        d = (x - den(x, torch.full((64,), t[k], dtype=torch.float64))) / t[k]
        x_next = x + (t[k + 1] - t[k]) * d
        if t[k + 1] > 0:
            d2 = (x_next - den(x_next, torch.full((64,), t[k + 1], dtype=torch.float64))) / t[k + 1]
            x_next = x + (t[k + 1] - t[k]) * 0.5 * (d + d2)
        x = x_next
    assert torch.allclose(got, x, rtol=1e-12, atol=1e-12)


def test_large_d_samples_approach_d_none() -> None:
    """Shared g (same seed) and W ~ chi²_D with sqrt(D/W) -> 1: trajectories converge as O(D^-1/2)."""
    steps, n = 12, 256

    def trajectory(D):
        sched = PFGMPPScheduler(D=D, solver="heun", prediction_type="sample")
        sched.set_timesteps(steps)
        x = sched.sample_prior(
            (n, 2), generator=torch.Generator().manual_seed(7), dtype=torch.float64
        )
        traj = [x]
        _run(sched, x, lambda x, s: ideal_denoiser(x, s, ATOMS, WEIGHTS, D), traj)
        return torch.stack(traj)

    ref = trajectory(None)
    err = {D: (trajectory(D) - ref).abs().max().item() for D in (1e4, 1e6, 1e8)}
    assert err[1e8] < 0.05
    assert err[1e6] < err[1e4] / 5 and err[1e8] < err[1e6] / 5, err


@pytest.mark.parametrize("solver,calls", [("heun", 2 * 6 - 1), ("euler", 6), ("dpmpp_2m", 6)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_calls_shape_and_dtype(solver: str, calls: int, dtype: torch.dtype) -> None:
    sched = PFGMPPScheduler(D=32.0, solver=solver)
    sched.set_timesteps(6)
    assert len(sched.timesteps) == calls and len(sched.sigmas) == calls + 1
    assert sched.order == (2 if solver == "heun" else 1)
    x = sched.sample_prior((2, 3, 4, 4), generator=torch.Generator().manual_seed(0), dtype=dtype)
    n_calls = 0
    for t in sched.timesteps:
        inp = sched.scale_model_input(x, t)
        assert inp.dtype == dtype
        out = sched.step(_toy_model(inp, t), t, x)
        assert isinstance(out, PFGMPPSchedulerOutput)
        assert out.prev_sample.shape == x.shape and out.prev_sample.dtype == dtype
        x = out.prev_sample
        n_calls += 1
    assert n_calls == calls and torch.isfinite(x).all()
    with pytest.raises(ValueError, match="set_timesteps"):
        sched.step(x, sched.timesteps[-1], x)
    # a second loop after set_timesteps restarts cleanly and reproduces the first
    sched.set_timesteps(6)
    x0 = sched.sample_prior((2, 3, 4, 4), generator=torch.Generator().manual_seed(0), dtype=dtype)
    assert torch.equal(_loop(sched, x0), x)


def test_float32_and_float64_agree() -> None:
    sched = PFGMPPScheduler(D=64.0, solver="heun", prediction_type="sample")
    sched.set_timesteps(10)
    x = sched.sample_prior(
        (128, 2), generator=torch.Generator().manual_seed(2), dtype=torch.float64
    )
    a, _ = _run(sched, x, lambda x, s: ideal_denoiser(x, s, ATOMS, WEIGHTS, 64.0))
    sched.set_timesteps(10)
    b, _ = _run(sched, x.float(), lambda x, s: ideal_denoiser(x, s, ATOMS.float(), WEIGHTS, 64.0))
    assert torch.allclose(a.float(), b, atol=1e-3)


@pytest.mark.parametrize("D", [128.0, None])
def test_config_round_trip(tmp_path, D: float | None) -> None:
    sched = PFGMPPScheduler(sigma_min=0.01, sigma_max=40.0, rho=5.0, D=D, solver="dpmpp_2m")
    sched.save_pretrained(tmp_path)
    loaded = PFGMPPScheduler.from_pretrained(tmp_path)
    public = lambda c: {k: v for k, v in c.items() if not k.startswith("_")}  # noqa: E731
    assert public(loaded.config) == public(sched.config)
    assert loaded.config.D == D and loaded.config.solver == "dpmpp_2m"
    sched.set_timesteps(8)
    loaded.set_timesteps(8)
    assert torch.equal(loaded.sigmas, sched.sigmas)


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"solver": "rk4"}, "solver"),
        ({"D": 0}, "D"),
        ({"D": -3.0}, "D"),
        ({"sigma_min": 80.0}, "sigma_min"),
        ({"sigma_min": 1.0, "sigma_max": 0.5}, "sigma_max"),
        ({"prediction_type": "v_prediction"}, "prediction_type"),
        ({"sigma_data": 0.0}, "sigma_data"),
    ],
)
def test_bad_config_raises(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        PFGMPPScheduler(**kwargs)


def test_bad_timesteps_raise() -> None:
    sched = PFGMPPScheduler()
    with pytest.raises(ValueError, match="num_inference_steps"):
        sched.set_timesteps(0)
    sched.set_timesteps(5)
    with pytest.raises(ValueError, match="not in scheduler.timesteps"):
        sched.scale_model_input(torch.zeros(1, 2), 123.0)


def test_add_noise_and_prior() -> None:
    sched = PFGMPPScheduler(D=16.0, solver="euler")
    sched.set_timesteps(5)
    x0 = torch.ones(5, 3)
    noise = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    noisy = sched.add_noise(x0, noise, sched.timesteps)
    assert torch.allclose(noisy, x0 + noise * sched.sigmas[:5, None])
    # continuous sigma: t = ln(σ)/4 for any σ, not only the schedule's
    sigma = torch.tensor([0.05, 0.3, 1.0, 7.0, 50.0])
    noisy = sched.add_noise(x0, noise, 0.25 * torch.log(sigma))
    assert torch.allclose(noisy, x0 + noise * sigma[:, None], rtol=1e-5)
    assert sched.init_noise_sigma == 80.0 and len(sched) == 1000
    p = sched.sample_prior((4, 2), generator=torch.Generator().manual_seed(3))
    assert torch.equal(p, sample_prior((4, 2), 80.0, 16.0, torch.Generator().manual_seed(3)))


def test_epsilon_prediction_equals_sample_prediction() -> None:
    """ "epsilon" (EDM F) and "sample" (x0) give the same trajectory for the same denoiser."""
    D = 8.0
    den = lambda x, s: ideal_denoiser(x, s, ATOMS, WEIGHTS, D)  # noqa: E731
    a_s = PFGMPPScheduler(D=D, solver="dpmpp_2m", prediction_type="sample")
    e_s = PFGMPPScheduler(D=D, solver="dpmpp_2m", prediction_type="epsilon")
    a_s.set_timesteps(8)
    e_s.set_timesteps(8)
    x = a_s.sample_prior((32, 2), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    a, _ = _run(a_s, x, den)
    y = x.clone()
    for t in e_s.timesteps:
        s = e_s.timestep_to_sigma(t).item()
        c_in, c_skip = 1 / math.sqrt(s**2 + 0.25), 0.25 / (s**2 + 0.25)
        c_out = s * 0.5 / math.sqrt(s**2 + 0.25)
        inp = e_s.scale_model_input(y, t)
        assert torch.allclose(inp, c_in * y)
        F = (den(inp / c_in, torch.full((32,), s, dtype=torch.float64)) - c_skip * y) / c_out
        y = e_s.step(F, t, y).prev_sample
    assert torch.allclose(a, y, rtol=1e-6, atol=1e-6)
