"""Quasi-static toppling against closed forms and against the simulator."""

from __future__ import annotations

import math

import numpy as np
import pytest
import trimesh

from simkit import shapes
from simkit.geometry import Mesh
from simkit.physics import StabilityConfig, check_stability, support_margin
from simkit.physics.quasistatic import quasi_static_check

CONFIG = StabilityConfig(sim_time_s=4.0)


def _mesh(tm: trimesh.Trimesh) -> Mesh:
    return Mesh.from_trimesh(tm)


def test_box_returns_flat_and_cone_on_tip_falls():
    box = quasi_static_check(_mesh(trimesh.creation.box((1.0, 0.6, 0.2))), CONFIG)
    assert box.stable and box.tilt_deg == pytest.approx(0.0, abs=1e-9)
    cone = trimesh.creation.cone(0.2, 0.5)
    cone.apply_transform(trimesh.transformations.rotation_matrix(math.pi, [1, 0, 0]))
    assert not quasi_static_check(_mesh(cone), CONFIG).stable


@pytest.mark.parametrize("nudge", [2.0, 5.0])
def test_tipping_angle_of_a_tall_box(nudge):
    """A w x w x h box tips over iff the nudge exceeds its static tipping angle atan(w/h)."""
    w, h = 0.1, 1.0
    tipping = math.degrees(math.atan2(w / 2, h / 2))  # 5.71 deg
    cfg = StabilityConfig(nudge_deg=nudge, trials=8)
    result = quasi_static_check(_mesh(trimesh.creation.box((w, w, h))), cfg)
    assert result.stable == (nudge < tipping)


def test_rolls_to_rest_on_a_second_support():
    """An L-bracket whose COM overhangs its foot tips onto the end of its arm and rests there.

    Foot: 0.1 x 0.1 x 0.5 column; arm: 0.6 long bar on top reaching out in +x with its
    far end hanging 0.5 m up; the bracket pivots about the foot's +x edge until the arm's
    tip touches the ground at atan(0.5 / 0.6) = 39.8 deg > 20 deg: it falls. With a
    drooping arm whose tip is 0.1 m above ground, it lands at atan(0.1 / 0.6) ~ 9.5 deg
    and rests: stable by the 20-degree rule while support_margin says it tips.
    """
    column = trimesh.creation.box(bounds=[[-0.05, -0.05, 0.0], [0.05, 0.05, 0.5]])
    arm = trimesh.creation.box(bounds=[[-0.05, -0.05, 0.45], [0.65, 0.05, 0.5]])
    weight = trimesh.creation.box(bounds=[[0.55, -0.05, 0.1], [0.65, 0.05, 0.45]])
    drooping = _mesh(trimesh.boolean.union([column, arm, weight], engine="manifold"))
    assert support_margin(drooping) < 0
    result = quasi_static_check(drooping, CONFIG)
    assert result.stable
    expected = math.degrees(math.atan2(0.1, 0.6))
    assert result.tilt_deg == pytest.approx(expected, abs=0.5)
    sim = check_stability(drooping, CONFIG)
    assert sim.stable and sim.tilt_deg == pytest.approx(expected, abs=1.5)


def test_agrees_with_the_simulator_on_procedural_objects():
    cases = [s.mesh for fam in shapes.FAMILIES for s in shapes.sample(fam, 4, seed=5)]
    agree = sum(
        quasi_static_check(m, CONFIG).stable == check_stability(m, CONFIG).stable for m in cases
    )
    assert agree / len(cases) >= 0.95, f"{agree}/{len(cases)}"


def test_invariant_to_translation_and_scale():
    tm = trimesh.creation.cone(0.3, 0.4)
    base = quasi_static_check(_mesh(tm), CONFIG)
    moved = tm.copy()
    moved.apply_scale(7.0)
    moved.apply_translation(np.array([100.0, -40.0, 3.0]))
    other = quasi_static_check(_mesh(moved), CONFIG)
    assert other.stable == base.stable and other.tilt_deg == pytest.approx(base.tilt_deg, abs=1e-6)
