"""``simkit inspect`` and ``simkit convert``: mesh files in, facts or other files out."""

from __future__ import annotations

import click

from simkit.cli._common import (
    device_option,
    emit_json,
    fail_on_value_error,
    json_option,
    resolve_device_or_fail,
)


@click.command()
@click.argument("mesh", type=click.Path(dir_okay=False))
@click.option(
    "--density",
    type=float,
    default=1.0,
    show_default=True,
    help="Density in kg/m^3 for mass and inertia.",
)
@device_option
@json_option
def inspect(mesh: str, density: float, device: str, as_json: bool) -> None:
    """Report a mesh file's volume, centre of mass, inertia, watertightness and bounds."""
    from simkit.geometry import inspect_mesh

    dev = resolve_device_or_fail(device)
    report = fail_on_value_error(lambda: inspect_mesh(mesh, density=density, device=dev))
    if as_json:
        emit_json(report.to_dict())
        return
    click.echo(f"{report.path}: {report.num_vertices} vertices, {report.num_faces} faces")
    click.echo(
        f"watertight      {report.watertight} (winding consistent: {report.winding_consistent})"
    )
    lo, hi = report.bounds
    click.echo(
        "bounds          ["
        + ", ".join(f"{a:.6g}" for a in lo)
        + "] .. ["
        + ", ".join(f"{b:.6g}" for b in hi)
        + "]"
    )
    click.echo(f"area            {report.area:.6g} m^2")
    if report.error:
        click.echo(f"mass properties unavailable: {report.error}")
        return
    click.echo(f"volume          {report.volume:.9g} m^3")
    click.echo(f"mass            {report.mass:.9g} kg (density {density:g})")
    click.echo("centre of mass  [" + ", ".join(f"{v:.9g}" for v in report.center_of_mass) + "]")
    click.echo(
        "inertia (COM)   "
        + "\n                ".join(
            "[" + ", ".join(f"{v:12.6g}" for v in row) + "]" for row in report.inertia
        )
    )


@click.command()
@click.argument("source", type=click.Path(dir_okay=False))
@click.argument("destination", type=click.Path(dir_okay=False))
@click.option(
    "--voxelize",
    type=click.IntRange(min=2),
    default=None,
    help="Re-surface through a voxel grid of this resolution (makes the result watertight).",
)
@device_option
@json_option
def convert(
    source: str, destination: str, voxelize: int | None, device: str, as_json: bool
) -> None:
    """Convert a mesh between .obj, .ply, .stl, .off and .glb, optionally through voxels."""
    from simkit.geometry import convert_mesh

    dev = resolve_device_or_fail(device)
    result = fail_on_value_error(
        lambda: convert_mesh(source, destination, voxelize=voxelize, device=dev)
    )
    if as_json:
        emit_json(dict(result.__dict__))
    else:
        how = f" through a {voxelize}^3 voxel grid" if voxelize else ""
        click.echo(
            f"wrote {result.destination} ({result.num_vertices} vertices, {result.num_faces} faces){how}"
        )
