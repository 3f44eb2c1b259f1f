"""Benchmark: the batched LM layer against SciPy's MINPACK LM looped over the batch, and its
implicit backward against differentiating an unrolled solve.

Problem (B problems, N unknowns, m residual rows; a Freundlich-type pointwise nonlinearity of
linear maps, shaped like PI-HC-MoE's diffusion-sorption residual, papers/pihcmoe.md sec. 1):

    u = Φ w,  u_t = Φ_t w,  u_xx = Φ_xx w,   R(u) = 1 + c·u^(n_f − 1)   (c = 2.157, n_f = 0.874)
    r(w) = R(u)·u_t − u_xx − f

with random positive Φ and random Φ_t, Φ_xx (the "basis" and its derivative maps), and f made
from a positive w_true plus noise, so the residual is nonzero at the optimum. Start w0 = 1.

Sections:
1. forward: ours (autograd jacfwd Jacobian, and analytic Jacobian) vs
   ``scipy.optimize.least_squares(method="lm", jac=analytic)`` per problem in a loop; time,
   iterations, max |w − w_scipy| / max|w_scipy|, cost ratio.
2. backward: d⟨c, w*⟩/d(Φ, Φ_t, Φ_xx, f) by the implicit backward (Gauss–Newton H and exact H)
   vs autograd through an unrolled Gauss–Newton solve of K steps (K = our max iterations);
   time of forward + backward and relative gradient difference to the unrolled one.
3. convex path on affine residuals (B=32, m=200, N=16): ``convex_least_squares`` (cvxpylayers)
   vs our LM vs ``torch.linalg.lstsq``, forward + backward time and agreement.

Timings are on CPU, best of ``--repeats``; on a shared machine quote ratios, not seconds.

Run: OMP_NUM_THREADS=1 .venv/bin/python scripts/bench/least_squares.py  (defaults: --B 256 --N 16
--m 2000, about 2 minutes on 1 CPU thread)
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import least_squares

from solvers.constraints import LeastSquaresConfig, nonlinear_least_squares

C_R, N_F = 2.157, 0.874  # (1−φ)/φ·ρ_s·k·n_f and n_f of the DS problem


def make_problem(B: int, N: int, m: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    d = torch.float64
    phi = torch.rand(B, m, N, dtype=d, generator=g) / N
    phi_t = torch.randn(B, m, N, dtype=d, generator=g) / N**0.5
    phi_xx = torch.randn(B, m, N, dtype=d, generator=g) / N**0.5
    w_true = 0.5 + torch.rand(B, N, dtype=d, generator=g)
    f = _model(w_true, phi, phi_t, phi_xx) + 0.01 * torch.randn(B, m, dtype=d, generator=g)
    return {"phi": phi, "phi_t": phi_t, "phi_xx": phi_xx, "f": f}


def _mv(M: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    # batched mat-vec; under torch.func's jacfwd this is ~4x cheaper than the einsum
    return (M @ w.unsqueeze(-1)).squeeze(-1)


def _model(w, phi, phi_t, phi_xx):
    u = _mv(phi, w).clamp_min(1e-8)
    R = 1 + C_R * u ** (N_F - 1)
    return R * _mv(phi_t, w) - _mv(phi_xx, w)


def residual(w: torch.Tensor, p: dict[str, torch.Tensor]) -> torch.Tensor:
    return _model(w, p["phi"], p["phi_t"], p["phi_xx"]) - p["f"]


def jacobian(w: torch.Tensor, p: dict[str, torch.Tensor]) -> torch.Tensor:
    """∂r/∂w = diag(R'(u)·u_t)·Φ + diag(R(u))·Φ_t − Φ_xx."""
    u = _mv(p["phi"], w).clamp_min(1e-8)
    R = 1 + C_R * u ** (N_F - 1)
    dR = C_R * (N_F - 1) * u ** (N_F - 2) * (u > 1e-8)
    ut = _mv(p["phi_t"], w)
    return (dR * ut).unsqueeze(-1) * p["phi"] + R.unsqueeze(-1) * p["phi_t"] - p["phi_xx"]


def _timed(fn, repeats: int):
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def scipy_loop(p: dict[str, torch.Tensor], w0: np.ndarray, tol: float):
    B = w0.shape[0]
    ws, nfev = np.zeros_like(w0), np.zeros(B, dtype=int)
    for b in range(B):
        pb = {k: v[b : b + 1] for k, v in p.items()}

        def fun(x, pb=pb):
            return residual(torch.from_numpy(x)[None], pb)[0].numpy()

        def jac(x, pb=pb):
            return jacobian(torch.from_numpy(x)[None], pb)[0].numpy()

        sol = least_squares(fun, w0[b], jac=jac, method="lm", xtol=tol, ftol=tol, gtol=tol)
        ws[b], nfev[b] = sol.x, sol.nfev
    return ws, nfev


def unrolled(p: dict[str, torch.Tensor], w0: torch.Tensor, steps: int) -> torch.Tensor:
    """Plain Gauss–Newton with analytic J, every step on the autograd tape."""
    w = w0
    for _ in range(steps):
        J, r = jacobian(w, p), residual(w, p)
        w = w - torch.linalg.solve(J.mT @ J, (J.mT @ r.unsqueeze(-1))).squeeze(-1)
    return w


def convex_section(seed: int, B: int = 32, m: int = 200, N: int = 16) -> list[dict]:
    """Affine residuals r = A w − b: cvxpylayers vs LM vs lstsq, forward + backward."""
    from solvers.constraints import convex_least_squares

    g = torch.Generator().manual_seed(seed)
    A = torch.randn(B, m, N, dtype=torch.float64, generator=g)
    b = torch.randn(B, m, dtype=torch.float64, generator=g)
    cvec = torch.randn(B, N, dtype=torch.float64, generator=g)

    def lm(A, b):
        fn = lambda w, q: (q[0] @ w.unsqueeze(-1)).squeeze(-1) - q[1]  # noqa: E731
        return nonlinear_least_squares(fn, A.new_zeros(A.shape[0], A.shape[2]), (A, b)).w

    solvers = {
        "lstsq (closed form)": lambda A, b: torch.linalg.lstsq(A, b.unsqueeze(-1)).solution.squeeze(-1),
        "ours LM (autograd J)": lm,
        "cvxpylayers (diffcp+SCS, eps 1e-10)": lambda A, b: convex_least_squares(A, b).w,
        "cvxpylayers, w >= 0": lambda A, b: convex_least_squares(A, b, nonnegative=True).w,
    }  # fmt: skip
    out, ref = [], None
    for name, fn in solvers.items():
        fn(A[:2].clone(), b[:2].clone())  # warm-up (layer build, imports)

        def run(fn=fn):
            Ar, br = A.clone().requires_grad_(), b.clone().requires_grad_()
            w = fn(Ar, br)
            return w.detach(), torch.autograd.grad((w * cvec).sum(), (Ar, br))

        t, (w, gr) = _timed(run, 2)
        gflat = torch.cat([x.flatten() for x in gr])
        if ref is None:
            ref = (t, w, gflat)
        out.append({"method": name, "time_s": t, "vs_lstsq": t / ref[0],
                    "max_abs_w_diff": float((w - ref[1]).abs().max()),
                    "rel_grad_diff": float((gflat - ref[2]).norm() / ref[2].norm())})  # fmt: skip
    print(f"\nconvex path, affine residuals B={B} m={m} N={N}: forward + backward (w >= 0 row: a different problem)")  # fmt: skip
    print(f"{'method':40s} {'time s':>8s} {'/ lstsq':>8s} {'max|dw|':>9s} {'rel|dgrad|':>11s}")
    for r in out:
        print(f"{r['method']:40s} {r['time_s']:8.4f} {r['vs_lstsq']:8.0f} {r['max_abs_w_diff']:9.1e} {r['rel_grad_diff']:11.1e}")  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--B", type=int, default=256)
    ap.add_argument("--N", type=int, default=16)
    ap.add_argument("--m", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "least_squares.json"))
    args = ap.parse_args()
    t_start = time.perf_counter()
    torch.manual_seed(args.seed)
    p = make_problem(args.B, args.N, args.m, args.seed)
    w0 = torch.ones(args.B, args.N, dtype=torch.float64)
    cfg = LeastSquaresConfig()
    cfg_an = dataclasses.replace(cfg, jacobian="analytic")

    # ------------------------------------------------------------------ forward
    rows = []
    t_sp, (w_sp, nfev) = _timed(lambda: scipy_loop(p, w0.numpy(), 1e-10), 1)
    w_sp = torch.from_numpy(w_sp)
    F_sp = 0.5 * residual(w_sp, p).pow(2).sum(-1)
    rows.append({"method": "scipy lm (MINPACK, loop, analytic J)", "time_s": t_sp,
                 "iters_mean": float(nfev.mean()), "iters_max": int(nfev.max()),
                 "converged": args.B, "rel_w_diff": 0.0, "cost_ratio_max": 1.0})  # fmt: skip
    for name, c, jf in (("ours, autograd J (jacfwd)", cfg, None), ("ours, analytic J", cfg_an, jacobian)):  # fmt: skip
        nonlinear_least_squares(residual, w0[:2], {k: v[:2] for k, v in p.items()}, c, jacobian_fn=jf)  # fmt: skip
        t, res = _timed(lambda c=c, jf=jf: nonlinear_least_squares(residual, w0, p, c, jacobian_fn=jf), args.repeats)  # fmt: skip
        F = 0.5 * res.residual_norm.pow(2)
        rows.append({
            "method": name, "time_s": t,
            "iters_mean": float(res.iterations.double().mean()), "iters_max": int(res.iterations.max()),
            "converged": int(res.converged.sum()),
            "rel_w_diff": float((res.w - w_sp).abs().max() / w_sp.abs().max()),
            "cost_ratio_max": float((F / F_sp).max()),
        })  # fmt: skip
    print(
        f"\nforward  B={args.B} N={args.N} m={args.m}  (iters: scipy = nfev; ours = LM trial steps)"
    )
    print(f"{'method':40s} {'time s':>8s} {'speed-up':>8s} {'iters mean/max':>15s} {'conv':>5s} {'rel |Δw|':>9s} {'F/F_sp max':>11s}")  # fmt: skip
    for r in rows:
        print(f"{r['method']:40s} {r['time_s']:8.3f} {t_sp / r['time_s']:8.1f} "
              f"{r['iters_mean']:7.1f}/{r['iters_max']:<7d} {r['converged']:5d} "
              f"{r['rel_w_diff']:9.1e} {r['cost_ratio_max']:11.8f}")  # fmt: skip

    # ------------------------------------------------------------------ backward
    ref = nonlinear_least_squares(residual, w0, p, cfg_an, jacobian_fn=jacobian)
    steps = int(ref.iterations.max())
    cvec = torch.randn(args.B, args.N, dtype=torch.float64)

    def grads(kind: str):
        q = {k: v.clone().requires_grad_() for k, v in p.items()}
        if kind == "unrolled":
            w = unrolled(q, w0, steps)
        else:
            c = dataclasses.replace(cfg_an, hessian=kind)
            w = nonlinear_least_squares(residual, w0, q, c, jacobian_fn=jacobian).w
        return torch.autograd.grad((w * cvec).sum(), list(q.values()))

    back = {}
    for kind in ("unrolled", "gauss_newton", "exact"):
        back[kind] = _timed(lambda kind=kind: grads(kind), args.repeats)
    g_ref = torch.cat([g.flatten() for g in back["unrolled"][1]])
    brows = []
    for kind, (t, gs) in back.items():
        gflat = torch.cat([g.flatten() for g in gs])
        brows.append({"method": kind, "time_s": t,
                      "rel_grad_diff_vs_unrolled": float((gflat - g_ref).norm() / g_ref.norm())})  # fmt: skip
    print(f"\nforward+backward, d<c, w*>/d(phi, phi_t, phi_xx, f); unrolled = {steps} Gauss-Newton steps on the tape")  # fmt: skip
    print(f"{'method':40s} {'time s':>8s} {'vs unrolled':>11s} {'rel |Δgrad|':>12s}")
    t_un = back["unrolled"][0]
    for r in brows:
        label = {"unrolled": "unrolled GN (autograd)", "gauss_newton": "implicit, Gauss-Newton H",
                 "exact": "implicit, exact H"}[r["method"]]  # fmt: skip
        print(f"{label:40s} {r['time_s']:8.3f} {t_un / r['time_s']:10.2f}x {r['rel_grad_diff_vs_unrolled']:12.1e}")  # fmt: skip

    # ------------------------------------------------------------------ convex path (affine r)
    crows = convex_section(args.seed)

    elapsed = time.perf_counter() - t_start
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "settings": {
            "B": args.B,
            "N": args.N,
            "m": args.m,
            "seed": args.seed,
            "repeats": args.repeats,
            "scipy_tol": 1e-10,
            "config": dataclasses.asdict(cfg),
        },  # fmt: skip
        "forward": rows,
        "backward": brows,
        "convex_linear": crows,
        "elapsed_s": elapsed,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
