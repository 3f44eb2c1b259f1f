"""Benchmark: simkit's mass properties and solid voxelization against trimesh, one run.

Both libraries work on the same batch of closed meshes (procedural objects from
simkit.shapes plus spheres, tori and random convex hulls). For each task the script
checks that the answers agree, then times both and prints the ratio.

* mass properties: ``Mesh.mass_properties`` vs ``trimesh.Trimesh.mass_properties``
  (trimesh's cache cleared before each call, so both compute from scratch);
* solid voxelization at R^3: ``VoxelGrid.from_mesh`` on the whole batch at once vs
  trimesh's ``voxelized(pitch).fill()`` per mesh, and vs trimesh's exact
  inside test of the voxel centres (``contains``, ray tests without embree: slow, timed
  once), which has the same semantics as ours.

Times are the best of ``--repeats`` runs, whole batch, in seconds.

    python scripts/bench/geometry.py [--resolution 32] [--repeats 5] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch
import trimesh

from simkit.geometry import Mesh, VoxelGrid, batch_mass_properties


def build_batch(seed: int) -> list[trimesh.Trimesh]:
    from simkit import shapes

    rng = np.random.default_rng(seed)
    batch = [
        s.mesh.to_trimesh() for fam in shapes.FAMILIES for s in shapes.sample(fam, 4, seed=seed)
    ]
    batch += [trimesh.creation.icosphere(subdivisions=3, radius=0.3) for _ in range(6)]
    batch += [
        trimesh.creation.torus(0.4, 0.1, major_sections=48, minor_sections=24) for _ in range(6)
    ]
    batch += [trimesh.convex.convex_hull(rng.normal(size=(300, 3))) for _ in range(12)]
    return batch


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default="scripts/bench/results/geometry.json")
    args = ap.parse_args()

    tms = build_batch(args.seed)
    meshes = [Mesh.from_trimesh(t) for t in tms]
    faces = sum(len(t.faces) for t in tms)
    res = args.resolution

    # --- agreement first: a fast wrong answer is not a result
    rel = []
    for m, t in zip(meshes, tms, strict=True):
        mp, ref = m.mass_properties(), t.mass_properties
        rel.append(abs(float(mp.volume) - ref["volume"]) / ref["volume"])
        rel.append(np.abs(mp.inertia.numpy() - ref["inertia"]).max() / np.abs(ref["inertia"]).max())
    grid = VoxelGrid.from_mesh(meshes, res)
    centres = grid.centers().reshape(len(meshes), -1, 3).numpy()
    # trimesh's exact inside test is the reference and the slow peer: run (and time) it once.
    t0 = time.perf_counter()
    inside = [t.contains(c) for t, c in zip(tms, centres, strict=True)]
    contains_s = time.perf_counter() - t0
    occupancy = grid.occupancy.reshape(len(meshes), -1).numpy()
    mismatch = sum(int((a != o).sum()) for a, o in zip(inside, occupancy, strict=True))

    # --- timings (best of N)
    def simkit_mass() -> None:
        for m in meshes:
            Mesh(m.vertices, m.faces).mass_properties()  # fresh object: no cached topology

    def simkit_mass_batched() -> None:
        batch_mass_properties([Mesh(m.vertices, m.faces) for m in meshes])

    def trimesh_mass() -> None:
        for t in tms:
            t._cache.clear()
            _ = t.mass_properties

    def simkit_vox() -> None:
        VoxelGrid.from_mesh([Mesh(m.vertices, m.faces) for m in meshes], res)

    def trimesh_fill() -> None:
        for t in tms:
            t._cache.clear()
            t.voxelized(float(t.extents.max()) / res).fill()

    trimesh_mass_s = best_of(trimesh_mass, args.repeats)
    simkit_vox_s = best_of(simkit_vox, args.repeats)
    rows = [
        (
            "mass properties, per mesh",
            best_of(simkit_mass, args.repeats),
            "trimesh mass_properties",
            trimesh_mass_s,
        ),
        (
            "mass properties, batched",
            best_of(simkit_mass_batched, args.repeats),
            "trimesh mass_properties",
            trimesh_mass_s,
        ),
        (
            f"voxelize {res}^3 (solid)",
            simkit_vox_s,
            "trimesh voxelized().fill()",
            best_of(trimesh_fill, max(1, args.repeats // 2)),
        ),
        (f"voxelize {res}^3 (solid)", simkit_vox_s, "trimesh contains(centres)", contains_s),
    ]
    machine = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"
    print(f"batch: {len(tms)} closed meshes, {faces} faces; machine: {machine}")
    print(
        f"agreement: max relative error of volume/inertia vs trimesh {max(rel):.2e}; "
        f"voxel centres disagreeing with trimesh.contains: {mismatch} of {centres.size // 3}"
    )
    print(f"{'task':<28}{'simkit s':>10}  {'peer':<28}{'peer s':>10}{'speed-up':>10}")
    results = []
    for task, ours, peer, theirs in rows:
        print(f"{task:<28}{ours:>10.4f}  {peer:<28}{theirs:>10.4f}{theirs / ours:>9.1f}x")
        results.append(
            {
                "task": task,
                "simkit_s": ours,
                "peer": peer,
                "peer_s": theirs,
                "speedup": theirs / ours,
            }
        )
    out = {
        "date": date.today().isoformat(),
        "machine": machine,
        "meshes": len(tms),
        "faces": faces,
        "resolution": res,
        "max_rel_error_vs_trimesh": max(rel),
        "voxel_mismatch": mismatch,
        "results": results,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
