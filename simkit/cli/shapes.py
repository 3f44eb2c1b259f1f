"""``simkit shapes`` and ``simkit demo``: procedural objects to files."""

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

# The family names, kept here so that `--help` needs no import of the shapes module;
# tests check this list against simkit.shapes.FAMILIES.
FAMILY_NAMES = ("table", "chair", "stool", "lamp", "mug", "vase", "shelf", "bracket_l", "bracket_t")


@click.command()
@click.option("--family", type=click.Choice(FAMILY_NAMES), required=True, help="Shape family.")
@click.option(
    "--n", "n", type=click.IntRange(min=1), default=8, show_default=True, help="Number of objects."
)
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Output folder.")
@click.option(
    "--format",
    "formats",
    multiple=True,
    default=(".obj",),
    show_default=True,
    help="Mesh format(s): obj, ply, stl, off, glb (repeatable).",
)
@click.option("--no-preview", is_flag=True, help="Skip the PNG preview.")
@seed_option
@json_option
def shapes(
    family: str,
    n: int,
    out: str,
    formats: tuple[str, ...],
    no_preview: bool,
    seed: int,
    as_json: bool,
) -> None:
    """Sample procedural objects of one family and write meshes plus a PNG grid."""
    from simkit.shapes.export import ExportConfig, export_shapes

    config = ExportConfig(
        family=family, n=n, out=out, seed=seed, formats=formats, preview=not no_preview
    )
    result = fail_on_value_error(lambda: export_shapes(config))
    if as_json:
        emit_json(dict(result.__dict__))
        return
    click.echo(f"wrote {len(result.files)} mesh file(s) to {out}")
    if result.preview:
        click.echo(f"preview  {result.preview}")
    click.echo(f"manifest {result.manifest}")


@click.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default="out/demo",
    show_default=True,
    help="Output folder.",
)
@click.option(
    "--n-per-family",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="Objects per family.",
)
@click.option(
    "--family",
    "families",
    multiple=True,
    type=click.Choice(FAMILY_NAMES),
    help="Restrict to these families (repeatable).",
)
@click.option(
    "--resolution",
    type=click.IntRange(min=4),
    default=32,
    show_default=True,
    help="Voxel resolution of the round trip.",
)
@click.option(
    "--density", type=float, default=500.0, show_default=True, help="Density in kg/m^3 (500: wood)."
)
@seed_option
@device_option
@json_option
def demo(
    out: str,
    n_per_family: int,
    families: tuple[str, ...],
    resolution: int,
    density: float,
    seed: int,
    device: str,
    as_json: bool,
) -> None:
    """Procedural objects -> meshes -> voxels -> files, a PNG preview and their mass properties."""
    from simkit.demo import DemoConfig, run_demo

    config = DemoConfig(
        out=out,
        n_per_family=n_per_family,
        families=families or None,
        resolution=resolution,
        seed=seed,
        density=density,
        device=resolve_device_or_fail(device),
    )
    result = fail_on_value_error(lambda: run_demo(config))
    if as_json:
        emit_json(result.to_dict())
        return
    click.echo(
        f"{'object':<14}{'volume m^3':>12}{'mass kg':>10}{'COM z m':>10}{'margin cm':>11}  verdict"
    )
    for r in result.records:
        verdict = "stands" if r.stands else "tips over"
        click.echo(
            f"{r.name:<14}{r.volume_m3:>12.5f}{r.mass_kg:>10.2f}{r.center_of_mass_m[2]:>10.3f}"
            f"{100 * r.support_margin_m:>11.2f}  {verdict}"
        )
    standing = sum(r.stands for r in result.records)
    click.echo(f"\n{standing}/{len(result.records)} objects stand (analytic support check).")
    click.echo(f"meshes   {out}/meshes/\npreview  {result.preview}\nreport   {result.report}")
