"""Neural and numerical PDE solvers built on :mod:`simkit` (filled by later work)."""

__all__: list[str] = []
