"""Benchmark: the differentiable reference PDE solvers against a peer and a physical floor.

Sections:
1. diffusion-sorption (PDEBench's finite-volume scheme, 1024 cells, 101 stored times over
   500 s, a batch of 64 PDEBench initial conditions): ours (batched linearly implicit
   Rosenbrock/W-method, one call for the whole batch) against the PDEBench-style reference,
   scipy ``solve_ivp(RK45)`` with default tolerances (rtol=1e-3, atol=1e-6, as PDEBench)
   run once per trajectory on the same semi-discretisation (its RHS written here in numpy,
   independently of the library), and the same RK45 at rtol=1e-6, atol=1e-9 as the truth.
   RK45 is stability-limited on this stiff system (~7e5 RHS calls per trajectory at either
   tolerance), so it is timed on a subset of the trajectories and extrapolated linearly to the
   batch (the output says so). Errors: max over the subset of ``max |a - b| / max |b|`` over all
   cells and stored times. Note: PDEBench's own tolerances are ~2% off the converged solution.
2. Navier-Stokes: time per step of ``solve_navier_stokes`` (Heun + Crank-Nicolson, 2/3
   dealiasing) against the floor of its FFTs alone: per step two ``irfft2`` of 4 fields and
   two ``rfft2`` of 1 field, same shapes and dtype, nothing else.

Run: .venv/bin/python scripts/bench/pde_solvers.py   (defaults: ~2-4 minutes on 2 CPU cores)
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _common import cpu_model, table  # scripts/bench/_common.py
from scipy.integrate import solve_ivp

from solvers.numerics.diffusion_sorption import solve_diffusion_sorption
from solvers.numerics.navier_stokes import solve_navier_stokes
from solvers.pdes.diffusion_sorption import DiffusionSorptionParams, initial_condition
from solvers.pdes.navier_stokes import NavierStokesParams, gaussian_random_field


def _pdebench_rhs(c: np.ndarray, nx: int) -> np.ndarray:
    """PDEBench's finite-volume RHS (paper notes, Addendum), numpy, zero ghosts + boundary terms."""
    D, phi, rho_s, k_f, n_f, sol = 5e-4, 0.29, 2880.0, 3.5e-4, 0.874, 1.0
    dx = 1.0 / nx
    R = 1 + (1 - phi) / phi * rho_s * k_f * n_f * (c + 1e-6) ** (n_f - 1)
    lap = -2.0 * c
    lap[1:] += c[:-1]
    lap[:-1] += c[1:]
    out = D / R * lap / dx**2
    out[0] += D / R[0] / dx**2 * sol
    out[-1] += D / R[-1] / dx**2 * (D * (c[-2] - c[-1]) / dx)
    return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def diffusion_sorption(args: argparse.Namespace, device: torch.device) -> dict:
    nx, n_times, batch = args.nx, 101, args.batch
    params = DiffusionSorptionParams()
    u0 = torch.cat(
        [
            initial_condition(1, nx, torch.Generator().manual_seed(i), torch.float64)
            for i in range(batch)
        ]
    )
    t = torch.linspace(0.0, params.t_final, n_times, dtype=torch.float64)
    u0_dev, t_dev = u0.to(device), t.to(device)
    solve_diffusion_sorption(u0_dev[:2, :64], t_dev[:3], params)  # warm-up (kernels, caches)
    _sync(device)
    t0 = time.perf_counter()
    ours = solve_diffusion_sorption(u0_dev, t_dev, params, rtol=args.rtol, atol=args.rtol * 1e-3)
    _sync(device)
    t_ours = time.perf_counter() - t0
    u_ours = ours.u.cpu().numpy()

    k = min(args.ref_trajectories, batch)
    ref_times, tight_times, errs, errs_tight, errs_peer, nfev = [], [], [], [], [], []
    for b in range(k):
        rhs = lambda _t, c: _pdebench_rhs(c, nx)  # noqa: E731
        # PDEBench's formula is NaN for c < -1e-6, which RK45's rejected trial stages can hit;
        # scipy then rejects the step, so the warning is silenced, not the values
        with np.errstate(invalid="ignore"):
            t0 = time.perf_counter()
            peer = solve_ivp(rhs, (0.0, params.t_final), u0[b].numpy(), t_eval=t.numpy())
            ref_times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            tight = solve_ivp(
                rhs, (0.0, params.t_final), u0[b].numpy(), t_eval=t.numpy(), rtol=1e-6, atol=1e-9
            )
            tight_times.append(time.perf_counter() - t0)
        nfev.append(int(peer.nfev))
        y, z = peer.y.T, tight.y.T
        errs.append(float(np.abs(u_ours[b] - y).max() / np.abs(y).max()))
        errs_tight.append(float(np.abs(u_ours[b] - z).max() / np.abs(z).max()))
        errs_peer.append(float(np.abs(y - z).max() / np.abs(z).max()))
    t_ref = statistics.mean(ref_times) * batch
    return {
        "batch": batch,
        "nx": nx,
        "n_times": n_times,
        "t_final": params.t_final,
        "device": str(device),
        "ours_s": t_ours,
        "ours_steps": ours.steps,
        "ours_rejected": ours.rejected,
        "ours_converged": ours.converged,
        "ours_rtol": args.rtol,
        "ref_trajectories_timed": k,
        "ref_s_per_trajectory": statistics.mean(ref_times),
        "ref_s_batch_extrapolated": t_ref,
        "ref_nfev_per_trajectory": statistics.mean(nfev),
        "tight_ref_s_per_trajectory": statistics.mean(tight_times),
        "speedup": t_ref / t_ours,
        "speedup_vs_tight": statistics.mean(tight_times) * batch / t_ours,
        "rel_err_ours_vs_pdebench_rk45": max(errs),
        "rel_err_ours_vs_tight_rk45": max(errs_tight),
        "rel_err_pdebench_rk45_vs_tight_rk45": max(errs_peer),
    }


def _fft_floor(w_hat: torch.Tensor, n: int, steps: int) -> None:
    for _ in range(steps):
        for _stage in range(2):
            fields = torch.fft.irfft2(torch.stack([w_hat] * 4, dim=1), s=(n, n))
            torch.fft.rfft2(fields[:, 0])


def navier_stokes(args: argparse.Namespace, device: torch.device) -> list[dict]:
    dtype = torch.float32 if args.ns_dtype == "float32" else torch.float64
    rows = []
    for n in (64, 256):
        steps = args.ns_steps
        w0 = gaussian_random_field(
            args.ns_batch, n, generator=torch.Generator().manual_seed(0), dtype=dtype
        ).to(device)
        dt = 1e-3
        t = torch.tensor([0.0, steps * dt], dtype=dtype, device=device)
        params = NavierStokesParams(nu=1e-4)
        w_hat = torch.fft.rfft2(w0)
        solve_navier_stokes(w0, t, params, dt=dt)  # warm-up
        _fft_floor(w_hat, n, 2)
        ours_runs, floor_runs = [], []
        with torch.no_grad():
            for _ in range(args.repeats):  # interleaved, so load drifts hit both
                _sync(device)
                t0 = time.perf_counter()
                solve_navier_stokes(w0, t, params, dt=dt)
                _sync(device)
                ours_runs.append((time.perf_counter() - t0) / steps)
                t0 = time.perf_counter()
                _fft_floor(w_hat, n, steps)
                _sync(device)
                floor_runs.append((time.perf_counter() - t0) / steps)
        ours_ms, floor_ms = 1e3 * statistics.median(ours_runs), 1e3 * statistics.median(floor_runs)
        rows.append(
            {
                "n": n,
                "batch": args.ns_batch,
                "dtype": args.ns_dtype,
                "device": str(device),
                "steps_timed": steps,
                "ours_ms_per_step": ours_ms,
                "fft_floor_ms_per_step": floor_ms,
                "ratio": ours_ms / floor_ms,
                "ratio_min": min(ours_runs) / min(floor_runs),
            }
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, ...")
    ap.add_argument("--batch", type=int, default=64, help="diffusion-sorption trajectories")
    ap.add_argument("--nx", type=int, default=1024, help="diffusion-sorption cells")
    ap.add_argument("--rtol", type=float, default=1e-4, help="our diffusion-sorption rtol")
    ap.add_argument(
        "--ref-trajectories", type=int, default=2, help="RK45 trajectories timed (extrapolated)"
    )
    ap.add_argument("--ns-batch", type=int, default=8)
    ap.add_argument("--ns-steps", type=int, default=20, help="Navier-Stokes steps per timing")
    ap.add_argument("--ns-dtype", choices=["float32", "float64"], default="float32")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    ap.add_argument("--skip-ds", action="store_true", help="skip the diffusion-sorption section")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "pde_solvers.json"))
    args = ap.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    )

    load_before = os.getloadavg()
    t_start = time.perf_counter()
    ds = None
    if not args.skip_ds:
        ds = diffusion_sorption(args, device)
        print(
            f"\n## Diffusion-sorption: {ds['batch']} trajectories x {ds['nx']} cells x "
            f"{ds['n_times']} times over {ds['t_final']:g} s (goal: >= 10x faster at <= 1e-3)\n"
        )
        print(
            f"scipy RK45 (default tolerances, one call per trajectory) timed on "
            f"{ds['ref_trajectories_timed']} of {ds['batch']} trajectories and extrapolated "
            f"linearly to the batch. 'tight' is the same RK45 at rtol=1e-6, atol=1e-9 (the truth\n"
            f"for this discretisation). Relative errors: max |a - b| / max |b| over cells and times.\n"
        )
        print(
            table(
                [ds],
                [
                    "device",
                    "ours_s",
                    "ours_steps",
                    "ours_rejected",
                    "ref_s_per_trajectory",
                    "ref_s_batch_extrapolated",
                    "tight_ref_s_per_trajectory",
                    "speedup",
                    "speedup_vs_tight",
                ],
            )
        )
        print()
        print(
            table(
                [ds],
                [
                    "rel_err_ours_vs_tight_rk45",
                    "rel_err_ours_vs_pdebench_rk45",
                    "rel_err_pdebench_rk45_vs_tight_rk45",
                ],
            )
        )
    ns = navier_stokes(args, device)
    print(
        "\n## Navier-Stokes step time vs its FFTs alone (median ms per step; goal ratio <= 2 at 256^2)\n"
    )
    cols = ["n", "batch", "dtype", "device", "ours_ms_per_step", "fft_floor_ms_per_step"]
    print(table(ns, [*cols, "ratio", "ratio_min"]))
    elapsed = time.perf_counter() - t_start
    load_after = os.getloadavg()
    print(
        f"\ntotal {elapsed:.1f} s; load average (1 min) before {load_before[0]:.2f}, "
        f"after {load_after[0]:.2f}; torch threads {torch.get_num_threads()}"
    )

    result = {
        "date": datetime.date.today().isoformat(),
        "machine": {
            "platform": platform.platform(),
            "cpu": cpu_model(),
            "cpu_count": os.cpu_count(),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "python": sys.version.split()[0],
            "loadavg_before": load_before,
            "loadavg_after": load_after,
        },
        "command": " ".join([".venv/bin/python", *sys.argv]),
        "diffusion_sorption": ds,
        "navier_stokes": ns,
        "elapsed_s": elapsed,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
