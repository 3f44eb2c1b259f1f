"""Generative models of 3D shapes built on :mod:`simkit` (filled by later work)."""

__all__: list[str] = []
