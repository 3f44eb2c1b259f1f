"""Benchmark: PFGM++ / EDM ODE samplers against the truth and against diffusers' EDM schedulers.

Data: K weighted atoms in N = 64 dimensions (per-coordinate spread ≈ σ_data = 0.5), whose
ideal denoiser E[y | x] is known in closed form for every D (``generators.pfgmpp.ideal_denoiser``).
So any error is the sampler's (discretisation, prior, perturbations), not a network's.

Sections:
1. quality vs NFE: PFGMPPScheduler at D ∈ {16, 128, 2048, ∞} × {euler, heun, dpmpp_2m};
   peers diffusers EDMEulerScheduler and EDMDPMSolverMultistepScheduler (solver_order=2) at
   D = ∞ on identical latents and the identical model.
2. robustness probes (paper sec. 5): Heun, noise injection x += α·σ_i·ε before every step
   (α ∈ {0, 0.1, 0.2}); and an imperfect denoiser: the ideal one plus a fixed smooth error
   of size η in the network's output (F) space, i.e. D̂ = D* + c_out(σ)·η·sin(A·c_in·x + c_noise·v).
3. scheduler overhead: time per full 18-step sampling loop, ours (euler, D=None) over
   EDMEulerScheduler and ours (dpmpp_2m) over EDMDPMSolverMultistepScheduler, with a cheap
   model (so that the scheduler's own cost is what is timed) at two tensor sizes, and a
   small 3D conv net on 16³ voxels (where the model dominates; on a shared machine that row
   is within timing noise).

Metrics (n samples): tv, the total-variation distance between nearest-atom frequencies and
the weights (printed with its noise floor for n iid draws), the chi-square goodness-of-fit
p-value of those frequencies, on_atom, the fraction within ε = 0.05 of an atom, rms, the RMS
distance to the nearest atom, and flip, the fraction of samples whose atom differs from a
converged run (Heun, 64 steps) from the same latents: a paired, noise-free measure of the
sampler's error, since every exact sampler maps the same latent to the same atom.

Run: .venv/bin/python scripts/bench/samplers.py   (defaults: --n 3000 --seed 0 --probe-seeds 3, ~2-3 minutes)
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from _common import cpu_model, table  # scripts/bench/_common.py
from diffusers import EDMDPMSolverMultistepScheduler, EDMEulerScheduler
from scipy import stats

from generators.pfgmpp import ideal_denoiser, sample_prior
from generators.schedulers import PFGMPPScheduler

N_DIM, SIGMA_DATA, SIGMA_MAX, EPS, REF_STEPS = 64, 0.5, 80.0, 0.05, 64
WEIGHTS = torch.tensor([0.3, 0.2, 0.15, 0.1, 0.1, 0.08, 0.05, 0.02], dtype=torch.float64)
D_VALUES: list[float | None] = [16.0, 128.0, 2048.0, None]


def _dname(D: float | None) -> str:
    return "inf" if D is None else f"{D:g}"


class Problem:
    """Atoms, the true law, and metrics of a sample against it."""

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.atoms = (torch.randn(len(WEIGHTS), N_DIM, generator=g) * SIGMA_DATA).float()
        self.n = n
        # noise floor: E[TV] between the weights and the frequencies of n iid draws
        draws = torch.multinomial(WEIGHTS, n * 200, replacement=True, generator=g).reshape(200, n)
        freq = torch.stack([torch.bincount(d, minlength=len(WEIGHTS)) for d in draws]).double() / n
        self.tv_floor = float(0.5 * (freq - WEIGHTS).abs().sum(1).mean())

    def nearest(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        d = torch.cdist(x.double(), self.atoms.double())
        return d.min(dim=1)

    def metrics(self, x: torch.Tensor, reference: torch.Tensor | None = None) -> dict[str, float]:
        """tv: TV(nearest-atom frequencies, weights); chi2_p: chi-square goodness-of-fit p;
        on_atom: fraction within EPS of an atom; rms: RMS distance to the nearest atom;
        flip: fraction whose nearest atom differs from ``reference`` (paired, noise-free)."""
        if not torch.isfinite(x).all():
            return {"tv": 1.0, "chi2_p": 0.0, "on_atom": 0.0, "rms": math.inf, "flip": 1.0}
        dmin, idx = self.nearest(x)
        counts = torch.bincount(idx, minlength=len(WEIGHTS)).double()
        out = {
            "tv": float(0.5 * (counts / len(x) - WEIGHTS).abs().sum()),
            "chi2_p": float(stats.chisquare(counts.numpy(), (WEIGHTS * len(x)).numpy()).pvalue),
            "on_atom": float((dmin < EPS).double().mean()),
            "rms": float(dmin.pow(2).mean().sqrt()),
        }
        out["flip"] = float((idx != reference).double().mean()) if reference is not None else 0.0
        return out


class EDMModel:
    """A model in diffusers' EDM convention: F(c_in·x, c_noise), from a denoiser D(x, σ).

    F = (D(x, σ) - c_skip·x) / c_out with σ = exp(4·c_noise) and x = input / c_in, so
    every scheduler sees exactly the same function. ``eta`` adds a fixed smooth error in F.
    """

    def __init__(self, problem: Problem, D: float | None, eta: float = 0.0, seed: int = 0) -> None:
        self.problem, self.D, self.eta = problem, D, eta
        g = torch.Generator().manual_seed(1000 + seed)
        self.A = torch.randn(N_DIM, N_DIM, generator=g) / math.sqrt(N_DIM)
        self.v = torch.randn(N_DIM, generator=g)
        self.calls = 0

    def __call__(self, inp: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        self.calls += 1
        t = float(t)
        sigma = math.exp(4.0 * t)
        total = sigma**2 + SIGMA_DATA**2
        c_skip, c_out = SIGMA_DATA**2 / total, sigma * SIGMA_DATA / math.sqrt(total)
        x = inp * math.sqrt(total)
        den = ideal_denoiser(x, sigma, self.problem.atoms, WEIGHTS, self.D)
        F = (den - c_skip * x) / c_out
        if self.eta:
            F = F + self.eta * torch.sin(inp @ self.A + t * self.v)
        return F


def sample(sched, model, latents, alpha: float = 0.0, seed: int = 0) -> torch.Tensor:
    """The standard diffusers loop; optional noise injection α·σ_i·ε before each solver step."""
    g = torch.Generator().manual_seed(seed)
    x = latents.clone()
    for k, t in enumerate(sched.timesteps):
        if (
            alpha
            and isinstance(sched, PFGMPPScheduler)
            and (sched.config.solver != "heun" or k % 2 == 0)
        ):
            sigma = sched.current_sigma  # k even: the start of a Heun step (not a correction)
            x = x + alpha * sigma * torch.randn(x.shape, generator=g, dtype=x.dtype)
        x = sched.step(model(sched.scale_model_input(x, t), t), t, x).prev_sample
    return x


_SETUPS: dict[tuple[str, int], tuple[torch.Tensor, torch.Tensor]] = {}


def _setup(problem: Problem, D: float | None, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Prior latents for D, and the nearest-atom labels of a converged run from them
    (Heun, REF_STEPS steps); cached, so every section uses the same ones."""
    key = (_dname(D), seed)
    if key not in _SETUPS:
        latents = sample_prior(
            (problem.n, N_DIM), SIGMA_MAX, D, torch.Generator().manual_seed(seed)
        )
        sched = PFGMPPScheduler(sigma_max=SIGMA_MAX, D=D, solver="heun")
        sched.set_timesteps(REF_STEPS)
        ref = problem.nearest(sample(sched, EDMModel(problem, D), latents))[1]
        _SETUPS[key] = (latents, ref)
    return _SETUPS[key]


def quality_vs_nfe(problem: Problem, seed: int) -> list[dict]:
    rows = []
    plans = {"euler": [5, 10, 20, 35], "dpmpp_2m": [5, 10, 20, 35], "heun": [3, 5, 10, 18]}
    for D in D_VALUES:
        latents, ref = _setup(problem, D, seed)
        rows.append(
            {
                "sampler": f"reference heun {REF_STEPS}",
                "D": _dname(D),
                "steps": REF_STEPS,
                "nfe": 2 * REF_STEPS - 1,
                **problem.metrics(problem.atoms[ref], ref),
            }
        )
        for solver, step_list in plans.items():
            for steps in step_list:
                sched = PFGMPPScheduler(sigma_max=SIGMA_MAX, D=D, solver=solver)
                sched.set_timesteps(steps)
                model = EDMModel(problem, D)
                x = sample(sched, model, latents)
                rows.append(
                    {
                        "sampler": f"PFGM++ {solver}",
                        "D": _dname(D),
                        "steps": steps,
                        "nfe": model.calls,
                        **problem.metrics(x, ref),
                    }
                )
        if D is None:
            peers = {
                "diffusers EDMEuler": lambda: EDMEulerScheduler(sigma_max=SIGMA_MAX),
                "diffusers EDMDPMSolver(2M)": lambda: EDMDPMSolverMultistepScheduler(
                    sigma_max=SIGMA_MAX, solver_order=2
                ),
            }
            for name, make in peers.items():
                for steps in plans["euler"]:
                    sched = make()
                    sched.set_timesteps(steps)
                    model = EDMModel(problem, None)
                    x = sample(sched, model, latents)
                    rows.append(
                        {
                            "sampler": name,
                            "D": "inf",
                            "steps": steps,
                            "nfe": model.calls,
                            **problem.metrics(x, ref),
                        }
                    )
    return rows


def robustness(problem: Problem, seeds: list[int]) -> list[dict]:
    """Heun (18 steps unless probing steps), one row per seed; flip is against the converged
    reference run from the same latents."""
    rows = []
    probes = [("alpha", a, 0.0, 18) for a in (0.0, 0.1, 0.2)]
    probes += [("eta", 0.0, e, 18) for e in (0.1, 0.3)]
    probes += [("steps", 0.0, 0.0, s) for s in (4, 6, 8)]
    for seed in seeds:
        for D in D_VALUES:
            latents, ref = _setup(problem, D, seed)
            for kind, alpha, eta, steps in probes:
                sched = PFGMPPScheduler(sigma_max=SIGMA_MAX, D=D, solver="heun")
                sched.set_timesteps(steps)
                model = EDMModel(problem, D, eta=eta, seed=seed)
                x = sample(sched, model, latents, alpha=alpha, seed=seed + 1)
                rows.append(
                    {
                        "probe": kind,
                        "alpha": alpha,
                        "eta": eta,
                        "steps": steps,
                        "nfe": model.calls,
                        "D": _dname(D),
                        "seed": seed,
                        **problem.metrics(x, ref),
                    }
                )
    return rows


def _summarise(rows: list[dict]) -> list[dict]:
    """Mean over seeds per (probe, D); rejected = seeds whose chi-square p < 0.01."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["probe"], r["alpha"], r["eta"], r["steps"], r["D"]), []).append(r)
    out = []
    for (probe, alpha, eta, steps, D), rs in groups.items():
        out.append(
            {
                "probe": probe,
                "alpha": alpha,
                "eta": eta,
                "steps": steps,
                "nfe": rs[0]["nfe"],
                "D": D,
                "seeds": len(rs),
                "flip": statistics.mean(r["flip"] for r in rs),
                "tv": statistics.mean(r["tv"] for r in rs),
                "rejected": f"{sum(r['chi2_p'] < 0.01 for r in rs)}/{len(rs)}",
                "on_atom": statistics.mean(r["on_atom"] for r in rs),
            }
        )
    order = {"alpha": 0, "eta": 1, "steps": 2}
    return sorted(out, key=lambda r: (order[r["probe"]], r["alpha"], r["eta"], -r["steps"]))


class _TinyConv3d(torch.nn.Module):
    """A small 3D conv net (~7.8k parameters) on (1, 1, 16, 16, 16): a realistic-sized model."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Conv3d(1, 16, 3, padding=1),
            torch.nn.SiLU(),
            torch.nn.Conv3d(16, 16, 3, padding=1),
            torch.nn.SiLU(),
            torch.nn.Conv3d(16, 1, 3, padding=1),
        )

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.net(x) + 0.01 * t


def overhead(repeats: int) -> list[dict]:
    """Full 18-step loops, ours and the peer interleaved. With the cheap model the time is
    the scheduler's own; for the conv net the direct ratio is swamped by timing noise on a
    shared machine, so ``ratio_derived`` = (model + our scheduler) / (model + peer scheduler)
    uses the model-only time and the cheap-model scheduler times at the same tensor shape."""
    torch.manual_seed(0)
    conv = _TinyConv3d().eval()

    def cheap(x, t):
        return 0.5 * x

    voxel = (1, 1, 16, 16, 16)
    models = {  # (latent shape, model, timed loops)
        "cheap: 0.5·x on (1, 64)": ((1, N_DIM), cheap, repeats),
        "cheap: 0.5·x on (1, 1, 16³)": (voxel, cheap, repeats),
        "3D conv, 3 layers × 16 ch on (1, 1, 16³)": (voxel, conv, 5),
    }
    pairs = {
        "euler vs EDMEulerScheduler": (lambda: PFGMPPScheduler(solver="euler"), EDMEulerScheduler),
        "dpmpp_2m vs EDMDPMSolverMultistep": (
            lambda: PFGMPPScheduler(solver="dpmpp_2m"),
            lambda: EDMDPMSolverMultistepScheduler(solver_order=2),
        ),
    }
    rows = []
    sched_only: dict[str, tuple[float, float]] = {}
    for mname, (shape, model, reps) in models.items():
        latents = torch.randn(shape, generator=torch.Generator().manual_seed(0)) * SIGMA_MAX
        model_ms = None
        if model is conv:
            ts = torch.full((18,), -0.5)
            with torch.no_grad():
                model(latents, ts[0])
                runs = []
                for _ in range(reps):
                    t0 = time.perf_counter()
                    for t in ts:
                        model(latents, t)
                    runs.append(time.perf_counter() - t0)
            model_ms = 1e3 * statistics.median(runs)
        for pname, (make_ours, make_peer) in pairs.items():
            ours, peer = make_ours(), make_peer()

            def loop(sched, model=model, latents=latents) -> float:
                t0 = time.perf_counter()
                sched.set_timesteps(18)
                x = latents
                with torch.no_grad():
                    for t in sched.timesteps:
                        x = sched.step(model(sched.scale_model_input(x, t), t), t, x).prev_sample
                return time.perf_counter() - t0

            loop(ours), loop(peer)  # warm-up
            t_ours, t_peer = [], []
            for _ in range(reps):  # interleaved, so drifts in machine load hit both
                t_ours.append(loop(ours))
                t_peer.append(loop(peer))
            mo, mp = statistics.median(t_ours), statistics.median(t_peer)
            row = {
                "model": mname,
                "pair": pname,
                "repeats": reps,
                "ours_ms": 1e3 * mo,
                "peer_ms": 1e3 * mp,
                "ratio_median": mo / mp,
                "ratio_min": min(t_ours) / min(t_peer),
                "model_ms": model_ms if model_ms is not None else "",
                "ratio_derived": "",
            }
            if model is cheap and shape == voxel:
                sched_only[pname] = (1e3 * mo, 1e3 * mp)
            if model_ms is not None:
                so, sp = sched_only[pname]
                row["ratio_derived"] = (model_ms + so) / (model_ms + sp)
            rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=3000, help="samples per configuration")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=40, help="timed loops, cheap-model rows")
    ap.add_argument("--probe-seeds", type=int, default=3, help="seeds for the probes")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "samplers.json"))
    args = ap.parse_args()

    problem = Problem(args.n, args.seed)
    t0 = time.perf_counter()
    q = quality_vs_nfe(problem, args.seed)
    print("\n## Quality vs NFE (ideal denoiser; flip, tv, rms lower is better)\n")
    print(f"(TV noise floor for n={args.n} iid draws: {problem.tv_floor:.4f})")
    print(table(q, ["sampler", "D", "steps", "nfe", "flip", "tv", "chi2_p", "on_atom", "rms"]))
    seeds = [args.seed + k for k in range(args.probe_seeds)]
    r = robustness(problem, seeds)
    rs = _summarise(r)
    print(
        f"\n## Robustness probes (Heun; alpha: noise injection, eta: denoiser error, steps),"
        f" mean over seeds {seeds}; rejected: chi-square p < 0.01\n"
    )
    cols = ["probe", "alpha", "eta", "steps", "nfe", "D", "flip", "tv", "rejected", "on_atom"]
    print(table(rs, cols))
    o = overhead(args.repeats)
    print(
        "\n## Scheduler overhead, 18-step loop (median ms; ratios ours / peer of median and of min times; goal <= 1.05)\n"
    )
    print(
        table(
            o,
            [
                "model",
                "pair",
                "repeats",
                "ours_ms",
                "peer_ms",
                "ratio_median",
                "ratio_min",
                "model_ms",
                "ratio_derived",
            ],
        )
    )
    elapsed = time.perf_counter() - t0
    print(f"\ntotal {elapsed:.1f} s")

    result = {
        "date": datetime.date.today().isoformat(),
        "machine": {
            "platform": platform.platform(),
            "cpu": cpu_model(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "python": sys.version.split()[0],
        },
        "command": " ".join([".venv/bin/python", *sys.argv]),
        "settings": {
            "n": args.n,
            "seed": args.seed,
            "N": N_DIM,
            "atoms": len(WEIGHTS),
            "weights": WEIGHTS.tolist(),
            "sigma_max": SIGMA_MAX,
            "eps": EPS,
            "reference_heun_steps": REF_STEPS,
            "probe_seeds": seeds,
            "tv_floor": problem.tv_floor,
            "repeats": args.repeats,
        },
        "quality_vs_nfe": q,
        "robustness": r,
        "robustness_summary": rs,
        "overhead": o,
        "elapsed_s": elapsed,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
