"""Benchmark: PI-HC / PI-HC-MoE (papers/pihcmoe.md): solver speed, scaling with experts, accuracy.

Sections:
a. the batched LM layer (``nonlinear_least_squares`` with the analytic, structured Jacobian
   J = Σ_q diag(∂f/∂q)·Φ_q of ``solvers.constraints.hard``, and with an autograd Jacobian)
   against ``scipy.optimize.least_squares(method="lm")`` looped over the batch, on the same
   diffusion-sorption residual rows (B problems, N basis functions, m collocation points plus
   the IC / BC rows) and the same analytic Jacobian. The issue's goal is ≥ 20×.
b. time per training step (forward + implicit backward) and per inference for K = 1, 4, 8
   experts as the total number of collocation points grows (DS on the paper's 101 × 1024
   grid, a CPU-sized FNO, B = 2), beside the paper's MoE speedups (A100: 3.19× training /
   3.05× inference at 10⁵ points for DS; 12.8× for NS at 10⁴). Slopes are log-log fits.
e. ablations beyond the paper on DS (same data and budget as c): hc-moe with overlapping
   blocks blended by a partition of unity, hc-moe with random expert assignment (the control
   the reviewers asked for), and hc / hc-moe with the PDE rows of the solve in nondimensional
   time (residual_scale = T = 500; in physical units they weigh almost nothing against the
   IC / BC rows).
d. the implicit backward: Gauss-Newton H = JᵀJ + μI against the exact H = ∂g/∂ω, gradient of the
   training loss with respect to the basis along a random direction, against central finite
   differences (eps 1e-4, tight LM tolerances), and the time of forward + backward; on DS
   (physical units, and with the PDE rows scaled by T = 500) and on NS (the paper's mollifier
   0.005, and 1.0 where the quadratic advection matters).
c. relative L2 on held-out data of PI-SC, PI-HC and PI-HC-MoE trained at CPU scale, beside the
   paper's (DS 85.93% / 7.55% / 3.60%; NS 18.08% / 11.75% / 8.30%).

Timings are CPU (the machine is named in the JSON); quote ratios. Run:
  OMP_NUM_THREADS=1 .venv/bin/python scripts/bench/pihc_moe.py --sections a,b,c,d \
      --ds-train F.h5 --ds-test G.h5 [--ns-train ... --ns-test ...]
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from solvers.constraints import LeastSquaresConfig, nonlinear_least_squares
from solvers.constraints.hard import HardConstraintConfig, _features, _make_fns
from solvers.pdes.diffusion_sorption import cell_centres

RESULTS = Path(__file__).parent / "results"
PAPER_ACC = {
    "diffusion-sorption": {"sc": 0.8593, "hc": 0.0755, "hc-moe": 0.0360},
    "navier-stokes": {"sc": 0.18081, "hc": 0.11754, "hc-moe": 0.08298},
}


def _ds_problem(B: int, N: int, T: int, X: int, seed: int) -> tuple[dict, HardConstraintConfig]:
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 500, T, dtype=torch.float64)
    x = cell_centres(X, dtype=torch.float64)
    # smooth positive basis: products of low-order modes in t and x, random amplitudes
    kt = torch.arange(1, N + 1, dtype=torch.float64)
    basis = (
        0.5
        + 0.3
        * torch.cos(kt[:, None, None] * math.pi * t[None, :, None] / 500 * 0.5)
        * torch.sin((kt[:, None, None] % 5 + 1) * math.pi * x[None, None, :])
    ).expand(B, N, T, X) * (1 + 0.2 * torch.rand(B, N, 1, 1, generator=g, dtype=torch.float64))
    u0 = (0.2 * torch.rand(B, 1, generator=g, dtype=torch.float64)).expand(B, X).clone()
    cfg = HardConstraintConfig(n_points=None, ridge=1e-8)
    f = _features(basis.contiguous(), u0, t, x, None, cfg)
    params = {
        "maps": {k: v for k, v in f.maps.items()},
        "offsets": {},
        "rows": f.rows,
        "targets": f.targets,
    }
    return params, cfg


def section_a(B: int, N: int, m: int, repeats: int) -> dict:
    X = 64
    T = max(2, m // X)
    params, cfg = _ds_problem(B, N, T, X, 0)
    residual_fn, jacobian_fn = _make_fns(cfg)
    w0 = torch.ones(B, N, dtype=torch.float64)
    rows = residual_fn(w0, params).shape[1]
    out: dict = {"B": B, "N": N, "m_pde": T * X, "rows_total": rows}
    lm = dict(max_iterations=100, gtol=1e-10, xtol=1e-10, ftol=1e-10, ridge=cfg.ridge)

    def run_ours(kind: str):
        c = LeastSquaresConfig(jacobian=kind, **lm)
        return nonlinear_least_squares(
            residual_fn, w0, params, c, jacobian_fn=jacobian_fn if kind == "analytic" else None
        )

    timings = {}
    results = {}
    for kind in ("analytic", "autograd"):
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            results[kind] = run_ours(kind)
            ts.append(time.perf_counter() - t0)
        timings[kind] = min(ts)

    from scipy.optimize import least_squares

    mu = math.sqrt(cfg.ridge)

    def one(b: int):
        pb = {
            "maps": {k: v[b : b + 1] for k, v in params["maps"].items()},
            "offsets": {},
            "rows": params["rows"][b : b + 1],
            "targets": params["targets"][b : b + 1],
        }

        def fun(w):
            wt = torch.from_numpy(w)[None]
            r = residual_fn(wt, pb)[0].numpy()
            return np.concatenate([r, mu * w])  # the ridge as residual rows, as the reference

        def jac(w):
            wt = torch.from_numpy(w)[None]
            J = jacobian_fn(wt, pb)[0].numpy()
            return np.concatenate([J, mu * np.eye(N)])

        return least_squares(
            fun, np.ones(N), jac=jac, method="lm", xtol=1e-10, ftol=1e-10, gtol=1e-10, max_nfev=1000
        )

    ts = []
    for _ in range(max(1, repeats - 1)):
        t0 = time.perf_counter()
        sols = [one(b) for b in range(B)]
        ts.append(time.perf_counter() - t0)
    timings["scipy_loop"] = min(ts)
    w_sp = torch.from_numpy(np.stack([s.x for s in sols]))
    cost_sp = torch.tensor([s.cost for s in sols], dtype=torch.float64)

    def cost(w: torch.Tensor) -> torch.Tensor:
        return 0.5 * (residual_fn(w, params) ** 2).sum(-1) + 0.5 * cfg.ridge * (w**2).sum(-1)

    for kind in ("analytic", "autograd"):
        r = results[kind]
        out[f"ours_{kind}"] = {
            "seconds": timings[kind],
            "speedup_vs_scipy": timings["scipy_loop"] / timings[kind],
            "iterations_mean": float(r.iterations.double().mean()),
            "converged": float(r.converged.double().mean()),
            "max_rel_diff_w_vs_scipy": float((r.w - w_sp).abs().max() / w_sp.abs().max()),
            # the optimum is a flat valley: w agrees to ~1e-3, the cost to ~1e-10
            "max_rel_diff_cost_vs_scipy": float(((cost(r.w) - cost_sp).abs() / cost_sp).max()),
        }
    out["scipy_loop"] = {
        "seconds": timings["scipy_loop"],
        "nfev_mean": statistics.mean(s.nfev for s in sols),
    }
    return out


def section_b(points: list[int], experts: list[int], repeats: int, max_seconds: float) -> dict:
    from solvers.constraints.hard import HardConstraint, physics_loss
    from solvers.constraints.moe import MixtureOfExperts, MoEConfig
    from solvers.operators.fno import BasisFNO, BasisFNOConfig

    torch.manual_seed(0)
    T, X, B, N = 101, 1024, 2, 16
    t = torch.linspace(0, 500, T, dtype=torch.float64)
    x = cell_centres(X, dtype=torch.float64)
    model = BasisFNO(
        BasisFNOConfig(
            spatial_dims=1,
            n_basis=N,
            width=16,
            n_layers=3,
            modes=(8, 8),
            t_range=(0, 500),
            x_range=(0, 1),
        )
    )
    u0 = (0.2 * torch.rand(B, 1)).expand(B, X).contiguous()
    rows = []
    skip = set()
    for total in points:
        for K in experts:
            if K in skip:
                continue
            m = max(N, total // K)
            cfg = HardConstraintConfig(
                n_points=m, max_iterations=50, gtol=1e-8, xtol=1e-8, ftol=1e-10
            )
            layer = (
                HardConstraint(cfg) if K == 1 else MixtureOfExperts(cfg, MoEConfig(splits=(1, K)))
            )
            tr, inf, its, ltr, linf = [], [], [], [], []
            with torch.no_grad():
                fixed = model(u0, t.float(), x.float()).double()
            for rep in range(repeats):
                # the constraint layer alone (basis fixed): forward + implicit backward
                g = torch.Generator().manual_seed(rep)
                b = fixed.clone().requires_grad_(True)
                t0 = time.perf_counter()
                res = layer(b, u0.double(), t, x, generator=g)
                physics_loss(res.field, u0.double(), t, x, cfg)[0].backward()
                ltr.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                with torch.no_grad():
                    layer(fixed, u0.double(), t, x, generator=g)
                linf.append(time.perf_counter() - t0)
                g = torch.Generator().manual_seed(rep)
                t0 = time.perf_counter()
                basis = model(u0, t.float(), x.float()).double()
                res = layer(basis, u0.double(), t, x, generator=g)
                loss, _ = physics_loss(res.field, u0.double(), t, x, cfg)
                model.zero_grad()
                loss.backward()
                tr.append(time.perf_counter() - t0)
                its.append(float(res.iterations.double().mean()))
                t0 = time.perf_counter()
                with torch.no_grad():
                    basis = model(u0, t.float(), x.float()).double()
                    layer(basis, u0.double(), t, x, generator=g)
                inf.append(time.perf_counter() - t0)
            row = {
                "points_total": total,
                "K": K,
                "m_per_expert": m,
                "train_s": statistics.median(tr),
                "infer_s": statistics.median(inf),
                "lm_iterations": statistics.mean(its),
                "layer_train_s": statistics.median(ltr),
                "layer_infer_s": statistics.median(linf),
            }
            rows.append(row)
            print(
                f"  points {total:>7} K={K}: train {row['train_s']:.3f} s, infer "
                f"{row['infer_s']:.3f} s; layer alone {row['layer_train_s']:.3f} / "
                f"{row['layer_infer_s']:.3f} s; LM it {row['lm_iterations']:.1f}",
                flush=True,
            )
            if row["train_s"] > max_seconds:
                skip.add(K)
    # speedups of MoE over K=1 and log-log slopes
    by = {(r["points_total"], r["K"]): r for r in rows}
    for r in rows:
        base = by.get((r["points_total"], 1))
        if base:
            r["train_speedup_vs_K1"] = base["train_s"] / r["train_s"]
            r["infer_speedup_vs_K1"] = base["infer_s"] / r["infer_s"]
            r["layer_train_speedup_vs_K1"] = base["layer_train_s"] / r["layer_train_s"]
            r["layer_infer_speedup_vs_K1"] = base["layer_infer_s"] / r["layer_infer_s"]
    slopes = {}
    for K in experts:
        pts = [
            (r["points_total"], r["train_s"], r["infer_s"], r["layer_train_s"])
            for r in rows
            if r["K"] == K
        ]
        if len(pts) >= 2:
            lx = np.log10([p[0] for p in pts])
            slopes[K] = {
                "train_slope": float(np.polyfit(lx, np.log10([p[1] for p in pts]), 1)[0]),
                "infer_slope": float(np.polyfit(lx, np.log10([p[2] for p in pts]), 1)[0]),
                "layer_train_slope": float(np.polyfit(lx, np.log10([p[3] for p in pts]), 1)[0]),
            }
    return {
        "grid": [T, X],
        "B": B,
        "N": N,
        "rows": rows,
        "loglog_slopes": slopes,
        "paper": {
            "ds_train_speedup": {"1e2": 1.613, "1e5": 3.189},
            "ds_infer_speedup": {"1e2": 2.030, "1e5": 3.048},
            "ns_train_speedup": {"1e2": 2.117, "1e4": 12.838},
            "ns_infer_speedup": {"1e2": 2.538, "1e4": 12.864},
        },
    }


def section_c(
    pde: str, train_path: str, test_path: str, steps: int, out: Path, overrides: dict
) -> dict:
    from solvers.train import PDETrainConfig, evaluate, train

    rows = {}
    for method in ("sc", "hc", "hc-moe"):
        cfg = PDETrainConfig.from_dict({"pde": pde, "method": method, "steps": steps, **overrides})
        run = out / f"{pde}-{method}"
        t0 = time.perf_counter()
        tr = train(cfg, train_path, run, progress=False)
        ev = evaluate(run, test_path)
        rows[method] = {
            "rel_l2_mean": ev.rel_l2_mean,
            "rel_l2_std": ev.rel_l2_std,
            "paper_rel_l2": PAPER_ACC[pde][method],
            "train_loss_first": tr.initial_loss,
            "train_loss_last": tr.final_loss,
            "s_per_step": tr.seconds_per_step,
            "lm_iterations": tr.lm_iterations_mean,
            "not_converged": tr.not_converged_fraction,
            "eval_not_converged": ev.not_converged_fraction,
            "residual_mean": ev.residual_mean,
            "wall_s": time.perf_counter() - t0,
            "config": cfg.to_dict(),
        }
        print(
            f"  {pde} {method}: rel L2 {ev.rel_l2_mean:.2%} ± {ev.rel_l2_std:.2%} "
            f"(paper {PAPER_ACC[pde][method]:.2%}); loss {tr.initial_loss:.3g} -> "
            f"{tr.final_loss:.3g}; {tr.seconds_per_step:.2f} s/step",
            flush=True,
        )
    return rows


def section_d(repeats: int) -> dict:
    from solvers.constraints.hard import HardConstraint, physics_loss
    from solvers.pdes.navier_stokes import gaussian_random_field

    rows = []
    cases = [
        ("ds", {"residual_scale": 1.0}),
        ("ds", {"residual_scale": 500.0}),
        ("ns", {"mollifier": 0.005}),
        ("ns", {"mollifier": 1.0}),
    ]
    for pde, extra in cases:
        g = torch.Generator().manual_seed(0)
        if pde == "ds":
            T, X, B, N = 26, 64, 4, 16
            t = torch.linspace(0, 500, T, dtype=torch.float64)
            x = cell_centres(X, dtype=torch.float64)
            base = 0.3 * torch.rand(B, N, T, X, generator=g, dtype=torch.float64)
            u0 = torch.full((B, X), 0.1, dtype=torch.float64)
            args = (t, x)
            name = "diffusion-sorption"
        else:
            T, n, B, N = 9, 16, 2, 8
            t = torch.linspace(0, 1, T, dtype=torch.float64)
            x = torch.arange(n, dtype=torch.float64) / n
            base = gaussian_random_field(B * N * T, n, generator=g, dtype=torch.float64)
            base = base.reshape(B, N, T, n, n) * (1.5 / extra["mollifier"])
            u0 = 5 * gaussian_random_field(B, n, generator=g, dtype=torch.float64)
            args = (t, x, x)
            name = "navier-stokes"
        d = torch.randn(base.shape, generator=g, dtype=torch.float64)
        out = {"pde": name, **extra}
        for hess in ("gauss_newton", "exact"):
            cfg = HardConstraintConfig(
                pde=name,
                n_points=None,
                hessian=hess,
                gtol=1e-14,
                xtol=1e-14,
                ftol=1e-16,
                max_iterations=300,
                **extra,
            )
            layer = HardConstraint(cfg)

            def loss(b, layer=layer, cfg=cfg, u0=u0, args=args):
                res = layer(b, u0, *args)
                return physics_loss(res.field, u0, args[0], args[1], cfg)[0], res

            ts = []
            for _ in range(repeats):
                b = base.clone().requires_grad_(True)
                t0 = time.perf_counter()
                value, res = loss(b)
                value.backward()
                ts.append(time.perf_counter() - t0)
            analytic = float((b.grad * d).sum())
            eps = 1e-4
            with torch.no_grad():
                fd = float((loss(base + eps * d)[0] - loss(base - eps * d)[0]) / (2 * eps))
            out[hess] = {
                "directional": analytic,
                "rel_err_vs_fd": abs(analytic - fd) / abs(fd),
                "seconds_fwd_bwd": min(ts),
            }
            out["fd"] = fd
            out["residual_norm_at_optimum"] = float(res.residual_norm.mean())
            out["converged"] = bool(res.converged.all())
        rows.append(out)
        print(
            f"  {name:<19}{json.dumps(extra):<28} GN rel err {out['gauss_newton']['rel_err_vs_fd']:.2e}"
            f" ({out['gauss_newton']['seconds_fwd_bwd']:.3f} s)  exact rel err "
            f"{out['exact']['rel_err_vs_fd']:.2e} ({out['exact']['seconds_fwd_bwd']:.3f} s)  "
            f"|r*| {out['residual_norm_at_optimum']:.3g}",
            flush=True,
        )
    return {"rows": rows}


def section_e(train_path: str, test_path: str, steps: int, out: Path) -> dict:
    from solvers.train import PDETrainConfig, evaluate, train

    variants = {
        "hc-moe overlap=4": {"method": "hc-moe", "overlap": 4},
        "hc-moe random assignment": {"method": "hc-moe", "assignment": "random"},
        "hc residual_scale=500": {"method": "hc", "residual_scale": 500.0},
        "hc-moe residual_scale=500": {"method": "hc-moe", "residual_scale": 500.0},
    }
    rows = {}
    for name, extra in variants.items():
        cfg = PDETrainConfig.from_dict({"pde": "diffusion-sorption", "steps": steps, **extra})
        run = out / ("ds-" + name.replace(" ", "_").replace("=", ""))
        tr = train(cfg, train_path, run, progress=False)
        ev = evaluate(run, test_path)
        rows[name] = {
            "rel_l2_mean": ev.rel_l2_mean,
            "rel_l2_std": ev.rel_l2_std,
            "train_loss_first": tr.initial_loss,
            "train_loss_last": tr.final_loss,
            "s_per_step": tr.seconds_per_step,
            "lm_iterations": tr.lm_iterations_mean,
            "not_converged": tr.not_converged_fraction,
            "config": cfg.to_dict(),
        }
        print(
            f"  {name:<28} rel L2 {ev.rel_l2_mean:.2%} ± {ev.rel_l2_std:.2%}; loss "
            f"{tr.initial_loss:.3g} -> {tr.final_loss:.3g}; {tr.seconds_per_step:.2f} s/step",
            flush=True,
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sections", default="a,b,c")
    ap.add_argument("--B", type=int, default=64)
    ap.add_argument("--N", type=int, default=16)
    ap.add_argument("--m", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--points", default="100,1000,10000,100000")
    ap.add_argument("--experts", default="1,4,8")
    ap.add_argument(
        "--max-seconds",
        type=float,
        default=60.0,
        help="stop growing the points for a K once a training step exceeds this",
    )
    ap.add_argument("--ds-train")
    ap.add_argument("--ds-test")
    ap.add_argument("--ns-train")
    ap.add_argument("--ns-test")
    ap.add_argument("--ds-steps", type=int, default=300)
    ap.add_argument("--ns-steps", type=int, default=100)
    ap.add_argument("--runs", default="runs/bench_pihc")
    ap.add_argument("--out", default=str(RESULTS / "pihc_moe.json"))
    args = ap.parse_args()
    sections = set(args.sections.split(","))
    report: dict = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, torch threads "
        f"{torch.get_num_threads()}, {platform.platform()}",
        "torch": torch.__version__,
    }
    out_path = Path(args.out)
    if out_path.exists():
        report = {**json.loads(out_path.read_text()), **report}

    def dump() -> None:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(report, indent=2) + "\n")

    if "a" in sections:
        print("a. batched LM vs scipy least_squares(method='lm') looped", flush=True)
        a = section_a(args.B, args.N, args.m, args.repeats)
        report["a_lm_vs_scipy"] = a
        print(
            f"{'solver':<18}{'seconds':>10}{'speedup':>10}{'iters':>8}{'max rel dw':>12}"
            f"{'rel dcost':>11}"
        )
        print(
            f"{'scipy loop':<18}{a['scipy_loop']['seconds']:>10.3f}{1.0:>10.2f}"
            f"{a['scipy_loop']['nfev_mean']:>8.1f}{'':>12}"
        )
        for kind in ("analytic", "autograd"):
            r = a[f"ours_{kind}"]
            print(
                f"{'ours ' + kind:<18}{r['seconds']:>10.3f}{r['speedup_vs_scipy']:>10.2f}"
                f"{r['iterations_mean']:>8.1f}{r['max_rel_diff_w_vs_scipy']:>12.2e}"
                f"{r['max_rel_diff_cost_vs_scipy']:>11.1e}"
            )
        dump()
    if "b" in sections:
        print("b. time per step vs collocation points, K = 1, 4, 8", flush=True)
        b = section_b(
            [int(p) for p in args.points.split(",")],
            [int(k) for k in args.experts.split(",")],
            args.repeats,
            args.max_seconds,
        )
        report["b_scaling"] = b
        print(
            f"{'points':>8}{'K':>4}{'train s':>10}{'infer s':>10}{'train x':>9}{'infer x':>9}"
            f"{'layer tr s':>11}{'layer tr x':>11}{'layer inf x':>12}"
        )
        for r in b["rows"]:
            print(
                f"{r['points_total']:>8}{r['K']:>4}{r['train_s']:>10.3f}{r['infer_s']:>10.3f}"
                f"{r.get('train_speedup_vs_K1', float('nan')):>9.2f}"
                f"{r.get('infer_speedup_vs_K1', float('nan')):>9.2f}"
                f"{r['layer_train_s']:>11.3f}"
                f"{r.get('layer_train_speedup_vs_K1', float('nan')):>11.2f}"
                f"{r.get('layer_infer_speedup_vs_K1', float('nan')):>12.2f}"
            )
        print("log-log slopes:", b["loglog_slopes"])
        dump()
    if "d" in sections:
        print("d. implicit backward: Gauss-Newton vs exact Hessian, against finite differences")
        report["d_backward"] = section_d(args.repeats)
        dump()
    if "c" in sections:
        print("c. accuracy at CPU scale", flush=True)
        report.setdefault("c_accuracy", {})
        if args.ds_train and args.ds_test:
            report["c_accuracy"]["diffusion-sorption"] = section_c(
                "diffusion-sorption",
                args.ds_train,
                args.ds_test,
                args.ds_steps,
                Path(args.runs),
                {},
            )
            dump()
        if args.ns_train and args.ns_test:
            report["c_accuracy"]["navier-stokes"] = section_c(
                "navier-stokes",
                args.ns_train,
                args.ns_test,
                args.ns_steps,
                Path(args.runs),
                {"batch_size": 2, "n_points": 2000},
            )
            dump()
    if "e" in sections and args.ds_train and args.ds_test:
        print("e. ablations (DS)", flush=True)
        report["e_ablations"] = section_e(
            args.ds_train, args.ds_test, args.ds_steps, Path(args.runs)
        )
        dump()
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
