"""Stability verdicts for many objects: serially, in a local process pool, or on Ray.

Whatever happens to one object (bad input, an exception, a crashed worker process), the
batch goes on: that object's result carries ``error`` and the others are unaffected.
Results come back in input order and do not depend on the backend or worker count.

What makes it fast: meshes and voxel grids are reduced in the calling process to what
the simulator needs (convex hull, mass, centre of mass, principal moments and axes; see
:func:`~simkit.physics.stability.prepare_bodies`), with mass properties batched; the
process pool persists across calls (:func:`shutdown_pool` stops it, as does exit) and
is fed chunks of objects, so start-up and IPC are paid rarely.
"""

from __future__ import annotations

import atexit
import concurrent.futures as cf
import logging
import math
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Sequence
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Literal

from tqdm.auto import tqdm

from simkit.physics.stability import (
    StabilityConfig,
    StabilityResult,
    check_stability,
    prepare_bodies,
)

__all__ = ["Backend", "check_worker", "evaluate", "shutdown_pool"]

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


def _init_worker(parent_pid: int | None = None) -> None:
    """One torch thread per worker: the pool already uses every core.

    The pool outlives ``evaluate`` calls, so a worker also exits on its own once the
    process that started it is gone (killed before it could shut the pool down).
    """
    import torch

    torch.set_num_threads(1)
    if parent_pid is not None:
        threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True).start()


def _exit_with_parent(parent_pid: int) -> None:
    import time

    while True:
        time.sleep(1.0)
        try:
            os.kill(parent_pid, 0)
        except ProcessLookupError:
            os._exit(0)
        except PermissionError:  # pragma: no cover - pid reused by another user's process
            os._exit(0)


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


def _prepared(check: CheckFn, chunk: list[Any], config: StabilityConfig) -> list[Any]:
    """``chunk`` with meshes and voxel grids replaced by their prepared bodies, when
    ``check`` is the default (a custom check gets the objects as given). An object that
    cannot be prepared stays as it is, so that its check raises the usual error."""
    if check is not check_worker:
        return chunk
    import torch

    # One torch thread: these tensors are small, and extra threads spin on cores the
    # workers (or, on a shared machine, other jobs) need. Restored afterwards.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        bodies = prepare_bodies(chunk, config.density, keep_surface=config.collider != "hull")
    except Exception:  # noqa: BLE001 - never fail the batch here; the workers report errors
        log.debug("prepare_bodies failed; the workers prepare these objects", exc_info=True)
        return chunk
    finally:
        torch.set_num_threads(threads)
    return [o if b is None else b for o, b in zip(chunk, bodies, strict=True)]


def _run_serial(
    check: CheckFn, objs: Sequence[Any], config: StabilityConfig, timeout_s: float | None, bar: tqdm
) -> list[StabilityResult]:
    results = []
    size = 64  # mass properties batched this many meshes at a time (default check only)
    for start in range(0, len(objs), size):
        for obj in _prepared(check, list(objs[start : start + size]), config):
            results.append(_guarded(check, obj, config, timeout_s))
            bar.update()
    return results


def _guarded_chunk(
    check: CheckFn, objs: Sequence[Any], config: StabilityConfig, timeout_s: float | None
) -> list[StabilityResult]:
    """:func:`_guarded` over a chunk of objects (one pool task: IPC paid once a chunk)."""
    return [_guarded(check, obj, config, timeout_s) for obj in objs]


# The process pool, kept across evaluate() calls: starting workers (forkserver, importing
# torch and pybullet) costs ~1-2 s, more than simulating a hundred small objects.
_POOL: cf.ProcessPoolExecutor | None = None
_POOL_WORKERS = 0
_POOL_LOCK = threading.Lock()
_ATEXIT_REGISTERED = False


def _pool_context() -> multiprocessing.context.BaseContext:
    # forkserver: workers fork from a clean server process (no inherited PyBullet client
    # or torch threads, unlike fork) that has imported simkit once (cheaper than spawn).
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["simkit.physics.parallel"])
    return ctx


def _get_pool(workers: int) -> cf.ProcessPoolExecutor:
    """The persistent pool of ``workers`` processes (re-created for another size)."""
    global _POOL, _POOL_WORKERS, _ATEXIT_REGISTERED
    if _POOL is not None and _POOL_WORKERS != workers:
        shutdown_pool()
    if _POOL is None:
        _POOL = cf.ProcessPoolExecutor(
            max_workers=workers,
            mp_context=_pool_context(),
            initializer=_init_worker,
            initargs=(os.getpid(),),
        )
        _POOL_WORKERS = workers
        if not _ATEXIT_REGISTERED:
            atexit.register(shutdown_pool)
            _ATEXIT_REGISTERED = True
    return _POOL


def shutdown_pool() -> None:
    """Stop the worker processes :func:`evaluate` keeps between calls (also run at exit).

    The next ``backend="process"`` call starts a new pool.
    """
    global _POOL, _POOL_WORKERS
    pool, _POOL, _POOL_WORKERS = _POOL, None, 0
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)


def _chunk_size(n: int, workers: int) -> int:
    """Objects per pool task: about four tasks a worker (load balance), at most 8 objects
    (enough to amortise a task's pickling and round trip over small objects, which
    simulate in a few ms each). A crash re-runs its whole chunk one object at a time."""
    return max(1, min(8, math.ceil(n / (4 * workers))))


def _run_pool(
    check: CheckFn,
    objs: Sequence[Any],
    config: StabilityConfig,
    timeout_s: float | None,
    workers: int,
    bar: tqdm,
) -> list[StabilityResult]:
    """The persistent process pool, fed chunks of objects; when a worker dies, the
    objects it may have held are retried alone.

    A crash (segfault, os._exit, out of memory) breaks a ``ProcessPoolExecutor`` and fails
    every pending future. The pool is then discarded, and the objects of every chunk that
    did not come back are run one at a time in a fresh single-worker pool, so only the
    object that crashes again is marked as failed.

    With the default ``check``, meshes and voxel grids are reduced in this process to
    what a worker needs (:func:`prepare_bodies`: convex hull and mass properties,
    computed batched a chunk at a time while the workers simulate the previous chunks):
    pickling a mesh costs more than simulating a small one.
    """
    results: list[StabilityResult | None] = [None] * len(objs)
    suspects: list[int] = []
    size = _chunk_size(len(objs), min(workers, len(objs)))
    with _POOL_LOCK:
        pool = _get_pool(workers)
        futures: dict[cf.Future, range] = {}
        broken = False
        for start in range(0, len(objs), size):
            idx = range(start, min(start + size, len(objs)))
            chunk = _prepared(check, [objs[i] for i in idx], config)
            try:
                futures[pool.submit(_guarded_chunk, check, chunk, config, timeout_s)] = idx
            except BrokenProcessPool:
                broken = True
                suspects.extend(idx)
        for fut in cf.as_completed(futures):
            idx = futures[fut]
            try:
                for i, r in zip(idx, fut.result(), strict=True):
                    results[i] = r
                bar.update(len(idx))
            except BrokenProcessPool:
                broken = True
                suspects.extend(idx)
        if broken:
            shutdown_pool()
    if suspects:
        log.warning("a stability worker died; re-running %d object(s) one at a time", len(suspects))
    for i in sorted(suspects):
        with cf.ProcessPoolExecutor(
            max_workers=1, mp_context=_pool_context(), initializer=_init_worker
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
    refs = [
        task.remote(check, obj, config, timeout_s) for obj in _prepared(check, list(objs), config)
    ]
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
        workers: processes for ``backend="process"`` (default: the CPU count); 1, or a
            single object, runs serially. The pool is kept for the next call with the
            same ``workers`` (:func:`shutdown_pool` stops it).
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
    n_workers = workers or os.cpu_count() or 1  # the pool's size: kept across calls
    disable = None if progress is None else not progress
    with tqdm(total=len(objs), desc="stability", unit="object", disable=disable) as bar:
        if backend == "ray":
            return _run_ray(check, objs, config, timeout_s, bar)
        if backend == "serial" or n_workers == 1 or len(objs) == 1:
            return _run_serial(check, objs, config, timeout_s, bar)
        return _run_pool(check, objs, config, timeout_s, n_workers, bar)
