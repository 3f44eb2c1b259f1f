"""Evaluation: intervals and the paired test against hand-computed values, exact pass rates
from an oracle generator, fidelity on the shipped checkpoint."""

from __future__ import annotations

import json
import math

import pytest
import torch

from generators.align.evaluate import (
    EvaluateConfig,
    evaluate_pipeline,
    mcnemar_exact,
    wilson_interval,
)
from generators.pipeline import ShapePipeline
from generators.schedulers import PFGMPPScheduler
from tests.generators._oracle import WeightedMixtureOracleUNet, blocks

R = 8
BLOCK = blocks(R, (slice(1, 7), slice(1, 7), slice(0, 3)))  # 6 x 6 x 3, stands
OVERHANG = blocks(  # a 2 x 2 x 6 post under an 8 x 2 x 2 beam, falls
    R, (slice(0, 2), slice(3, 5), slice(0, 6)), (slice(0, 8), slice(3, 5), slice(6, 8))
)


def test_wilson_interval_matches_the_textbook_values():
    # Newcombe (1998), table I: 81/263 -> 0.2553 .. 0.3662; and the closed form at 0/10.
    lo, hi = wilson_interval(81, 263)
    assert lo == pytest.approx(0.2553, abs=1e-4) and hi == pytest.approx(0.3662, abs=1e-4)
    lo, hi = wilson_interval(0, 10)
    z2 = 1.959964**2
    assert lo == 0.0 and hi == pytest.approx(z2 / (10 + z2), rel=1e-9)
    assert all(math.isnan(v) for v in wilson_interval(0, 0))
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_mcnemar_exact_is_the_two_sided_binomial_tail():
    # 1 vs 9 discordant pairs: 2 * (C(10,0) + C(10,1)) / 2^10.
    assert mcnemar_exact(1, 9) == pytest.approx(2 * 11 / 1024)
    assert mcnemar_exact(9, 1) == pytest.approx(2 * 11 / 1024)
    assert mcnemar_exact(5, 5) == pytest.approx(1.0)
    assert mcnemar_exact(0, 0) == 1.0


def _pipe(block_weight: float) -> ShapePipeline:
    unet = WeightedMixtureOracleUNet(resolution=R, num_classes=1, atoms_per_class=2, D=128.0)
    unet.atoms[0, 0], unet.atoms[0, 1] = BLOCK, OVERHANG
    with torch.no_grad():
        unet.logits[0] = torch.tensor([math.log(block_weight), math.log(1 - block_weight)])
    pipe = ShapePipeline(unet=unet, scheduler=PFGMPPScheduler(D=128.0), families=["mixed"])
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_oracle_pass_rates_volumes_and_the_paired_test(tmp_path):
    cfg = EvaluateConfig(out=tmp_path, n=24, steps=6, seed=3, workers=1, backend="serial")
    report = evaluate_pipeline(_pipe(0.999), cfg, baseline=_pipe(0.5), progress=False)
    new, base = report.overall, report.baseline
    # Exact sampling lands on an atom: the block (stands) or the overhang (falls).
    assert new["pass_rate"] == 1.0 and new["valid"] == 1.0
    assert 0 < base["pass_rate"] < 1
    k = round(base["pass_rate"] * 24)
    lo, hi = wilson_interval(k, 24)
    assert base["pass_rate_95ci"] == [pytest.approx(lo), pytest.approx(hi)]
    # Volumes and base-plate fractions, counted by hand: block 108 voxels, 36 in the bottom
    # layer; overhang 24 + 32 = 56 voxels, 4 in the bottom layer.
    assert new["volume"] == pytest.approx(108 / 512)
    assert new["base_fraction"] == pytest.approx(36 / 108)
    p = base["pass_rate"]
    assert base["volume"] == pytest.approx((p * 108 + (1 - p) * 56) / 512)
    assert base["base_fraction"] == pytest.approx(p * 36 / 108 + (1 - p) * 4 / 56)
    # Same seeds: wherever the baseline stands, so does the (near-)pure block model.
    paired = report.paired
    assert paired["only_baseline_passes"] == 0
    assert paired["only_this_passes"] == 24 - k
    assert paired["mcnemar_p"] == pytest.approx(mcnemar_exact(24 - k, 0))
    assert report.reference is None  # "mixed" is not a procedural family
    assert report.to_dict()["per_family"]["mixed"]["n"] == 24
    # the report is kept beside the samples
    assert json.loads((tmp_path / "report.json").read_text()) == report.to_dict()


def test_fidelity_on_the_shipped_checkpoint(tmp_path):
    from generators.generate import load_pipeline

    pipe = load_pipeline()
    cfg = EvaluateConfig(
        out=tmp_path, n=6, conditions=("table", "mug"), steps=8, workers=1, backend="serial",
        points=128,
    )  # fmt: skip
    report = evaluate_pipeline(pipe, cfg, progress=False)
    o = report.overall
    assert 0 <= o["one_nna_cd"] <= 1 and 0 <= o["cov_cd"] <= 1 and o["mmd_cd"] > 0
    assert set(report.per_family) == {"table", "mug"}
    ref = report.reference
    assert ref["n"] >= 6 and 0 < ref["volume"] < 1 and 0 < ref["base_fraction"] < 1
    assert ref["diversity_cd"] > 0 and o["diversity_cd"] > 0


def test_fidelity_against_the_references_that_pass_the_reward(tmp_path):
    # A user reward (tall objects pass): the passing references are the held-out pool's
    # objects that pass it, as many per family as the samples where the pool has them.
    from generators.generate import load_pipeline
    from simkit.geometry import VoxelGrid
    from simkit.shapes import FAMILIES, dataset

    def tall(mesh) -> bool:
        return float(mesh.vertices[:, 2].max() - mesh.vertices[:, 2].min()) > 0.7

    cfg = EvaluateConfig(
        out=tmp_path, n=6, conditions=("table", "vase"), steps=8, workers=1, backend="serial",
        points=128,
    )  # fmt: skip
    report = evaluate_pipeline(load_pipeline(), cfg, reward=tall, progress=False)
    # The same pool, judged here: 4 x 3 objects a family from reference_seed + 1.
    pool = dataset(12 * len(FAMILIES), 16, seed=cfg.reference_seed + 1)
    occ = VoxelGrid((pool.voxels > 0.5).reshape(-1, 16, 16, 16), (0.0, 0.0, 0.0), 1 / 16)
    occ = occ.bridge_diagonals()
    passes = {f: 0 for f in ("table", "vase")}
    for i, lab in enumerate(pool.labels.tolist()):
        if FAMILIES[lab] in passes:
            passes[FAMILIES[lab]] += tall(occ[i].to_mesh()[0])
    ref = report.reference
    assert ref["pass_rate"] == pytest.approx(sum(passes.values()) / 24)
    assert ref["n_passing"] == sum(min(3, k) for k in passes.values()) > 0
    o = report.overall
    assert 0 <= o["one_nna_cd_passing"] <= 1 and o["mmd_cd_passing"] > 0
    assert o["mmd_cd_passing"] != o["mmd_cd"]


def test_recognition_counts_the_objects_that_drift_out_of_their_family(tmp_path):
    """A "chair" that is drawn as a stool (exactly, from an oracle) is not recognised as a
    chair; the baseline always draws the chair. Stability is beside the point here."""
    from generators.align.data import procedural_objects

    occ, names = procedural_objects(1, 16, 13, ["chair", "stool"])
    chair, stool = (2.0 * occ[names.index(f)].float() - 1 for f in ("chair", "stool"))

    def pipe(chair_weight: float) -> ShapePipeline:
        unet = WeightedMixtureOracleUNet(resolution=16, num_classes=2, atoms_per_class=2, D=128.0)
        unet.atoms[0, 0], unet.atoms[0, 1] = chair, stool  # "chair"
        unet.atoms[1, 0], unet.atoms[1, 1] = stool, stool  # "stool"
        with torch.no_grad():
            unet.logits[0] = torch.tensor([math.log(chair_weight), math.log(1 - chair_weight)])
        p = ShapePipeline(
            unet=unet, scheduler=PFGMPPScheduler(D=128.0), families=["chair", "stool"]
        )
        p.set_progress_bar_config(disable=True)
        return p

    cfg = EvaluateConfig(
        out=tmp_path, n=16, steps=6, seed=3, workers=1, backend="serial", fidelity=False
    )
    report = evaluate_pipeline(pipe(0.5), cfg, baseline=pipe(0.999), progress=False)
    samples = torch.load(tmp_path / "samples" / "chunk_00000.pt", weights_only=True)["occupancy"]
    drawn_chair = torch.tensor([torch.equal(o, chair > 0) for o in samples[:8]])
    assert 0 < int(drawn_chair.sum()) < 8  # the prior drew both atoms for "chair"
    k = int(drawn_chair.sum())
    fam = report.per_family
    assert fam["chair"]["recognised"] == k / 8 and fam["stool"]["recognised"] == 1.0
    assert fam["chair"]["baseline_recognised"] == 1.0 and report.baseline["recognised"] == 1.0
    assert report.overall["recognised"] == (k + 8) / 16
    assert report.overall["recognised_95ci"] == list(wilson_interval(k + 8, 16))
    rec = report.paired["recognised"]
    assert rec == {"only_this": 0, "only_baseline": 8 - k, "mcnemar_p": mcnemar_exact(0, 8 - k)}
    # The ceiling: a second procedural set of chairs and stools, 8 of each, against 8
    # references a family (at that size 60 of 64 such chairs and stools are recognised).
    assert report.reference["n_recognised"] == 16 and report.reference["recognised"] >= 12 / 16
