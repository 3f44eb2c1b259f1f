"""generators.pfgmpp: the PFGM++ kernel, prior, EDM preconditioning and loss.

References are independent of the code under test: scipy's beta-prime and multivariate-t
laws, numerical quadrature, diffusers' EDM preconditioning and hand-written formulas.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from generators.pfgmpp import (
    EDMScalings,
    denoising_loss,
    edm_scalings,
    ideal_denoiser,
    log_kernel,
    loss_weight,
    sample_noise,
    sample_perturbation,
    sample_prior,
    sample_training_sigma,
)

P_MIN = 1e-3  # fixed seeds: a correct sampler passes with this threshold, a wrong law fails


def _radius_ratio_sq(N: int, D: float, method: str, n: int, seed: int) -> np.ndarray:
    """(R / r)² for n draws of the perturbation of x0 = 0 at sigma = 1.5 (r = sigma·sqrt(D))."""
    sigma = 1.5
    g = torch.Generator().manual_seed(seed)
    x0 = torch.zeros(n, N, dtype=torch.float64)
    x = sample_perturbation(x0, sigma, D, g, method=method)
    r = sigma * math.sqrt(D)
    return (x.pow(2).sum(1) / r**2).numpy()


@pytest.mark.parametrize("method", ["student_t", "beta"])
@pytest.mark.parametrize("N,D", [(1, 1.0), (2, 4.0), (6, 16.0), (3, 2.5), (64, 128.0), (500, 7.0)])
def test_radius_follows_beta_prime(N: int, D: float, method: str) -> None:
    ratio = _radius_ratio_sq(N, D, method, n=3000, seed=N * 7 + int(D))
    assert stats.kstest(ratio, stats.betaprime(N / 2, D / 2).cdf).pvalue > P_MIN
    # negative control: the same draws reject a neighbouring law (the test can fail)
    assert stats.kstest(ratio, stats.betaprime(N / 2, 1.5 * D / 2).cdf).pvalue < P_MIN


@pytest.mark.parametrize("N,D", [(2, 4.0), (6, 16.0), (64, 128.0)])
def test_student_t_and_beta_forms_agree(N: int, D: float) -> None:
    a = _radius_ratio_sq(N, D, "student_t", n=3000, seed=1)
    b = _radius_ratio_sq(N, D, "beta", n=3000, seed=2)
    assert stats.ks_2samp(a, b).pvalue > P_MIN
    # directions are uniform in both: the mean of x / ||x|| is ~0 (checked for the beta form)
    g = torch.Generator().manual_seed(3)
    x = sample_perturbation(torch.zeros(4000, N, dtype=torch.float64), 1.0, D, g, method="beta")
    mean_dir = (x / x.norm(dim=1, keepdim=True)).mean(0)
    assert mean_dir.abs().max() < 5 / math.sqrt(4000)


@pytest.mark.parametrize("D", [10.0, 64.0, None])
def test_per_coordinate_variance(D: float | None) -> None:
    sigma = 0.7
    g = torch.Generator().manual_seed(11)
    n = sample_noise((40000, 3), sigma, D, g, dtype=torch.float64)
    expected = sigma**2 * (D / (D - 2) if D is not None else 1.0)
    assert n.var(dim=0).sub(expected).abs().max() / expected < 0.05
    assert n.mean(dim=0).abs().max() < 0.03


def test_per_sample_sigma_and_shared_w() -> None:
    g = torch.Generator().manual_seed(0)
    sigma = torch.tensor([0.0, 1.0, 10.0], dtype=torch.float64)
    n = sample_noise((3, 5, 7), sigma, 8.0, g, dtype=torch.float64)
    assert n.shape == (3, 5, 7)
    assert torch.all(n[0] == 0)
    # one W per sample: the ratio to the shared g is constant within a sample
    g2 = torch.Generator().manual_seed(0)
    gauss = torch.randn((3, 5, 7), generator=g2, dtype=torch.float64)  # g is drawn first
    ratio = n[1:] / gauss[1:]
    assert torch.allclose(ratio, ratio.flatten(1)[:, :1, None].expand_as(ratio))


@pytest.mark.parametrize("D", [1.0, 3.5, 40.0, None])
def test_log_kernel_integrates_to_one_1d_and_2d(D: float | None) -> None:
    sigma = 0.8

    def p1(u: float) -> float:
        return math.exp(float(log_kernel(torch.tensor([[u]], dtype=torch.float64), sigma, D)[0]))

    total1, _ = integrate.quad(p1, -np.inf, np.inf, limit=200)
    assert total1 == pytest.approx(1.0, abs=1e-6)

    def radial2(rho: float) -> float:  # N = 2: ∫ 2π ρ p(ρ) dρ
        u = torch.tensor([[rho, 0.0]], dtype=torch.float64)
        return 2 * math.pi * rho * math.exp(float(log_kernel(u, sigma, D)[0]))

    total2, _ = integrate.quad(radial2, 0, np.inf, limit=200)
    assert total2 == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("D", [2.0, 9.0, None])
def test_log_kernel_matches_scipy(D: float | None) -> None:
    g = torch.Generator().manual_seed(5)
    u = torch.randn(6, 4, generator=g, dtype=torch.float64) * 2
    sigma = torch.tensor([0.3, 0.5, 1.0, 2.0, 4.0, 9.0], dtype=torch.float64)
    got = log_kernel(u, sigma, D).numpy()
    for i in range(6):
        s = float(sigma[i])
        if D is None:
            ref = stats.multivariate_normal(np.zeros(4), s**2 * np.eye(4)).logpdf(u[i].numpy())
        else:
            ref = stats.multivariate_t(np.zeros(4), s**2 * np.eye(4), df=D).logpdf(u[i].numpy())
        assert got[i] == pytest.approx(ref, rel=1e-10, abs=1e-10)


def test_same_seed_same_result_and_prior() -> None:
    def draw(seed: int, method: str) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        return sample_perturbation(torch.ones(8, 3), 2.0, 5.0, g, method=method)

    for method in ("student_t", "beta"):
        assert torch.equal(draw(0, method), draw(0, method))
        assert not torch.equal(draw(0, method), draw(1, method))
    p1 = sample_prior((4, 2, 2), 80.0, 16, torch.Generator().manual_seed(3))
    p2 = sample_noise((4, 2, 2), 80.0, 16, torch.Generator().manual_seed(3))
    assert torch.equal(p1, p2) and p1.dtype == torch.get_default_dtype()
    # g is shared across D for the same seed: the D = ∞ prior is the g of any finite D
    big = sample_prior((4, 2, 2), 80.0, 1e10, torch.Generator().manual_seed(3))
    gauss = sample_prior((4, 2, 2), 80.0, None, torch.Generator().manual_seed(3))
    assert torch.allclose(big, gauss, rtol=1e-4)


def test_bad_arguments_raise() -> None:
    x0 = torch.zeros(2, 3)
    for bad in (0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="D must be"):
            sample_perturbation(x0, 1.0, bad)
    with pytest.raises(ValueError, match="method"):
        sample_perturbation(x0, 1.0, 4.0, method="gamma")
    with pytest.raises(ValueError, match="sigma"):
        sample_noise((2, 3), torch.ones(3), 4.0)
    with pytest.raises(ValueError, match="sigma"):
        sample_noise((2, 3), -1.0, 4.0)
    with pytest.raises(ValueError, match="shape"):
        sample_noise((5,), 1.0, None)
    with pytest.raises(ValueError, match="sigma_max"):
        sample_prior((2, 3), 0.0, 4.0)
    with pytest.raises(ValueError, match="reduction"):
        denoising_loss(lambda x, s: x, x0, D=None, reduction="sum")


def test_edm_scalings_match_diffusers_preconditioning() -> None:
    from diffusers import EDMEulerScheduler

    sched = EDMEulerScheduler(sigma_data=0.5)
    sigma = torch.tensor([0.002, 0.1, 1.0, 80.0], dtype=torch.float64)
    sc = edm_scalings(sigma, 0.5)
    assert isinstance(sc, EDMScalings) and sc.c_skip.shape == sigma.shape
    x = torch.tensor([0.3, -1.0, 2.0, 5.0], dtype=torch.float64)
    F = torch.tensor([1.0, 0.5, -0.2, 3.0], dtype=torch.float64)
    ref = sched.precondition_outputs(x, F, sigma)
    assert torch.allclose(sc.c_skip * x + sc.c_out * F, ref, rtol=1e-12)
    assert torch.allclose(sc.c_in, sched._get_conditioning_c_in(sigma), rtol=1e-12)
    assert torch.allclose(sc.c_noise, sched.precondition_noise(sigma), rtol=1e-12)
    # EDM's weighting makes the effective target unit-weighted: λ(σ)·c_out(σ)² = 1
    assert torch.allclose(loss_weight(sigma) * sc.c_out**2, torch.ones(4, dtype=torch.float64))


def test_training_sigma_is_log_normal() -> None:
    s = sample_training_sigma(5000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert stats.kstest(np.log(s.numpy()), stats.norm(-1.2, 1.2).cdf).pvalue > P_MIN


@pytest.mark.parametrize("bounds", [(0.5, None), (None, 0.5), (0.05, 3.0), (20.0, None)])
def test_bounded_training_sigma_is_the_truncated_law(bounds) -> None:
    # Against scipy's truncated normal (ln σ) and the log-uniform share on the overlap.
    low, high = bounds
    g = torch.Generator().manual_seed(1)
    s = sample_training_sigma(4000, bounds=bounds, generator=g, dtype=torch.float64).numpy()
    assert s.min() >= (low or 0) and s.max() < (high or np.inf)
    a = (np.log(low) + 1.2) / 1.2 if low else -np.inf
    b = (np.log(high) + 1.2) / 1.2 if high else np.inf
    law = stats.truncnorm(a, b, loc=-1.2, scale=1.2)
    assert stats.kstest(np.log(s), law.cdf).pvalue > P_MIN
    u = sample_training_sigma(4000, uniform=1.0, sigma_range=(0.002, 80.0), bounds=bounds,
                              generator=g, dtype=torch.float64).numpy()  # fmt: skip
    lo, hi = np.log(max(0.002, low or 0)), np.log(min(80.0, high or np.inf))
    assert stats.kstest(np.log(u), stats.uniform(lo, hi - lo).cdf).pvalue > P_MIN
    assert u.max() < (high or np.inf)


def test_training_sigma_bounds_are_checked() -> None:
    with pytest.raises(ValueError, match="low < high"):
        sample_training_sigma(4, bounds=(1.0, 0.5))
    with pytest.raises(ValueError, match="positive"):
        sample_training_sigma(4, bounds=(-1.0, None))
    with pytest.raises(ValueError, match="nothing of sigma_range"):
        sample_training_sigma(4, uniform=0.5, sigma_range=(0.002, 80.0), bounds=(100.0, None))
    with pytest.raises(ValueError, match="no mass"):
        sample_training_sigma(4, p_mean=-1.2, p_std=0.01, bounds=(50.0, None))


def _atoms() -> tuple[torch.Tensor, torch.Tensor]:
    atoms = torch.tensor([[1.0, 0.0], [-0.5, 0.8], [-0.5, -0.8]], dtype=torch.float64)
    return atoms, torch.tensor([0.6, 0.3, 0.1], dtype=torch.float64)


def test_ideal_denoiser_matches_hand_posterior() -> None:
    atoms, w = _atoms()
    x = torch.tensor([[0.2, 0.1], [3.0, -2.0]], dtype=torch.float64)
    sigma = torch.tensor([0.5, 2.0], dtype=torch.float64)
    for D in (3.0, 50.0, None):
        got = ideal_denoiser(x, sigma, atoms, w, D)
        for i in range(2):
            d2 = ((x[i] - atoms) ** 2).sum(1)
            s2 = float(sigma[i]) ** 2
            if D is None:
                logp = -d2 / (2 * s2)
            else:  # p_r(y|x) ∝ p(y) (||x - y||² + σ² D)^(-(N+D)/2)
                logp = -(2 + D) / 2 * torch.log(d2 + s2 * D)
            post = w * torch.exp(logp - logp.max())
            assert torch.allclose(got[i], (post / post.sum()) @ atoms, rtol=1e-10)
    # D -> ∞ approaches the Gaussian posterior
    gap = (ideal_denoiser(x, sigma, atoms, w, 1e9) - ideal_denoiser(x, sigma, atoms, w, None)).abs()
    assert gap.max() < 1e-6


def test_denoising_loss_orders_denoisers_and_reduces() -> None:
    atoms, w = _atoms()
    g = torch.Generator().manual_seed(0)
    idx = torch.multinomial(w, 256, replacement=True, generator=g)
    x0 = atoms[idx]
    sigma = sample_training_sigma(256, generator=g, dtype=torch.float64)
    noise = sample_noise((256, 2), 1.0, 8.0, g, dtype=torch.float64)

    def ideal(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return ideal_denoiser(x, s, atoms, w, 8.0)

    def zero(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)

    per = denoising_loss(ideal, x0, D=8.0, sigma=sigma, noise=noise, reduction="none")
    assert per.shape == (256,)
    ref = loss_weight(sigma) * (ideal(x0 + sigma[:, None] * noise, sigma) - x0).pow(2).mean(1)
    assert torch.allclose(per, ref)
    l_ideal = denoising_loss(ideal, x0, D=8.0, sigma=sigma, noise=noise)
    l_zero = denoising_loss(zero, x0, D=8.0, sigma=sigma, noise=noise)
    assert l_ideal.ndim == 0 and float(l_ideal) == pytest.approx(float(per.mean()))
    assert float(l_ideal) < 0.5 * float(l_zero)
    # drawn sigma/noise: reproducible with the generator; kwargs are passed through
    seen = {}

    def kw(x: torch.Tensor, s: torch.Tensor, class_labels: torch.Tensor) -> torch.Tensor:
        seen["labels"] = class_labels
        return ideal(x, s)

    a = denoising_loss(kw, x0, D=8.0, generator=torch.Generator().manual_seed(4), class_labels=idx)
    b = denoising_loss(kw, x0, D=8.0, generator=torch.Generator().manual_seed(4), class_labels=idx)
    assert torch.equal(a, b) and seen["labels"] is idx


@pytest.mark.gpu
def test_cpu_generator_is_reproducible_on_cuda() -> None:
    """Draws happen on the generator's device (as diffusers' randn_tensor), then move."""
    shape = (4, 3, 5)
    for D in (6.0, None):
        cpu = sample_noise(shape, 2.0, D, torch.Generator().manual_seed(0))
        gpu = sample_noise(shape, 2.0, D, torch.Generator().manual_seed(0), device="cuda")
        assert gpu.device.type == "cuda" and torch.equal(gpu.cpu(), cpu)
    x0 = torch.zeros(shape, device="cuda")
    g = torch.Generator(device="cuda").manual_seed(0)
    for method in ("student_t", "beta"):
        x = sample_perturbation(x0, 1.0, 4.0, g, method=method)
        assert x.device.type == "cuda" and torch.isfinite(x).all()


def test_denoising_loss_with_element_weights_is_a_weighted_mean() -> None:
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(5, 3, 4, generator=g, dtype=torch.float64)
    sigma = torch.full((5,), 0.7, dtype=torch.float64)
    noise = torch.randn(5, 3, 4, generator=g, dtype=torch.float64)

    def half(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return 0.5 * x

    err = (half(x0 + 0.7 * noise, sigma) - x0).pow(2).flatten(1)
    plain = denoising_loss(half, x0, D=None, sigma=sigma, noise=noise, reduction="none")
    # constant weights change nothing ...
    same = denoising_loss(
        half,
        x0,
        D=None,
        sigma=sigma,
        noise=noise,
        reduction="none",
        element_weight=torch.full_like(x0, 3.0),
    )
    assert torch.allclose(same, plain)
    # ... all weight on one element gives that element's error ...
    w = torch.zeros_like(x0)
    w[:, 1, 2] = 1.0
    one = denoising_loss(
        half, x0, D=None, sigma=sigma, noise=noise, reduction="none", element_weight=w
    )
    assert torch.allclose(one, loss_weight(sigma) * err[:, 1 * 4 + 2])
    # ... and weights 1 and 5 give sum(w e^2) / sum(w).
    w = 1.0 + 4.0 * (torch.rand(x0.shape, generator=g, dtype=torch.float64) < 0.3)
    mixed = denoising_loss(half, x0, D=None, sigma=sigma, noise=noise, element_weight=w)
    wf = w.flatten(1)
    expected = (loss_weight(sigma) * (wf * err).sum(1) / wf.sum(1)).mean()
    assert float(mixed) == pytest.approx(float(expected), rel=1e-12)
    with pytest.raises(ValueError, match="element_weight"):
        denoising_loss(half, x0, D=None, element_weight=torch.ones(5, 12))
    with pytest.raises(ValueError, match="element_weight"):
        denoising_loss(half, x0, D=None, element_weight=-torch.ones_like(x0))
