"""PFGM++: the perturbation kernel, its prior, EDM preconditioning and the training loss.

PFGM++ (Xu et al., 2023) places the N data dimensions in R^{N+D}; only the norm r of the
D augmented coordinates matters. With ``r = sigma * sqrt(D)`` the perturbation kernel

    p_r(x | y) ∝ r^D (||x - y||² + r²)^(-(N+D)/2)                         (paper, eq. 4)

is exactly a multivariate Student-t with nu = D degrees of freedom, location y and scale
sigma (see ``shared/papers/pfgmpp.md``, section 1). D -> ∞ recovers the Gaussian kernel of
diffusion models (EDM); here ``D=None`` means D = ∞.

Everything downstream of the noise is EDM's: the preconditioning (c_skip, c_out, c_in,
c_noise), the log-normal training sigma and the loss weighting are conditioned on sigma,
not on r, so that every EDM hyperparameter transfers unchanged (paper, sec. 4).

Randomness: every sampler takes an explicit ``torch.Generator`` and draws only through it,
so the same seed gives the same result. chi-square and Beta variates are built from
generator-driven normals and uniforms (Marsaglia-Tsang gamma sampler), because
``torch._standard_gamma`` and ``torch.distributions`` do not accept a generator.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

__all__ = [
    "EDMScalings",
    "denoising_loss",
    "edm_scalings",
    "ideal_denoiser",
    "log_kernel",
    "loss_weight",
    "sample_noise",
    "sample_perturbation",
    "sample_prior",
    "sample_training_sigma",
]


# --------------------------------------------------------------------------- validation


def _check_D(D: float | None) -> float | None:
    """Return D as a float (or None for D = ∞); raise ValueError if it is not a real > 0."""
    if D is None:
        return None
    if isinstance(D, bool) or not isinstance(D, (int, float)):
        raise TypeError(f"D must be a real number > 0 or None (D = ∞), got {D!r}")
    D = float(D)
    if not (D > 0.0) or math.isinf(D):
        raise ValueError(f"D must be a finite real number > 0 or None (D = ∞), got D={D!r}")
    return D


def _sigma_per_sample(
    sigma: float | torch.Tensor, batch: int, *, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """sigma as a (batch,) tensor; raise ValueError on a non-positive or non-finite value."""
    s = torch.as_tensor(sigma, device=device, dtype=dtype)
    if s.ndim == 0:
        s = s.expand(batch)
    elif s.shape != (batch,):
        raise ValueError(
            f"sigma must be a float or a ({batch},) tensor, got shape {tuple(s.shape)}"
        )
    if not bool(torch.isfinite(s).all()) or bool((s < 0).any()):
        raise ValueError(f"sigma must be finite and >= 0, got {sigma!r}")
    return s


def _check_shape(shape: tuple[int, ...] | torch.Size) -> tuple[int, ...]:
    shape = tuple(int(s) for s in shape)
    if len(shape) < 2 or any(s <= 0 for s in shape):
        raise ValueError(f"shape must be (B, ...) with at least one data dimension, got {shape}")
    return shape


def _rng_device(
    generator: torch.Generator | None, device: torch.device | str | None
) -> torch.device:
    """Where to draw: the generator's device (as diffusers' ``randn_tensor``), so a CPU
    generator gives the same numbers whatever the output device; results are moved after."""
    if generator is not None:
        return generator.device
    return torch.device(device) if device is not None else torch.device("cpu")


def _bcast(v: torch.Tensor, ndim: int) -> torch.Tensor:
    """(B,) -> (B, 1, ..., 1) with ndim dimensions in all."""
    return v.reshape(v.shape[0], *([1] * (ndim - 1)))


# --------------------------------------------------------------------------- random variates


def _standard_gamma(
    n: int,
    alpha: float,
    generator: torch.Generator | None,
    device: torch.device | str | None,
) -> torch.Tensor:
    """n draws of Gamma(alpha, 1) in float64, driven only by ``generator``.

    Marsaglia & Tsang (2000), "A simple method for generating gamma variables": for
    alpha >= 1 set d = alpha - 1/3, c = 1/sqrt(9d), draw z ~ N(0,1), u ~ U(0,1),
    v = (1 + c z)³ and accept d·v when v > 0 and log u < z²/2 + d - d v + d log v.
    For alpha < 1, Gamma(alpha) = Gamma(alpha + 1) · U^(1/alpha). The acceptance rate is
    above 95 %, so the vectorised loop below runs a handful of rounds. Written by hand
    because torch's gamma sampler takes no generator (see the module docstring).
    """
    boost = alpha < 1.0
    a = alpha + 1.0 if boost else alpha
    d = a - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    out = torch.empty(n, dtype=torch.float64, device=device)
    todo = torch.arange(n, device=device)
    while todo.numel() > 0:
        m = todo.numel()
        z = torch.randn(m, generator=generator, dtype=torch.float64, device=device)
        u = torch.rand(m, generator=generator, dtype=torch.float64, device=device)
        v = (1.0 + c * z) ** 3
        vpos = v.clamp_min(1e-300)
        ok = (v > 0) & (torch.log(u) < 0.5 * z * z + d - d * vpos + d * torch.log(vpos))
        out[todo[ok]] = d * vpos[ok]
        todo = todo[~ok]
    if boost:
        u = torch.rand(n, generator=generator, dtype=torch.float64, device=device)
        out = out * u.pow(1.0 / alpha)
    return out


def _chi2(
    n: int, D: float, generator: torch.Generator | None, device: torch.device | str | None
) -> torch.Tensor:
    """n draws of chi-square with D degrees of freedom (= 2·Gamma(D/2)), float64."""
    return 2.0 * _standard_gamma(n, D / 2.0, generator, device)


# --------------------------------------------------------------------------- the kernel


def sample_noise(
    shape: tuple[int, ...] | torch.Size,
    sigma: float | torch.Tensor,
    D: float | None,
    generator: torch.Generator | None = None,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Draw the PFGM++ perturbation n (so that x = y + n) in its Student-t form.

    ``n = sigma · sqrt(D / W) · g`` with ``W ~ chi²_D`` (one W per sample, i.e. per leading
    index) and ``g ~ N(0, I_N)``, N = the product of the non-batch dimensions. This is the
    multivariate t with nu = D and scale sigma, i.e. the kernel at ``r = sigma·sqrt(D)``.
    ``D=None`` gives ``sigma · g``. g is drawn first (W after it), so the same generator state
    gives the same g for every D: that couples finite-D samples pathwise to D = ∞, since
    sqrt(D / W) -> 1 as D grows.

    Args:
        shape: (B, ...) output shape.
        sigma: noise level, a float or a (B,) tensor (one per sample), in data units.
        D: augmented dimensions, a real > 0, or None for D = ∞ (Gaussian).
        generator: the only source of randomness.
        device: output device (default: the generator's device, else CPU). Draws happen on
            the generator's device and are moved, so a CPU generator is reproducible on GPU.
        dtype: output float dtype (default: torch's default dtype).

    Returns:
        (B, ...) tensor of the given dtype.
    """
    shape = _check_shape(shape)
    D = _check_D(D)
    rng = _rng_device(generator, device)
    device = torch.device(device) if device is not None else rng
    dtype = dtype or torch.get_default_dtype()
    batch = shape[0]
    s = _sigma_per_sample(sigma, batch, device=rng, dtype=torch.float64)
    g = torch.randn(shape, generator=generator, dtype=dtype, device=rng)
    if D is not None:
        w = _chi2(batch, D, generator, rng)
        s = s * torch.sqrt(D / w)  # sigma · sqrt(D / W)
    return (_bcast(s.to(dtype), len(shape)) * g).to(device)


def sample_perturbation(
    x0: torch.Tensor,
    sigma: float | torch.Tensor,
    D: float | None,
    generator: torch.Generator | None = None,
    *,
    method: Literal["student_t", "beta"] = "student_t",
) -> torch.Tensor:
    """Perturb data with the PFGM++ kernel: return ``x = x0 + n``, n ~ p_r(· | 0), r = sigma·sqrt(D).

    Two exact samplers of the same law:

    - ``"student_t"``: ``n = sigma · sqrt(D / W) · g``, W ~ chi²_D, g ~ N(0, I) (see
      :func:`sample_noise`).
    - ``"beta"``: the paper's radius form (appendix B): ``R = r · sqrt(B / (1 - B))`` with
      ``B ~ Beta(N/2, D/2)`` and a uniform direction ``g / ||g||``. With B = G1/(G1+G2),
      G1 ~ Gamma(N/2), G2 ~ Gamma(D/2), ``B / (1 - B) = G1 / G2``; we evaluate that ratio
      directly, which avoids the cancellation in 1 - B and so needs none of the reference
      implementation's clipping of B to [1e-3, 1 - 1e-3].

    Args:
        x0: (B, ...) clean data, float.
        sigma: float or (B,) tensor, noise level in data units.
        D: real > 0, or None for D = ∞ (both methods then give x0 + sigma·g).
        generator: the only source of randomness.
        method: ``"student_t"`` or ``"beta"``.

    Returns:
        (B, ...) tensor like x0.
    """
    if not torch.is_floating_point(x0):
        raise TypeError(f"x0 must be a floating-point tensor, got dtype {x0.dtype}")
    shape = _check_shape(x0.shape)
    if method == "student_t":
        return x0 + sample_noise(shape, sigma, D, generator, device=x0.device, dtype=x0.dtype)
    if method != "beta":
        raise ValueError(f"method must be 'student_t' or 'beta', got {method!r}")
    D = _check_D(D)
    if D is None:
        return x0 + sample_noise(shape, sigma, None, generator, device=x0.device, dtype=x0.dtype)
    batch, n_dims = shape[0], math.prod(shape[1:])
    rng = _rng_device(generator, x0.device)
    s = _sigma_per_sample(sigma, batch, device=rng, dtype=torch.float64)
    r = s * math.sqrt(D)  # r = sigma · sqrt(D)
    g1 = _standard_gamma(batch, n_dims / 2.0, generator, rng)
    g2 = _standard_gamma(batch, D / 2.0, generator, rng)
    radius = r * torch.sqrt(g1 / g2)  # R = r · sqrt(B / (1 - B))
    g = torch.randn(shape, generator=generator, dtype=torch.float64, device=rng)
    direction = g / g.flatten(1).norm(dim=1).clamp_min(1e-300).reshape(
        batch, *([1] * (len(shape) - 1))
    )
    return x0 + (_bcast(radius, len(shape)) * direction).to(device=x0.device, dtype=x0.dtype)


def sample_prior(
    shape: tuple[int, ...] | torch.Size,
    sigma_max: float,
    D: float | None,
    generator: torch.Generator | None = None,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Draw from the prior: the kernel centred at 0 at ``sigma_max`` (r_max = sigma_max·sqrt(D)).

    For D = None this is ``sigma_max · N(0, I)``. The ODE sampler starts from these latents
    directly (no further scaling by sigma_max).

    Args:
        shape: (B, ...).
        sigma_max: the largest noise level (EDM: 80), > 0.
        D: real > 0 or None.
        generator, device, dtype: as in :func:`sample_noise`.

    Returns:
        (B, ...) tensor.
    """
    if not (float(sigma_max) > 0.0) or math.isinf(float(sigma_max)):
        raise ValueError(f"sigma_max must be a finite number > 0, got {sigma_max!r}")
    return sample_noise(shape, float(sigma_max), D, generator, device=device, dtype=dtype)


def log_kernel(u: torch.Tensor, sigma: float | torch.Tensor, D: float | None) -> torch.Tensor:
    """Normalised log-density of the perturbation u = x - y under the PFGM++ kernel.

    The multivariate Student-t with nu = D, scale sigma, in N = prod(u.shape[1:]) dimensions:

        log Γ((D+N)/2) - log Γ(D/2) - (N/2) log(D π) - N log σ - (D+N)/2 · log(1 + ||u||²/(D σ²))

    which equals the paper's p_r(x | y) ∝ r^D (||u||² + r²)^(-(N+D)/2) at r = σ·sqrt(D),
    normalised. ``D=None``: the Gaussian ``-N/2 log(2π σ²) - ||u||²/(2σ²)``.

    Args:
        u: (B, ...) perturbations, float.
        sigma: float or (B,) tensor, > 0.
        D: real > 0 or None.

    Returns:
        (B,) log-densities in the dtype of u.
    """
    D = _check_D(D)
    shape = _check_shape(u.shape)
    batch, n_dims = shape[0], math.prod(shape[1:])
    s = _sigma_per_sample(sigma, batch, device=u.device, dtype=u.dtype)
    if bool((s <= 0).any()):
        raise ValueError(f"sigma must be > 0 for log_kernel, got {sigma!r}")
    sq = u.flatten(1).pow(2).sum(dim=1)
    if D is None:
        return -0.5 * n_dims * torch.log(2 * math.pi * s**2) - sq / (2 * s**2)
    const = (
        math.lgamma((D + n_dims) / 2) - math.lgamma(D / 2) - 0.5 * n_dims * math.log(D * math.pi)
    )
    return const - n_dims * torch.log(s) - 0.5 * (D + n_dims) * torch.log1p(sq / (D * s**2))


# --------------------------------------------------------------------------- EDM preconditioning


@dataclass(frozen=True)
class EDMScalings:
    """EDM preconditioning coefficients (Karras et al. 2022, table 1), shaped like sigma.

    D(x, σ) = c_skip · x + c_out · F(c_in · x, c_noise).

    Attributes:
        c_skip: σ_d² / (σ² + σ_d²).
        c_out: σ σ_d / sqrt(σ² + σ_d²).
        c_in: 1 / sqrt(σ² + σ_d²).
        c_noise: ln(σ) / 4.
    """

    c_skip: torch.Tensor
    c_out: torch.Tensor
    c_in: torch.Tensor
    c_noise: torch.Tensor


def edm_scalings(sigma: float | torch.Tensor, sigma_data: float = 0.5) -> EDMScalings:
    """EDM's c_skip, c_out, c_in, c_noise at noise level sigma (tensors shaped like sigma).

    PFGM++ conditions on sigma (not r), so these are unchanged for any D.
    """
    if not sigma_data > 0:
        raise ValueError(f"sigma_data must be > 0, got {sigma_data!r}")
    s = torch.as_tensor(sigma)
    if not torch.is_floating_point(s):
        s = s.to(torch.get_default_dtype())
    total = s**2 + sigma_data**2
    return EDMScalings(
        c_skip=sigma_data**2 / total,
        c_out=s * sigma_data / torch.sqrt(total),
        c_in=1.0 / torch.sqrt(total),
        c_noise=torch.log(s) / 4,
    )


def loss_weight(sigma: float | torch.Tensor, sigma_data: float = 0.5) -> torch.Tensor:
    """EDM's loss weight λ(σ) = (σ² + σ_d²) / (σ σ_d)² (so that λ·c_out² = 1)."""
    s = torch.as_tensor(sigma)
    if not torch.is_floating_point(s):
        s = s.to(torch.get_default_dtype())
    return (s**2 + sigma_data**2) / (s * sigma_data) ** 2


def _normal_cdf(x: float) -> float:
    """Φ(x), the standard normal's CDF."""
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def sample_training_sigma(
    n: int,
    *,
    p_mean: float = -1.2,
    p_std: float = 1.2,
    uniform: float = 0.0,
    sigma_range: tuple[float, float] = (0.002, 80.0),
    bounds: tuple[float | None, float | None] = (None, None),
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Draw n training noise levels: ln σ ~ N(p_mean, p_std²) (EDM; unchanged by PFGM++),
    a ``uniform`` share of them log-uniform on ``sigma_range`` instead; with ``bounds``,
    that law conditioned on low <= σ < high.

    EDM's log-normal puts about 1 % of its draws above σ = 5 while sampling starts at
    σ_max = 80; the log-uniform share trains the levels where a sample's structure is
    decided. With ``uniform = 0`` no extra random numbers are drawn, so the draws (and
    the generator's state after them) are EDM's exactly.

    Args:
        n: how many.
        p_mean, p_std: the log-normal's parameters.
        uniform: the log-uniform share, in [0, 1].
        sigma_range: (σ_min, σ_max) of the log-uniform share (the sampling range).
        bounds: (low, high), either None for no bound: each part of the law is
            truncated to [low, high) by drawing its quantile between the bounds' (so
            nothing is redrawn and the number of random draws does not change). A
            fine-tune can so train one range of noise levels and anchor another.

    Returns:
        (n,) tensor of sigmas.
    """
    if n <= 0:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if not p_std > 0:
        raise ValueError(f"p_std must be > 0, got {p_std!r}")
    if not 0 <= uniform <= 1:
        raise ValueError(f"uniform must be in [0, 1], got {uniform!r}")
    lo, hi = sigma_range
    if not 0 < lo < hi:
        raise ValueError(f"sigma_range must be 0 < sigma_min < sigma_max, got {sigma_range!r}")
    low, high = bounds
    for name, b in (("low", low), ("high", high)):
        if b is not None and not 0 < b < math.inf:
            raise ValueError(f"bounds: {name} must be a positive number or None, got {b!r}")
    if low is not None and high is not None and not low < high:
        raise ValueError(f"bounds must have low < high, got {bounds!r}")
    a, b = max(lo, low or lo), min(hi, high or hi)  # the log-uniform share's range
    if uniform > 0 and not a < b:
        raise ValueError(f"bounds {bounds!r} leave nothing of sigma_range {sigma_range!r}")
    rng = _rng_device(generator, device)
    dtype = dtype or torch.get_default_dtype()
    if low is None and high is None:
        z = torch.randn(n, generator=generator, device=rng, dtype=dtype)
        sigma = torch.exp(p_mean + p_std * z)
    else:  # the normal's quantile, drawn between the bounds' (float64 for the tails)
        q_lo, q_hi = (
            _normal_cdf((math.log(v) - p_mean) / p_std) if v is not None else default
            for v, default in ((low, 0.0), (high, 1.0))
        )
        if not q_hi - q_lo > 1e-12:
            raise ValueError(f"bounds {bounds!r} hold no mass of ln σ ~ N({p_mean}, {p_std}²)")
        u = torch.rand(n, generator=generator, device=rng, dtype=torch.float64)
        z = torch.special.ndtri((q_lo + (q_hi - q_lo) * u).clamp(1e-300, 1 - 1e-16))
        sigma = torch.exp(p_mean + p_std * z).to(dtype)
    if uniform > 0:
        pick = torch.rand(n, generator=generator, device=rng) < uniform
        u = torch.rand(n, generator=generator, device=rng)
        flat = torch.exp(math.log(a) + (math.log(b) - math.log(a)) * u)
        sigma = torch.where(pick, flat.to(dtype), sigma)
    # float rounding at the bounds' edges: low <= σ < high exactly
    if low is not None:
        sigma = sigma.clamp(min=low)
    if high is not None:
        below = torch.tensor(high, dtype=sigma.dtype).nextafter(
            torch.tensor(0.0, dtype=sigma.dtype)
        )
        sigma = torch.minimum(sigma, below.to(sigma.device))
    return sigma.to(device if device is not None else rng)


def denoising_loss(
    denoiser: Callable[..., torch.Tensor],
    x0: torch.Tensor,
    *,
    D: float | None,
    sigma: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    sigma_data: float = 0.5,
    p_mean: float = -1.2,
    p_std: float = 1.2,
    generator: torch.Generator | None = None,
    reduction: Literal["mean", "none"] = "mean",
    element_weight: torch.Tensor | None = None,
    **denoiser_kwargs,
) -> torch.Tensor:
    """The PFGM++ / EDM denoising loss λ(σ) · mean_i (D_θ(x0 + n, σ)_i - x0_i)².

    Only the noise law depends on D (paper, sec. 4: the loss on the field target
    (x - y)/r is equivalent to this denoiser loss). We average the squared error over the
    non-batch elements rather than summing (EDM sums, then averages over the batch): this
    divides the loss by N, a constant, so the minimiser is unchanged and the scale does not
    depend on resolution.

    Args:
        denoiser: ``denoiser(x, sigma, **denoiser_kwargs) -> x0_hat`` with x (B, ...) and
            sigma a (B,) tensor.
        x0: (B, ...) clean data.
        D: real > 0 or None (diffusion).
        sigma: optional (B,) noise levels; drawn log-normally (p_mean, p_std) if None.
        noise: optional (B, ...) unit-scale perturbation (e.g. ``sample_noise(shape, 1.0, D)``);
            the model sees ``x0 + sigma · noise``. Drawn from the D-kernel if None. Pass the
            same sigma and noise to compare two models or two samples (DPO).
        sigma_data: EDM σ_d.
        p_mean, p_std: log-normal parameters of the training sigma.
        generator: randomness for sigma and noise.
        reduction: ``"mean"`` (scalar) or ``"none"`` ((B,) per-sample losses).
        element_weight: optional (B, ...) non-negative weights per element: each
            sample's squared error is then their weighted mean, sum(w e²) / sum(w),
            instead of the plain mean (which is ``element_weight`` all ones).
        **denoiser_kwargs: passed through (e.g. ``class_labels``).

    Returns:
        Scalar, or (B,) with ``reduction="none"``.
    """
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    shape = _check_shape(x0.shape)
    batch = shape[0]
    if sigma is None:
        sigma = sample_training_sigma(
            batch, p_mean=p_mean, p_std=p_std, generator=generator, device=x0.device, dtype=x0.dtype
        )
    else:
        sigma = _sigma_per_sample(sigma, batch, device=x0.device, dtype=x0.dtype)
    if noise is None:
        noise = sample_noise(shape, 1.0, D, generator, device=x0.device, dtype=x0.dtype)
    elif noise.shape != x0.shape:
        raise ValueError(
            f"noise must have the shape of x0 {tuple(shape)}, got {tuple(noise.shape)}"
        )
    x = x0 + _bcast(sigma, len(shape)) * noise  # n is linear in sigma for fixed (g, W)
    x0_hat = denoiser(x, sigma, **denoiser_kwargs)
    err = (x0_hat - x0).pow(2).flatten(1)
    if element_weight is None:
        per_element = err.mean(dim=1)
    else:
        if element_weight.shape != x0.shape or bool((element_weight < 0).any()):
            raise ValueError(
                f"element_weight must be non-negative with the shape of x0 {tuple(shape)}, "
                f"got {tuple(element_weight.shape)}"
            )
        w = element_weight.to(err).flatten(1)
        per_element = (w * err).sum(dim=1) / w.sum(dim=1).clamp_min(torch.finfo(err.dtype).tiny)
    per_sample = loss_weight(sigma, sigma_data) * per_element
    return per_sample if reduction == "none" else per_sample.mean()


# --------------------------------------------------------------------------- ideal denoiser


def ideal_denoiser(
    x: torch.Tensor,
    sigma: float | torch.Tensor,
    atoms: torch.Tensor,
    weights: torch.Tensor | None,
    D: float | None,
) -> torch.Tensor:
    """Closed-form posterior mean E[y | x] for data on atoms, under the D-kernel at sigma.

    p_r(y_k | x) ∝ w_k · (||x - y_k||² + σ² D)^(-(N+D)/2) (paper, posterior of sec. 3), i.e.
    a softmax over k of log w_k + log_kernel(x - y_k, σ, D); Gaussian for D = None.

    Args:
        x: (B, ...) noisy samples.
        sigma: float or (B,) tensor, > 0.
        atoms: (K, ...) data points (same trailing shape as x).
        weights: (K,) probabilities (need not be normalised), or None for uniform.
        D: real > 0 or None.

    Returns:
        (B, ...) posterior means, dtype of x.
    """
    D = _check_D(D)
    if atoms.shape[1:] != x.shape[1:]:
        raise ValueError(
            f"atoms {tuple(atoms.shape)} must share the trailing shape of x {tuple(x.shape)}"
        )
    batch, n_dims = x.shape[0], math.prod(x.shape[1:])
    s = _sigma_per_sample(sigma, batch, device=x.device, dtype=x.dtype)
    a = atoms.to(x).flatten(1)
    # (B, K) squared distances from differences, not ||x||² - 2x·a + ||a||² (no cancellation)
    sq = torch.cdist(x.flatten(1), a, compute_mode="donot_use_mm_for_euclid_dist").pow(2)
    s2 = s[:, None] ** 2
    if D is None:
        logits = -sq / (2 * s2)
    else:
        logits = -0.5 * (n_dims + D) * torch.log1p(sq / (D * s2))
    if weights is not None:
        w = weights.to(x)
        if w.shape != (a.shape[0],) or bool((w < 0).any()):
            raise ValueError(f"weights must be ({a.shape[0]},) and >= 0, got {tuple(w.shape)}")
        logits = logits + torch.log(w)
    post = torch.softmax(logits, dim=1)
    return (post @ a).reshape(x.shape)
