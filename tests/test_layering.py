"""The one-way dependency rule: solvers -> simkit and generators -> simkit, never back."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _imported_top_levels(package: str) -> set[tuple[str, str]]:
    found = set()
    for path in (ROOT / package).rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            found.update((n.split(".")[0], str(path.relative_to(ROOT))) for n in names)
    return found


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("simkit", {"solvers", "generators"}),
        ("solvers", {"generators"}),
        ("generators", {"solvers"}),
    ],
)
def test_no_upward_imports(package, forbidden):
    offenders = sorted(
        f"{where} imports {mod}" for mod, where in _imported_top_levels(package) if mod in forbidden
    )
    # The CLI is the one place that wires all three packages together.
    offenders = [o for o in offenders if not o.startswith("simkit/cli/")]
    assert offenders == []


def test_packages_import_and_simkit_is_light():
    code = "import simkit, solvers, generators, sys; print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "False"
