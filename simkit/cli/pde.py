"""``simkit pde ...``: neural-PDE data. ``simkit pde generate`` writes PDEBench-layout datasets."""

from __future__ import annotations

import click

from simkit.cli._common import (
    device_option,
    emit_json,
    fail_on_value_error,
    json_option,
    resolve_device_or_fail,
    seed_option,
)

# Kept in step with solvers.numerics.data.PDE_NAMES (not imported: it pulls in torch/h5py).
_PDE_NAMES = ("diffusion-sorption", "navier-stokes", "burgers")


@click.group()
def pde() -> None:
    """Neural PDE solvers: reference datasets, training (sc, hc, hc-moe) and evaluation."""


@pde.command()
@click.option("--pde", "pde_name", type=click.Choice(_PDE_NAMES), required=True, help="PDE.")
@click.option("--n", "n", type=click.IntRange(min=1), required=True, help="Trajectories.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    required=True,
    help="Output .h5 file (written as FILE.partial until complete; rerun to resume).",
)
@click.option(
    "--resolution",
    type=click.IntRange(min=8),
    default=None,
    help="Grid points: nx in 1D, n of n x n for navier-stokes "
    "[default: 1024 diffusion-sorption, 64 navier-stokes, 256 burgers].",
)
@click.option(
    "--times",
    "n_times",
    type=click.IntRange(min=2),
    default=None,
    help="Stored time points, t = 0 included [default: 101, 64, 101].",
)
@click.option(
    "--t-final",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Final time [default: 500 s, 5, 1].",
)
@click.option(
    "--viscosity",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="nu for navier-stokes [1e-4] and burgers [0.05].",
)
@click.option(
    "--diffusivity",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="D for diffusion-sorption, m^2/s [5e-4].",
)
@click.option(
    "--dt",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="navier-stokes solver time step [1e-3].",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=16,
    show_default=True,
    help="Trajectories simulated together (part of the config: keep it to resume).",
)
@click.option(
    "--precision",
    type=click.Choice(("float64", "float32")),
    default="float64",
    show_default=True,
    help="Solver dtype (the file stores float32).",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing complete FILE.")
@device_option
@seed_option
@json_option
def generate(
    pde_name: str,
    n: int,
    out: str,
    resolution: int | None,
    n_times: int | None,
    t_final: float | None,
    viscosity: float | None,
    diffusivity: float | None,
    dt: float | None,
    batch_size: int,
    precision: str,
    overwrite: bool,
    device: str,
    seed: int,
    as_json: bool,
) -> None:
    """Simulate N trajectories into an HDF5 file in PDEBench's layout (resumable)."""
    from solvers.numerics.data import DatasetConfig, generate_dataset

    config = fail_on_value_error(
        lambda: DatasetConfig(
            pde=pde_name,
            n=n,
            resolution=resolution,
            n_times=n_times,
            t_final=t_final,
            seed=seed,
            batch_size=batch_size,
            viscosity=viscosity,
            diffusivity=diffusivity,
            dt=dt,
            precision=precision,
            device=resolve_device_or_fail(device),
        )
    )
    try:
        result = fail_on_value_error(
            lambda: generate_dataset(config, out, progress=not as_json, overwrite=overwrite)
        )
    except RuntimeError as exc:  # the solver failed (non-finite values, no convergence)
        raise click.ClickException(str(exc)) from exc
    if as_json:
        emit_json(result.to_dict())
        return
    c = result.config
    grid = f"{c.resolution}x{c.resolution}" if c.spatial_dims == 2 else f"{c.resolution}"
    resumed = f", resumed at {result.resumed_from}" if result.resumed_from else ""
    click.echo(
        f"{c.pde}: {result.n_samples} samples on {grid} x {c.n_times} times "
        f"({result.generated} simulated{resumed}); {result.seconds:.1f} s"
    )
    click.echo(f"wrote {result.path}")


_TRAIN_PDES = ("diffusion-sorption", "navier-stokes")
_METHODS = ("sc", "hc", "hc-moe")


def _expert_splits(pde_name: str, experts: int) -> tuple[int, ...]:
    """The paper's layouts for K experts: DS slabs along x (1, K); NS (1, a, b), a*b = K."""
    if pde_name == "diffusion-sorption":
        return (1, experts)
    a = int(experts**0.5)
    while experts % a:
        a -= 1
    return (1, experts // a, a)


@pde.command()
@click.option("--pde", "pde_name", type=click.Choice(_TRAIN_PDES), required=True, help="PDE.")
@click.option("--method", type=click.Choice(_METHODS), required=True, help="sc, hc or hc-moe.")
@click.option(
    "--experts",
    type=click.IntRange(min=1),
    default=None,
    help="Experts K for hc-moe [4]: DS (1, K) slabs, NS (1, a, b) blocks.",
)
@click.option(
    "--data",
    "data_path",
    type=click.Path(exists=True, dir_okay=False),
    required=True,
    help="Training .h5 (PDEBench layout; only u0 and the grid are used).",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="JSON of PDETrainConfig fields (e.g. assets/configs/pihc-*.json).",
)
@click.option("--steps", type=click.IntRange(min=1), default=None, help="Optimiser steps.")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    default="runs/pihc",
    show_default=True,
    help="Run folder (resumed when it holds a checkpoint).",
)
@device_option
@seed_option
@json_option
def train(
    pde_name: str,
    method: str,
    experts: int | None,
    data_path: str,
    config_path: str | None,
    steps: int | None,
    out_dir: str,
    device: str,
    seed: int,
    as_json: bool,
) -> None:
    """Train an FNO by physics only: soft (sc), hard (hc) or hard + experts (hc-moe)."""
    import json
    import os

    from solvers.train import PDETrainConfig
    from solvers.train import train as run_train

    fields: dict = {}
    if config_path is not None:
        with open(config_path, encoding="utf-8") as fh:
            fields = json.load(fh)
        fields = {k: v for k, v in fields.items() if not k.startswith("_")}
    fields.update(pde=pde_name, method=method, seed=seed)
    if steps is not None:
        fields["steps"] = steps
    if method == "hc-moe" and experts is not None:
        fields["experts"] = _expert_splits(pde_name, experts)
    elif experts is not None and method != "hc-moe":
        raise click.BadParameter("--experts applies to --method hc-moe", param_hint="--experts")
    config = fail_on_value_error(lambda: PDETrainConfig.from_dict(fields))
    dev = resolve_device_or_fail(device)
    result = fail_on_value_error(
        lambda: run_train(config, data_path, out_dir, device=dev, progress=not as_json)
    )
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun only rank 0 reports
        return
    if as_json:
        emit_json(result.to_dict())
        return
    click.echo(
        f"{pde_name} {method}: {result.steps} steps, loss {result.initial_loss:.4g} -> "
        f"{result.final_loss:.4g}; {result.seconds_per_step:.3f} s/step; LM iterations "
        f"{result.lm_iterations_mean:.1f}, not converged {result.not_converged_fraction:.1%}; "
        f"peak {result.peak_memory_mb:.0f} MB"
    )
    click.echo(f"wrote {out_dir}")


@pde.command(name="eval")
@click.option(
    "--checkpoint",
    type=click.Path(exists=True),
    required=True,
    help="Run folder of `simkit pde train`.",
)
@click.option(
    "--data",
    "data_path",
    type=click.Path(exists=True, dir_okay=False),
    required=True,
    help="Held-out .h5 on the training grid.",
)
@click.option(
    "--png",
    type=click.Path(dir_okay=False),
    default=None,
    help="Figure of prediction, reference, error [RUN/eval.png].",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Samples per pass.")
@device_option
@seed_option
@json_option
def eval_(
    checkpoint: str,
    data_path: str,
    png: str | None,
    batch_size: int | None,
    device: str,
    seed: int,
    as_json: bool,
) -> None:
    """Relative L2 error, LM statistics, time and memory of a trained run on held-out data."""
    from solvers.train import evaluate

    dev = resolve_device_or_fail(device)
    result = fail_on_value_error(
        lambda: evaluate(
            checkpoint,
            data_path,
            device=dev,
            batch_size=batch_size,
            png=png,
            seed=seed,
            progress=not as_json,
        )
    )
    if as_json:
        emit_json(result.to_dict())
        return
    click.echo(
        f"{result.pde} {result.method}: rel L2 {result.rel_l2_mean:.2%} ± {result.rel_l2_std:.2%} "
        f"over {len(result.rel_l2)} samples; residual {result.residual_mean:.4g}; LM iterations "
        f"{result.lm_iterations_mean:.1f}, not converged {result.not_converged_fraction:.1%}; "
        f"{result.seconds_per_batch:.3f} s/batch; peak {result.peak_memory_mb:.0f} MB"
    )
    click.echo(f"wrote {result.png}")
