"""DPO, DRO, the bounded KTO-style variant and SFT in the sigma-parameterisation."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from generators.align import (
    anchor_loss,
    dpo_loss,
    dro_loss,
    kto_loss,
    per_sample_losses,
    sft_loss,
)
from generators.models import Denoiser, VoxelUNet3D
from generators.pfgmpp import sample_noise


def _fresh_model() -> VoxelUNet3D:
    """A tiny 8^3 model as constructed (output layers and embeddings at zero)."""
    torch.manual_seed(0)
    return VoxelUNet3D(
        resolution=8,
        block_channels=(8, 16),
        attention_levels=(False, True),
        embedding_dim=16,
        num_classes=2,
        norm_groups=4,
    )


@pytest.fixture
def policy():
    model = _fresh_model()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.05)
    return model


def _data(n=6, seed=0):
    """Alternating standing (a squat block) and falling (an inverted L) shapes, each
    with a few random voxels flipped."""
    from tests.generators._oracle import blocks

    block = blocks(8, (slice(1, 7), slice(1, 7), slice(0, 3)))
    overhang = blocks(
        8, (slice(0, 2), slice(3, 5), slice(0, 6)), (slice(0, 8), slice(3, 5), slice(6, 8))
    )
    g = torch.Generator().manual_seed(seed)
    xs = []
    for i in range(n):
        base = (block if i % 2 == 0 else overhang).clone()
        flip = torch.rand(base.shape, generator=g) < 0.05
        xs.append(torch.where(flip, -base, base))
    return torch.stack(xs), torch.tensor([True, False] * (n // 2))


def _fixed(x, D=32.0, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.exp(torch.linspace(-2, 1, x.shape[0])), sample_noise(tuple(x.shape), 1.0, D, g)


def test_dpo_is_log2_when_policy_equals_reference(policy):
    x, _ = _data()
    out = dpo_loss(
        Denoiser(policy),
        Denoiser(copy.deepcopy(policy)),
        x[:3],
        x[3:],
        D=32.0,
        generator=torch.Generator().manual_seed(0),
    )
    assert out.loss.item() == pytest.approx(math.log(2), abs=1e-6)
    assert out.metrics["margin"] == pytest.approx(0.0, abs=1e-6)


def test_dpo_shares_sigma_and_noise_between_winner_and_loser(policy):
    """With identical winner and loser the bracket is exactly zero for any policy: only
    true if both saw the same sigma and the same noise."""
    x, _ = _data()
    ref = copy.deepcopy(policy)
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(0.01)
    out = dpo_loss(
        Denoiser(policy),
        Denoiser(ref),
        x[:3],
        x[:3],
        D=8.0,
        generator=torch.Generator().manual_seed(0),
    )
    assert out.loss.item() == pytest.approx(math.log(2), abs=1e-6)


def test_dpo_gradient_lowers_winner_loss_relative_to_loser(policy):
    x, _ = _data()
    xw, xl = x[:3], x[3:]
    ref = Denoiser(copy.deepcopy(policy))
    pol = Denoiser(policy)
    sigma, noise = _fixed(xw)

    def gap():
        with torch.no_grad():
            return (
                (
                    per_sample_losses(pol, xw, sigma, noise, D=32.0)
                    - per_sample_losses(pol, xl, sigma, noise, D=32.0)
                )
                .mean()
                .item()
            )

    before = gap()
    opt = torch.optim.SGD(policy.parameters(), lr=1e-3)
    out = dpo_loss(pol, ref, xw, xl, D=32.0, beta=10.0, sigma=sigma, noise=noise)
    out.loss.backward()
    opt.step()
    assert gap() < before
    after = dpo_loss(pol, ref, xw, xl, D=32.0, beta=10.0, sigma=sigma, noise=noise)
    assert after.loss.item() < math.log(2) and after.metrics["implicit_accuracy"] > 0


@pytest.mark.parametrize("sigma_value", [0.2, 1.0, 5.0])
def test_one_dro_step_lowers_winners_loss_and_raises_losers(sigma_value):
    """From a freshly initialised denoiser (output layers at zero, as a model starts),
    one SGD step on DRO moves each class's loss the way the objective says."""
    model = _fresh_model()
    x, stands = _data()
    labels = (~stands).long()  # the block is class 0, the overhang class 1
    pol = Denoiser(model)
    sigma = torch.full((6,), sigma_value)
    noise = sample_noise(tuple(x.shape), 1.0, 32.0, torch.Generator().manual_seed(1))

    def losses():
        with torch.no_grad():
            return per_sample_losses(pol, x, sigma, noise, D=32.0, class_labels=labels)

    before = losses()
    out = dro_loss(pol, x, stands, D=32.0, sigma=sigma, noise=noise, class_labels=labels)
    torch.testing.assert_close(out.loss, before[stands].mean() - before[~stands].mean())
    out.loss.backward()
    torch.optim.SGD(model.parameters(), lr=1e-2).step()
    after = losses()
    assert after[stands].mean() < before[stands].mean()
    assert after[~stands].mean() > before[~stands].mean()


def test_kto_is_bounded_and_saturates(policy):
    """Each term lies in [0, 1]: a policy that denoises losers arbitrarily badly cannot
    push the loss below 0 (DRO's loser term can), and its gradient vanishes there."""
    x, stands = _data()
    ref = Denoiser(copy.deepcopy(policy))
    sigma, noise = _fixed(x)
    same = kto_loss(Denoiser(policy), ref, x, stands, D=32.0, sigma=sigma, noise=noise)
    assert same.loss.item() == pytest.approx(0.5, abs=1e-6)  # 1 - sigmoid(0)

    def bad_on_losers(xn, s, class_labels=None):
        good = ref(xn, s)
        return torch.where(stands.reshape(-1, 1, 1, 1, 1), good, good + 100.0 * scale)

    scale = torch.ones((), requires_grad=True)
    out = kto_loss(bad_on_losers, ref, x, stands, D=32.0, beta=50.0, sigma=sigma, noise=noise)
    assert 0.0 <= out.loss.item() <= 1.0
    out.loss.backward()
    assert abs(scale.grad.item()) < 1e-6
    dro = dro_loss(bad_on_losers, x, stands, D=32.0, sigma=sigma, noise=noise)
    assert dro.loss.item() < -1e3  # the unbounded objective runs away


def test_sft_uses_only_standing_samples(policy):
    x, stands = _data()
    pol = Denoiser(policy)
    sigma, noise = _fixed(x)
    out = sft_loss(pol, x, stands, D=None, sigma=sigma, noise=noise)
    with torch.no_grad():
        want = per_sample_losses(pol, x, sigma, noise, D=None)[stands].mean()
    torch.testing.assert_close(out.loss.detach(), want)
    none = sft_loss(pol, x, torch.zeros(6, dtype=torch.bool), D=None, sigma=sigma, noise=noise)
    assert none.loss.item() == 0.0


def test_thin_weight_weighs_thin_parts_in_every_objective():
    """thin_weight w: each sample's squared error is sum(m e^2) / sum(m), with m = 1 + w on
    thin parts and beside them (generators.train.thin_weights) and 1 elsewhere."""
    from generators.pfgmpp import loss_weight
    from generators.train import thin_weights
    from tests.generators._oracle import blocks

    # A one-voxel pole on a slab: an error only on the pole counts (1 + w) times more
    # than the plain mean gives it, relative to the rest.
    slab, rod = (slice(0, 8), slice(0, 8), slice(0, 2)), (slice(3, 4), slice(3, 4), slice(2, 8))
    pole = blocks(8, slab, rod)
    x = torch.stack([pole, pole.flip(-1)])  # the second one upside down: its pole hangs
    guess = x.clone()
    guess[:, :, 3, 3, 2:] = -1  # the pole is missed...
    guess[:, :, 0, 0, 0] *= -1  # ... and one slab voxel is wrong
    guess[1] = x[1].clone()
    guess[1, :, 3, 3, :6] = -1
    guess[1, :, 0, 0, 7] *= -1

    def denoiser(xn, sigma, **kw):
        return guess

    sigma, noise = torch.tensor([0.5, 2.0]), torch.zeros_like(x)
    err = (guess - x).pow(2).flatten(1)
    m = thin_weights(x > 0, 4.0).flatten(1)
    want = loss_weight(sigma) * (m * err).sum(1) / m.sum(1)
    got = per_sample_losses(denoiser, x, sigma, noise, D=None, thin_weight=4.0)
    torch.testing.assert_close(got, want)
    plain = per_sample_losses(denoiser, x, sigma, noise, D=None)
    torch.testing.assert_close(plain, loss_weight(sigma) * err.mean(1))
    assert bool((got > plain).all())  # the missed pole dominates once it is weighted
    # Each objective passes it through (SFT and DRO are means of these per-sample terms).
    stands = torch.tensor([True, False])
    kw = dict(D=None, sigma=sigma, noise=noise, thin_weight=4.0)
    torch.testing.assert_close(sft_loss(denoiser, x, stands, **kw).loss, want[0])
    torch.testing.assert_close(dro_loss(denoiser, x, stands, **kw).loss, want[0] - want[1])
    # DPO against a reference that is exact here (zero noise: x itself): the bracket is
    # the policy's weighted loss on the winner minus on the loser, at the shared sigma.
    exact = lambda xn, sigma, **kw: xn  # noqa: E731
    dpo = dpo_loss(denoiser, exact, x[:1], x[1:], beta=5.0,
                   **{**kw, "sigma": sigma[:1], "noise": noise[:1]})  # fmt: skip
    shared = loss_weight(sigma[0]) * (m * err).sum(1) / m.sum(1)
    inside = shared[0] - shared[1]
    torch.testing.assert_close(dpo.loss, -torch.nn.functional.logsigmoid(-2.5 * inside))
    with pytest.raises(ValueError, match="thin_weight"):
        per_sample_losses(denoiser, x, sigma, noise, D=None, thin_weight=-1.0)


def test_anchor_is_the_weighted_distance_between_the_two_denoisers(policy):
    from generators.pfgmpp import loss_weight

    x, _ = _data()
    sigma = torch.tensor([0.05, 0.3, 1.0, 2.0, 8.0, 40.0])
    noise = sample_noise(tuple(x.shape), 1.0, 64.0, torch.Generator().manual_seed(2))
    # Two denoisers with known outputs: the anchor is lambda(sigma) mean_i (a - b)^2,
    # evaluated on x0 + sigma n (the first returns its input, the second a scaled copy).
    ident = lambda xn, sigma, **kw: xn  # noqa: E731
    half = lambda xn, sigma, **kw: 0.5 * xn  # noqa: E731
    out = anchor_loss(ident, half, x, D=64.0, sigma=sigma, noise=noise)
    xn = x + sigma.reshape(-1, 1, 1, 1, 1) * noise
    want = (loss_weight(sigma) * (0.5 * xn).pow(2).flatten(1).mean(1)).mean()
    torch.testing.assert_close(out.loss, want)
    # A model anchored to itself: zero, and no gradient.
    pol = Denoiser(policy)
    same = anchor_loss(pol, Denoiser(copy.deepcopy(policy)), x, D=None, sigma=sigma,
                       noise=noise, class_labels=torch.zeros(6, dtype=torch.long))  # fmt: skip
    same.loss.backward()
    assert same.loss.item() == 0.0
    assert all(p.grad is None or not p.grad.any() for p in policy.parameters())
    # A moved model: positive, and a gradient step brings it back towards the reference.
    ref = Denoiser(copy.deepcopy(policy))
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.02 * torch.randn_like(p))
    kw = dict(D=None, sigma=sigma, noise=noise, class_labels=torch.zeros(6, dtype=torch.long))
    before = anchor_loss(pol, ref, x, **kw).loss
    policy.zero_grad()
    before.backward()
    with torch.no_grad():
        for p in policy.parameters():
            if p.grad is not None:
                p.sub_(1e-3 * p.grad)
    assert 0 < anchor_loss(pol, ref, x, **kw).loss < before


def test_bad_inputs(policy):
    x, stands = _data()
    pol = Denoiser(policy)
    with pytest.raises(ValueError, match="same shape"):
        dpo_loss(pol, pol, x[:3], x[:2], D=None)
    with pytest.raises(ValueError, match="labels for 6 samples"):
        dro_loss(pol, x, stands[:4], D=None)
    with pytest.raises(ValueError, match="beta"):
        kto_loss(pol, pol, x, stands, D=None, beta=0.0)
