"""Evaluate a generator on held-out seeds: how many objects stand, against a baseline,
at what cost to fidelity, and whether the reward was hacked.

:func:`evaluate_pipeline` draws ``n`` samples (equal per condition, seeds from
``config.seed``: keep them apart from the seeds a fine-tuning collected on), judges them
with the reward (the simulator's stability verdict by default) and reports, per family
and overall:

* **pass rate** (fraction standing) with a 95 % Wilson interval, mean tilt, validity;
* with a ``baseline`` pipeline sampled on the *same* seeds: the paired comparison, an
  exact McNemar test on the discordant seeds (stands under one model, falls under the
  other), which is far more sensitive than comparing two independent rates;
* **fidelity** to held-out procedural shapes of the same families (MMD, COV and 1-NNA on
  plain Chamfer distance, :mod:`simkit.geometry.metrics`; the references bridged at
  diagonal contacts as samples are), when the families are :mod:`simkit.shapes`
  families. Plain, not up to the eight upright turns the generators train with (as
  ``scripts/bench/generator.py`` measures), which would cost eight times as much: the
  figures are for comparing with the baseline on the same seeds, not absolute. Twice:
  against all references, and against references that pass the reward themselves
  (``*_passing``; as many per family, drawn from a larger held-out set), the
  distribution a perfectly aligned generator would match. The procedural families
  fall about half the time by design, so a generator whose every object stood would
  score worse against all references even if it were perfect (at 288 objects a
  standing-only procedural set scores 1-NNA 56.6 % against all, 51.4 % for an
  unfiltered one);
* **recognition**: the fraction of objects recognisable as the family asked for (their
  nearest held-out procedural reference, among all the families, is of that family;
  Chamfer distance between voxel surfaces up to the eight upright turns,
  :func:`simkit.geometry.metrics.pairwise_voxel_chamfer`), per family and overall, paired
  with the baseline's; a second procedural set scores about 97 % (the ceiling). A reward
  can be had by drifting out of the family (a chair without its back is a stool that
  stands), which no other figure here names. With fidelity, also 1-NNA on that distance
  (``one_nna_turns``), which unlike the plain figures does not count an object's
  orientation as a difference;
* **reward-hacking checks**: the fraction of the solid in the bottom eighth of the grid
  (mass piled into a flat base plate makes anything stand), the mean occupied volume
  (drift), and the mean pairwise Chamfer distance within a family (diversity), each
  beside the baseline's and the references'.

Samples and verdicts are stored (and resumed) as a collection
(:func:`generators.align.collect`) under ``config.out``.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from generators.align.collect import CollectConfig, Collection, collect
from generators.align.data import passing, procedural_objects
from generators.align.reward import Reward, as_reward
from simkit.io import write_json

__all__ = [
    "EvaluateConfig",
    "EvaluationReport",
    "evaluate_pipeline",
    "mcnemar_exact",
    "wilson_interval",
]

_BASE_FRACTION = 1 / 8  # the "base plate": the bottom eighth of the grid
# Held-out references drawn per sample when looking for passing ones (the procedural
# families pass 28-100 % of the time: 4x gives as many as the samples for nearly all).
_PASSING_POOL = 4


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (95 % for the default z).

    Returns (nan, nan) for n = 0.
    """
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got {successes} of {n}")
    if n == 0:
        return math.nan, math.nan
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def mcnemar_exact(only_first: int, only_second: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts (binomial, p = 1/2)."""
    from scipy.stats import binomtest

    if only_first < 0 or only_second < 0:
        raise ValueError(f"counts must be >= 0, got {only_first}, {only_second}")
    n = only_first + only_second
    if n == 0:
        return 1.0
    return float(binomtest(only_first, n, 0.5).pvalue)


@dataclass(frozen=True)
class EvaluateConfig:
    """Settings of :func:`evaluate_pipeline`.

    Attributes:
        out: folder for the samples and verdicts (resumable), and ``report.json``, the
            report as :meth:`EvaluationReport.to_dict` gives it, written at the end.
        n: total samples, split equally over the conditions (rounded up per condition).
        conditions: family names (None: all the pipeline's families).
        seed: first sampling seed (default far from the fine-tuning's seeds).
        steps: solver steps per sample.
        guidance_scale: classifier-free guidance weight (default 2, as ``simkit generate``).
        fidelity: compute MMD / COV / 1-NNA and diversity (needs simkit.shapes families).
        points: surface points per object for the Chamfer distances.
        reference_seed: seed of the held-out procedural reference set.
        verdict_cache: a folder where the held-out references' verdicts are kept (keyed
            by the objects and the reward's settings; ``generators.align.data.passing``),
            so that evaluations sharing it judge the references once. None: judge every
            time.
        workers, backend: where the default stability reward simulates.
    """

    out: str | os.PathLike[str]
    n: int = 512
    conditions: tuple[str, ...] | None = None
    seed: int = 50_000_000
    steps: int = 18
    guidance_scale: float = 2.0
    fidelity: bool = True
    points: int = 256
    reference_seed: int = 777
    verdict_cache: str | os.PathLike[str] | None = None
    workers: int | None = None
    backend: str = "process"

    def __post_init__(self) -> None:
        for name in ("n", "steps", "points"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        for name in ("seed", "reference_seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative int, got {value!r}")
        if isinstance(self.conditions, list):
            object.__setattr__(self, "conditions", tuple(self.conditions))


@dataclass
class EvaluationReport:
    """What :func:`evaluate_pipeline` measured (all plain numbers; see :meth:`to_dict`).

    Attributes:
        overall: pass rate, its interval, mean tilt, validity, volume, base fraction,
            and (with fidelity) MMD / COV / 1-NNA and diversity.
        per_family: the same per condition.
        baseline: the baseline's overall figures on the same seeds (or None).
        paired: the paired comparison with the baseline: counts of seeds passing under
            only one model, and the exact McNemar p-value (or None).
        reference: the held-out procedural shapes' volume, base fraction and diversity.
    """

    overall: dict[str, Any]
    per_family: dict[str, dict[str, Any]]
    baseline: dict[str, Any] | None = None
    paired: dict[str, Any] | None = None
    reference: dict[str, Any] | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        def clean(v: Any) -> Any:
            if isinstance(v, float) and not math.isfinite(v):
                return None
            if isinstance(v, dict):
                return {k: clean(x) for k, x in v.items()}
            if isinstance(v, (list, tuple)):
                return [clean(x) for x in v]
            return v

        return clean(asdict(self))


def _rates(col: Collection, sel: list[int]) -> dict[str, Any]:
    recs = [col.records[i] for i in sel]
    judged = [r for r in recs if r.passed is not None]
    k = sum(bool(r.passed) for r in judged)
    lo, hi = wilson_interval(k, len(judged))
    tilts = [r.details.get("tilt_deg") for r in judged if r.details.get("tilt_deg") is not None]
    shape = _shape_stats(col.occupancy[sel]) if recs else {}
    return {
        "n": len(recs),
        "judged": len(judged),
        "pass_rate": k / len(judged) if judged else math.nan,
        "pass_rate_95ci": [lo, hi],
        "mean_tilt_deg": sum(tilts) / len(tilts) if tilts else math.nan,
        "valid": sum(r.valid for r in recs) / len(recs) if recs else math.nan,
        "volume": shape.get("volume", math.nan),
        "base_fraction": shape.get("base_fraction", math.nan),
    }


def _shape_stats(occupancy: Tensor) -> dict[str, float]:
    """Mean occupied fraction of the grid, and mean fraction of the solid in its bottom
    eighth (the base plate), of (n, R, R, R) occupancies."""
    occ = occupancy.float()
    res = occ.shape[-1]
    base_layers = max(1, round(res * _BASE_FRACTION))
    volume = occ.flatten(1).sum(1)
    return {
        "volume": float(volume.mean()) / res**3,
        "base_fraction": float(
            (occ[..., :base_layers].flatten(1).sum(1) / volume.clamp(min=1)).mean()
        ),
    }


def _clouds(occupancy: Tensor, points: int, seed: int) -> Tensor:
    """(N, P, 3) surface points of each grid's mesh (unit cube); an empty grid is one point."""
    from simkit.geometry import VoxelGrid

    res = occupancy.shape[-1]
    grids = VoxelGrid(occupancy.bool(), origin=(0.0, 0.0, 0.0), pitch=1 / res)
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(occupancy.shape[0]):
        if not bool(occupancy[i].any()):
            out.append(torch.full((points, 3), 0.5))
            continue
        mesh = grids[i].to_mesh()[0]
        out.append(mesh.sample_surface(points, generator=g).points.float())
    return torch.stack(out)


def _diversity(clouds: Tensor) -> float:
    from simkit.geometry.metrics import pairwise_chamfer

    if clouds.shape[0] < 2:
        return math.nan
    d = pairwise_chamfer(clouds, clouds)
    n = d.shape[0]
    return float((d.sum() - d.diagonal().sum()) / (n * (n - 1)))


def _draw(
    pipeline: Any, config: EvaluateConfig, reward: Reward | None, folder: Path, progress: bool
) -> Collection:
    conditions = config.conditions or tuple(pipeline.families)
    per = math.ceil(config.n / max(1, len(conditions)))
    return collect(
        pipeline,
        CollectConfig(
            out=folder,
            samples_per_condition=per,
            conditions=conditions,
            seed=config.seed,
            steps=config.steps,
            guidance_scale=config.guidance_scale,
            workers=config.workers,
            backend=config.backend,
        ),
        reward,
        progress=progress,
    )


def evaluate_pipeline(
    pipeline: Any,
    config: EvaluateConfig,
    reward: Reward | Any = None,
    *,
    baseline: Any = None,
    progress: bool = True,
) -> EvaluationReport:
    """Evaluate ``pipeline`` (and ``baseline`` on the same seeds, when given); the report is
    also written, atomically, to ``config.out / "report.json"``.

    Args:
        pipeline: a class-conditional :class:`~generators.pipeline.ShapePipeline`.
        config: the settings.
        reward: as for :func:`~generators.align.collect` (None: stability).
        baseline: a second pipeline to compare with, paired by seed.
        progress: show progress bars.
    """

    out = Path(config.out)
    reward = as_reward(reward, seed=config.seed, workers=config.workers, backend=config.backend)
    col = _draw(pipeline, config, reward, out / "samples", progress)
    families = sorted(
        {r.condition for r in col.records}, key=[r.condition for r in col.records].index
    )
    by_family = {f: [i for i, r in enumerate(col.records) if r.condition == f] for f in families}
    overall = _rates(col, list(range(len(col.records))))
    per_family = {f: _rates(col, sel) for f, sel in by_family.items()}

    base_col = None
    baseline_overall = paired = None
    if baseline is not None:
        base_col = _draw(baseline, config, reward, out / "baseline", progress)
        baseline_overall = _rates(base_col, list(range(len(base_col.records))))
        for f, sel in by_family.items():
            per_family[f]["baseline_pass_rate"] = _rates(base_col, sel)["pass_rate"]
        both = [
            (a.passed, b.passed)
            for a, b in zip(col.records, base_col.records, strict=True)
            if a.passed is not None and b.passed is not None
        ]
        only_new = sum(1 for a, b in both if a and not b)
        only_base = sum(1 for a, b in both if b and not a)
        paired = {
            "pairs": len(both),
            "only_this_passes": only_new,
            "only_baseline_passes": only_base,
            "difference": (only_new - only_base) / len(both) if both else math.nan,
            "mcnemar_p": mcnemar_exact(only_new, only_base),
        }

    recognition = _recognition(
        col, base_col, config, families, by_family, overall, per_family, baseline_overall,
        paired,
    )  # fmt: skip
    reference = None
    if config.fidelity:
        reference = _fidelity(
            col, base_col, config, reward, families, by_family, overall, per_family,
            baseline_overall,
        )  # fmt: skip
    if recognition is not None:
        reference = {**(reference or {}), **recognition}
    report = EvaluationReport(
        overall=overall,
        per_family=per_family,
        baseline=baseline_overall,
        paired=paired,
        reference=reference,
        settings={k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
    )
    write_json(out / "report.json", report.to_dict())
    return report


def _recognition(
    col: Collection,
    base_col: Collection | None,
    config: EvaluateConfig,
    families: list[str],
    by_family: dict[str, list[int]],
    overall: dict[str, Any],
    per_family: dict[str, dict[str, Any]],
    baseline_overall: dict[str, Any] | None,
    paired: dict[str, Any] | None,
) -> dict[str, Any] | None:
    """Fill in, in place, how often objects are recognised as the family asked for (and
    the paired comparison); return the ceiling, a second procedural set's figure."""
    from generators.align.reward import family_margins
    from simkit.shapes import FAMILIES

    if any(f not in FAMILIES for f in families):
        return None
    res = col.occupancy.shape[-1]
    per = max(len(sel) for sel in by_family.values())
    ref_occ, ref_names = procedural_objects(per, res, config.reference_seed, FAMILIES)

    def hits(occupancy: Tensor, asked: list[str]) -> Tensor:
        return family_margins(occupancy, asked, ref_occ, ref_names) >= 0  # NaN: not

    def fill(target: dict[str, Any], hit: Tensor) -> None:
        k = int(hit.sum())
        target["recognised"] = k / len(hit) if len(hit) else math.nan
        target["recognised_95ci"] = list(wilson_interval(k, len(hit)))

    asked = [r.condition for r in col.records]
    hit = hits(col.occupancy, asked)
    fill(overall, hit)
    for f, sel in by_family.items():
        fill(per_family[f], hit[sel])
    if base_col is not None and baseline_overall is not None and paired is not None:
        base_hit = hits(base_col.occupancy, [r.condition for r in base_col.records])
        fill(baseline_overall, base_hit)
        for f, sel in by_family.items():
            per_family[f]["baseline_recognised"] = float(base_hit[sel].float().mean())
        only_new, only_base = int((hit & ~base_hit).sum()), int((base_hit & ~hit).sum())
        paired["recognised"] = {
            "only_this": only_new,
            "only_baseline": only_base,
            "mcnemar_p": mcnemar_exact(only_new, only_base),
        }
    # The ceiling: a second procedural set of the same families, judged the same way.
    second, names = procedural_objects(per, res, config.reference_seed + 1, families)
    ceiling = hits(second, names)
    return {"recognised": float(ceiling.float().mean()), "n_recognised": len(names)}


def _fidelity(
    col: Collection,
    base_col: Collection | None,
    config: EvaluateConfig,
    reward: Reward,
    families: list[str],
    by_family: dict[str, list[int]],
    overall: dict[str, Any],
    per_family: dict[str, dict[str, Any]],
    baseline_overall: dict[str, Any] | None,
) -> dict[str, Any] | None:
    """Fill fidelity and diversity in place; return the references' own figures."""
    from simkit.geometry.metrics import pairwise_voxel_chamfer, set_metrics
    from simkit.shapes import FAMILIES

    if any(f not in FAMILIES for f in families):
        return None  # not procedural families: no reference set to compare with
    res = col.occupancy.shape[-1]
    per = max(len(sel) for sel in by_family.values())

    def references(n: int, seed: int) -> tuple[Tensor, Tensor]:
        occ, names = procedural_objects(n, res, seed, families)
        return occ, torch.tensor([FAMILIES.index(f) for f in names], dtype=torch.long)

    ref_occ, ref_labels = references(per, config.reference_seed)
    clouds = _clouds(col.occupancy, config.points, 0)
    ref_clouds = _clouds(ref_occ, config.points, 1)
    m = set_metrics(clouds, ref_clouds)
    overall.update({"mmd_cd": m.mmd, "cov_cd": m.cov, "one_nna_cd": m.one_nna})
    d_rr = pairwise_voxel_chamfer(ref_occ, ref_occ, upright_turns=True)
    overall["one_nna_turns"] = _one_nna_turns(col.occupancy, ref_occ, d_rr)
    reference: dict[str, Any] = {"n": len(ref_labels), **_shape_stats(ref_occ)}

    # The references that pass the reward, `per` a family where the larger set has them.
    pool_occ, pool_labels = references(_PASSING_POOL * per, config.reference_seed + 1)
    passed = passing(
        pool_occ,
        reward,
        conditions=[FAMILIES[int(k)] for k in pool_labels],
        cache=config.verdict_cache,
    )
    chosen = [
        i
        for f in families
        for i in [j for j in passed if int(pool_labels[j]) == FAMILIES.index(f)][:per]
    ]
    pass_clouds = _clouds(pool_occ[chosen], config.points, 2)
    mp = set_metrics(clouds, pass_clouds)
    overall.update(
        {"mmd_cd_passing": mp.mmd, "cov_cd_passing": mp.cov, "one_nna_cd_passing": mp.one_nna}
    )
    reference.update({"n_passing": len(chosen), "pass_rate": len(passed) / max(1, len(pool_occ))})
    div, ref_div = [], []
    for f, sel in by_family.items():
        fam_ref = ref_clouds[ref_labels == FAMILIES.index(f)]
        per_family[f]["diversity_cd"] = _diversity(clouds[sel])
        div.append(per_family[f]["diversity_cd"])
        ref_div.append(_diversity(fam_ref))
    overall["diversity_cd"] = _nanmean(div)
    reference["diversity_cd"] = _nanmean(ref_div)
    if base_col is not None and baseline_overall is not None:
        base_clouds = _clouds(base_col.occupancy, config.points, 0)
        mb = set_metrics(base_clouds, ref_clouds)
        baseline_overall.update({"mmd_cd": mb.mmd, "cov_cd": mb.cov, "one_nna_cd": mb.one_nna})
        baseline_overall["one_nna_turns"] = _one_nna_turns(base_col.occupancy, ref_occ, d_rr)
        mbp = set_metrics(base_clouds, pass_clouds)
        baseline_overall.update(
            {
                "mmd_cd_passing": mbp.mmd,
                "cov_cd_passing": mbp.cov,
                "one_nna_cd_passing": mbp.one_nna,
            }
        )
        baseline_overall["diversity_cd"] = _nanmean(
            [_diversity(base_clouds[sel]) for sel in by_family.values()]
        )
    return reference


def _one_nna_turns(occupancy: Tensor, ref_occ: Tensor, d_rr: Tensor) -> float:
    """1-NNA of the grids against the references on voxel-surface Chamfer distance up to
    the upright turns (``d_rr``: the references' own matrix)."""
    from simkit.geometry.metrics import one_nn_accuracy, pairwise_voxel_chamfer

    d_sr = pairwise_voxel_chamfer(occupancy, ref_occ, upright_turns=True)
    d_ss = pairwise_voxel_chamfer(occupancy, occupancy, upright_turns=True)
    return float(one_nn_accuracy(d_ss, d_rr, d_sr))


def _nanmean(values: list[float]) -> float:
    vals = [v for v in values if math.isfinite(v)]
    return sum(vals) / len(vals) if vals else math.nan
