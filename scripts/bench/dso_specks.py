"""Where in the sampler a fine-tune's specks (and its standing) come from.

Every simulation-feedback fine-tune so far makes more *specks*: extra pieces of one or two
voxels beside the surface, so that fewer samples come out as one solid. This diagnostic
hands the sampler over from one checkpoint to another part-way down the noise schedule:
the first ``k`` network evaluations are made with ``--first``, the rest with ``--second``
(``k`` = 0: ``--second`` alone; ``k`` >= the evaluations: ``--first`` alone), on the same
seeds and prior draws. For each ``k`` it reports

* valid: the fraction of samples that are one solid (diagonal contacts bridged, as
  ``simkit generate`` does);
* extra pieces per sample, and the share of those of at most two voxels (specks);
* stands: the fraction whose largest piece (what ``simkit generate`` saves) stands in
  PyBullet (:class:`generators.align.StabilityReward`);

so that a property that appears when the fine-tuned model takes over at some noise level
is decided at or below that level.

    python scripts/bench/dso_specks.py --first shapes-dso --second shapes-base \\
        --handover 0,11,17,25,99 [--per-family 16] [--seed 123] [--workers 2]

(with Heun and 18 steps the sampler makes 35 evaluations; the script prints the noise
level of each handover point).
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch
from _common import cpu_model, table

from generators.align import StabilityReward
from generators.generate import load_pipeline


class _Handover:
    """A forward pre-hook that swaps the network's weights for ``second`` at call ``k``."""

    def __init__(self, unet: torch.nn.Module, second: dict, k: int) -> None:
        self.first = {n: t.clone() for n, t in unet.state_dict().items()}
        self.second, self.k, self.calls, self.unet = second, k, 0, unet

    def __call__(self, module: torch.nn.Module, args: tuple) -> None:
        if self.calls == self.k:
            self.unet.load_state_dict(self.second)
        self.calls += 1

    def restore(self) -> None:
        self.unet.load_state_dict(self.first)


def extra_pieces(labels: torch.Tensor) -> list[int]:
    """Sizes of every piece but the largest, over all grids, from
    :meth:`~simkit.geometry.VoxelGrid.connected_components`' labels (largest is 1)."""
    sizes = [torch.bincount(lab.flatten())[2:] for lab in labels]
    return [int(v) for s in sizes for v in s]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--first", default="shapes-dso")
    ap.add_argument("--second", default="shapes-base")
    ap.add_argument("--handover", default="0,11,17,25,99")
    ap.add_argument("--per-family", type=int, default=16)
    ap.add_argument("--seed", type=int, default=123)
    ap.add_argument("--steps", type=int, default=18)
    ap.add_argument("--guidance", type=float, default=2.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", default="scripts/bench/results/dso_specks.json")
    args = ap.parse_args()
    ks = [int(k) for k in args.handover.split(",")]
    if any(k < 0 for k in ks):
        raise SystemExit(f"--handover points must be >= 0, got {args.handover}")

    pipe = load_pipeline(args.first)
    second = load_pipeline(args.second)

    def arch(unet: torch.nn.Module) -> dict:
        return {k: v for k, v in unet.config.items() if not k.startswith("_")}

    if arch(pipe.unet) != arch(second.unet):
        raise SystemExit(f"{args.first} and {args.second} have different networks")
    second_sd = {n: t.to(pipe.unet.dtype) for n, t in second.unet.state_dict().items()}
    pipe.scheduler.set_timesteps(args.steps)
    sigmas = [float(s) for s in pipe.scheduler.sigmas]
    labels = [f for f in pipe.families for _ in range(args.per_family)]
    reward = StabilityReward(workers=args.workers)
    rows = []
    for k in ks:
        hook = _Handover(pipe.unet, second_sd, k)
        handle = pipe.unet.register_forward_pre_hook(hook)
        try:
            t0 = time.perf_counter()
            with torch.no_grad():
                res = pipe(
                    batch_size=len(labels),
                    class_labels=labels,
                    num_inference_steps=args.steps,
                    guidance_scale=args.guidance,
                    generator=torch.Generator().manual_seed(args.seed),
                    keep_largest=False,
                )
        finally:
            handle.remove()
            hook.restore()
        labels, _ = res.voxels.connected_components(1)
        extra = extra_pieces(labels)
        big = res.voxels.largest_component(1)
        verdicts = reward.judge([big[i].to_mesh()[0] for i in range(len(labels))])
        n_eval = hook.calls
        rows.append(
            {
                "handover": min(k, n_eval),
                "sigma": sigmas[k] if k < n_eval else 0.0,
                "first_evals": min(k, n_eval),
                "second_evals": max(0, n_eval - k),
                "valid": float(res.valid.float().mean()),
                "extra_pieces": len(extra) / len(labels),
                "specks_share": float(np.mean([s <= 2 for s in extra])) if extra else 0.0,
                "stands": float(np.mean([bool(v.passed) for v in verdicts])),
                "seconds": time.perf_counter() - t0,
            }
        )
        print(table(rows[-1:], list(rows[-1])), flush=True)
    cols = [
        "handover",
        "sigma",
        "first_evals",
        "second_evals",
        "valid",
        "extra_pieces",
        "specks_share",
        "stands",
    ]
    print(f"\nfirst: {args.first}, then: {args.second}, {len(labels)} samples")
    print(table(rows, cols))
    result = {
        "date": date.today().isoformat(),
        "machine": cpu_model(),
        "command": "python scripts/bench/dso_specks.py "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "json"),
        "first": args.first,
        "second": args.second,
        "n": len(labels),
        "rows": rows,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
