"""The PDEBench-layout dataset writer and reader (solvers.numerics.data)."""

from __future__ import annotations

import json
import math

import h5py
import numpy as np
import pytest
import torch

from solvers.numerics import data as D
from solvers.numerics.data import (
    DatasetConfig,
    PDEDataset,
    burgers_initial_condition,
    generate_dataset,
    partial_path,
    sample_seed,
)

# --------------------------------------------------------------------------------------
# A fake simulator: the writer's logic is tested without the solvers. Each sample's
# trajectory is a function of its own seed only, so resumed and uninterrupted files agree
# exactly when (and only when) the writer hands every sample the right seed.
# --------------------------------------------------------------------------------------


class _Interrupt(Exception):
    pass


class FakeSimulator:
    def __init__(self, fail_on_call: int | None = None) -> None:
        self.calls: list[list[int]] = []
        self.fail_on_call = fail_on_call

    def __call__(self, config, indices, device, dtype):
        self.calls.append(list(indices))
        if self.fail_on_call is not None and len(self.calls) == self.fail_on_call:
            raise _Interrupt(f"simulated crash in batch {indices}")
        nx, nt = config.resolution, config.n_times
        rows = []
        for i in indices:
            g = torch.Generator().manual_seed(sample_seed(config.seed, i))
            rows.append(torch.rand(nt, nx, generator=g, dtype=torch.float64))
        return D._Chunk(
            data=torch.stack(rows).numpy(),
            grids={
                "t": np.linspace(0.0, config.t_final, nt),
                "x": (np.arange(nx) + 0.5) / nx,
            },
        )


@pytest.fixture
def fake(monkeypatch):
    sim = FakeSimulator()
    monkeypatch.setitem(D._SIMULATORS, "diffusion-sorption", sim)
    return sim


def _config(**kw) -> DatasetConfig:
    base = dict(pde="diffusion-sorption", n=7, resolution=16, n_times=5, seed=3, batch_size=3)
    return DatasetConfig(**{**base, **kw})


def _read_all(path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        return {k: f[k]["data"][()] for k in f}


# --------------------------------------------------------------------------------------
# DatasetConfig
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pde", "resolution", "n_times", "t_final"),
    [
        ("diffusion-sorption", 1024, 101, 500.0),
        ("navier-stokes", 64, 64, 5.0),
        ("burgers", 256, 101, 1.0),
    ],
)
def test_config_defaults(pde, resolution, n_times, t_final):
    c = DatasetConfig(pde=pde, n=2)
    assert (c.resolution, c.n_times, c.t_final) == (resolution, n_times, t_final)
    assert c.spatial_dims == (2 if pde == "navier-stokes" else 1)
    if pde == "diffusion-sorption":
        assert c.diffusivity == 5e-4 and c.viscosity is None and c.dt is None
    else:
        assert c.viscosity > 0 and c.diffusivity is None
    assert json.loads(json.dumps(c.to_dict()))["pde"] == pde
    with pytest.raises(AttributeError):
        c.n = 3  # frozen


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(pde="heat"), "pde must be one of"),
        (dict(n=0), "n must be >= 1"),
        (dict(n=2.5), "n must be an integer"),
        (dict(resolution=4), "resolution must be >= 8"),
        (dict(n_times=1), "n_times must be >= 2"),
        (dict(seed=-1), "seed must be >= 0"),
        (dict(batch_size=0), "batch_size"),
        (dict(t_final=-1.0), "t_final must be positive"),
        (dict(t_final=math.nan), "t_final must be positive"),
        (dict(viscosity=0.1), "viscosity applies to navier-stokes and burgers"),
        (dict(diffusivity=0.0), "diffusivity must be positive"),
        (dict(dt=1e-3), "dt applies to navier-stokes only"),
        (dict(precision="float16"), "precision must be"),
        (dict(pde="navier-stokes", diffusivity=1e-3), "diffusivity applies to diffusion-sorption"),
        (dict(pde="navier-stokes", viscosity=-1.0), "viscosity must be positive"),
        (dict(pde="navier-stokes", n_times=11, t_final=1.0, dt=0.5), "dt=0.5 exceeds"),
    ],
)
def test_config_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _config(**kwargs)


def test_sample_seed_depends_on_seed_and_index_only():
    assert sample_seed(3, 5) == sample_seed(3, 5)
    seeds = {sample_seed(s, i) for s in range(4) for i in range(50)}
    assert len(seeds) == 200
    assert all(0 <= s < 2**63 for s in seeds)


# --------------------------------------------------------------------------------------
# Writer
# --------------------------------------------------------------------------------------


def test_writer_layout_and_attributes(tmp_path, fake):
    out = tmp_path / "ds.h5"
    result = generate_dataset(_config(), out, progress=False)
    assert result.path == out and result.n_samples == 7 and result.generated == 7
    assert result.resumed_from == 0
    assert not partial_path(out).exists()
    # batches are the aligned ranges [0, 3), [3, 6), [6, 7)
    assert fake.calls == [[0, 1, 2], [3, 4, 5], [6]]
    with h5py.File(out, "r") as f:
        assert list(f.keys()) == [f"{i:04d}" for i in range(7)]
        assert bool(f.attrs["complete"]) and f.attrs["pde"] == "diffusion-sorption"
        assert json.loads(f.attrs["config"])["seed"] == 3
        assert f.attrs["D"] == 5e-4 and f.attrs["n_f"] == 0.874  # PDE parameters
        for i in range(7):
            g = f[f"{i:04d}"]
            assert g["data"].shape == (5, 16, 1) and g["data"].dtype == np.float32
            assert g["grid/x"].shape == (16,) and g["grid/t"].shape == (5,)
            assert bool(g.attrs["complete"])
            assert int(g.attrs["sample_seed"]) == sample_seed(3, i)
            expected = torch.rand(
                5,
                16,
                generator=torch.Generator().manual_seed(sample_seed(3, i)),
                dtype=torch.float64,
            )
            np.testing.assert_array_equal(g["data"][..., 0], expected.numpy().astype(np.float32))
        np.testing.assert_allclose(f["0000/grid/t"][()], np.linspace(0, 500, 5))


def test_group_names_widen_past_9999(tmp_path, fake):
    assert D._group_name(7, 12_000) == "00007"
    assert D._group_name(7, 10_000) == "0007"


def test_resume_after_interruption_is_byte_identical(tmp_path, monkeypatch):
    config = _config()
    # uninterrupted reference
    monkeypatch.setitem(D._SIMULATORS, "diffusion-sorption", FakeSimulator())
    ref = generate_dataset(config, tmp_path / "ref.h5", progress=False)

    out = tmp_path / "run.h5"
    crashing = FakeSimulator(fail_on_call=2)
    monkeypatch.setitem(D._SIMULATORS, "diffusion-sorption", crashing)
    with pytest.raises(_Interrupt):
        generate_dataset(config, out, progress=False)
    part = partial_path(out)
    assert part.exists() and not out.exists()
    with h5py.File(part, "r+") as f:
        assert sorted(f.keys()) == ["0000", "0001", "0002"] and not f.attrs["complete"]
        # a half-written sample (no 'complete' mark), as a crash mid-group would leave
        f.create_group("0003").create_dataset("data", data=np.full((5, 16, 1), 7.0))
    with pytest.raises(ValueError, match="incomplete"):
        PDEDataset(part)

    resumed = FakeSimulator()
    monkeypatch.setitem(D._SIMULATORS, "diffusion-sorption", resumed)
    result = generate_dataset(config, out, progress=False)
    assert result.resumed_from == 3 and result.generated == 4
    assert resumed.calls == [[3, 4, 5], [6]]  # the half-written 0003 was redone
    assert out.exists() and not part.exists()
    a, b = _read_all(ref.path), _read_all(out)
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].tobytes() == b[k].tobytes()


def test_resume_with_another_config_is_refused(tmp_path, monkeypatch):
    out = tmp_path / "run.h5"
    monkeypatch.setitem(D._SIMULATORS, "diffusion-sorption", FakeSimulator(fail_on_call=2))
    with pytest.raises(_Interrupt):
        generate_dataset(_config(), out, progress=False)
    monkeypatch.setitem(D._SIMULATORS, "diffusion-sorption", FakeSimulator())
    with pytest.raises(ValueError, match=r"different config \(seed: file has 3, asked for 4\)"):
        generate_dataset(_config(seed=4), out, progress=False)
    with pytest.raises(ValueError, match="resolution"):
        generate_dataset(_config(resolution=32), out, progress=False)
    # the device does not change the data: a resume on another device is allowed
    result = generate_dataset(_config(device="cpu:0"), out, progress=False)
    assert result.resumed_from == 3


def test_corrupt_partial_is_refused(tmp_path, fake):
    out = tmp_path / "run.h5"
    partial_path(out).write_bytes(b"not an hdf5 file at all")
    with pytest.raises(ValueError, match="corrupt or truncated"):
        generate_dataset(_config(), out, progress=False)


def test_existing_file_is_kept_refused_or_overwritten(tmp_path, fake):
    out = tmp_path / "ds.h5"
    generate_dataset(_config(), out, progress=False)
    n_calls = len(fake.calls)
    again = generate_dataset(_config(), out, progress=False)
    assert again.generated == 0 and len(fake.calls) == n_calls
    with pytest.raises(ValueError, match="different config"):
        generate_dataset(_config(seed=9), out, progress=False)
    replaced = generate_dataset(_config(seed=9, n=2), out, progress=False, overwrite=True)
    assert replaced.generated == 2
    with h5py.File(out, "r") as f:
        assert len(f) == 2 and json.loads(f.attrs["config"])["seed"] == 9


def test_non_finite_solver_output_is_an_error(tmp_path, monkeypatch):
    def bad(config, indices, device, dtype):
        chunk = FakeSimulator()(config, indices, device, dtype)
        chunk.data[-1, 2, 3] = np.nan
        return chunk

    monkeypatch.setitem(D._SIMULATORS, "diffusion-sorption", bad)
    with pytest.raises(RuntimeError, match=r"non-finite values for samples \[2\]"):
        generate_dataset(_config(), tmp_path / "x.h5", progress=False)


# --------------------------------------------------------------------------------------
# Reader
# --------------------------------------------------------------------------------------


def _write_pdebench_file(path, n=3, nt=4, nx=8):
    """A file exactly in the layout of PDEBench's released diffusion-sorption data."""
    rng = np.random.default_rng(0)
    arrays = rng.random((n, nt, nx, 1)).astype(np.float32)
    with h5py.File(path, "w") as f:
        for i in range(n):
            g = f.create_group(f"{i:04d}")
            g.create_dataset("data", data=arrays[i])
            g.create_dataset("grid/x", data=((np.arange(nx) + 0.5) / nx).astype(np.float32))
            g.create_dataset("grid/t", data=np.linspace(0, 500, nt).astype(np.float32))
    return arrays


def test_reader_on_pdebench_layout(tmp_path):
    path = tmp_path / "2D_diff-sorp_NA_NA.h5"
    arrays = _write_pdebench_file(path)
    ds = PDEDataset(path)
    assert len(ds) == 3 and ds.groups == ("0000", "0001", "0002") and ds.spatial_dims == 1
    item = ds[1]
    assert set(item) == {"data", "t", "x"}
    assert item["data"].shape == (4, 8, 1) and item["data"].dtype == torch.float32
    np.testing.assert_array_equal(item["data"].numpy(), arrays[1])
    np.testing.assert_allclose(item["x"].numpy(), (np.arange(8) + 0.5) / 8, rtol=1e-6)
    assert ds[-1]["data"].shape == (4, 8, 1)
    assert PDEDataset(path, dtype=torch.float64)[0]["t"].dtype == torch.float64
    sub = PDEDataset(path, groups=["0002", "0000"])
    np.testing.assert_array_equal(sub[0]["data"].numpy(), arrays[2])
    with pytest.raises(IndexError):
        ds[3]
    ds.close()


def test_reader_with_dataloader_workers(tmp_path):
    path = tmp_path / "pdebench.h5"
    arrays = _write_pdebench_file(path, n=4)
    ds = PDEDataset(path)
    ds[0]  # the parent opens a handle: workers must not reuse it
    loader = torch.utils.data.DataLoader(
        ds, batch_size=2, num_workers=2, multiprocessing_context="fork"
    )
    batches = [b["data"] for b in loader]
    np.testing.assert_array_equal(torch.cat(batches).numpy(), arrays)


def test_reader_reads_what_the_writer_wrote(tmp_path, fake):
    out = tmp_path / "ds.h5"
    generate_dataset(_config(n=4), out, progress=False)
    ds = PDEDataset(out)
    assert len(ds) == 4 and ds.attrs["pde"] == "diffusion-sorption" and ds.attrs["complete"]
    raw = _read_all(out)
    for i in range(4):
        np.testing.assert_array_equal(ds[i]["data"].numpy(), raw[f"{i:04d}"])


def test_reader_2d_layout(tmp_path):
    path = tmp_path / "ns.h5"
    with h5py.File(path, "w") as f:
        g = f.create_group("0000")
        g.create_dataset("data", data=np.zeros((3, 8, 6, 1), np.float32))
        for axis, n in (("t", 3), ("x", 8), ("y", 6)):
            g.create_dataset(f"grid/{axis}", data=np.arange(n, dtype=np.float32))
    ds = PDEDataset(path)
    assert ds.spatial_dims == 2
    item = ds[0]
    assert item["data"].shape == (3, 8, 6, 1) and item["y"].shape == (6,)


def test_reader_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        PDEDataset(tmp_path / "missing.h5")
    good = tmp_path / "good.h5"
    _write_pdebench_file(good)

    with pytest.raises(ValueError, match="no group"):
        PDEDataset(good, groups=["0000", "0007"])

    truncated = tmp_path / "truncated.h5"
    blob = good.read_bytes()
    truncated.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match="corrupt or truncated"):
        PDEDataset(truncated)

    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"\x00" * 4096)
    with pytest.raises(ValueError, match="not a readable HDF5 file"):
        PDEDataset(garbage)

    no_grid = tmp_path / "no_grid.h5"
    with h5py.File(no_grid, "w") as f:
        f.create_group("0000").create_dataset("data", data=np.zeros((2, 4, 1)))
    with pytest.raises(ValueError, match="no dataset 'grid/t'"):
        PDEDataset(no_grid)

    bad_shape = tmp_path / "bad_shape.h5"
    with h5py.File(bad_shape, "w") as f:
        g = f.create_group("0000")
        g.create_dataset("data", data=np.zeros((2, 4, 1)))
        g.create_dataset("grid/t", data=np.zeros(2))
        g.create_dataset("grid/x", data=np.zeros(5))
    with pytest.raises(ValueError, match=r"grid/x has shape \(5,\)"):
        PDEDataset(bad_shape)

    incomplete = tmp_path / "incomplete.h5"
    _write_pdebench_file(incomplete)
    with h5py.File(incomplete, "r+") as f:
        f.attrs["complete"] = False
    with pytest.raises(ValueError, match="marked incomplete"):
        PDEDataset(incomplete)

    with pytest.raises(ValueError, match="incomplete dataset"):
        PDEDataset(tmp_path / "x.h5.partial")


# --------------------------------------------------------------------------------------
# Burgers initial condition
# --------------------------------------------------------------------------------------


def test_burgers_initial_condition_is_periodic_seeded_and_zero_mean_perturbation():
    x = torch.arange(64, dtype=torch.float64) * (2 * math.pi / 64)
    u = burgers_initial_condition(x, torch.Generator().manual_seed(1))
    again = burgers_initial_condition(x, torch.Generator().manual_seed(1))
    other = burgers_initial_condition(x, torch.Generator().manual_seed(2))
    assert torch.equal(u, again) and not torch.equal(u, other)
    # periodic: the same function at x + 2 pi
    shifted = burgers_initial_condition(x + 2 * math.pi, torch.Generator().manual_seed(1))
    torch.testing.assert_close(u, shifted)
    # g has no constant mode and sin x has mean 0: the grid mean vanishes (exact quadrature)
    assert abs(float(u.mean())) < 1e-12
    # its Fourier content: sin x plus modes up to min(16, n // 4) only
    spectrum = torch.fft.rfft(u).abs() / 64
    assert float(spectrum[17:].max()) < 1e-12
    assert u.dtype == torch.float64
    with pytest.raises(ValueError, match="1D tensor"):
        burgers_initial_condition(x[:4])
