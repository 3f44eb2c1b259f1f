"""``simkit pinn train``: physics-informed networks in the Eulerian and Lagrangian frames."""

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

# Mirrors solvers.pinns.PDE_NAMES / MODEL_NAMES (kept here so --help imports no torch).
_PDES = ("convection", "convection-diffusion", "burgers", "reaction-diffusion")
_MODELS = ("lpinn", "pinn")


@click.group()
def pinn() -> None:
    """Physics-informed networks (PINN) and Lagrangian PINNs (LPINN) on 1D periodic PDEs."""


@pinn.command()
@click.option("--pde", type=click.Choice(_PDES), default="convection", show_default=True)
@click.option(
    "--beta", type=float, default=30.0, show_default=True, help="Convection speed (>= 0)."
)
@click.option(
    "--nu",
    type=float,
    default=None,
    help="Diffusivity [default: convection 0, convection-diffusion 0.1, burgers 0.01, "
    "reaction-diffusion 3].",
)
@click.option(
    "--C", "C", type=float, default=0.0, show_default=True, help="Burgers: u0 = sin x + C."
)
@click.option("--rho", type=float, default=5.0, show_default=True, help="Reaction rate.")
@click.option("--model", type=click.Choice(_MODELS), default="lpinn", show_default=True)
@click.option(
    "--dtype", type=click.Choice(("float32", "float64")), default="float32", show_default=True
)
@click.option("--adam-steps", type=click.IntRange(min=0), default=3000, show_default=True)
@click.option("--lbfgs-steps", type=click.IntRange(min=0), default=500, show_default=True)
@click.option(
    "--lr", type=float, default=None, help="Adam learning rate [default: pinn 1e-3, lpinn 1e-2]."
)
@click.option("--n-x", type=click.IntRange(min=2), default=64, show_default=True)
@click.option("--n-t", type=click.IntRange(min=2), default=32, show_default=True)
@click.option(
    "--ic",
    type=click.Choice(("hard", "soft")),
    default=None,
    help="Initial condition [default: pinn soft, lpinn hard].",
)
@click.option(
    "--diffusion",
    type=click.Choice(("label", "chain")),
    default="label",
    show_default=True,
    help="LPINN diffusion term: u_xixi (paper) or the exact chain rule u_XX.",
)
@click.option("--base-drift", is_flag=True, help="LPINN: add t f(u0) to the characteristic.")
@click.option("--causal", is_flag=True, help="Causal weighting of the residual in time.")
@click.option(
    "--rar-every",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="RAR period (0: off).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help="Folder for result.json, fields.png and the checkpoint (a rerun resumes).",
)
@device_option
@seed_option
@json_option
def train(
    pde: str,
    beta: float,
    nu: float | None,
    C: float,
    rho: float,
    model: str,
    dtype: str,
    adam_steps: int,
    lbfgs_steps: int,
    lr: float | None,
    n_x: int,
    n_t: int,
    ic: str | None,
    diffusion: str,
    base_drift: bool,
    causal: bool,
    rar_every: int,
    out: str | None,
    device: str,
    seed: int,
    as_json: bool,
) -> None:
    """Train a PINN or LPINN and report the relative L2 error against the reference."""
    from solvers.pinns import LagrangianPINNConfig, PINNConfig, PINNRunConfig, TrainConfig
    from solvers.pinns import run as run_pinn

    def make() -> PINNRunConfig:
        if model == "pinn":
            mc = PINNConfig(ic=ic or "soft")
        else:
            mc = LagrangianPINNConfig(ic=ic or "hard", diffusion=diffusion, base_drift=base_drift)
        tc = TrainConfig(
            n_x=n_x,
            n_t=n_t,
            adam_steps=adam_steps,
            lbfgs_steps=lbfgs_steps,
            adam_lr=lr,
            dtype=dtype,
            seed=seed,
            causal=causal,
            rar_every=rar_every,
        )
        return PINNRunConfig(
            pde=pde,
            model=model,
            beta=beta,
            nu=nu,
            C=C,
            rho=rho,
            model_config=mc,
            train=tc,
            device=resolve_device_or_fail(device),
        )

    config = fail_on_value_error(make)
    try:
        result = fail_on_value_error(lambda: run_pinn(config, out=out, progress=not as_json))
    except FloatingPointError as exc:  # a diverged Adam phase: say so, no traceback
        raise click.ClickException(str(exc)) from exc
    if as_json:
        d = result.to_dict()
        d["out"] = out
        emit_json(d)
        return
    ev = result.evaluation
    click.echo(
        f"{pde} {model}: relative L2 {ev.rel_l2:.3e} (spectral-norm variant "
        f"{ev.rel_l2_spectral:.3e}"
        + (f", at Lagrangian points {ev.rel_l2_lagrangian:.3e}" if ev.rel_l2_lagrangian else "")
        + ")"
    )
    click.echo(
        f"{result.iterations} iterations ({result.adam_iterations} Adam, "
        f"{result.lbfgs_iterations} L-BFGS), final loss {result.final_loss:.3e}, "
        f"{result.wall_time:.1f} s, stopped: {result.stopped}"
    )
    if out:
        click.echo(f"wrote {out}/result.json and {out}/fields.png")
