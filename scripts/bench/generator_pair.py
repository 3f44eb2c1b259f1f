"""Two generator checkpoints on the same seeds: which draws the families better? (issue 4)

A lighter, paired companion to ``generator.py``: both checkpoints sample ``per_family``
objects of every family (Heun, 18 steps, guidance w = 2: ``simkit generate``'s default)
from the same seed and labels, and each object is scored as ``generator.py`` scores it
(the same held-out references, data seed 777; the same surface points; Chamfer distance up
to the eight upright turns):

* family accuracy: the nearest reference's family equals the one asked for;
* validity: one solid after the pipeline's bridging of diagonal contacts;
* 1-NNA against the references (50 % is ideal).

Because the objects are paired seed by seed, the second checkpoint against the first is
an exact McNemar test on the objects only one of them gets right. Stability and the
floor rows are left out (``generator.py`` has them); at 32 a family this takes about 20
minutes on 2 CPU cores, most of it in the Chamfer matrices.

    python scripts/bench/generator_pair.py PER_FAMILY SEED FIRST SECOND
    python scripts/bench/generator_pair.py 32 2000 shapes-base runs/shapes-base-thin2/pipeline
"""

import sys
import time

import torch
from generator import _clouds

from generators.align.evaluate import mcnemar_exact
from generators.generate import load_pipeline
from simkit.geometry import VoxelGrid
from simkit.geometry.metrics import one_nn_accuracy, pairwise_chamfer, upright_symmetries
from simkit.shapes import FAMILIES, dataset


def main() -> None:
    if len(sys.argv) != 5:
        raise SystemExit(__doc__)
    per, seed = int(sys.argv[1]), int(sys.argv[2])
    cks = sys.argv[3:]
    n = per * len(FAMILIES)
    t = time.time()
    ref = dataset(n, 16, seed=777)
    floor = dataset(n, 16, seed=778)  # only its balanced family order is used
    grid = VoxelGrid(ref.voxels > 0.5, origin=(0.0, 0.0, 0.0), pitch=1 / 16)
    refc, _ = _clouds(grid.bridge_diagonals(), 256, 0)
    print("refs", time.time() - t, flush=True)
    turns = upright_symmetries()
    d_rr = pairwise_chamfer(refc, refc, symmetries=turns)
    print("d_rr", time.time() - t, flush=True)
    res = {}
    for ck in cks:
        pipe = load_pipeline(ck)
        out = pipe(
            batch_size=n,
            num_inference_steps=18,
            class_labels=floor.labels,
            generator=torch.Generator().manual_seed(seed),
            guidance_scale=2.0,
        )
        print(ck, "sampled", time.time() - t, flush=True)
        c, _ = _clouds(out.voxels, 256, 2)
        d_sr = pairwise_chamfer(c, refc, symmetries=turns)
        d_ss = pairwise_chamfer(c, c, symmetries=turns)
        hit = ref.labels[d_sr.argmin(1)] == floor.labels
        nna = float(one_nn_accuracy(d_ss, d_rr, d_sr))
        res[ck] = dict(hit=hit, valid=out.valid.clone(), nna=nna)
        pf = {
            f: f"{float(hit[floor.labels == k].float().mean()):.2f}" for k, f in enumerate(FAMILIES)
        }
        print(
            ck,
            f"family {float(hit.float().mean()):.3f} valid "
            f"{float(out.valid.float().mean()):.3f} 1-NNA {nna:.3f}",
            pf,
            time.time() - t,
            flush=True,
        )
    a, b = (res[k] for k in cks)
    for key in ("hit", "valid"):
        w = int((b[key] & ~a[key]).sum())
        lo = int((a[key] & ~b[key]).sum())
        print(key, f"second vs first +{w}/-{lo} p={mcnemar_exact(w, lo):.3g}")


if __name__ == "__main__":
    main()
