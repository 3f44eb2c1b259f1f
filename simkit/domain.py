"""Space-time domains, tensor-product grids, collocation sampling and expert partitions.

Every domain here is an axis-aligned box: an :class:`Interval` (1D space), a
:class:`Rectangle` (2D), a :class:`Box` (3D), a :class:`TimeInterval`, or their product
:class:`SpaceTime`. They share one contract (:class:`Domain`): ``ndim``, ``bounds``,
``periodic_axes``, ``volume``, ``contains``, ``axis_coords``, ``grid``, ``spacing``,
``sample`` and ``wrap``. Axis order is always space first (x, y, z), then time, for grid
coordinates and sampled points alike.

Grid convention (as jax-cfd and the pseudo-spectral solvers use): a **periodic** axis of
length ``L = hi - lo`` with ``n`` points is ``x_i = lo + i * L / n`` for ``i = 0..n-1``;
the right end is the image of the left one and is left out, so the spacing is ``L / n``.
A **non-periodic** axis (time always is) includes both ends: ``x_i = lo + i * L / (n - 1)``,
the same values as ``numpy.linspace(lo, hi, n)``. ``endpoint=`` overrides this per axis.

:class:`Partition` cuts a field on a grid into the fixed, non-overlapping expert blocks
of PI-HC-MoE (Chalapathi et al., ICLR 2024, Eq. 3: ``u = sum_k 1_{Omega_k} b . omega_k``),
with the block sizes of ``numpy.array_split``; :meth:`Partition.merge` is the exact
inverse of :meth:`Partition.split`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Literal, Protocol, runtime_checkable

import torch
from torch import Tensor

__all__ = [
    "Box",
    "Domain",
    "Interval",
    "Partition",
    "Rectangle",
    "SamplingMethod",
    "SpaceTime",
    "TimeInterval",
]

#: Names accepted by ``sample(method=...)``.
SamplingMethod = Literal["uniform", "sobol", "latin"]
_METHODS: tuple[str, ...] = ("uniform", "sobol", "latin")

DeviceLike = torch.device | str | int | None

# Seeds for torch.quasirandom.SobolEngine are drawn from the caller's generator in [0, 2^62).
_SOBOL_SEED_HIGH = 2**62


# --------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------


def _finite_float(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{name} must be a real number, got {value!r} of type {type(value).__name__}"
        )
    out = float(value)
    if not math.isfinite(out):
        raise ValueError(f"{name} must be finite, got {out!r}")
    return out


def _check_bounds(lo: float, hi: float, lo_name: str, hi_name: str) -> None:
    if not lo < hi:
        raise ValueError(
            f"empty domain: expected {lo_name} < {hi_name}, got {lo_name}={lo!r}, {hi_name}={hi!r}"
        )
    if not math.isfinite(hi - lo):
        raise ValueError(f"domain length {hi_name} - {lo_name} overflows: {lo!r}, {hi!r}")


def _positive_int(value: object, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r} of type {type(value).__name__}")
    out = int(value)
    if out < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {out}")
    return out


def _int_tuple(values: object, name: str, length: int | None, minimum: int) -> tuple[int, ...]:
    if isinstance(values, numbers.Integral) and not isinstance(values, bool):
        values = (values,)
    if not isinstance(values, Sequence) or isinstance(values, str):
        raise TypeError(f"{name} must be a sequence of ints, got {values!r}")
    if length is not None and len(values) != length:
        raise ValueError(
            f"{name} must have {length} entries (one per axis), got {len(values)}: {tuple(values)!r}"
        )
    return tuple(_positive_int(v, f"{name}[{i}]", minimum) for i, v in enumerate(values))


def _float_dtype(dtype: object) -> torch.dtype:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    return dtype


def _check_points(points: object, ndim: int) -> Tensor:
    if not isinstance(points, Tensor):
        raise TypeError(
            f"points must be a torch.Tensor of shape (..., {ndim}), got {type(points).__name__}"
        )
    if not points.is_floating_point():
        raise TypeError(f"points must be a floating tensor, got dtype {points.dtype}")
    if points.ndim == 0 or points.shape[-1] != ndim:
        raise ValueError(f"points must have shape (..., {ndim}), got {tuple(points.shape)}")
    return points


# --------------------------------------------------------------------------------------
# The shared contract
# --------------------------------------------------------------------------------------


@runtime_checkable
class Domain(Protocol):
    """What every simkit domain provides (all are axis-aligned boxes).

    Attributes:
        ndim: number of axes ``d`` (space axes, then time).
        bounds: ``d`` pairs ``(lo, hi)`` of floats, ``lo < hi``.
        periodic_axes: ``d`` bools, ``True`` where the axis is periodic.
        volume: Lebesgue measure, the product of the axis lengths (length, area, volume,
            or space measure times duration for a :class:`SpaceTime`).
    """

    @property
    def ndim(self) -> int: ...

    @property
    def bounds(self) -> tuple[tuple[float, float], ...]: ...

    @property
    def periodic_axes(self) -> tuple[bool, ...]: ...

    @property
    def volume(self) -> float: ...

    def contains(self, points: Tensor, *, atol: float = 0.0) -> Tensor: ...

    def grid(
        self,
        shape: int | Sequence[int],
        *,
        dtype: torch.dtype = torch.float32,
        device: DeviceLike = None,
        endpoint: bool | Sequence[bool] | None = None,
    ) -> Tensor: ...

    def sample(
        self,
        n: int,
        method: SamplingMethod = "uniform",
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: DeviceLike = None,
    ) -> Tensor: ...

    def wrap(self, points: Tensor) -> Tensor: ...


class _BoxDomain:
    """Shared implementation for axis-aligned boxes; subclasses define :attr:`axes`."""

    @property
    def axes(self) -> tuple[Interval, ...]:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def ndim(self) -> int:
        """Number of axes ``d``."""
        return len(self.axes)

    @property
    def bounds(self) -> tuple[tuple[float, float], ...]:
        """``d`` pairs ``(lo, hi)``, space axes first, then time."""
        return tuple((a.lo, a.hi) for a in self.axes)

    @property
    def periodic_axes(self) -> tuple[bool, ...]:
        """``d`` flags, ``True`` for periodic axes."""
        return tuple(a.periodic for a in self.axes)

    @property
    def lengths(self) -> tuple[float, ...]:
        """``d`` axis lengths ``hi - lo``."""
        return tuple(a.hi - a.lo for a in self.axes)

    @property
    def volume(self) -> float:
        """Measure of the domain: the product of the axis lengths."""
        return math.prod(self.lengths)

    def bounds_tensor(
        self, *, dtype: torch.dtype = torch.float32, device: DeviceLike = None
    ) -> Tensor:
        """Bounds as a ``(d, 2)`` tensor, column 0 ``lo`` and column 1 ``hi``."""
        return torch.tensor(self.bounds, dtype=_float_dtype(dtype), device=device)

    def contains(self, points: Tensor, *, atol: float = 0.0) -> Tensor:
        """Whether points lie in the closed box ``prod_j [lo_j - atol, hi_j + atol]``.

        Args:
            points: (..., d) floating tensor, domain units (space, then time).
            atol: non-negative slack added on every side.

        Returns:
            (...) bool tensor on the device of ``points``; ``False`` where any coordinate
            is NaN.
        """
        points = _check_points(points, self.ndim)
        atol = _finite_float(atol, "atol")
        if atol < 0:
            raise ValueError(f"atol must be >= 0, got {atol}")
        b = self.bounds_tensor(dtype=points.dtype, device=points.device)
        inside = (points >= b[:, 0] - atol) & (points <= b[:, 1] + atol)
        return inside.all(dim=-1)

    def _endpoints(self, endpoint: bool | Sequence[bool] | None) -> tuple[bool, ...]:
        if endpoint is None:
            return tuple(not p for p in self.periodic_axes)
        if isinstance(endpoint, bool):
            return (endpoint,) * self.ndim
        if not isinstance(endpoint, Sequence) or len(endpoint) != self.ndim:
            raise ValueError(
                f"endpoint must be None, a bool or {self.ndim} bools, got {endpoint!r}"
            )
        for i, e in enumerate(endpoint):
            if not isinstance(e, bool):
                raise TypeError(f"endpoint[{i}] must be a bool, got {e!r}")
        return tuple(endpoint)

    def _grid_shape(
        self, shape: int | Sequence[int], endpoints: tuple[bool, ...]
    ) -> tuple[int, ...]:
        dims = _int_tuple(shape, "shape", self.ndim, minimum=1)
        for i, (n, e) in enumerate(zip(dims, endpoints, strict=True)):
            if e and n < 2:
                raise ValueError(
                    f"shape[{i}]={n}: an axis that includes both ends needs at least 2 points"
                )
        return dims

    def spacing(
        self, shape: int | Sequence[int], *, endpoint: bool | Sequence[bool] | None = None
    ) -> tuple[float, ...]:
        """Grid step per axis: ``L / n`` without the right end, ``L / (n - 1)`` with it.

        Args:
            shape: points per axis, ``d`` ints (an int for a 1D domain).
            endpoint: as in :meth:`grid`.
        """
        endpoints = self._endpoints(endpoint)
        dims = self._grid_shape(shape, endpoints)
        return tuple(
            length / (n - 1 if e else n)
            for length, n, e in zip(self.lengths, dims, endpoints, strict=True)
        )

    def axis_coords(
        self,
        shape: int | Sequence[int],
        *,
        dtype: torch.dtype = torch.float32,
        device: DeviceLike = None,
        endpoint: bool | Sequence[bool] | None = None,
    ) -> tuple[Tensor, ...]:
        """1D coordinate vectors of the tensor-product grid, one per axis.

        Args:
            shape: points per axis ``(n_1, ..., n_d)`` (an int for a 1D domain). Axes that
                include both ends need ``n >= 2``.
            dtype: floating dtype of the result.
            device: device of the result (CPU when ``None``).
            endpoint: ``None`` (default) leaves out the right end on periodic axes and
                keeps it on the others; a bool applies to every axis; ``d`` bools set
                each axis.

        Returns:
            ``d`` tensors, the j-th of shape ``(n_j,)``: ``lo + i * L / n`` without the
            right end (spacing ``L / n``), ``numpy.linspace(lo, hi, n)`` with it.
        """
        dtype = _float_dtype(dtype)
        endpoints = self._endpoints(endpoint)
        dims = self._grid_shape(shape, endpoints)
        coords = []
        for (lo, hi), n, e in zip(self.bounds, dims, endpoints, strict=True):
            # numpy.linspace's formula, in float64 on the CPU (n values only), then cast.
            step = (hi - lo) / (n - 1 if e else n)
            x = lo + torch.arange(n, dtype=torch.float64) * step
            if e:
                x[-1] = hi
            coords.append(x.to(device=device, dtype=dtype))
        return tuple(coords)

    def grid(
        self,
        shape: int | Sequence[int],
        *,
        dtype: torch.dtype = torch.float32,
        device: DeviceLike = None,
        endpoint: bool | Sequence[bool] | None = None,
    ) -> Tensor:
        """Coordinates of the tensor-product grid.

        Periodic axes leave out the right end (``x_i = lo + i * L / n``); the others
        include both ends (``numpy.linspace``). See :meth:`axis_coords` for the arguments.

        Returns:
            (n_1, ..., n_d, d) tensor; ``grid[i_1, ..., i_d, j]`` is coordinate j of the
            point with index ``i_j`` on axis j (``numpy.meshgrid(..., indexing="ij")``).
        """
        coords = self.axis_coords(shape, dtype=dtype, device=device, endpoint=endpoint)
        return torch.stack(torch.meshgrid(*coords, indexing="ij"), dim=-1)

    def sample(
        self,
        n: int,
        method: SamplingMethod = "uniform",
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        device: DeviceLike = None,
    ) -> Tensor:
        """Collocation points in the domain.

        Methods:
            - ``"uniform"``: iid uniform on the box.
            - ``"sobol"``: scrambled Sobol points (``torch.quasirandom.SobolEngine``),
              the scrambling seeded from ``generator``. Balance properties are exact
              when ``n`` is a power of two.
            - ``"latin"``: Latin hypercube: each axis is cut into ``n`` equal strata and
              every stratum holds exactly one point; an independent random permutation
              per axis pairs the strata, and each point is uniform within its stratum.

        Randomness is drawn in float64 on the generator's device (on ``device`` when
        ``generator`` is None, from torch's default generator), then cast and moved, so
        the same generator state gives the same points on every device.

        Args:
            n: number of points, ``n >= 0``.
            method: ``"uniform"``, ``"sobol"`` or ``"latin"``.
            generator: source of randomness; ``None`` uses torch's default generator.
            dtype: floating dtype of the result.
            device: device of the result (CPU when ``None``).

        Returns:
            (n, d) tensor of points in the box, columns in axis order (space, then time).
        """
        n = _positive_int(n, "n", minimum=0)
        if method not in _METHODS:
            raise ValueError(f"unknown sampling method {method!r}; expected one of {_METHODS}")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(
                f"generator must be a torch.Generator or None, got {type(generator).__name__}"
            )
        dtype = _float_dtype(dtype)
        d = self.ndim
        out_device = torch.device(device) if device is not None else torch.device("cpu")
        if n == 0:
            return torch.empty((0, d), dtype=dtype, device=out_device)
        draw_device = generator.device if generator is not None else out_device
        f64 = torch.float64
        if method == "uniform":
            unit = torch.rand((n, d), generator=generator, dtype=f64, device=draw_device)
        elif method == "sobol":
            seed = int(
                torch.randint(_SOBOL_SEED_HIGH, (1,), generator=generator, device=draw_device)
            )
            engine = torch.quasirandom.SobolEngine(d, scramble=True, seed=seed)
            unit = engine.draw(n, dtype=f64)
        else:  # latin
            # argsort of iid keys: an independent uniform permutation of the strata per axis.
            strata = torch.rand((d, n), generator=generator, dtype=f64, device=draw_device).argsort(
                dim=1
            )
            jitter = torch.rand((n, d), generator=generator, dtype=f64, device=draw_device)
            unit = (strata.T.to(f64) + jitter) / n
        b = self.bounds_tensor(dtype=f64, device=unit.device)
        points = b[:, 0] + unit * (b[:, 1] - b[:, 0])
        return points.to(device=out_device, dtype=dtype)

    def wrap(self, points: Tensor) -> Tensor:
        """Map points into the fundamental box along periodic axes.

        Periodic coordinates become ``lo + ((x - lo) mod L)`` in ``[lo, hi)``; the others
        are returned unchanged (no clamping). Differentiable (derivative 1 almost
        everywhere); NaN coordinates stay NaN.

        Args:
            points: (..., d) floating tensor, domain units.

        Returns:
            (..., d) tensor, same dtype and device as ``points``.
        """
        points = _check_points(points, self.ndim)
        periodic = self.periodic_axes
        if not any(periodic):
            return points.clone()
        b = self.bounds_tensor(dtype=points.dtype, device=points.device)
        lo, hi = b[:, 0], b[:, 1]
        length = hi - lo
        wrapped = lo + torch.remainder(points - lo, length)
        # Rounding can land exactly on hi (e.g. x slightly below lo); hi is identified with lo.
        wrapped = torch.where(wrapped >= hi, lo.expand_as(wrapped), wrapped)
        mask = torch.tensor(periodic, device=points.device)
        return torch.where(mask, wrapped, points)


# --------------------------------------------------------------------------------------
# Concrete domains
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Interval(_BoxDomain):
    """A 1D spatial interval ``[lo, hi]``, optionally periodic (``hi`` identified with ``lo``).

    Attributes:
        lo: left end, finite float.
        hi: right end, finite float, ``hi > lo``.
        periodic: whether the interval is periodic with period ``hi - lo``.
    """

    lo: float
    hi: float
    periodic: bool = False

    def __post_init__(self) -> None:
        lo = _finite_float(self.lo, "lo")
        hi = _finite_float(self.hi, "hi")
        _check_bounds(lo, hi, "lo", "hi")
        if not isinstance(self.periodic, bool):
            raise TypeError(f"periodic must be a bool, got {self.periodic!r}")
        object.__setattr__(self, "lo", lo)
        object.__setattr__(self, "hi", hi)

    @property
    def axes(self) -> tuple[Interval, ...]:
        """The single axis, ``(self,)``."""
        return (self,)

    @property
    def length(self) -> float:
        """``hi - lo``."""
        return self.hi - self.lo


@dataclass(frozen=True)
class TimeInterval(_BoxDomain):
    """A time interval ``[t0, t1]`` (never periodic).

    Attributes:
        t0: start time, finite float, seconds.
        t1: end time, finite float, ``t1 > t0``, seconds.
    """

    t0: float
    t1: float

    def __post_init__(self) -> None:
        t0 = _finite_float(self.t0, "t0")
        t1 = _finite_float(self.t1, "t1")
        _check_bounds(t0, t1, "t0", "t1")
        object.__setattr__(self, "t0", t0)
        object.__setattr__(self, "t1", t1)

    @property
    def axes(self) -> tuple[Interval, ...]:
        """The time axis as a non-periodic :class:`Interval`."""
        return (Interval(self.t0, self.t1, periodic=False),)

    @property
    def duration(self) -> float:
        """``t1 - t0``, seconds."""
        return self.t1 - self.t0


def _check_interval(value: object, name: str) -> None:
    if not isinstance(value, Interval):
        raise TypeError(f"{name} must be an Interval, got {value!r}")


def _intervals_from_bounds(
    bounds: Sequence[Sequence[float]], periodic: bool | Sequence[bool], ndim: int
) -> tuple[Interval, ...]:
    if not isinstance(bounds, Sequence) or len(bounds) != ndim:
        raise ValueError(f"bounds must hold {ndim} (lo, hi) pairs, got {bounds!r}")
    if isinstance(periodic, bool):
        periodic = (periodic,) * ndim
    if not isinstance(periodic, Sequence) or len(periodic) != ndim:
        raise ValueError(f"periodic must be a bool or {ndim} bools, got {periodic!r}")
    out = []
    for i, (pair, p) in enumerate(zip(bounds, periodic, strict=True)):
        if not isinstance(pair, Sequence) or len(pair) != 2:
            raise ValueError(f"bounds[{i}] must be a (lo, hi) pair, got {pair!r}")
        out.append(Interval(pair[0], pair[1], periodic=p))
    return tuple(out)


@dataclass(frozen=True)
class Rectangle(_BoxDomain):
    """A 2D box ``x × y``; each side may be periodic.

    Attributes:
        x: first axis.
        y: second axis.
    """

    x: Interval
    y: Interval

    def __post_init__(self) -> None:
        _check_interval(self.x, "x")
        _check_interval(self.y, "y")

    @classmethod
    def from_bounds(
        cls, bounds: Sequence[Sequence[float]], periodic: bool | Sequence[bool] = False
    ) -> Rectangle:
        """Build from ``((x_lo, x_hi), (y_lo, y_hi))`` and one or two periodic flags."""
        return cls(*_intervals_from_bounds(bounds, periodic, 2))

    @property
    def axes(self) -> tuple[Interval, ...]:
        """``(x, y)``."""
        return (self.x, self.y)


@dataclass(frozen=True)
class Box(_BoxDomain):
    """A 3D box ``x × y × z``; each side may be periodic.

    Attributes:
        x: first axis.
        y: second axis.
        z: third axis.
    """

    x: Interval
    y: Interval
    z: Interval

    def __post_init__(self) -> None:
        _check_interval(self.x, "x")
        _check_interval(self.y, "y")
        _check_interval(self.z, "z")

    @classmethod
    def from_bounds(
        cls, bounds: Sequence[Sequence[float]], periodic: bool | Sequence[bool] = False
    ) -> Box:
        """Build from three ``(lo, hi)`` pairs and one or three periodic flags."""
        return cls(*_intervals_from_bounds(bounds, periodic, 3))

    @property
    def axes(self) -> tuple[Interval, ...]:
        """``(x, y, z)``."""
        return (self.x, self.y, self.z)


@dataclass(frozen=True)
class SpaceTime(_BoxDomain):
    """The product ``space × time``; coordinates are ordered space axes first, time last.

    Attributes:
        space: an :class:`Interval`, :class:`Rectangle` or :class:`Box`.
        time: a :class:`TimeInterval`.
    """

    space: Interval | Rectangle | Box
    time: TimeInterval

    def __post_init__(self) -> None:
        if not isinstance(self.space, Interval | Rectangle | Box):
            raise TypeError(f"space must be an Interval, Rectangle or Box, got {self.space!r}")
        if not isinstance(self.time, TimeInterval):
            raise TypeError(f"time must be a TimeInterval, got {self.time!r}")

    @property
    def axes(self) -> tuple[Interval, ...]:
        """Space axes, then the time axis."""
        return self.space.axes + self.time.axes

    @property
    def space_dim(self) -> int:
        """Number of space axes (``ndim - 1``)."""
        return self.space.ndim

    @property
    def time_axis(self) -> int:
        """Index of the time column/axis (the last one)."""
        return self.ndim - 1


# --------------------------------------------------------------------------------------
# Expert partition (PI-HC-MoE)
# --------------------------------------------------------------------------------------


def _axis_sizes(n: int, s: int) -> tuple[int, ...]:
    # numpy.array_split: the first n % s blocks get one extra cell.
    q, r = divmod(n, s)
    return (q + 1,) * r + (q,) * (s - r)


@dataclass(frozen=True)
class Partition:
    """A fixed, non-overlapping partition of a grid into expert blocks (PI-HC-MoE).

    Axis ``j`` of length ``grid_shape[j]`` is cut into ``splits[j]`` contiguous blocks
    whose lengths differ by at most one cell, the longer ones first (as
    ``numpy.array_split``). Blocks are numbered in row-major order over the block grid
    (the last axis varies fastest). The paper's router is exactly this: no learned gating,
    ``u = sum_k 1_{Omega_k} b . omega_k`` (Eq. 3).

    Attributes:
        grid_shape: sizes of the trailing grid dims of the fields, e.g. ``(Nx, Nt)``.
        splits: number of blocks per grid axis, ``1 <= splits[j] <= grid_shape[j]``.
    """

    grid_shape: tuple[int, ...]
    splits: tuple[int, ...]

    def __post_init__(self) -> None:
        grid_shape = _int_tuple(self.grid_shape, "grid_shape", None, minimum=1)
        if not grid_shape:
            raise ValueError("grid_shape must have at least one axis, got ()")
        splits = _int_tuple(self.splits, "splits", len(grid_shape), minimum=1)
        for j, (n, s) in enumerate(zip(grid_shape, splits, strict=True)):
            if s > n:
                raise ValueError(
                    f"splits[{j}]={s} exceeds grid_shape[{j}]={n}: every block needs at least one cell"
                )
        object.__setattr__(self, "grid_shape", grid_shape)
        object.__setattr__(self, "splits", splits)

    @property
    def ndim(self) -> int:
        """Number of grid axes."""
        return len(self.grid_shape)

    @property
    def num_blocks(self) -> int:
        """Number of expert blocks ``K = prod(splits)``."""
        return math.prod(self.splits)

    @property
    def is_even(self) -> bool:
        """Whether every block has the same shape (each ``splits[j]`` divides ``grid_shape[j]``)."""
        return all(n % s == 0 for n, s in zip(self.grid_shape, self.splits, strict=True))

    @cached_property
    def block_sizes(self) -> tuple[tuple[int, ...], ...]:
        """Per axis, the lengths of its blocks (``numpy.array_split`` sizes)."""
        return tuple(_axis_sizes(n, s) for n, s in zip(self.grid_shape, self.splits, strict=True))

    @cached_property
    def _axis_slices(self) -> tuple[tuple[slice, ...], ...]:
        out = []
        for sizes in self.block_sizes:
            starts = [0]
            for size in sizes:
                starts.append(starts[-1] + size)
            out.append(tuple(slice(a, b) for a, b in zip(starts[:-1], starts[1:], strict=True)))
        return tuple(out)

    def block_position(self, k: int) -> tuple[int, ...]:
        """Block-grid multi-index of block ``k`` (row-major, last axis fastest)."""
        k = _positive_int(k, "k", minimum=0)
        if k >= self.num_blocks:
            raise ValueError(f"block index k={k} out of range for {self.num_blocks} blocks")
        pos = []
        for s in reversed(self.splits):
            k, r = divmod(k, s)
            pos.append(r)
        return tuple(reversed(pos))

    @cached_property
    def block_slices(self) -> tuple[tuple[slice, ...], ...]:
        """For each block ``k`` (row-major), one slice per grid axis.

        ``field[(..., *block_slices[k])]`` is block ``k`` of a field ``(..., *grid_shape)``.
        """
        return tuple(
            tuple(self._axis_slices[j][p] for j, p in enumerate(self.block_position(k)))
            for k in range(self.num_blocks)
        )

    @cached_property
    def block_shapes(self) -> tuple[tuple[int, ...], ...]:
        """For each block ``k``, its grid shape."""
        return tuple(tuple(s.stop - s.start for s in sl) for sl in self.block_slices)

    def block_of(self, index: Sequence[int] | Tensor) -> int | Tensor:
        """Block number of a grid cell.

        Args:
            index: a cell's multi-index, ``ndim`` ints with ``0 <= index[j] < grid_shape[j]``,
                or an integer tensor ``(..., ndim)`` of such indices.

        Returns:
            The block number (an int), or a ``(...)`` int64 tensor for tensor input.
        """
        if isinstance(index, Tensor):
            if index.is_floating_point() or index.is_complex() or index.dtype == torch.bool:
                raise TypeError(f"index must be an integer tensor, got dtype {index.dtype}")
            if index.ndim == 0 or index.shape[-1] != self.ndim:
                raise ValueError(
                    f"index must have shape (..., {self.ndim}), got {tuple(index.shape)}"
                )
            idx = index.to(torch.int64)
            upper = torch.tensor(self.grid_shape, device=idx.device)
            if bool(((idx < 0) | (idx >= upper)).any()):
                raise ValueError(f"index out of range for grid_shape {self.grid_shape}")
            block = torch.zeros(idx.shape[:-1], dtype=torch.int64, device=idx.device)
            for j, (n, s) in enumerate(zip(self.grid_shape, self.splits, strict=True)):
                q, r = divmod(n, s)
                cut = r * (q + 1)
                i = idx[..., j]
                pos = torch.where(i < cut, i // (q + 1), r + (i - cut) // q)
                block = block * s + pos
            return block
        cell = _int_tuple(index, "index", self.ndim, minimum=0)
        block = 0
        for j, (i, n, s) in enumerate(zip(cell, self.grid_shape, self.splits, strict=True)):
            if i >= n:
                raise ValueError(f"index[{j}]={i} out of range for grid_shape[{j}]={n}")
            q, r = divmod(n, s)
            cut = r * (q + 1)
            pos = i // (q + 1) if i < cut else r + (i - cut) // q
            block = block * s + pos
        return block

    def _check_field(self, field: object) -> Tensor:
        if not isinstance(field, Tensor):
            raise TypeError(f"field must be a torch.Tensor, got {type(field).__name__}")
        if (
            field.ndim < self.ndim
            or tuple(field.shape[field.ndim - self.ndim :]) != self.grid_shape
        ):
            raise ValueError(
                f"field must have shape (..., {', '.join(map(str, self.grid_shape))}), "
                f"got {tuple(field.shape)}"
            )
        return field

    def split(self, field: Tensor, *, stacked: bool = False) -> list[Tensor] | Tensor:
        """Cut a field into its expert blocks.

        Args:
            field: (..., *grid_shape) tensor, any dtype and device.
            stacked: return one tensor ``(K, ..., *block_shape)`` instead of a list;
                needs :attr:`is_even`.

        Returns:
            A list of ``K`` tensors ``(..., *block_shapes[k])`` in row-major block order
            (views of ``field``, no copy), or the stacked copy.
        """
        field = self._check_field(field)
        if not stacked:
            return [field[(..., *sl)] for sl in self.block_slices]
        if not self.is_even:
            raise ValueError(
                f"stacked=True needs equal blocks, but splits {self.splits} do not divide "
                f"grid_shape {self.grid_shape}; use stacked=False"
            )
        nb = field.ndim - self.ndim
        batch = tuple(field.shape[:nb])
        block = tuple(n // s for n, s in zip(self.grid_shape, self.splits, strict=True))
        interleaved = [v for s, b in zip(self.splits, block, strict=True) for v in (s, b)]
        x = field.reshape(*batch, *interleaved)
        split_axes = [nb + 2 * j for j in range(self.ndim)]
        block_axes = [nb + 2 * j + 1 for j in range(self.ndim)]
        x = x.permute(*split_axes, *range(nb), *block_axes)
        return x.reshape(self.num_blocks, *batch, *block)

    def merge(self, blocks: Sequence[Tensor] | Tensor) -> Tensor:
        """Assemble blocks into the full field: the exact inverse of :meth:`split`.

        Args:
            blocks: ``K`` tensors ``(..., *block_shapes[k])`` in row-major block order,
                with equal leading shapes, dtypes and devices; or one stacked tensor
                ``(K, ..., *block_shape)`` when :attr:`is_even`.

        Returns:
            (..., *grid_shape) tensor (a new tensor; differentiable in the blocks).
        """
        if isinstance(blocks, Tensor):
            return self._merge_stacked(blocks)
        if not isinstance(blocks, Sequence):
            raise TypeError(
                f"blocks must be a sequence of tensors or a tensor, got {type(blocks).__name__}"
            )
        if len(blocks) != self.num_blocks:
            raise ValueError(f"expected {self.num_blocks} blocks, got {len(blocks)}")
        batch: tuple[int, ...] | None = None
        for k, (b, shape) in enumerate(zip(blocks, self.block_shapes, strict=True)):
            if not isinstance(b, Tensor):
                raise TypeError(f"blocks[{k}] must be a torch.Tensor, got {type(b).__name__}")
            if b.ndim < self.ndim or tuple(b.shape[b.ndim - self.ndim :]) != shape:
                raise ValueError(
                    f"blocks[{k}] must have shape (..., {', '.join(map(str, shape))}), got {tuple(b.shape)}"
                )
            lead = tuple(b.shape[: b.ndim - self.ndim])
            if batch is None:
                batch = lead
            elif lead != batch:
                raise ValueError(f"blocks[{k}] has leading shape {lead}, blocks[0] has {batch}")
        # Concatenate along the last grid axis first, then the next one out (row-major).
        level = list(blocks)
        for j in reversed(range(self.ndim)):
            s = self.splits[j]
            dim = j - self.ndim
            level = [torch.cat(level[i : i + s], dim=dim) for i in range(0, len(level), s)]
        return level[0]

    def _merge_stacked(self, blocks: Tensor) -> Tensor:
        if not self.is_even:
            raise ValueError(
                f"a stacked tensor needs equal blocks, but splits {self.splits} do not divide "
                f"grid_shape {self.grid_shape}; pass a list of blocks"
            )
        block = self.block_shapes[0]
        if (
            blocks.ndim < self.ndim + 1
            or blocks.shape[0] != self.num_blocks
            or tuple(blocks.shape[blocks.ndim - self.ndim :]) != block
        ):
            raise ValueError(
                f"stacked blocks must have shape ({self.num_blocks}, ..., "
                f"{', '.join(map(str, block))}), got {tuple(blocks.shape)}"
            )
        batch = tuple(blocks.shape[1 : blocks.ndim - self.ndim])
        nb = len(batch)
        x = blocks.reshape(*self.splits, *batch, *block)
        # (s_0..s_{d-1}, batch, b_0..b_{d-1}) -> (batch, s_0, b_0, s_1, b_1, ...)
        order = [self.ndim + i for i in range(nb)]
        for j in range(self.ndim):
            order += [j, self.ndim + nb + j]
        return x.permute(*order).reshape(*batch, *self.grid_shape)
