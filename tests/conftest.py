"""Shared pytest set-up: tests marked ``gpu`` skip on machines without CUDA."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (marker: gpu)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
