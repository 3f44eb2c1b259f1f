"""Train a voxel-shape generator (PFGM++ at any D, or diffusion) and export a pipeline.

One function, :func:`train_generator`, runs as a plain process or under ``torchrun``
(DDP: each rank draws its own share of every batch; rank 0 writes). It trains the
:class:`~generators.models.VoxelUNet3D` through EDM's preconditioning with the PFGM++
denoising loss (:func:`generators.pfgmpp.denoising_loss`), keeps an exponential moving
average (EMA) of the weights, writes an atomic training checkpoint every
``checkpoint_every`` steps (an interrupted run resumes exactly where it stopped), and
at the end saves a :class:`~generators.pipeline.ShapePipeline` with the EMA weights.

Data: the procedural families of :mod:`simkit.shapes` (class-conditional), or a folder
of the user's meshes, voxelised with :meth:`simkit.geometry.VoxelGrid.from_mesh`
(sub-folders become classes; loose files make an unconditional model).

    python -m generators.train --config assets/configs/generator-16.json
    torchrun --nproc_per_node 2 -m generators.train --config ...
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor
from tqdm.auto import tqdm

from generators.models import Denoiser, VoxelUNet3D
from generators.pfgmpp import denoising_loss
from generators.pipeline import ShapePipeline
from generators.schedulers import PFGMPPScheduler
from simkit.io import atomic_directory, atomic_write, write_json

__all__ = [
    "GeneratorTrainConfig",
    "TrainResult",
    "load_config",
    "load_training_data",
    "random_turns",
    "thin_parts",
    "thin_weights",
    "train_generator",
]

log = logging.getLogger(__name__)

_STATE_FILE = "train_state.pt"
_MESH_SUFFIXES = (".obj", ".stl", ".ply", ".glb", ".gltf", ".off")


@dataclass(frozen=True)
class GeneratorTrainConfig:
    """Settings of :func:`train_generator` (a JSON or TOML file holds the same keys).

    Attributes:
        out: run folder: ``train_state.pt`` (resumable checkpoint), ``pipeline/`` (the
            exported :class:`ShapePipeline`), ``train.json`` and ``loss.png``.
        data: None for the procedural families of :mod:`simkit.shapes`, or a folder of
            mesh files (sub-folders become classes).
        n_shapes: number of procedural objects (balanced over families).
        families: procedural families to use (None: all).
        resolution: R, voxels per side.
        data_seed: seed of the procedural data set (kept apart from ``seed`` so that
            runs with different training seeds see the same data).
        D: PFGM++ augmentation dimension (a real > 0), or None for diffusion (EDM).
        sigma_min, sigma_max, rho: the sampling schedule saved with the pipeline.
        sigma_data: data standard deviation (occupancy maps to +-1 with about 8 %
            occupied: std 0.54).
        p_mean, p_std: log-normal training sigma (EDM).
        sigma_uniform: fraction of each batch whose sigma is drawn log-uniformly on
            [sigma_min, sigma_max] instead (0: EDM's log-normal alone). The default
            log-normal puts 1 % of its draws above sigma = 5 and almost none above 20,
            yet the sampler starts at sigma_max = 80: trained without this share, the
            shipped network's loss there was 19 % above the ideal denoiser's.
        thin_weight: extra loss weight on thin parts (a lamp's pole, a chair's legs and
            back: occupied voxels that a horizontal 3 x 3 opening removes) and on the
            empty voxels beside them: their elements weigh 1 + thin_weight (0: plain
            loss). At 16^3 such parts are 1-2 voxels across and a few dozen of 4,096
            voxels, so the plain loss barely notices a missing pole.
        init_from: a pipeline folder (or a shipped checkpoint name) whose network
            weights start the run (model and EMA), e.g. to fine-tune; its network
            config must equal this config's. None: random initial weights.
        block_channels, attention_levels, layers_per_block, patch_size,
            embedding_dim, dropout: the :class:`VoxelUNet3D`.
        batch_size: global batch (split over DDP ranks; must divide by their number).
        steps: optimiser steps.
        lr: AdamW learning rate after a linear warm-up of ``warmup_steps``.
        decay_steps: the last ``decay_steps`` steps anneal the learning rate to 0 on a
            half cosine (0: constant to the end). Annealing is what turns a noisy
            constant-rate iterate into a converged one; extending a finished run by
            raising ``steps`` with a ``decay_steps`` gives the same schedule as a run
            planned that way from the start.
        weight_decay: AdamW weight decay.
        grad_clip: gradient norm clip (0: none).
        ema_decay: EMA decay per step (ramped up as min(decay, (1+s)/(10+s))).
        class_dropout: fraction of labels replaced by the null class (enables
            unconditional sampling and classifier-free guidance).
        augment: random quarter turns about z and mirror images (gravity stays down).
        checkpoint_every: steps between training checkpoints.
        solver, sample_steps: the scheduler's solver and a default step count saved
            in the pipeline's scheduler config.
        save_dtype: "float32" or "float16": weights of the exported pipeline (float16
            halves the file; it loads back as float32).
        seed: training seed (batches, noise, augmentation).
        device: torch device string ("cpu", "cuda", "cuda:1").
    """

    out: str = "runs/generator"
    data: str | None = None
    n_shapes: int = 2700
    families: tuple[str, ...] | None = None
    resolution: int = 16
    data_seed: int = 0
    D: float | None = 128.0
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0
    sigma_data: float = 0.5
    p_mean: float = -1.2
    p_std: float = 1.2
    sigma_uniform: float = 0.0
    thin_weight: float = 0.0
    init_from: str | None = None
    block_channels: tuple[int, ...] = (48, 96, 128)
    attention_levels: tuple[bool, ...] = (False, True, True)
    layers_per_block: int = 1
    patch_size: int = 2
    embedding_dim: int = 128
    dropout: float = 0.0
    batch_size: int = 32
    steps: int = 3000
    lr: float = 5e-4
    warmup_steps: int = 200
    decay_steps: int = 0
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    class_dropout: float = 0.1
    augment: bool = True
    checkpoint_every: int = 250
    solver: str = "heun"
    sample_steps: int = 18
    save_dtype: str = "float32"
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        for name in ("families", "block_channels", "attention_levels"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
        ints = ("n_shapes", "resolution", "batch_size", "steps", "checkpoint_every")
        for name in ints:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        for name in ("warmup_steps", "decay_steps", "seed", "data_seed", "sample_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative int, got {value!r}")
        if self.D is not None and not (isinstance(self.D, (int, float)) and self.D > 0):
            raise ValueError(f"D must be a positive number or None (diffusion), got {self.D!r}")
        if not 0 < self.sigma_min < self.sigma_max:
            raise ValueError(
                f"need 0 < sigma_min < sigma_max, got {self.sigma_min!r}, {self.sigma_max!r}"
            )
        for name in ("lr", "sigma_data", "p_std"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay!r}")
        if not self.thin_weight >= 0:
            raise ValueError(f"thin_weight must be >= 0, got {self.thin_weight!r}")
        if not 0 <= self.sigma_uniform <= 1:
            raise ValueError(f"sigma_uniform must be in [0, 1], got {self.sigma_uniform!r}")
        if not 0 <= self.class_dropout <= 1:
            raise ValueError(f"class_dropout must be in [0, 1], got {self.class_dropout!r}")
        if self.grad_clip < 0 or self.weight_decay < 0:
            raise ValueError("grad_clip and weight_decay must be >= 0")
        if self.decay_steps > self.steps:
            raise ValueError(f"decay_steps ({self.decay_steps}) cannot exceed steps ({self.steps})")
        if self.save_dtype not in ("float32", "float16"):
            raise ValueError(f"save_dtype must be 'float32' or 'float16', got {self.save_dtype!r}")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train_generator` did.

    Attributes:
        out: the run folder.
        pipeline: the exported pipeline folder.
        steps: optimiser steps completed in total (over resumes).
        resumed_from: the step the run resumed at (0: a fresh run).
        final_loss: mean training loss over the last 10 % of steps.
        seconds: wall time of this call.
        history: (step, mean loss since the previous entry) pairs.
    """

    out: str
    pipeline: str
    steps: int
    resumed_from: int
    final_loss: float
    seconds: float
    history: list[tuple[int, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_config(path: str | os.PathLike[str], **overrides: Any) -> GeneratorTrainConfig:
    """Read a :class:`GeneratorTrainConfig` from a JSON or TOML file; ``overrides``
    (non-None values) replace its keys. Unknown keys are an error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    if path.suffix == ".toml":
        import tomllib

        raw = tomllib.loads(path.read_text())
    else:
        raw = json.loads(path.read_text())
    raw.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in fields(GeneratorTrainConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"unknown keys in {path}: {unknown}; known keys: {sorted(known)}")
    return GeneratorTrainConfig(**raw)


# ---------------------------------------------------------------------------- data


def load_training_data(config: GeneratorTrainConfig) -> tuple[Tensor, Tensor, tuple[str, ...]]:
    """Voxelise the training set.

    Returns:
        voxels: (n, R, R, R) float32 occupancy in {0, 1}; labels: (n,) int64 (all 0 for
        an unconditional folder); families: the class names (empty: unconditional).
    """
    from simkit.shapes import dataset

    if config.data is None:
        data = dataset(
            config.n_shapes, config.resolution, seed=config.data_seed, families=config.families
        )
        return data.voxels, data.labels, data.families
    return _voxelise_folder(Path(config.data), config.resolution)


def _voxelise_folder(root: Path, resolution: int) -> tuple[Tensor, Tensor, tuple[str, ...]]:
    from simkit.geometry import Mesh, VoxelGrid
    from simkit.shapes import normalize_to_unit_cube

    if not root.is_dir():
        raise FileNotFoundError(f"training data folder not found: {root}")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    groups = [(c, sorted(_mesh_files(root / c))) for c in classes]
    loose = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in _MESH_SUFFIXES)
    if classes and loose:
        raise ValueError(
            f"{root} mixes mesh files and class sub-folders; put every mesh in a class "
            f"folder, or use no sub-folders for an unconditional model"
        )
    if not classes:
        groups = [("", loose)]
    files = [(i, f) for i, (_, fs) in enumerate(groups) for f in fs]
    if not files:
        raise ValueError(f"no mesh files ({', '.join(_MESH_SUFFIXES)}) under {root}")
    meshes, labels = [], []
    for label, f in tqdm(files, desc="voxelise", disable=None):
        try:
            meshes.append(normalize_to_unit_cube(Mesh.load(f)))
        except Exception as exc:  # a bad file is named, not skipped silently
            raise ValueError(f"cannot use training mesh {f}: {exc}") from exc
        labels.append(label)
    grid = VoxelGrid.from_mesh(meshes, resolution, origin=(0.0, 0.0, 0.0), pitch=1.0 / resolution)
    voxels = grid.occupancy.float()
    empty = [str(files[i][1]) for i in range(len(files)) if not bool(voxels[i].any())]
    if empty:
        raise ValueError(f"these meshes voxelise to nothing at {resolution}^3: {empty[:5]}")
    names = tuple(c for c, _ in groups) if classes else ()
    return voxels, torch.tensor(labels, dtype=torch.long), names


def _mesh_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in _MESH_SUFFIXES]


def random_turns(x: Tensor, generator: torch.Generator) -> Tensor:
    """Random quarter turn about z and mirror in x, per sample: (B, 1, R, R, R).

    The training augmentation: each of the eight turns of an upright object
    (:func:`simkit.geometry.upright_symmetries`) with probability 1/8.
    """
    turns = torch.randint(0, 4, (x.shape[0],), generator=generator).tolist()
    flips = torch.randint(0, 2, (x.shape[0],), generator=generator).tolist()
    out = []
    for xi, k, flip in zip(x, turns, flips, strict=True):
        xi = torch.rot90(xi, k, dims=(1, 2))  # dims (x, y) of (C, x, y, z)
        out.append(xi.flip(1) if flip else xi)
    return torch.stack(out)


# ---------------------------------------------------------------------------- training


def thin_parts(occupied: Tensor) -> Tensor:
    """Occupied voxels of thin parts: those a horizontal 3 x 3 opening removes.

    A part is thin here when no 3 x 3 square in its horizontal cross-section fits inside
    it: a pole or a leg (1-2 voxels across), a wall or a chair's back (1-2 thick). A
    slab, a seat or a solid body survives the opening.

    Args:
        occupied: (B, 1, R, R, R) bool, axes (x, y, z) with z up.

    Returns:
        (B, 1, R, R, R) bool.
    """
    occ = occupied.float()
    kernel = occ.new_ones(1, 1, 3, 3, 1)
    eroded = torch.nn.functional.conv3d(occ, kernel, padding=(1, 1, 0)) >= 9
    opened = torch.nn.functional.conv3d(eroded.float(), kernel, padding=(1, 1, 0)) > 0
    return occupied & ~opened


def thin_weights(occupied: Tensor, weight: float) -> Tensor:
    """Loss weights 1 + ``weight`` on thin parts (:func:`thin_parts`) and on the voxels
    horizontally next to them (where a 1-2 voxel pole may stand instead), 1 elsewhere."""
    thin = thin_parts(occupied).float()
    kernel = thin.new_ones(1, 1, 3, 3, 1)
    near = torch.nn.functional.conv3d(thin, kernel, padding=(1, 1, 0)) > 0
    return 1.0 + weight * near.float()


def _distributed() -> tuple[int, int]:
    """(rank, world size); initialises the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _build_model(config: GeneratorTrainConfig, num_classes: int) -> VoxelUNet3D:
    return VoxelUNet3D(
        resolution=config.resolution,
        patch_size=config.patch_size,
        block_channels=config.block_channels,
        attention_levels=config.attention_levels,
        layers_per_block=config.layers_per_block,
        num_classes=num_classes,
        embedding_dim=config.embedding_dim,
        dropout=config.dropout,
    )


def _load_initial_weights(model: VoxelUNet3D, source: str) -> None:
    """Copy the network weights of a saved pipeline (folder or shipped name) into
    ``model``, after checking that both networks have the same config."""
    from generators.generate import checkpoint_path

    folder = checkpoint_path(source)
    unet = VoxelUNet3D.from_pretrained(folder, subfolder="unet")
    theirs, ours = dict(unet.config), dict(model.config)
    differ = {
        k: (theirs.get(k), ours[k])
        for k in ours
        if not k.startswith("_") and _jsonable(theirs.get(k)) != _jsonable(ours[k])
    }
    if differ:
        raise ValueError(
            f"init_from={source!r}: its network differs from this config's "
            f"(key: (theirs, ours)): {differ}"
        )
    model.load_state_dict({k: v.float() for k, v in unet.state_dict().items()})


def build_scheduler(config: GeneratorTrainConfig) -> PFGMPPScheduler:
    """The sampling scheduler that matches a training config."""
    return PFGMPPScheduler(
        sigma_min=config.sigma_min,
        sigma_max=config.sigma_max,
        sigma_data=config.sigma_data,
        rho=config.rho,
        D=config.D,
        solver=config.solver,
    )


# Keys of the config that must match for a checkpoint to be resumed.
_RESUME_KEYS = (
    "data",
    "n_shapes",
    "families",
    "resolution",
    "data_seed",
    "D",
    "sigma_data",
    "block_channels",
    "attention_levels",
    "layers_per_block",
    "patch_size",
    "embedding_dim",
    "batch_size",
    "seed",
    "init_from",
)


def _lr_at(config: GeneratorTrainConfig, step: int) -> float:
    """Learning rate of 0-based ``step``: linear warm-up, constant, half-cosine decay."""
    lr = config.lr
    if config.warmup_steps:
        lr *= min(1.0, (step + 1) / config.warmup_steps)
    start = config.steps - config.decay_steps
    if config.decay_steps and step >= start:
        lr *= 0.5 * (1.0 + math.cos(math.pi * (step - start) / config.decay_steps))
    return lr


def train_generator(config: GeneratorTrainConfig, *, progress: bool = True) -> TrainResult:
    """Train (or resume) a generator and export its pipeline to ``config.out/pipeline``.

    Resuming: if ``config.out/train_state.pt`` exists and its config agrees on the keys
    that shape the run (data, model, D, batch, seed), training continues from its step
    with the same optimiser, EMA and random state, so an interrupted run ends with the
    same weights as an uninterrupted one. Raising ``steps`` extends a finished run.

    Raises:
        ValueError: a checkpoint from an incompatible config is in ``out``, or bad data.
    """
    t_start = time.perf_counter()
    rank, world = _distributed()
    if config.batch_size % world:
        raise ValueError(f"batch_size {config.batch_size} does not divide over {world} DDP ranks")
    device = torch.device(config.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    out = Path(config.out)
    state_path = out / _STATE_FILE

    voxels, labels, families = load_training_data(config)
    num_classes = len(families)
    data = (voxels * 2 - 1).unsqueeze(1)  # occupancy {0, 1} -> x in {-1, +1}
    null = num_classes

    torch.manual_seed(config.seed)  # initial weights, identical on every rank
    model = _build_model(config, num_classes).to(device)
    if config.init_from is not None:
        _load_initial_weights(model, config.init_from)
    ema = copy.deepcopy(model).requires_grad_(False)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    generator = torch.Generator().manual_seed(config.seed * 1000 + rank)
    step, history = 0, []

    if state_path.exists():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        saved = state["config"]
        mismatch = {
            k: (saved.get(k), config.to_dict()[k])
            for k in _RESUME_KEYS
            if _jsonable(saved.get(k)) != _jsonable(config.to_dict()[k])
        }
        if mismatch:
            raise ValueError(
                f"{state_path} was written by a different run ({mismatch}); "
                f"use another out folder or delete it"
            )
        if state["world_size"] != world:
            raise ValueError(
                f"{state_path} was written with {state['world_size']} ranks, now {world}"
            )
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generators"][rank])
        step, history = int(state["step"]), [tuple(h) for h in state["history"]]
        log.info("resuming %s at step %d", out, step)
    resumed_from = step

    train_model = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        train_model = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    denoiser = Denoiser(train_model, config.sigma_data)
    local_batch = config.batch_size // world

    def save_state() -> None:
        gens = [generator.get_state()]
        if world > 1:
            gathered: list[Any] = [None] * world
            dist.all_gather_object(gathered, generator.get_state())
            gens = gathered
        if rank == 0:
            payload = {
                "config": _jsonable(config.to_dict()),
                "world_size": world,
                "step": step,
                "model": model.state_dict(),
                "ema": ema.state_dict(),
                "optimizer": optimizer.state_dict(),
                "generators": gens,
                "history": [list(h) for h in history],
            }
            with atomic_write(state_path) as fh:
                torch.save(payload, fh)

    bar = tqdm(
        total=config.steps,
        initial=step,
        desc="train",
        disable=(not progress) or rank != 0 or None,
        dynamic_ncols=True,
    )
    running, count = 0.0, 0
    model.train()
    while step < config.steps:
        idx = torch.randint(0, data.shape[0], (local_batch,), generator=generator)
        x0 = data[idx]
        if config.augment:
            x0 = random_turns(x0, generator)
        y = labels[idx].clone()
        if num_classes:
            drop = torch.rand(local_batch, generator=generator) < config.class_dropout
            y[drop] = null
        else:
            y.fill_(null)
        sigma = _draw_sigma(config, local_batch, generator)
        noise = _draw_noise(x0, config.D, generator)
        x0, y, sigma, noise = (t.to(device) for t in (x0, y, sigma, noise))

        for group in optimizer.param_groups:
            group["lr"] = _lr_at(config, step)
        loss = denoising_loss(
            denoiser,
            x0,
            D=config.D,
            sigma=sigma,
            noise=noise,
            sigma_data=config.sigma_data,
            element_weight=thin_weights(x0 > 0, config.thin_weight) if config.thin_weight else None,
            class_labels=y,
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        decay = min(config.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for p_ema, p in zip(ema.parameters(), model.parameters(), strict=True):
                p_ema.lerp_(p, 1 - decay)
        step += 1
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FloatingPointError(f"training loss is {value} at step {step}")
        running, count = running + value, count + 1
        bar.update(1)
        if step % 50 == 0 or step == config.steps:
            history.append((step, running / count))
            bar.set_postfix(loss=f"{running / count:.4f}")
            running, count = 0.0, 0
        if step % config.checkpoint_every == 0 or step == config.steps:
            save_state()
    bar.close()

    pipeline_dir = out / "pipeline"
    if rank == 0:
        export_pipeline(ema, config, families, pipeline_dir)
        tail = [loss for s, loss in history if s > 0.9 * config.steps] or [
            loss for _, loss in history[-1:]
        ]
        result = TrainResult(
            out=str(out),
            pipeline=str(pipeline_dir),
            steps=step,
            resumed_from=resumed_from,
            final_loss=float(sum(tail) / max(len(tail), 1)),
            seconds=time.perf_counter() - t_start,
            history=history,
        )
        write_json(out / "train.json", {"config": _jsonable(config.to_dict()), **result.to_dict()})
        _plot_history(history, out / "loss.png")
    if world > 1:
        dist.barrier()  # the export is on disk before any rank returns
        if rank != 0:  # only rank 0 measured the run
            result = TrainResult(str(out), str(pipeline_dir), step, resumed_from, float("nan"), 0.0)
    return result


def _draw_sigma(config: GeneratorTrainConfig, n: int, generator: torch.Generator) -> Tensor:
    """Training noise levels: log-normal (EDM), a ``sigma_uniform`` share log-uniform on
    [sigma_min, sigma_max] (:func:`generators.pfgmpp.sample_training_sigma`)."""
    from generators.pfgmpp import sample_training_sigma

    return sample_training_sigma(
        n,
        p_mean=config.p_mean,
        p_std=config.p_std,
        uniform=config.sigma_uniform,
        sigma_range=(config.sigma_min, config.sigma_max),
        generator=generator,
    )


def _draw_noise(x0: Tensor, D: float | None, generator: torch.Generator) -> Tensor:
    """Unit-sigma PFGM++ perturbation for each sample (the loss scales it by sigma)."""
    from generators.pfgmpp import sample_noise

    return sample_noise(tuple(x0.shape), 1.0, D, generator, dtype=x0.dtype)


def export_pipeline(
    model: VoxelUNet3D,
    config: GeneratorTrainConfig,
    families: tuple[str, ...],
    folder: str | os.PathLike[str],
) -> Path:
    """Save ``model`` (the EMA weights) with its scheduler as a ShapePipeline, atomically."""
    unet = copy.deepcopy(model).to("cpu")
    if config.save_dtype == "float16":
        unet = unet.to(torch.float16)
    pipe = ShapePipeline(unet=unet, scheduler=build_scheduler(config), families=families)
    with atomic_directory(folder) as tmp:
        pipe.save_pretrained(tmp)
    return Path(folder)


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def _plot_history(history: list[tuple[int, float]], path: Path) -> None:
    if not history:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from simkit.viz import save_figure

    fig, ax = plt.subplots(figsize=(5, 3.2))
    steps, losses = zip(*history, strict=True)
    ax.plot(steps, losses, lw=1.2)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("EDM-weighted denoising loss")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    """``python -m generators.train --config FILE [--out DIR] [--steps N]`` (torchrun too)."""
    import argparse

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--config", required=True)
    ap.add_argument("--out")
    ap.add_argument("--steps", type=int)
    ap.add_argument("--device")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = load_config(args.config, out=args.out, steps=args.steps, device=args.device)
    result = train_generator(config)
    if int(os.environ.get("RANK", "0")) == 0:
        log.info(
            "done: %s", json.dumps({k: v for k, v in result.to_dict().items() if k != "history"})
        )
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
