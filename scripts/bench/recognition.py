"""Is each generated object recognisable as the family asked for? (issues 4 and 5)

Every checkpoint samples ``per_family`` objects of each family from the same seed and
labels (Heun, 18 steps, guidance w = 2: ``simkit generate``'s default; the very objects
``generator_pair.py`` scores), and each object is recognised when its nearest held-out
procedural reference (data seed 777, ``per_family`` a family) is of that family, on the
exact Chamfer distance between voxel surfaces up to the eight upright turns
(``simkit.geometry.metrics.pairwise_voxel_chamfer``, as ``simkit evaluate`` and
``FamilyReward`` measure it). The first row is the ceiling: a second procedural set
(seed 778) judged the same way. Each checkpoint after the first is paired with the first
seed by seed (exact McNemar). Prints per-family rates and each checkpoint's confusion
matrix (asked for, by recognised as); with ``--png``, renders the first eight objects of
one family from every checkpoint, a row each.

    python scripts/bench/recognition.py PER_FAMILY SEED CHECKPOINT [CHECKPOINT ...]
        [--png PATH] [--family NAME]
    python scripts/bench/recognition.py 32 2000 shapes-base shapes-dso --png chairs.png
"""

from __future__ import annotations

import argparse
import time

import torch

from generators.align.data import procedural_objects
from generators.align.evaluate import mcnemar_exact
from generators.generate import load_pipeline
from simkit.geometry.metrics import pairwise_voxel_chamfer
from simkit.shapes import FAMILIES, dataset


def _short(checkpoint: str) -> str:
    """A short name for a picture's titles: the folder, or its parent for ``.../pipeline``."""
    parts = [p for p in checkpoint.replace("\\", "/").split("/") if p not in ("", ".", "..")]
    if len(parts) > 1 and parts[-1] == "pipeline":
        parts = parts[:-1]
    return parts[-1][:18]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("per_family", type=int)
    ap.add_argument("seed", type=int)
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--png", default=None, help="render one family's first 8 objects here")
    ap.add_argument("--family", default="chair", choices=FAMILIES)
    args = ap.parse_args()
    t0 = time.time()
    n = args.per_family * len(FAMILIES)
    ref, ref_names = procedural_objects(args.per_family, 16, 777, FAMILIES)
    ref_k = torch.tensor([FAMILIES.index(f) for f in ref_names])
    # generator_pair.py's labels: the balanced family order of dataset(n, 16, seed=778).
    labels = dataset(n, 16, seed=778).labels

    def recognised(occ: torch.Tensor, asked: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        d = pairwise_voxel_chamfer(occ, ref, upright_turns=True)
        got = ref_k[d.argmin(dim=1)]
        ok = torch.isfinite(d.min(dim=1).values)
        return (got == asked) & ok, torch.where(ok, got, -1)

    second, second_names = procedural_objects(args.per_family, 16, 778, FAMILIES)
    second_k = torch.tensor([FAMILIES.index(f) for f in second_names])
    rows = {"procedural (ceiling)": (recognised(second, second_k)[0], second_k)}
    confusion, renders = {}, []
    for ck in args.checkpoints:
        pipe = load_pipeline(ck)
        pipe.set_progress_bar_config(disable=True)
        out = pipe(
            batch_size=n,
            num_inference_steps=18,
            class_labels=labels,
            generator=torch.Generator().manual_seed(args.seed),
            guidance_scale=2.0,
            output_type="mesh" if args.png else "voxels",
        )
        hit, got = recognised(out.voxels.occupancy, labels)
        rows[ck] = (hit, labels)
        confusion[ck] = torch.zeros(len(FAMILIES), len(FAMILIES) + 1, dtype=torch.long)
        for a, g in zip(labels.tolist(), got.tolist(), strict=True):
            confusion[ck][a, g] += 1  # g = -1 (empty) lands in the last column
        if args.png:
            fam = FAMILIES.index(args.family)
            idx = [i for i in (labels == fam).nonzero().flatten().tolist() if out.meshes[i]][:8]
            renders += [
                (
                    out.meshes[i],
                    f"{_short(ck)}: {FAMILIES[int(got[i])] if got[i] >= 0 else 'empty'}",
                )
                for i in idx
            ]
        print(f"{ck}: sampled and judged, {time.time() - t0:.0f} s", flush=True)

    width = max(len(k) for k in rows) + 2
    print(
        f"\n{'recognised as asked':<{width}}"
        + "".join(f"{f[:9]:>10}" for f in FAMILIES)
        + f"{'all':>8}"
    )
    for name, (hit, asked) in rows.items():
        per = [hit[asked == k].float().mean() for k in range(len(FAMILIES))]
        print(
            f"{name:<{width}}"
            + "".join(f"{float(p):>10.0%}" for p in per)
            + f"{float(hit.float().mean()):>8.1%}"
        )
    first = args.checkpoints[0]
    for ck in args.checkpoints[1:]:
        a, b = rows[first][0], rows[ck][0]
        up, down = int((b & ~a).sum()), int((a & ~b).sum())
        print(
            f"{ck} against {first}: recognised only here {up}, only there {down}, exact McNemar p = {mcnemar_exact(up, down):.3g}"
        )
    for ck, m in confusion.items():
        print(f"\n{ck}: asked for (rows) by recognised as (columns)")
        print(" " * 11 + "".join(f"{f[:7]:>8}" for f in FAMILIES) + f"{'empty':>8}")
        for k, f in enumerate(FAMILIES):
            print(f"{f:<11}" + "".join(f"{int(v):>8}" for v in m[k]))
    if args.png:
        from simkit.viz import plot_meshes

        plot_meshes(
            [m for m, _ in renders],
            args.png,
            titles=[t for _, t in renders],
            ncols=8,
            panel_size=1.9,
        )
        print(
            f"\npicture: {args.png} (asked for {args.family}; each title: the checkpoint, and what it is recognised as)"
        )
    print(f"\n{time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
