"""Simulation-feedback fine-tuning (DSO): objectives for now; collection and the loop follow."""

from generators.align.objectives import (
    ObjectiveOutput,
    dpo_loss,
    dro_loss,
    kto_loss,
    per_sample_losses,
    sft_loss,
)

__all__ = ["ObjectiveOutput", "dpo_loss", "dro_loss", "kto_loss", "per_sample_losses", "sft_loss"]
