"""Collecting samples with verdicts, resuming, and building DPO pairs / balanced singles."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from generators.align.collect import CollectConfig, collect, load_collection
from generators.align.data import balanced_singles, preference_pairs, split_by_verdict
from generators.pipeline import ShapePipeline
from generators.schedulers import PFGMPPScheduler
from tests.generators._oracle import MixtureOracleUNet, blocks

R = 8
BLOCK = blocks(R, (slice(1, 7), slice(1, 7), slice(0, 3)))
POST = blocks(R, (slice(3, 5), slice(3, 5), slice(0, 5)), (slice(2, 6), slice(2, 6), slice(0, 1)))
OVERHANG = blocks(
    R, (slice(0, 2), slice(3, 5), slice(0, 6)), (slice(0, 8), slice(3, 5), slice(6, 8))
)


@pytest.fixture
def pipe():
    """Class "mixed": a block (stands) or an overhang (falls); "stands": block or post."""
    unet = MixtureOracleUNet(resolution=R, num_classes=2, atoms_per_class=2, D=128.0)
    with torch.no_grad():
        unet.atoms[0, 0], unet.atoms[0, 1] = BLOCK, OVERHANG
        unet.atoms[1, 0], unet.atoms[1, 1] = BLOCK, POST
    p = ShapePipeline(unet=unet, scheduler=PFGMPPScheduler(D=128.0), families=["mixed", "stands"])
    p.set_progress_bar_config(disable=True)
    return p


def _config(tmp_path, **kw):
    base = dict(
        out=tmp_path / "c",
        samples_per_condition=6,
        steps=6,
        chunk_size=4,
        workers=1,
        backend="serial",
    )
    base.update(kw)
    return CollectConfig(**base)


def test_collect_records_true_verdicts_and_seeds(pipe, tmp_path):
    col = collect(pipe, _config(tmp_path), progress=False)
    assert len(col.records) == 12 and col.occupancy.shape == (12, R, R, R)
    for r, occ in zip(col.records, col.occupancy, strict=True):
        shape = (
            "block"
            if torch.equal(occ, BLOCK[0] > 0)
            else (
                "overhang"
                if torch.equal(occ, OVERHANG[0] > 0)
                else "post"
                if torch.equal(occ, POST[0] > 0)
                else "?"
            )
        )
        assert shape != "?"  # exact sampling: every sample is one of its class's atoms
        assert r.condition == ("mixed" if r.index < 6 else "stands")
        assert r.passed == (shape != "overhang"), (r, shape)
    mixed = [r.passed for r in col.records[:6]]
    assert any(mixed) and not all(mixed)  # the prior chose both atoms
    assert [r.seed for r in col.records] == list(range(12))
    assert torch.equal(col.raw, col.occupancy)  # every atom is one solid


def test_a_fragmented_sample_is_stored_whole_and_as_its_largest_piece(tmp_path):
    big, small = (slice(1, 7), slice(1, 7), slice(0, 3)), (slice(0, 2), slice(0, 2), slice(6, 8))
    two_pieces = blocks(R, big, small)
    unet = MixtureOracleUNet(resolution=R, num_classes=1, atoms_per_class=1, D=128.0)
    with torch.no_grad():
        unet.atoms[0, 0] = two_pieces
    p = ShapePipeline(unet=unet, scheduler=PFGMPPScheduler(D=128.0), families=["two"])
    p.set_progress_bar_config(disable=True)
    col = collect(p, _config(tmp_path, samples_per_condition=2), progress=False)
    assert [r.valid for r in col.records] == [False, False]
    assert [r.passed for r in col.records] == [True, True]  # the block, judged alone, stands
    assert torch.equal(col.occupancy[0], blocks(R, big)[0] > 0)
    assert torch.equal(col.raw[0], two_pieces[0] > 0)
    assert torch.equal(load_collection(tmp_path / "c").raw, col.raw)


def test_an_interrupted_collection_resumes_to_the_same_data(pipe, tmp_path):
    whole = collect(pipe, _config(tmp_path / "a"), progress=False)
    cfg = _config(tmp_path / "b")
    collect(pipe, cfg, progress=False)
    manifest = json.loads((tmp_path / "b" / "c" / "manifest.json").read_text())
    # simulate a crash after the first chunk: drop the later chunks from the manifest
    manifest["records"] = manifest["records"][:4]
    manifest["chunks"] = manifest["chunks"][:1]
    (tmp_path / "b" / "c" / "manifest.json").write_text(json.dumps(manifest))
    resumed = collect(pipe, cfg, progress=False)
    assert resumed.records == whole.records
    assert torch.equal(resumed.occupancy, whole.occupancy)
    with pytest.raises(ValueError, match="other settings"):
        collect(pipe, _config(tmp_path / "b", seed=5), progress=False)
    # Another model's samples are never taken for this one's, though the settings match:
    # changing any weight, or the scheduler's solver, changes the recorded fingerprint.
    other = copy.deepcopy(pipe)
    with torch.no_grad():
        other.unet.atoms[0, 1, 0, 0, 0, 0] = 1.0
    with pytest.raises(ValueError, match="another model"):
        collect(other, cfg, progress=False)
    other = copy.deepcopy(pipe)
    other.scheduler = PFGMPPScheduler.from_config(pipe.scheduler.config, solver="dpmpp_2m")
    with pytest.raises(ValueError, match="another model"):
        collect(other, cfg, progress=False)
    # A float16 copy of the same weights (how checkpoints ship) is the same model.
    half = copy.deepcopy(pipe)
    half.unet.atoms.data = half.unet.atoms.data.half()
    assert collect(half, cfg, progress=False).records == whole.records
    # A folder from before fingerprints were recorded is refused, and the message says so.
    del manifest["settings"]["model"]
    (tmp_path / "b" / "c" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="no model fingerprint"):
        collect(pipe, cfg, progress=False)


def test_pairs_drop_conditions_that_all_stand_or_all_fall(pipe, tmp_path):
    col = collect(pipe, _config(tmp_path), progress=False)
    pairs = preference_pairs(col)
    assert pairs.dropped == ("stands",)  # block or post: every sample stands
    stable = {r.index: r.passed for r in col.records}
    cond = {r.index: r.condition for r in col.records}
    assert len(pairs) > 0
    for w, lo in zip(pairs.winners.tolist(), pairs.losers.tolist(), strict=True):
        assert stable[w] and not stable[lo] and cond[w] == cond[lo] == "mixed"
    idx, stands = balanced_singles(col)
    assert int(stands.sum()) == int((~stands).sum()) > 0
    assert all(stable[i] == s for i, s in zip(idx.tolist(), stands.tolist(), strict=True))
    assert load_collection(tmp_path / "c").records == col.records


def test_what_a_sample_that_is_not_one_solid_counts_as():
    from generators.align.collect import Collection, SampleRecord

    def rec(i, passed, valid):
        return SampleRecord(
            index=i, condition="c", label=0, seed=i, valid=valid, passed=passed,
            score=None if passed is None else float(passed), details={}, error=None,
        )  # fmt: skip

    # solids: 0 stands, 1 falls; fragmented, judged on the largest piece: 2, 3 stand,
    # 4, 5, 6 fall; 7 was empty and never judged
    records = [rec(0, True, True), rec(1, False, True), rec(2, True, False)]
    records += [rec(3, True, False), rec(4, False, False), rec(5, False, False)]
    records += [rec(6, False, False), rec(7, None, False)]
    col = Collection(records=records, occupancy=torch.zeros(8, R, R, R, dtype=torch.bool))
    assert split_by_verdict(records) == {"c": ([0], [1])}
    assert split_by_verdict(records, "piece") == {"c": ([0, 2, 3], [1, 4, 5, 6])}
    assert split_by_verdict(records, "fail") == {"c": ([0], [1, 2, 3, 4, 5, 6])}
    with pytest.raises(ValueError, match="fragments must be one of"):
        split_by_verdict(records, "keep")

    pairs = preference_pairs(col)
    assert pairs.winners.tolist() == [0] and pairs.losers.tolist() == [1]
    pairs = preference_pairs(col, fragments="piece")
    assert sorted(pairs.winners.tolist()) == [0, 2, 3]
    assert len(set(pairs.losers.tolist()) & {1, 4, 5, 6}) == 3
    for fragments, n in (("drop", 2), ("piece", 6), ("fail", 2)):
        idx, stands = balanced_singles(col, fragments=fragments)
        assert len(idx) == n and int(stands.sum()) == n // 2 and 7 not in idx.tolist()
    idx, stands = balanced_singles(col, fragments="fail")
    assert idx[stands].tolist() == [0]  # a fragmented sample never passes


def test_singles_are_balanced_within_each_condition():
    from generators.align.collect import Collection, SampleRecord

    def rec(i, condition, passed):
        return SampleRecord(
            index=i, condition=condition, label=0, seed=i, valid=True, passed=passed,
            score=float(passed), details={}, error=None,
        )  # fmt: skip

    # "a": 1 stands, 3 fall; "b": 4 stand, 1 falls; "c": all 3 fall (nothing to prefer)
    plan = [("a", True), ("a", False), ("a", False), ("a", False)]
    plan += [("b", True)] * 4 + [("b", False)] + [("c", False)] * 3
    records = [rec(i, c, p) for i, (c, p) in enumerate(plan)]
    col = Collection(records=records, occupancy=torch.zeros(len(plan), R, R, R, dtype=torch.bool))
    idx, stands = balanced_singles(col, seed=3)
    cond = [records[i].condition for i in idx.tolist()]
    for c in ("a", "b"):
        mine = [s for s, k in zip(stands.tolist(), cond, strict=True) if k == c]
        assert sorted(mine) == [False, True]  # one of each: the smaller side sets the count
    assert "c" not in cond  # a condition that only falls is not pushed away from
    assert all(records[i].passed == s for i, s in zip(idx.tolist(), stands.tolist(), strict=True))
    with pytest.raises(ValueError, match="both passing and failing"):
        balanced_singles(Collection(records=records[-3:], occupancy=col.occupancy[-3:]))


def test_bad_conditions_are_named(pipe, tmp_path):
    with pytest.raises(ValueError, match="unknown conditions \\['mug'\\]"):
        collect(pipe, _config(tmp_path, conditions=("mug",)), progress=False)
    with pytest.raises(FileNotFoundError):
        load_collection(tmp_path / "nothing")


def test_stability_records_carry_tilt_and_margin(pipe, tmp_path):
    col = collect(pipe, _config(tmp_path), progress=False)
    for r in col.records:
        assert r.error is None and r.score == float(r.passed)
        # The simulator's verdict and the analytic margin agree on these clear-cut shapes.
        assert (r.details["support_margin"] > 0) == r.passed
        assert (r.details["tilt_deg"] < 20) == r.passed


def test_a_user_reward_plugs_in_and_its_failures_stay_local(pipe, tmp_path):
    from generators.align.reward import CallableReward

    def tall(mesh):
        height = float(mesh.vertices[:, 2].max() - mesh.vertices[:, 2].min())
        if height > 0.7:  # the overhang (8 voxels tall): this reward cannot judge it
            raise RuntimeError("too tall to judge")
        return height  # block 3/8 (fails the 0.5 mark), post 5/8 (passes)

    col = collect(pipe, _config(tmp_path), CallableReward(tall, threshold=0.5), progress=False)
    assert col.settings["reward"] == "tall"
    for r, occ in zip(col.records, col.occupancy, strict=True):
        if torch.equal(occ, OVERHANG[0] > 0):
            assert r.passed is None and "too tall" in r.error
        else:
            height = 3 / 8 if torch.equal(occ, BLOCK[0] > 0) else 5 / 8
            assert r.score == pytest.approx(height, abs=0.02)
            assert r.passed == (height > 0.5)
    # A bare function is wrapped the same way; a bool is the label itself.
    flat = collect(pipe, _config(tmp_path / "bool"), lambda m: True, progress=False)
    assert all(r.passed is True and r.score == 1.0 for r in flat.records)


def test_reward_validation():
    from generators.align.reward import CallableReward, StabilityReward, as_reward

    assert isinstance(as_reward(None), StabilityReward)
    with pytest.raises(TypeError, match="callable"):
        as_reward(3)
    with pytest.raises(ValueError, match="threshold"):
        CallableReward(lambda m: 1.0, threshold=float("nan"))
    with pytest.raises(TypeError, match="StabilityConfig"):
        StabilityReward(config={"trials": 2})
    judged = CallableReward(lambda m: float("nan")).judge([None])
    assert judged[0].passed is None and "non-finite" in judged[0].error


def test_passing_judges_once_with_a_cache_and_only_the_same_objects_and_settings(tmp_path):
    from generators.align.data import passing
    from generators.align.reward import Judgement, StabilityReward, as_reward
    from simkit.physics import StabilityConfig

    grids = torch.cat([BLOCK, OVERHANG, BLOCK]) > 0
    reward = StabilityReward(StabilityConfig(seed=3), workers=1, backend="serial")
    calls = []
    judge = reward.judge

    def spy(meshes):
        calls.append(len(meshes))
        return judge(meshes)

    reward.judge = spy
    cache = tmp_path / "cache"
    assert passing(grids, reward, cache=cache) == [0, 2]  # the block stands, the overhang not
    assert calls == [3] and len(list(cache.iterdir())) == 1
    assert passing(grids, reward, cache=cache) == [0, 2] and calls == [3]  # from the cache
    # Other objects, or other simulation settings, are judged afresh.
    assert passing(grids[:2], reward, cache=cache) == [0] and calls == [3, 2]
    other = StabilityReward(StabilityConfig(seed=3, tilt_threshold_deg=25.0), backend="serial")
    other.judge = spy
    assert passing(grids, other, cache=cache) == [0, 2] and calls == [3, 2, 3]
    assert len(list(cache.iterdir())) == 3

    # A judgement that errored is not cached (the next call judges again) ...
    flaky = StabilityReward(StabilityConfig(seed=4), backend="serial")
    flaky.judge = lambda meshes: [
        Judgement(True, 1.0), Judgement.failed("timeout"), *judge(meshes[2:])
    ]  # fmt: skip
    assert passing(grids, flaky, cache=cache) == [0, 2]
    assert len(list(cache.iterdir())) == 3
    # ... and neither is a user's reward, whose verdicts may depend on anything.
    tall = as_reward(lambda m: bool(m.vertices[:, 2].max() > 0.5))
    assert passing(grids, tall, cache=cache) == [1]
    assert len(list(cache.iterdir())) == 3
