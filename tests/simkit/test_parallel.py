"""evaluate(): the pool and Ray give the serial results, and one bad object costs only itself."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import trimesh

from simkit.geometry import Mesh
from simkit.physics import StabilityConfig, StabilityResult, check_stability, evaluate

FAST = StabilityConfig(sim_time_s=2.0, trials=2)


def _objects() -> list[Mesh]:
    tall = trimesh.creation.box((0.1, 0.1, 1.0))
    cone_tip = trimesh.creation.cone(0.2, 0.5)
    cone_tip.apply_transform(trimesh.transformations.rotation_matrix(3.14159265, [1, 0, 0]))
    return [
        Mesh.from_trimesh(trimesh.creation.box((0.4, 0.3, 0.2))),
        Mesh.from_trimesh(cone_tip),
        Mesh.from_trimesh(tall),
        Mesh.from_trimesh(trimesh.creation.cone(0.2, 0.5)),
    ]


def _summary(results: list[StabilityResult]) -> list[tuple]:
    return [(r.stable, round(r.tilt_deg, 6), r.error) for r in results]


# Module-level so that spawned workers can import them.
def crash_on_second(obj, config):
    if int(obj[1]) == 1:
        os._exit(13)  # a hard crash: no exception, the process just dies
    return check_stability(obj[0], config)


def raise_on_second(obj, config):
    if int(obj[1]) == 1:
        raise RuntimeError("boom")
    return check_stability(obj[0], config)


def test_pool_matches_serial():
    objs = _objects()
    serial = evaluate(objs, FAST, backend="serial")
    pooled = evaluate(objs, FAST, backend="process", workers=2)
    assert _summary(pooled) == _summary(serial)
    assert [r.stable for r in serial] == [True, False, True, True]
    assert all(r.error is None for r in serial)


def test_exception_costs_one_object():
    objs = [(m, i) for i, m in enumerate(_objects()[:3])]
    results = evaluate(objs, FAST, backend="serial", check=raise_on_second)
    assert results[1].error is not None and "boom" in results[1].error and not results[1].stable
    assert results[0].error is None and results[2].error is None


def test_worker_crash_costs_one_object():
    objs = [(m, i) for i, m in enumerate(_objects()[:3])]
    results = evaluate(objs, FAST, backend="process", workers=2, check=crash_on_second)
    assert results[1].error is not None and "crashed" in results[1].error
    reference = evaluate([objs[0][0], objs[2][0]], FAST, backend="serial")
    assert _summary([results[0], results[2]]) == _summary(reference)


def test_bad_object_in_batch_gets_error():
    good = _objects()[0]
    results = evaluate([good, "no/such/file.obj", good], FAST, backend="serial")
    assert results[1].error is not None and "no/such/file.obj" in results[1].error
    assert results[0].stable and results[2].stable


def test_ray_matches_serial():
    ray = pytest.importorskip("ray")
    objs = _objects()
    serial = evaluate(objs, FAST, backend="serial")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        remote = evaluate(objs, FAST, backend="ray")
    finally:
        ray.shutdown()
    assert _summary(remote) == _summary(serial)


def test_bad_arguments():
    with pytest.raises(ValueError, match="backend"):
        evaluate([], backend="gpu")
    with pytest.raises(ValueError, match="workers"):
        evaluate([], workers=0)
    assert evaluate([]) == []


def hang_on_second(obj, config):
    if int(obj[1]) == 1:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # a stuck simulation, in Python steps
            time.sleep(0.01)
    return check_stability(obj[0], config)


@pytest.mark.parametrize("backend", ["serial", "process"])
def test_timeout_costs_one_object(backend):
    objs = [(m, i) for i, m in enumerate(_objects()[:3])]
    t0 = time.monotonic()
    results = evaluate(objs, FAST, backend=backend, workers=2, timeout_s=2.0, check=hang_on_second)
    assert time.monotonic() - t0 < 30
    assert results[1].error is not None and "timed out" in results[1].error
    assert results[0].error is None and results[2].error is None
    with pytest.raises(ValueError, match="timeout_s"):
        evaluate(objs, FAST, timeout_s=0)


def test_pool_persists_chunks_keep_order_and_recovers_from_a_crash():
    from simkit.physics import parallel

    objs = _objects() * 3  # 12 objects, 2 workers: chunks of 2
    assert parallel._chunk_size(len(objs), 2) == 2
    serial = evaluate(objs, FAST, backend="serial")
    first = evaluate(objs, FAST, backend="process", workers=2)
    pool = parallel._POOL
    assert pool is not None
    assert _summary(evaluate(objs, FAST, backend="process", workers=2)) == _summary(serial)
    assert parallel._POOL is pool  # reused, not restarted
    assert _summary(first) == _summary(serial)
    # A crash inside a chunk of two costs the crashing object only, and the broken pool
    # is replaced by the next call.
    tagged = [(m, i) for i, m in enumerate(_objects()[:3])] * 3
    crashed = evaluate(tagged, FAST, backend="process", workers=2, check=crash_on_second)
    assert [r.error is not None for r in crashed] == [i == 1 for _, i in tagged]
    assert parallel._POOL is not pool
    assert _summary(evaluate(objs, FAST, backend="process", workers=2)) == _summary(serial)
    parallel.shutdown_pool()
    assert parallel._POOL is None


def test_prepared_bodies_give_the_same_results():
    from simkit.physics.stability import _body, prepare_bodies

    objs = _objects()
    bad = Mesh.from_trimesh(trimesh.Trimesh(*_open_box()))
    bodies = prepare_bodies([objs[0], "some/path.obj", bad, objs[1]], FAST.density)
    assert bodies[1] is None and bodies[2] is None  # prepared where simulated (and errors there)
    for body, mesh in ((bodies[0], objs[0]), (bodies[3], objs[1])):
        single = _body(mesh, FAST.density)
        np.testing.assert_allclose(body.hull, single.hull, atol=1e-9)
        np.testing.assert_allclose(body.moments, single.moments, rtol=1e-9)
        assert check_stability(body, FAST).stable == check_stability(mesh, FAST).stable
    # Mass and moments are linear in density: a body prepared at another density is rescaled.
    other = StabilityConfig(sim_time_s=2.0, trials=2, density=2000.0)
    assert _summary([check_stability(bodies[0], other)]) == _summary(
        [check_stability(objs[0], other)]
    )


def _open_box():
    box = trimesh.creation.box((0.2, 0.2, 0.2))
    return box.vertices, box.faces[:-2]  # two faces removed: not watertight
