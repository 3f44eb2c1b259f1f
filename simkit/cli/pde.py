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
    """Neural PDE solvers: reference datasets."""


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
