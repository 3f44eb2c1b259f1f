"""Pair finished ``simkit evaluate`` runs seed by seed, without drawing anything again.

Each argument is an evaluation's ``--out`` folder (or any collection folder: one with a
``manifest.json``; for an evaluation its ``samples/`` is read). All must hold the same
seeds and conditions (the same ``--seed`` and ``--n``). For each one this prints, overall
and per family, how often its objects stand, how often they are recognised as the
family asked for (nearest held-out procedural object up to turns, exactly as ``simkit
evaluate`` measures it: data seed 777, as many a family as the evaluation has), and how
often both; every run after the first is paired with the first (exact McNemar on the
seeds where only one of the two passes). This is how runs evaluated at different times,
or at settings ``--baseline`` cannot pair (another guidance weight), are compared.

    python scripts/bench/pair_evaluations.py FIRST SECOND [MORE ...] [--json PATH]
    python scripts/bench/pair_evaluations.py runs/shapes-dso-eval504 runs/soup-eval504
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from generators.align.collect import load_collection
from generators.align.data import procedural_objects
from generators.align.evaluate import mcnemar_exact, wilson_interval
from generators.align.reward import family_margins
from simkit.io import write_json
from simkit.shapes import FAMILIES


def _collection_folder(path: Path) -> Path:
    if (path / "manifest.json").is_file():
        return path
    if (path / "samples" / "manifest.json").is_file():
        return path / "samples"
    raise SystemExit(f"{path}: neither a collection nor an evaluation folder (no manifest.json)")


def _rate(hits: torch.Tensor) -> dict[str, float]:
    k, n = int(hits.sum()), len(hits)
    lo, hi = wilson_interval(k, n)
    return {"rate": k / n if n else math.nan, "lo": lo, "hi": hi}


def _versus(q: dict) -> str:
    return f"+{q['only_this']}/-{q['only_first']}, p = {q['mcnemar_p']:.2g}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    if len(args.folders) < 2:
        raise SystemExit("give at least two evaluations to pair")

    cols = [load_collection(_collection_folder(f)) for f in args.folders]
    keys = [[(r.seed, r.condition) for r in c.records] for c in cols]
    for f, k in zip(args.folders[1:], keys[1:], strict=True):
        if k != keys[0]:
            raise SystemExit(
                f"{f} and {args.folders[0]} were not drawn on the same seeds and conditions "
                "(evaluate both with the same --seed and --n)"
            )
    asked = [c for _, c in keys[0]]
    unknown = sorted(set(asked) - set(FAMILIES))
    if unknown:
        raise SystemExit(f"no procedural references for {unknown}: recognition needs them")
    families = sorted(set(asked), key=asked.index)
    by_family = {f: torch.tensor([a == f for a in asked]) for f in families}
    per = max(int(m.sum()) for m in by_family.values())
    res = cols[0].occupancy.shape[-1]
    ref_occ, ref_names = procedural_objects(per, res, 777, FAMILIES)

    measures = []
    for col in cols:
        # An object nobody could judge (passed is None) counts as not standing.
        stands = torch.tensor([bool(r.passed) for r in col.records])
        recognised = family_margins(col.occupancy, asked, ref_occ, ref_names) >= 0
        measures.append({"stands": stands, "recognised": recognised, "both": stands & recognised})

    report: dict = {"folders": [str(f) for f in args.folders], "n": len(asked), "runs": []}
    head = f"{'':<28}" + "".join(f"{m:>26}" for m in ("stands", "recognised", "both"))
    print(head)
    for i, (folder, m) in enumerate(zip(args.folders, measures, strict=True)):
        entry: dict = {"folder": str(folder), "overall": {}, "per_family": {}, "paired": {}}
        cells = []
        for name, hits in m.items():
            r = _rate(hits)
            entry["overall"][name] = r
            cell = f"{r['rate']:.1%} ({r['lo']:.1%}-{r['hi']:.1%})"
            if i > 0:
                first = measures[0][name]
                a, b = int((hits & ~first).sum()), int((first & ~hits).sum())
                p = mcnemar_exact(a, b)
                entry["paired"][name] = {"only_this": a, "only_first": b, "mcnemar_p": p}
            cells.append(cell)
        for f, sel in by_family.items():
            entry["per_family"][f] = {name: float(h[sel].float().mean()) for name, h in m.items()}
        report["runs"].append(entry)
        print(f"{folder.resolve().name[:27]:<28}" + "".join(f"{c:>26}" for c in cells))
        if i > 0:
            print(
                f"{'  vs first (+/-, p)':<28}"
                + "".join(f"{_versus(q):>26}" for q in entry["paired"].values())
            )
    print("\nper family, stands / recognised (%):")
    print(f"{'':<28}" + "".join(f"{f[:9]:>10}" for f in families))
    for entry in report["runs"]:
        print(
            f"{Path(entry['folder']).resolve().name[:27]:<28}"
            + "".join(
                f"{100 * v['stands']:>5.0f}/{100 * v['recognised']:<4.0f}"
                for v in entry["per_family"].values()
            )
        )
    if args.json is not None:
        write_json(args.json, report)


if __name__ == "__main__":
    main()
