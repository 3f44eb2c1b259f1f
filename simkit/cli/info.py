"""``simkit info``: versions, devices and CUDA."""

from __future__ import annotations

import platform
from importlib import metadata

import click

from simkit.cli._common import emit_json, json_option

_PACKAGES = (
    "simkit", "torch", "numpy", "scipy", "trimesh", "manifold3d", "open3d", "pybullet", "diffusers",
    "cvxpylayers", "peft", "neuraloperator", "h5py", "scikit-image", "click", "ray",
)  # fmt: skip


def collect_info() -> dict:
    import torch

    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    cuda = torch.cuda.is_available()
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "cuda_available": cuda,
        "cuda_version": torch.version.cuda,
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if cuda
        else [],
        "default_device": "cuda" if cuda else "cpu",
        "torch_threads": torch.get_num_threads(),
    }


@click.command()
@json_option
def info(as_json: bool) -> None:
    """Show versions of simkit and its dependencies, and the devices torch sees."""
    data = collect_info()
    if as_json:
        emit_json(data)
        return
    click.echo(f"python   {data['python']}  ({data['platform']})")
    for name, version in data["packages"].items():
        click.echo(f"{name:<15}{version or 'not installed'}")
    gpus = ", ".join(data["gpus"]) or "none"
    click.echo(
        f"device   default {data['default_device']}; CUDA {data['cuda_version'] or '-'}; GPUs: {gpus}"
    )
    click.echo(f"threads  {data['torch_threads']}")
