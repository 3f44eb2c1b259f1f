"""Do PyBullet's verdicts agree with the analytic support check? (issue 3's acceptance figure)

Samples N procedural objects (evenly over simkit.shapes.FAMILIES), simulates them with
the process pool and compares each verdict with the sign of ``support_margin``. Objects
whose margin is within ``--band`` of zero are reported separately: there the 1-degree
nudge legitimately decides (an object whose static tipping angle is under 1 degree
cannot survive it). Every disagreement is listed with its family, margin, final tilt
and a class:

* ``settles-on-second-support``: it tips (margin < 0) but comes to rest on another
  part (a mug on its handle, a table on the edge of its top) at a tilt under the
  threshold, which DSO's 20-degree rule calls standing;
* ``tips-within-nudge``: margin > 0 but the static tipping angle atan(margin / h_com)
  is below the nudge, so the nudge alone carries the centre of mass past the edge;
* ``other``: anything else (look at these).

    python scripts/bench/stability_agreement.py [--n 504] [--seed 0] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from datetime import date
from pathlib import Path

from simkit import shapes
from simkit.physics import StabilityConfig, evaluate, support_margin
from simkit.physics.quasistatic import quasi_static_check


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=504)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument(
        "--band", type=float, default=0.005, help="metres: |margin| below this is 'marginal'"
    )
    ap.add_argument("--json", default="scripts/bench/results/stability_agreement.json")
    args = ap.parse_args()

    config = StabilityConfig(seed=args.seed)
    per_family = math.ceil(args.n / len(shapes.FAMILIES))
    samples = [
        s for fam in shapes.FAMILIES for s in shapes.sample(fam, per_family, seed=args.seed)
    ][: args.n]
    meshes = [s.mesh for s in samples]
    t0 = time.perf_counter()
    results = evaluate(meshes, config, workers=args.workers, backend="process")
    elapsed = time.perf_counter() - t0

    rows, classes = [], {}
    agree_all = agree_clear = clear = agree_qs = 0
    qs_rows = []
    for s, r in zip(samples, results, strict=True):
        qs = quasi_static_check(s.mesh, config)
        agree_qs += r.error is None and qs.stable == r.stable
        if r.error is None and qs.stable != r.stable:
            qs_rows.append(
                {
                    "family": s.family,
                    "seed": s.seed,
                    "quasi_static_stable": qs.stable,
                    "quasi_static_tilt_deg": qs.tilt_deg,
                    "sim_stable": r.stable,
                    "sim_tilt_deg": r.tilt_deg,
                }
            )
        margin = support_margin(s.mesh)
        h_com = float(s.mesh.center_of_mass()[2] - s.mesh.bounds[0, 2])
        analytic = margin > 0
        same = r.error is None and r.stable == analytic
        agree_all += same
        if abs(margin) > args.band:
            clear += 1
            agree_clear += same
        if not same:
            tipping_deg = math.degrees(math.atan2(margin, h_com))
            if r.error is not None:
                kind = "error"
            elif not analytic and r.stable:
                kind = (
                    "settles-on-second-support" if r.tilt_deg > 1.5 * config.nudge_deg else "other"
                )
            elif analytic and not r.stable and tipping_deg < config.nudge_deg:
                kind = "tips-within-nudge"
            else:
                kind = "other"
            classes[kind] = classes.get(kind, 0) + 1
            rows.append(
                {
                    "family": s.family,
                    "seed": s.seed,
                    "margin_m": margin,
                    "static_tipping_deg": tipping_deg,
                    "sim_stable": r.stable,
                    "sim_tilt_deg": r.tilt_deg,
                    "class": kind,
                    "error": r.error,
                }
            )

    n = len(samples)
    print(f"{n} objects, {args.workers} workers, {elapsed:.1f} s ({n / elapsed:.1f} objects/s)")
    print(f"agreement, all objects:            {agree_all}/{n} = {agree_all / n:.2%}")
    print(
        f"agreement, |margin| > {1000 * args.band:.0f} mm:         {agree_clear}/{clear} = {agree_clear / max(clear, 1):.2%}"
    )
    print(
        f"agreement with the quasi-static check (same nudges): {agree_qs}/{n} = {agree_qs / n:.2%}"
    )
    for row in qs_rows:
        print(
            f"  quasi-static disagrees: {row['family']:<10} qs {'stands' if row['quasi_static_stable'] else 'falls'} "
            f"at {row['quasi_static_tilt_deg']:.1f} deg, sim {'stands' if row['sim_stable'] else 'falls'} at {row['sim_tilt_deg']:.1f} deg"
        )
    print("support-margin disagreements by class:", classes or "none")
    for row in rows:
        print(
            f"  {row['family']:<10} margin {1000 * row['margin_m']:+7.1f} mm  tipping {row['static_tipping_deg']:+6.2f} deg  "
            f"sim {'stands' if row['sim_stable'] else 'falls'} at {row['sim_tilt_deg']:.1f} deg  [{row['class']}]"
        )
    out = {
        "date": date.today().isoformat(),
        "machine": platform.machine(),
        "n": n,
        "seed": args.seed,
        "workers": args.workers,
        "seconds": elapsed,
        "agree_all": agree_all,
        "agree_clear": agree_clear,
        "clear": clear,
        "band_m": args.band,
        "classes": classes,
        "disagreements": rows,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
