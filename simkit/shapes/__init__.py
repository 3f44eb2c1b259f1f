"""Procedural object families: the default training data for stable-object generators.

Each family (table, chair, stool, lamp, mug, vase, shelf, L and T brackets) is a frozen
parameter dataclass whose sampler draws from documented ranges; every object is one
watertight solid in metres, z up, resting on z = 0. The ranges are chosen so that
roughly a third to a half of every family cannot stand (its centre of mass projects
outside its support polygon; see :func:`simkit.physics.support_margin`).

    >>> from simkit.shapes import FAMILIES, sample, dataset
    >>> chairs = sample("chair", n=8, seed=0)
    >>> data = dataset(n=90, resolution=16, seed=0)   # (90, 16, 16, 16) voxels
"""

from simkit.shapes.brackets import BracketLParams, BracketTParams
from simkit.shapes.dataset import ShapeDataset, dataset, normalize_to_unit_cube
from simkit.shapes.families import FAMILIES, ShapeSample, build, params_type, sample
from simkit.shapes.furniture import ChairParams, ShelfParams, StoolParams, TableParams
from simkit.shapes.household import LampParams, MugParams, VaseParams

__all__ = [
    "FAMILIES",
    "BracketLParams",
    "BracketTParams",
    "ChairParams",
    "LampParams",
    "MugParams",
    "ShapeDataset",
    "ShapeSample",
    "ShelfParams",
    "StoolParams",
    "TableParams",
    "VaseParams",
    "build",
    "dataset",
    "normalize_to_unit_cube",
    "params_type",
    "sample",
]
