"""Tests for simkit.domain: grids against numpy, sampler laws, periodic wrapping, partitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.stats import qmc

from simkit.domain import (
    Box,
    Domain,
    Interval,
    Partition,
    Rectangle,
    SpaceTime,
    TimeInterval,
)

METHODS = ("uniform", "sobol", "latin")


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _domains() -> list:
    return [
        Interval(-1.0, 2.0),
        Interval(0.0, 2 * math.pi, periodic=True),
        TimeInterval(0.0, 500.0),
        Rectangle.from_bounds(((0.0, 1.0), (-2.0, 3.0)), periodic=(True, False)),
        Box.from_bounds(((0, 1), (1, 3), (-4, -1)), periodic=True),
        SpaceTime(Interval(0.0, 1.0), TimeInterval(0.0, 500.0)),
        SpaceTime(Rectangle.from_bounds(((0, 1), (0, 1)), periodic=True), TimeInterval(1.0, 6.0)),
    ]


# --------------------------------------------------------------------------------------
# Domain types and the shared contract
# --------------------------------------------------------------------------------------


def test_protocol_and_properties() -> None:
    st_ = SpaceTime(
        Rectangle.from_bounds(((0, 2), (-1, 1)), periodic=(True, False)), TimeInterval(0, 5)
    )
    assert isinstance(st_, Domain)
    assert all(isinstance(d, Domain) for d in _domains())
    assert st_.ndim == 3 and st_.space_dim == 2 and st_.time_axis == 2
    assert st_.bounds == ((0.0, 2.0), (-1.0, 1.0), (0.0, 5.0))
    assert st_.periodic_axes == (True, False, False)
    assert st_.volume == pytest.approx(2.0 * 2.0 * 5.0)
    np.testing.assert_array_equal(
        st_.bounds_tensor(dtype=torch.float64).numpy(), [[0, 2], [-1, 1], [0, 5]]
    )
    assert Interval(1, 4).volume == 3.0 and Interval(1, 4).length == 3.0
    assert TimeInterval(2, 7).duration == 5.0 and TimeInterval(2, 7).periodic_axes == (False,)
    assert Box.from_bounds(((0, 1), (0, 2), (0, 3))).volume == pytest.approx(6.0)
    # ints are stored as floats; frozen and hashable
    assert Interval(0, 1) == Interval(0.0, 1.0)
    assert len({Interval(0, 1), Interval(0.0, 1.0)}) == 1
    with pytest.raises(AttributeError):
        Interval(0, 1).lo = 3.0  # type: ignore[misc]


def test_volume_matches_monte_carlo_hit_rate() -> None:
    # A box inside a bigger one: the fraction of uniform points it contains is the volume ratio.
    inner = Box.from_bounds(((0.2, 0.7), (0.0, 0.4), (0.5, 1.0)))
    outer = Box.from_bounds(((0, 1), (0, 1), (0, 1)))
    pts = outer.sample(20000, generator=_gen(3), dtype=torch.float64)
    frac = inner.contains(pts).double().mean().item()
    ratio = inner.volume / outer.volume
    assert abs(frac - ratio) < 4 * math.sqrt(ratio * (1 - ratio) / 20000)


def test_contains() -> None:
    r = Rectangle.from_bounds(((0, 1), (0, 2)))
    pts = torch.tensor(
        [[0.0, 0.0], [1.0, 2.0], [0.5, 1.0], [-1e-6, 1.0], [0.5, 2.0 + 1e-6], [math.nan, 1.0]],
        dtype=torch.float64,
    )
    assert r.contains(pts).tolist() == [True, True, True, False, False, False]
    assert r.contains(pts, atol=1e-5).tolist() == [True, True, True, True, True, False]
    assert r.contains(pts.reshape(2, 3, 2)).shape == (2, 3)


# --------------------------------------------------------------------------------------
# Grids
# --------------------------------------------------------------------------------------


def test_nonperiodic_grid_matches_linspace() -> None:
    d = Interval(-1.5, 2.5)
    (x,) = d.axis_coords(11, dtype=torch.float64)
    np.testing.assert_allclose(x.numpy(), np.linspace(-1.5, 2.5, 11), rtol=0, atol=1e-15)
    assert x[0].item() == -1.5 and x[-1].item() == 2.5
    np.testing.assert_allclose(np.diff(x.numpy()), 0.4, atol=1e-14)
    assert d.spacing(11) == pytest.approx((0.4,))
    assert d.grid(11, dtype=torch.float64).shape == (11, 1)


def test_periodic_grid_excludes_endpoint() -> None:
    d = Interval(0.0, 2 * math.pi, periodic=True)
    n = 16
    (x,) = d.axis_coords(n, dtype=torch.float64)
    np.testing.assert_allclose(
        x.numpy(), np.linspace(0.0, 2 * math.pi, n, endpoint=False), rtol=0, atol=1e-14
    )
    np.testing.assert_allclose(np.diff(x.numpy()), 2 * math.pi / n, rtol=1e-13)
    assert x[-1].item() < 2 * math.pi
    assert x[-1].item() + 2 * math.pi / n == pytest.approx(2 * math.pi)
    assert d.spacing(n) == pytest.approx((2 * math.pi / n,))
    # a spectral identity: sum of exp(i k x_j) over a periodic grid vanishes for 0 < k < n
    for k in (1, 3, n - 1):
        assert abs(torch.exp(1j * k * x).sum().item()) < 1e-12
    # endpoint override
    (x_end,) = d.axis_coords(n, dtype=torch.float64, endpoint=True)
    np.testing.assert_allclose(x_end.numpy(), np.linspace(0, 2 * math.pi, n), atol=1e-14)


def test_grid_matches_meshgrid_mixed_axes() -> None:
    d = SpaceTime(
        Rectangle.from_bounds(((0.0, 1.0), (-1.0, 3.0)), periodic=(True, False)),
        TimeInterval(0.0, 5.0),
    )
    shape = (4, 5, 3)
    g = d.grid(shape, dtype=torch.float64)
    assert g.shape == (*shape, 3) and g.dtype == torch.float64
    xs = np.linspace(0.0, 1.0, 4, endpoint=False)
    ys = np.linspace(-1.0, 3.0, 5)
    ts = np.linspace(0.0, 5.0, 3)
    ref = np.stack(np.meshgrid(xs, ys, ts, indexing="ij"), axis=-1)
    np.testing.assert_allclose(g.numpy(), ref, rtol=0, atol=1e-14)
    assert d.spacing(shape) == pytest.approx((0.25, 1.0, 2.5))
    assert bool(d.contains(g).all())
    # float32 default; per-axis endpoint override
    assert d.grid(shape).dtype == torch.float32
    g2 = d.grid(shape, dtype=torch.float64, endpoint=(True, False, True))
    np.testing.assert_allclose(g2[:, 0, 0, 0].numpy(), np.linspace(0, 1, 4), atol=1e-15)
    np.testing.assert_allclose(
        g2[0, :, 0, 1].numpy(), np.linspace(-1, 3, 5, endpoint=False), atol=1e-15
    )


def test_box_grid_and_riemann_sum() -> None:
    # On a fully periodic box the midpoint-free left Riemann sum of a trigonometric
    # polynomial of low degree is exact: mean of sin^2(2 pi x) cos^2(2 pi y) z-periodic = 1/4.
    b = Box.from_bounds(((0, 1), (0, 1), (0, 2)), periodic=True)
    g = b.grid((8, 8, 4), dtype=torch.float64)
    f = torch.sin(2 * math.pi * g[..., 0]) ** 2 * torch.cos(2 * math.pi * g[..., 1]) ** 2
    integral = f.sum().item() * math.prod(b.spacing((8, 8, 4)))
    assert integral == pytest.approx(0.25 * b.volume, rel=1e-12)


# --------------------------------------------------------------------------------------
# Sampling
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("domain", _domains(), ids=lambda d: type(d).__name__)
def test_sample_inside_and_marginals_uniform(method: str, domain) -> None:
    n = 1024
    x = domain.sample(n, method, generator=_gen(7), dtype=torch.float64)
    assert x.shape == (n, domain.ndim) and x.dtype == torch.float64
    assert bool(domain.contains(x).all())
    for j, (lo, hi) in enumerate(domain.bounds):
        res = stats.kstest(x[:, j].numpy(), "uniform", args=(lo, hi - lo))
        assert res.pvalue > 1e-3, (method, j, res)
        if method != "uniform":  # stratified: far better than iid (KS ~ 1/sqrt(n))
            assert res.statistic < 3.0 / n


def test_uniform_ks_has_power_and_columns_independent() -> None:
    d = SpaceTime(Interval(0.0, 1.0), TimeInterval(10.0, 20.0))
    x = d.sample(4000, generator=_gen(11), dtype=torch.float64).numpy()
    # columns are space then time: the space column is not uniform on the time interval
    assert stats.kstest(x[:, 0], "uniform", args=(10.0, 10.0)).pvalue < 1e-6
    assert stats.kstest(x[:, 1], "uniform", args=(10.0, 10.0)).pvalue > 1e-3
    # a slightly wrong law is rejected
    assert stats.kstest(x[:, 0], "uniform", args=(0.0, 1.1)).pvalue < 1e-3
    r = np.corrcoef(x[:, 0], x[:, 1])[0, 1]
    assert abs(r) < 4 / math.sqrt(4000)


@pytest.mark.parametrize("n", [1, 7, 100])
def test_latin_one_point_per_stratum(n: int) -> None:
    d = Box.from_bounds(((-1, 1), (0, 5), (2, 3)))
    x = d.sample(n, "latin", generator=_gen(n), dtype=torch.float64)
    strata = []
    for j, (lo, hi) in enumerate(d.bounds):
        k = np.floor((x[:, j].numpy() - lo) / (hi - lo) * n).astype(int)
        np.testing.assert_array_equal(np.sort(k), np.arange(n))
        strata.append(k)
    if n > 7:  # independent permutations per axis
        assert not np.array_equal(strata[0], strata[1])


def test_latin_uniform_within_strata() -> None:
    # The position inside each stratum is U(0, 1) (not the stratum midpoint).
    n = 200
    d = Rectangle.from_bounds(((0.0, 3.0), (-2.0, 2.0)))
    x = d.sample(n, "latin", generator=_gen(4), dtype=torch.float64).numpy()
    lo = np.array([b[0] for b in d.bounds])
    span = np.array([b[1] - b[0] for b in d.bounds])
    scaled = (x - lo) / span * n
    frac = (scaled - np.floor(scaled)).ravel()
    assert stats.kstest(frac, "uniform").pvalue > 1e-3
    # the strata are paired at random: no rank correlation between the axes
    assert abs(stats.spearmanr(x[:, 0], x[:, 1]).statistic) < 4 / math.sqrt(n)


def test_sobol_net_property_and_low_discrepancy() -> None:
    # Scrambled Sobol with n = 2^m is a (0, m, 2)-net in its first two coordinates:
    # every elementary box of area 1/n holds exactly one point.
    m = 6
    n = 2**m
    d = Rectangle.from_bounds(((0, 1), (0, 1)))
    u = d.sample(n, "sobol", generator=_gen(5), dtype=torch.float64).numpy()
    for a in range(m + 1):
        cells = np.floor(u[:, 0] * 2**a).astype(int) * 2 ** (m - a) + np.floor(
            u[:, 1] * 2 ** (m - a)
        ).astype(int)
        np.testing.assert_array_equal(np.sort(cells), np.arange(n))
    # centred L2 discrepancy below every one of several iid uniform draws of the same size
    box = Box.from_bounds(((0, 2), (-1, 1), (3, 4)))
    lo = np.array([b[0] for b in box.bounds])
    span = np.array([b[1] - b[0] for b in box.bounds])
    n = 256
    sob = (box.sample(n, "sobol", generator=_gen(1), dtype=torch.float64).numpy() - lo) / span
    disc_sobol = qmc.discrepancy(sob)
    for seed in range(5):
        iid = (
            box.sample(n, "uniform", generator=_gen(seed), dtype=torch.float64).numpy() - lo
        ) / span
        assert disc_sobol < qmc.discrepancy(iid)


@pytest.mark.parametrize("method", METHODS)
def test_sample_seeded(method: str) -> None:
    d = SpaceTime(Interval(0, 1, periodic=True), TimeInterval(0, 2))
    a = d.sample(64, method, generator=_gen(42))
    b = d.sample(64, method, generator=_gen(42))
    c = d.sample(64, method, generator=_gen(43))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    # the generator advances: two consecutive draws differ
    g = _gen(0)
    assert not torch.allclose(d.sample(64, method, generator=g), d.sample(64, method, generator=g))
    # the global default generator is used when none is given
    torch.manual_seed(9)
    e = d.sample(64, method)
    torch.manual_seed(9)
    assert torch.equal(e, d.sample(64, method))
    # dtype only changes precision
    f64 = d.sample(64, method, generator=_gen(42), dtype=torch.float64)
    assert torch.allclose(f64.float(), a)


def test_sample_empty_and_dtype_device() -> None:
    d = Rectangle.from_bounds(((0, 1), (0, 1)))
    for method in METHODS:
        assert d.sample(0, method).shape == (0, 2)
    x = d.sample(5, dtype=torch.float64, device="cpu")
    assert x.dtype == torch.float64 and x.device.type == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.gpu
def test_sample_same_points_on_cuda() -> None:
    d = SpaceTime(Interval(0, 1), TimeInterval(0, 1))
    for method in METHODS:
        cpu = d.sample(32, method, generator=_gen(1))
        gpu = d.sample(32, method, generator=_gen(1), device="cuda")
        assert gpu.device.type == "cuda"
        assert torch.equal(cpu, gpu.cpu())


# --------------------------------------------------------------------------------------
# Periodic wrapping
# --------------------------------------------------------------------------------------


def test_wrap() -> None:
    d = SpaceTime(
        Rectangle.from_bounds(((-1.0, 1.0), (0.0, 3.0)), periodic=(True, False)),
        TimeInterval(0.0, 1.0),
    )
    x = d.sample(200, generator=_gen(2), dtype=torch.float64)
    shifts = torch.randint(-5, 6, (200,), generator=_gen(3)).double()
    moved = x.clone()
    moved[:, 0] += shifts * 2.0  # periodic axis, period 2
    moved[:, 1] += 10.0  # non-periodic: left alone
    w = d.wrap(moved)
    torch.testing.assert_close(w[:, 0], x[:, 0], rtol=0, atol=1e-12)
    assert torch.equal(w[:, 1:], moved[:, 1:])
    assert bool((w[:, 0] >= -1.0).all() and (w[:, 0] < 1.0).all())
    torch.testing.assert_close(d.wrap(w), w)  # idempotent
    # the right end and a hair below the left end map into [lo, hi)
    edge = torch.tensor(
        [[1.0, 0.0, 0.0], [-1.0 - 1e-30, 0.0, 0.0], [3.0, 0.0, 0.0]], dtype=torch.float64
    )
    we = d.wrap(edge)[:, 0]
    assert we.tolist()[0] == -1.0 and we.tolist()[2] == -1.0
    assert -1.0 <= we[1].item() < 1.0
    # rounding: remainder(-1e-20, 1) is exactly 1.0, which must map to lo, not hi
    unit = Interval(0.0, 1.0, periodic=True)
    tiny = torch.tensor([[-1e-20], [-1e-300], [1.0]], dtype=torch.float64)
    assert unit.wrap(tiny).flatten().tolist() == [0.0, 0.0, 0.0]
    # a periodic grid shifted by whole periods is the same grid
    g = Interval(0.0, 1.0, periodic=True).grid(8, dtype=torch.float64)
    torch.testing.assert_close(
        Interval(0.0, 1.0, periodic=True).wrap(g + 3.0), g, rtol=0, atol=1e-12
    )
    # float32 input never lands on hi
    i32 = Interval(0.1, 1.1, periodic=True)
    w32 = i32.wrap(torch.linspace(-5, 5, 10001).unsqueeze(-1))
    assert w32.dtype == torch.float32 and bool((w32 < 1.1).all())
    # non-periodic domain: identity (a copy)
    p = torch.tensor([[5.0]])
    assert torch.equal(Interval(0, 1).wrap(p), p)


def test_wrap_gradient() -> None:
    d = Interval(0.0, 1.0, periodic=True)
    x = torch.tensor([[0.3], [1.7], [-2.2]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(d.wrap, (x,))


# --------------------------------------------------------------------------------------
# Partition
# --------------------------------------------------------------------------------------


@st.composite
def _partition_case(draw):
    ndim = draw(st.integers(1, 3))
    grid = tuple(draw(st.integers(1, 7)) for _ in range(ndim))
    splits = tuple(draw(st.integers(1, n)) for n in grid)
    batch = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    return grid, splits, batch


@settings(max_examples=60, deadline=None)
@given(case=_partition_case(), seed=st.integers(0, 2**16))
def test_partition_merge_inverts_split(case, seed) -> None:
    grid, splits, batch = case
    p = Partition(grid, splits)
    x = torch.randn(*batch, *grid, generator=_gen(seed))
    blocks = p.split(x)
    assert len(blocks) == p.num_blocks == math.prod(splits)
    for b, shape in zip(blocks, p.block_shapes, strict=True):
        assert b.shape == (*batch, *shape)
    assert torch.equal(p.merge(blocks), x)
    if p.is_even:
        stacked = p.split(x, stacked=True)
        assert stacked.shape == (p.num_blocks, *batch, *p.block_shapes[0])
        for k in range(p.num_blocks):
            assert torch.equal(stacked[k], blocks[k])
        assert torch.equal(p.merge(stacked), x)


@settings(max_examples=60, deadline=None)
@given(case=_partition_case())
def test_partition_tiles_grid(case) -> None:
    grid, splits, _ = case
    p = Partition(grid, splits)
    # block sizes are numpy.array_split's, differing by at most one
    for n, s, sizes in zip(grid, splits, p.block_sizes, strict=True):
        assert sizes == tuple(len(a) for a in np.array_split(np.arange(n), s))
        assert max(sizes) - min(sizes) <= 1 and sum(sizes) == n
    # every cell is covered exactly once, and block_of agrees with block_slices
    count = np.zeros(grid, dtype=int)
    owner = np.full(grid, -1)
    for k, sl in enumerate(p.block_slices):
        count[sl] += 1
        owner[sl] = k
    assert (count == 1).all()
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in grid], indexing="ij"), axis=-1)
    got = p.block_of(torch.from_numpy(idx))
    np.testing.assert_array_equal(got.numpy(), owner)
    for cell in [(0,) * len(grid), tuple(n - 1 for n in grid)]:
        assert p.block_of(cell) == owner[cell]
    # row-major numbering: block k sits at block_position(k), last axis fastest
    for k in range(p.num_blocks):
        assert np.ravel_multi_index(p.block_position(k), splits) == k


def test_partition_paper_layouts() -> None:
    # DS: 1024 x 101 grid (x, t), four spatial slabs of 256
    ds = Partition((1024, 101), (4, 1))
    assert ds.num_blocks == 4 and set(ds.block_shapes) == {(256, 101)}
    # NS: (x, y, t) = 64^3 cut 2 x 2 x 1
    ns = Partition((64, 64, 64), (2, 2, 1))
    assert ns.block_shapes == ((32, 32, 64),) * 4
    assert ns.block_of((40, 10, 63)) == 2  # second x half, first y half
    # Uneven: 10 cells in 3 blocks -> 4, 3, 3 (array_split order)
    un = Partition((10,), (3,))
    assert un.block_sizes == ((4, 3, 3),)
    assert [un.block_of((i,)) for i in range(10)] == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert not un.is_even


def test_partition_merge_is_differentiable() -> None:
    p = Partition((4, 6), (2, 3))
    x = torch.randn(2, 4, 6, dtype=torch.float64, requires_grad=True)
    blocks = [2.0 * b for b in p.split(x)]
    p.merge(blocks).sum().backward()
    torch.testing.assert_close(x.grad, torch.full_like(x, 2.0))


# --------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------


def test_bad_domains() -> None:
    with pytest.raises(ValueError, match=r"lo < hi.*lo=1\.0, hi=1\.0"):
        Interval(1.0, 1.0)
    with pytest.raises(ValueError, match="lo < hi"):
        Interval(2.0, 1.0)
    with pytest.raises(ValueError, match="lo must be finite, got nan"):
        Interval(math.nan, 1.0)
    with pytest.raises(ValueError, match="hi must be finite, got inf"):
        Interval(0.0, math.inf)
    with pytest.raises(ValueError, match="overflows"):
        Interval(-1e308, 1e308)
    with pytest.raises(TypeError, match="lo must be a real number"):
        Interval("0", 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="lo must be a real number"):
        Interval(True, 2)
    with pytest.raises(TypeError, match="periodic must be a bool"):
        Interval(0, 1, periodic=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="t0 < t1"):
        TimeInterval(5.0, 0.0)
    with pytest.raises(ValueError, match="t1 must be finite"):
        TimeInterval(0.0, math.nan)
    with pytest.raises(TypeError, match="y must be an Interval"):
        Rectangle(Interval(0, 1), (0, 1))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="2 \\(lo, hi\\) pairs"):
        Rectangle.from_bounds(((0, 1),))
    with pytest.raises(ValueError, match="periodic must be a bool or 3 bools"):
        Box.from_bounds(((0, 1), (0, 1), (0, 1)), periodic=(True, False))
    with pytest.raises(TypeError, match="time must be a TimeInterval"):
        SpaceTime(Interval(0, 1), Interval(0, 1))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="space must be"):
        SpaceTime(TimeInterval(0, 1), TimeInterval(0, 1))  # type: ignore[arg-type]


def test_bad_grid_and_sample_arguments() -> None:
    d = Rectangle.from_bounds(((0, 1), (0, 1)), periodic=(True, False))
    with pytest.raises(ValueError, match="shape must have 2 entries"):
        d.grid((4,))
    with pytest.raises(ValueError, match=r"shape\[0\] must be >= 1, got 0"):
        d.grid((0, 4))
    with pytest.raises(ValueError, match=r"shape\[1\]=1: .* at least 2 points"):
        d.grid((1, 1))
    with pytest.raises(TypeError, match="dtype must be a floating"):
        d.grid((4, 4), dtype=torch.int64)
    with pytest.raises(ValueError, match="endpoint must be"):
        d.grid((4, 4), endpoint=(True,))
    with pytest.raises(ValueError, match="n must be >= 0, got -3"):
        d.sample(-3)
    with pytest.raises(TypeError, match="n must be an int"):
        d.sample(2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown sampling method 'halton'"):
        d.sample(4, "halton")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        d.sample(4, generator=0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="dtype must be a floating"):
        d.sample(4, dtype=torch.int32)
    with pytest.raises(ValueError, match=r"points must have shape \(\.\.\., 2\), got \(5, 3\)"):
        d.contains(torch.zeros(5, 3))
    with pytest.raises(TypeError, match="points must be a floating tensor"):
        d.wrap(torch.zeros(5, 2, dtype=torch.int64))
    with pytest.raises(TypeError, match="points must be a torch.Tensor"):
        d.contains([[0.0, 0.0]])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="atol must be >= 0"):
        d.contains(torch.zeros(1, 2), atol=-1.0)


def test_bad_partitions() -> None:
    with pytest.raises(ValueError, match=r"splits must have 2 entries .* got 3"):
        Partition((8, 8), (2, 2, 1))
    with pytest.raises(ValueError, match=r"splits\[1\] must be >= 1, got 0"):
        Partition((8, 8), (2, 0))
    with pytest.raises(ValueError, match=r"splits\[0\]=9 exceeds grid_shape\[0\]=8"):
        Partition((8, 8), (9, 1))
    with pytest.raises(ValueError, match=r"grid_shape\[1\] must be >= 1, got 0"):
        Partition((8, 0), (1, 1))
    with pytest.raises(ValueError, match="at least one axis"):
        Partition((), ())
    with pytest.raises(TypeError, match=r"splits\[0\] must be an int"):
        Partition((8,), (2.0,))  # type: ignore[arg-type]
    p = Partition((6, 4), (3, 2))
    with pytest.raises(
        ValueError, match=r"field must have shape \(\.\.\., 6, 4\), got \(2, 6, 5\)"
    ):
        p.split(torch.zeros(2, 6, 5))
    with pytest.raises(ValueError, match="field must have shape"):
        p.split(torch.zeros(6))
    with pytest.raises(TypeError, match="field must be a torch.Tensor"):
        p.split(np.zeros((6, 4)))  # type: ignore[arg-type]
    blocks = p.split(torch.zeros(6, 4))
    with pytest.raises(ValueError, match="expected 6 blocks, got 5"):
        p.merge(blocks[:5])
    with pytest.raises(ValueError, match=r"blocks\[2\] must have shape"):
        p.merge([*blocks[:2], torch.zeros(3, 2), *blocks[3:]])
    with pytest.raises(ValueError, match=r"blocks\[1\] has leading shape \(1,\)"):
        p.merge([blocks[0], blocks[1][None], *blocks[2:]])
    with pytest.raises(ValueError, match="stacked blocks must have shape"):
        p.merge(torch.zeros(5, 2, 2))
    uneven = Partition((5,), (2,))
    with pytest.raises(ValueError, match="stacked=True needs equal blocks"):
        uneven.split(torch.zeros(5), stacked=True)
    with pytest.raises(ValueError, match="needs equal blocks"):
        uneven.merge(torch.zeros(2, 2))
    with pytest.raises(ValueError, match=r"index\[1\]=4 out of range"):
        p.block_of((0, 4))
    with pytest.raises(ValueError, match="index out of range"):
        p.block_of(torch.tensor([[6, 0]]))
    with pytest.raises(TypeError, match="integer tensor"):
        p.block_of(torch.tensor([[0.0, 0.0]]))
    with pytest.raises(ValueError, match="block index k=6 out of range"):
        p.block_position(6)
