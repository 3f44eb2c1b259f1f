"""Training PINNs and LPINNs: Adam, then L-BFGS with a strong-Wolfe line search.

:func:`train` fits a :class:`~solvers.pinns.PINN` or :class:`~solvers.pinns.LagrangianPINN`
on a fixed full-batch collocation grid (``SpaceTime.grid``), optionally grown by
residual-based adaptive refinement (RAR, Lu et al. 2021) and weighted causally
(Wang et al. 2022: chunk weights ``exp(-eps * cumsum of earlier chunk losses)``).
Checkpoints are written atomically and a rerun in the same folder resumes.
:func:`run` is the one-call entry point of the CLI and the benchmark.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from simkit.io import atomic_write, write_json
from solvers.pinns.metrics import Evaluation, evaluate
from solvers.pinns.models import PINN, LagrangianPINN, LagrangianPINNConfig, PINNConfig
from solvers.pinns.problems import PDE_NAMES, PDEProblem, make_problem

__all__ = [
    "MODEL_NAMES",
    "PINNRunConfig",
    "TrainConfig",
    "TrainResult",
    "build_model",
    "run",
    "train",
]

logger = logging.getLogger(__name__)

#: Names accepted by :func:`build_model` (and the CLI's ``--model``).
MODEL_NAMES: tuple[str, ...] = ("pinn", "lpinn")
_DTYPES = {"float32": torch.float32, "float64": torch.float64}
_CHECKPOINT = "checkpoint.pt"


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and collocation settings (defaults: the note's CPU-sized check).

    Attributes:
        n_x: collocation points in space (periodic grid, right end left out).
        n_t: collocation points in time (both ends; the ``t0`` row is the IC set).
        adam_steps: Adam iterations.
        adam_lr: Adam learning rate; ``None``: 1e-3 for a PINN, 1e-2 for an LPINN.
        lbfgs_steps: L-BFGS iterations (strong-Wolfe line search), after Adam.
        lbfgs_chunk: L-BFGS iterations per progress/checkpoint update.
        dtype: ``"float32"`` or ``"float64"``.
        seed: seed of the network initialisation and of RAR candidates.
        loss: ``"mse"`` (mean squares; default) or ``"norms"`` (the LPINN code's
            ``10 ||r_x|| + ||r_u|| + 1000 (||X0 - xi|| + ||u0 - u||)``, unsquared norms).
        ic_weight: weight of initial-condition terms (``"mse"``).
        causal: weight the PDE residual by time chunks, ``exp(-causal_eps * sum of
            earlier chunk losses)`` (detached).
        causal_eps: causality tolerance.
        causal_chunks: number of time chunks.
        rar_every: every this many Adam steps add the worst RAR points (0: off).
        rar_points: points added per refinement.
        rar_candidates: random candidates scored per refinement.
        patience: stop Adam after this many steps without a relative improvement of
            ``min_delta`` in the loss (0: never).
        min_delta: relative improvement that resets ``patience``.
        loss_tol: stop training when the loss drops below this (0: never).
        checkpoint_every: Adam steps between checkpoints (with a checkpoint folder).
        log_every: iterations between loss-history entries.
        eval_n_x: Eulerian evaluation grid points in space.
        eval_n_t: evaluation times.
    """

    n_x: int = 64
    n_t: int = 32
    adam_steps: int = 3000
    adam_lr: float | None = None
    lbfgs_steps: int = 500
    lbfgs_chunk: int = 50
    dtype: Literal["float32", "float64"] = "float32"
    seed: int = 0
    loss: Literal["mse", "norms"] = "mse"
    ic_weight: float = 1.0
    causal: bool = False
    causal_eps: float = 1.0
    causal_chunks: int = 16
    rar_every: int = 0
    rar_points: int = 16
    rar_candidates: int = 2048
    patience: int = 0
    min_delta: float = 1e-4
    loss_tol: float = 0.0
    checkpoint_every: int = 500
    log_every: int = 50
    eval_n_x: int = 256
    eval_n_t: int = 100

    def __post_init__(self) -> None:
        for name in ("n_x", "n_t", "lbfgs_chunk", "causal_chunks", "rar_points", "log_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < (2 if name == "n_t" else 1):
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        for name in ("adam_steps", "lbfgs_steps", "rar_every", "patience", "seed"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{name} must be a non-negative int, got {v!r}")
        for name in ("checkpoint_every", "rar_candidates", "eval_n_x", "eval_n_t"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 5:
                raise ValueError(f"{name} must be an int >= 5, got {v!r}")
        if self.adam_lr is not None and not (math.isfinite(self.adam_lr) and self.adam_lr > 0):
            raise ValueError(f"adam_lr must be positive, got {self.adam_lr!r}")
        if self.dtype not in _DTYPES:
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        if self.loss not in ("mse", "norms"):
            raise ValueError(f"loss must be 'mse' or 'norms', got {self.loss!r}")
        for name in ("ic_weight", "causal_eps", "min_delta", "loss_tol"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be finite and >= 0, got {v!r}")


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        history: ``{"iteration", "phase", "loss"}`` entries every ``log_every`` iterations.
        final_loss: the last training loss.
        evaluation: errors on the evaluation grid (:class:`Evaluation`).
        adam_iterations: Adam steps done (including those before a resume).
        lbfgs_iterations: L-BFGS iterations done.
        wall_time: seconds spent in this call (training and evaluation).
        adam_time: seconds of Adam steps in this call.
        lbfgs_time: seconds of L-BFGS in this call.
        stopped: ``"completed"``, ``"patience"``, ``"loss_tol"``, ``"lbfgs_converged"``
            or ``"nonfinite"`` (L-BFGS hit a NaN/inf loss; the last finite weights kept).
        resumed_from: Adam+L-BFGS iterations loaded from a checkpoint (0: fresh).
        n_collocation: final number of collocation points (grows with RAR).
        info: the run's settings (problem, model, training) for reports.
    """

    history: list[dict[str, Any]]
    final_loss: float
    evaluation: Evaluation
    adam_iterations: int
    lbfgs_iterations: int
    wall_time: float
    adam_time: float
    lbfgs_time: float
    stopped: str
    resumed_from: int
    n_collocation: int
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def iterations(self) -> int:
        """Adam plus L-BFGS iterations."""
        return self.adam_iterations + self.lbfgs_iterations

    @property
    def rel_l2(self) -> float:
        """Frobenius relative L2 error on the Eulerian grid."""
        return self.evaluation.rel_l2

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        out = asdict(self)
        out["evaluation"] = self.evaluation.to_dict()
        out["iterations"] = self.iterations
        out["rel_l2"] = self.rel_l2
        return out


def build_model(
    problem: PDEProblem,
    model: str,
    config: PINNConfig | LagrangianPINNConfig | None = None,
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> PINN | LagrangianPINN:
    """Build a seeded ``"pinn"`` or ``"lpinn"`` (same seed, same weights).

    The global RNG is forked, so the caller's random state is untouched.
    """
    if model not in MODEL_NAMES:
        raise ValueError(f"unknown model {model!r}; expected one of {MODEL_NAMES}")
    expected = PINNConfig if model == "pinn" else LagrangianPINNConfig
    if config is not None and not isinstance(config, expected):
        raise TypeError(f"model {model!r} needs a {expected.__name__}, got {config!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = PINN(problem, config) if model == "pinn" else LagrangianPINN(problem, config)
    return net.to(device=device, dtype=dtype)


def _causal_mean(r2: Tensor, t: Tensor, problem: PDEProblem, cfg: TrainConfig) -> Tensor:
    # Chunk losses L_k over time bins; w_k = exp(-eps * sum_{j<k} L_j), detached.
    k = cfg.causal_chunks
    tau = (t - problem.t0) / (problem.t1 - problem.t0)
    bins = (tau * k).long().clamp(0, k - 1)
    sums = r2.new_zeros(k).index_add(0, bins, r2)
    counts = r2.new_zeros(k).index_add(0, bins, torch.ones_like(r2)).clamp_min(1)
    chunk = sums / counts
    before = torch.cumsum(chunk.detach(), 0) - chunk.detach()
    w = torch.exp(-cfg.causal_eps * before)
    return (w * chunk).mean()


_NORM_WEIGHTS = {
    "char": 10.0,
    "state": 1.0,
    "pde": 1.0,
    "ic": 1000.0,
    "ic_u": 1000.0,
    "ic_x": 1000.0,
}


def _loss(model: nn.Module, x: Tensor, t: Tensor, x0: Tensor, cfg: TrainConfig) -> Tensor:
    terms = model.residuals(x, t)
    ics = model.initial_residuals(x0)
    total = x.new_zeros(())
    if cfg.loss == "norms":
        for name, r in {**terms, **ics}.items():
            total = total + _NORM_WEIGHTS[name] * torch.linalg.vector_norm(r)
        return total
    for r in terms.values():
        r2 = r.square()
        total = total + (_causal_mean(r2, t, model.problem, cfg) if cfg.causal else r2.mean())
    for r in ics.values():
        total = total + cfg.ic_weight * r.square().mean()
    return total


def _rar(
    model: nn.Module, cfg: TrainConfig, gen: torch.Generator, dtype, device
) -> tuple[Tensor, Tensor]:
    cand = model.problem.domain.sample(
        cfg.rar_candidates, "uniform", generator=gen, dtype=dtype, device=device
    )
    xc, tc = cand[:, 0], cand[:, 1]
    terms = model.residuals(xc, tc)
    score = sum(r.detach().square() for r in terms.values())
    top = torch.topk(score, min(cfg.rar_points, len(score))).indices
    return xc[top].detach(), tc[top].detach()


def _model_info(model: nn.Module) -> dict[str, Any]:
    kind = "pinn" if isinstance(model, PINN) else "lpinn"
    return {"model": kind, **asdict(model.config)}


def train(
    model: PINN | LagrangianPINN,
    config: TrainConfig | None = None,
    *,
    checkpoint_dir: str | Path | None = None,
    progress: bool = False,
    u_ref: Tensor | None = None,
) -> TrainResult:
    """Train a PINN or LPINN: Adam, then L-BFGS; evaluate on the Eulerian grid.

    Args:
        model: a :class:`PINN` or :class:`LagrangianPINN` (its parameters' dtype is set
            from ``config.dtype``; its device is kept).
        config: training settings.
        checkpoint_dir: folder for ``checkpoint.pt``; an existing checkpoint with the same
            settings is resumed.
        progress: show a tqdm bar.
        u_ref: (eval_n_x, eval_n_t) reference on the evaluation grid, to skip recomputing
            it (the problem's ``reference`` is used when ``None``).

    Returns:
        A :class:`TrainResult`.
    """
    from tqdm.auto import tqdm

    cfg = config or TrainConfig()
    if not isinstance(model, PINN | LagrangianPINN):
        raise TypeError(f"model must be a PINN or LagrangianPINN, got {type(model).__name__}")
    start = time.perf_counter()
    problem = model.problem
    dtype = _DTYPES[cfg.dtype]
    device = next(model.parameters()).device
    model.to(dtype=dtype)
    lr = cfg.adam_lr if cfg.adam_lr is not None else (1e-3 if isinstance(model, PINN) else 1e-2)
    info = {
        "problem": {"name": problem.name, **dict(problem.params)},
        "model": _model_info(model),
        "train": {**asdict(cfg), "adam_lr": lr},
    }

    grid = problem.domain.grid((cfg.n_x, cfg.n_t), dtype=dtype, device=device)
    x, t = grid[..., 0].reshape(-1), grid[..., 1].reshape(-1)
    x0 = grid[:, 0, 0].clone()
    gen = torch.Generator(device=device).manual_seed(cfg.seed + 1)

    adam = torch.optim.Adam(model.parameters(), lr=lr)
    lbfgs = torch.optim.LBFGS(
        model.parameters(),
        lr=1.0,
        max_iter=cfg.lbfgs_chunk,
        history_size=50,
        tolerance_grad=1e-12,
        tolerance_change=1e-14,
        line_search_fn="strong_wolfe",
    )
    history: list[dict[str, Any]] = []
    adam_done = lbfgs_done = 0
    phase = "adam"
    stopped = "completed"
    ckpt = Path(checkpoint_dir) / _CHECKPOINT if checkpoint_dir is not None else None

    def save() -> None:
        if ckpt is None:
            return
        state = {
            "info": {"model": info["model"], "train": info["train"], "problem": info["problem"]},
            "model": model.state_dict(),
            "adam": adam.state_dict(),
            "lbfgs": lbfgs.state_dict(),
            "phase": phase,
            "adam_done": adam_done,
            "lbfgs_done": lbfgs_done,
            "history": history,
            "x": x,
            "t": t,
            "generator": gen.get_state(),
            "stopped": stopped,
        }
        with atomic_write(ckpt, "wb") as fh:
            torch.save(state, fh)

    resumed_from = 0
    if ckpt is not None and ckpt.exists():
        state = torch.load(ckpt, map_location=device, weights_only=True)
        if state["info"] != {k: info[k] for k in ("model", "train", "problem")}:
            raise ValueError(
                f"checkpoint {ckpt} was written with other settings: {state['info']} "
                f"(now {info}); use another folder"
            )
        model.load_state_dict(state["model"])
        adam.load_state_dict(state["adam"])
        lbfgs.load_state_dict(state["lbfgs"])
        phase, adam_done, lbfgs_done = state["phase"], state["adam_done"], state["lbfgs_done"]
        history, x, t, stopped = state["history"], state["x"], state["t"], state["stopped"]
        gen.set_state(state["generator"])
        resumed_from = adam_done + lbfgs_done
        logger.info("resumed %s at iteration %d (%s)", ckpt, resumed_from, phase)

    total = cfg.adam_steps + cfg.lbfgs_steps
    bar = tqdm(total=total, initial=resumed_from, disable=not progress, desc="train", leave=False)
    last = math.nan
    adam_time = lbfgs_time = 0.0

    # ---- Adam ----
    if phase == "adam":
        t_start = time.perf_counter()
        best, since = math.inf, 0
        while adam_done < cfg.adam_steps:
            if cfg.rar_every and adam_done and adam_done % cfg.rar_every == 0:
                xa, ta = _rar(model, cfg, gen, dtype, device)
                x, t = torch.cat([x, xa]), torch.cat([t, ta])
            adam.zero_grad(set_to_none=True)
            loss = _loss(model, x, t, x0, cfg)
            loss.backward()
            adam.step()
            adam_done += 1
            last = float(loss.detach())
            if not math.isfinite(last):
                raise FloatingPointError(f"Adam loss is {last} at step {adam_done}; lower adam_lr")
            if adam_done % cfg.log_every == 0 or adam_done == 1:
                history.append({"iteration": adam_done, "phase": "adam", "loss": last})
                bar.set_postfix(loss=f"{last:.2e}")
            bar.update(1)
            if cfg.loss_tol and last < cfg.loss_tol:
                stopped = "loss_tol"
                break
            if cfg.patience:
                if last < best * (1 - cfg.min_delta):
                    best, since = last, 0
                else:
                    since += 1
                    if since >= cfg.patience:
                        stopped = "patience"
                        break
            if ckpt is not None and adam_done % cfg.checkpoint_every == 0:
                save()
        adam_time = time.perf_counter() - t_start
        phase = "lbfgs" if stopped != "loss_tol" else "done"
        save()

    # ---- L-BFGS ----
    if phase == "lbfgs":
        t_start = time.perf_counter()

        def closure() -> Tensor:
            lbfgs.zero_grad(set_to_none=True)
            loss = _loss(model, x, t, x0, cfg)
            loss.backward()
            return loss

        first = lbfgs.param_groups[0]["params"][0]  # LBFGS keeps its state on this one
        while lbfgs_done < cfg.lbfgs_steps:
            chunk = min(cfg.lbfgs_chunk, cfg.lbfgs_steps - lbfgs_done)
            lbfgs.param_groups[0]["max_iter"] = chunk
            max_eval = lbfgs.param_groups[0]["max_eval"] = chunk * 5 // 4
            backup = [p.detach().clone() for p in model.parameters()]
            before = lbfgs.state[first].get("n_iter", 0)
            evals_before = lbfgs.state[first].get("func_evals", 0)
            lbfgs.step(closure)
            with torch.no_grad():
                now_loss = float(_loss(model, x, t, x0, cfg)) if chunk else last
            done = lbfgs.state[first].get("n_iter", 0) - before
            evals = lbfgs.state[first].get("func_evals", 0) - evals_before
            if not math.isfinite(now_loss):
                with torch.no_grad():
                    for p, b in zip(model.parameters(), backup, strict=True):
                        p.copy_(b)
                stopped = "nonfinite"
                logger.warning("L-BFGS reached a non-finite loss; kept the last finite weights")
                break
            lbfgs_done += done
            last = now_loss
            history.append(
                {"iteration": cfg.adam_steps + lbfgs_done, "phase": "lbfgs", "loss": last}
            )
            bar.set_postfix(loss=f"{last:.2e}")
            bar.update(done)
            if ckpt is not None:
                save()
            if cfg.loss_tol and last < cfg.loss_tol:
                stopped = "loss_tol"
                break
            # Fewer iterations than asked without using up the evaluations: torch's LBFGS
            # met its gradient/change tolerance (or made no progress). Running out of
            # line-search evaluations is not convergence: go on with the next chunk.
            if done == 0 or (done < chunk and evals < max_eval):
                stopped = "lbfgs_converged"
                break
        lbfgs_time = time.perf_counter() - t_start
        phase = "done"
        save()
    bar.close()

    if not math.isfinite(last):  # no iterations were run in this call
        with torch.no_grad():
            last = float(_loss(model, x, t, x0, cfg))
    ex, et = problem.domain.axis_coords((cfg.eval_n_x, cfg.eval_n_t), dtype=dtype, device=device)
    if u_ref is None:
        u_ref = problem.reference(ex.double(), et.double())
    elif tuple(u_ref.shape) != (cfg.eval_n_x, cfg.eval_n_t):
        raise ValueError(
            f"u_ref must have shape ({cfg.eval_n_x}, {cfg.eval_n_t}), got {tuple(u_ref.shape)}"
        )
    evaluation = evaluate(model, ex, et, u_ref)
    return TrainResult(
        history=history,
        final_loss=last,
        evaluation=evaluation,
        adam_iterations=adam_done,
        lbfgs_iterations=lbfgs_done,
        wall_time=time.perf_counter() - start,
        adam_time=adam_time,
        lbfgs_time=lbfgs_time,
        stopped=stopped,
        resumed_from=resumed_from,
        n_collocation=len(x),
        info=info,
    )


@dataclass(frozen=True)
class PINNRunConfig:
    """One training run from names (what the CLI fills).

    Attributes:
        pde: one of :data:`~solvers.pinns.PDE_NAMES`.
        model: ``"pinn"`` or ``"lpinn"``.
        beta: convection speed (convection problems), ``>= 0``.
        nu: diffusivity; ``None``: the problem's default.
        C: Burgers' mean value.
        rho: reaction rate (reaction-diffusion).
        model_config: architecture (``None``: the defaults of the note's CPU check).
        train: training settings.
        device: torch device name.
    """

    pde: str = "convection"
    model: str = "lpinn"
    beta: float = 30.0
    nu: float | None = None
    C: float = 0.0
    rho: float = 5.0
    model_config: PINNConfig | LagrangianPINNConfig | None = None
    train: TrainConfig = field(default_factory=TrainConfig)
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.pde not in PDE_NAMES:
            raise ValueError(f"unknown pde {self.pde!r}; expected one of {PDE_NAMES}")
        if self.model not in MODEL_NAMES:
            raise ValueError(f"unknown model {self.model!r}; expected one of {MODEL_NAMES}")

    def problem(self) -> PDEProblem:
        """The :class:`PDEProblem` these names describe."""
        return make_problem(self.pde, beta=self.beta, nu=self.nu, C=self.C, rho=self.rho)


def run(
    config: PINNRunConfig,
    *,
    out: str | Path | None = None,
    progress: bool = False,
    u_ref: Tensor | None = None,
) -> TrainResult:
    """Build the problem and model, train, and (with ``out``) write ``result.json``,
    ``fields.png`` and the checkpoint there (a rerun with ``out`` resumes).

    Args:
        config: the run.
        out: output folder, or ``None`` for no files.
        progress: show a tqdm bar.
        u_ref: optional precomputed reference on the evaluation grid.
    """
    problem = config.problem()
    dtype = _DTYPES[config.train.dtype]
    model = build_model(
        problem,
        config.model,
        config.model_config,
        seed=config.train.seed,
        dtype=dtype,
        device=config.device,
    )
    result = train(model, config.train, checkpoint_dir=out, progress=progress, u_ref=u_ref)
    if out is not None:
        from solvers.pinns.plot import plot_fields

        out = Path(out)
        tc = config.train
        ex, et = problem.domain.axis_coords((tc.eval_n_x, tc.eval_n_t), dtype=dtype)
        ex, et = ex.to(config.device), et.to(config.device)
        ref = u_ref if u_ref is not None else problem.reference(ex.double(), et.double())
        pred = model.eulerian(ex, et)
        title = f"{problem.name} {dict(problem.params)}, {config.model}: rel L2 {result.rel_l2:.2e}"
        plot_fields(pred, ref, ex, et, out / "fields.png", title=title)
        write_json(out / "result.json", result.to_dict())
    return result
