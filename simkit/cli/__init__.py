"""The ``simkit`` command line (click).

Command modules import only click and the standard library at the top; torch and
the optional libraries load inside each command, so ``simkit --help`` stays fast.
"""

from __future__ import annotations

import logging

import click

from simkit import __version__
from simkit.cli.align import align, evaluate, soup
from simkit.cli.generators import generate, train_generator
from simkit.cli.geometry import convert, inspect
from simkit.cli.info import info
from simkit.cli.pde import pde
from simkit.cli.physics import stability
from simkit.cli.pinn import pinn
from simkit.cli.shapes import demo, shapes

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="simkit")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def main(verbose: int) -> None:
    """simkit: stable 3D objects, neural PDE solvers and simulator-feedback fine-tuning."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


for _command in (
    generate, train_generator, align, evaluate, soup, pde, pinn, demo, shapes, stability,
    inspect, convert, info,
):  # fmt: skip
    main.add_command(_command)
