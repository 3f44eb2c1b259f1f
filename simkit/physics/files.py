"""Stability of mesh files and folders: what ``simkit stability`` runs."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simkit.geometry.mesh import MESH_SUFFIXES, Mesh
from simkit.physics.parallel import Backend, evaluate
from simkit.physics.stability import StabilityConfig, StabilityResult
from simkit.physics.support import support_margin

__all__ = ["FileVerdict", "assess_files", "collect_mesh_files"]


def collect_mesh_files(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Expand files and folders (recursively) into mesh files, in a stable order.

    Raises:
        FileNotFoundError: a path does not exist.
        ValueError: a file has an unknown suffix, or nothing is found.
    """
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(
                sorted(
                    p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in MESH_SUFFIXES
                )
            )
        elif path.is_file():
            if path.suffix.lower() not in MESH_SUFFIXES:
                raise ValueError(
                    f"{str(path)!r} is not a mesh file; expected one of {MESH_SUFFIXES}"
                )
            found.append(path)
        else:
            raise FileNotFoundError(f"no such file or folder: {str(path)!r}")
    if not found:
        raise ValueError(
            f"no mesh files ({', '.join(MESH_SUFFIXES)}) under {[str(p) for p in paths]}"
        )
    return found


@dataclass(frozen=True)
class FileVerdict:
    """The simulator's verdict on one file, with the analytic support margin beside it."""

    file: str
    result: StabilityResult
    support_margin_m: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            **self.result.to_dict(),
            "support_margin_m": self.support_margin_m,
        }


def _load_with_margin(path: Path) -> tuple[Mesh | str, float | None]:
    """The loaded mesh (or the path, when it does not load) and its support margin.

    Each file is read once: the mesh goes on to the simulation as it is. A file that
    does not load is passed on as its path, so that its simulation result carries the
    loader's error, as for any object that cannot be simulated.
    """
    try:
        mesh = Mesh.load(path)
    except Exception:  # noqa: BLE001 - reported in the file's simulation result
        return str(path), None
    try:
        return mesh, float(support_margin(mesh))
    except ValueError:  # open or degenerate mesh: the simulation result carries the error
        return mesh, None


def assess_files(
    paths: Sequence[str | os.PathLike[str]],
    config: StabilityConfig | None = None,
    *,
    workers: int | None = None,
    backend: Backend = "process",
    progress: bool | None = None,
    timeout_s: float | None = None,
) -> list[FileVerdict]:
    """Simulate every mesh file under ``paths`` and compute its support margin.

    Each file is loaded once, here; the simulation gets the mesh (reduced to its
    convex hull and mass properties before it goes to a worker).

    ``workers``, ``backend``, ``progress`` and ``timeout_s`` are :func:`evaluate`'s.
    """
    files = collect_mesh_files(paths)
    loaded = [_load_with_margin(f) for f in files]
    results = evaluate(
        [obj for obj, _ in loaded],
        config,
        workers=workers,
        backend=backend,
        progress=progress,
        timeout_s=timeout_s,
    )
    return [
        FileVerdict(str(f), r, margin)
        for f, (_, margin), r in zip(files, loaded, results, strict=True)
    ]
