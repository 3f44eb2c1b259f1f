"""Rewards: what the fine-tuning loop asks of each generated object.

A reward judges a batch of meshes and returns one :class:`Judgement` per mesh: whether
the object *passes* (the binary label DPO pairs and DRO / KTO / SFT batches are built
from), a score, and details worth recording. DSO's reward is the physics simulator's
verdict (:class:`StabilityReward`); any user function from a mesh to a bool or a float
plugs in through :class:`CallableReward` (or :func:`as_reward`, which wraps a bare
callable).

A reward that needs more than the mesh sets ``uses_samples = True``; it is then called as
``judge(meshes, conditions=..., occupancy=...)`` with each object's condition (the family
it was asked for) and its (n, R, R, R) occupancy grid. :class:`FamilyReward` is one: is
the object recognisable as the family asked for? :class:`AllOf` passes what all of its
rewards pass, so ``AllOf(StabilityReward(), FamilyReward())`` asks for objects that stand
*and* still look like what was asked for (stability alone can be had by turning a chair
into a stool).

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

__all__ = [
    "REWARDS",
    "AllOf",
    "CallableReward",
    "FamilyReward",
    "Judgement",
    "Reward",
    "StabilityReward",
    "as_reward",
    "family_margins",
    "judge",
]

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


def judge(
    reward: Reward,
    meshes: Sequence[Mesh],
    *,
    conditions: Sequence[str] | None = None,
    occupancy: Any = None,
) -> list[Judgement]:
    """``reward.judge(meshes)``, with the conditions and occupancy grids for a reward that
    uses them (``uses_samples``); raises ValueError when such a reward is not given them."""
    if not getattr(reward, "uses_samples", False):
        return reward.judge(meshes)
    if conditions is None or occupancy is None:
        raise ValueError(
            f"reward {reward.name!r} judges each object against the condition it was drawn "
            "for and needs the conditions and occupancy grids"
        )
    if len(conditions) != len(meshes) or occupancy.shape[0] != len(meshes):
        raise ValueError(
            f"{len(meshes)} meshes but {len(conditions)} conditions and {occupancy.shape[0]} grids"
        )
    return reward.judge(meshes, conditions=conditions, occupancy=occupancy)  # type: ignore[call-arg]


class FamilyReward:
    """Is the object recognisable as the family it was asked for?

    The object passes when its nearest procedural reference (:mod:`simkit.shapes`, the
    generators' training families) is of that family. Distances are Chamfer distances
    between voxel surfaces up to the eight upright turns
    (:func:`simkit.geometry.metrics.pairwise_voxel_chamfer`), on which a second
    procedural set is recognised 97 % of the time (288 objects at 16^3). ``score`` is 1.0
    or 0.0, and the detail ``family_margin`` is the distance to the nearest reference of
    another family less that to the nearest of the asked one (positive: recognised).

    Args:
        references_per_family: references drawn per family.
        reference_seed: their ``simkit.shapes.dataset`` seed (default 0: the shipped
            generator's training set; keep it apart from evaluation's held-out
            references, seed 777).
    """

    name = "family"
    uses_samples = True

    def __init__(self, *, references_per_family: int = 32, reference_seed: int = 0) -> None:
        if (
            isinstance(references_per_family, bool)
            or not isinstance(references_per_family, int)
            or references_per_family < 1
        ):
            raise ValueError(
                f"references_per_family must be a positive int, got {references_per_family!r}"
            )
        if (
            isinstance(reference_seed, bool)
            or not isinstance(reference_seed, int)
            or reference_seed < 0
        ):
            raise ValueError(f"reference_seed must be a non-negative int, got {reference_seed!r}")
        self.references_per_family = references_per_family
        self.reference_seed = reference_seed
        self._refs: dict[int, tuple[Any, list[str]]] = {}

    def _references(self, resolution: int) -> tuple[Any, list[str]]:
        if resolution not in self._refs:
            from generators.align.data import procedural_objects
            from simkit.shapes import FAMILIES

            self._refs[resolution] = procedural_objects(
                self.references_per_family, resolution, self.reference_seed, FAMILIES
            )
        return self._refs[resolution]

    def judge(
        self, meshes: Sequence[Mesh], *, conditions: Sequence[str], occupancy: Any
    ) -> list[Judgement]:
        if len(meshes) == 0:
            return []
        ref_occ, ref_names = self._references(int(occupancy.shape[-1]))
        margins = family_margins(occupancy, conditions, ref_occ, ref_names)
        out = []
        for condition, margin in zip(conditions, margins.tolist(), strict=True):
            if condition not in ref_names:
                out.append(Judgement.failed(f"no procedural references of family {condition!r}"))
            elif not math.isfinite(margin):
                out.append(Judgement.failed("empty object: no surface to compare"))
            else:
                ok = margin >= 0
                out.append(Judgement(passed=ok, score=float(ok), details={"family_margin": margin}))
        return out


def family_margins(
    occupancy: Any, conditions: Sequence[str], references: Any, names: Sequence[str]
) -> Any:
    """How clearly each grid is recognised as the family asked for: the distance to the
    nearest reference of another family less that to the nearest of ``conditions[i]``
    (voxel-surface Chamfer up to the upright turns); >= 0: recognised. NaN where the grid
    is empty or no reference is of that family.

    Args:
        occupancy: (n, R, R, R) grids; references: (m, R, R, R) grids, of family
            ``names[j]``.
    """
    import torch

    from simkit.geometry.metrics import pairwise_voxel_chamfer

    d = pairwise_voxel_chamfer(occupancy.cpu(), references.cpu(), upright_turns=True)
    out = torch.full((len(conditions),), math.nan, dtype=torch.float64)
    for i, condition in enumerate(conditions):
        same = torch.tensor([n == condition for n in names], dtype=torch.bool)
        if not bool(same.any()):
            continue
        own = float(d[i][same].min())
        other = float(d[i][~same].min()) if bool((~same).any()) else math.inf
        if math.isfinite(own):
            out[i] = other - own
    return out


class AllOf:
    """Passes what every one of ``rewards`` passes (score: the smallest; details merged).

    An object that one reward cannot judge is an error, unless another already failed it.
    """

    def __init__(self, *rewards: Reward) -> None:
        if not rewards:
            raise ValueError("AllOf needs at least one reward")
        for r in rewards:
            if not isinstance(r, Reward):
                raise TypeError(f"not a Reward: {r!r}")
        self.rewards = rewards
        self.name = "+".join(r.name for r in rewards)
        self.uses_samples = any(getattr(r, "uses_samples", False) for r in rewards)

    def judge(
        self,
        meshes: Sequence[Mesh],
        *,
        conditions: Sequence[str] | None = None,
        occupancy: Any = None,
    ) -> list[Judgement]:
        parts = [judge(r, meshes, conditions=conditions, occupancy=occupancy) for r in self.rewards]
        out = []
        for js in zip(*parts, strict=True):
            if any(j.passed is False for j in js):
                passed: bool | None = False
            elif any(j.passed is None for j in js):
                out.append(
                    Judgement.failed(
                        "; ".join(j.error or "not judged" for j in js if j.passed is None)
                    )
                )
                continue
            else:
                passed = True
            scores = [j.score for j in js if j.score is not None]
            details: dict[str, float | None] = {}
            for r, j in zip(self.rewards, js, strict=True):
                details.update(j.details)
                details[f"{r.name}_passed"] = None if j.passed is None else float(j.passed)
            out.append(
                Judgement(passed=passed, score=min(scores) if scores else None, details=details)
            )
        return out


REWARDS = ("stability", "family", "stability+family")


def as_reward(
    reward: Reward | Callable[[Mesh], bool | float] | str | None,
    *,
    seed: int = 0,
    workers: int | None = None,
    backend: str = "process",
) -> Reward:
    """A :class:`Reward` as it is, a bare callable wrapped in :class:`CallableReward`,
    None as the default :class:`StabilityReward` (PyBullet seeded with ``seed``,
    simulating on ``workers`` with ``backend``), and a name from ``REWARDS``
    ("stability", "family", "stability+family": :class:`AllOf` the two) as that reward
    with its defaults."""
    if reward is None or reward == "stability":
        from simkit.physics import StabilityConfig

        return StabilityReward(StabilityConfig(seed=seed), workers=workers, backend=backend)
    if isinstance(reward, str):
        if reward == "family":
            return FamilyReward()
        if reward == "stability+family":
            return AllOf(
                as_reward(None, seed=seed, workers=workers, backend=backend), FamilyReward()
            )
        raise ValueError(f"unknown reward {reward!r}; known: {', '.join(REWARDS)}")
    if isinstance(reward, Reward):
        return reward
    if callable(reward):
        return CallableReward(reward)
    raise TypeError(f"reward must be a Reward or a callable mesh -> bool | float, got {reward!r}")
