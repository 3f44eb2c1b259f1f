"""Shared fixtures of the generator tests."""

from __future__ import annotations

import pytest
import torch

from generators.models import VoxelUNet3D


@pytest.fixture
def tiny_unet() -> VoxelUNet3D:
    torch.manual_seed(0)
    return VoxelUNet3D(
        resolution=8,
        patch_size=2,
        block_channels=(8, 16),
        attention_levels=(False, True),
        num_classes=3,
        embedding_dim=16,
        norm_groups=4,
    )
