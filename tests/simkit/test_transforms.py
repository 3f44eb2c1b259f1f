"""Tests for simkit.geometry.transforms: Haar-uniform rotations (KS tests), quaternions and
axis-angle against scipy, homogeneous transforms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.spatial.transform import Rotation

from simkit.geometry import (
    axis_angle_to_matrix,
    quaternion_to_matrix,
    random_rotations,
    rigid_transform,
)

F64 = torch.float64


def _angle(r: np.ndarray) -> np.ndarray:
    """Rotation angle in [0, pi] from the trace."""
    return np.arccos(np.clip((np.trace(r, axis1=-2, axis2=-1) - 1) / 2, -1, 1))


def _angle_cdf(theta: np.ndarray) -> np.ndarray:
    # Haar measure on SO(3): density (1 - cos t) / pi on [0, pi].
    return (theta - np.sin(theta)) / np.pi


# --------------------------------------------------------------------------------------
# random_rotations
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float32, 1e-5), (F64, 1e-12)])
def test_random_rotations_are_proper_orthonormal(dtype: torch.dtype, tol: float) -> None:
    r = random_rotations(500, generator=torch.Generator().manual_seed(0), dtype=dtype)
    assert r.shape == (500, 3, 3) and r.dtype == dtype
    eye = torch.eye(3, dtype=dtype).expand(500, 3, 3)
    torch.testing.assert_close(r @ r.transpose(1, 2), eye, rtol=0, atol=tol)
    torch.testing.assert_close(torch.linalg.det(r), torch.ones(500, dtype=dtype), rtol=0, atol=tol)


def test_random_rotations_are_haar_uniform() -> None:
    n = 4000
    r = random_rotations(n, generator=torch.Generator().manual_seed(1), dtype=F64).numpy()
    # The image of a fixed unit vector is uniform on S^2: its z-coordinate is U[-1, 1]
    # (Archimedes) and its azimuth is U[0, 2 pi).
    z_axis = r[:, :, 2]
    assert stats.kstest(z_axis[:, 2], stats.uniform(-1, 2).cdf).pvalue > 1e-3
    azimuth = np.arctan2(z_axis[:, 1], z_axis[:, 0]) % (2 * np.pi)
    assert stats.kstest(azimuth, stats.uniform(0, 2 * np.pi).cdf).pvalue > 1e-3
    # The same holds for the pre-image (rows), as Haar measure is inversion invariant.
    assert stats.kstest(r[:, 2, 0], stats.uniform(-1, 2).cdf).pvalue > 1e-3
    # The rotation angle has density (1 - cos t) / pi.
    assert stats.kstest(_angle(r), _angle_cdf).pvalue > 1e-3


def test_angle_test_has_power() -> None:
    # Negative control: rotations with a uniform axis and a *uniform* angle are not Haar;
    # the same KS test must reject them, or the test above could not fail.
    rng = np.random.default_rng(0)
    axes = rng.normal(size=(4000, 3))
    angles = rng.uniform(0, np.pi, size=4000)
    r = axis_angle_to_matrix(torch.from_numpy(axes), torch.from_numpy(angles)).numpy()
    assert stats.kstest(_angle(r), _angle_cdf).pvalue < 1e-6


def test_random_rotations_reproducible_and_validated() -> None:
    a = random_rotations(10, generator=torch.Generator().manual_seed(7))
    b = random_rotations(10, generator=torch.Generator().manual_seed(7))
    c = random_rotations(10, generator=torch.Generator().manual_seed(8))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(a, c)
    assert a.dtype == torch.float32
    assert random_rotations(0).shape == (0, 3, 3)
    for bad in (-1, 2.0, "3"):
        with pytest.raises(ValueError):
            random_rotations(bad)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------
# quaternion_to_matrix
# --------------------------------------------------------------------------------------


def test_quaternion_matches_scipy() -> None:
    rng = np.random.default_rng(2)
    q = rng.normal(size=(200, 4)) * rng.uniform(0.1, 10, size=(200, 1))  # not unit length
    ours = quaternion_to_matrix(torch.from_numpy(q)).numpy()
    # simkit is scalar-first (w, x, y, z); scipy is scalar-last (x, y, z, w).
    ref = Rotation.from_quat(q[:, [1, 2, 3, 0]]).as_matrix()
    np.testing.assert_allclose(ours, ref, atol=1e-12)


def test_quaternion_known_values_and_double_cover() -> None:
    s = math.sqrt(0.5)
    # 90 degrees about z: x -> y.
    r = quaternion_to_matrix(torch.tensor([s, 0.0, 0.0, s], dtype=F64))
    torch.testing.assert_close(r, torch.tensor([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]], dtype=F64))
    torch.testing.assert_close(quaternion_to_matrix(torch.tensor([1.0, 0, 0, 0])), torch.eye(3))
    q = torch.randn(5, 4, generator=torch.Generator().manual_seed(0), dtype=F64)
    torch.testing.assert_close(quaternion_to_matrix(-q), quaternion_to_matrix(q))
    torch.testing.assert_close(quaternion_to_matrix(3.0 * q), quaternion_to_matrix(q))


@settings(max_examples=30, deadline=None)
@given(
    q1=st.lists(st.floats(-1, 1), min_size=4, max_size=4).filter(lambda q: np.linalg.norm(q) > 0.1),
    q2=st.lists(st.floats(-1, 1), min_size=4, max_size=4).filter(lambda q: np.linalg.norm(q) > 0.1),
)
def test_quaternion_product_is_matrix_product(q1: list[float], q2: list[float]) -> None:
    # Hamilton product (w, v): (w1 w2 - v1.v2, w1 v2 + w2 v1 + v1 x v2).
    a, b = np.asarray(q1), np.asarray(q2)
    w = a[0] * b[0] - a[1:] @ b[1:]
    v = a[0] * b[1:] + b[0] * a[1:] + np.cross(a[1:], b[1:])
    prod = torch.from_numpy(np.concatenate([[w], v]))
    ra, rb = quaternion_to_matrix(torch.from_numpy(a)), quaternion_to_matrix(torch.from_numpy(b))
    torch.testing.assert_close(quaternion_to_matrix(prod), ra @ rb, rtol=0, atol=1e-10)


def test_quaternion_batch_shape_and_errors() -> None:
    q = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(1))
    r = quaternion_to_matrix(q)
    assert r.shape == (2, 3, 3, 3)
    torch.testing.assert_close(r[1, 2], quaternion_to_matrix(q[1, 2]))
    with pytest.raises(ValueError):
        quaternion_to_matrix(torch.ones(3))
    with pytest.raises(ValueError, match="zero"):
        quaternion_to_matrix(torch.zeros(2, 4))


def test_quaternion_gradcheck() -> None:
    q = torch.tensor([[0.3, -0.5, 0.8, 0.2], [1.2, 0.1, -0.4, 0.7]], dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(quaternion_to_matrix, (q,))


# --------------------------------------------------------------------------------------
# axis_angle_to_matrix
# --------------------------------------------------------------------------------------


def test_axis_angle_matches_scipy_rotvec() -> None:
    rng = np.random.default_rng(3)
    axis = rng.normal(size=(200, 3)) * rng.uniform(0.1, 5, size=(200, 1))  # not unit length
    angle = rng.uniform(-2 * np.pi, 2 * np.pi, size=200)
    ours = axis_angle_to_matrix(torch.from_numpy(axis), torch.from_numpy(angle)).numpy()
    rotvec = axis / np.linalg.norm(axis, axis=1, keepdims=True) * angle[:, None]
    np.testing.assert_allclose(ours, Rotation.from_rotvec(rotvec).as_matrix(), atol=1e-12)


def test_axis_angle_known_values_and_broadcasting() -> None:
    r = axis_angle_to_matrix(torch.tensor([0.0, 0.0, 2.0], dtype=F64), math.pi / 2)
    torch.testing.assert_close(r, torch.tensor([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]], dtype=F64))
    # Angle 0 is the identity; angle pi about x flips y and z.
    torch.testing.assert_close(
        axis_angle_to_matrix(torch.tensor([1.0, 2.0, 3.0]), 0.0), torch.eye(3)
    )
    torch.testing.assert_close(
        axis_angle_to_matrix(torch.tensor([1.0, 0.0, 0.0], dtype=F64), math.pi),
        torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=F64)),
    )
    # One axis, many angles; angles add about a shared axis.
    angles = torch.linspace(-3, 3, 7, dtype=F64)
    axis = torch.tensor([0.3, -0.4, 0.5], dtype=F64)
    rs = axis_angle_to_matrix(axis, angles)
    assert rs.shape == (7, 3, 3)
    torch.testing.assert_close(rs[2] @ rs[5], axis_angle_to_matrix(axis, angles[2] + angles[5]))
    # The axis is fixed by its rotation.
    torch.testing.assert_close(rs @ axis, axis.expand(7, 3))


def test_axis_angle_errors() -> None:
    with pytest.raises(ValueError):
        axis_angle_to_matrix(torch.ones(4), 1.0)
    with pytest.raises(ValueError, match="non-zero"):
        axis_angle_to_matrix(torch.zeros(3), 1.0)


# --------------------------------------------------------------------------------------
# rigid_transform
# --------------------------------------------------------------------------------------


def test_rigid_transform_acts_on_homogeneous_points() -> None:
    rot = random_rotations(4, generator=torch.Generator().manual_seed(3), dtype=F64)
    t = torch.randn(4, 3, generator=torch.Generator().manual_seed(4), dtype=F64)
    m = rigid_transform(rot, t)
    assert m.shape == (4, 4, 4)
    p = torch.randn(4, 3, generator=torch.Generator().manual_seed(5), dtype=F64)
    ph = torch.cat([p, torch.ones(4, 1, dtype=F64)], dim=1)
    out = (m @ ph[..., None])[..., 0]
    torch.testing.assert_close(out[:, :3], (rot @ p[..., None])[..., 0] + t)
    torch.testing.assert_close(out[:, 3], torch.ones(4, dtype=F64))
    # Inverse is (R^T, -R^T t).
    inv = rigid_transform(rot.transpose(1, 2), -(rot.transpose(1, 2) @ t[..., None])[..., 0])
    torch.testing.assert_close(inv @ m, torch.eye(4, dtype=F64).expand(4, 4, 4))
    # Broadcasting one rotation against many translations.
    assert rigid_transform(rot[0], t).shape == (4, 4, 4)
    with pytest.raises(ValueError):
        rigid_transform(torch.eye(4), torch.zeros(3))
    with pytest.raises(ValueError):
        rigid_transform(torch.eye(3), torch.zeros(2))


@pytest.mark.parametrize("case", ["quaternion", "axis", "angle"])
def test_non_finite_input_raises(case: str) -> None:
    nan = float("nan")
    with pytest.raises(ValueError):
        if case == "quaternion":
            quaternion_to_matrix(torch.tensor([nan, 0.0, 0.0, 1.0]))
        elif case == "axis":
            axis_angle_to_matrix(torch.tensor([nan, 0.0, 1.0]), 1.0)
        else:
            axis_angle_to_matrix(torch.tensor([0.0, 0.0, 1.0]), nan)
