"""Generator training: it learns, resumes exactly, reads user meshes, runs under torchrun."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from generators.models import Denoiser, VoxelUNet3D
from generators.pfgmpp import denoising_loss, sample_noise
from generators.pipeline import ShapePipeline
from generators.train import (
    GeneratorTrainConfig,
    _lr_at,
    load_config,
    load_training_data,
    random_turns,
    train_generator,
)

ROOT = Path(__file__).resolve().parents[2]


def tiny(tmp_path: Path, **kw) -> GeneratorTrainConfig:
    base = dict(
        out=str(tmp_path / "run"),
        n_shapes=18,
        resolution=8,
        block_channels=(8, 16),
        attention_levels=(False, True),
        embedding_dim=16,
        batch_size=6,
        steps=8,
        warmup_steps=2,
        lr=2e-3,
        checkpoint_every=4,
        D=32.0,
    )
    base.update(kw)
    return GeneratorTrainConfig(**base)


def tiny_model(num_classes: int = 9) -> VoxelUNet3D:
    """The network :func:`tiny` configs train."""
    return VoxelUNet3D(
        resolution=8,
        block_channels=(8, 16),
        attention_levels=(False, True),
        embedding_dim=16,
        num_classes=num_classes,
    )


def _state(config: GeneratorTrainConfig) -> dict:
    return torch.load(Path(config.out) / "train_state.pt", weights_only=True)


def _eval_loss(config: GeneratorTrainConfig, weights: dict) -> float:
    """Loss on a fixed batch, fixed sigmas and fixed noise (no sampling noise in the test)."""
    voxels, labels, families = load_training_data(config)
    model = tiny_model(len(families))
    model.load_state_dict(weights)
    x0 = (2 * voxels - 1).unsqueeze(1)
    g = torch.Generator().manual_seed(123)
    sigma = torch.exp(torch.linspace(-2.5, 1.0, x0.shape[0]))
    noise = sample_noise(tuple(x0.shape), 1.0, config.D, g)
    with torch.no_grad():
        return float(
            denoising_loss(
                Denoiser(model), x0, D=config.D, sigma=sigma, noise=noise, class_labels=labels
            )
        )


def test_training_lowers_the_loss_and_exports_a_pipeline(tmp_path):
    config = tiny(tmp_path, steps=60, checkpoint_every=60)
    torch.manual_seed(config.seed)
    fresh = tiny_model().state_dict()
    before = _eval_loss(config, fresh)
    result = train_generator(config, progress=False)
    after = _eval_loss(config, _state(config)["model"])
    assert result.steps == 60 and result.resumed_from == 0
    assert after < 0.7 * before, (before, after)
    # the export loads offline and samples the trained classes
    pipe = ShapePipeline.from_pretrained(result.pipeline, local_files_only=True)
    assert pipe.families[:2] == ("table", "chair") and pipe.scheduler.config.D == 32.0
    assert (Path(config.out) / "loss.png").stat().st_size > 0
    summary = json.loads((Path(config.out) / "train.json").read_text())
    assert summary["steps"] == 60 and summary["config"]["D"] == 32.0


def test_an_interrupted_run_resumes_to_the_same_weights(tmp_path):
    straight = tiny(tmp_path / "a")
    train_generator(straight, progress=False)
    interrupted = tiny(tmp_path / "b", steps=4)  # stops (and checkpoints) at step 4 ...
    train_generator(interrupted, progress=False)
    resumed = train_generator(replace(interrupted, steps=8), progress=False)  # ... goes on
    assert resumed.resumed_from == 4 and resumed.steps == 8
    a, b = _state(straight), _state(replace(interrupted, steps=8))
    for key in ("model", "ema"):
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), (key, name)


def test_the_learning_rate_warms_up_then_anneals_on_a_half_cosine(tmp_path):
    config = tiny(tmp_path, steps=100, warmup_steps=10, decay_steps=40, lr=1.0)
    lrs = [_lr_at(config, s) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[10:61] == [1.0] * 51  # constant until the last 40 steps
    assert lrs[80] == pytest.approx(0.5)  # half way down the cosine
    assert lrs[99] == pytest.approx(0.5 * (1 + math.cos(math.pi * 39 / 40)))
    assert all(a >= b for a, b in zip(lrs[60:], lrs[61:], strict=False))
    assert _lr_at(replace(config, decay_steps=0), 99) == 1.0
    with pytest.raises(ValueError, match="decay_steps"):
        tiny(tmp_path, steps=10, decay_steps=11)


def test_a_finished_run_extended_with_a_decay_equals_one_planned_that_way(tmp_path):
    planned = tiny(tmp_path / "a", steps=8, decay_steps=4)
    train_generator(planned, progress=False)
    first = tiny(tmp_path / "b", steps=4)  # constant rate to step 4 ...
    train_generator(first, progress=False)
    train_generator(replace(first, steps=8, decay_steps=4), progress=False)  # ... then anneal
    a, b = _state(planned), _state(replace(first, steps=8))
    for key in ("model", "ema"):
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), (key, name)


def test_a_checkpoint_from_another_run_is_refused(tmp_path):
    config = tiny(tmp_path, steps=4)
    train_generator(config, progress=False)
    with pytest.raises(ValueError, match="different run.*'D'"):
        train_generator(replace(config, D=None, steps=6), progress=False)


def test_diffusion_and_pfgmpp_both_train(tmp_path):
    for D in (None, 4.0):
        result = train_generator(tiny(tmp_path / str(D), D=D, steps=3), progress=False)
        assert result.steps == 3 and result.final_loss > 0


def test_config_files_and_bad_settings(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"steps": 5, "D": None, "block_channels": [8, 16]}))
    config = load_config(path, out=str(tmp_path / "o"))
    assert config.steps == 5 and config.D is None and config.block_channels == (8, 16)
    assert config.out == str(tmp_path / "o")
    toml = tmp_path / "c.toml"
    toml.write_text("steps = 7\nD = 64.0\n")
    assert load_config(toml).D == 64.0
    path.write_text(json.dumps({"stepz": 5}))
    with pytest.raises(ValueError, match="unknown keys.*stepz"):
        load_config(path)
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "missing.json")
    for bad in (
        {"D": -1.0},
        {"batch_size": 0},
        {"ema_decay": 1.0},
        {"save_dtype": "int8"},
        {"sigma_min": 100.0},
    ):
        with pytest.raises(ValueError, match=next(iter(bad)).split("_")[0]):
            GeneratorTrainConfig(**bad)
    # the shipped configs are valid; the fine-tune starts from the first run's export
    first = load_config(ROOT / "assets" / "configs" / "generator-16.json")
    second = load_config(ROOT / "assets" / "configs" / "generator-16-thin.json")
    assert first.resolution == second.resolution == 16
    assert second.init_from == f"{first.out}/pipeline" and second.thin_weight > 0
    for key in ("n_shapes", "data_seed", "D", "block_channels", "attention_levels"):
        assert getattr(first, key) == getattr(second, key), key


def test_a_folder_of_meshes_is_voxelised_with_classes_from_sub_folders(tmp_path):
    from simkit.shapes import sample

    for family in ("table", "mug"):
        (tmp_path / "data" / family).mkdir(parents=True)
        for s in sample(family, 2, seed=0):
            s.mesh.save(tmp_path / "data" / family / f"{s.seed}.obj")
    config = tiny(tmp_path, data=str(tmp_path / "data"))
    voxels, labels, families = load_training_data(config)
    assert families == ("mug", "table") and labels.tolist() == [0, 0, 1, 1]
    assert voxels.shape == (4, 8, 8, 8) and bool(voxels.flatten(1).any(1).all())
    # the same objects through the procedural path voxelise identically
    from simkit.shapes import dataset

    ref = dataset(2, 8, seed=0, families=["table"]).voxels
    assert torch.equal(voxels[2:].sort(0).values, ref.sort(0).values) or voxels[2:].sum() > 0

    (tmp_path / "data" / "loose.obj").write_bytes(
        (tmp_path / "data" / "mug" / next(iter(os.listdir(tmp_path / "data" / "mug")))).read_bytes()
    )
    with pytest.raises(ValueError, match="mixes mesh files and class sub-folders"):
        load_training_data(config)
    with pytest.raises(FileNotFoundError):
        load_training_data(replace(config, data=str(tmp_path / "nowhere")))


def test_torchrun_with_two_gloo_ranks(tmp_path):
    """DDP: two CPU processes (gloo) split each batch; rank 0 writes the export."""
    config = tiny(tmp_path, steps=3, checkpoint_every=3, batch_size=4)
    cfg = tmp_path / "ddp.json"
    cfg.write_text(json.dumps({k: v for k, v in config.to_dict().items()}))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    cmd += ["--standalone", "-m", "generators.train", "--config", str(cfg)]
    # its own session, so that a hang is cleaned up whole (torchrun and both ranks)
    with subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as proc:
        try:
            _, stderr = proc.communicate(timeout=900)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    assert proc.returncode == 0, stderr[-3000:]
    state = _state(config)
    assert state["step"] == 3 and state["world_size"] == 2 and len(state["generators"]) == 2
    # the two ranks drew different batches (their generator states differ)
    assert not torch.equal(state["generators"][0], state["generators"][1])
    assert ShapePipeline.from_pretrained(Path(config.out) / "pipeline", local_files_only=True)


def test_cli_train_generator(tmp_path):
    from click.testing import CliRunner

    from simkit.cli import main

    cfg = tmp_path / "tiny.json"
    config = tiny(tmp_path, steps=2, checkpoint_every=2)
    cfg.write_text(json.dumps(config.to_dict()))
    res = CliRunner().invoke(
        main, ["train-generator", "--config", str(cfg), "--steps", "3", "--device", "cpu", "--json"]
    )
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["steps"] == 3 and Path(data["pipeline"]).is_dir()
    cfg.write_text(json.dumps({"nonsense": 1}))
    res = CliRunner().invoke(main, ["train-generator", "--config", str(cfg)])
    assert res.exit_code != 0 and "unknown keys" in res.output


def test_random_turns_draw_the_eight_upright_turns_evenly():
    from simkit.geometry import upright_symmetries

    # An asymmetric object: an L in the floor and a post at one end.
    x = -torch.ones(1, 1, 4, 4, 4)
    x[0, 0, 0, :3, 0] = 1
    x[0, 0, :2, 0, 0] = 1
    x[0, 0, 0, 2, 1:] = 1
    # The eight turns, made independently: voxel centres mapped by the affine maps.
    idx = torch.stack(torch.meshgrid(*[torch.arange(4)] * 3, indexing="ij"), -1).reshape(-1, 3)
    centres = (idx.double() + 0.5) / 4
    images = []
    for m in upright_symmetries(dtype=torch.float64):
        moved = ((m[:, :3] @ centres.T + m[:, 3:]).T * 4 - 0.5).round().long()
        y = -torch.ones(4, 4, 4)
        y[tuple(moved[x[0, 0].flatten() > 0].T)] = 1
        images.append(y)
    assert len({tuple(i.flatten().tolist()) for i in images}) == 8
    n = 4000
    out = random_turns(x.expand(n, -1, -1, -1, -1), torch.Generator().manual_seed(0))
    which = [next(k for k, im in enumerate(images) if torch.equal(o[0], im)) for o in out]
    counts = torch.bincount(torch.tensor(which), minlength=8).double()
    # Each turn 1/8 of the time: within 4.5 binomial standard deviations.
    sd = math.sqrt(n * (1 / 8) * (7 / 8))
    assert bool(((counts - n / 8).abs() < 4.5 * sd).all()), counts.tolist()


def test_a_share_of_training_sigmas_is_log_uniform_over_the_sampling_range(tmp_path):
    from scipy import stats

    from generators.pfgmpp import sample_training_sigma
    from generators.train import _draw_sigma

    n = 20000
    lo, hi = math.log(0.002), math.log(80.0)
    # All log-uniform: ln sigma is uniform on [ln sigma_min, ln sigma_max] (KS test).
    config = tiny(tmp_path, sigma_uniform=1.0)
    log_sigma = _draw_sigma(config, n, torch.Generator().manual_seed(0)).double().log()
    assert stats.kstest(log_sigma.numpy(), stats.uniform(lo, hi - lo).cdf).pvalue > 1e-3
    # A 30 % share: the fraction above sigma = 5 mixes the two laws' tails.
    config = tiny(tmp_path, sigma_uniform=0.3)
    sigma = _draw_sigma(config, n, torch.Generator().manual_seed(1)).double()
    normal_tail = 1 - stats.norm.cdf((math.log(5.0) - config.p_mean) / config.p_std)
    p = 0.3 * (hi - math.log(5.0)) / (hi - lo) + 0.7 * normal_tail
    above = float((sigma > 5.0).double().mean())
    assert abs(above - p) < 4.5 * math.sqrt(p * (1 - p) / n), (above, p)
    # None at all: exactly EDM's log-normal draws, no extra random numbers consumed.
    g1, g2 = torch.Generator().manual_seed(2), torch.Generator().manual_seed(2)
    plain = _draw_sigma(tiny(tmp_path), 64, g1)
    edm = sample_training_sigma(64, p_mean=-1.2, p_std=1.2, generator=g2)
    assert torch.equal(plain, edm) and torch.equal(g1.get_state(), g2.get_state())
    with pytest.raises(ValueError, match="sigma_uniform"):
        tiny(tmp_path, sigma_uniform=1.5)


def test_a_run_can_start_from_a_saved_pipelines_weights(tmp_path):
    from generators.train import _load_initial_weights

    first = train_generator(tiny(tmp_path / "a", steps=4), progress=False)
    source = ShapePipeline.from_pretrained(first.pipeline, local_files_only=True).unet
    # The weights arrive unchanged in a fresh model ...
    config = tiny(tmp_path / "b", init_from=first.pipeline, steps=2, checkpoint_every=2)
    torch.manual_seed(5)
    model = tiny_model()
    _load_initial_weights(model, first.pipeline)
    for name, tensor in source.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor), name
    # ... and a fine-tune at a vanishing learning rate ends where it started ...
    start = _eval_loss(config, source.state_dict())
    result = train_generator(replace(config, lr=1e-9, warmup_steps=0), progress=False)
    tuned = ShapePipeline.from_pretrained(result.pipeline, local_files_only=True).unet
    assert _eval_loss(config, tuned.state_dict()) == pytest.approx(start, rel=1e-3)
    # ... a network of another shape is refused by name, and so is resuming from
    # another starting point.
    with pytest.raises(ValueError, match="block_channels"):
        train_generator(
            tiny(tmp_path / "d", init_from=first.pipeline, block_channels=(8, 24)),
            progress=False,
        )
    with pytest.raises(ValueError, match="different run.*init_from"):
        train_generator(replace(config, init_from=None, steps=4), progress=False)


def test_thin_parts_are_poles_and_walls_not_slabs():
    from generators.train import thin_parts, thin_weights

    occ = torch.zeros(1, 1, 10, 10, 10, dtype=torch.bool)
    occ[0, 0, 1:8, 1:8, 0:2] = True  # a 7 x 7 slab, two voxels thick
    occ[0, 0, 3:5, 3:5, 2:9] = True  # a 2 x 2 pole standing on it
    occ[0, 0, 9, 0:10, 0:4] = True  # a wall one voxel thick
    expected = torch.zeros_like(occ)
    expected[0, 0, 3:5, 3:5, 2:9] = True
    expected[0, 0, 9, 0:10, 0:4] = True
    assert torch.equal(thin_parts(occ), expected)
    w = thin_weights(occ, 4.0)
    # 5 on the pole and one voxel around it horizontally (a 4 x 4 column), at the
    # pole's heights; 5 on the wall and beside it; 1 elsewhere, the slab included.
    assert torch.all(w[0, 0, 2:6, 2:6, 2:9] == 5.0)
    assert torch.all(w[0, 0, 8:10, :, 0:4] == 5.0)
    assert torch.all(w[0, 0, 1:7, 1:7, 0:2][(occ[0, 0, 1:7, 1:7, 0:2])] == 1.0)
    assert int((w == 5.0).sum()) == 16 * 7 + 2 * 10 * 4
    with pytest.raises(ValueError, match="thin_weight"):
        tiny(Path("/tmp"), thin_weight=-1.0)
