"""Options and output helpers shared by the command modules (click only, no torch)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])

DEVICE_HELP = "Torch device: auto (CUDA when present), cpu, cuda or cuda:N."


def device_option(fn: F) -> F:
    return click.option("--device", default="auto", show_default=True, help=DEVICE_HELP)(fn)


def seed_option(fn: F) -> F:
    return click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")(fn)


def json_option(fn: F) -> F:
    return click.option(
        "--json", "as_json", is_flag=True, help="Print a machine-readable JSON result on stdout."
    )(fn)


def emit_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2))


def resolve_device_or_fail(spec: str) -> str:
    """The device name for ``spec``, or a click usage error naming the problem."""
    from simkit.device import resolve_device

    try:
        return str(resolve_device(spec))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--device") from exc


def fail_on_value_error(fn: Callable[[], Any]) -> Any:
    """Run ``fn``; turn a library ValueError/FileNotFoundError into a clean CLI error."""
    try:
        return fn()
    except (ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from exc
