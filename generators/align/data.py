"""Training data from a collection: DPO pairs and class-balanced labelled singles."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import torch
from torch import Tensor

from generators.align.collect import Collection, SampleRecord

__all__ = ["PreferencePairs", "balanced_singles", "preference_pairs"]


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


def _judged(
    records: list[SampleRecord], valid_only: bool = True
) -> dict[str, tuple[list[int], list[int]]]:
    """(standing, falling) indices per condition. A sample that was not one solid was
    judged (and is stored) as its largest piece; ``valid_only`` leaves it out."""
    groups: dict[str, tuple[list[int], list[int]]] = defaultdict(lambda: ([], []))
    for r in records:
        if r.passed is None or (valid_only and not r.valid):
            continue  # unjudged (empty), or not one solid when only solids count
        groups[r.condition][0 if r.passed else 1].append(r.index)
    return dict(groups)


def preference_pairs(
    collection: Collection,
    pairs_per_condition: int | None = None,
    seed: int = 0,
    valid_only: bool = True,
) -> PreferencePairs:
    """Pair standing with falling samples of the same condition (DSO drops conditions
    whose samples all stand or all fall: they carry no preference).

    Each condition gives ``pairs_per_condition`` pairs drawn at random with replacement
    (default: as many as its smaller side, every sample of that side used once).
    ``valid_only=False`` also uses samples that were not one solid, as the largest
    piece that was judged and stored.
    """
    g = torch.Generator().manual_seed(seed)
    winners, losers, dropped = [], [], []
    for condition, (stand, fall) in sorted(_judged(collection.records, valid_only).items()):
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
    collection: Collection, seed: int = 0, valid_only: bool = True
) -> tuple[Tensor, Tensor]:
    """Labelled samples with as many standing as falling (the larger side subsampled):
    indices (M,) int64 and ``stands`` (M,) bool, shuffled. For DRO and KTO.
    ``valid_only`` as in :func:`preference_pairs`."""
    g = torch.Generator().manual_seed(seed)
    groups = _judged(collection.records, valid_only).values()
    stand = [i for s, _ in groups for i in s]
    fall = [i for _, f in groups for i in f]
    n = min(len(stand), len(fall))
    if n == 0:
        raise ValueError(
            f"need both standing and falling samples, got {len(stand)} and {len(fall)}"
        )
    s = torch.tensor(stand)[torch.randperm(len(stand), generator=g)[:n]]
    f = torch.tensor(fall)[torch.randperm(len(fall), generator=g)[:n]]
    idx = torch.cat([s, f])
    labels = torch.cat([torch.ones(n, dtype=torch.bool), torch.zeros(n, dtype=torch.bool)])
    order = torch.randperm(2 * n, generator=g)
    return idx[order], labels[order]
