"""The shipped generator against held-out procedural shapes (issue 4's checkpoint benchmark).

For each family, sample ``--per-family`` objects from the checkpoint (class-conditional,
held-out seed) and draw as many held-out procedural objects (a data seed the checkpoint
never saw). Both go through the same path: a 16^3 occupancy grid in the unit cube ->
marching cubes -> ``--points`` surface points. Reported, generated vs reference:

* MMD, COV and 1-NNA on Chamfer distance (PointFlow's definitions; squared distances,
  summed both ways; global normalisation: every object lives in the unit cube, its largest
  side 1, resting on z = 0). 1-NNA: 50 % is ideal; the issue's goal is <= 70 %.
* family accuracy: the family of each generated object's nearest reference (Chamfer)
  equals the family it was conditioned on ("recognisable as the families");
* validity (non-empty, one connected solid) and the fraction that stands (PyBullet).

Distances are taken up to the eight turns of an upright object (quarter turns about the
vertical and mirror images, ``simkit.geometry.upright_symmetries``): the generator is
trained on randomly turned objects and samples every orientation, the procedural
references come in one. The *plain* columns repeat 1-NNA and family accuracy on plain
Chamfer distance. Procedural objects are bridged at diagonal contacts as the pipeline's
samples are (``VoxelGrid.bridge_diagonals``).

The *floor* rows repeat everything for a second held-out procedural set in place of the
generator: what a perfect generator would score with this many objects; the *turned*
floor is that set randomly turned as in training (``generators.train.random_turns``),
what a perfect generator of the training distribution would score.

    python scripts/bench/generator.py [--checkpoint shapes-base] [--per-family 16]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import date
from pathlib import Path

import torch

from generators.generate import checkpoint_path, load_pipeline
from generators.train import random_turns
from simkit.geometry import VoxelGrid
from simkit.geometry.metrics import (
    coverage,
    minimum_matching_distance,
    one_nn_accuracy,
    pairwise_chamfer,
    upright_symmetries,
)
from simkit.physics import StabilityConfig, evaluate
from simkit.shapes import FAMILIES, dataset


def _clouds(grids: VoxelGrid, points: int, seed: int) -> tuple[torch.Tensor, list]:
    """Surface points of each (non-empty) grid's mesh, and the meshes (None if empty)."""
    g = torch.Generator().manual_seed(seed)
    clouds, meshes = [], []
    for i in range(len(grids)):
        if not bool(grids.occupancy[i].any()):
            meshes.append(None)
            clouds.append(torch.full((points, 3), 0.5))  # an empty object: one point mass
            continue
        mesh = grids[i].to_mesh()[0]
        meshes.append(mesh)
        clouds.append(mesh.sample_surface(points, generator=g).points.float())
    return torch.stack(clouds), meshes


def _family_accuracy(d: torch.Tensor, labels: torch.Tensor, ref_labels: torch.Tensor) -> float:
    return float((ref_labels[d.argmin(1)] == labels).float().mean())


def _row(name, clouds, labels, meshes, valid, ref_clouds, ref_labels, d_rr, workers, seconds):
    """Metrics of one generated (or floor) set against the references; ``d_rr`` holds the
    references' own distance matrices (up to turns, plain), computed once for all rows."""
    turns = upright_symmetries()
    d_sr = pairwise_chamfer(clouds, ref_clouds, symmetries=turns)
    d_ss = pairwise_chamfer(clouds, clouds, symmetries=turns)
    plain_sr = pairwise_chamfer(clouds, ref_clouds)
    plain_ss = pairwise_chamfer(clouds, clouds)
    present = [mm for mm in meshes if mm is not None]
    verdicts = evaluate(present, StabilityConfig(), workers=workers, backend="process")
    stands = sum(bool(v.stable) for v in verdicts if v.error is None)
    per_family = {}
    for k, fam in enumerate(FAMILIES):
        sel = labels == k
        if sel.any():
            per_family[fam] = _family_accuracy(d_sr[sel], labels[sel], ref_labels)
    return {
        "name": name,
        "n": len(meshes),
        "mmd_cd": float(minimum_matching_distance(d_sr)),
        "cov_cd": float(coverage(d_sr)),
        "one_nna_cd": float(one_nn_accuracy(d_ss, d_rr["turns"], d_sr)),
        "family_accuracy": _family_accuracy(d_sr, labels, ref_labels),
        "family_accuracy_per_family": per_family,
        "plain": {
            "mmd_cd": float(minimum_matching_distance(plain_sr)),
            "cov_cd": float(coverage(plain_sr)),
            "one_nna_cd": float(one_nn_accuracy(plain_ss, d_rr["plain"], plain_sr)),
            "family_accuracy": _family_accuracy(plain_sr, labels, ref_labels),
        },
        "valid": float(valid.float().mean()),
        "stands": stands / len(meshes),
        "seconds": seconds,
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--checkpoint", default="shapes-base")
    ap.add_argument("--per-family", type=int, default=12)
    ap.add_argument("--points", type=int, default=256)
    ap.add_argument("--steps", type=int, default=18)
    ap.add_argument("--seed", type=int, default=1000, help="sampling seed (held out)")
    ap.add_argument("--ref-seed", type=int, default=777, help="held-out procedural data seed")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument(
        "--settings",
        default="heun:18:1,dpmpp_2m:10:1,euler:18:1,heun:18:2",
        help="rows to sample, as solver:steps:guidance, comma-separated",
    )
    ap.add_argument("--json", default="scripts/bench/results/generator.json")
    args = ap.parse_args()

    n = args.per_family * len(FAMILIES)
    ref = dataset(n, 16, seed=args.ref_seed)
    floor = dataset(n, 16, seed=args.ref_seed + 1)
    ref_grid = VoxelGrid(ref.voxels > 0.5, origin=(0.0, 0.0, 0.0), pitch=1 / 16)
    ref_clouds, _ = _clouds(ref_grid.bridge_diagonals(), args.points, 0)
    d_rr = {
        "turns": pairwise_chamfer(ref_clouds, ref_clouds, symmetries=upright_symmetries()),
        "plain": pairwise_chamfer(ref_clouds, ref_clouds),
    }

    rows = []
    turned = random_turns(floor.voxels[:, None], torch.Generator().manual_seed(args.seed))[:, 0]
    for name, voxels in (("procedural (floor)", floor.voxels), ("procedural, turned", turned)):
        floor_grid = VoxelGrid(voxels > 0.5, origin=(0.0, 0.0, 0.0), pitch=1 / 16)
        floor_grid = floor_grid.bridge_diagonals()
        floor_clouds, floor_meshes = _clouds(floor_grid, args.points, 1)
        _, counts = floor_grid.connected_components(1)
        rows.append(
            _row(
                name,
                floor_clouds,
                floor.labels,
                floor_meshes,
                counts == 1,
                ref_clouds,
                ref.labels,
                d_rr,
                args.workers,
                0.0,
            )
        )

    # (solver, steps, classifier-free guidance weight)
    settings = [
        (solver, int(steps), float(w))
        for solver, steps, w in (row.split(":") for row in args.settings.split(",") if row)
    ]
    for solver, steps, guidance in settings:
        pipe = load_pipeline(args.checkpoint, solver=solver)
        labels = floor.labels  # the same balanced family order
        g = torch.Generator().manual_seed(args.seed)
        t0 = time.perf_counter()
        out = pipe(
            batch_size=n,
            num_inference_steps=steps,
            class_labels=labels,
            generator=g,
            guidance_scale=guidance,
        )
        seconds = time.perf_counter() - t0
        clouds, meshes = _clouds(out.voxels, args.points, 2)
        nfe = (2 * steps - 1 if solver == "heun" else steps) * (2 if guidance != 1 else 1)
        rows.append(
            _row(
                f"{solver}, {steps} steps, w={guidance:g} ({nfe} NFE)",
                clouds,
                labels,
                meshes,
                out.valid,
                ref_clouds,
                ref.labels,
                d_rr,
                args.workers,
                seconds,
            )
        )

    config = dict(load_pipeline(args.checkpoint).scheduler.config)
    print(
        f"checkpoint {checkpoint_path(args.checkpoint)}  D={config['D']}  "
        f"{n} objects per row ({args.per_family} per family), {args.points} points"
    )
    print(f"{'':<28} {'up to turns':^37} {'plain':^15}")
    print(
        f"{'row':<28} {'MMD-CD':>8} {'COV':>6} {'1-NNA':>6} {'family':>7} "
        f"{'1-NNA':>7} {'family':>7} {'valid':>6} {'stand':>6} {'s':>6}"
    )
    for r in rows:
        p = r["plain"]
        print(
            f"{r['name']:<28} {r['mmd_cd']:8.5f} {r['cov_cd']:6.1%} {r['one_nna_cd']:6.1%} "
            f"{r['family_accuracy']:7.1%} {p['one_nna_cd']:7.1%} {p['family_accuracy']:7.1%} "
            f"{r['valid']:6.1%} {r['stands']:6.1%} {r['seconds']:6.1f}"
        )
    out = {
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
        "command": "python scripts/bench/generator.py "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "json"),
        "checkpoint": str(checkpoint_path(args.checkpoint)),
        "D": config["D"],
        "rows": rows,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
