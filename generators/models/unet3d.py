"""A class-conditional 3D U-Net over voxel occupancy, for EDM / PFGM++ denoising.

diffusers has no volumetric U-Net (its ``UNet3DConditionModel`` is a text-conditioned
video model: 2D convolutions in space plus 1D in time), so this is a small one of our
own, built as a diffusers ``ModelMixin`` + ``ConfigMixin`` so that it saves and loads
offline with ``save_pretrained`` / ``from_pretrained`` like any diffusers model.

The network is the raw function F of EDM's preconditioning (Karras et al. 2022, eq. 7):
the denoiser is ``D(x, sigma) = c_skip * x + c_out * F(c_in * x, c_noise)``, with
``c_noise = ln(sigma) / 4`` passed as ``timestep`` (diffusers' EDM convention), so the
model can be used directly with :class:`generators.schedulers.PFGMPPScheduler` and with
diffusers' ``EDMEulerScheduler`` (``prediction_type="epsilon"``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.utils import BaseOutput
from torch import Tensor, nn

__all__ = ["VoxelUNet3D", "VoxelUNetOutput"]


@dataclass
class VoxelUNetOutput(BaseOutput):
    """Output of :class:`VoxelUNet3D`.

    Attributes:
        sample: (B, out_channels, R, R, R) the network output F.
    """

    sample: Tensor


def _groups(channels: int, groups: int) -> int:
    """The largest group count <= ``groups`` that divides ``channels``."""
    g = min(groups, channels)
    while channels % g:
        g -= 1
    return g


def _fold(x: Tensor, p: int) -> Tensor:
    """(B, C, R, R, R) -> (B, C*p^3, R/p, R/p, R/p): each p^3 patch becomes channels."""
    if p == 1:
        return x
    b, c, r = x.shape[0], x.shape[1], x.shape[2] // p
    x = x.reshape(b, c, r, p, r, p, r, p).permute(0, 1, 3, 5, 7, 2, 4, 6)
    return x.reshape(b, c * p**3, r, r, r)


def _unfold(x: Tensor, p: int) -> Tensor:
    """Inverse of :func:`_fold`."""
    if p == 1:
        return x
    b, r = x.shape[0], x.shape[2]
    c = x.shape[1] // p**3
    x = x.reshape(b, c, p, p, p, r, r, r).permute(0, 1, 5, 2, 6, 3, 7, 4)
    return x.reshape(b, c, r * p, r * p, r * p)


class _NoiseEmbedding(nn.Module):
    """Sinusoidal features of c_noise = ln(sigma)/4, then a two-layer MLP.

    c_noise spans about [-1.6, 1.1] for sigma in [0.002, 80], so the frequencies are
    spread geometrically over [1/4, 64] radians per unit rather than the [1e-4, 1] of
    integer-timestep embeddings, which would be nearly constant over that range.
    """

    def __init__(self, features: int, dim: int) -> None:
        super().__init__()
        half = features // 2
        freqs = torch.exp(torch.linspace(math.log(0.25), math.log(64.0), half))
        self.register_buffer("freqs", freqs, persistent=False)
        self.mlp = nn.Sequential(nn.Linear(2 * half, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, c_noise: Tensor) -> Tensor:
        angles = c_noise[:, None].float() * self.freqs[None]
        return self.mlp(torch.cat([angles.sin(), angles.cos()], dim=1))


class _ResBlock(nn.Module):
    """GroupNorm-SiLU-Conv twice, with the embedding as a scale and shift (EDM's
    adaptive scale) after the second norm, and a 1x1x1 skip when channels change."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, groups: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(c_in, groups), c_in)
        self.conv1 = nn.Conv3d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * c_out)
        self.norm2 = nn.GroupNorm(_groups(c_out, groups), c_out)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv3d(c_out, c_out, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv3d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(emb)[:, :, None, None, None].chunk(2, dim=1)
        h = F.silu(self.norm2(h) * (1 + scale) + shift)
        h = self.conv2(self.dropout(h))
        return self.skip(x) + h


class _Attention(nn.Module):
    """Multi-head self-attention over the voxels of a (coarse) feature map."""

    def __init__(self, channels: int, groups: int, head_dim: int = 32) -> None:
        super().__init__()
        self.heads = max(1, channels // head_dim)
        self.norm = nn.GroupNorm(_groups(channels, groups), channels)
        self.qkv = nn.Conv3d(channels, 3 * channels, 1)
        self.proj = nn.Conv3d(channels, channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: Tensor) -> Tensor:
        b, c, *spatial = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, -1).unbind(1)
        h = F.scaled_dot_product_attention(
            q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2)
        )
        return x + self.proj(h.transpose(-1, -2).reshape(b, c, *spatial))


class VoxelUNet3D(ModelMixin, ConfigMixin):
    """Class-conditional 3D U-Net: (B, C, R, R, R) voxels, c_noise and a label -> F.

    Args:
        resolution: R, voxels per side; divisible by
            ``patch_size * 2 ** (len(block_channels) - 1)``.
        in_channels: input channels (1: occupancy).
        patch_size: P, side of the voxel patches folded into channels before the first
            convolution (space-to-depth, as a ViT's patches or DiT's patch size 2): the
            U-Net runs on an (R/P)^3 grid with ``in_channels * P^3`` input channels, and
            the output is unfolded back to R^3. P = 2 makes 16^3 training about 8x
            cheaper than running full-resolution convolutions, on a CPU that matters.
        out_channels: output channels.
        block_channels: feature channels at each resolution level, finest first.
        layers_per_block: residual blocks per level on the way down (and up).
        attention_levels: for each level, whether it ends with self-attention (use it
            on the coarse levels only: attention is quadratic in voxels).
        num_classes: number of class labels; label ``num_classes`` is the null class
            used for unconditional sampling (0: an unconditional model).
        embedding_dim: width of the noise and class embedding.
        norm_groups: GroupNorm groups (reduced where channels are fewer).
        dropout: dropout rate inside residual blocks.
    """

    @register_to_config
    def __init__(
        self,
        resolution: int = 16,
        in_channels: int = 1,
        out_channels: int = 1,
        patch_size: int = 2,
        block_channels: tuple[int, ...] = (32, 64, 128),
        layers_per_block: int = 1,
        attention_levels: tuple[bool, ...] = (False, False, True),
        num_classes: int = 9,
        embedding_dim: int = 128,
        norm_groups: int = 8,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        block_channels = tuple(int(c) for c in block_channels)
        attention_levels = tuple(bool(a) for a in attention_levels)
        levels = len(block_channels)
        if levels < 1 or any(c < 1 for c in block_channels):
            raise ValueError(f"block_channels must be positive ints, got {block_channels!r}")
        if len(attention_levels) != levels:
            raise ValueError(
                f"attention_levels must have one entry per level ({levels}), "
                f"got {attention_levels!r}"
            )
        if patch_size < 1:
            raise ValueError(f"patch_size must be a positive int, got {patch_size!r}")
        factor = patch_size * 2 ** (levels - 1)
        if resolution < 1 or resolution % factor:
            raise ValueError(
                f"resolution must be a positive multiple of patch_size * 2**(levels-1) = "
                f"{factor}, got {resolution!r}"
            )
        if num_classes < 0 or layers_per_block < 1:
            raise ValueError(
                f"need num_classes >= 0 and layers_per_block >= 1, got {num_classes!r}, "
                f"{layers_per_block!r}"
            )
        emb = embedding_dim
        self.noise_embedding = _NoiseEmbedding(emb, emb)
        # One extra row: the null class (index num_classes) for unconditional sampling.
        self.class_embedding = nn.Embedding(num_classes + 1, emb)
        nn.init.zeros_(self.class_embedding.weight)

        p3 = patch_size**3
        self.conv_in = nn.Conv3d(in_channels * p3, block_channels[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        c_prev = block_channels[0]
        for i, c in enumerate(block_channels):
            blocks = nn.ModuleList()
            for _ in range(layers_per_block):
                blocks.append(_ResBlock(c_prev, c, emb, norm_groups, dropout))
                c_prev = c
            if attention_levels[i]:
                blocks.append(_Attention(c, norm_groups))
            self.down.append(blocks)
            self.downsample.append(
                nn.Conv3d(c, c, 3, stride=2, padding=1) if i < levels - 1 else nn.Identity()
            )
        c_last = block_channels[-1]
        self.mid = nn.ModuleList(
            [
                _ResBlock(c_last, c_last, emb, norm_groups, dropout),
                _Attention(c_last, norm_groups),
                _ResBlock(c_last, c_last, emb, norm_groups, dropout),
            ]
        )
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i in reversed(range(levels)):
            c = block_channels[i]
            blocks = nn.ModuleList()
            for j in range(layers_per_block):
                blocks.append(_ResBlock(2 * c if j == 0 else c, c, emb, norm_groups, dropout))
            if attention_levels[i]:
                blocks.append(_Attention(c, norm_groups))
            self.up.append(blocks)
            self.upsample.append(
                nn.Conv3d(c, block_channels[i - 1], 3, padding=1) if i > 0 else nn.Identity()
            )
        self.norm_out = nn.GroupNorm(_groups(block_channels[0], norm_groups), block_channels[0])
        self.conv_out = nn.Conv3d(block_channels[0], out_channels * p3, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    @property
    def null_class(self) -> int:
        """The label that means "no class" (unconditional)."""
        return int(self.config.num_classes)

    def _run(self, blocks: nn.ModuleList, h: Tensor, emb: Tensor) -> Tensor:
        for block in blocks:
            h = block(h, emb) if isinstance(block, _ResBlock) else block(h)
        return h

    def forward(
        self,
        sample: Tensor,
        timestep: Tensor | float,
        class_labels: Tensor | None = None,
        return_dict: bool = True,
    ) -> VoxelUNetOutput | tuple[Tensor]:
        """Evaluate F.

        Args:
            sample: (B, in_channels, R, R, R) float, the preconditioned input c_in * x.
            timestep: c_noise = ln(sigma) / 4, a float or a (B,) or scalar tensor.
            class_labels: (B,) int64 labels in [0, num_classes]; None or the null class
                ``num_classes`` for unconditional.
            return_dict: return a :class:`VoxelUNetOutput` rather than a tuple.

        Returns:
            F, (B, out_channels, R, R, R), in ``sample``'s dtype.
        """
        r = self.config.resolution
        if sample.ndim != 5 or sample.shape[1] != self.config.in_channels:
            raise ValueError(
                f"sample must be (B, {self.config.in_channels}, R, R, R), got {tuple(sample.shape)}"
            )
        if tuple(sample.shape[2:]) != (r, r, r):
            raise ValueError(f"this model works on {r}^3 grids, got {tuple(sample.shape[2:])}")
        b = sample.shape[0]
        t = torch.as_tensor(timestep, device=sample.device, dtype=torch.float32)
        t = t.reshape(-1).expand(b) if t.numel() == 1 else t.reshape(b)
        if class_labels is None:
            class_labels = torch.full((b,), self.null_class, device=sample.device)
        class_labels = class_labels.to(device=sample.device, dtype=torch.long).reshape(b)
        if bool(((class_labels < 0) | (class_labels > self.null_class)).any()):
            raise ValueError(
                f"class_labels must lie in [0, {self.null_class}] ({self.null_class} = no class), "
                f"got {class_labels.tolist()}"
            )
        emb = F.silu(self.noise_embedding(t) + self.class_embedding(class_labels))
        emb = emb.to(self.conv_in.weight.dtype)

        h = self.conv_in(_fold(sample.to(self.conv_in.weight.dtype), self.config.patch_size))
        skips = []
        for blocks, down in zip(self.down, self.downsample, strict=True):
            h = self._run(blocks, h, emb)
            skips.append(h)
            h = down(h)
        h = self._run(self.mid, h, emb)
        for blocks, up in zip(self.up, self.upsample, strict=True):
            h = self._run(blocks[:1], torch.cat([h, skips.pop()], dim=1), emb)
            h = self._run(blocks[1:], h, emb)
            if not isinstance(up, nn.Identity):
                h = up(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        out = self.conv_out(F.silu(self.norm_out(h)))
        out = _unfold(out, self.config.patch_size).to(sample.dtype)
        return VoxelUNetOutput(sample=out) if return_dict else (out,)
