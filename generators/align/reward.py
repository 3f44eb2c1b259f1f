"""Rewards: what the fine-tuning loop asks of each generated object.

A reward judges a batch of meshes and returns one :class:`Judgement` per mesh: whether
the object *passes* (the binary label DPO pairs and DRO / KTO / SFT batches are built
from), a score, and details worth recording. DSO's reward is the physics simulator's
verdict (:class:`StabilityReward`); any user function from a mesh to a bool or a float
plugs in through :class:`CallableReward` (or :func:`as_reward`, which wraps a bare
callable).

A reward never lets one object take the batch down: an exception or a non-finite score
becomes that object's ``error`` and the others are judged as usual.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from simkit.geometry import Mesh

__all__ = ["CallableReward", "Judgement", "Reward", "StabilityReward", "as_reward"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Judgement:
    """A reward's verdict on one object.

    Attributes:
        passed: the binary label (True: preferred, e.g. it stands); None when the object
            could not be judged.
        score: a real-valued reward (higher is better), or None.
        details: extra per-object figures to record (e.g. ``tilt_deg``), JSON-safe.
        error: why the object could not be judged, or None.
    """

    passed: bool | None
    score: float | None
    details: dict[str, float | None] = field(default_factory=dict)
    error: str | None = None

    @classmethod
    def failed(cls, error: str) -> Judgement:
        return cls(passed=None, score=None, error=error)


@runtime_checkable
class Reward(Protocol):
    """``judge(meshes) -> list[Judgement]``, one per mesh, in order; ``name`` for records."""

    name: str

    def judge(self, meshes: Sequence[Mesh]) -> list[Judgement]: ...


class StabilityReward:
    """DSO's reward: does the object stand? (PyBullet, :func:`simkit.physics.evaluate`).

    ``passed`` is the simulator's verdict, ``score`` is 1.0 or 0.0, and the details are
    the worst tilt (degrees) and the analytic support margin (metres, negative: the
    centre of mass is outside the support polygon).

    Args:
        config: the simulation settings (``StabilityConfig()`` when None).
        workers: simulation processes (None: all cores).
        backend: "process", "serial" or "ray".
        timeout_s: seconds one object may take before it is reported as an error.
    """

    name = "stability"

    def __init__(
        self,
        config: Any = None,
        *,
        workers: int | None = None,
        backend: str = "process",
        timeout_s: float | None = 60.0,
    ) -> None:
        from simkit.physics import StabilityConfig

        self.config = StabilityConfig() if config is None else config
        if not isinstance(self.config, StabilityConfig):
            raise TypeError(f"config must be a StabilityConfig, got {type(config).__name__}")
        self.workers = workers
        self.backend = backend
        self.timeout_s = timeout_s

    def judge(self, meshes: Sequence[Mesh]) -> list[Judgement]:
        from simkit.physics import evaluate, support_margin

        verdicts = evaluate(
            list(meshes),
            self.config,
            workers=self.workers,
            backend=self.backend,  # type: ignore[arg-type]
            progress=False,
            timeout_s=self.timeout_s,
        )
        out = []
        for mesh, v in zip(meshes, verdicts, strict=True):
            if v.error is not None:
                out.append(Judgement.failed(v.error))
                continue
            try:
                margin: float | None = float(support_margin(mesh))
            except ValueError:
                margin = None
            out.append(
                Judgement(
                    passed=bool(v.stable),
                    score=1.0 if v.stable else 0.0,
                    details={"tilt_deg": float(v.tilt_deg), "support_margin": margin},
                )
            )
        return out


class CallableReward:
    """A user function from a :class:`~simkit.geometry.Mesh` to a bool or a float.

    A bool is the label itself (score 1.0 / 0.0); a float is the score and the object
    passes when it is at least ``threshold``. An exception, or a NaN / infinite score,
    makes that object's judgement an error (logged); the rest of the batch goes on.

    Args:
        fn: ``fn(mesh) -> bool | float``.
        threshold: the pass mark for float scores.
        name: recorded in datasets (default: the function's name).
    """

    def __init__(
        self, fn: Callable[[Mesh], bool | float], *, threshold: float = 0.5, name: str | None = None
    ) -> None:
        if not callable(fn):
            raise TypeError(f"fn must be callable (mesh -> bool or float), got {fn!r}")
        if not math.isfinite(threshold):
            raise ValueError(f"threshold must be finite, got {threshold!r}")
        self.fn = fn
        self.threshold = float(threshold)
        self.name = name or getattr(fn, "__name__", type(fn).__name__)

    def judge(self, meshes: Sequence[Mesh]) -> list[Judgement]:
        out = []
        for i, mesh in enumerate(meshes):
            try:
                value = self.fn(mesh)
            except Exception as exc:  # noqa: BLE001 - a user function: isolate its failures
                log.warning("reward %s failed on object %d: %s", self.name, i, exc)
                out.append(Judgement.failed(f"{type(exc).__name__}: {exc}"))
                continue
            if isinstance(value, bool):
                out.append(Judgement(passed=value, score=float(value)))
                continue
            try:
                score = float(value)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                out.append(Judgement.failed(f"reward returned {value!r}, not a bool or number"))
                continue
            if not math.isfinite(score):
                out.append(Judgement.failed(f"reward returned a non-finite score {score!r}"))
                continue
            out.append(Judgement(passed=score >= self.threshold, score=score))
        return out


def as_reward(
    reward: Reward | Callable[[Mesh], bool | float] | None,
    *,
    seed: int = 0,
    workers: int | None = None,
    backend: str = "process",
) -> Reward:
    """A :class:`Reward` as it is, a bare callable wrapped in :class:`CallableReward`,
    and None as the default :class:`StabilityReward` (PyBullet seeded with ``seed``,
    simulating on ``workers`` with ``backend``)."""
    if reward is None:
        from simkit.physics import StabilityConfig

        return StabilityReward(StabilityConfig(seed=seed), workers=workers, backend=backend)
    if isinstance(reward, Reward):
        return reward
    if callable(reward):
        return CallableReward(reward)
    raise TypeError(f"reward must be a Reward or a callable mesh -> bool | float, got {reward!r}")
