"""Stability verdicts for many objects: serially, in a local process pool, or on Ray.

Whatever happens to one object (bad input, an exception, a crashed worker process), the
batch goes on: that object's result carries ``error`` and the others are unaffected.
Results come back in input order and do not depend on the backend or worker count.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Sequence
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Literal

from tqdm.auto import tqdm

from simkit.physics.stability import StabilityConfig, StabilityResult, check_stability

__all__ = ["Backend", "check_worker", "evaluate"]

log = logging.getLogger(__name__)

Backend = Literal["serial", "process", "ray"]
_BACKENDS = ("serial", "process", "ray")

#: The per-object function the workers run; tests swap it to inject failures.
CheckFn = Callable[[Any, StabilityConfig], StabilityResult]


# This process's PyBullet client for check_worker; created on first use, never at import.
_WORKER_CLIENT: int | None = None


def check_worker(obj: Any, config: StabilityConfig) -> StabilityResult:
    """:func:`check_stability` on one DIRECT client held for the life of the process.

    Connecting costs about as much as simulating a small object, so each worker (and the
    serial loop) keeps one client; ``check_stability`` resets its world every call.
    """
    import pybullet as p

    global _WORKER_CLIENT
    if _WORKER_CLIENT is None or not p.isConnected(physicsClientId=_WORKER_CLIENT):
        _WORKER_CLIENT = p.connect(p.DIRECT)
    return check_stability(obj, config, client=_WORKER_CLIENT)


def _init_worker() -> None:
    """One torch thread per worker: the pool already uses every core."""
    import torch

    torch.set_num_threads(1)


class _ObjectTimeout(Exception):
    pass


def _on_alarm(signum: int, frame: Any) -> None:
    raise _ObjectTimeout


def _guarded(
    check: CheckFn, obj: Any, config: StabilityConfig, timeout_s: float | None = None
) -> StabilityResult:
    """Run ``check``; turn any exception, or running past ``timeout_s``, into an error result.

    The timeout uses SIGALRM, so it applies where that exists and this runs on the main
    thread (pool workers always do); PyBullet returns to Python after every step, where
    the alarm is delivered.
    """
    use_alarm = (
        timeout_s is not None
        and hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
    )
    previous = signal.signal(signal.SIGALRM, _on_alarm) if use_alarm else None
    try:
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, timeout_s)
        return check(obj, config)
    except _ObjectTimeout:
        return StabilityResult.from_error(f"timed out after {timeout_s:g} s")
    except Exception as exc:  # noqa: BLE001 - one bad object must not end the batch
        return StabilityResult.from_error(f"{type(exc).__name__}: {exc}")
    finally:
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


def _describe(obj: Any) -> str:
    return str(obj) if isinstance(obj, (str, os.PathLike)) else type(obj).__name__


def _run_serial(
    check: CheckFn, objs: Sequence[Any], config: StabilityConfig, timeout_s: float | None, bar: tqdm
) -> list[StabilityResult]:
    results = []
    for obj in objs:
        results.append(_guarded(check, obj, config, timeout_s))
        bar.update()
    return results


def _run_pool(
    check: CheckFn,
    objs: Sequence[Any],
    config: StabilityConfig,
    timeout_s: float | None,
    workers: int,
    bar: tqdm,
) -> list[StabilityResult]:
    """A process pool; when a worker dies, the objects it may have held are retried alone.

    A crash (segfault, os._exit, out of memory) breaks a ``ProcessPoolExecutor`` and fails
    every pending future. Those objects are then run one at a time in a fresh
    single-worker pool, so only the object that crashes again is marked as failed.
    """
    # forkserver: workers fork from a clean server process (no inherited PyBullet client
    # or torch threads, unlike fork) that has imported simkit once (cheaper than spawn).
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["simkit.physics.parallel"])
    results: list[StabilityResult | None] = [None] * len(objs)
    suspects: list[int] = []
    with cf.ProcessPoolExecutor(
        max_workers=workers, mp_context=ctx, initializer=_init_worker
    ) as pool:
        futures = {
            pool.submit(_guarded, check, obj, config, timeout_s): i for i, obj in enumerate(objs)
        }
        for fut in cf.as_completed(futures):
            i = futures[fut]
            try:
                results[i] = fut.result()
                bar.update()
            except BrokenProcessPool:
                suspects.append(i)
    if suspects:
        log.warning("a stability worker died; re-running %d object(s) one at a time", len(suspects))
    for i in sorted(suspects):
        with cf.ProcessPoolExecutor(
            max_workers=1, mp_context=ctx, initializer=_init_worker
        ) as solo:
            try:
                results[i] = solo.submit(_guarded, check, objs[i], config, timeout_s).result()
            except BrokenProcessPool:
                results[i] = StabilityResult.from_error(
                    f"worker process crashed while simulating object {i} ({_describe(objs[i])})"
                )
        bar.update()
    return [r for r in results if r is not None]


def _run_ray(
    check: CheckFn, objs: Sequence[Any], config: StabilityConfig, timeout_s: float | None, bar: tqdm
) -> list[StabilityResult]:
    """One Ray task per object on the current cluster (``ray.init()`` is called if needed)."""
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError("backend='ray' needs Ray: pip install 'simkit[dist]'") from exc
    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False)
    task = ray.remote(_guarded)
    refs = [task.remote(check, obj, config, timeout_s) for obj in objs]
    results: list[StabilityResult] = []
    for ref in refs:
        try:
            results.append(ray.get(ref))
        except Exception as exc:  # noqa: BLE001 - a dead worker fails its task only
            results.append(
                StabilityResult.from_error(f"ray task failed: {type(exc).__name__}: {exc}")
            )
        bar.update()
    return results


def evaluate(
    objs: Sequence[Any],
    config: StabilityConfig | None = None,
    *,
    workers: int | None = None,
    backend: Backend = "process",
    progress: bool | None = None,
    timeout_s: float | None = None,
    check: CheckFn = check_worker,
) -> list[StabilityResult]:
    """Stability verdicts for a batch of objects, in input order.

    Args:
        objs: meshes, voxel grids or mesh file paths (anything :func:`check_stability` takes).
        config: simulation settings shared by all objects (default :class:`StabilityConfig`).
        workers: processes for ``backend="process"`` (default: the CPU count, at most
            one per object); 1 runs serially.
        backend: ``"serial"``, ``"process"`` (a local pool, each worker with its own
            PyBullet client) or ``"ray"`` (one task per object on a Ray cluster).
        progress: show a progress bar (default: when writing to a terminal).
        timeout_s: wall-clock seconds one object may take; past it the object gets an
            ``error`` ("timed out") and the batch goes on. None: no limit.
        check: the per-object function; a picklable ``(obj, config) -> StabilityResult``.

    Returns:
        One :class:`StabilityResult` per object. An object that raised, or whose worker
        crashed, gets ``error`` set and ``stable=False``; the others are unaffected.
    """
    config = config or StabilityConfig()
    if backend not in _BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {_BACKENDS}")
    if timeout_s is not None and not (isinstance(timeout_s, (int, float)) and timeout_s > 0):
        raise ValueError(
            f"timeout_s must be a positive number of seconds or None, got {timeout_s!r}"
        )
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be a positive int, got {workers!r}")
    objs = list(objs)
    if not objs:
        return []
    n_workers = min(workers or os.cpu_count() or 1, len(objs))
    disable = None if progress is None else not progress
    with tqdm(total=len(objs), desc="stability", unit="object", disable=disable) as bar:
        if backend == "ray":
            return _run_ray(check, objs, config, timeout_s, bar)
        if backend == "serial" or n_workers == 1:
            return _run_serial(check, objs, config, timeout_s, bar)
        return _run_pool(check, objs, config, timeout_s, n_workers, bar)
