"""Does the generator draw thin parts? Lamps, the family with the thinnest part (issue 4).

Three probes of a checkpoint, ``--n`` lamps each (class-conditional, Heun, 18 steps):

* *gap*: the fraction of sampled lamps with an empty horizontal layer between their
  lowest and highest occupied ones (a pole not drawn), and the fraction that are one
  26-connected solid, raw samples (no bridging, nothing dropped), at w = 1 and 2;
* *repair*: held-out procedural lamps with their pole cut out (layers of at most 6
  voxels emptied) are noised at sigma and sampled back to 0 (w = 1): the fraction that
  gets a pole back (no gap). A network that knows lamps have poles restores them;
* *high noise*: the EDM-weighted loss of the network against the ideal denoiser over
  the training set (all eight turns, one family at a time, ``pfgmpp.ideal_denoiser``) on
  held-out objects at large sigma, where the posterior is broad and the ideal is the
  target (ratio 1 is perfect).

    python scripts/bench/thin_parts.py [--checkpoint shapes-base] [--n 24]
"""

from __future__ import annotations

import argparse
import json

import torch

from generators.generate import checkpoint_path, load_pipeline
from generators.models import Denoiser
from generators.pfgmpp import ideal_denoiser, loss_weight, sample_noise
from generators.train import random_turns
from simkit.geometry import VoxelGrid
from simkit.shapes import FAMILIES, dataset


def gap_and_solid(occ: torch.Tensor) -> tuple[float, float]:
    """(fraction with an empty layer inside their height, fraction one 26-solid)."""
    _, counts = VoxelGrid(
        occ, origin=(0.0, 0.0, 0.0), pitch=1 / occ.shape[-1]
    ).connected_components(3)
    layers = occ.flatten(1, 2).any(1)  # (B, R): z layers with anything in them
    gaps = []
    for row in layers:
        z = torch.nonzero(row).flatten()
        gaps.append(len(z) == 0 or bool((~row[z.min() : z.max() + 1]).any()))
    return sum(gaps) / len(gaps), float((counts == 1).double().mean())


def eight_turns(x: torch.Tensor) -> torch.Tensor:
    """(n, R, R, R) -> (8n, R, R, R): quarter turns about z and mirror images."""
    out = []
    for swap in (False, True):
        y = x.transpose(1, 2) if swap else x
        for dims in ((), (1,), (2,), (1, 2)):
            out.append(y.flip(dims) if dims else y)
    return torch.cat(out)


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--checkpoint", default="shapes-base")
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    pipe = load_pipeline(args.checkpoint)
    pipe.set_progress_bar_config(disable=True)
    lamp = pipe.families.index("lamp")
    result: dict = {"checkpoint": str(checkpoint_path(args.checkpoint)), "n": args.n}

    for w in (1.0, 2.0):
        out = pipe(
            args.n,
            18,
            torch.Generator().manual_seed(0),
            "lamp",
            w,
            keep_largest=False,
            bridge=False,
        )
        gap, solid = gap_and_solid(out.samples[:, 0] > 0)
        result[f"w{w:g}"] = {"gap": gap, "one_solid_26": solid}
        print(
            f"sampled lamps, w = {w:g}: {gap:.0%} with a gap, {solid:.0%} one 26-solid", flush=True
        )

    real = dataset(args.n, 16, seed=777, families=("lamp",)).voxels[:, None] * 2 - 1
    cut = real.clone()
    thin_layer = ((real > 0).sum((1, 2, 3)) <= 6) & ((real > 0).sum((1, 2, 3)) > 0)  # (n, R)
    cut.permute(0, 4, 1, 2, 3)[thin_layer] = -1.0
    assert gap_and_solid(cut[:, 0] > 0)[0] == 1.0, "every cut lamp must have a gap"
    cfg = pipe.scheduler.config
    ramp = torch.linspace(0, 1, 18)
    karras = (
        cfg.sigma_max ** (1 / cfg.rho)
        + ramp * (cfg.sigma_min ** (1 / cfg.rho) - cfg.sigma_max ** (1 / cfg.rho))
    ) ** cfg.rho
    for s0 in (2.0, 4.0, 8.0):
        g = torch.Generator().manual_seed(1)
        x = cut + s0 * torch.randn(cut.shape, generator=g)
        sigmas = [s for s in karras.tolist() if s < s0]
        x = _ode(pipe, x, [s0, *sigmas, 0.0], lamp)
        gap, _ = gap_and_solid(x[:, 0] > 0)
        result[f"repair_sigma{s0:g}"] = 1 - gap
        print(
            f"pole cut, noised at sigma {s0:g}, sampled back: {1 - gap:.0%} get a pole", flush=True
        )

    data = dataset(2700, 16, seed=0)
    held = dataset(16 * len(FAMILIES), 16, seed=777)
    den = Denoiser(pipe.unet, pipe.scheduler.config.sigma_data)
    g = torch.Generator().manual_seed(0)
    x0_all = random_turns(held.voxels[:, None] * 2 - 1, g)
    for s in (5.0, 10.0, 80.0):
        ours = ideal = 0.0
        for f in range(len(FAMILIES)):
            atoms = eight_turns(data.voxels[data.labels == f] * 2 - 1)[:, None]
            x0 = x0_all[held.labels == f]
            x = x0 + s * sample_noise(tuple(x0.shape), 1.0, pipe.scheduler.config.D, g)
            labels = torch.full((len(x0),), f)
            lw = float(loss_weight(torch.tensor(s), pipe.scheduler.config.sigma_data))
            ours += lw * float(
                (den(x, torch.full((len(x0),), s), class_labels=labels) - x0).pow(2).mean()
            )
            ideal += lw * float(
                (ideal_denoiser(x, s, atoms, None, pipe.scheduler.config.D) - x0).pow(2).mean()
            )
        result[f"loss_ratio_sigma{s:g}"] = ours / ideal
        print(f"sigma {s:g}: loss / ideal denoiser's = {ours / ideal:.3f}", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)


def _ode(pipe, x: torch.Tensor, sigmas: list[float], label: int) -> torch.Tensor:
    """Heun on the probability-flow ODE through ``sigmas`` (conditional, w = 1)."""
    den = Denoiser(pipe.unet, pipe.scheduler.config.sigma_data)
    labels = torch.full((len(x),), label)

    def d(x: torch.Tensor, s: float) -> torch.Tensor:
        return (x - den(x, torch.full((len(x),), s), class_labels=labels)) / s

    for s, t in zip(sigmas[:-1], sigmas[1:], strict=True):
        k = d(x, s)
        y = x + (t - s) * k
        x = x + (t - s) * (k + d(y, t)) / 2 if t > 0 else y
    return x


if __name__ == "__main__":
    main()
