"""Collect samples and the simulator's verdicts on them: the data of DSO's fine-tuning.

:func:`collect` draws K samples per condition (family label) from a
:class:`~generators.pipeline.ShapePipeline`, each from its own seed (so any one sample
can be redrawn alone), judges them with a reward (:mod:`generators.align.reward`; by
default the simulator's stability verdict, :func:`simkit.physics.evaluate` in
parallel), and writes a dataset folder:

* ``manifest.json``: the settings and one record per sample (index, condition, label,
  seed, valid, the reward's verdict: passed, score and details such as the tilt and the
  support margin, error);
* ``chunk_NNNNN.pt``: the samples' occupancies, (n, R, R, R) bool, chunk by chunk:
  ``occupancy``, the largest connected solid (what ``simkit generate`` returns and the
  reward judged), and ``raw``, every occupied voxel (all pieces of a fragmented sample;
  both with diagonal contacts bridged, as the pipeline does).

Every file is written atomically and the manifest last, after its chunk: an interrupted
collection resumes at the first chunk the manifest does not list, and gives the same
dataset as an uninterrupted one. Samples are stored as occupancy (what the simulator
judged) rather than the continuous ODE output; ``2 * occ - 1`` is the training sample.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from generators.align.reward import Reward, as_reward, judge
from generators.pipeline import samples_to_voxels
from simkit.io import atomic_write, write_json

__all__ = [
    "CollectConfig",
    "Collection",
    "SampleRecord",
    "collect",
    "load_collection",
    "model_fingerprint",
]

log = logging.getLogger(__name__)

_MANIFEST = "manifest.json"


@dataclass(frozen=True)
class CollectConfig:
    """Settings of :func:`collect`.

    Attributes:
        out: dataset folder.
        samples_per_condition: K, samples drawn for each condition.
        conditions: family names to condition on (None: all the pipeline's families).
        seed: base seed; sample i (in condition-major order) uses seed ``seed + i``.
        steps: solver steps per sample.
        guidance_scale: classifier-free guidance weight (default 2, as ``simkit generate``:
            collect what users will sample).
        chunk_size: samples drawn, judged and written together (the resume unit).
        workers: simulation processes (None: all cores).
        backend: "process", "serial" or "ray" (see :func:`simkit.physics.evaluate`).
    """

    out: str | os.PathLike[str]
    samples_per_condition: int = 8
    conditions: tuple[str, ...] | None = None
    seed: int = 0
    steps: int = 18
    guidance_scale: float = 2.0
    chunk_size: int = 64
    workers: int | None = None
    backend: str = "process"

    def __post_init__(self) -> None:
        for name in ("samples_per_condition", "steps", "chunk_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {self.seed!r}")
        if not (isinstance(self.guidance_scale, (int, float)) and self.guidance_scale >= 0):
            raise ValueError(f"guidance_scale must be >= 0, got {self.guidance_scale!r}")
        if isinstance(self.conditions, list):
            object.__setattr__(self, "conditions", tuple(self.conditions))

    def settings(self) -> dict[str, Any]:
        """What must match for a collection to be resumed (everything but out/workers)."""
        d = asdict(self)
        for key in ("out", "workers", "backend"):
            d.pop(key)
        d["conditions"] = list(d["conditions"]) if d["conditions"] else None
        return d


@dataclass(frozen=True)
class SampleRecord:
    """One collected sample and the reward's verdict on it.

    ``passed`` (for the stability reward: it stands) is None when the sample could not be
    judged (an empty sample, a simulation error: see ``error``); ``details`` holds the
    reward's extra figures (stability: ``tilt_deg``, ``support_margin``).
    """

    index: int
    condition: str
    label: int
    seed: int
    valid: bool
    passed: bool | None
    score: float | None
    details: dict[str, float | None]
    error: str | None


@dataclass
class Collection:
    """A loaded dataset: the records and the (n, R, R, R) bool occupancies (largest solid;
    ``raw``: every piece, None for a collection written before it was stored)."""

    records: list[SampleRecord]
    occupancy: Tensor
    settings: dict[str, Any] = field(default_factory=dict)
    raw: Tensor | None = None

    def fraction_passed(self) -> float:
        """Fraction of the judged samples that pass (stand); NaN when none was judged."""
        judged = [r.passed for r in self.records if r.passed is not None]
        return sum(judged) / len(judged) if judged else float("nan")


def check_conditions(conditions: Sequence[str], families: Sequence[str]) -> None:
    """Raise a ValueError naming every condition the pipeline does not know."""
    unknown = [c for c in conditions if c not in families]
    if unknown:
        raise ValueError(f"unknown conditions {unknown}; the pipeline knows {list(families)}")


def _plan(config: CollectConfig, families: tuple[str, ...]) -> list[tuple[str, int, int]]:
    """(condition, label, seed) for every sample, condition-major."""
    conditions = config.conditions or families
    if not families:
        raise ValueError(
            "the pipeline has no families (an unconditional model): nothing to condition on"
        )
    check_conditions(conditions, families)
    k = config.samples_per_condition
    return [
        (c, families.index(c), config.seed + ci * k + j)
        for ci, c in enumerate(conditions)
        for j in range(k)
    ]


def model_fingerprint(pipeline: Any) -> str:
    """A short hash of what decides the samples: the network's weights (as float32, so a
    float16 checkpoint and its float32 load agree) and the scheduler's config. A
    collection records it, so a folder written by one model is never resumed, or read
    back as results, for another."""
    import hashlib
    import json

    h = hashlib.sha256()
    for name, tensor in sorted(pipeline.unet.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    h.update(json.dumps(dict(pipeline.scheduler.config), sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def _read_manifest(out: Path) -> dict[str, Any] | None:
    import json

    path = out / _MANIFEST
    return json.loads(path.read_text()) if path.is_file() else None


def collect(
    pipeline: Any,
    config: CollectConfig,
    reward: Reward | Any = None,
    *,
    progress: bool = True,
) -> Collection:
    """Draw, judge and store samples (resuming a partial collection in ``config.out``).

    Args:
        pipeline: a :class:`~generators.pipeline.ShapePipeline` (class-conditional).
        config: what to draw and where to write it.
        reward: a :class:`~generators.align.reward.Reward` or a callable mesh -> bool |
            float; None: the simulator's stability verdict (seeded by ``config.seed``,
            run on ``config.workers`` / ``config.backend``).
        progress: show a progress bar.

    Raises:
        ValueError: ``out`` holds a collection made with other settings, reward or model.
    """

    reward = as_reward(reward, seed=config.seed, workers=config.workers, backend=config.backend)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    plan = _plan(config, pipeline.families)
    manifest = _read_manifest(out)
    settings = {**config.settings(), "reward": reward.name, "model": model_fingerprint(pipeline)}
    if manifest is not None and manifest["settings"] != settings:
        old = manifest["settings"]
        if "model" not in old:
            what = "an older simkit, which recorded no model fingerprint,"
        elif old["model"] != settings["model"]:
            what = "another model"
        else:
            what = "other settings"
        raise ValueError(f"{out} holds a collection made with {what} ({old}); use another folder")
    records: list[dict[str, Any]] = [] if manifest is None else manifest["records"]
    chunks: list[str] = [] if manifest is None else manifest["chunks"]
    res = pipeline.unet.config.resolution
    channels = pipeline.unet.config.in_channels

    bar = tqdm(
        total=len(plan), initial=len(records), desc="collect", disable=(not progress) or None
    )
    for start in range(len(records), len(plan), config.chunk_size):
        part = plan[start : start + config.chunk_size]
        latents = torch.cat(
            [
                pipeline.scheduler.sample_prior(
                    (1, channels, res, res, res), generator=torch.Generator().manual_seed(seed)
                )
                for _, _, seed in part
            ]
        )
        result = pipeline(
            batch_size=len(part),
            num_inference_steps=config.steps,
            class_labels=[label for _, label, _ in part],
            latents=latents,
            guidance_scale=config.guidance_scale,
            output_type="mesh",
        )
        present = [i for i, m in enumerate(result.meshes) if m is not None]
        judged = judge(
            reward,
            [result.meshes[i] for i in present],
            conditions=[part[i][0] for i in present],
            occupancy=result.voxels.occupancy[present],
        )
        if len(judged) != len(present):
            raise RuntimeError(
                f"reward {reward.name!r} returned {len(judged)} judgements for "
                f"{len(present)} meshes"
            )
        by_index = dict(zip(present, judged, strict=True))
        for i, (condition, label, seed) in enumerate(part):
            v = by_index.get(i)
            records.append(
                asdict(
                    SampleRecord(
                        index=start + i,
                        condition=condition,
                        label=label,
                        seed=seed,
                        valid=bool(result.valid[i]),
                        passed=None if v is None else v.passed,
                        score=None if v is None else v.score,
                        details={} if v is None else dict(v.details),
                        error="empty sample" if v is None else v.error,
                    )
                )
            )
        name = f"chunk_{start // config.chunk_size:05d}.pt"
        with atomic_write(out / name) as fh:
            raw = samples_to_voxels(result.samples.float()).bridge_diagonals().occupancy.cpu()
            torch.save({"occupancy": result.voxels.occupancy.cpu(), "raw": raw}, fh)
        chunks.append(name)
        write_json(out / _MANIFEST, {"settings": settings, "chunks": chunks, "records": records})
        bar.update(len(part))
    bar.close()
    return load_collection(out)


def load_collection(folder: str | os.PathLike[str]) -> Collection:
    """Read a dataset written by :func:`collect` (tensors with ``weights_only=True``)."""
    folder = Path(folder)
    manifest = _read_manifest(folder)
    if manifest is None:
        raise FileNotFoundError(f"no {_MANIFEST} in {folder}: not a collection")
    chunks = [torch.load(folder / name, weights_only=True) for name in manifest["chunks"]]
    occupancy = (
        torch.cat([c["occupancy"] for c in chunks])
        if chunks
        else torch.zeros(0, 1, 1, 1, dtype=torch.bool)
    )
    raw = torch.cat([c["raw"] for c in chunks]) if all("raw" in c for c in chunks) else None
    records = [SampleRecord(**r) for r in manifest["records"]]
    if occupancy.shape[0] != len(records):
        raise ValueError(
            f"{folder}: {len(records)} records but {occupancy.shape[0]} stored samples"
        )
    return Collection(records=records, occupancy=occupancy, settings=manifest["settings"], raw=raw)
