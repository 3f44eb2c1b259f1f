"""``simkit pde generate`` end to end, with the real solvers on tiny grids."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from simkit.cli.pde import pde
from solvers.numerics import data as D
from solvers.numerics.data import PDEDataset, burgers_initial_condition, sample_seed

DS_ARGS = ["--pde", "diffusion-sorption", "--resolution", "64", "--times", "11"]
NS_ARGS = ["--pde", "navier-stokes", "--resolution", "16", "--times", "5"]
NS_ARGS += ["--t-final", "0.5", "--dt", "0.01"]


def _run(*args: str):
    return CliRunner().invoke(pde, ["generate", *args], catch_exceptions=False)


def _json(result) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _arrays(path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        return {k: f[k]["data"][()] for k in f}


def test_module_import_is_light():
    code = "import sys, simkit.cli.pde; print('torch' in sys.modules, 'h5py' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["False", "False"]


def test_generate_diffusion_sorption_pdebench_layout(tmp_path):
    pytest.importorskip("solvers.numerics.diffusion_sorption")
    from solvers.numerics.diffusion_sorption import solve_diffusion_sorption
    from solvers.pdes.diffusion_sorption import initial_condition

    out = tmp_path / "ds.h5"
    args = [*DS_ARGS, "--n", "3", "--batch-size", "2", "--seed", "7", "--device", "cpu"]
    summary = _json(_run(*args, "--out", str(out), "--json"))
    assert summary["path"] == str(out) and summary["n_samples"] == 3
    assert summary["generated"] == 3 and summary["config"]["resolution"] == 64

    # plain h5py, PDEBench's layout
    with h5py.File(out, "r") as f:
        assert list(f) == ["0000", "0001", "0002"]
        g = f["0002"]
        assert g["data"].shape == (11, 64, 1) and g["data"].dtype == np.float32
        np.testing.assert_allclose(g["grid/x"][()], (np.arange(64) + 0.5) / 64, rtol=1e-6)
        np.testing.assert_allclose(g["grid/t"][()], np.linspace(0, 500, 11), rtol=1e-6)
        data = {k: f[k]["data"][()][..., 0] for k in f}

    # an independent run of the solver on the same initial conditions and batches
    def ic(i):
        g = torch.Generator().manual_seed(sample_seed(7, i))
        return initial_condition(1, 64, generator=g, dtype=torch.float64)

    t = torch.linspace(0, 500, 11, dtype=torch.float64)
    for batch in ([0, 1], [2]):
        sol = solve_diffusion_sorption(torch.cat([ic(i) for i in batch]), t)
        for b, i in enumerate(batch):
            np.testing.assert_allclose(data[f"{i:04d}"], sol.u[b].numpy(), rtol=1e-6, atol=1e-9)
    # physics: a constant U(0, 0.2) start, the inflow u = 1 at x = 0 filling in from the left
    for u in data.values():
        assert 0 <= u[0, 0] <= 0.2 and np.ptp(u[0]) == 0
        assert np.all(np.diff(u[:, 0]) > 0) and u[-1, 0] > 0.9
        assert u.min() >= -1e-6 and u.max() <= 1.0


def test_generate_navier_stokes(tmp_path):
    pytest.importorskip("solvers.numerics.navier_stokes")
    from solvers.pdes.navier_stokes import gaussian_random_field

    out = tmp_path / "ns.h5"
    summary = _json(_run(*NS_ARGS, "--n", "2", "--out", str(out), "--json"))
    assert summary["config"]["viscosity"] == 1e-4
    with h5py.File(out, "r") as f:
        assert f.attrs["nu"] == 1e-4
        g = f["0001"]
        assert g["data"].shape == (5, 16, 16, 1)
        for axis, n in (("t", 5), ("x", 16), ("y", 16)):
            assert g[f"grid/{axis}"].shape == (n,)
        np.testing.assert_allclose(g["grid/y"][()], np.arange(16) / 16)
        w = g["data"][()][..., 0].astype(np.float64)
    w0 = gaussian_random_field(
        1, 16, generator=torch.Generator().manual_seed(sample_seed(0, 1)), dtype=torch.float64
    )
    np.testing.assert_allclose(w[0], w0[0].numpy(), rtol=1e-6, atol=1e-6)
    # zero-mean vorticity stays zero-mean; unforced viscous flow loses enstrophy
    assert np.abs(w.mean(axis=(1, 2))).max() < 1e-6
    enstrophy = (w**2).mean(axis=(1, 2))
    assert np.all(np.diff(enstrophy) <= 1e-6 * enstrophy[0])
    ds = PDEDataset(out)
    assert ds.spatial_dims == 2 and ds[0]["data"].shape == (5, 16, 16, 1)


def test_generate_burgers(tmp_path):
    pytest.importorskip("solvers.numerics.burgers")
    out = tmp_path / "b.h5"
    args = ["--pde", "burgers", "--n", "2", "--resolution", "32", "--times", "6"]
    summary = _json(_run(*args, "--out", str(out), "--seed", "2", "--json"))
    assert summary["config"]["viscosity"] == 0.05
    with h5py.File(out, "r") as f:
        x = f["0000/grid/x"][()].astype(np.float64)
        u = f["0000/data"][()][..., 0].astype(np.float64)
    np.testing.assert_allclose(x, 2 * math.pi * np.arange(32) / 32, rtol=1e-6)
    u0 = burgers_initial_condition(
        torch.arange(32, dtype=torch.float64) * (2 * math.pi / 32),
        torch.Generator().manual_seed(sample_seed(2, 0)),
    )
    np.testing.assert_allclose(u[0], u0.numpy(), rtol=1e-6, atol=1e-6)
    # periodic Burgers conserves the mean of u
    np.testing.assert_allclose(u.mean(axis=1), u[0].mean(), atol=1e-6)


def test_resume_after_interruption_and_refused_config(tmp_path, monkeypatch):
    pytest.importorskip("solvers.numerics.diffusion_sorption")
    args = [*DS_ARGS, "--n", "5", "--batch-size", "2", "--seed", "1"]
    ref = tmp_path / "ref.h5"
    _json(_run(*args, "--out", str(ref), "--json"))

    out = tmp_path / "run.h5"
    real = D._simulate_chunk
    calls: list[list[int]] = []

    def interrupted(config, indices, device):
        calls.append(list(indices))
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C during the second batch
        return real(config, indices, device)

    monkeypatch.setattr(D, "_simulate_chunk", interrupted)
    result = CliRunner().invoke(pde, ["generate", *args, "--out", str(out)])
    assert result.exit_code == 1 and "Aborted" in result.output
    partial = tmp_path / "run.h5.partial"
    assert partial.exists() and not out.exists()
    with h5py.File(partial, "r") as f:
        assert sorted(f) == ["0000", "0001"]
    with pytest.raises(ValueError, match="incomplete"):
        PDEDataset(partial)

    monkeypatch.setattr(D, "_simulate_chunk", real)
    refused = _run(*args[:-1], "2", "--out", str(out), "--json")  # --seed 2
    assert refused.exit_code == 1
    assert "different config (seed: file has 1, asked for 2)" in refused.output
    refused = _run(*args, "--out", str(out), "--batch-size", "4")
    assert refused.exit_code == 1 and "batch_size" in refused.output

    summary = _json(_run(*args, "--out", str(out), "--json"))
    assert summary["resumed_from"] == 2 and summary["generated"] == 3
    assert out.exists() and not partial.exists()
    a, b = _arrays(ref), _arrays(out)
    assert list(a) == list(b) == [f"{i:04d}" for i in range(5)]
    for k in a:
        assert a[k].tobytes() == b[k].tobytes(), k

    again = _run(*args, "--out", str(out))  # already complete: nothing to do
    assert again.exit_code == 0 and "0 simulated" in again.output and "wrote" in again.output


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--pde", "heat", "--n", "1"], 2, "Invalid value for '--pde'"),
        (["--pde", "burgers", "--n", "0"], 2, "--n"),
        (
            ["--pde", "diffusion-sorption", "--n", "1", "--viscosity", "0.1"],
            1,
            "viscosity applies to navier-stokes and burgers",
        ),
        (["--pde", "navier-stokes", "--n", "1", "--resolution", "15"], 1, "must be even"),
        (["--pde", "burgers", "--n", "1", "--device", "tpu"], 2, "--device"),
    ],
)
def test_bad_arguments(tmp_path, args, code, message):
    result = CliRunner().invoke(pde, ["generate", *args, "--out", str(tmp_path / "x.h5")])
    assert result.exit_code == code, result.output
    assert message in result.output
    assert not (tmp_path / "x.h5").exists()
