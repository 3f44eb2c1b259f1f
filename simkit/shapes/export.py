"""Write sampled shapes to disk: mesh files, their parameters and a PNG preview."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from simkit.geometry.mesh import MESH_SUFFIXES
from simkit.io import write_json

__all__ = ["ExportConfig", "ExportResult", "export_shapes"]


@dataclass(frozen=True)
class ExportConfig:
    """Settings of :func:`export_shapes`.

    Attributes:
        family: a name from :data:`simkit.shapes.FAMILIES`.
        n: number of objects, >= 1.
        out: output folder (created).
        seed: sampling seed.
        formats: mesh file suffixes to write, e.g. (".obj", ".glb").
        preview: also write ``preview.png``.
    """

    family: str
    n: int
    out: str | os.PathLike[str]
    seed: int = 0
    formats: tuple[str, ...] = (".obj",)
    preview: bool = True


@dataclass(frozen=True)
class ExportResult:
    """Files written by :func:`export_shapes`; ``records`` holds one dict per object."""

    files: list[str]
    preview: str | None
    manifest: str
    records: list[dict[str, Any]]


def export_shapes(config: ExportConfig) -> ExportResult:
    """Sample ``config.n`` objects of one family and write them with a manifest.

    Writes ``<family>_<i><suffix>`` for each format, ``shapes.json`` (parameters, seeds,
    files) and, unless disabled, ``preview.png``.
    """
    from simkit.shapes import sample
    from simkit.viz import plot_meshes

    formats = tuple(
        f if f.startswith(".") else f".{f}" for f in (s.lower() for s in config.formats)
    )
    bad = [f for f in formats if f not in MESH_SUFFIXES]
    if bad or not formats:
        raise ValueError(
            f"unknown mesh formats {bad or list(formats)}; choose from {list(MESH_SUFFIXES)}"
        )
    if not isinstance(config.n, int) or config.n < 1:
        raise ValueError(f"n must be a positive int, got {config.n!r}")
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    samples = sample(config.family, config.n, seed=config.seed)
    files, records = [], []
    for i, s in enumerate(
        tqdm(samples, desc=f"writing {config.family}", unit="mesh", disable=None)
    ):
        written = [str(s.mesh.save(out / f"{config.family}_{i}{ext}")) for ext in formats]
        files.extend(written)
        records.append(
            {"index": i, "family": s.family, "seed": s.seed, "params": s.params, "files": written}
        )
    preview = None
    if config.preview:
        preview = str(out / "preview.png")
        plot_meshes(
            [s.mesh for s in samples],
            preview,
            titles=[f"{config.family} {i}" for i in range(len(samples))],
        )
    manifest = out / "shapes.json"
    write_json(manifest, {"family": config.family, "seed": config.seed, "objects": records})
    return ExportResult(files=files, preview=preview, manifest=str(manifest), records=records)
