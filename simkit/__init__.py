"""simkit: physics and generative-model simulation on one geometry and mesh layer.

The top-level package is deliberately light: ``import simkit`` does not import torch.
Subpackages load on first attribute access (``simkit.geometry``, ``simkit.domain``...).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "device", "domain", "geometry", "io", "physics", "shapes", "viz"]

_SUBMODULES = frozenset(__all__) - {"__version__"}


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'simkit' has no attribute {name!r}")
