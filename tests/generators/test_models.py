"""The 3D U-Net and the EDM preconditioning wrapper."""

from __future__ import annotations

import math

import pytest
import torch

from generators.models import Denoiser, VoxelUNet3D
from generators.models.unet3d import _fold, _unfold


def test_fold_is_space_to_depth_and_unfold_inverts_it():
    x = torch.arange(2 * 3 * 4**3, dtype=torch.float32).reshape(2, 3, 4, 4, 4)
    folded = _fold(x, 2)
    assert folded.shape == (2, 24, 2, 2, 2)
    # channel (c, i, j, k) of folded voxel (a, b, d) is input voxel (2a+i, 2b+j, 2d+k)
    c, i, j, k = 1, 1, 0, 1
    ch = ((c * 2 + i) * 2 + j) * 2 + k
    for a in range(2):
        for b in range(2):
            for d in range(2):
                assert folded[1, ch, a, b, d] == x[1, c, 2 * a + i, 2 * b + j, 2 * d + k]
    assert torch.equal(_unfold(folded, 2), x)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_forward_keeps_shape_and_dtype(tiny_unet, dtype):
    model = tiny_unet.to(dtype)
    x = torch.randn(3, 1, 8, 8, 8, dtype=dtype)
    out = model(x, torch.tensor([0.1, -0.5, 1.0]), class_labels=torch.tensor([0, 1, 3])).sample
    assert out.shape == x.shape and out.dtype == dtype
    assert torch.isfinite(out).all()


def _randomise(model: torch.nn.Module) -> None:
    """Random weights everywhere (output layers and embeddings start at zero)."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.1)


def test_class_label_changes_output_and_none_means_null(tiny_unet):
    _randomise(tiny_unet)
    x = torch.randn(2, 1, 8, 8, 8)
    t = torch.zeros(2)
    with torch.no_grad():
        a = tiny_unet(x, t, class_labels=torch.tensor([0, 0])).sample
        b = tiny_unet(x, t, class_labels=torch.tensor([1, 1])).sample
        null = tiny_unet(x, t, class_labels=torch.tensor([3, 3])).sample
        none = tiny_unet(x, t).sample
    assert not torch.allclose(a, b)
    assert torch.equal(null, none)


def test_bad_inputs_are_named(tiny_unet):
    x = torch.randn(2, 1, 8, 8, 8)
    with pytest.raises(ValueError, match="class_labels"):
        tiny_unet(x, 0.0, class_labels=torch.tensor([0, 4]))
    with pytest.raises(ValueError, match="8\\^3"):
        tiny_unet(torch.randn(2, 1, 16, 16, 16), 0.0)
    with pytest.raises(ValueError, match="sample must be"):
        tiny_unet(torch.randn(2, 8, 8, 8), 0.0)
    with pytest.raises(ValueError, match="multiple of"):
        VoxelUNet3D(
            resolution=12,
            patch_size=2,
            block_channels=(8, 16, 32),
            attention_levels=(False, False, False),
        )
    with pytest.raises(ValueError, match="attention_levels"):
        VoxelUNet3D(block_channels=(8, 16), attention_levels=(False,))


def test_save_and_load_offline_give_the_same_function(tiny_unet, tmp_path):
    _randomise(tiny_unet)
    tiny_unet.save_pretrained(tmp_path)
    loaded = VoxelUNet3D.from_pretrained(tmp_path, local_files_only=True)

    def public(cfg):
        return {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items() if k[0] != "_"}

    assert public(loaded.config) == public(tiny_unet.config)
    x = torch.randn(2, 1, 8, 8, 8)
    with torch.no_grad():
        assert torch.equal(tiny_unet(x, 0.3).sample, loaded(x, 0.3).sample)


def test_denoiser_applies_edm_preconditioning(tiny_unet):
    """With the output layer at zero, F = 0 and D(x, sigma) = c_skip x exactly; with
    F = x_in (the network returns its input) D = (c_skip + c_out c_in) x."""
    sd = 0.5
    den = Denoiser(tiny_unet, sigma_data=sd)
    x = torch.randn(3, 1, 8, 8, 8, dtype=torch.float64)
    sigma = torch.tensor([0.01, 0.5, 20.0], dtype=torch.float64)
    tiny_unet.double()
    with torch.no_grad():
        got = den(x, sigma)
    c_skip = sd**2 / (sigma**2 + sd**2)
    torch.testing.assert_close(got, c_skip.reshape(-1, 1, 1, 1, 1) * x, rtol=0, atol=1e-12)

    seen = {}

    def identity(x_in, c_noise, **_):
        seen["c_noise"] = c_noise
        return x_in

    got = Denoiser(identity, sigma_data=sd)(x, sigma)
    c_out = sigma * sd / torch.sqrt(sigma**2 + sd**2)
    c_in = 1 / torch.sqrt(sigma**2 + sd**2)
    torch.testing.assert_close(got, (c_skip + c_out * c_in).reshape(-1, 1, 1, 1, 1) * x)
    torch.testing.assert_close(seen["c_noise"], torch.log(sigma) / 4)
    assert math.isclose(float(sigma[0]), 0.01)


def test_gradients_reach_every_parameter(tiny_unet):
    _randomise(tiny_unet)
    x = torch.randn(2, 1, 8, 8, 8)
    tiny_unet(
        x, torch.tensor([0.0, 0.5]), class_labels=torch.tensor([0, 2])
    ).sample.square().sum().backward()
    dead = [
        n for n, p in tiny_unet.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0
    ]
    # the null-class row and unused label rows of the embedding get no gradient
    assert dead == [] or all(n == "class_embedding.weight" for n in dead)
