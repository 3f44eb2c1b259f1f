"""Stability-check throughput: objects per second, serial and pooled (issue 3's benchmark, part).

Three kinds of object, each simulated with the default StabilityConfig (10 s, 4 nudge
trials, early stop on a fall or at rest):

* 16^3 and 32^3 voxel objects: procedural shapes voxelized by simkit.shapes.dataset and
  re-surfaced by marching cubes (what a voxel generator hands the simulator);
* ~10k-face meshes: procedural shapes subdivided (trimesh) until they pass 10k faces.

Each row runs the same objects with ``evaluate(backend="serial")`` and with the process
pool (``--workers``; the pool persists across ``evaluate`` calls, so it is started once,
before the first row, and its start-up time is reported on its own), and, where ``mujoco`` is installed (the ``dev`` extra), with a
re-implementation of DSO's check as the peer, in one run: one free body per mesh with a
``type="mesh"`` geom (MuJoCo collides its convex hull), MuJoCo's defaults for density,
friction and inertia, 10 s at dt = 1 ms, stable iff the final rotation angle
2 acos(|w|) < 20 degrees (see shared/papers/dso.md). It runs serially, as DSO's one
process per object does per core.

Rates are the best of ``--repeats`` runs (serial, pool and peer measured in turn each
time), to damp the load of other jobs on a shared machine.

    python scripts/bench/stability.py [--n 36] [--workers 2] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from datetime import date
from pathlib import Path

import torch

from simkit import shapes
from simkit.geometry import Mesh, VoxelGrid
from simkit.physics import StabilityConfig, evaluate


def voxel_objects(n: int, resolution: int, seed: int) -> list[Mesh]:
    data = shapes.dataset(n, resolution=resolution, seed=seed)
    grid = VoxelGrid(data.voxels > 0.5, torch.zeros(3), 1.0 / resolution)
    return grid.largest_component().to_mesh()


def dense_meshes(n: int, seed: int, min_faces: int = 10_000) -> list[Mesh]:
    out = []
    families = shapes.FAMILIES
    for i in range(n):
        tm = shapes.sample(families[i % len(families)], 1, seed=seed + i)[0].mesh.to_trimesh()
        while len(tm.faces) < min_faces:
            tm = tm.subdivide()
        out.append(Mesh.from_trimesh(tm))
    return out


def dso_mujoco_check(mesh: Mesh) -> bool:
    """DSO's stability check, re-implemented from the method note (not their code)."""
    import mujoco

    v = mesh.vertices.detach().cpu().double().numpy()
    v = v - [0.0, 0.0, v[:, 2].min()]  # lowest vertex on the floor
    verts = " ".join(f"{x:.9g}" for x in v.ravel())
    faces = " ".join(str(int(i)) for i in mesh.faces.cpu().numpy().ravel())
    xml = f"""<mujoco><option timestep="0.001"/>
      <asset><mesh name="m" vertex="{verts}" face="{faces}"/></asset>
      <worldbody><geom type="plane" size="100 100 0.1"/>
        <body><freejoint/><geom type="mesh" mesh="m"/></body></worldbody></mujoco>"""
    model = mujoco.MjModel.from_xml_string(xml)
    data = mujoco.MjData(model)
    mujoco.mj_step(model, data, 10_000)
    angle = 2.0 * math.degrees(math.acos(min(1.0, abs(float(data.qpos[3])))))
    return angle < 20.0


def dso_rate(objs: list[Mesh]) -> tuple[float, list[bool]] | None:
    """Objects per second of the DSO peer (serial), and its verdicts; None without mujoco."""
    try:
        import mujoco  # noqa: F401
    except ImportError:
        return None
    t0 = time.perf_counter()
    verdicts = [dso_mujoco_check(m) for m in objs]
    return len(objs) / (time.perf_counter() - t0), verdicts


def rate(
    objs: list[Mesh], config: StabilityConfig, backend: str, workers: int
) -> tuple[float, list[bool]]:
    t0 = time.perf_counter()
    results = evaluate(objs, config, backend=backend, workers=workers, progress=False)
    elapsed = time.perf_counter() - t0
    assert all(r.error is None for r in results), [r.error for r in results if r.error]
    return len(objs) / elapsed, [r.stable for r in results]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=36)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=2, help="rates are the best of this many runs")
    ap.add_argument("--json", default="scripts/bench/results/stability.json")
    args = ap.parse_args()
    config = StabilityConfig(seed=args.seed)
    sets = {
        "16^3 voxel objects": voxel_objects(args.n, 16, args.seed),
        "32^3 voxel objects": voxel_objects(args.n, 32, args.seed),
        "~10k-face meshes": dense_meshes(args.n, args.seed),
    }
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores; {args.n} objects a row; workers {args.workers}"
    )
    # Start the persistent pool (and its workers' imports) once, outside the timings.
    t0 = time.perf_counter()
    evaluate(
        sets["16^3 voxel objects"][: args.workers], config, workers=args.workers, progress=False
    )
    startup = time.perf_counter() - t0
    print(f"pool start-up (first call, {args.workers} objects): {startup:.2f} s")
    print(
        f"{'objects':<22}{'faces':>8}{'serial obj/s':>14}{'pool obj/s':>12}{'per core':>10}{'scaling':>9}"
        f"{'DSO obj/s':>11}{'vs DSO':>8}{'same verdict':>14}"
    )
    rows = []
    for name, objs in sets.items():
        faces = sum(m.num_faces for m in objs) // len(objs)
        # Best of --repeats, the three measured in turn each time: on a shared machine the
        # load changes over a row, and the best run is the least disturbed one.
        serials, pools, dsos, same = [], [], [], float("nan")
        for _ in range(args.repeats):
            rate_s, stable_s = rate(objs, config, "serial", 1)
            rate_p, stable_p = rate(objs, config, "process", args.workers)
            assert stable_s == stable_p
            serials.append(rate_s)
            pools.append(rate_p)
            peer = dso_rate(objs)
            if peer is not None:
                dsos.append(peer[0])
                same = sum(a == b for a, b in zip(stable_s, peer[1], strict=True)) / len(objs)
        serial, pooled = max(serials), max(pools)
        dso = max(dsos) if dsos else float("nan")
        print(
            f"{name:<22}{faces:>8}{serial:>14.1f}{pooled:>12.1f}{pooled / args.workers:>10.1f}"
            f"{pooled / serial:>8.2f}x{dso:>11.1f}{serial / dso:>7.1f}x{same:>13.1%}"
        )
        rows.append({
            "objects": name, "mean_faces": faces, "serial_per_s": serial, "pool_per_s": pooled,
            "workers": args.workers, "stable": sum(stable_s), "dso_mujoco_per_s": dso,
            "same_verdict_as_dso": same,
        })  # fmt: skip
    out = {
        "date": date.today().isoformat(),
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "n": args.n,
        "repeats": args.repeats,
        "pool_startup_s": startup,
        "config": {
            "time_step_s": config.time_step_s,
            "check_every": config.check_every,
            "solver_iterations": config.solver_iterations,
            "trials": config.trials,
        },
        "rows": rows,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
