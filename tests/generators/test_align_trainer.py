"""The fine-tuning loop: it learns what the reward prefers, LoRA merges exactly, resume is exact."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from generators.align import AlignConfig, SimFeedbackTrainer
from generators.pipeline import ShapePipeline
from generators.schedulers import PFGMPPScheduler
from tests.generators._oracle import (
    AdaptedMixtureOracleUNet,
    WeightedMixtureOracleUNet,
    blocks,
)

R = 8
BLOCK = blocks(R, (slice(1, 7), slice(1, 7), slice(0, 3)))
OVERHANG = blocks(
    R, (slice(0, 2), slice(3, 5), slice(0, 6)), (slice(0, 8), slice(3, 5), slice(6, 8))
)


def _oracle_pipe() -> ShapePipeline:
    """Class "mixed": the block (stands) or the overhang (falls), each with weight 1/2."""
    unet = WeightedMixtureOracleUNet(resolution=R, num_classes=1, atoms_per_class=2, D=128.0)
    unet.atoms[0, 0], unet.atoms[0, 1] = BLOCK, OVERHANG
    pipe = ShapePipeline(unet=unet, scheduler=PFGMPPScheduler(D=128.0), families=["mixed"])
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _config(tmp_path, **kw) -> AlignConfig:
    base = dict(
        out=tmp_path / "run",
        samples_per_condition=12,
        sample_steps=6,
        steps_per_round=30,
        batch_size=8,
        lr=0.5,  # the oracle's logits learn slowly at small lr: the atoms are far apart,
        # so only rare large-sigma draws see an ambiguous posterior and carry a gradient
        lora_rank=None,
        ema_decay=0.0,
        workers=1,
        backend="serial",
    )
    base.update(kw)
    return AlignConfig(**base)


def _block_weight(model) -> float:
    return float(torch.softmax(model.logits[0].detach(), 0)[0])


@pytest.mark.parametrize("objective", ["dro", "dpo", "kto", "sft"])
def test_every_objective_moves_weight_onto_the_standing_shape(objective, tmp_path):
    # The oracle's only freedom is how often it draws each atom; the simulator says the
    # block stands and the overhang falls, so every objective must raise the block's
    # weight above its starting 1/2.
    pipe = _oracle_pipe()
    trainer = SimFeedbackTrainer(pipe, _config(tmp_path, objective=objective))
    result = trainer.run(progress=False)
    (summary,) = result.rounds
    assert 0 < summary["pass_rate"] < 1  # the collection saw both outcomes
    assert summary["training_items"] > 0
    assert _block_weight(trainer.model) > 0.7, objective
    # The exported pipeline carries the fine-tuned weights; the input pipeline is untouched.
    exported = ShapePipeline.from_pretrained(result.pipeline_dir, local_files_only=True)
    assert _block_weight(exported.unet) == pytest.approx(_block_weight(trainer.model), abs=1e-6)
    assert _block_weight(pipe.unet) == pytest.approx(0.5)


def test_online_rounds_collect_from_the_fine_tuned_model(tmp_path):
    trainer = SimFeedbackTrainer(
        _oracle_pipe(), _config(tmp_path, rounds=2, samples_per_condition=16)
    )
    result = trainer.run(progress=False)
    first, second = result.rounds
    # Round 1 samples the model round 0 produced, which draws the block more often.
    assert second["pass_rate"] > first["pass_rate"]
    assert (tmp_path / "run" / "round_01" / "collection" / "manifest.json").is_file()


def test_a_finished_run_is_extended_by_more_rounds(tmp_path):
    cfg = _config(tmp_path, samples_per_condition=16, steps_per_round=5)
    first = SimFeedbackTrainer(_oracle_pipe(), cfg).run(progress=False)
    # Asking the same folder for two rounds (as `simkit align --rounds 2` does) keeps
    # round 0 as it was and adds round 1; any other change of settings is refused.
    more = SimFeedbackTrainer(_oracle_pipe(), replace(cfg, rounds=2)).run(progress=False)
    assert len(more.rounds) == 2 and more.rounds[0] == first.rounds[0]
    assert more.history[:5] == first.history and len(more.history) == 10
    assert (tmp_path / "run" / "round_01" / "collection" / "manifest.json").is_file()
    with pytest.raises(ValueError, match="other settings"):
        SimFeedbackTrainer(_oracle_pipe(), replace(cfg, rounds=3, lr=0.1)).run(progress=False)


def test_class_dropout_fine_tunes_the_unconditional_prediction_too(tmp_path):
    # Guidance samples from F_null + w (F_cond - F_null). Without class dropout the null
    # class is never trained: its mixture weights stay at 1/2 while the conditional ones
    # move onto the standing block. With it, the null class moves the same way.
    def block_weights(model) -> tuple[float, float]:
        w = torch.softmax(model.logits.detach(), 1)[:, 0]
        return float(w[0]), float(w[1])  # (class "mixed", the null class)

    def pipe() -> ShapePipeline:
        p = _oracle_pipe()
        p.unet.atoms[1, 0], p.unet.atoms[1, 1] = BLOCK, OVERHANG  # the null class's data
        return p

    # Half the noise levels log-uniform: the oracle's logits get their gradient only where
    # the posterior is ambiguous (large sigma), which EDM's log-normal reaches so rarely
    # that which class a few such draws fall on would decide the test.
    kw = dict(objective="sft", sigma_uniform=0.5)
    kept = SimFeedbackTrainer(pipe(), _config(tmp_path / "a", **kw))
    kept.run(progress=False)
    cond, null = block_weights(kept.model)
    assert cond > 0.7 and null == 0.5
    dropped = SimFeedbackTrainer(pipe(), _config(tmp_path / "b", class_dropout=0.5, **kw))
    dropped.run(progress=False)
    cond, null = block_weights(dropped.model)
    assert cond > 0.6 and null > 0.6


def test_the_anchor_holds_the_fine_tune_near_the_reference(tmp_path):
    # SFT alone moves the mixture weight onto the standing block; with a strong anchor
    # to the reference (weight 1/2) it moves less, and more than not at all.
    kw = dict(objective="sft", sigma_uniform=0.5)
    free = SimFeedbackTrainer(_oracle_pipe(), _config(tmp_path / "a", **kw))
    free.run(progress=False)
    held = SimFeedbackTrainer(_oracle_pipe(), _config(tmp_path / "b", anchor=20.0, **kw))
    result = held.run(progress=False)
    assert _block_weight(free.model) > 0.9
    assert 0.5 < _block_weight(held.model) < _block_weight(free.model) - 0.1
    assert "mean_anchor" in result.rounds[0]


def _noise_levels_of_one_step(monkeypatch, cfg: AlignConfig, seed: int) -> dict:
    """One SFT step of ``cfg`` on the oracle: the sigmas its objective and its anchor
    drew, and the generator's state right after the objective."""
    import generators.align.trainer as trainer_module
    from generators.align.objectives import anchor_loss, sft_loss

    x0_all = torch.stack([BLOCK, OVERHANG] * 4)
    labels = torch.zeros(8, dtype=torch.long)
    data = (torch.arange(8), torch.tensor([True, False] * 4))
    seen: dict = {}

    def objective(policy, x0, stands, **kw):
        out = sft_loss(policy, x0, stands, **kw)
        seen["objective_sigma"], seen["state"] = kw["sigma"], kw["generator"].get_state()
        return out

    def anchor(policy, reference, x0, **kw):
        seen["anchor_sigma"] = kw["sigma"]
        return anchor_loss(policy, reference, x0, **kw)

    monkeypatch.setattr(trainer_module, "sft_loss", objective)
    monkeypatch.setattr(trainer_module, "anchor_loss", anchor)
    trainer = SimFeedbackTrainer(_oracle_pipe(), cfg)
    trainer._step(data, x0_all, labels, torch.Generator().manual_seed(seed))
    return seen


def _after(state: torch.Tensor) -> torch.Generator:
    g = torch.Generator()
    g.set_state(state)
    return g


def test_the_anchor_looks_at_the_objectives_noise_levels_or_its_own(tmp_path, monkeypatch):
    from generators.pfgmpp import sample_training_sigma

    kw = dict(objective="sft", anchor=1.0, p_mean=0.4, p_std=1.1)
    seen = _noise_levels_of_one_step(monkeypatch, _config(tmp_path / "a", **kw), 5)
    assert torch.equal(seen["anchor_sigma"], seen["objective_sigma"])
    cfg = _config(tmp_path / "b", anchor_p_mean=-1.2, **kw)
    seen = _noise_levels_of_one_step(monkeypatch, cfg, 5)
    # the anchor draws right after the objective
    want = sample_training_sigma(8, p_mean=-1.2, p_std=1.1, generator=_after(seen["state"]))
    assert torch.equal(seen["anchor_sigma"], want)


def test_a_split_trains_the_objective_above_it_and_anchors_below(tmp_path, monkeypatch):
    from generators.pfgmpp import sample_training_sigma

    cfg = _config(tmp_path, objective="sft", anchor=1.0, sigma_uniform=0.5, sigma_split=0.5)
    seen = _noise_levels_of_one_step(monkeypatch, cfg, 6)
    g = torch.Generator().manual_seed(6)
    torch.randint(8, (8,), generator=g)
    above = sample_training_sigma(
        8, p_mean=-1.2, p_std=1.2, uniform=0.5, bounds=(0.5, None), generator=g
    )
    assert torch.equal(seen["objective_sigma"], above)
    # the anchor draws right after the objective, below the split
    below = sample_training_sigma(
        8, p_mean=-1.2, p_std=1.2, bounds=(None, 0.5), generator=_after(seen["state"])
    )
    assert torch.equal(seen["anchor_sigma"], below)


def test_a_step_draws_the_configured_noise_law_and_defaults_draw_as_before(tmp_path, monkeypatch):
    import generators.align.trainer as trainer_module
    from generators.align.objectives import sft_loss
    from generators.models import Denoiser
    from generators.pfgmpp import sample_training_sigma

    x0_all = torch.stack([BLOCK, OVERHANG] * 4)
    labels = torch.zeros(8, dtype=torch.long)
    data = (torch.arange(8), torch.tensor([True, False] * 4))
    # Defaults: the same loss from the same generator as the objective's own draws (the
    # sigma law of every run made before the noise law was configurable).
    trainer = SimFeedbackTrainer(_oracle_pipe(), _config(tmp_path / "a", objective="sft"))
    loss, _ = trainer._step(data, x0_all, labels, torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    rows = data[0][torch.randint(8, (8,), generator=g)]
    want = sft_loss(Denoiser(trainer.model, 0.5), x0_all[rows], data[1][rows], D=128.0,
                    generator=g, class_labels=labels[rows])  # fmt: skip
    assert torch.equal(loss, want.loss)
    # Configured: sigma from the mixture law over the scheduler's range, the thin weight
    # and null labels reach the objective.
    seen = {}

    def spy(policy, x0, stands, **kw):
        seen.update(kw)
        return sft_loss(policy, x0, stands, **kw)

    monkeypatch.setattr(trainer_module, "sft_loss", spy)
    cfg = _config(tmp_path / "b", objective="sft", p_mean=0.4, p_std=1.1, sigma_uniform=0.5,
                  thin_weight=3.0, class_dropout=1.0)  # fmt: skip
    trainer = SimFeedbackTrainer(_oracle_pipe(), cfg)
    trainer._step(data, x0_all, labels, torch.Generator().manual_seed(4))
    g = torch.Generator().manual_seed(4)
    torch.randint(8, (8,), generator=g)
    sigma = sample_training_sigma(8, p_mean=0.4, p_std=1.1, uniform=0.5,
                                  sigma_range=(0.002, 80.0), generator=g)  # fmt: skip
    assert torch.equal(seen["sigma"], sigma) and seen["thin_weight"] == 3.0
    assert seen["class_labels"].tolist() == [1] * 8  # the null class of a one-family model


def _adapted_pipe() -> ShapePipeline:
    """The oracle pipeline with two zero-initialised convolutions for LoRA to adapt."""
    unet = AdaptedMixtureOracleUNet(resolution=R, num_classes=1, atoms_per_class=2, D=128.0)
    unet.atoms[0, 0], unet.atoms[0, 1] = BLOCK, OVERHANG
    pipe = ShapePipeline(unet=unet, scheduler=PFGMPPScheduler(D=128.0), families=["mixed"])
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_lora_trains_only_adapters_and_the_export_merges_them_exactly(tmp_path):
    pipe = _adapted_pipe()
    cfg = _config(tmp_path, lora_rank=2, steps_per_round=4, lr=1e-2, objective="dro")
    trainer = SimFeedbackTrainer(pipe, cfg)
    result = trainer.run(progress=False)
    assert all("lora_" in n for n in trainer.trainable)
    assert any(
        float(p.detach().abs().max()) > 0 for n, p in trainer.trainable.items() if "lora_B" in n
    )
    exported = ShapePipeline.from_pretrained(result.pipeline_dir, local_files_only=True)
    assert type(exported.unet) is AdaptedMixtureOracleUNet  # plain: no peft needed to load it
    assert _block_weight(exported.unet) == 0.5  # LoRA left the other weights alone
    x = torch.randn(2, 1, 8, 8, 8, generator=torch.Generator().manual_seed(1))
    t, cls = torch.tensor([0.1, -0.3]), torch.tensor([0, 0])
    with torch.no_grad():
        want = trainer.model(x, t, class_labels=cls).sample  # EMA off: the trained weights
        got = exported.unet(x, t, class_labels=cls).sample
        base = pipe.unet(x, t, class_labels=cls).sample
    assert torch.allclose(got, want, atol=1e-5)
    assert not torch.allclose(got, base, atol=1e-4)  # and training changed something

    # a finished run re-run with save_dtype="float16" only re-exports, in half precision
    again = SimFeedbackTrainer(pipe, replace(cfg, save_dtype="float16")).run(progress=False)
    assert again.history == result.history
    half = ShapePipeline.from_pretrained(again.pipeline_dir, local_files_only=True)
    rounded = 0
    for name, w in exported.unet.state_dict().items():
        h = half.unet.state_dict()[name].float()
        assert torch.equal(h, w.half().float()), name
        rounded += not torch.equal(h, w)
    assert rounded  # some weights were not float16 numbers before


def test_an_interrupted_run_resumes_to_the_same_weights(tmp_path, monkeypatch):
    cfg = dict(lora_rank=2, steps_per_round=6, checkpoint_every=2, lr=1e-2, objective="dro",
               ema_decay=0.9)  # fmt: skip
    whole = SimFeedbackTrainer(_adapted_pipe(), _config(tmp_path / "a", **cfg))
    whole.run(progress=False)

    broken = SimFeedbackTrainer(_adapted_pipe(), _config(tmp_path / "b", **cfg))
    calls = {"n": 0}
    step = broken.optimizer.step

    def crash(*a, **k):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return step(*a, **k)

    monkeypatch.setattr(broken.optimizer, "step", crash)
    with pytest.raises(KeyboardInterrupt):
        broken.run(progress=False)
    resumed = SimFeedbackTrainer(_adapted_pipe(), _config(tmp_path / "b", **cfg))
    resumed.run(progress=False)
    for n, p in whole.trainable.items():
        assert torch.equal(p, resumed.trainable[n]), n
        assert torch.equal(whole.ema[n], resumed.ema[n]), n
    with pytest.raises(ValueError, match="other settings"):
        SimFeedbackTrainer(_adapted_pipe(), _config(tmp_path / "b", **{**cfg, "lr": 1e-3})).run(
            progress=False
        )
    with pytest.raises(ValueError, match="reward 'stability'"):  # same settings, other reward
        SimFeedbackTrainer(_adapted_pipe(), _config(tmp_path / "b", **cfg), reward=bool).run(
            progress=False
        )


def test_a_round_without_both_outcomes_trains_nothing(tmp_path):
    trainer = SimFeedbackTrainer(
        _adapted_pipe(), _config(tmp_path, lora_rank=2, steps_per_round=3),
        reward=lambda m: True,
    )  # fmt: skip
    result = trainer.run(progress=False)
    assert result.rounds[0]["training_items"] == 0 and result.history == []
    assert all(
        float(p.detach().abs().max()) == 0 for n, p in trainer.trainable.items() if "lora_B" in n
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [("objective", "ppo"), ("rounds", 0), ("lora_rank", 0), ("lr", -1.0), ("ema_decay", 1.0),
     ("grad_clip", float("nan")), ("seed", -1), ("fragments", "keep"),
     ("save_dtype", "bfloat16"), ("p_std", 0.0), ("sigma_uniform", 1.5),
     ("thin_weight", -1.0), ("class_dropout", -0.1), ("anchor", -1.0),
     ("anchor_p_mean", float("nan")), ("replay", -1), ("replay_seed", -1),
     ("balance_conditions", 1), ("balance_labels", 1), ("sigma_split", 0.0), ("sigma_split", float("inf"))],
)  # fmt: skip
def test_config_validation_names_the_field(field, value, tmp_path):
    with pytest.raises(ValueError, match=field):
        _config(tmp_path, **{field: value})


def test_fragments_fail_trains_on_every_piece_and_needs_them_stored(tmp_path):
    from generators.align.collect import Collection

    piece = torch.zeros(2, 4, 4, 4, dtype=torch.bool)
    raw = piece.clone()
    raw[1, 3, 3, 3] = True  # sample 1 had a second piece
    trainer = SimFeedbackTrainer(_adapted_pipe(), _config(tmp_path, fragments="fail"))
    assert torch.equal(trainer._occupancy(Collection([], piece, raw=raw)), raw)
    with pytest.raises(ValueError, match="collect it again"):
        trainer._occupancy(Collection([], piece))
    trainer = SimFeedbackTrainer(_adapted_pipe(), _config(tmp_path, fragments="piece"))
    assert torch.equal(trainer._occupancy(Collection([], piece, raw=raw)), piece)


@pytest.mark.parametrize("objective", ["sft", "kto"])
def test_replay_adds_the_procedural_objects_that_pass_to_the_pool(objective, tmp_path, monkeypatch):
    import trimesh

    from generators.align.data import procedural_objects
    from simkit.geometry import VoxelGrid

    families = ["mug", "lamp"]  # the pipeline's label 0 and 1; FAMILIES orders them apart
    unet = WeightedMixtureOracleUNet(resolution=R, num_classes=2, atoms_per_class=2, D=128.0)
    for k in range(2):
        unet.atoms[k, 0], unet.atoms[k, 1] = BLOCK, OVERHANG
    pipe = ShapePipeline(unet=unet, scheduler=PFGMPPScheduler(D=128.0), families=families)
    pipe.set_progress_bar_config(disable=True)

    # The reward: "encloses more than 0.02 m^3" (objects fill the unit cube, so height
    # or extent would not tell them apart); the expected verdicts come from trimesh.
    def big(mesh):
        return float(mesh.volume()) > 0.02

    occ, names = procedural_objects(5, R, 3, families)
    grids = VoxelGrid(occ, (0.0, 0.0, 0.0), 1 / R)
    meshes = [grids[i].to_mesh()[0] for i in range(len(names))]
    expect = [
        i
        for i, m in enumerate(meshes)
        if trimesh.Trimesh(m.vertices.numpy(), m.faces.numpy()).volume > 0.02
    ]
    assert 0 < len(expect) < len(names)  # the reward tells these objects apart
    assert {names[i] for i in expect} == set(families)  # and passes some of each family

    seen = {}

    def spy(self, data, x0_all, labels, g, weights=None):
        seen.update(data=data, x0=x0_all, labels=labels)
        return original(self, data, x0_all, labels, g, weights)

    original = SimFeedbackTrainer._step
    monkeypatch.setattr(SimFeedbackTrainer, "_step", spy)
    cfg = _config(tmp_path, objective=objective, replay=5, replay_seed=3, steps_per_round=2)
    result = SimFeedbackTrainer(pipe, cfg, reward=big).run(progress=False)
    (summary,) = result.rounds
    assert summary["replay_items"] == len(expect)
    n_col = summary["samples"]
    own = int((seen["data"][0] < n_col).sum())  # the round's own passing samples
    assert summary["training_items"] == own + len(expect)
    # The replayed rows are the passing objects, labelled in the pipeline's label space.
    rows = seen["data"][0][own:]
    assert seen["data"][1].all()
    assert torch.equal(seen["x0"][rows, 0].cpu() > 0, occ[expect])
    assert seen["labels"][rows].tolist() == [families.index(names[i]) for i in expect]
    with pytest.raises(ValueError, match="replay adds passing singles"):
        _config(tmp_path, objective="dpo", replay=5)
    with pytest.raises(ValueError, match="procedural families"):
        SimFeedbackTrainer(_oracle_pipe(), replace(cfg, out=tmp_path / "other"))  # "mixed"


def test_the_replay_sets_verdicts_are_judged_once_for_runs_sharing_a_cache(tmp_path, monkeypatch):
    from generators.align.reward import StabilityReward

    families = ["mug", "lamp"]
    unet = WeightedMixtureOracleUNet(resolution=R, num_classes=2, atoms_per_class=2, D=128.0)
    for k in range(2):
        unet.atoms[k, 0], unet.atoms[k, 1] = BLOCK, OVERHANG
    pipe = ShapePipeline(unet=unet, scheduler=PFGMPPScheduler(D=128.0), families=families)
    pipe.set_progress_bar_config(disable=True)
    judged = []
    judge = StabilityReward.judge

    def spy(self, meshes):
        judged.append(len(meshes))
        return judge(self, meshes)

    monkeypatch.setattr(StabilityReward, "judge", spy)
    cache = tmp_path / "cache"
    cfg = _config(
        tmp_path, objective="sft", replay=5, samples_per_condition=4, steps_per_round=2,
        verdict_cache=cache,
    )  # fmt: skip
    first = SimFeedbackTrainer(pipe, cfg).run(progress=False).rounds[0]
    assert judged == [8, 10]  # the round's 2 x 4 samples, then the 2 x 5 replay objects
    assert len(list(cache.iterdir())) == 1
    second = SimFeedbackTrainer(pipe, replace(cfg, out=tmp_path / "again")).run(progress=False)
    assert judged == [8, 10, 8]  # the replay set came from the cache
    assert second.rounds[0]["replay_items"] == first["replay_items"]
    # The cache is where verdicts are kept, not a setting of the run: a run resumes
    # with another cache, or none.
    assert "verdict_cache" not in cfg.settings()
    assert replace(cfg, verdict_cache=None).settings() == cfg.settings()


def test_condition_weights_draw_every_condition_equally_often():
    from generators.align.trainer import condition_weights

    labels = torch.tensor([0] * 90 + [4] * 10 + [2])  # 90 : 10 : 1 items
    w = condition_weights(labels)
    assert torch.allclose(w[[0, 90, 100]], torch.tensor([1 / 90, 1 / 10, 1.0], dtype=w.dtype))
    n = 30_000
    g = torch.Generator().manual_seed(0)
    drawn = labels[torch.multinomial(w, n, replacement=True, generator=g)]
    share = torch.bincount(drawn, minlength=5)[[0, 4, 2]] / n
    # Each share is binomial(n, 1/3): standard deviation 0.0027; 5 of them is 0.014.
    assert torch.allclose(share.double(), torch.full((3,), 1 / 3, dtype=torch.float64), atol=0.014)
    with pytest.raises(ValueError, match="labels"):
        condition_weights(torch.zeros(0, dtype=torch.long))


def test_item_weights_give_each_verdict_and_condition_its_share():
    from generators.align.trainer import item_weights

    # Condition 0: 45 pass, 15 fail; condition 1: 15 pass, 5 fail (75 % pass in both).
    conditions = torch.tensor([0] * 60 + [1] * 20)
    passed = torch.tensor([True] * 45 + [False] * 15 + [True] * 15 + [False] * 5)
    # The weights' sums are the exact expected shares of the draws.
    w = item_weights(None, passed)
    assert float(w[passed].sum() / w.sum()) == pytest.approx(0.5)
    assert float(w[conditions == 0].sum() / w.sum()) == pytest.approx(0.75)  # untouched
    w = item_weights(conditions, passed)
    for mask in (passed, conditions == 0):
        assert float(w[mask].sum() / w.sum()) == pytest.approx(0.5)
    w = item_weights(conditions, None)
    assert float(w[passed].sum() / w.sum()) == pytest.approx(0.75)
    # Unevenly spread verdicts: each balance holds only approximately, never inverted.
    uneven = torch.tensor([True] * 50 + [False] * 10 + [True] * 5 + [False] * 15)
    w = item_weights(conditions, uneven)
    assert 0.3 < float(w[uneven].sum() / w.sum()) < 0.7
    with pytest.raises(ValueError, match="needs conditions, passed"):
        item_weights(None, None)
    with pytest.raises(ValueError, match="bool"):
        item_weights(None, passed.long())
    with pytest.raises(ValueError, match="shape"):
        item_weights(conditions, passed[:10])


def test_balance_labels_keeps_replay_from_thinning_out_the_failing_half(tmp_path, monkeypatch):
    families = ["mug", "lamp"]  # procedural, so that replay can join
    unet = WeightedMixtureOracleUNet(resolution=R, num_classes=2, atoms_per_class=2, D=128.0)
    for k in range(2):
        unet.atoms[k, 0], unet.atoms[k, 1] = BLOCK, OVERHANG
    pipe = ShapePipeline(unet=unet, scheduler=PFGMPPScheduler(D=128.0), families=families)
    pipe.set_progress_bar_config(disable=True)

    def big(mesh):  # the block (0.21 m^3) passes, the overhang (0.11) fails, and so do
        return float(mesh.volume()) > 0.14  # the bigger procedural mugs (up to 0.15)

    seen = {}

    def spy(self, data, x0_all, labels, g, weights=None):
        seen.update(passed=data[1].cpu(), weights=weights)
        return original(self, data, x0_all, labels, g, weights)

    original = SimFeedbackTrainer._step
    monkeypatch.setattr(SimFeedbackTrainer, "_step", spy)
    cfg = _config(tmp_path, objective="kto", replay=8, replay_seed=3, steps_per_round=2)
    (summary,) = SimFeedbackTrainer(pipe, cfg, reward=big).run(progress=False).rounds
    assert summary["replay_items"] > 0  # some procedural objects are big
    assert seen["weights"] is None  # off by default: items drawn uniformly
    n_pass, n_fail = int(seen["passed"].sum()), int((~seen["passed"]).sum())
    assert n_pass > n_fail > 0  # replay makes the pool lopsided ...
    balanced = replace(cfg, out=tmp_path / "balanced", balance_labels=True)
    SimFeedbackTrainer(pipe, balanced, reward=big).run(progress=False)
    w, passed = seen["weights"], seen["passed"]
    assert float(w[passed].sum()) == pytest.approx(float(w[~passed].sum()))  # ... not the draws
    for objective in ("sft", "dpo"):
        with pytest.raises(ValueError, match="balance_labels balances passing against failing"):
            _config(tmp_path, objective=objective, balance_labels=True)


def test_balance_conditions_gives_each_family_the_same_share_of_the_steps(tmp_path, monkeypatch):
    # "stands" makes only standing blocks, "mixed" half blocks, half overhangs: the pool
    # of passing samples holds about twice as many of the first.
    unet = WeightedMixtureOracleUNet(resolution=R, num_classes=2, atoms_per_class=2, D=128.0)
    unet.atoms[0, 0], unet.atoms[0, 1] = BLOCK, BLOCK
    unet.atoms[1, 0], unet.atoms[1, 1] = BLOCK, OVERHANG
    pipe = ShapePipeline(
        unet=unet, scheduler=PFGMPPScheduler(D=128.0), families=["stands", "mixed"]
    )
    pipe.set_progress_bar_config(disable=True)
    seen = []

    def spy(self, data, x0_all, labels, g, weights=None):
        seen.append((data[0], labels, weights))
        return original(self, data, x0_all, labels, g, weights)

    original = SimFeedbackTrainer._step
    monkeypatch.setattr(SimFeedbackTrainer, "_step", spy)
    cfg = _config(tmp_path, objective="sft", steps_per_round=2)
    SimFeedbackTrainer(pipe, cfg).run(progress=False)
    assert seen[-1][2] is None  # off by default: items drawn uniformly
    balanced = replace(cfg, out=tmp_path / "balanced", balance_conditions=True)
    SimFeedbackTrainer(pipe, balanced).run(progress=False)
    rows, labels, weights = seen[-1]
    family = labels[rows].cpu()
    counts = torch.bincount(family, minlength=2)
    assert counts[0] > counts[1] > 0  # the pool is uneven ...
    per_family = torch.zeros(2, dtype=weights.dtype).index_add_(0, family, weights)
    assert torch.allclose(per_family, per_family[:1].expand(2))  # ... the draws are not
    # A run saved before the settings existed resumes as unbalanced and unsplit, and only
    # as that.
    state_path = tmp_path / "run" / "train_state.pt"
    state = torch.load(state_path, weights_only=True)
    for key in ("balance_conditions", "balance_labels", "sigma_split"):
        del state["settings"][key]
    torch.save(state, state_path)
    SimFeedbackTrainer(pipe, cfg).run(progress=False)
    for changed in (dict(balance_conditions=True), dict(sigma_split=0.5)):
        with pytest.raises(ValueError, match="other settings"):
            SimFeedbackTrainer(pipe, replace(cfg, **changed)).run(progress=False)


def test_cli_align_and_evaluate_on_the_shipped_checkpoint(tmp_path):
    import json

    from click.testing import CliRunner

    from simkit.cli import main

    runner = CliRunner()
    args = ["align", "--out", str(tmp_path / "run"), "--samples-per-condition", "2",
            "--sample-steps", "4", "--steps", "2", "--batch-size", "2", "--backend", "serial",
            "--objective", "kto", "--fragments", "piece", "--sigma-split", "0.5",
            "--balance-labels", "--reward", "stability+family", "--json"]  # fmt: skip
    res = runner.invoke(main, args)
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    settings = json.loads((tmp_path / "run" / "align.json").read_text())["settings"]
    assert settings["sigma_split"] == 0.5 and settings["fragments"] == "piece"
    assert settings["balance_labels"] is True
    manifest = json.loads(
        (tmp_path / "run" / "round_00" / "collection" / "manifest.json").read_text()
    )
    assert manifest["settings"]["reward"] == "stability+family"
    for r in manifest["records"]:
        if r["passed"] is not None:  # stands and is recognised as its family
            d = r["details"]
            assert r["passed"] == (d["stability_passed"] == d["family_passed"] == 1.0)
    (round0,) = summary["rounds"]
    assert round0["samples"] == 18  # 2 per family, 9 families
    pipeline = summary["pipeline"]
    assert (tmp_path / "run" / "pipeline" / "model_index.json").is_file()
    res = runner.invoke(
        main,
        ["evaluate", "--checkpoint", pipeline, "--baseline", "shapes-base", "--n", "9",
         "--steps", "4", "--no-fidelity", "--backend", "serial", "--out", str(tmp_path / "ev"),
         "--verdict-cache", str(tmp_path / "refs"), "--guidance", "3", "--json"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["overall"]["n"] == 9 and report["paired"]["pairs"] <= 9
    assert report["settings"]["verdict_cache"] == str(tmp_path / "refs")
    # --guidance reaches the sampler: both models' samples are drawn with it.
    assert report["settings"]["guidance_scale"] == 3.0
    for manifest in (tmp_path / "ev").rglob("manifest.json"):
        assert json.loads(manifest.read_text())["settings"]["guidance_scale"] == 3.0
    assert 0 <= report["overall"]["recognised"] <= 1 and "recognised" in report["paired"]
    # The same evaluation as a table (resumed from its samples: nothing is redrawn).
    res = runner.invoke(
        main,
        ["evaluate", "--checkpoint", pipeline, "--baseline", "shapes-base", "--n", "9",
         "--steps", "4", "--no-fidelity", "--backend", "serial", "--out", str(tmp_path / "ev"),
         "--verdict-cache", str(tmp_path / "refs"), "--guidance", "3"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "recognised" in res.output and "second procedural set scores" in res.output
    # Samples drawn at another guidance are not silently mixed in.
    res = runner.invoke(
        main,
        ["evaluate", "--checkpoint", pipeline, "--n", "9", "--steps", "4", "--no-fidelity",
         "--backend", "serial", "--out", str(tmp_path / "ev")],
    )  # fmt: skip
    assert res.exit_code != 0 and "other settings" in res.output
    bad = runner.invoke(main, ["align", "--out", str(tmp_path / "x"), "--checkpoint", "nope"])
    assert bad.exit_code != 0 and "nope" in bad.output


def test_cli_align_on_chosen_families(tmp_path):
    import json

    from click.testing import CliRunner

    from simkit.cli import main

    runner = CliRunner()
    args = ["align", "--out", str(tmp_path / "run"), "--samples-per-condition", "2",
            "--sample-steps", "4", "--steps", "1", "--batch-size", "2", "--backend", "serial",
            "--objective", "sft", "--family", "mug", "--family", "chair", "--json"]  # fmt: skip
    res = runner.invoke(main, args)
    assert res.exit_code == 0, res.output
    (round0,) = json.loads(res.stdout)["rounds"]
    assert round0["samples"] == 4  # 2 per family asked for, not 2 for each of the nine
    settings = json.loads((tmp_path / "run" / "align.json").read_text())["settings"]
    assert settings["conditions"] == ["mug", "chair"]
    manifest = json.loads(
        (tmp_path / "run" / "round_00" / "collection" / "manifest.json").read_text()
    )
    assert sorted(r["condition"] for r in manifest["records"]) == ["chair"] * 2 + ["mug"] * 2
    # A family the pipeline does not know is refused before anything is drawn.
    bad = runner.invoke(
        main, ["align", "--out", str(tmp_path / "x"), "--family", "sofa", "--steps", "1"]
    )
    assert bad.exit_code != 0 and "sofa" in bad.output and "chair" in bad.output
    assert not (tmp_path / "x" / "round_00").exists()
