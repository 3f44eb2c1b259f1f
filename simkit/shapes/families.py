"""The family registry: names, labels, reproducible sampling and building.

A family's label is its index in :data:`FAMILIES`. Sample ``i`` of a family draws its
parameters from a generator seeded by ``(seed, family, i)`` alone, so the first k
samples are the same whatever ``n`` is.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import trimesh

from simkit.geometry import Mesh
from simkit.shapes.brackets import BracketLParams, BracketTParams
from simkit.shapes.furniture import ChairParams, ShelfParams, StoolParams, TableParams
from simkit.shapes.household import LampParams, MugParams, VaseParams

__all__ = ["FAMILIES", "FamilyParams", "ShapeSample", "build", "params_type", "sample"]


class FamilyParams(Protocol):
    """What every family's frozen parameter dataclass provides."""

    @classmethod
    def sample(cls, rng: np.random.Generator) -> FamilyParams:
        """Draw a parameter set from the family's documented ranges."""
        ...

    def solid(self) -> trimesh.Trimesh:
        """One watertight solid, metres, z up, resting on z = 0."""
        ...


_PARAMS: dict[str, type[FamilyParams]] = {
    "table": TableParams,
    "chair": ChairParams,
    "stool": StoolParams,
    "lamp": LampParams,
    "mug": MugParams,
    "vase": VaseParams,
    "shelf": ShelfParams,
    "bracket_l": BracketLParams,
    "bracket_t": BracketTParams,
}

#: Family names in label order: the label of a family is its index here.
FAMILIES: tuple[str, ...] = tuple(_PARAMS)


@dataclass(frozen=True)
class ShapeSample:
    """One procedural object.

    Attributes:
        family: the family's name, one of :data:`FAMILIES`.
        label: the family's index in :data:`FAMILIES`.
        params: the parameter set as a JSON-serialisable dict; ``build(family, params)``
            rebuilds the same mesh.
        mesh: the watertight solid; vertices (V, 3) float64, metres, z up, lowest
            vertex on z = 0, bounding box centred on x = y = 0.
        seed: the per-sample seed its parameters were drawn with
            (``numpy.random.default_rng(seed)``).
    """

    family: str
    label: int
    params: dict[str, Any]
    mesh: Mesh
    seed: int


def _check_family(family: str) -> None:
    if family not in _PARAMS:
        raise ValueError(f"unknown shape family {family!r}; expected one of {list(FAMILIES)}")


def params_type(family: str) -> type[FamilyParams]:
    """The frozen parameter dataclass of ``family`` (e.g. ``TableParams`` for "table")."""
    _check_family(family)
    return _PARAMS[family]


def _sample_seed(seed: int, family: str, index: int) -> int:
    """Seed of sample ``index`` of ``family``: a function of (seed, family, index) only.

    crc32 gives a fixed integer per family name across processes (``hash`` is salted).
    """
    sequence = np.random.SeedSequence(seed, spawn_key=(zlib.crc32(family.encode()), index))
    return int(sequence.generate_state(1, dtype=np.uint64)[0])


def _as_params(family: str, params: Any) -> Any:
    cls = _PARAMS[family]
    if isinstance(params, cls):
        return params
    if isinstance(params, Mapping):
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(params) - names)
        missing = sorted(
            f.name
            for f in dataclasses.fields(cls)
            if f.name not in params
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        )
        if unknown or missing:
            raise ValueError(
                f"bad parameters for family {family!r}: unknown {unknown}, missing {missing}; "
                f"expected fields {sorted(names)}"
            )
        return cls(**params)
    raise TypeError(
        f"params for family {family!r} must be a {cls.__name__} or a mapping, "
        f"got {type(params).__name__}"
    )


def build(family: str, params: Any) -> Mesh:
    """Build one object from an explicit parameter set.

    Args:
        family: one of :data:`FAMILIES`.
        params: the family's parameter dataclass (e.g. :class:`TableParams`) or a mapping
            of its fields, such as :attr:`ShapeSample.params`.

    Returns:
        A watertight :class:`Mesh`, vertices (V, 3) float64 in metres, z up, resting with
        its lowest vertex on z = 0, bounding box centred on x = y = 0.

    Raises:
        ValueError: unknown family, unknown or missing fields, or out-of-range values.
        TypeError: ``params`` is neither the family's dataclass nor a mapping.
    """
    _check_family(family)
    return Mesh.from_trimesh(_as_params(family, params).solid())


def sample(family: str, n: int, seed: int = 0) -> list[ShapeSample]:
    """Draw ``n`` objects of one family, reproducibly.

    Sample ``i`` uses the generator ``numpy.random.default_rng(s_i)`` with ``s_i`` derived
    from ``(seed, family, i)``, so it does not depend on ``n``; the same seed gives
    identical vertices.

    Args:
        family: one of :data:`FAMILIES`.
        n: number of samples, >= 0.
        seed: non-negative integer seed.

    Returns:
        ``n`` :class:`ShapeSample` in index order.

    Raises:
        ValueError: unknown family, negative ``n`` or a negative or non-integer seed.
    """
    _check_family(family)
    n = _check_count("n", n)
    seed = _check_count("seed", seed)
    return [_sample_one(family, i, seed) for i in range(n)]


def _check_count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    return int(value)


def _sample_one(family: str, index: int, seed: int) -> ShapeSample:
    """Sample ``index`` of ``family`` under ``seed`` (arguments already validated)."""
    sample_seed = _sample_seed(seed, family, index)
    params = _PARAMS[family].sample(np.random.default_rng(sample_seed))
    return ShapeSample(
        family=family,
        label=FAMILIES.index(family),
        params=dataclasses.asdict(params),
        mesh=Mesh.from_trimesh(params.solid()),
        seed=sample_seed,
    )
