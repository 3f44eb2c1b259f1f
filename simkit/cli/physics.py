"""``simkit stability``: will these objects stand?"""

from __future__ import annotations

import click

from simkit.cli._common import emit_json, fail_on_value_error, json_option, seed_option


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Worker processes (default: all cores).",
)
@click.option(
    "--backend",
    type=click.Choice(["process", "serial", "ray"]),
    default="process",
    show_default=True,
    help="Where simulations run.",
)
@click.option(
    "--sim-time",
    type=click.FloatRange(min=0.0, min_open=True),
    default=10.0,
    show_default=True,
    help="Simulated seconds per trial.",
)
@click.option(
    "--trials",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Nudge directions per object.",
)
@click.option(
    "--density",
    type=click.FloatRange(min=0.0, min_open=True),
    default=500.0,
    show_default=True,
    help="kg/m^3.",
)
@click.option(
    "--collider",
    type=click.Choice(["hull", "vhacd"]),
    default="hull",
    show_default=True,
    help="Convex hull (exact on flat ground), or a V-HACD convex decomposition.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.0, min_open=True),
    default=60.0,
    show_default=True,
    help="Seconds one object may take before it is reported as timed out.",
)
@seed_option
@json_option
def stability(
    paths: tuple[str, ...],
    workers: int | None,
    backend: str,
    sim_time: float,
    trials: int,
    density: float,
    collider: str,
    timeout: float,
    seed: int,
    as_json: bool,
) -> None:
    """Simulate mesh files (and folders of them) in PyBullet: does each object stand?"""
    from simkit.physics import StabilityConfig
    from simkit.physics.files import assess_files

    config = StabilityConfig(
        sim_time_s=sim_time, trials=trials, density=density, seed=seed, collider=collider
    )
    verdicts = fail_on_value_error(
        lambda: assess_files(paths, config, workers=workers, backend=backend, timeout_s=timeout)
    )
    if as_json:
        emit_json([v.to_dict() for v in verdicts])
        return
    width = max(len(v.file) for v in verdicts)
    click.echo(f"{'file':<{width}}  {'stable':<7}{'tilt deg':>9}{'margin cm':>11}")
    for v in verdicts:
        if v.result.error:
            click.echo(f"{v.file:<{width}}  {'error':<7}{'':>9}{'':>11}  {v.result.error}")
            continue
        margin = "" if v.support_margin_m is None else f"{100 * v.support_margin_m:.2f}"
        click.echo(
            f"{v.file:<{width}}  {'yes' if v.result.stable else 'no':<7}{v.result.tilt_deg:>9.2f}{margin:>11}"
        )
    standing = sum(v.result.stable for v in verdicts)
    errors = sum(v.result.error is not None for v in verdicts)
    click.echo(
        f"\n{standing}/{len(verdicts)} stand"
        + (f"; {errors} could not be simulated" if errors else "")
    )
