"""Generate objects from a checkpoint: meshes, a picture and each object's stability.

The "generate" way through the house (DESIGN.md): seed -> scheduler + denoiser ->
voxel occupancy -> :class:`~simkit.geometry.VoxelGrid` -> watertight
:class:`~simkit.geometry.Mesh` -> stability verdict (:mod:`simkit.physics`) -> files
(.glb and .obj per object, a PNG grid, ``generate.json``).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from simkit.io import write_json

__all__ = [
    "BASE_CHECKPOINT",
    "DEFAULT_CHECKPOINT",
    "GenerateConfig",
    "GenerateResult",
    "GeneratedObject",
    "checkpoint_path",
    "generate",
    "load_pipeline",
]

log = logging.getLogger(__name__)

#: The checkpoint ``generate`` uses when none is named (shipped under assets/checkpoints):
#: the base generator fine-tuned on PyBullet's verdicts (DSO; its README has the recipe).
DEFAULT_CHECKPOINT = "shapes-dso"
#: The generator trained on procedural objects alone, which fine-tuning starts from.
BASE_CHECKPOINT = "shapes-base"
_ASSETS = Path(__file__).resolve().parents[1] / "assets" / "checkpoints"

_STANDS_RGB = (0.36, 0.55, 0.80)  # blue: stands
_FALLS_RGB = (0.85, 0.42, 0.25)  # orange: falls over
_INVALID_RGB = (0.6, 0.6, 0.6)  # grey: empty or not one piece


def checkpoint_path(name_or_path: str | os.PathLike[str] | None = None) -> Path:
    """A pipeline folder: a path, or the name of a shipped checkpoint (assets/checkpoints).

    Raises:
        FileNotFoundError: neither a folder with ``model_index.json`` nor a shipped name.
    """
    spec = DEFAULT_CHECKPOINT if name_or_path is None else name_or_path
    candidates = [Path(spec)]
    if os.sep not in str(spec) and not Path(spec).exists():
        candidates.append(_ASSETS / str(spec))
    for path in candidates:
        if (path / "model_index.json").is_file():
            return path
    shipped = sorted(p.name for p in _ASSETS.glob("*") if (p / "model_index.json").is_file())
    raise FileNotFoundError(
        f"no pipeline at {spec!r} (a folder with model_index.json, as save_pretrained "
        f"writes, or one of the shipped checkpoints: {shipped or 'none found'})"
    )


def load_pipeline(
    checkpoint: str | os.PathLike[str] | None = None,
    *,
    device: str | torch.device = "cpu",
    D: float | None | str = "checkpoint",
    solver: str | None = None,
) -> Any:
    """Load a :class:`~generators.pipeline.ShapePipeline` offline, in float32.

    Args:
        checkpoint: folder or shipped name (default :data:`DEFAULT_CHECKPOINT`).
        device: torch device.
        D: ``"checkpoint"`` keeps the trained D; a number or None (diffusion)
            overrides the scheduler's (a model sampled at another D than it was
            trained at is off its training distribution: a warning says so).
        solver: override the scheduler's solver ("euler", "heun", "dpmpp_2m").
    """
    from generators.pipeline import ShapePipeline
    from generators.schedulers import PFGMPPScheduler

    path = checkpoint_path(checkpoint)
    pipe = ShapePipeline.from_pretrained(path, dtype=torch.float32, local_files_only=True)
    overrides: dict[str, Any] = {}
    if D != "checkpoint" and D != pipe.scheduler.config.D:
        log.warning(
            "sampling at D=%s, but %s was trained at D=%s", D, path, pipe.scheduler.config.D
        )
        overrides["D"] = D
    if solver is not None:
        overrides["solver"] = solver
    if overrides:
        pipe.scheduler = PFGMPPScheduler.from_config(pipe.scheduler.config, **overrides)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


@dataclass(frozen=True)
class GenerateConfig:
    """Settings of :func:`generate`.

    Attributes:
        out: output folder (created).
        n: number of objects.
        checkpoint: pipeline folder or shipped name (None: :data:`DEFAULT_CHECKPOINT`).
        family: a family name to condition on; None cycles through the model's
            families (one object each in turn); "none" samples unconditionally.
        steps: solver steps.
        solver: None keeps the checkpoint's, else "euler", "heun" or "dpmpp_2m".
        D: "checkpoint" keeps the trained D; a number or None overrides it.
        guidance_scale: classifier-free guidance weight (1: none). Default 2: on
            an earlier shapes-base it lowered 1-NNA from 76 % to 72 % and raised validity
            from 19 % to 29 % (BENCHMARKS.md), at twice the network calls.
        seed: seed of the prior draw; the same seed gives the same objects.
        stability: simulate each object (PyBullet) and report its verdict.
        retries: redraw an object that falls, comes out empty or is not one solid, from
            fresh noise, up to this many more times (rejection sampling; needs
            ``stability``). The last draw is kept when none passes; each object records
            its draws, and the report keeps the first draws' rate, the model's own.
        workers: simulation processes (None: serial below 32 objects, else all cores).
        formats: mesh file suffixes to write per object.
        device: torch device for sampling.
        batch_size: objects sampled per network batch.
    """

    out: str | os.PathLike[str] = "out/generate"
    n: int = 16
    checkpoint: str | os.PathLike[str] | None = None
    family: str | None = None
    steps: int = 18
    solver: str | None = None
    D: float | None | str = "checkpoint"
    guidance_scale: float = 2.0
    seed: int = 0
    stability: bool = True
    retries: int = 0
    workers: int | None = None
    formats: tuple[str, ...] = (".glb", ".obj")
    device: str = "cpu"
    batch_size: int = 32

    def __post_init__(self) -> None:
        for name in ("n", "steps", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        for name in ("seed", "retries"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative int, got {value!r}")
        if self.retries and not self.stability:
            raise ValueError(
                "retries redraw the objects that fall, so they need the stability verdicts"
            )
        bad = [f for f in self.formats if f.lower() not in (".glb", ".obj", ".ply", ".stl", ".off")]
        if bad or not self.formats:
            raise ValueError(
                f"formats must be some of .glb .obj .ply .stl .off, got {self.formats!r}"
            )


@dataclass(frozen=True)
class GeneratedObject:
    """One generated object: its files, class, validity and (if simulated) verdict."""

    index: int
    family: str | None
    files: list[str]
    valid: bool
    occupied_voxels: int
    stable: bool | None = None
    tilt_deg: float | None = None
    support_margin: float | None = None
    error: str | None = None
    draws: int = 1


@dataclass(frozen=True)
class GenerateResult:
    """Everything :func:`generate` wrote and measured."""

    out: str
    checkpoint: str
    preview: str
    report: str
    seconds: float
    objects: list[GeneratedObject] = field(default_factory=list)
    first_draw_fraction_stable: float | None = None

    @property
    def fraction_stable(self) -> float | None:
        return _share_standing([o.stable for o in self.objects])

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["fraction_stable"] = self.fraction_stable
        d["fraction_valid"] = sum(o.valid for o in self.objects) / max(len(self.objects), 1)
        return d


def _stood(verdict: Any) -> bool | None:
    """A verdict as stands / falls, or None where there is none (empty, or it failed)."""
    return None if verdict is None or verdict.error else bool(verdict.stable)


def _share_standing(stood: list[bool | None]) -> float | None:
    judged = [s for s in stood if s is not None]
    return sum(judged) / len(judged) if judged else None


def _labels_for(config: GenerateConfig, families: tuple[str, ...]) -> list[int | str] | None:
    if config.family == "none" or not families:
        if config.family not in (None, "none"):
            raise ValueError(
                f"this checkpoint is unconditional; it has no family {config.family!r}"
            )
        return None
    if config.family is None:
        return [families[i % len(families)] for i in range(config.n)]
    if config.family not in families:
        raise ValueError(
            f"unknown family {config.family!r}; this checkpoint knows {list(families)}"
        )
    return [config.family] * config.n


def generate(config: GenerateConfig, *, progress: bool = True) -> GenerateResult:
    """Sample ``config.n`` objects, write their meshes and a PNG, and check stability.

    Objects that come out empty get no mesh file and are marked invalid; an object in
    several pieces keeps its largest one (and is marked invalid: one solid is the
    validity criterion). With ``config.retries``, objects that do not pass (one solid
    that stands) are drawn again from the same seeded stream, so the same config gives
    the same files.
    """
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    pipe = load_pipeline(config.checkpoint, device=config.device, D=config.D, solver=config.solver)
    families = pipe.families
    labels = _labels_for(config, families)
    generator = torch.Generator(device="cpu").manual_seed(config.seed)

    def draw(indices: list[int], desc: str) -> tuple[list, list, list]:
        """Sample the objects at ``indices`` (their labels), in batches."""
        meshes, valid, occupied = [], [], []
        bar = tqdm(total=len(indices), desc=desc, disable=(not progress) or None)
        for start in range(0, len(indices), config.batch_size):
            chunk = indices[start : start + config.batch_size]
            res = pipe.unet.config.resolution
            latents = pipe.scheduler.sample_prior(
                (len(chunk), pipe.unet.config.in_channels, res, res, res), generator=generator
            )
            result = pipe(
                batch_size=len(chunk),
                num_inference_steps=config.steps,
                class_labels=None if labels is None else [labels[i] for i in chunk],
                guidance_scale=config.guidance_scale,
                output_type="mesh",
                latents=latents,
            )
            meshes += [m.to("cpu") if m is not None else None for m in result.meshes]
            valid += result.valid.tolist()
            occupied += result.voxels.occupancy.flatten(1).sum(1).tolist()
            bar.update(len(chunk))
        bar.close()
        return meshes, valid, occupied

    meshes, valid, occupied = draw(list(range(config.n)), "generate")
    names = [None if labels is None else labels[i] for i in range(config.n)]
    draws = [1] * config.n
    verdicts: list[Any] = [None] * len(meshes)
    margins: list[float | None] = [None] * len(meshes)
    first_rate = None
    if config.stability:
        verdicts, margins = _stability(meshes, config, progress)
        first_rate = _share_standing([_stood(v) for v in verdicts])
        for attempt in range(config.retries):
            todo = [i for i in range(config.n) if not _passes(valid[i], verdicts[i])]
            if not todo:
                break
            new_meshes, new_valid, new_occupied = draw(todo, f"redraw {attempt + 1}")
            new_verdicts, new_margins = _stability(new_meshes, config, progress)
            for j, i in enumerate(todo):
                meshes[i], valid[i], occupied[i] = new_meshes[j], new_valid[j], new_occupied[j]
                verdicts[i], margins[i] = new_verdicts[j], new_margins[j]
                draws[i] += 1

    files: list[list[str]] = []
    for i, mesh in enumerate(meshes):
        written = []
        if mesh is not None:
            stem = f"{i:03d}_{names[i] or 'object'}"
            for suffix in config.formats:
                written.append(str(mesh.save(out / f"{stem}{suffix.lower()}")))
        files.append(written)

    objects = []
    for i in range(len(meshes)):
        v = verdicts[i]
        objects.append(
            GeneratedObject(
                index=i,
                family=names[i],
                files=files[i],
                valid=bool(valid[i]),
                occupied_voxels=int(occupied[i]),
                stable=_stood(v),
                tilt_deg=None if v is None or v.error else float(v.tilt_deg),
                support_margin=margins[i],
                error="empty sample" if meshes[i] is None else (v.error if v is not None else None),
                draws=draws[i],
            )
        )
    preview = str(out / "preview.png")
    _preview(meshes, objects, preview)
    result = GenerateResult(
        out=str(out),
        checkpoint=str(checkpoint_path(config.checkpoint)),
        preview=preview,
        report=str(out / "generate.json"),
        seconds=time.perf_counter() - t0,
        objects=objects,
        first_draw_fraction_stable=first_rate,
    )
    write_json(result.report, result.to_dict())
    return result


def _passes(valid: bool, verdict: Any) -> bool:
    """One solid that was simulated and stands."""
    return bool(valid) and bool(_stood(verdict))


def _stability(meshes: list, config: GenerateConfig, progress: bool) -> tuple[list, list]:
    from simkit.physics import StabilityConfig, evaluate, support_margin

    present = [i for i, m in enumerate(meshes) if m is not None]
    if not present:
        return [None] * len(meshes), [None] * len(meshes)
    workers = config.workers
    if workers is None:
        workers = 1 if len(present) < 32 else (os.cpu_count() or 1)
    backend = "serial" if workers == 1 else "process"
    results = evaluate(
        [meshes[i] for i in present],
        StabilityConfig(seed=config.seed),
        workers=workers,
        backend=backend,
        progress=progress,
    )
    verdicts: list[Any] = [None] * len(meshes)
    margins: list[float | None] = [None] * len(meshes)
    for i, r in zip(present, results, strict=True):
        verdicts[i] = r
        try:
            margins[i] = float(support_margin(meshes[i]))
        except ValueError:
            margins[i] = None
    return verdicts, margins


def _preview(meshes: list, objects: list[GeneratedObject], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from simkit.viz import plot_meshes

    shown = [(m, o) for m, o in zip(meshes, objects, strict=True) if m is not None]
    if not shown:
        log.warning("every sample was empty; no preview written")
        return
    titles, colors = [], []
    for _, o in shown:
        verdict = "" if o.stable is None else (" stands" if o.stable else " falls")
        titles.append(f"{o.index}: {o.family or 'object'}{verdict}")
        if not o.valid:
            colors.append(_INVALID_RGB)
        else:
            colors.append(_FALLS_RGB if o.stable is False else _STANDS_RGB)
    fig = plot_meshes([m for m, _ in shown], path, titles=titles, colors=colors)
    plt.close(fig)
