"""Training and evaluation of PI-SC / PI-HC / PI-HC-MoE on tiny generated data, and the CLI."""

from __future__ import annotations

import json
import math

import pytest
import torch
from click.testing import CliRunner

from simkit.cli.pde import pde
from solvers.numerics.data import DatasetConfig, generate_dataset
from solvers.train import PDETrainConfig, evaluate, train

TINY = dict(
    width=8, n_layers=2, modes=(4, 4), n_basis=6, n_points=120, batch_size=2, checkpoint_every=2
)


@pytest.fixture(scope="module")
def ds_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "ds.h5"
    generate_dataset(
        DatasetConfig(pde="diffusion-sorption", n=6, resolution=32, n_times=9, seed=0),
        path,
        progress=False,
    )
    return path


@pytest.fixture(scope="module")
def ns_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "ns.h5"
    generate_dataset(
        DatasetConfig(
            pde="navier-stokes", n=2, resolution=8, n_times=4, t_final=0.3, dt=0.01, seed=0
        ),
        path,
        progress=False,
    )
    return path


def test_short_training_lowers_the_loss(ds_file, tmp_path):
    cfg = PDETrainConfig(pde="diffusion-sorption", method="hc", steps=10, lr=3e-3, **TINY)
    result = train(cfg, ds_file, tmp_path / "run", progress=False)
    assert len(result.losses) == 10 and all(math.isfinite(v) for v in result.losses)
    assert sum(result.losses[-3:]) / 3 < 0.9 * sum(result.losses[:3]) / 3
    assert 0 < result.lm_iterations_mean <= cfg.max_iterations
    assert result.not_converged_fraction == 0.0
    assert (tmp_path / "run" / "checkpoint.pt").is_file()
    assert (tmp_path / "run" / "model" / "config.json").is_file()


def test_resume_repeats_an_uninterrupted_run(ds_file, tmp_path):
    base = dict(pde="diffusion-sorption", method="hc-moe", experts=(1, 2), **TINY)
    full = train(PDETrainConfig(steps=4, **base), ds_file, tmp_path / "a", progress=False)
    train(PDETrainConfig(steps=2, **base), ds_file, tmp_path / "b", progress=False)
    resumed = train(PDETrainConfig(steps=4, **base), ds_file, tmp_path / "b", progress=False)
    assert resumed.resumed_from == 2
    assert resumed.losses == pytest.approx(full.losses, rel=1e-9)
    with pytest.raises(ValueError, match="different config"):
        train(
            PDETrainConfig(steps=4, **{**base, "n_basis": 5}),
            ds_file,
            tmp_path / "b",
            progress=False,
        )


def test_soft_constraint_and_evaluation(ds_file, tmp_path):
    cfg = PDETrainConfig(pde="diffusion-sorption", method="sc", steps=2, **TINY)
    train(cfg, ds_file, tmp_path / "sc", progress=False)
    ev = evaluate(tmp_path / "sc", ds_file)
    assert len(ev.rel_l2) == 6 and all(0 < e < 10 for e in ev.rel_l2)
    assert math.isnan(ev.lm_iterations_mean)
    assert (tmp_path / "sc" / "eval.png").stat().st_size > 1000


def test_navier_stokes_hard_constraint_trains_and_gradients_reach_the_fno(ns_file, tmp_path):
    cfg = PDETrainConfig(
        pde="navier-stokes",
        method="hc-moe",
        experts=(1, 2, 2),
        steps=1,
        width=8,
        n_layers=1,
        modes=(2, 4, 4),
        n_basis=4,
        n_points=16,
        batch_size=2,
    )
    result = train(cfg, ns_file, tmp_path / "ns", progress=False)
    assert math.isfinite(result.final_loss)
    # the FNO's weights moved: gradients came through the implicit backward
    from solvers.operators.fno import BasisFNO

    torch.manual_seed(cfg.seed)
    from solvers.train import _build_model, load_dataset

    fresh = _build_model(cfg, load_dataset(ns_file, cfg.pde).attrs)
    trained = BasisFNO.from_pretrained(tmp_path / "ns" / "model")
    moved = [
        not torch.equal(a, b)
        for a, b in zip(fresh.state_dict().values(), trained.state_dict().values(), strict=True)
        if isinstance(a, torch.Tensor) and (a.is_floating_point() or a.is_complex())
    ]
    assert sum(moved) >= len(moved) // 2


def test_cli_train_then_eval(ds_file, tmp_path):
    run = tmp_path / "cli"
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in TINY.items()}))
    r = CliRunner().invoke(
        pde,
        [
            "train",
            "--pde",
            "diffusion-sorption",
            "--method",
            "hc-moe",
            "--experts",
            "2",
            "--data",
            str(ds_file),
            "--config",
            str(cfg),
            "--steps",
            "2",
            "--out",
            str(run),
            "--device",
            "cpu",
            "--json",
        ],
        catch_exceptions=False,
    )
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["steps"] == 2 and out["config"]["experts"] == [1, 2]
    r = CliRunner().invoke(
        pde,
        ["eval", "--checkpoint", str(run), "--data", str(ds_file), "--device", "cpu", "--json"],
        catch_exceptions=False,
    )
    assert r.exit_code == 0, r.output
    ev = json.loads(r.stdout)
    assert len(ev["rel_l2"]) == 6 and ev["not_converged_fraction"] == 0.0
    assert ev["png"].endswith("eval.png")
    bad = CliRunner().invoke(
        pde,
        [
            "train",
            "--pde",
            "diffusion-sorption",
            "--method",
            "hc",
            "--experts",
            "3",
            "--data",
            str(ds_file),
            "--out",
            str(tmp_path / "x"),
        ],
    )
    assert bad.exit_code != 0 and "--experts" in bad.output


def test_shipped_configs_parse():
    from pathlib import Path

    folder = Path(__file__).resolve().parents[2] / "assets" / "configs"
    files = sorted(folder.glob("pihc-*.json"))
    assert len(files) == 4
    for f in files:
        d = {k: v for k, v in json.loads(f.read_text()).items() if not k.startswith("_")}
        pde_name = "navier-stokes" if "-ns-" in f.name else "diffusion-sorption"
        for method in ("sc", "hc", "hc-moe"):
            PDETrainConfig.from_dict({**d, "pde": pde_name, "method": method})
