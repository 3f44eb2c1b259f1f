"""Simulation-feedback fine-tuning (DSO): rewards, collection, pairing, objectives and the loop."""

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
    anchor_loss,
    dpo_loss,
    dro_loss,
    kto_loss,
    per_sample_losses,
    sft_loss,
)
from generators.align.reward import (
    AllOf,
    CallableReward,
    FamilyReward,
    Judgement,
    Reward,
    StabilityReward,
    as_reward,
)
from generators.align.soup import average_pipelines, save_soup
from generators.align.trainer import AlignConfig, AlignResult, SimFeedbackTrainer

__all__ = [
    "AlignConfig",
    "AlignResult",
    "AllOf",
    "CallableReward",
    "CollectConfig",
    "Collection",
    "FamilyReward",
    "Judgement",
    "ObjectiveOutput",
    "PreferencePairs",
    "Reward",
    "SampleRecord",
    "SimFeedbackTrainer",
    "StabilityReward",
    "anchor_loss",
    "average_pipelines",
    "as_reward",
    "balanced_singles",
    "collect",
    "dpo_loss",
    "dro_loss",
    "kto_loss",
    "load_collection",
    "per_sample_losses",
    "preference_pairs",
    "save_soup",
    "sft_loss",
]
