"""Write the shipped reference meshes in assets/meshes/ (one per shape family).

    python scripts/make_reference_meshes.py [--out assets/meshes] [--seed 0]

Each family's first sample for the seed is written as .obj (one .glb and one .ply are
written too, so every reader path has a shipped file to test), and assets/meshes/
reference.json records the parameters and trimesh's mass properties of every file.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from simkit import shapes
from simkit.io import write_json


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", default="assets/meshes")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    out = Path(args.out)
    records = []
    for family in shapes.FAMILIES:
        s = shapes.sample(family, 1, seed=args.seed)[0]
        suffix = {"table": ".glb", "mug": ".ply"}.get(family, ".obj")
        path = s.mesh.save(out / f"{family}{suffix}")
        tm = s.mesh.to_trimesh()
        records.append(
            {
                "file": path.name,
                "family": family,
                "seed": s.seed,
                "params": s.params,
                "trimesh_volume": float(tm.volume),
                "trimesh_center_of_mass": tm.center_mass.tolist(),
                "trimesh_inertia": tm.moment_inertia.tolist(),
            }
        )
        print(f"wrote {path}")
    write_json(out / "reference.json", {"seed": args.seed, "density": 1.0, "meshes": records})


if __name__ == "__main__":
    main()
