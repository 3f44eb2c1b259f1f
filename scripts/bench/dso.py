"""DSO reproduction: base vs SFT, DPO, DRO and the bounded KTO variant, on held-out seeds.

One collection from the base checkpoint (``--samples-per-condition`` per family, judged by
PyBullet) is shared by every objective (each run's ``round_00/collection`` is a copy, so
the runs differ only in their objective). Each fine-tuned pipeline and the base are then
sampled on the *same* ``--n`` held-out seeds and reported side by side:

* fraction standing with its 95 % Wilson interval, and the exact McNemar p-value of the
  paired comparison with the base (same seeds);
* mean tilt, validity (one connected solid), fidelity to held-out procedural shapes
  (1-NNA, COV, MMD on Chamfer distance; *1-NNA t.* on voxel-surface Chamfer up to the
  eight upright turns), and *recog.*, the fraction recognised as the family asked for;
* reward-hacking checks: mean volume, the fraction of the solid in the bottom eighth of
  the grid (a base plate), within-family diversity;
* the CPU time of the fine-tuning round;
* a picture, ``OUT/samples.png``: each model's first held-out sample of every family
  (the same seed down a column), all its pieces, coloured by the verdict (blue stands,
  orange falls, grey: not one solid).

``--extra NAME=CHECKPOINT`` adds rows for checkpoints that exist already (the shipped
``shapes-dso``, say), evaluated on the same seeds. The references' verdicts are judged
once and kept in ``OUT/verdict-cache`` (as SFT's replay set's).

DSO's own table (TRELLIS on Objaverse images; ``papers/dso.md``) is printed beside ours.
Everything is resumable: a rerun with the same ``--out`` reuses what is there.

    python scripts/bench/dso.py [--checkpoint shapes-base] [--n 504] [--workers 2]
        [--objectives sft,dpo,dro,kto] [--fragments drop|piece|fail] [--full]
        [--p-mean M] [--sigma-uniform S] [--thin-weight W] [--class-dropout P] [--anchor A]
        [--sigma-split S] [--replay N] [--extra NAME=CHECKPOINT ...]

*1-NNA st.* is 1-NNA against held-out references that stand themselves (what a perfectly
aligned generator would match; ``generators.align.evaluate``).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import time
from datetime import date
from pathlib import Path

import torch

from generators.align import AlignConfig, CollectConfig, SimFeedbackTrainer, collect
from generators.align.data import FRAGMENTS
from generators.align.evaluate import EvaluateConfig, evaluate_pipeline
from generators.generate import checkpoint_path, load_pipeline
from simkit.io import write_json

# DSO (Li et al. 2025), main table, as recorded in papers/dso.md ([secondary], unverified).
PAPER = [
    ("TRELLIS (base)", 85.1, 14.14),
    ("TRELLIS + SFT", 89.5, 10.22),
    ("DSO-DPO", 95.1, 5.42),
    ("DSO-DRO", 99.0, 1.88),
]


def _align(args: argparse.Namespace, objective: str, shared: Path) -> tuple[Path, float, dict]:
    out = Path(args.out) / objective
    target = out / "round_00" / "collection"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(shared, target)
    config = AlignConfig(
        out=out,
        objective=objective,
        samples_per_condition=args.samples_per_condition,
        sample_steps=args.sample_steps,
        steps_per_round=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        lora_rank=None if args.full else args.lora_rank,
        fragments=args.fragments,
        p_mean=args.p_mean,
        p_std=args.p_std,
        sigma_uniform=args.sigma_uniform,
        thin_weight=args.thin_weight,
        class_dropout=args.class_dropout,
        anchor=args.anchor,
        sigma_split=args.sigma_split,
        replay=args.replay if objective == "sft" else 0,  # the shipped recipe: SFT only
        verdict_cache=Path(args.out) / "verdict-cache",
        seed=args.seed,
        workers=args.workers,
    )
    # The fine-tune's CPU time, summed over resumptions (a finished run adds only its
    # export), so a rerun of the bench reports what the training cost.
    timing = out / "bench_cpu.json"
    spent = json.loads(timing.read_text())["train_cpu_s"] if timing.exists() else 0.0
    t0 = time.process_time()
    result = SimFeedbackTrainer(load_pipeline(args.checkpoint), config).run()
    spent += time.process_time() - t0
    write_json(timing, {"train_cpu_s": spent})
    return result.pipeline_dir, spent, result.rounds[0]


def _figure(out: Path, names: list[str], path: Path) -> None:
    """Each model's first evaluated sample of every family, one row per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from generators.align.collect import load_collection
    from generators.generate import _FALLS_RGB, _INVALID_RGB, _STANDS_RGB
    from simkit.geometry import VoxelGrid
    from simkit.viz import plot_meshes

    meshes, titles, colors = [], [], []
    families: list[str] = []
    for name in names:
        col = load_collection(out / "eval" / name / "samples")
        occ = col.occupancy if col.raw is None else col.raw
        families = families or list(dict.fromkeys(r.condition for r in col.records))
        for fam in families:
            i = next(i for i, r in enumerate(col.records) if r.condition == fam)
            r = col.records[i]
            res = occ.shape[-1]
            meshes.append(VoxelGrid(occ[i : i + 1], (0.0, 0.0, 0.0), 1 / res)[0].to_mesh()[0])
            verdict = "?" if r.passed is None else ("stands" if r.passed else "falls")
            titles.append(f"{name}\n{fam}: {verdict}")
            colors.append(
                _INVALID_RGB if not r.valid else (_STANDS_RGB if r.passed else _FALLS_RGB)
            )
    fig = plot_meshes(meshes, path, titles=titles, colors=colors, ncols=len(families),
                      panel_size=1.8)  # fmt: skip
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--checkpoint", default="shapes-base")
    ap.add_argument("--objectives", default="sft,dpo,dro,kto")
    ap.add_argument("--samples-per-condition", type=int, default=32)
    ap.add_argument("--sample-steps", type=int, default=18)
    ap.add_argument("--steps", type=int, default=300, help="fine-tuning steps")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--lora-rank", type=int, default=8)
    ap.add_argument("--full", action="store_true", help="fine-tune every weight, not LoRA")
    # The fine-tune's noise law, loss weighting, label dropout and anchor (AlignConfig).
    ap.add_argument("--p-mean", type=float, default=-1.2)
    ap.add_argument("--p-std", type=float, default=1.2)
    ap.add_argument("--sigma-uniform", type=float, default=0.0)
    ap.add_argument("--thin-weight", type=float, default=0.0)
    ap.add_argument("--class-dropout", type=float, default=0.0)
    ap.add_argument("--anchor", type=float, default=0.0)
    ap.add_argument("--sigma-split", type=float, default=None)
    ap.add_argument("--replay", type=int, default=0, help="procedural objects a family (SFT)")
    ap.add_argument(
        "--extra",
        action="append",
        default=[],
        metavar="NAME=CHECKPOINT",
        help="also evaluate an existing checkpoint as row NAME (repeatable)",
    )
    ap.add_argument(
        "--fragments",
        default="drop",
        choices=FRAGMENTS,
        help="what a sample that is not one solid is for training (AlignConfig.fragments)",
    )
    ap.add_argument("--n", type=int, default=504, help="held-out samples per model")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default="runs/bench-dso")
    ap.add_argument("--json", default="scripts/bench/results/dso.json")
    args = ap.parse_args()
    objectives = [o for o in args.objectives.split(",") if o]
    extras = []
    for item in args.extra:
        name, sep, ckpt = item.partition("=")
        if not sep or not name or not ckpt:
            ap.error(f"--extra wants NAME=CHECKPOINT, got {item!r}")
        if name == "base" or name in objectives:
            ap.error(f"--extra name {name!r} is taken by another row")
        extras.append((name, str(checkpoint_path(ckpt))))

    out = Path(args.out)
    shared = out / "collection"
    t0 = time.process_time()
    col = collect(
        load_pipeline(args.checkpoint),
        CollectConfig(
            out=shared,
            samples_per_condition=args.samples_per_condition,
            seed=args.seed,
            steps=args.sample_steps,
            workers=args.workers,
        ),
    )
    collect_cpu = time.process_time() - t0

    def eval_config(name: str) -> EvaluateConfig:
        return EvaluateConfig(
            out=out / "eval" / name,
            n=args.n,
            workers=args.workers,
            verdict_cache=out / "verdict-cache",
        )

    base_pipe = load_pipeline(args.checkpoint)
    base = evaluate_pipeline(base_pipe, eval_config("base"))
    rows = [{"model": "base", **base.overall, "train_cpu_s": None}]

    def compare(name: str, pipeline_dir: Path | str, extra: dict) -> None:
        folder = out / "eval" / name
        if not (folder / "baseline").exists():  # the base's samples on the same seeds
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copytree(out / "eval" / "base" / "samples", folder / "baseline")
        report = evaluate_pipeline(
            load_pipeline(pipeline_dir), eval_config(name), baseline=base_pipe
        )
        rows.append(
            {
                "model": name,
                **report.overall,
                "mcnemar_p": report.paired["mcnemar_p"],
                "only_this_passes": report.paired["only_this_passes"],
                "only_base_passes": report.paired["only_baseline_passes"],
                **extra,
            }
        )

    for name, ckpt in extras:
        compare(name, ckpt, {"checkpoint": ckpt, "train_cpu_s": None})
    for objective in objectives:
        pipeline_dir, cpu, summary = _align(args, objective, shared)
        compare(
            objective,
            pipeline_dir,
            {
                "train_cpu_s": cpu,
                "training_items": summary["training_items"],
                "collection_pass_rate": summary["pass_rate"],
            },
        )

    print(
        f"collection: {len(col.records)} samples, {col.fraction_passed():.1%} stand, "
        f"{collect_cpu:.0f} CPU s; evaluation: {args.n} held-out samples per model"
    )
    width = max(6, *(len(r["model"]) + 1 for r in rows))
    head = f"{'model':<{width}}{'stand':>7}{'95% CI':>13}{'p vs base':>10}{'tilt':>6}{'valid':>7}"
    head += f"{'1-NNA':>7}{'COV':>6}{'1-NNA st.':>10}{'1-NNA t.':>9}{'recog.':>7}"
    head += f"{'volume':>8}{'base':>6}{'divers.':>9}"
    head += f"{'train CPU s':>12}"
    print(head)
    for r in rows:
        lo, hi = r["pass_rate_95ci"]
        p = r.get("mcnemar_p")
        cpu = "" if r["train_cpu_s"] is None else f"{r['train_cpu_s']:.0f}"
        print(
            f"{r['model']:<{width}}{r['pass_rate']:>7.1%}{f'{lo:.3f}-{hi:.3f}':>13}"
            f"{'' if p is None else f'{p:.2g}':>10}{r['mean_tilt_deg']:>6.1f}{r['valid']:>7.1%}"
            f"{r['one_nna_cd']:>7.1%}{r['cov_cd']:>6.1%}{r['one_nna_cd_passing']:>10.1%}"
            f"{r['one_nna_turns']:>9.1%}{r['recognised']:>7.1%}{r['volume']:>8.3f}"
            f"{r['base_fraction']:>6.2f}{r['diversity_cd']:>9.4f}"
            f"{cpu:>12}"
        )
    ref = base.reference or {}
    print(
        f"held-out procedural shapes: volume {ref.get('volume', float('nan')):.3f}, "
        f"base {ref.get('base_fraction', float('nan')):.2f}, "
        f"diversity {ref.get('diversity_cd', float('nan')):.4f}"
    )
    print("DSO paper (TRELLIS, Objaverse; unverified secondary source): " + "; ".join(
        f"{m} {s:.1f}% stable, {rot:.2f} deg" for m, s, rot in PAPER
    ))  # fmt: skip
    result = {
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
        "command": "python scripts/bench/dso.py "
        + " ".join(
            f"--{k.replace('_', '-')} {v}"
            for k, v in vars(args).items()
            if k not in ("json", "extra", "full") and v is not None
        )
        + (" --full" if args.full else "")
        + "".join(f" --extra {e}" for e in args.extra),
        "checkpoint": str(checkpoint_path(args.checkpoint)),
        "collection": {"samples": len(col.records), "pass_rate": col.fraction_passed()},
        "reference": ref,
        "rows": rows,
        "paper": [{"model": m, "stable": s, "rot_deg": rot} for m, s, rot in PAPER],
    }
    _figure(out, [r["model"] for r in rows], out / "samples.png")
    print(f"wrote {out / 'samples.png'}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2, default=float) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
