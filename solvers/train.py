"""Neural-operator training with physics only: PI-SC, PI-HC and PI-HC-MoE (papers/pihcmoe.md).

* ``sc``: soft constraint. A one-channel FNO, the hard models' ansatz (DS u = b; NS
  w = w0 + mollified b), trained on the residual loss.
* ``hc``: the FNO's N basis functions go through :class:`HardConstraint` (one NLLS per sample).
* ``hc-moe``: through :class:`MixtureOfExperts` (one NLLS per sample and expert block).

Loss (the reference's): the L2 norm (not squared) of the PDE residual on the full assembled
grid, averaged over the batch; DS adds the relative L2 IC error and the two boundary norms
(the right one the Robin condition, not ground truth). No interior data is used. AdamW with
gradient clipping (global norm) and NaN → 0 on gradients (as the reference), the learning rate
halved every ``lr_halve_every`` steps down to ``lr_floor``.

Scale-out: under ``torchrun`` the FNO is wrapped in DDP. For ``hc-moe`` with K divisible by
the world size the experts are sharded over the ranks (every rank sees the same batch and
solves its experts; the field is all-gathered); otherwise the batch is split over the ranks.
Checkpoints (``checkpoint.pt``: plain containers, loaded with ``weights_only=True``) are
written atomically by rank 0; rerunning into the same folder resumes (data order and
collocation points are functions of (seed, step), so a resumed run repeats an uninterrupted one).
"""

from __future__ import annotations

import logging
import math
import os
import resource
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from simkit.io import atomic_write, write_json
from solvers.constraints.hard import (
    HardConstraint,
    HardConstraintConfig,
    ansatz_field,
    pde_residual,
    physics_loss,
)
from solvers.constraints.moe import MixtureOfExperts, MoEConfig

__all__ = [
    "METHODS",
    "EvalResult",
    "PDETrainConfig",
    "TrainResult",
    "evaluate",
    "load_dataset",
    "train",
]

logger = logging.getLogger(__name__)

#: Training methods: soft constraint, hard constraint, hard constraint with experts.
METHODS: tuple[str, ...] = ("sc", "hc", "hc-moe")
_CHECKPOINT = "checkpoint.pt"
_DS, _NS = "diffusion-sorption", "navier-stokes"


@dataclass(frozen=True)
class PDETrainConfig:
    """One training run. Defaults are CPU-sized; ``assets/configs/pihc-*-paper.json`` hold the
    paper's settings.

    Attributes:
        pde: ``"diffusion-sorption"`` or ``"navier-stokes"``.
        method: ``"sc"``, ``"hc"`` or ``"hc-moe"``.
        experts: blocks per grid axis (t, x[, y]) for ``hc-moe``; None takes the paper's
            layout for 4 experts (DS (1, 4), NS (1, 2, 2)).
        overlap: partition-of-unity overlap in cells (0 = the paper's hard partition).
        assignment: ``"block"`` or ``"random"`` (the control).
        n_basis: N basis functions (``sc`` uses 1).
        width, n_layers, modes: the FNO (see :class:`BasisFNOConfig`).
        steps: optimiser steps; batch_size: samples per step.
        lr, weight_decay: AdamW; lr_halve_every, lr_floor: the step schedule.
        grad_clip: global-norm clip.
        n_points: m collocation points per solve and expert (None: all grid points).
        max_iterations, lm_tol, ridge, hessian, squared_residual, residual_scale: the
            constraint's LM (see :class:`HardConstraintConfig`).
        n_train: the first ``n_train`` samples of the file (None: all).
        checkpoint_every: steps between checkpoints.
        seed: initialisation, data order and collocation sampling.
    """

    pde: str = _DS
    method: str = "hc"
    experts: tuple[int, ...] | None = None
    overlap: int = 0
    assignment: str = "block"
    n_basis: int = 16
    width: int = 16
    n_layers: int = 3
    modes: tuple[int, ...] | None = None
    steps: int = 200
    batch_size: int = 4
    lr: float = 1e-3
    weight_decay: float = 1e-4
    lr_halve_every: int = 800
    lr_floor: float = 1e-4
    grad_clip: float = 1.0
    n_points: int | None = 1000
    max_iterations: int = 50
    lm_tol: float = 1e-8
    ridge: float = 1e-8
    hessian: str = "exact"
    squared_residual: bool = False
    residual_scale: float = 1.0
    n_train: int | None = None
    checkpoint_every: int = 50
    seed: int = 0

    def __post_init__(self) -> None:
        if self.pde not in (_DS, _NS):
            raise ValueError(f"pde must be {_DS!r} or {_NS!r}, got {self.pde!r}")
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        for name in ("n_basis", "width", "n_layers", "steps", "batch_size", "checkpoint_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        for name in ("lr", "lr_floor", "grad_clip", "lm_tol"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {v!r}")
        for name in ("experts", "modes"):
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.experts is None and self.method == "hc-moe":
            object.__setattr__(self, "experts", (1, 4) if self.pde == _DS else (1, 2, 2))
        if self.experts is not None and len(self.experts) != self.grid_axes:
            raise ValueError(
                f"experts {self.experts} needs {self.grid_axes} entries (t, x{', y' if self.grid_axes == 3 else ''})"
            )
        if self.modes is None:
            object.__setattr__(self, "modes", (8,) * self.grid_axes)
        self.constraint_config(None)  # validates the LM settings
        self.moe_config()

    @property
    def grid_axes(self) -> int:
        return 2 if self.pde == _DS else 3

    @property
    def num_experts(self) -> int:
        return math.prod(self.experts) if (self.method == "hc-moe" and self.experts) else 1

    def constraint_config(self, attrs: dict[str, Any] | None) -> HardConstraintConfig:
        """The constraint's settings, with the physical constants of a dataset's attributes."""
        attrs = attrs or {}
        phys: dict[str, Any] = {}
        if self.pde == _DS:
            for ours, theirs in (
                ("diffusivity", "D"),
                ("porosity", "porosity"),
                ("rho_s", "rho_s"),
                ("k_f", "k_f"),
                ("n_f", "n_f"),
                ("solubility", "solubility"),
                ("length", "length"),
            ):
                if theirs in attrs:
                    phys[ours] = float(attrs[theirs])
        else:
            for ours, theirs in (("viscosity", "nu"), ("length", "length")):
                if theirs in attrs:
                    phys[ours] = float(attrs[theirs])
        return HardConstraintConfig(
            pde=self.pde,
            n_points=self.n_points,
            ridge=self.ridge,
            max_iterations=self.max_iterations,
            gtol=self.lm_tol,
            xtol=self.lm_tol,
            ftol=self.lm_tol * 1e-2,
            hessian=self.hessian,  # type: ignore[arg-type]
            squared_residual=self.squared_residual,
            residual_scale=self.residual_scale,
            seed=self.seed,
            **phys,
        )

    def moe_config(self) -> MoEConfig | None:
        if self.method != "hc-moe":
            return None
        assert self.experts is not None
        return MoEConfig(
            splits=self.experts,
            overlap=self.overlap,
            assignment=self.assignment,  # type: ignore[arg-type]
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PDETrainConfig:
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown training config keys {unknown}")
        return cls(**d)


@dataclass(frozen=True)
class TrainResult:
    """What a training run did.

    Attributes:
        steps: steps completed in total (resumed ones included).
        losses: per-step training loss of this process's run (resumed steps included).
        initial_loss, final_loss: mean loss of the first and last 5% of steps.
        seconds_per_step: mean wall time per step (this invocation).
        peak_memory_mb: CUDA max allocated, or on CPU the process's peak RSS.
        lm_iterations_mean: mean LM iterations per solve (NaN for ``sc``).
        not_converged_fraction: fraction of solves that did not converge (NaN for ``sc``).
        resumed_from: step the run resumed at (0 for a fresh run).
        world_size: processes (torchrun ranks).
        out_dir: the run folder.
    """

    steps: int
    losses: list[float]
    initial_loss: float
    final_loss: float
    seconds_per_step: float
    peak_memory_mb: float
    lm_iterations_mean: float
    not_converged_fraction: float
    resumed_from: int
    world_size: int
    out_dir: str
    config: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("losses")
        d["loss_every_10"] = self.losses[::10]
        return d


# ----------------------------------------------------------------------------- data & model


@dataclass(frozen=True)
class _Data:
    data: Tensor  # (S, T, X[, Y])
    t: Tensor
    x: Tensor
    y: Tensor | None
    attrs: dict[str, Any]

    def coords(self, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, ...]:
        out = [self.t, self.x] + ([self.y] if self.y is not None else [])
        return tuple(c.to(device=device, dtype=dtype) for c in out)


def load_dataset(path: str | os.PathLike[str], pde: str, n: int | None = None) -> _Data:
    """Read a PDEBench-layout file into memory (float64).

    Raises:
        ValueError: the file's PDE or dimension does not match ``pde``, or it is too small.
    """
    from solvers.numerics.data import PDEDataset

    ds = PDEDataset(path, dtype=torch.float64)
    stored = ds.attrs.get("pde")
    if stored is not None and stored != pde:
        raise ValueError(f"{path} holds {stored!r} data, not {pde!r}")
    want = 1 if pde == _DS else 2
    if ds.spatial_dims != want:
        raise ValueError(f"{path} is {ds.spatial_dims}D; {pde} needs {want}D data")
    count = len(ds) if n is None else min(n, len(ds))
    items = [ds[i] for i in range(count)]
    ds.close()
    data = torch.stack([it["data"][..., 0] for it in items])
    first = items[0]
    return _Data(data, first["t"], first["x"], first.get("y"), dict(ds.attrs))


def _build_model(cfg: PDETrainConfig, attrs: dict[str, Any]) -> nn.Module:
    from solvers.operators.fno import BasisFNO, BasisFNOConfig

    length = float(attrs.get("length", 1.0))
    t_final = float(attrs.get("t_final", 500.0 if cfg.pde == _DS else 5.0))
    if cfg.pde == _NS:
        conf = json_config(attrs)
        t_final = float(conf.get("t_final", t_final))
    return BasisFNO(
        BasisFNOConfig(
            spatial_dims=1 if cfg.pde == _DS else 2,
            n_basis=1 if cfg.method == "sc" else cfg.n_basis,
            modes=cfg.modes,  # type: ignore[arg-type]
            width=cfg.width,
            n_layers=cfg.n_layers,
            final_gelu=cfg.method != "sc",
            t_range=(0.0, t_final),
            x_range=(0.0, length),
            y_range=(0.0, length) if cfg.pde == _NS else None,
        )
    )


def json_config(attrs: dict[str, Any]) -> dict[str, Any]:
    import json

    try:
        return json.loads(attrs.get("config", "{}"))
    except (TypeError, ValueError):
        return {}


def _layer(cfg: PDETrainConfig, ccfg: HardConstraintConfig) -> nn.Module | None:
    if cfg.method == "sc":
        return None
    if cfg.method == "hc":
        return HardConstraint(ccfg)
    return MixtureOfExperts(ccfg, cfg.moe_config())


def _forward(
    model: nn.Module,
    layer: nn.Module | None,
    u0: Tensor,
    coords: tuple[Tensor, ...],
    ccfg: HardConstraintConfig,
    generator: torch.Generator,
) -> tuple[Tensor, Any]:
    """The assembled field (float64) and the constraint result (None for sc)."""
    param = next(model.parameters())
    basis = model(u0.to(param.dtype), *[c.to(param.dtype) for c in coords])
    c64 = [c.to(torch.float64) for c in coords]
    if layer is None:
        return ansatz_field(basis.to(torch.float64), u0, c64[0], ccfg), None
    res = layer(basis.to(torch.float64), u0, *c64, generator=generator)
    return res.field, res


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _step_seed(seed: int, step: int, salt: int) -> int:
    return (seed * 1_000_003 + step * 7919 + salt) % (2**62)


# ----------------------------------------------------------------------------- train


def _dist_info() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _maybe_init_distributed(device: torch.device) -> bool:
    """Initialise the process group when launched by torchrun (WORLD_SIZE > 1)."""
    import torch.distributed as dist

    if dist.is_initialized() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return True


def train(
    config: PDETrainConfig,
    data_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> TrainResult:
    """Train an FNO by physics only (PI-SC / PI-HC / PI-HC-MoE) and checkpoint it.

    Args:
        config: the run.
        data_path: PDEBench-layout HDF5 training file (only u0, the grid and the PDE
            constants are used; no interior data).
        out_dir: run folder; an existing ``checkpoint.pt`` with the same config is resumed.
        device: torch device (CUDA GPUs are used one per rank under torchrun).
        progress: show a tqdm bar (rank 0).

    Returns:
        A :class:`TrainResult` (also written to ``out_dir/train.json``).

    Raises:
        ValueError: bad data, a checkpoint of a different config, or bad settings.
    """
    from tqdm.auto import tqdm

    device = torch.device(device)
    started_dist = _maybe_init_distributed(device)
    rank, world = _dist_info()
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
    out = Path(out_dir)
    data = load_dataset(data_path, config.pde, config.n_train)
    ccfg = config.constraint_config(data.attrs)
    S = data.data.shape[0]
    if S < config.batch_size:
        raise ValueError(f"batch_size={config.batch_size} exceeds the {S} training samples")
    torch.manual_seed(config.seed)
    model = _build_model(config, data.attrs).to(device)
    layer = _layer(config, ccfg)
    shard_experts = world > 1 and config.method == "hc-moe" and config.num_experts % world == 0
    if world > 1 and not shard_experts and config.batch_size % world:
        raise ValueError(f"batch_size={config.batch_size} must be divisible by {world} ranks")
    if layer is not None and isinstance(layer, MixtureOfExperts) and not shard_experts:
        layer.config = MoEConfig(**{**layer.config.to_dict(), "shard": False})
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    losses: list[float] = []
    lm_iters: list[float] = []
    not_conv: list[float] = []
    start = 0
    ckpt = out / _CHECKPOINT
    if ckpt.exists():
        state = torch.load(ckpt, map_location=device, weights_only=True)
        ignore = ("steps", "checkpoint_every")  # a run may be extended or checkpointed anew
        mine = {k: v for k, v in config.to_dict().items() if k not in ignore}
        theirs = {k: v for k, v in state["config"].items() if k not in ignore}
        if mine != theirs:
            diff = sorted(k for k in mine if mine[k] != theirs.get(k))
            raise ValueError(
                f"{ckpt} belongs to a different config (differs in {diff}); use another --out"
            )
        if int(state["step"]) > config.steps:
            raise ValueError(f"{ckpt} is at step {state['step']} > steps={config.steps}")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start = int(state["step"])
        losses, lm_iters, not_conv = state["losses"], state["lm_iterations"], state["not_converged"]
    ddp_model: nn.Module = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        ddp_model = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    coords = data.coords(torch.float64, device)
    u0_all = data.data[:, 0].to(device)

    def save(step: int) -> None:
        if rank != 0:
            return
        state = {
            "config": config.to_dict(),
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "step": step,
            "losses": losses,
            "lm_iterations": lm_iters,
            "not_converged": not_conv,
            "data_attrs": {k: v for k, v in data.attrs.items() if isinstance(v, (int, float, str))},
        }
        with atomic_write(ckpt) as fh:
            torch.save(state, fh)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    bar = tqdm(
        total=config.steps, initial=start, disable=not progress or rank != 0, desc=config.method
    )
    times: list[float] = []
    for step in range(start, config.steps):
        t0 = time.perf_counter()
        lr = max(config.lr * 0.5 ** (step // config.lr_halve_every), config.lr_floor)
        for group in opt.param_groups:
            group["lr"] = lr
        g_data = torch.Generator().manual_seed(_step_seed(config.seed, step, 1))
        idx = torch.randperm(S, generator=g_data)[: config.batch_size]
        if world > 1 and not shard_experts:
            idx = idx.chunk(world)[rank]
        g_points = torch.Generator().manual_seed(_step_seed(config.seed, step, 2))
        u0 = u0_all[idx.to(device)]
        field_, res = _forward(ddp_model, layer, u0, coords, ccfg, g_points)
        loss, parts = physics_loss(field_, u0, coords[0], coords[1], ccfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        for p in model.parameters():
            if p.grad is not None:
                torch.nan_to_num_(p.grad, nan=0.0, posinf=0.0, neginf=0.0)
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        opt.step()
        value = loss.detach()
        if world > 1:
            import torch.distributed as dist

            dist.all_reduce(value)
            value = value / world
        losses.append(float(value))
        if res is not None:
            lm_iters.append(float(res.iterations.double().mean()))
            not_conv.append(res.not_converged_fraction)
        times.append(time.perf_counter() - t0)
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.4g}", refresh=False)
        if (step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps:
            save(step + 1)
    bar.close()
    if rank == 0:
        model.save_pretrained(out / "model")
    k = max(1, len(losses) // 20)
    result = TrainResult(
        steps=config.steps,
        losses=losses,
        initial_loss=float(sum(losses[:k]) / k) if losses else math.nan,
        final_loss=float(sum(losses[-k:]) / k) if losses else math.nan,
        seconds_per_step=float(sum(times) / len(times)) if times else math.nan,
        peak_memory_mb=_peak_memory_mb(device),
        lm_iterations_mean=float(sum(lm_iters) / len(lm_iters)) if lm_iters else math.nan,
        not_converged_fraction=float(sum(not_conv) / len(not_conv)) if not_conv else math.nan,
        resumed_from=start,
        world_size=world,
        out_dir=str(out),
        config=config.to_dict(),
    )
    if rank == 0:
        write_json(out / "train.json", result.to_dict())
    if started_dist:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    return result


# ----------------------------------------------------------------------------- evaluate


@dataclass(frozen=True)
class EvalResult:
    """Held-out accuracy and cost of a trained model.

    Attributes:
        rel_l2: per-sample relative L2 errors ‖pred − ref‖ / ‖ref‖ over the full grid.
        rel_l2_mean, rel_l2_std: their mean and (population) standard deviation.
        residual_mean: mean per-sample ‖PDE residual‖₂ of the prediction.
        lm_iterations_mean: mean LM iterations per solve (NaN for sc).
        not_converged_fraction: fraction of solves not converged (NaN for sc).
        seconds_per_batch: mean inference time per batch.
        peak_memory_mb: CUDA max allocated or CPU peak RSS.
        png: the figure of prediction, reference and error (sample 0), or None.
    """

    rel_l2: list[float]
    rel_l2_mean: float
    rel_l2_std: float
    residual_mean: float
    lm_iterations_mean: float
    not_converged_fraction: float
    seconds_per_batch: float
    peak_memory_mb: float
    method: str
    pde: str
    png: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _plot(pred: Tensor, ref: Tensor, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = ("x index", "t index")
    if pred.ndim == 3:  # NS (T, X, Y): the last time
        pred, ref = pred[-1], ref[-1]
        labels = ("y index", "x index (last time)")
    err = (pred - ref).abs()
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.5))
    for ax, img, name in zip(
        axes, (pred, ref, err), ("prediction", "reference", "|error|"), strict=True
    ):
        im = ax.imshow(img.cpu().numpy(), aspect="auto", origin="lower")
        ax.set_title(name)
        ax.set_xlabel(labels[0])
        ax.set_ylabel(labels[1])
        fig.colorbar(im, ax=ax)
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_write(path) as fh:
        fig.savefig(fh, format="png", dpi=80)
    plt.close(fig)


def evaluate(
    checkpoint: str | os.PathLike[str],
    data_path: str | os.PathLike[str],
    *,
    device: str | torch.device = "cpu",
    batch_size: int | None = None,
    png: str | os.PathLike[str] | None = None,
    seed: int = 0,
    progress: bool = False,
) -> EvalResult:
    """Relative L2 error of a trained run on held-out data, with LM statistics and cost.

    Args:
        checkpoint: a run folder of :func:`train` (or its ``checkpoint.pt``).
        data_path: held-out PDEBench-layout file on the training grid.
        device: torch device.
        batch_size: samples per forward (default: the run's).
        png: figure path (default: ``<run>/eval.png``).
        seed: collocation sampling of the constraint solves.
        progress: tqdm bar.

    Returns:
        An :class:`EvalResult`.
    """
    from tqdm.auto import tqdm

    device = torch.device(device)
    path = Path(checkpoint)
    ckpt = path / _CHECKPOINT if path.is_dir() else path
    if not ckpt.is_file():
        raise FileNotFoundError(f"no {_CHECKPOINT} in {checkpoint}")
    state = torch.load(ckpt, map_location=device, weights_only=True)
    config = PDETrainConfig.from_dict(state["config"])
    data = load_dataset(data_path, config.pde)
    attrs = state.get("data_attrs", data.attrs)
    ccfg = config.constraint_config(attrs)
    model = _build_model(config, attrs).to(device)
    model.load_state_dict(state["model"])
    model.eval()
    layer = _layer(config, ccfg)
    if isinstance(layer, MixtureOfExperts):
        layer.config = MoEConfig(**{**layer.config.to_dict(), "shard": False})
    coords = data.coords(torch.float64, device)
    bs = batch_size or config.batch_size
    rel: list[float] = []
    resid: list[float] = []
    iters: list[Tensor] = []
    conv: list[Tensor] = []
    times: list[float] = []
    first: tuple[Tensor, Tensor] | None = None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    g = torch.Generator().manual_seed(seed)
    S = data.data.shape[0]
    for lo in tqdm(range(0, S, bs), disable=not progress, desc="eval"):
        ref = data.data[lo : lo + bs].to(device)
        u0 = ref[:, 0]
        t0 = time.perf_counter()
        with torch.no_grad():
            pred, res = _forward(model, layer, u0, coords, ccfg, g)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
        err = (pred - ref).flatten(1).norm(dim=1) / ref.flatten(1).norm(dim=1).clamp_min(1e-30)
        rel += err.tolist()
        resid += pde_residual(pred, coords[0], coords[1], ccfg).flatten(1).norm(dim=1).tolist()
        if res is not None:
            iters.append(res.iterations.flatten().double())
            conv.append(res.converged.flatten())
        if first is None:
            first = (pred[0], ref[0])
    rel_t = torch.tensor(rel, dtype=torch.float64)
    png_path = Path(png) if png is not None else (ckpt.parent / "eval.png")
    if first is not None:
        _plot(first[0], first[1], png_path, f"{config.pde} {config.method}: rel L2 {rel[0]:.3%}")
    return EvalResult(
        rel_l2=rel,
        rel_l2_mean=float(rel_t.mean()),
        rel_l2_std=float(rel_t.std(unbiased=False)),
        residual_mean=float(sum(resid) / len(resid)),
        lm_iterations_mean=float(torch.cat(iters).mean()) if iters else math.nan,
        not_converged_fraction=float((~torch.cat(conv)).double().mean()) if conv else math.nan,
        seconds_per_batch=float(sum(times) / len(times)),
        peak_memory_mb=_peak_memory_mb(device),
        method=config.method,
        pde=config.pde,
        png=str(png_path),
    )
