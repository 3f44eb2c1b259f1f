"""Tests for simkit.geometry.metrics: MMD, COV and 1-NNA against hand-computed values
and against a brute-force evaluation on point clouds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from simkit.geometry import (
    SetMetrics,
    chamfer_distance,
    coverage,
    minimum_matching_distance,
    one_nn_accuracy,
    pairwise_chamfer,
    pairwise_voxel_chamfer,
    set_metrics,
    upright_symmetries,
)

F64 = torch.float64


def _t(x) -> torch.Tensor:
    return torch.tensor(x, dtype=F64)


# Samples S = {s0, s1, s2}, references R = {r0, r1, r2, r3}.
D_SR = _t(
    [
        [0.5, 2.0, 3.0, 9.0],
        [0.1, 4.0, 1.0, 8.0],
        [7.0, 0.3, 6.0, 5.0],
    ]
)


def test_mmd_hand_computed() -> None:
    # Column minima: r0 -> 0.1, r1 -> 0.3, r2 -> 1.0, r3 -> 5.0; mean = 6.4 / 4.
    assert float(minimum_matching_distance(D_SR)) == pytest.approx(6.4 / 4)
    assert float(minimum_matching_distance(D_SR[:1])) == pytest.approx((0.5 + 2 + 3 + 9) / 4)


def test_cov_hand_computed() -> None:
    # Row argmins: s0 -> r0, s1 -> r0, s2 -> r1: {r0, r1} covered out of 4.
    cov = coverage(D_SR)
    assert float(cov) == pytest.approx(0.5)
    assert cov.dtype == F64
    # Mode collapse: every sample nearest the same reference covers 1 / |R|.
    assert float(coverage(_t([[0.0, 1.0, 2.0]] * 5))) == pytest.approx(1 / 3)
    # One sample per reference, each matched: full coverage.
    assert float(coverage(_t([[0.0, 1.0], [1.0, 0.0]]))) == 1.0


def test_one_nna_hand_computed() -> None:
    # S = {s0, s1}, R = {r0, r1}. Leave-one-out nearest neighbours in S u R:
    #   s0: d(s0,s1)=1, d(s0,r0)=3, d(s0,r1)=4 -> s1 (same set: correct)
    #   s1: d(s1,s0)=1, d(s1,r0)=0.5, d(s1,r1)=5 -> r0 (wrong)
    #   r0: d(r0,r1)=2, d(r0,s0)=3, d(r0,s1)=0.5 -> s1 (wrong)
    #   r1: d(r1,r0)=2, d(r1,s0)=4, d(r1,s1)=5 -> r0 (correct)
    d_ss = _t([[0.0, 1.0], [1.0, 0.0]])
    d_rr = _t([[0.0, 2.0], [2.0, 0.0]])
    d_sr = _t([[3.0, 4.0], [0.5, 5.0]])
    # (Were the zero diagonal not left out, every point would be its own neighbour: 1.0.)
    assert float(one_nn_accuracy(d_ss, d_rr, d_sr)) == pytest.approx(0.5)
    # Both sets far apart: every neighbour is in the same set.
    d_sr_far = _t([[10.0, 10.0], [10.0, 10.0]])
    assert float(one_nn_accuracy(d_ss, d_rr, d_sr_far)) == 1.0
    # Everything nearest to the other set: 0.
    d_ss_far = _t([[0.0, 9.0], [9.0, 0.0]])
    d_rr_far = _t([[0.0, 9.0], [9.0, 0.0]])
    assert float(one_nn_accuracy(d_ss_far, d_rr_far, _t([[1.0, 2.0], [2.0, 1.0]]))) == 0.0


def test_one_nna_unequal_sets() -> None:
    # Three samples and one reference; samples are close together, the reference is near s2.
    d_ss = _t([[0, 1, 1], [1, 0, 1], [1, 1, 0]])
    d_rr = _t([[0.0]])
    d_sr = _t([[5.0], [5.0], [0.5]])
    # s0 -> s1/s2 (correct), s1 -> s0 (correct), s2 -> r0 (wrong), r0 -> s2 (wrong): 2 / 4.
    assert float(one_nn_accuracy(d_ss, d_rr, d_sr)) == pytest.approx(0.5)


def test_metric_input_validation() -> None:
    with pytest.raises(ValueError):
        minimum_matching_distance(torch.zeros(0, 3))
    with pytest.raises(ValueError):
        coverage(torch.zeros(3))
    with pytest.raises(ValueError, match="inconsistent"):
        one_nn_accuracy(torch.zeros(2, 2), torch.zeros(3, 3), torch.zeros(2, 2))
    with pytest.raises(ValueError):
        pairwise_chamfer(torch.zeros(2, 5, 2), torch.zeros(2, 5, 3))
    with pytest.raises(ValueError):
        pairwise_chamfer(torch.zeros(5, 3), torch.zeros(2, 5, 3))


# --------------------------------------------------------------------------------------
# On point clouds
# --------------------------------------------------------------------------------------


def _clouds(seed: int, n: int, p: int = 16, shift: float = 0.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, p, 3, generator=g, dtype=F64) + shift


def _chamfer_numpy(a: np.ndarray, b: np.ndarray) -> float:
    d = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    return float(d.min(1).mean() + d.min(0).mean())


def test_pairwise_chamfer_matches_loops() -> None:
    a, b = _clouds(0, 4, p=10), _clouds(1, 3, p=7)
    d = pairwise_chamfer(a, b)
    assert d.shape == (4, 3)
    for i in range(4):
        for j in range(3):
            assert float(d[i, j]) == pytest.approx(
                _chamfer_numpy(a[i].numpy(), b[j].numpy()), rel=1e-12
            )
            assert float(d[i, j]) == pytest.approx(float(chamfer_distance(a[i], b[j])), rel=1e-12)


def test_set_metrics_against_brute_force() -> None:
    s, r = _clouds(2, 5), _clouds(3, 6, shift=0.2)
    m = set_metrics(s, r)
    assert isinstance(m, SetMetrics)
    ns, nr = len(s), len(r)
    d_sr = np.array(
        [[_chamfer_numpy(s[i].numpy(), r[j].numpy()) for j in range(nr)] for i in range(ns)]
    )
    pts = [c.numpy() for c in s] + [c.numpy() for c in r]
    labels = [1] * ns + [0] * nr
    full = np.array([[_chamfer_numpy(x, y) for y in pts] for x in pts])
    np.fill_diagonal(full, np.inf)
    nna = np.mean([labels[int(np.argmin(full[i]))] == labels[i] for i in range(ns + nr)])
    assert m.mmd == pytest.approx(d_sr.min(0).mean(), rel=1e-12)
    assert m.cov == pytest.approx(len(set(d_sr.argmin(1).tolist())) / nr)
    assert m.one_nna == pytest.approx(nna)


def test_identical_sets() -> None:
    s = _clouds(4, 6)
    m = set_metrics(s, s.clone())
    assert m.mmd == 0.0
    assert m.cov == 1.0
    # Each cloud's leave-one-out neighbour is its twin in the other set: always wrong.
    assert m.one_nna == 0.0


def test_well_separated_sets() -> None:
    s, r = 0.1 * _clouds(5, 6), 0.1 * _clouds(6, 7) + 50.0
    m = set_metrics(s, r)
    assert m.one_nna == 1.0
    # MMD = mean over references of the distance to the nearest sample: about the
    # squared shift 3 * 50^2 in each direction.
    assert m.mmd == pytest.approx(2 * 3 * 50.0**2, rel=0.01)
    assert 0 < m.cov <= 1.0


def test_set_metrics_validation() -> None:
    s = _clouds(0, 3)
    with pytest.raises(ValueError):
        set_metrics(s[:0], s)
    with pytest.raises(ValueError):
        set_metrics(s, s[:0])


# --------------------------------------------------------------------------------------
# Distances up to the turns of an upright object
# --------------------------------------------------------------------------------------


def _turn_numpy(points: np.ndarray, quarter_turns: int, mirror: bool) -> np.ndarray:
    """Quarter turns about the vertical through (0.5, 0.5) by index arithmetic on
    coordinates (no matrices), then an optional mirror in x."""
    x, y, z = points[:, 0] - 0.5, points[:, 1] - 0.5, points[:, 2]
    if mirror:
        x = -x
    for _ in range(quarter_turns % 4):
        x, y = -y, x
    return np.stack([x + 0.5, y + 0.5, z], axis=1)


def test_upright_symmetries_are_the_square_group() -> None:
    maps = upright_symmetries(dtype=F64)
    assert maps.shape == (8, 3, 4)
    pts = torch.rand(50, 3, dtype=F64, generator=torch.Generator().manual_seed(0))
    images = [maps[g, :, :3] @ pts.T + maps[g, :, 3:] for g in range(8)]
    expected = [_turn_numpy(pts.numpy(), k, m) for k in range(4) for m in (False, True)]
    # The same eight images, as sets, and z (gravity) is never touched.
    got = sorted(tuple(np.round(i.T.numpy()[0], 9)) for i in images)
    want = sorted(tuple(np.round(e[0], 9)) for e in expected)
    assert got == want
    assert all(torch.equal(i[2], pts[:, 2]) for i in images)
    # The unit cube maps onto itself.
    corners = torch.tensor(list(np.ndindex(2, 2, 2)), dtype=F64)
    for g in range(8):
        img = (maps[g, :, :3] @ corners.T + maps[g, :, 3:]).T
        assert sorted(map(tuple, img.tolist())) == sorted(map(tuple, corners.tolist()))


def test_pairwise_chamfer_up_to_turns() -> None:
    rng = np.random.default_rng(3)
    a = [rng.random((40, 3)) * [0.6, 0.3, 1.0] for _ in range(3)]  # asymmetric clouds
    turned = [
        _turn_numpy(c, k, m) for c, k, m in zip(a, (1, 2, 3), (True, False, True), strict=True)
    ]
    ta = torch.tensor(np.stack(a))
    tb = torch.tensor(np.stack(turned))
    raw = pairwise_chamfer(ta, tb)
    inv = pairwise_chamfer(ta, tb, symmetries=upright_symmetries(dtype=F64))
    # A turned copy is at distance 0 up to turns, and not in plain Chamfer.
    assert torch.allclose(inv.diagonal(), torch.zeros(3, dtype=F64), atol=1e-12)
    assert bool((raw.diagonal() > 1e-3).all())
    assert bool((inv <= raw + 1e-12).all())
    # Brute force: the smallest plain distance over the eight turned copies of each a.
    brute = np.array(
        [
            [
                min(
                    _chamfer_numpy(_turn_numpy(a[i], k, m), turned[j])
                    for k in range(4)
                    for m in (False, True)
                )
                for j in range(3)
            ]
            for i in range(3)
        ]
    )
    np.testing.assert_allclose(inv.numpy(), brute, rtol=1e-10, atol=1e-14)
    # Symmetric in its arguments (isometries, closed under inversion).
    inv_t = pairwise_chamfer(tb, ta, symmetries=upright_symmetries(dtype=F64))
    torch.testing.assert_close(inv_t, inv.T)
    # The identity alone is plain Chamfer.
    ident = torch.cat([torch.eye(3, dtype=F64), torch.zeros(3, 1, dtype=F64)], dim=1)[None]
    torch.testing.assert_close(pairwise_chamfer(ta, tb, symmetries=ident), raw)


def test_set_metrics_up_to_turns_ignore_orientation() -> None:
    rng = np.random.default_rng(4)
    refs = [rng.random((30, 3)) * [0.7, 0.2, 1.0] for _ in range(6)]
    samples = [_turn_numpy(c, k, k % 2 == 1) for k, c in enumerate(refs)]
    s, r = torch.tensor(np.stack(samples)), torch.tensor(np.stack(refs))
    m = set_metrics(s, r, symmetries=upright_symmetries(dtype=F64))
    # The samples are the references turned: every reference is matched at distance 0.
    assert m.mmd == pytest.approx(0.0, abs=1e-12) and m.cov == 1.0


def test_symmetries_validated() -> None:
    a = torch.rand(2, 5, 3)
    with pytest.raises(ValueError, match="affine"):
        pairwise_chamfer(a, a, symmetries=torch.zeros(8, 3, 3))
    with pytest.raises(ValueError, match="isometries"):
        pairwise_chamfer(a, a, symmetries=2 * upright_symmetries())


def _surface_points(occ: torch.Tensor) -> torch.Tensor:
    """Centres of the occupied voxels with an empty face neighbour, by explicit loops."""
    r = occ.shape[0]
    pts = []
    for i, j, k in occ.nonzero().tolist():
        for di, dj, dk in ((1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1)):
            n = (i + di, j + dj, k + dk)
            if not all(0 <= c < r for c in n) or not occ[n]:
                pts.append([(i + 0.5) / r, (j + 0.5) / r, (k + 0.5) / r])
                break
    return torch.tensor(pts, dtype=F64)


def test_voxel_chamfer_is_chamfer_between_surface_voxel_centres() -> None:
    gen = torch.Generator().manual_seed(5)
    occ = torch.rand(5, 7, 7, 7, generator=gen) > 0.55  # ragged solids with holes
    occ[4] = False
    occ[4, 1:6, 2:4, 0:5] = True  # a solid box: only its skin counts
    plain = pairwise_voxel_chamfer(occ, occ)
    turned = pairwise_voxel_chamfer(occ, occ, upright_turns=True)
    pts = [_surface_points(o) for o in occ]
    maps = upright_symmetries(dtype=F64)
    for i in range(5):
        for j in range(5):
            ref = float(chamfer_distance(pts[i], pts[j]))
            assert float(plain[i, j]) == pytest.approx(ref, rel=1e-5, abs=1e-7)
            # Up to turns: the point clouds turned by upright_symmetries, independently.
            best = min(float(chamfer_distance(pts[i] @ m[:, :3].T + m[:, 3], pts[j])) for m in maps)
            assert float(turned[i, j]) == pytest.approx(best, rel=1e-5, abs=1e-7)
    assert bool((turned <= plain + 1e-7).all()) and torch.allclose(turned, turned.T)
    # A turned and mirrored copy is at distance 0 up to turns (and not in plain Chamfer).
    copy = torch.rot90(torch.flip(occ[:1], dims=(1,)), 3, dims=(1, 2))
    assert float(pairwise_voxel_chamfer(copy, occ[:1], upright_turns=True)) == 0.0
    assert float(pairwise_voxel_chamfer(copy, occ[:1])) > 1e-3
    # Float occupancy is thresholded at 0.5; blocks give the same result as one matrix.
    torch.testing.assert_close(pairwise_voxel_chamfer(occ.float() * 0.9, occ, chunk=2), plain)


def test_voxel_chamfer_of_empty_grids_and_bad_input() -> None:
    occ = torch.zeros(2, 4, 4, 4, dtype=torch.bool)
    occ[1, 1:3, 1:3, 0:2] = True
    d = pairwise_voxel_chamfer(occ, occ)
    assert float(d[0, 0]) == 0.0 and float(d[1, 1]) == 0.0
    assert d[0, 1] == float("inf") and d[1, 0] == float("inf")
    with pytest.raises(ValueError, match="one resolution"):
        pairwise_voxel_chamfer(occ, torch.zeros(1, 5, 5, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="cubic"):
        pairwise_voxel_chamfer(torch.zeros(1, 4, 4, 5), torch.zeros(1, 4, 4, 5))
    with pytest.raises(ValueError, match="NaN"):
        pairwise_voxel_chamfer(torch.full((1, 4, 4, 4), float("nan")), occ)
