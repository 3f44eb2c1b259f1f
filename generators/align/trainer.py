"""The simulation-feedback fine-tuning loop (DSO): collect, judge, fine-tune, repeat.

:class:`SimFeedbackTrainer` runs rounds of

1. **collect**: K samples per condition from the current model (EMA weights), judged by
   a reward (:mod:`generators.align.reward`; the simulator's stability verdict by
   default), stored in ``out/round_NN/collection`` (:func:`~generators.align.collect`);
2. **data**: DPO pairs (one passing, one failing sample of a condition) or
   class-balanced labelled singles for DRO / KTO, all passing samples for SFT
   (:mod:`generators.align.data`);
3. **fine-tune**: ``steps_per_round`` AdamW steps on the objective
   (:mod:`generators.align.objectives`) with gradient clipping and an EMA of the trained
   weights, through LoRA adapters (peft) on the denoiser's convolutions and linear
   layers, or on every weight (``lora_rank=None``);
4. **export**: the EMA weights, LoRA merged into the base layers, saved as a plain
   :class:`~generators.pipeline.ShapePipeline` in ``out/round_NN/pipeline`` (and
   ``out/pipeline`` after the last round), which ``simkit generate --checkpoint``
   loads like any other.

One round is DSO's offline recipe; more rounds (collect again from the fine-tuned
model) are the online variant. The reference of DPO / KTO is the model the run started
from, in every round.

Everything on disk is written atomically. ``out/train_state.pt`` (plain tensors and
numbers, loaded with ``weights_only=True``) holds the trained weights, the EMA, the
optimiser and the position; each step draws its batch and noise from a generator seeded
by (seed, round, step), so an interrupted run resumed from its last checkpoint ends with
the same weights as an uninterrupted one.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from generators.align.collect import CollectConfig, Collection, check_conditions, collect
from generators.align.data import (
    FRAGMENTS,
    balanced_singles,
    passing,
    preference_pairs,
    procedural_objects,
    split_by_verdict,
)
from generators.align.objectives import anchor_loss, dpo_loss, dro_loss, kto_loss, sft_loss
from generators.align.reward import Reward, as_reward
from generators.models import Denoiser
from generators.pfgmpp import sample_training_sigma
from simkit.io import atomic_directory, atomic_write, write_json

__all__ = ["AlignConfig", "AlignResult", "SimFeedbackTrainer"]

log = logging.getLogger(__name__)

OBJECTIVES = ("dpo", "dro", "kto", "sft")
_DEFAULT_BETA = {"dpo": 500.0, "kto": 50.0}
_STATE = "train_state.pt"
_LORA_TARGETS = (nn.Conv3d, nn.Conv2d, nn.Conv1d, nn.Linear)


@dataclass(frozen=True)
class AlignConfig:
    """Settings of :class:`SimFeedbackTrainer`.

    Attributes:
        out: run folder (collections, checkpoints, exported pipelines, ``align.json``).
        objective: "dpo", "dro", "kto" or "sft" (:mod:`generators.align.objectives`).
        rounds: collect / fine-tune rounds (1: DSO's offline recipe).
        samples_per_condition: K, samples drawn per condition and round.
        conditions: family names (None: all the pipeline's families).
        sample_steps: solver steps when collecting.
        guidance_scale: classifier-free guidance weight when collecting (default 2, as
            ``simkit generate``).
        steps_per_round: optimiser steps per round.
        batch_size: pairs (DPO) or samples (others) per step.
        lr: AdamW learning rate (constant).
        weight_decay: AdamW weight decay.
        grad_clip: gradient-norm clip (0: none).
        beta: inverse temperature of DPO / KTO (None: 500 for DPO, as DSO; 50 for KTO).
        lora_rank: LoRA rank on the denoiser's convolutions and linear layers; None
            fine-tunes every weight.
        lora_alpha: LoRA scale numerator (None: the rank, i.e. scale 1).
        ema_decay: EMA decay per step (ramped as min(decay, (1 + s) / (10 + s))); 0
            exports the last weights.
        checkpoint_every: steps between two training checkpoints.
        p_mean, p_std, sigma_uniform: the law of the training noise levels, as the
            generator's own training (``GeneratorTrainConfig``): ln sigma ~ N(p_mean,
            p_std^2), a ``sigma_uniform`` share log-uniform over the scheduler's
            [sigma_min, sigma_max] (:func:`generators.pfgmpp.sample_training_sigma`).
        thin_weight: extra loss weight on thin parts (a leg, a pole) and the voxels beside
            them (:func:`generators.train.thin_weights`; 0: the plain loss).
        class_dropout: share of training items whose label is replaced by the null class,
            so that the unconditional prediction, which classifier-free guidance
            subtracts, is fine-tuned with the conditional one (0: never).
        anchor: weight of a KL-style penalty on the distance between the trained
            denoiser and the reference on the batch's inputs
            (:func:`~generators.align.objectives.anchor_loss`; 0: none). It costs a
            second forward and backward pass per step.
        anchor_p_mean: where the anchor looks: None, at the objective's noise levels;
            a number, at its own draws ln sigma ~ N(anchor_p_mean, p_std^2) (with
            -1.2, EDM's law, the low levels where surface detail is decided, while the
            objective's law is moved up to the levels where shape is decided).
        sigma_split: None, or a noise level s: the objective trains only at sigma >= s
            and the anchor (when ``anchor`` > 0) only below s, both their laws
            conditioned on that side (:func:`generators.pfgmpp.sample_training_sigma`'s
            ``bounds``). The sampler decides whether an object stands at the high levels
            and its surface (where fine-tunes leave specks) at the low ones
            (``scripts/bench/dso_specks.py``): with a split the fine-tune changes the
            first and is held to the reference on the second.
        fragments: what a sample that did not come out as one solid is for training:
            "drop" (default) leaves it out; "piece" keeps its largest piece (what the
            reward judged and ``simkit generate`` returns) with that piece's verdict,
            two to three times the data from the same draws; "fail" counts it as a
            failure, trained on with all its pieces, so the reward becomes "passes and
            is one solid" and fragmenting cannot be a way to pass.
        replay: how many procedural training objects per family
            (``simkit.shapes.dataset`` at seed ``replay_seed``: with 0, the training set
            of shapes-base) to judge by the reward once per run; those that pass join
            every round's pool as passing singles beside the round's own samples.
            Prior preservation (as in DreamBooth) aimed by the reward: the fine-tune is
            pulled towards the data that passes, not only towards the model's own
            passing samples, whose flaws it would otherwise learn. 0: none. Needs
            procedural families, and an objective that trains on singles (sft, kto,
            dro; DPO's pairs have no place for a lone winner).
        replay_seed: the seed of that set (keep it apart from evaluation's references,
            777 and 778).
        verdict_cache: a folder where the replay set's verdicts are kept (keyed by the
            objects and the reward's settings; ``generators.align.data.passing``), so that
            runs sharing it judge the set once. None: judge it once a run.
        balance_conditions: draw each step's items condition-uniformly (each family
            equally often, whatever its share of the round's data) instead of
            item-uniformly. The pool of passing samples follows the pass rates, so
            without it the families that already pass most (mugs) take most of the
            steps and those that fail most (chairs, stools) the fewest.
        balance_labels: draw each step's items so that passing and failing ones come
            equally often (kto, dro), whatever their counts in the pool. The round's own
            singles are balanced already; replay adds passing ones only, and without this
            they thin out the failing half, the half that pushes the model away from what
            falls (KTO with replay 100 stood 81 %, chairs 32 %, against 87 % and 75 %
            without replay). With ``balance_conditions`` too, an item's weight is the
            product of the two.
        seed: seeds the collection (round r draws from seed + r * 1,000,003) and each
            step's batch and noise.
        workers, backend: where the default stability reward simulates.
        save_dtype: "float32" or "float16", the exported pipelines' weights (float16
            halves the files and loads back as float32, as the shipped checkpoints).
            Export only: a finished run re-run with another value re-exports.
    """

    out: str | os.PathLike[str]
    objective: str = "dro"
    rounds: int = 1
    samples_per_condition: int = 16
    conditions: tuple[str, ...] | None = None
    sample_steps: int = 18
    guidance_scale: float = 2.0
    steps_per_round: int = 200
    batch_size: int = 8
    lr: float = 1e-4
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    beta: float | None = None
    lora_rank: int | None = 8
    lora_alpha: float | None = None
    ema_decay: float = 0.99
    checkpoint_every: int = 50
    p_mean: float = -1.2
    p_std: float = 1.2
    sigma_uniform: float = 0.0
    thin_weight: float = 0.0
    class_dropout: float = 0.0
    anchor: float = 0.0
    anchor_p_mean: float | None = None
    sigma_split: float | None = None
    fragments: str = "drop"
    replay: int = 0
    replay_seed: int = 0
    verdict_cache: str | os.PathLike[str] | None = None
    balance_conditions: bool = False
    balance_labels: bool = False
    seed: int = 0
    workers: int | None = None
    backend: str = "process"
    save_dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        for name in (
            "rounds", "samples_per_condition", "sample_steps", "steps_per_round",
            "batch_size", "checkpoint_every",
        ):  # fmt: skip
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.lora_rank is not None and (
            isinstance(self.lora_rank, bool) or not isinstance(self.lora_rank, int)
            or self.lora_rank < 1
        ):  # fmt: skip
            raise ValueError(f"lora_rank must be a positive int or None, got {self.lora_rank!r}")
        for name in ("lr", "beta", "lora_alpha"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and value > 0):
                raise ValueError(f"{name} must be positive, got {value!r}")
        for name in ("weight_decay", "grad_clip", "thin_weight", "anchor"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        for name in ("p_mean", "anchor_p_mean"):
            value = getattr(self, name)
            if value is None and name == "anchor_p_mean":
                continue
            if not (isinstance(value, (int, float)) and math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        if self.sigma_split is not None and not (
            isinstance(self.sigma_split, (int, float)) and 0 < self.sigma_split < math.inf
        ):
            raise ValueError(
                f"sigma_split must be a positive number or None, got {self.sigma_split!r}"
            )
        if not (isinstance(self.p_std, (int, float)) and 0 < self.p_std < math.inf):
            raise ValueError(f"p_std must be positive, got {self.p_std!r}")
        for name in ("sigma_uniform", "class_dropout"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0 <= value <= 1):
                raise ValueError(f"{name} must be in [0, 1], got {value!r}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay!r}")
        if not (isinstance(self.guidance_scale, (int, float)) and self.guidance_scale >= 0):
            raise ValueError(f"guidance_scale must be >= 0, got {self.guidance_scale!r}")
        for name in ("seed", "replay", "replay_seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative int, got {value!r}")
        if self.replay and self.objective == "dpo":
            raise ValueError(
                "replay adds passing singles, and objective 'dpo' trains on pairs; "
                "use sft, kto or dro"
            )
        for name in ("balance_conditions", "balance_labels"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise ValueError(f"{name} must be a bool, got {value!r}")
        if self.balance_labels and self.objective not in ("kto", "dro"):
            raise ValueError(
                f"balance_labels balances passing against failing singles, and objective "
                f"{self.objective!r} has none of the second kind; use kto or dro"
            )
        if self.save_dtype not in ("float32", "float16"):
            raise ValueError(f"save_dtype must be 'float32' or 'float16', got {self.save_dtype!r}")
        if self.fragments not in FRAGMENTS:
            raise ValueError(f"fragments must be one of {FRAGMENTS}, got {self.fragments!r}")
        if isinstance(self.conditions, list):
            object.__setattr__(self, "conditions", tuple(self.conditions))

    @property
    def effective_beta(self) -> float | None:
        return self.beta if self.beta is not None else _DEFAULT_BETA.get(self.objective)

    def settings(self) -> dict[str, Any]:
        """What must match for a run to be resumed: all but out/workers/backend/save_dtype,
        verdict_cache, and rounds (a run may be extended by more rounds)."""
        d = asdict(self)
        for key in ("out", "workers", "backend", "save_dtype", "verdict_cache", "rounds"):
            d.pop(key)
        d["conditions"] = list(d["conditions"]) if d["conditions"] else None
        return d


@dataclass
class AlignResult:
    """What a run did.

    Attributes:
        pipeline_dir: the exported pipeline of the last round.
        rounds: one dict per round: the collection's pass rate, the training data size
            (pairs or samples; 0 when the round had nothing to learn from) and the mean
            loss / metrics over its last steps.
        history: (global step, loss) for every step.
        seconds: wall time of this call.
    """

    pipeline_dir: Path
    rounds: list[dict[str, Any]] = field(default_factory=list)
    history: list[tuple[int, float]] = field(default_factory=list)
    seconds: float = 0.0


def condition_weights(labels: Tensor) -> Tensor:
    """Per-item drawing weights under which every condition present is drawn equally
    often: 1 / (its condition's item count), as float64. ``labels``: (n,) int."""
    if labels.ndim != 1 or labels.numel() == 0:
        raise ValueError(f"labels must be a non-empty 1-D tensor, got shape {tuple(labels.shape)}")
    _, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    return 1.0 / counts[inverse].double()


def item_weights(conditions: Tensor | None, passed: Tensor | None) -> Tensor:
    """Per-item drawing weights that give every condition (``conditions``, (n,) int) and
    both verdicts (``passed``, (n,) bool) equal shares of the draws; either may be None
    (not balanced). With both, an item's weight is the product of the two, which keeps
    each balance exact when verdicts are spread alike across conditions and close to it
    otherwise. float64, not normalised."""
    if conditions is None and passed is None:
        raise ValueError("item_weights needs conditions, passed or both")
    weights = None if conditions is None else condition_weights(conditions)
    if passed is not None:
        if passed.dtype != torch.bool:
            raise ValueError(f"passed must be a bool tensor, got {passed.dtype}")
        by_verdict = condition_weights(passed.long())
        if weights is not None and by_verdict.shape != weights.shape:
            raise ValueError(
                f"conditions and passed differ in shape: {tuple(weights.shape)} against "
                f"{tuple(by_verdict.shape)}"
            )
        weights = by_verdict if weights is None else weights * by_verdict
    return weights


def _lora_targets(model: nn.Module) -> list[str]:
    return sorted(n for n, m in model.named_modules() if isinstance(m, _LORA_TARGETS) and n)


def _merged_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """The base network's state dict with every LoRA update folded into its weights.

    W' = W + scaling * B A, with A and B the adapter's weights (for a convolution, A has
    the base kernel and B is 1 x ... x 1, so B A contracts over the rank only). Written
    here rather than with peft's ``merge()``: peft 0.21 mistakes a 1 x 1 x 1 Conv3d
    (the U-Net's attention and skip convolutions) for a 2D 1 x 1 one and fails.
    """
    from peft.tuners.lora import LoraLayer

    deltas: dict[str, Tensor] = {}
    for name, module in model.named_modules():
        if not isinstance(module, LoraLayer):
            continue
        base = module.get_base_layer()
        if getattr(base, "groups", 1) != 1:
            raise NotImplementedError(f"LoRA merge of grouped convolution {name}")
        delta = 0
        for adapter in module.lora_A:
            a = module.lora_A[adapter].weight  # (r, in) or (r, in, *kernel)
            b = module.lora_B[adapter].weight  # (out, r) or (out, r, 1, ..., 1)
            delta = delta + module.scaling[adapter] * torch.einsum(
                "or,ri...->oi...", b.flatten(1), a
            )
        deltas[f"{name}.base_layer.weight"] = delta
    out = {}
    for key, value in model.state_dict().items():
        if "lora_" in key:
            continue
        if key in deltas:
            value = value + deltas[key].to(value)
        out[key.replace(".base_layer.", ".")] = value
    return out


class SimFeedbackTrainer:
    """Fine-tune a :class:`~generators.pipeline.ShapePipeline` on a reward's verdicts.

    Example::

        pipe = load_pipeline("shapes-base")
        trainer = SimFeedbackTrainer(pipe, AlignConfig(out="runs/dso", objective="dro"))
        result = trainer.run()
        # result.pipeline_dir loads with load_pipeline(...) / simkit generate --checkpoint

    Args:
        pipeline: the model to start from (its scheduler's D and sigma_data are used;
            the pipeline object itself is not modified).
        config: the run's settings.
        reward: a :class:`~generators.align.reward.Reward`, a callable mesh -> bool |
            float, or a name: "stability" (None, the default:
            :class:`~generators.align.reward.StabilityReward`, simulated on
            ``config.workers`` / ``config.backend``) or "stability+family" (stands and is
            recognised as the family asked for).
        device: where to fine-tune (default: the pipeline's device).
    """

    def __init__(
        self,
        pipeline: Any,
        config: AlignConfig,
        reward: Reward | Any = None,
        *,
        device: str | torch.device | None = None,
    ) -> None:

        if not isinstance(config, AlignConfig):
            raise TypeError(f"config must be an AlignConfig, got {type(config).__name__}")
        if not pipeline.families:
            raise ValueError("the pipeline is unconditional: fine-tuning needs families")
        check_conditions(config.conditions or (), pipeline.families)  # before any work
        if config.replay:
            from simkit.shapes import FAMILIES

            other = [f for f in (config.conditions or pipeline.families) if f not in FAMILIES]
            if other:
                raise ValueError(f"replay needs procedural families; {other} are not")
        self.config = config
        self.reward = as_reward(
            reward, seed=config.seed, workers=config.workers, backend=config.backend
        )
        self.base = pipeline
        self.device = torch.device(device) if device is not None else pipeline.unet.device
        sched = pipeline.scheduler.config
        self.D = sched.D
        self.sigma_data = float(sched.sigma_data)
        self.sigma_range = (float(sched.sigma_min), float(sched.sigma_max))
        self.null_label = int(pipeline.unet.config.num_classes)
        self.out = Path(config.out)
        self._replay: tuple[Tensor, Tensor] | None = None  # config.replay's pool, once judged

        # The reference (and the start) is a float32 copy of the given network.
        # (.float(), not .to(dtype): diffusers' ModelMixin.to warns on every dtype cast.)
        self.reference = copy.deepcopy(pipeline.unet).to(self.device).float()
        self.reference.requires_grad_(False).eval()
        model = copy.deepcopy(self.reference)
        if config.lora_rank is not None:
            from peft import LoraConfig, inject_adapter_in_model

            lora = LoraConfig(
                r=config.lora_rank,
                lora_alpha=config.lora_alpha or config.lora_rank,
                target_modules=_lora_targets(model),
                lora_dropout=0.0,
                init_lora_weights=True,  # B = 0: training starts at the reference exactly
            )
            # LoRA's A starts random (B at zero): seeded, so that a run is reproducible.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(config.seed)
                model = inject_adapter_in_model(lora, model)
            for name, p in model.named_parameters():
                p.requires_grad_("lora_" in name)
        else:
            model.requires_grad_(True)
        self.model = model.train()
        self.trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
        self.ema = {n: p.detach().clone() for n, p in self.trainable.items()}
        self.optimizer = torch.optim.AdamW(
            list(self.trainable.values()), lr=config.lr, weight_decay=config.weight_decay
        )

    # ------------------------------------------------------------------ state

    def _state(self, round_: int, step: int, history: list, rounds: list) -> dict[str, Any]:
        return {
            "settings": self.config.settings(),
            "reward": self.reward.name,
            "round": round_,
            "step": step,
            "trainable": {n: p.detach().cpu() for n, p in self.trainable.items()},
            "ema": {n: t.cpu() for n, t in self.ema.items()},
            "optimizer": self.optimizer.state_dict(),
            "history": [list(h) for h in history],
            "rounds": json.dumps(rounds),
        }

    def _save(self, state: dict[str, Any]) -> None:
        with atomic_write(self.out / _STATE) as fh:
            torch.save(state, fh)

    def _load(self) -> dict[str, Any] | None:
        path = self.out / _STATE
        if not path.is_file():
            return None
        state = torch.load(path, map_location="cpu", weights_only=True)
        saved = {k: v for k, v in state["settings"].items() if k != "rounds"}  # older runs'
        saved.setdefault("balance_conditions", False)  # runs from before the settings
        saved.setdefault("sigma_split", None)
        saved.setdefault("balance_labels", False)
        if saved != self.config.settings() or state["reward"] != self.reward.name:
            raise ValueError(
                f"{self.out} holds a run with other settings ({state['settings']}, reward "
                f"{state['reward']!r}); use another folder"
            )
        with torch.no_grad():
            for n, p in self.trainable.items():
                p.copy_(state["trainable"][n])
            for n in self.ema:
                self.ema[n].copy_(state["ema"][n])
        self.optimizer.load_state_dict(state["optimizer"])
        return state

    # ------------------------------------------------------------------ pieces

    def _ema_model(self) -> nn.Module:
        """A copy of the model carrying the EMA weights (LoRA merged away)."""
        model = copy.deepcopy(self.model)
        named = dict(model.named_parameters())
        with torch.no_grad():
            for n, t in self.ema.items():
                named[n].copy_(t)
        if self.config.lora_rank is None:
            return model
        base = copy.deepcopy(self.reference)
        base.load_state_dict(_merged_state_dict(model))
        return base

    def _pipeline(self, unet: nn.Module) -> Any:
        from generators.pipeline import ShapePipeline

        pipe = ShapePipeline(
            unet=unet.eval(), scheduler=self.base.scheduler, families=list(self.base.families)
        )
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def _export(self, folder: Path) -> Path:
        unet = self._ema_model().to("cpu")
        if self.config.save_dtype == "float16":
            unet = unet.half()
        pipe = self._pipeline(unet)
        with atomic_directory(folder) as tmp:
            pipe.save_pretrained(tmp)
        return folder

    def _collect(self, round_: int, progress: bool) -> Collection:
        c = self.config
        unet = self.reference if round_ == 0 else self._ema_model()
        config = CollectConfig(
            out=self.out / f"round_{round_:02d}" / "collection",
            samples_per_condition=c.samples_per_condition,
            conditions=c.conditions,
            seed=c.seed + round_ * 1_000_003,
            steps=c.sample_steps,
            guidance_scale=c.guidance_scale,
            workers=c.workers,
            backend=c.backend,
        )
        return collect(self._pipeline(unet), config, self.reward, progress=progress)

    def _data(self, col: Collection) -> tuple[Tensor, ...] | None:
        """Index tensors of the round's training data (None: nothing to learn from)."""
        if self.config.objective == "dpo":
            pairs = preference_pairs(col, seed=self.config.seed, fragments=self.config.fragments)
            if pairs.dropped:
                log.info("conditions without both outcomes, dropped: %s", pairs.dropped)
            return (pairs.winners, pairs.losers) if len(pairs) else None
        if self.config.objective == "sft":
            groups = split_by_verdict(col.records, self.config.fragments).values()
            idx = sorted(i for passing, _ in groups for i in passing)
            if not idx:
                return None
            idx_t = torch.tensor(idx)
            return idx_t, torch.ones(len(idx), dtype=torch.bool)
        try:
            return balanced_singles(col, seed=self.config.seed, fragments=self.config.fragments)
        except ValueError as exc:
            log.warning("round has no balanced data: %s", exc)
            return None

    def _replay_pool(self) -> tuple[Tensor, Tensor]:
        """The procedural objects that pass the reward (``config.replay``), judged once a
        run: (n, R, R, R) occupancy and labels in the pipeline's label space."""
        if self._replay is None:
            c = self.config
            families = list(c.conditions or self.base.families)
            res = int(self.base.unet.config.resolution)
            occ, names = procedural_objects(c.replay, res, c.replay_seed, families)
            keep = passing(occ, self.reward, conditions=names, cache=c.verdict_cache)
            labels = torch.tensor(
                [self.base.families.index(names[i]) for i in keep], dtype=torch.long
            )
            log.info("replay: %d of %d procedural objects pass", len(keep), len(names))
            self._replay = (occ[keep], labels)
        return self._replay

    def _occupancy(self, col: Collection) -> Tensor:
        """What each sample is trained on: its largest solid, or with ``fragments="fail"``
        every piece (identical for one-solid samples)."""
        if self.config.fragments != "fail":
            return col.occupancy
        if col.raw is None:
            raise ValueError(
                "fragments='fail' trains on every piece of a sample, and this collection "
                "stores only the largest (it predates that); collect it again"
            )
        return col.raw

    def _step(
        self,
        data: tuple[Tensor, ...],
        x0_all: Tensor,
        labels: Tensor,
        g: torch.Generator,
        weights: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, float]]:
        c = self.config
        policy = Denoiser(self.model, self.sigma_data)
        reference = Denoiser(self.reference, self.sigma_data)
        n = data[0].shape[0]
        if weights is None:
            pick = torch.randint(n, (c.batch_size,), generator=g)
        else:
            pick = torch.multinomial(weights, c.batch_size, replacement=True, generator=g)
        rows = data[0][pick]  # DPO's winners (its losers share their condition), or singles
        # The generator's training law of sigma; the objective draws the noise after it.
        # (With the defaults this consumes g exactly as the objectives' own draw did.)
        sigma = sample_training_sigma(
            c.batch_size, p_mean=c.p_mean, p_std=c.p_std, uniform=c.sigma_uniform,
            sigma_range=self.sigma_range, bounds=(c.sigma_split, None), generator=g,
        ).to(self.device)  # fmt: skip
        y = labels[rows]
        if c.class_dropout > 0:
            drop = torch.rand(c.batch_size, generator=g) < c.class_dropout
            y = y.masked_fill(drop.to(self.device), self.null_label)
        kw: dict[str, Any] = {
            "D": self.D, "sigma_data": self.sigma_data, "generator": g, "sigma": sigma,
            "thin_weight": c.thin_weight, "class_labels": y,
        }  # fmt: skip
        x0 = x0_all[rows]
        if c.objective == "dpo":
            x_l = x0_all[data[1][pick]]
            out = dpo_loss(policy, reference, x0, x_l, beta=c.effective_beta, **kw)
        else:
            passed = data[1][pick].to(self.device)
            if c.objective == "dro":
                out = dro_loss(policy, x0, passed, **kw)
            elif c.objective == "kto":
                out = kto_loss(policy, reference, x0, passed, beta=c.effective_beta, **kw)
            else:
                out = sft_loss(policy, x0, passed, **kw)
        if c.anchor == 0:
            return out.loss, out.metrics
        # On the batch's samples (DPO: its winners), at the objective's noise levels or
        # its own, with noise drawn after the objective's (whose draws stay as without).
        kw.pop("thin_weight")
        if c.anchor_p_mean is not None or c.sigma_split is not None:
            kw["sigma"] = sample_training_sigma(
                c.batch_size, p_mean=c.p_mean if c.anchor_p_mean is None else c.anchor_p_mean,
                p_std=c.p_std, bounds=(None, c.sigma_split), generator=g,
            ).to(self.device)  # fmt: skip
        tie = anchor_loss(policy, reference, x0, **kw)
        return out.loss + c.anchor * tie.loss, {**out.metrics, **tie.metrics}

    # ------------------------------------------------------------------ the loop

    def run(self, rounds: int | None = None, *, progress: bool = True) -> AlignResult:
        """Run (or resume) the rounds; returns what was done.

        Args:
            rounds: overrides ``config.rounds`` (must match it when resuming a run made
                with another value only in that it may extend it).
            progress: show progress bars.
        """
        c = self.config
        total_rounds = c.rounds if rounds is None else int(rounds)
        if total_rounds < 1:
            raise ValueError(f"rounds must be a positive int, got {rounds!r}")
        start = time.perf_counter()
        self.out.mkdir(parents=True, exist_ok=True)
        state = self._load()
        round_, step = (0, 0) if state is None else (int(state["round"]), int(state["step"]))
        history: list[tuple[int, float]] = (
            [] if state is None else [(int(a), float(b)) for a, b in state["history"]]
        )
        round_log: list[dict[str, Any]] = [] if state is None else json.loads(state["rounds"])
        if state is not None:
            log.info("resuming %s at round %d, step %d", self.out, round_, step)

        folder = self.out / "pipeline"
        while round_ < total_rounds:
            col = self._collect(round_, progress)
            data = self._data(col)
            occupancy = self._occupancy(col)
            labels = torch.tensor([r.label for r in col.records], dtype=torch.long)
            if c.replay:
                extra_occ, extra_labels = self._replay_pool()
                extra = torch.arange(len(labels), len(labels) + len(extra_labels))
                yes = torch.ones(len(extra), dtype=torch.bool)
                if data is not None:
                    extra, yes = torch.cat([data[0], extra]), torch.cat([data[1], yes])
                data = (extra, yes) if len(extra) else None
                occupancy = torch.cat([occupancy, extra_occ.to(occupancy.dtype)])
                labels = torch.cat([labels, extra_labels])
            x0_all = (2.0 * occupancy.float() - 1.0).unsqueeze(1).to(self.device)
            labels = labels.to(self.device)
            size = 0 if data is None else int(data[0].shape[0])
            weights = None
            if data is not None and (c.balance_conditions or c.balance_labels):
                weights = item_weights(
                    labels[data[0]].cpu() if c.balance_conditions else None,
                    data[1] if c.balance_labels else None,
                )
            recent: list[dict[str, float]] = []
            if data is None:
                log.warning(
                    "round %d: no %s data (pass rate %.3f); no fine-tuning this round",
                    round_, c.objective, col.fraction_passed(),
                )  # fmt: skip
                step = c.steps_per_round
            bar = tqdm(
                total=c.steps_per_round, initial=step, desc=f"align round {round_}",
                disable=(not progress) or None,
            )  # fmt: skip
            while step < c.steps_per_round:
                g = torch.Generator().manual_seed((c.seed * 1_000_003 + round_) * 1_000_003 + step)
                loss, metrics = self._step(data, x0_all, labels, g, weights)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if c.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(list(self.trainable.values()), c.grad_clip)
                self.optimizer.step()
                global_step = round_ * c.steps_per_round + step
                decay = min(c.ema_decay, (1 + global_step) / (10 + global_step))
                with torch.no_grad():
                    for n, p in self.trainable.items():
                        self.ema[n].lerp_(p.detach(), 1 - decay)
                value = float(loss.detach())
                if not math.isfinite(value):
                    raise FloatingPointError(
                        f"loss became {value} at round {round_}, step {step}; lower lr or beta"
                    )
                history.append((global_step, value))
                recent = [*recent[-49:], {"loss": value, **metrics}]
                step += 1
                bar.update(1)
                bar.set_postfix(loss=f"{value:.4f}")
                if step % c.checkpoint_every == 0 and step < c.steps_per_round:
                    self._save(self._state(round_, step, history, round_log))
            bar.close()
            summary = {
                "round": round_,
                "samples": len(col.records),
                "pass_rate": col.fraction_passed(),
                "training_items": size,
            }
            if c.replay:
                summary["replay_items"] = len(self._replay_pool()[1])
            if recent:
                for key in recent[-1]:
                    vals = [r[key] for r in recent if math.isfinite(r.get(key, math.nan))]
                    summary[f"mean_{key}"] = sum(vals) / len(vals) if vals else None
            round_log.append(summary)
            folder = self._export(self.out / f"round_{round_:02d}" / "pipeline")
            round_, step = round_ + 1, 0
            self._save(self._state(round_, step, history, round_log))

        final = self._export(self.out / "pipeline")
        result = AlignResult(
            pipeline_dir=final,
            rounds=round_log,
            history=history,
            seconds=time.perf_counter() - start,
        )
        write_json(
            self.out / "align.json",
            {
                "settings": c.settings(),
                "reward": self.reward.name,
                "rounds": round_log,
                "pipeline": str(final),
                "last_round_pipeline": str(folder),
            },
        )
        return result
