"""Training, checkpoints and the ``simkit pinn`` CLI (tiny settings; slow ones marked)."""

from __future__ import annotations

import importlib
import json
import math

import pytest
import torch
from click.testing import CliRunner

from simkit.cli.pinn import pinn
from solvers.pinns import (
    LagrangianPINNConfig,
    PINNConfig,
    PINNRunConfig,
    TrainConfig,
    build_model,
    evaluate,
    make_problem,
    run,
    train,
)

# the package re-exports the function ``train``, which shadows the submodule's name
train_mod = importlib.import_module("solvers.pinns.train")

TINY = dict(n_x=16, n_t=8, eval_n_x=64, eval_n_t=10, log_every=10)


def _initial_error(model) -> float:  # noqa: ANN001
    p = model.problem
    ex, et = p.domain.axis_coords((64, 10))
    return evaluate(model, ex, et, p.reference(ex.double(), et.double())).rel_l2


def test_short_lpinn_run_lowers_loss_and_error() -> None:
    p = make_problem("convection", beta=10.0)
    m = build_model(p, "lpinn", LagrangianPINNConfig(depth_u=2, width=20), seed=0)
    before = _initial_error(m)
    r = train(m, TrainConfig(adam_steps=150, lbfgs_steps=30, **TINY))
    assert r.history[0]["loss"] > 10 * r.final_loss
    assert r.rel_l2 < before / 5 and r.rel_l2 < 0.1
    assert r.adam_iterations == 150 and 0 < r.lbfgs_iterations <= 30
    assert r.evaluation.rel_l2_lagrangian is not None
    assert r.wall_time > 0 and math.isfinite(r.final_loss)


def test_short_pinn_run_float64_soft_ic_rar_causal() -> None:
    p = make_problem("convection", beta=1.0)
    m = build_model(p, "pinn", PINNConfig(width=20, depth=2), seed=1)
    before = _initial_error(m)
    cfg = TrainConfig(
        adam_steps=120,
        lbfgs_steps=20,
        dtype="float64",
        adam_lr=1e-2,
        rar_every=40,
        rar_points=5,
        rar_candidates=64,
        causal=True,
        causal_chunks=4,
        **TINY,
    )
    r = train(m, cfg)
    assert next(m.parameters()).dtype == torch.float64
    assert r.n_collocation == 16 * 8 + 2 * 5  # RAR at steps 40 and 80
    assert r.history[-1]["loss"] < r.history[0]["loss"] / 10
    assert r.rel_l2 < before


def test_norms_loss_and_patience() -> None:
    p = make_problem("convection", beta=5.0)
    m = build_model(p, "lpinn", LagrangianPINNConfig(ic="soft", width=16, depth_u=2), seed=0)
    r = train(m, TrainConfig(adam_steps=400, lbfgs_steps=0, loss="norms", patience=3, **TINY))
    assert r.stopped == "patience" and r.adam_iterations < 400


def test_checkpoint_resume_matches_uninterrupted(tmp_path, monkeypatch) -> None:  # noqa: ANN001
    p = make_problem("burgers", nu=0.05, C=1.0)
    cfg = TrainConfig(adam_steps=30, lbfgs_steps=10, lbfgs_chunk=5, checkpoint_every=10, **TINY)
    mc = LagrangianPINNConfig(width=12, depth_u=2, depth_x=1)
    straight = train(build_model(p, "lpinn", mc, seed=2), cfg)

    real_loss, calls = train_mod._loss, {"n": 0}

    def flaky(*args, **kwargs):  # noqa: ANN002, ANN003
        calls["n"] += 1
        if calls["n"] == 25:
            raise KeyboardInterrupt
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(train_mod, "_loss", flaky)
    m = build_model(p, "lpinn", mc, seed=2)
    with pytest.raises(KeyboardInterrupt):
        train(m, cfg, checkpoint_dir=tmp_path)
    monkeypatch.setattr(train_mod, "_loss", real_loss)
    assert (tmp_path / "checkpoint.pt").exists()
    resumed = train(build_model(p, "lpinn", mc, seed=2), cfg, checkpoint_dir=tmp_path)
    assert resumed.resumed_from == 20
    assert resumed.iterations == straight.iterations
    assert resumed.final_loss == pytest.approx(straight.final_loss, rel=1e-5)
    assert resumed.rel_l2 == pytest.approx(straight.rel_l2, rel=1e-5)
    # other settings in the same folder: refused
    with pytest.raises(ValueError, match="other settings"):
        train(
            build_model(p, "lpinn", mc, seed=2),
            TrainConfig(adam_steps=31, **TINY),
            checkpoint_dir=tmp_path,
        )


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: TrainConfig(n_x=0), "n_x"),
        (lambda: TrainConfig(dtype="float16"), "dtype"),
        (lambda: TrainConfig(adam_lr=-1.0), "adam_lr"),
        (lambda: PINNRunConfig(pde="wave"), "unknown pde"),
        (lambda: PINNRunConfig(model="fno"), "unknown model"),
        (lambda: PINNRunConfig(beta=-3.0).problem(), "beta"),
        (
            lambda: train(
                build_model(make_problem("convection"), "pinn"),
                TrainConfig(adam_steps=0, lbfgs_steps=0, **TINY),
                u_ref=torch.zeros(3, 3),
            ),
            "u_ref",
        ),
    ],
)
def test_bad_training_input(call, match: str) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match=match):
        call()


def test_cli_smoke_json_and_files(tmp_path) -> None:  # noqa: ANN001
    args = ["train", "--adam-steps", "30", "--lbfgs-steps", "5", "--n-x", "16", "--n-t", "8"]
    res = CliRunner().invoke(pinn, [*args, "--beta", "10", "--json", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert d["iterations"] == 35 and 0 < d["rel_l2"] < 2
    assert d["info"]["model"]["model"] == "lpinn" and d["info"]["problem"]["beta"] == 10.0
    assert (tmp_path / "fields.png").stat().st_size > 1000
    assert json.loads((tmp_path / "result.json").read_text())["rel_l2"] == d["rel_l2"]
    res = CliRunner().invoke(
        pinn, [*args, "--pde", "convection-diffusion", "--nu", "0.5", "--model", "pinn"]
    )
    assert res.exit_code == 0, res.output
    assert "relative L2" in res.output
    res = CliRunner().invoke(pinn, ["train", "--pde", "heat"])
    assert res.exit_code == 2 and "heat" in res.output
    res = CliRunner().invoke(pinn, ["train", "--beta", "-1", "--adam-steps", "1"])
    assert res.exit_code == 1 and "beta" in res.output


@pytest.mark.slow
def test_default_cpu_settings_show_the_failure_mode() -> None:
    """The note's CPU check at beta = 30: LPINN < 1e-2, PINN > 0.5 (a few minutes)."""
    lp = run(PINNRunConfig(pde="convection", model="lpinn", beta=30.0))
    assert lp.rel_l2 < 1e-2
    pn = run(PINNRunConfig(pde="convection", model="pinn", beta=30.0))
    assert pn.rel_l2 > 0.5


@pytest.mark.parametrize(
    ("pde", "model", "mc"),
    [
        ("convection-diffusion", "lpinn", LagrangianPINNConfig(width=8, depth_u=1, depth_x=1)),
        ("reaction-diffusion", "lpinn", LagrangianPINNConfig(width=8, depth_u=1, ic="soft")),
        ("reaction-diffusion", "pinn", PINNConfig(width=8, depth=1, fourier_features=4)),
        ("burgers", "lpinn", LagrangianPINNConfig(width=8, depth_u=1, diffusion="chain")),
    ],
)
def test_every_problem_trains_a_few_steps(pde: str, model: str, mc) -> None:  # noqa: ANN001
    cfg = PINNRunConfig(
        pde=pde,
        model=model,
        model_config=mc,
        train=TrainConfig(adam_steps=5, lbfgs_steps=3, **TINY),
    )
    r = run(cfg)
    assert math.isfinite(r.final_loss) and math.isfinite(r.rel_l2)
    assert r.history[0]["loss"] > r.final_loss


def test_cli_module_imports_no_torch() -> None:
    import subprocess
    import sys

    code = "import sys, simkit.cli.pinn; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
