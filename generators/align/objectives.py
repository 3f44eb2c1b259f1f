"""Simulation-feedback objectives in the sigma-parameterisation of EDM / PFGM++ denoisers.

DSO (Li et al., arXiv 2503.22677; ``papers/dso.md``) wrote its objectives for TRELLIS's
rectified flow. Here they are restated for our denoisers ``D_theta(x, sigma)``.

**The per-sample loss.** Everything below is built from the denoising loss of one clean
sample x0 at one noise level sigma and one unit perturbation n (``x = x0 + sigma n``):

    L_theta(x0; sigma, n) = lambda(sigma) * mean_i (D_theta(x0 + sigma n, sigma)_i - x0_i)^2

with EDM's weight lambda(sigma) = (sigma^2 + sigma_d^2) / (sigma sigma_d)^2
(:func:`generators.pfgmpp.denoising_loss` with ``reduction="none"``). Diffusion-DPO's
epsilon-error is the same quantity up to a sigma-dependent factor: with
eps_hat = (x - D) / sigma, ||eps - eps_hat||^2 = ||D - x0||^2 / sigma^2, and
lambda(sigma) sigma^2 = 1 + sigma^2 / sigma_d^2; that factor is a choice of the time
weighting omega(t), which Diffusion-DPO (Wallace et al. 2023, eq. 14) folds into beta
anyway. For PFGM++ only the law of n changes (Student-t, D degrees of freedom), so the
same formulas hold at any D.

**Objectives** (o(x0) in {0, 1}: 1 if the simulator says the object stands):

- :func:`dpo_loss`: Diffusion-DPO with a frozen reference,
  ``-log sigmoid(-beta/2 [(L_theta(w) - L_theta(l)) - (L_ref(w) - L_ref(l))])``, with the
  *same* sigma and n for winner w and loser l (DSO shares sigma only; sharing n too
  removes noise from the difference);
- :func:`dro_loss`: DSO's "direct reward optimisation", ``mean L_theta(stand) - mean
  L_theta(fall)`` over a class-balanced batch: no reference, no pairs. Its loser term is
  unbounded below (the model can lower the loss without limit by denoising losers badly);
- :func:`kto_loss`: a bounded, reference-anchored variant in the manner of KTO
  (Ethayarajh et al. 2024) and Diffusion-KTO (Li et al. 2024): with the implicit reward
  r = L_ref - L_theta (positive where the policy denoises better than the reference)
  and a detached reference point z0 = max(0, mean r), standing samples pay
  ``1 - sigmoid(beta (r - z0))`` and falling ones ``1 - sigmoid(beta (z0 - r))``; each
  term lies in [0, 1], so no sample can drive the loss (or the weights) away without
  bound, and the gradient vanishes once a sample is far on the right side;
- :func:`sft_loss`: the plain denoising loss on standing samples only (the baseline).

Any of them can be given a KL-style anchor to the reference, :func:`anchor_loss` (beyond
DSO, which relies on LoRA, a small learning rate and few steps to stay close).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from generators.pfgmpp import denoising_loss, loss_weight, sample_noise, sample_training_sigma

__all__ = [
    "ObjectiveOutput",
    "anchor_loss",
    "dpo_loss",
    "dro_loss",
    "kto_loss",
    "per_sample_losses",
    "sft_loss",
]

Denoiser = Callable[..., Tensor]


@dataclass
class ObjectiveOutput:
    """A scalar loss to minimise and what to log about it.

    Attributes:
        loss: scalar tensor (differentiable in the policy's parameters).
        metrics: floats for logging (e.g. DPO's implicit accuracy).
    """

    loss: Tensor
    metrics: dict[str, float] = field(default_factory=dict)


def _noise_levels(
    x0: Tensor,
    D: float | None,
    generator: torch.Generator | None,
    p_mean: float,
    p_std: float,
    sigma: Tensor | None = None,
    noise: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """The given (B,) sigma and (B, ...) unit noise, or fresh draws for those not given."""
    if sigma is None:
        sigma = sample_training_sigma(
            x0.shape[0], p_mean=p_mean, p_std=p_std, generator=generator, dtype=x0.dtype
        ).to(x0.device)
    if noise is None:
        noise = sample_noise(tuple(x0.shape), 1.0, D, generator, dtype=x0.dtype).to(x0.device)
    return sigma, noise


def per_sample_losses(
    denoiser: Denoiser,
    x0: Tensor,
    sigma: Tensor,
    noise: Tensor,
    *,
    D: float | None,
    sigma_data: float = 0.5,
    thin_weight: float = 0.0,
    **denoiser_kwargs: Any,
) -> Tensor:
    """L(x0; sigma, n) for each sample: (B,), EDM-weighted (see the module docstring).

    ``thin_weight`` > 0 weighs the elements of x0's thin parts and their neighbours by
    1 + thin_weight (:func:`generators.train.thin_weights`, the loss the generator may
    have been trained with), so a fine-tune keeps paying for legs and poles."""
    from generators.train import thin_weights

    if not thin_weight >= 0:
        raise ValueError(f"thin_weight must be >= 0, got {thin_weight!r}")
    return denoising_loss(
        denoiser,
        x0,
        D=D,
        sigma=sigma,
        noise=noise,
        sigma_data=sigma_data,
        reduction="none",
        element_weight=thin_weights(x0 > 0, thin_weight) if thin_weight else None,
        **denoiser_kwargs,
    )


def _check_pair(x_w: Tensor, x_l: Tensor) -> None:
    if x_w.shape != x_l.shape:
        raise ValueError(
            f"winners and losers must have the same shape, got {tuple(x_w.shape)} and "
            f"{tuple(x_l.shape)}"
        )


def _check_labels(x0: Tensor, stands: Tensor) -> Tensor:
    stands = torch.as_tensor(stands, device=x0.device).reshape(-1)
    if stands.shape[0] != x0.shape[0]:
        raise ValueError(f"got {stands.shape[0]} labels for {x0.shape[0]} samples")
    return stands.bool()


def dpo_loss(
    policy: Denoiser,
    reference: Denoiser,
    x_w: Tensor,
    x_l: Tensor,
    *,
    D: float | None,
    beta: float = 500.0,
    sigma_data: float = 0.5,
    thin_weight: float = 0.0,
    p_mean: float = -1.2,
    p_std: float = 1.2,
    generator: torch.Generator | None = None,
    sigma: Tensor | None = None,
    noise: Tensor | None = None,
    **denoiser_kwargs: Any,
) -> ObjectiveOutput:
    """Diffusion-DPO on (winner, loser) pairs: x_w[i] stands, x_l[i] falls (same condition).

    Args:
        policy: the denoiser being trained, ``policy(x, sigma, **kw) -> x0_hat``.
        reference: the frozen reference denoiser (evaluated without gradients).
        x_w, x_l: (B, ...) clean winners and losers.
        D: PFGM++ D (None: diffusion).
        beta: inverse temperature (DSO: 500; it multiplies a per-element mean, so it is
            not comparable with image-space DPO's 5000).
        thin_weight: extra weight on thin parts' elements (:func:`per_sample_losses`).
        sigma, noise: optional (B,) and (B, ...) draws, shared by winner and loser;
            drawn from ``generator`` when None.
        **denoiser_kwargs: passed to both denoisers (``class_labels``).

    Returns:
        loss, and metrics ``implicit_accuracy`` (fraction of pairs the policy ranks
        right relative to the reference) and ``margin`` (mean of the bracket).
    """
    _check_pair(x_w, x_l)
    if not beta > 0:
        raise ValueError(f"beta must be positive, got {beta!r}")
    sigma, noise = _noise_levels(x_w, D, generator, p_mean, p_std, sigma, noise)
    kw = dict(D=D, sigma_data=sigma_data, thin_weight=thin_weight, **denoiser_kwargs)
    both = torch.cat([x_w, x_l])
    s2, n2 = torch.cat([sigma, sigma]), torch.cat([noise, noise])
    kw2 = {k: torch.cat([v, v]) if isinstance(v, Tensor) else v for k, v in kw.items()}
    policy_l = per_sample_losses(policy, both, s2, n2, **kw2)
    with torch.no_grad():
        ref_l = per_sample_losses(reference, both, s2, n2, **kw2)
    b = x_w.shape[0]
    inside = (policy_l[:b] - policy_l[b:]) - (ref_l[:b] - ref_l[b:])
    loss = -F.logsigmoid(-0.5 * beta * inside).mean()
    return ObjectiveOutput(
        loss,
        {
            "implicit_accuracy": float((inside < 0).float().mean()),
            "margin": float(-inside.detach().mean()),
        },
    )


def dro_loss(
    policy: Denoiser,
    x0: Tensor,
    stands: Tensor,
    *,
    D: float | None,
    sigma_data: float = 0.5,
    thin_weight: float = 0.0,
    p_mean: float = -1.2,
    p_std: float = 1.2,
    generator: torch.Generator | None = None,
    sigma: Tensor | None = None,
    noise: Tensor | None = None,
    **denoiser_kwargs: Any,
) -> ObjectiveOutput:
    """DSO's DRO: ``mean L(standing) - mean L(falling)`` (each class averaged on its own,
    so the batch is balanced whatever its mix; a class absent from the batch adds 0)."""
    stands = _check_labels(x0, stands)
    sigma, noise = _noise_levels(x0, D, generator, p_mean, p_std, sigma, noise)
    losses = per_sample_losses(
        policy, x0, sigma, noise, D=D, sigma_data=sigma_data, thin_weight=thin_weight,
        **denoiser_kwargs,
    )  # fmt: skip
    zero = losses.sum() * 0
    win = losses[stands].mean() if stands.any() else zero
    lose = losses[~stands].mean() if (~stands).any() else zero
    return ObjectiveOutput(
        win - lose,
        {"loss_stand": float(win.detach()), "loss_fall": float(lose.detach())},
    )


def kto_loss(
    policy: Denoiser,
    reference: Denoiser,
    x0: Tensor,
    stands: Tensor,
    *,
    D: float | None,
    beta: float = 50.0,
    weight_stand: float = 1.0,
    weight_fall: float = 1.0,
    sigma_data: float = 0.5,
    thin_weight: float = 0.0,
    p_mean: float = -1.2,
    p_std: float = 1.2,
    generator: torch.Generator | None = None,
    sigma: Tensor | None = None,
    noise: Tensor | None = None,
    **denoiser_kwargs: Any,
) -> ObjectiveOutput:
    """The bounded, reference-anchored variant (KTO-style; see the module docstring).

    Each sample's term is in [0, weight]: the loss is bounded whatever the policy does.
    """
    stands = _check_labels(x0, stands)
    if not beta > 0:
        raise ValueError(f"beta must be positive, got {beta!r}")
    sigma, noise = _noise_levels(x0, D, generator, p_mean, p_std, sigma, noise)
    kw = dict(D=D, sigma_data=sigma_data, thin_weight=thin_weight, **denoiser_kwargs)
    policy_l = per_sample_losses(policy, x0, sigma, noise, **kw)
    with torch.no_grad():
        ref_l = per_sample_losses(reference, x0, sigma, noise, **kw)
    reward = ref_l - policy_l  # > 0: the policy denoises this sample better than the reference
    z0 = reward.detach().mean().clamp(min=0)
    value = torch.where(
        stands,
        weight_stand * (1 - torch.sigmoid(beta * (reward - z0))),
        weight_fall * (1 - torch.sigmoid(beta * (z0 - reward))),
    )
    return ObjectiveOutput(
        value.mean(),
        {"reward_stand": _mean(reward, stands), "reward_fall": _mean(reward, ~stands)},
    )


def sft_loss(
    policy: Denoiser,
    x0: Tensor,
    stands: Tensor,
    *,
    D: float | None,
    sigma_data: float = 0.5,
    thin_weight: float = 0.0,
    p_mean: float = -1.2,
    p_std: float = 1.2,
    generator: torch.Generator | None = None,
    sigma: Tensor | None = None,
    noise: Tensor | None = None,
    **denoiser_kwargs: Any,
) -> ObjectiveOutput:
    """The denoising loss on standing samples only (falling ones are ignored)."""
    stands = _check_labels(x0, stands)
    sigma, noise = _noise_levels(x0, D, generator, p_mean, p_std, sigma, noise)
    losses = per_sample_losses(
        policy, x0, sigma, noise, D=D, sigma_data=sigma_data, thin_weight=thin_weight,
        **denoiser_kwargs,
    )  # fmt: skip
    loss = losses[stands].mean() if stands.any() else losses.sum() * 0
    return ObjectiveOutput(loss, {"standing": float(stands.float().mean())})


def anchor_loss(
    policy: Denoiser,
    reference: Denoiser,
    x0: Tensor,
    *,
    D: float | None,
    sigma_data: float = 0.5,
    p_mean: float = -1.2,
    p_std: float = 1.2,
    generator: torch.Generator | None = None,
    sigma: Tensor | None = None,
    noise: Tensor | None = None,
    **denoiser_kwargs: Any,
) -> ObjectiveOutput:
    """How far the policy's denoiser has moved from the reference's, where they are used:
    ``mean_b lambda(sigma) mean_i (D_theta(x, sigma)_i - D_ref(x, sigma)_i)^2`` with
    ``x = x0 + sigma n``.

    For two diffusion models the KL divergence between their reverse processes is this
    quantity integrated over the noise levels (up to the time weighting), so adding it to
    an objective is the KL penalty of KL-regularised fine-tuning, computed on the
    training inputs: the policy moves where the objective asks and stays with the
    reference elsewhere (fine detail, which the reward does not judge but a fine-tune
    on the model's own samples would otherwise drift). Zero, with zero gradient, when the
    policy equals the reference.
    """
    sigma, noise = _noise_levels(x0, D, generator, p_mean, p_std, sigma, noise)
    x = x0 + sigma.reshape((-1,) + (1,) * (x0.ndim - 1)) * noise
    with torch.no_grad():
        target = reference(x, sigma, **denoiser_kwargs)
    err = (policy(x, sigma, **denoiser_kwargs) - target).pow(2).flatten(1).mean(1)
    loss = (loss_weight(sigma, sigma_data) * err).mean()
    return ObjectiveOutput(loss, {"anchor": float(loss.detach())})


def _mean(values: Tensor, mask: Tensor) -> float:
    return float(values.detach()[mask].mean()) if mask.any() else float("nan")
