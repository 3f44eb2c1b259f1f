"""Tests for simkit.geometry.points: Chamfer distance against brute force, farthest-point
sampling against a plain-Python greedy reference, PCA normals on a sphere."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from simkit.geometry import PointCloud, chamfer_distance, farthest_point_sampling

F64 = torch.float64


def _chamfer_numpy(a: np.ndarray, b: np.ndarray) -> float:
    """PointFlow's CD by explicit loops over points."""
    ab = [min(float(np.sum((x - y) ** 2)) for y in b) for x in a]
    ba = [min(float(np.sum((x - y) ** 2)) for x in a) for y in b]
    return float(np.mean(ab) + np.mean(ba))


def _fps_reference(points: np.ndarray, n: int, first: int = 0) -> list[int]:
    """Greedy farthest-point sampling in plain Python (distance to the chosen set)."""
    chosen = [first]
    for _ in range(1, n):
        best, best_d = -1, -1.0
        for i, p in enumerate(points):
            d = min(sum((p[k] - points[j][k]) ** 2 for k in range(3)) for j in chosen)
            if d > best_d:
                best, best_d = i, d
        chosen.append(best)
    return chosen


def _cloud(seed: int, n: int) -> torch.Tensor:
    return torch.randn(n, 3, generator=torch.Generator().manual_seed(seed), dtype=F64)


# --------------------------------------------------------------------------------------
# Chamfer distance
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("p", "q"), [(1, 1), (7, 13), (40, 25)])
def test_chamfer_matches_brute_force(p: int, q: int) -> None:
    a, b = _cloud(p, p), _cloud(100 + q, q) * 1.5 + 0.3
    cd = chamfer_distance(a, b)
    assert cd.shape == ()
    assert float(cd) == pytest.approx(_chamfer_numpy(a.numpy(), b.numpy()), rel=1e-12)
    # Symmetric.
    assert float(chamfer_distance(b, a)) == pytest.approx(float(cd), rel=1e-12)


def test_chamfer_known_values() -> None:
    a = torch.tensor([[0.0, 0.0, 0.0]], dtype=F64)
    b = torch.tensor([[1.0, 2.0, 2.0]], dtype=F64)
    assert float(chamfer_distance(a, b)) == pytest.approx(2 * 9.0)  # |a - b|^2 both ways
    # a = {0}, b = {0, x}: a->b contributes 0, b->a contributes (0 + |x|^2) / 2.
    b2 = torch.tensor([[0.0, 0.0, 0.0], [3.0, 0.0, 4.0]], dtype=F64)
    assert float(chamfer_distance(a, b2)) == pytest.approx(25.0 / 2)
    x = _cloud(0, 50)
    assert float(chamfer_distance(x, x)) == 0.0
    assert float(chamfer_distance(x, x.flip(0))) == 0.0  # order does not matter
    assert float(chamfer_distance(x, x + 1e-3)) > 0.0


def test_chamfer_batched_equals_unbatched() -> None:
    a = torch.stack([_cloud(i, 20) for i in range(5)])
    b = torch.stack([_cloud(10 + i, 30) for i in range(5)])
    full = chamfer_distance(a, b)
    small_chunks = chamfer_distance(a, b, chunk=2)
    assert full.shape == (5,)
    for i in range(5):
        assert float(full[i]) == pytest.approx(
            _chamfer_numpy(a[i].numpy(), b[i].numpy()), rel=1e-12
        )
        assert float(full[i]) == pytest.approx(float(chamfer_distance(a[i], b[i])), rel=1e-12)
    torch.testing.assert_close(small_chunks, full, rtol=0, atol=0)
    # A single cloud against a batch of one keeps the batch dimension.
    assert chamfer_distance(a[0], b[:1]).shape == (1,)


@settings(max_examples=20, deadline=None)
@given(
    q=st.lists(st.floats(-1, 1), min_size=4, max_size=4).filter(lambda q: np.linalg.norm(q) > 0.1),
    t=st.lists(st.floats(-10, 10), min_size=3, max_size=3),
)
def test_chamfer_invariant_under_rigid_motion(q: list[float], t: list[float]) -> None:
    r = torch.from_numpy(Rotation.from_quat(q).as_matrix())
    tt = torch.tensor(t, dtype=F64)
    a, b = _cloud(1, 30), _cloud(2, 20)
    moved = chamfer_distance(a @ r.T + tt, b @ r.T + tt)
    assert float(moved) == pytest.approx(float(chamfer_distance(a, b)), rel=1e-9)


def test_chamfer_errors() -> None:
    a = _cloud(0, 5)
    with pytest.raises(ValueError):
        chamfer_distance(a[:, :2], a)
    with pytest.raises(ValueError):
        chamfer_distance(a[None, None], a)
    with pytest.raises(ValueError, match="batch"):
        chamfer_distance(torch.stack([a, a]), torch.stack([a, a, a]))
    with pytest.raises(ValueError, match="empty"):
        chamfer_distance(a[:0], a)
    with pytest.raises(TypeError):
        chamfer_distance(a.numpy(), a)  # type: ignore[arg-type]


def test_point_cloud_chamfer_method() -> None:
    a, b = _cloud(3, 12), _cloud(4, 9)
    assert float(PointCloud(a).chamfer_distance(PointCloud(b))) == pytest.approx(
        _chamfer_numpy(a.numpy(), b.numpy()), rel=1e-12
    )


# --------------------------------------------------------------------------------------
# Farthest-point sampling
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(3))
def test_fps_matches_greedy_reference(seed: int) -> None:
    pts = _cloud(seed, 60)
    idx = farthest_point_sampling(pts, 12)
    assert idx.shape == (12,) and idx.dtype == torch.int64
    assert idx.tolist() == _fps_reference(pts.tolist(), 12)
    assert len(set(idx.tolist())) == 12


def test_fps_greedy_property_and_uniqueness() -> None:
    pts = _cloud(9, 200)
    idx = farthest_point_sampling(pts, 50).tolist()
    assert len(set(idx)) == 50
    p = pts.numpy()
    for k in range(1, 50):
        # The k-th pick maximises the distance to the set chosen so far.
        d_all = ((p[:, None] - p[None, idx[:k]]) ** 2).sum(-1).min(1)
        assert d_all[idx[k]] == pytest.approx(d_all.max(), rel=1e-12)
    # Picking every point gives a permutation.
    assert sorted(farthest_point_sampling(pts[:30], 30).tolist()) == list(range(30))


def test_fps_spreads_over_separated_clusters() -> None:
    # Four tight clusters far apart: the first four picks land in four different ones.
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0, 0, 0], [10, 0, 0], [0, 10, 0], [0, 0, 10]], dtype=F64)
    pts = (centres[:, None] + 0.01 * torch.randn(4, 25, 3, generator=g, dtype=F64)).reshape(-1, 3)
    idx = farthest_point_sampling(pts, 4)
    assert sorted((idx // 25).tolist()) == [0, 1, 2, 3]


def test_fps_batched_and_generator() -> None:
    pts = torch.stack([_cloud(s, 40) for s in range(3)])
    idx = farthest_point_sampling(pts, 8)
    assert idx.shape == (3, 8)
    for b in range(3):
        assert idx[b].tolist() == farthest_point_sampling(pts[b], 8).tolist()
    a = farthest_point_sampling(pts, 8, generator=torch.Generator().manual_seed(5))
    b2 = farthest_point_sampling(pts, 8, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(a, b2, rtol=0, atol=0)
    for b in range(3):
        # From the random first pick, the rest is the greedy sequence.
        assert a[b].tolist() == _fps_reference(pts[b].tolist(), 8, first=int(a[b, 0]))
    starts = {
        int(farthest_point_sampling(pts[0], 2, generator=torch.Generator().manual_seed(s))[0])
        for s in range(20)
    }
    assert len(starts) > 5  # the first point is actually random


def test_fps_errors_and_point_cloud_method() -> None:
    pts = _cloud(0, 10)
    for bad in (0, 11, 2.0):
        with pytest.raises(ValueError):
            farthest_point_sampling(pts, bad)  # type: ignore[arg-type]
    normals = pts / pts.norm(dim=1, keepdim=True)
    pc = PointCloud(pts, normals)
    sub = pc.farthest_point_sample(4)
    idx = farthest_point_sampling(pts, 4)
    torch.testing.assert_close(sub.points, pts[idx])
    torch.testing.assert_close(sub.normals, normals[idx])
    assert PointCloud(pts).farthest_point_sample(3).normals is None


# --------------------------------------------------------------------------------------
# Normals and the PointCloud type
# --------------------------------------------------------------------------------------


def _sphere_points(n: int, radius: float, centre: np.ndarray, seed: int) -> torch.Tensor:
    x = torch.randn(n, 3, generator=torch.Generator().manual_seed(seed), dtype=F64)
    return x / x.norm(dim=1, keepdim=True) * radius + torch.from_numpy(centre)


def test_estimate_normals_on_sphere_are_radial_and_outward() -> None:
    centre = np.array([1.0, -2.0, 0.5])
    pts = _sphere_points(2000, 2.0, centre, seed=0)
    pc = PointCloud(pts).estimate_normals(k=20)
    radial = (pts - torch.from_numpy(centre)) / 2.0
    n = pc.normals
    torch.testing.assert_close(n.norm(dim=1), torch.ones(len(pts), dtype=F64), rtol=0, atol=1e-9)
    dots = (n * radial).sum(1)
    assert float((dots > 0.99).double().mean()) > 0.95  # parallel *and* outward
    assert float(dots.min()) > 0.9
    torch.testing.assert_close(pc.points, pts, rtol=0, atol=0)


def test_estimate_normals_orient_towards() -> None:
    # Orienting away from a point far outside the sphere flips the near hemisphere inward.
    pts = _sphere_points(1500, 1.0, np.zeros(3), seed=1)
    far = torch.tensor([0.0, 0.0, 100.0], dtype=F64)
    n = PointCloud(pts).estimate_normals(k=20, orient_towards=far).normals
    dots = (n * pts).sum(1)
    # Every normal faces away from `far`.
    assert bool((((pts - far) * n).sum(1) >= 0).all())
    # So on this sphere nearly all normals point to -z-ish: radial below, anti-radial above.
    below, above = pts[:, 2] < -0.2, pts[:, 2] > 0.2
    assert float((dots[below] > 0.99).double().mean()) > 0.95
    assert float((dots[above] < -0.99).double().mean()) > 0.95
    with pytest.raises(ValueError):
        PointCloud(pts).estimate_normals(k=2)


def test_point_cloud_validation_and_open3d_round_trip() -> None:
    pts = _cloud(0, 10)
    normals = pts / pts.norm(dim=1, keepdim=True)
    pc = PointCloud(pts, normals)
    assert len(pc) == 10
    back = PointCloud.from_open3d(pc.to_open3d())
    torch.testing.assert_close(back.points, pts, rtol=0, atol=0)
    torch.testing.assert_close(back.normals, normals, rtol=0, atol=0)
    assert PointCloud.from_open3d(PointCloud(pts).to_open3d()).normals is None
    f32 = pc.to(dtype=torch.float32)
    assert f32.points.dtype == torch.float32 and f32.normals.dtype == torch.float32
    with pytest.raises(TypeError):
        PointCloud(pts.numpy())  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        PointCloud(pts[:, :2])
    with pytest.raises(ValueError):
        PointCloud(pts[None])
    bad = pts.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        PointCloud(bad)
    with pytest.raises(ValueError):
        PointCloud(pts, normals[:5])
