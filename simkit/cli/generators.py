"""``simkit generate`` and ``simkit train-generator``: the shape generators."""

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
from simkit.cli.shapes import FAMILY_NAMES

_SOLVERS = ("euler", "heun", "dpmpp_2m")


def _parse_D(value: str | None) -> float | None | str:
    if value is None:
        return "checkpoint"
    if value.lower() in ("inf", "none", "diffusion"):
        return None
    try:
        D = float(value)
    except ValueError:
        raise click.BadParameter(
            f"expected a positive number or 'inf' (diffusion), got {value!r}", param_hint="--D"
        ) from None
    if not D > 0:
        raise click.BadParameter(f"D must be positive, got {value!r}", param_hint="--D")
    return D


@click.command()
@click.option(
    "--n", "n", type=click.IntRange(min=1), default=16, show_default=True, help="Objects."
)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default="out/generate",
    show_default=True,
    help="Output folder.",
)
@click.option(
    "--checkpoint",
    default=None,
    help="Pipeline folder or shipped checkpoint name [default: shapes-dso, the generator "
    "fine-tuned on PyBullet's verdicts].",
)
@click.option(
    "--base",
    is_flag=True,
    help="Use the base generator, shapes-base, before its stability fine-tune.",
)
@click.option(
    "--family",
    type=click.Choice((*FAMILY_NAMES, "none")),
    default=None,
    help="Condition on one family ('none': unconditional) [default: cycle through all].",
)
@click.option(
    "--steps",
    type=click.IntRange(min=1),
    default=18,
    show_default=True,
    help="Solver steps (Heun: 2*steps-1 network calls).",
)
@click.option(
    "--solver",
    type=click.Choice(_SOLVERS),
    default=None,
    help="ODE solver [default: the checkpoint's].",
)
@click.option(
    "--D", "D", default=None, help="PFGM++ D, or 'inf' for diffusion [default: the trained D]."
)
@click.option(
    "--guidance",
    type=click.FloatRange(min=0),
    default=2.0,
    show_default=True,
    help="Classifier-free guidance weight (1: none).",
)
@click.option("--no-stability", is_flag=True, help="Skip the PyBullet verdicts.")
@click.option(
    "--retries",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Redraw each object that falls or is not one solid up to this many times "
    "(rejection sampling; the summary keeps the first draws' rate, the model's own).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Simulation processes [default: serial below 32 objects].",
)
@device_option
@seed_option
@json_option
def generate(
    n: int,
    out: str,
    checkpoint: str | None,
    base: bool,
    family: str | None,
    steps: int,
    solver: str | None,
    D: str | None,
    guidance: float,
    no_stability: bool,
    retries: int,
    workers: int | None,
    device: str,
    seed: int,
    as_json: bool,
) -> None:
    """Generate 3D objects: meshes (.glb, .obj), a PNG grid and stability verdicts."""
    from generators.generate import BASE_CHECKPOINT, GenerateConfig
    from generators.generate import generate as run

    if base and checkpoint is not None:
        raise click.UsageError("--base and --checkpoint name two checkpoints; give one")
    if base:
        checkpoint = BASE_CHECKPOINT
    config = fail_on_value_error(
        lambda: GenerateConfig(
            out=out,
            n=n,
            checkpoint=checkpoint,
            family=family,
            steps=steps,
            solver=solver,
            D=_parse_D(D),
            guidance_scale=guidance,
            seed=seed,
            stability=not no_stability,
            retries=retries,
            workers=workers,
            device=resolve_device_or_fail(device),
        )
    )
    result = fail_on_value_error(lambda: run(config, progress=not as_json))
    if as_json:
        emit_json(result.to_dict())
        return
    draws = f"{'draws':>6}" if retries else ""
    click.echo(f"{'#':>3}  {'family':<10} {'valid':<6} {'stands':<7} {'tilt':>6}{draws}  file")
    for o in result.objects:
        stands = "-" if o.stable is None else ("yes" if o.stable else "no")
        tilt = "-" if o.tilt_deg is None else f"{o.tilt_deg:.1f}"
        first = o.files[0] if o.files else (o.error or "")
        click.echo(
            f"{o.index:>3}  {o.family or '-':<10} {'yes' if o.valid else 'no':<6} "
            f"{stands:<7} {tilt:>6}{f'{o.draws:>6}' if retries else ''}  {first}"
        )
    frac = result.fraction_stable
    valid = sum(o.valid for o in result.objects)
    summary = f"{valid}/{len(result.objects)} valid"
    if frac is not None:
        summary += f", {frac:.0%} stand"
    if retries and result.first_draw_fraction_stable is not None:
        redrawn = sum(o.draws > 1 for o in result.objects)
        extra = sum(o.draws - 1 for o in result.objects)
        summary += (
            f" (first draws: {result.first_draw_fraction_stable:.0%} stood; "
            f"{redrawn} objects redrawn, {extra} extra draws)"
        )
    click.echo(f"{summary}; {result.seconds:.1f} s")
    click.echo(f"preview {result.preview}")
    click.echo(f"report  {result.report}")


@click.command(name="train-generator")
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    required=True,
    help="JSON or TOML file of GeneratorTrainConfig keys (see assets/configs/).",
)
@click.option("--out", default=None, help="Run folder (overrides the config's).")
@click.option(
    "--steps",
    type=click.IntRange(min=1),
    default=None,
    help="Optimiser steps (overrides the config's).",
)
@device_option
@json_option
def train_generator(
    config_file: str, out: str | None, steps: int | None, device: str, as_json: bool
) -> None:
    """Train a shape generator (resumes an interrupted run in the same folder).

    For several processes: torchrun --nproc_per_node N -m generators.train --config FILE
    """
    from generators.train import load_config
    from generators.train import train_generator as run

    config = fail_on_value_error(
        lambda: load_config(
            config_file, out=out, steps=steps, device=resolve_device_or_fail(device)
        )
    )
    result = fail_on_value_error(lambda: run(config, progress=not as_json))
    if as_json:
        emit_json({k: v for k, v in result.to_dict().items() if k != "history"})
        return
    click.echo(
        f"trained {result.steps} steps (resumed at {result.resumed_from}); "
        f"final loss {result.final_loss:.4f}; {result.seconds:.0f} s"
    )
    click.echo(f"pipeline {result.pipeline}")
