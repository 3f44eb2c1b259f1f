"""Training data from a collection: DPO pairs and class-balanced labelled singles."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from generators.align.collect import Collection, SampleRecord
from generators.align.reward import Reward, judge
from simkit.io import write_json

__all__ = [
    "FRAGMENTS",
    "PreferencePairs",
    "balanced_singles",
    "preference_pairs",
    "passing",
    "procedural_objects",
    "reward_fingerprint",
    "split_by_verdict",
]

# What becomes of a sample that did not come out as one solid (see split_by_verdict).
FRAGMENTS = ("drop", "piece", "fail")


@dataclass(frozen=True)
class PreferencePairs:
    """Index pairs into a collection: ``winners[i]`` passes (stands), ``losers[i]`` fails
    (falls), same condition.

    Attributes:
        winners, losers: (P,) int64 indices.
        dropped: conditions left out because all their judged samples stand or all fall.
    """

    winners: Tensor
    losers: Tensor
    dropped: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.winners.shape[0])


def split_by_verdict(
    records: list[SampleRecord], fragments: str = "drop"
) -> dict[str, tuple[list[int], list[int]]]:
    """(passing, failing) indices per condition.

    A sample that did not come out as one solid was judged as its largest piece.
    ``fragments`` says what it is for training: "drop" leaves it out; "piece" keeps it
    as that piece with the piece's verdict; "fail" makes it a failure whatever the piece
    did (the reward becomes "passes and is one solid"; train on every piece, the
    collection's ``raw``, so that the model learns away from fragmenting).
    """
    if fragments not in FRAGMENTS:
        raise ValueError(f"fragments must be one of {FRAGMENTS}, got {fragments!r}")
    groups: dict[str, tuple[list[int], list[int]]] = defaultdict(lambda: ([], []))
    for r in records:
        if r.passed is None or (fragments == "drop" and not r.valid):
            continue  # unjudged (empty), or not one solid and dropped
        passed = r.passed and (r.valid or fragments == "piece")
        groups[r.condition][0 if passed else 1].append(r.index)
    return dict(groups)


def preference_pairs(
    collection: Collection,
    pairs_per_condition: int | None = None,
    seed: int = 0,
    fragments: str = "drop",
) -> PreferencePairs:
    """Pair standing with falling samples of the same condition (DSO drops conditions
    whose samples all stand or all fall: they carry no preference).

    Each condition gives ``pairs_per_condition`` pairs drawn at random with replacement
    (default: as many as its smaller side, every sample of that side used once).
    ``fragments``: what a sample that was not one solid counts as ("drop", "piece",
    "fail"; see :func:`split_by_verdict`).
    """
    g = torch.Generator().manual_seed(seed)
    winners, losers, dropped = [], [], []
    for condition, (stand, fall) in sorted(split_by_verdict(collection.records, fragments).items()):
        if not stand or not fall:
            dropped.append(condition)
            continue
        n = pairs_per_condition or min(len(stand), len(fall))
        s, f = torch.tensor(stand), torch.tensor(fall)
        if pairs_per_condition is None:
            winners.append(s[torch.randperm(len(s), generator=g)[:n]])
            losers.append(f[torch.randperm(len(f), generator=g)[:n]])
        else:
            winners.append(s[torch.randint(len(s), (n,), generator=g)])
            losers.append(f[torch.randint(len(f), (n,), generator=g)])
    empty = torch.zeros(0, dtype=torch.long)
    return PreferencePairs(
        winners=torch.cat(winners) if winners else empty,
        losers=torch.cat(losers) if losers else empty,
        dropped=tuple(dropped),
    )


def balanced_singles(
    collection: Collection, seed: int = 0, fragments: str = "drop"
) -> tuple[Tensor, Tensor]:
    """Labelled samples, class-balanced: within each condition as many passing as failing
    (the larger side subsampled), so that no condition is only pushed away from (DRO's
    loser term is unbounded: a family whose samples all fall would be trained out of
    existence); conditions without both outcomes are dropped, as for pairs. Returns
    indices (M,) int64 and ``stands`` (M,) bool, shuffled. For DRO and KTO.
    ``fragments`` as in :func:`preference_pairs`."""
    g = torch.Generator().manual_seed(seed)
    stand: list[Tensor] = []
    fall: list[Tensor] = []
    for _, (s, f) in sorted(split_by_verdict(collection.records, fragments).items()):
        n = min(len(s), len(f))
        stand.append(torch.tensor(s, dtype=torch.long)[torch.randperm(len(s), generator=g)[:n]])
        fall.append(torch.tensor(f, dtype=torch.long)[torch.randperm(len(f), generator=g)[:n]])
    n = sum(len(t) for t in stand)
    if n == 0:
        raise ValueError(
            "need a condition with both passing and failing samples, got none "
            f"({len(collection.records)} samples)"
        )
    idx = torch.cat([*stand, *fall])
    labels = torch.cat([torch.ones(n, dtype=torch.bool), torch.zeros(n, dtype=torch.bool)])
    order = torch.randperm(2 * n, generator=g)
    return idx[order], labels[order]


def procedural_objects(
    n_per_family: int, resolution: int, seed: int, families: Sequence[str]
) -> tuple[Tensor, list[str]]:
    """``n_per_family`` procedural objects of each of ``families`` (:mod:`simkit.shapes`),
    voxelised at ``resolution`` with diagonal contacts bridged, as collections store
    samples: (n, R, R, R) bool occupancy and each object's family.

    The objects are those of ``simkit.shapes.dataset(n_per_family * len(FAMILIES),
    resolution, seed)`` in the given families, so a set does not depend on which families
    are asked for (a held-out reference set stays the same set).
    """
    from simkit.geometry import VoxelGrid
    from simkit.shapes import FAMILIES, dataset

    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise ValueError(f"not procedural families: {unknown}; known: {FAMILIES}")
    data = dataset(n_per_family * len(FAMILIES), resolution, seed=seed)
    occ = (data.voxels > 0.5).reshape(-1, resolution, resolution, resolution)
    occ = VoxelGrid(occ, (0.0, 0.0, 0.0), 1 / resolution).bridge_diagonals().occupancy
    names = [FAMILIES[i] for i in data.labels.tolist()]
    keep = [i for i, f in enumerate(names) if f in families]
    return occ[keep], [names[i] for i in keep]


def reward_fingerprint(reward: Reward) -> dict[str, Any] | None:
    """What a verdict of ``reward`` depends on, as JSON, for caching (None: unknown).

    Only :class:`~generators.align.reward.StabilityReward` is fingerprinted: its verdict
    is a function of the mesh and its :class:`~simkit.physics.StabilityConfig`. A user's
    reward may depend on anything, so its verdicts are never cached.
    """
    from generators.align.reward import StabilityReward

    if type(reward) is not StabilityReward:
        return None
    return {"reward": reward.name, "config": dataclasses.asdict(reward.config)}


def passing(
    occupancy: Tensor,
    reward: Reward,
    *,
    conditions: Sequence[str] | None = None,
    cache: str | os.PathLike[str] | None = None,
) -> list[int]:
    """Indices of the (n, R, R, R) grids (in the unit cube) whose surface mesh passes
    ``reward``.

    Args:
        conditions: each grid's family, for a reward that judges against it
            (``uses_samples``, e.g. :class:`~generators.align.reward.FamilyReward`).
        cache: a folder where the indices are kept, keyed by the grids' bytes and the
            reward's settings (:func:`reward_fingerprint`), so that a second call with the
            same grids and reward judges nothing. Verdicts with an error (a crashed or
            timed-out simulation) are not cached. Ignored for rewards that cannot be
            fingerprinted.
    """
    from simkit.geometry import VoxelGrid

    path = None
    fingerprint = reward_fingerprint(reward) if cache is not None else None
    if fingerprint is not None:
        h = hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode())
        h.update(str(tuple(occupancy.shape)).encode())
        h.update(occupancy.bool().cpu().contiguous().numpy().tobytes())
        path = Path(cache) / f"passing-{h.hexdigest()[:24]}.json"
        if path.exists():
            return [int(i) for i in json.loads(path.read_text())["passed"]]
    res = occupancy.shape[-1]
    grids = VoxelGrid(occupancy, (0.0, 0.0, 0.0), 1 / res)
    verdicts = judge(
        reward,
        [grids[i].to_mesh()[0] for i in range(occupancy.shape[0])],
        conditions=conditions,
        occupancy=occupancy,
    )
    passed = [i for i, v in enumerate(verdicts) if v.passed]
    if path is not None and not any(v.error is not None for v in verdicts):
        write_json(path, {"n": len(verdicts), **fingerprint, "passed": passed})
    return passed
