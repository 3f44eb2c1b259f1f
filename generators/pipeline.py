"""``ShapePipeline``: sample 3D objects (voxel grids and watertight meshes) from a denoiser.

A diffusers ``DiffusionPipeline`` with two components, ``unet`` (a
:class:`~generators.models.VoxelUNet3D`, EDM's raw network F) and ``scheduler`` (a
:class:`~generators.schedulers.PFGMPPScheduler`; D = None is diffusion). It saves to
and loads from a local folder with ``save_pretrained`` / ``from_pretrained``, offline.

Data convention: an occupancy grid ``occ`` in {0, 1} is the sample ``x = 2 * occ - 1``
(voxel index order (x, y, z), z up, the object resting on the grid's floor, as
:func:`simkit.shapes.dataset` makes them); a generated sample is occupied where x > 0.
Grids live in the unit cube: voxel side 1 / R, origin at 0.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from diffusers import DiffusionPipeline, ModelMixin
from diffusers.configuration_utils import FrozenDict
from diffusers.utils import BaseOutput
from torch import Tensor

from generators.models import VoxelUNet3D  # noqa: F401  (registers the class for loading)
from generators.schedulers import PFGMPPScheduler
from simkit.geometry import Mesh, VoxelGrid

__all__ = ["ShapePipeline", "ShapePipelineOutput", "samples_to_voxels"]

log = logging.getLogger(__name__)

_OUTPUT_TYPES = ("voxels", "mesh", "tensor")


@dataclass
class ShapePipelineOutput(BaseOutput):
    """What :class:`ShapePipeline` returns.

    Attributes:
        voxels: the occupancy grids, (B, R, R, R) bool in a :class:`VoxelGrid` (unit
            cube), after ``bridge`` and ``keep_largest`` if set.
        meshes: one watertight :class:`Mesh` per sample (``output_type="mesh"``), or
            None where the sample is empty; None for other output types.
        samples: (B, 1, R, R, R) the final ODE states x (occupied where x > 0).
        class_labels: (B,) int64 labels sampled with (the null class for unconditional).
        valid: (B,) bool: non-empty and one connected solid (6-connectivity) after
            ``bridge`` and before ``keep_largest``.
    """

    voxels: VoxelGrid
    meshes: list[Mesh | None] | None
    samples: Tensor
    class_labels: Tensor
    valid: Tensor


def samples_to_voxels(samples: Tensor) -> VoxelGrid:
    """Final samples (B, 1, R, R, R) -> occupancy grids in the unit cube (x > 0 occupied)."""
    if samples.ndim != 5 or samples.shape[1] != 1:
        raise ValueError(f"samples must be (B, 1, R, R, R), got {tuple(samples.shape)}")
    r = samples.shape[-1]
    return VoxelGrid(samples[:, 0] > 0, origin=(0.0, 0.0, 0.0), pitch=1.0 / r)


class ShapePipeline(DiffusionPipeline):
    """Generate voxel objects (and meshes) with a PFGM++ or diffusion scheduler.

    Args:
        unet: the raw network F(c_in x, c_noise, class_labels).
        scheduler: a :class:`~generators.schedulers.PFGMPPScheduler` (its ``D`` picks
            PFGM++ or diffusion, its ``solver`` the ODE solver).
        families: names of the class labels, in label order (e.g.
            :data:`simkit.shapes.FAMILIES`); empty for an unconditional model.
    """

    model_cpu_offload_seq = "unet"

    # Importing this module imports the component classes, which diffusers requires
    # before from_pretrained will load modules it does not know.
    def __init__(
        self,
        unet: ModelMixin,
        scheduler: PFGMPPScheduler,
        families: list[str] | None = None,
    ) -> None:
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler)
        self.register_to_config(families=list(families or ()))

    def save_pretrained(self, save_directory, **kwargs):  # type: ignore[override]
        """diffusers' ``save_pretrained``, less the folder each component was loaded from.

        diffusers records that folder in a loaded model's config (``_name_or_path``) and
        writes it back on save, so a pipeline fine-tuned from a checkpoint would carry
        the path of the machine that made it, and the same recipe rebuilt elsewhere would
        not give the same files. Loading sets it again from wherever the copy is.
        """
        stripped = []
        for owner in (self, *self.components.values()):
            config = getattr(owner, "_internal_dict", None)
            if config is not None and "_name_or_path" in config:
                stripped.append((owner, config))
                owner._internal_dict = FrozenDict(
                    {k: v for k, v in config.items() if k != "_name_or_path"}
                )
        try:
            return super().save_pretrained(save_directory, **kwargs)
        finally:
            for owner, config in stripped:
                owner._internal_dict = config

    @property
    def families(self) -> tuple[str, ...]:
        return tuple(self.config.get("families") or ())

    def resolve_labels(
        self, class_labels: Sequence[int | str] | Tensor | int | str | None, batch_size: int
    ) -> Tensor:
        """Labels as a (B,) int64 tensor: names or ints, one or one per sample; None (for
        all, or for single entries) is the null class (unconditional)."""
        null = self.unet.config.num_classes
        if class_labels is None:
            return torch.full((batch_size,), null, dtype=torch.long)
        if isinstance(class_labels, (int, str)):
            class_labels = [class_labels] * batch_size
        if isinstance(class_labels, Tensor):
            labels = class_labels.detach().to("cpu", torch.long).reshape(-1).tolist()
        else:
            labels = list(class_labels)
        out = []
        for label in labels:
            if label is None:
                label = null
            if isinstance(label, str):
                if label not in self.families:
                    raise ValueError(
                        f"unknown family {label!r}; this model knows {list(self.families)}"
                    )
                label = self.families.index(label)
            if isinstance(label, bool) or not 0 <= int(label) <= null:
                raise ValueError(f"class label {label!r} is outside [0, {null}] ({null} = none)")
            out.append(int(label))
        if len(out) != batch_size:
            raise ValueError(f"got {len(out)} class labels for batch_size {batch_size}")
        return torch.tensor(out, dtype=torch.long)

    @torch.no_grad()
    def __call__(
        self,
        batch_size: int = 1,
        num_inference_steps: int = 18,
        generator: torch.Generator | None = None,
        class_labels: Sequence[int | str] | Tensor | int | str | None = None,
        guidance_scale: float = 1.0,
        output_type: str = "voxels",
        keep_largest: bool = True,
        bridge: bool = True,
        latents: Tensor | None = None,
        return_dict: bool = True,
    ) -> ShapePipelineOutput | tuple:
        """Sample ``batch_size`` objects.

        Args:
            batch_size: number of objects, >= 1.
            num_inference_steps: solver steps (Heun makes 2 * steps - 1 network calls).
            generator: torch generator for the prior draw; same seed, same objects.
            class_labels: family names or label ints (one for all, or one per object);
                None samples unconditionally (the null class).
            guidance_scale: classifier-free guidance weight w: F = F_null + w (F_cond -
                F_null); 1 is plain conditional sampling (one network call per step),
                > 1 doubles the calls.
            output_type: "voxels", "mesh" (adds watertight meshes by marching cubes)
                or "tensor" (same fields; meshes None).
            keep_largest: keep only each grid's largest connected solid.
            bridge: first join pieces that touch only along an edge or at a corner
                through a face (:meth:`~simkit.geometry.VoxelGrid.bridge_diagonals`: a
                voxel or two a join), so that a thin wall drawn as steps, which the
                procedural data at 16^3 are full of, is one solid and one mesh.
            latents: (B, 1, R, R, R) prior draw to start from instead of sampling one.
            return_dict: return a :class:`ShapePipelineOutput` (else a tuple of it).

        Returns:
            A :class:`ShapePipelineOutput`.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if (
            isinstance(num_inference_steps, bool)
            or not isinstance(num_inference_steps, int)
            or num_inference_steps < 1
        ):
            raise ValueError(
                f"num_inference_steps must be a positive int, got {num_inference_steps!r}"
            )
        if output_type not in _OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {_OUTPUT_TYPES}, got {output_type!r}")
        if not guidance_scale >= 0:
            raise ValueError(f"guidance_scale must be >= 0, got {guidance_scale!r}")
        device = self.device
        dtype = self.unet.dtype
        labels = self.resolve_labels(class_labels, batch_size).to(device)
        r = self.unet.config.resolution
        shape = (batch_size, self.unet.config.in_channels, r, r, r)

        self.scheduler.set_timesteps(num_inference_steps, device=device)
        if latents is None:
            x = self.scheduler.sample_prior(shape, generator=generator, device=device, dtype=dtype)
        else:
            if tuple(latents.shape) != shape:
                raise ValueError(f"latents must be {shape}, got {tuple(latents.shape)}")
            x = latents.to(device=device, dtype=dtype)
        guided = guidance_scale != 1.0
        null = torch.full_like(labels, self.unet.config.num_classes)
        for t in self.progress_bar(self.scheduler.timesteps):
            x_in = self.scheduler.scale_model_input(x, t)
            if guided:
                both = self.unet(
                    torch.cat([x_in, x_in]), t, class_labels=torch.cat([labels, null])
                ).sample
                f_cond, f_null = both.chunk(2)
                f = f_null + guidance_scale * (f_cond - f_null)
            else:
                f = self.unet(x_in, t, class_labels=labels).sample
            x = self.scheduler.step(f, t, x).prev_sample
        if not bool(torch.isfinite(x).all()):
            raise FloatingPointError("sampling produced NaN or infinite values")

        grids = samples_to_voxels(x.float())
        if bridge:
            grids = grids.bridge_diagonals()
        _, counts = grids.connected_components(1)
        valid = counts == 1
        if keep_largest:
            grids = grids.largest_component(1)
        meshes = None
        if output_type == "mesh":
            filled = grids.occupancy.flatten(1).any(1).tolist()
            meshes = [grids[i].to_mesh()[0] if filled[i] else None for i in range(batch_size)]
        out = ShapePipelineOutput(
            voxels=grids, meshes=meshes, samples=x, class_labels=labels.cpu(), valid=valid.cpu()
        )
        return out if return_dict else (out,)
