"""Denoiser backbones (diffusers ``ModelMixin`` + ``ConfigMixin``) and EDM preconditioning."""

from generators.models.precond import Denoiser
from generators.models.unet3d import VoxelUNet3D, VoxelUNetOutput

__all__ = ["Denoiser", "VoxelUNet3D", "VoxelUNetOutput"]
