"""Simulation-feedback fine-tuning (DSO): collection, pairing and objectives (the loop follows)."""

from generators.align.collect import (
    CollectConfig,
    Collection,
    SampleRecord,
    collect,
    load_collection,
)
from generators.align.data import PreferencePairs, balanced_singles, preference_pairs
from generators.align.objectives import (
    ObjectiveOutput,
    dpo_loss,
    dro_loss,
    kto_loss,
    per_sample_losses,
    sft_loss,
)

__all__ = [
    "CollectConfig",
    "Collection",
    "ObjectiveOutput",
    "PreferencePairs",
    "SampleRecord",
    "balanced_singles",
    "collect",
    "dpo_loss",
    "dro_loss",
    "kto_loss",
    "load_collection",
    "per_sample_losses",
    "preference_pairs",
    "sft_loss",
]
