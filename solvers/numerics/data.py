"""Datasets in PDEBench's HDF5 layout: a resumable, atomic writer and a lazy torch reader.

Layout (as PDEBench's released diffusion-sorption file, Takamoto et al. 2022): one HDF5
group per sample, named ``"0000"``, ``"0001"``, ... (zero-padded to at least 4 digits,
wider when ``n > 10000``), each holding

- ``data``: float32, ``(t, x, 1)`` for a 1D PDE, ``(t, x, y, 1)`` for a 2D one
  (``data[k, i, j, 0]`` is the field at ``(t_k, x_i, y_j)``);
- ``grid/t`` ``(t,)``, ``grid/x`` ``(x,)`` and, in 2D, ``grid/y`` ``(y,)``, float32.

What this writer adds on top (a PDEBench reader ignores it):

- **File attributes**: ``simkit_format`` (1), ``pde``, ``n_samples``, ``config`` (the
  :class:`DatasetConfig` as JSON), ``complete`` (``False`` until the last sample is
  written) and the PDE's parameters under their own names (diffusion-sorption: ``D``,
  ``porosity``, ``rho_s``, ``k_f``, ``n_f``, ``solubility``, ``length``, ``t_final``;
  Navier-Stokes: the fields of ``NavierStokesParams``; Burgers: ``nu``, ``length``).
- **Group attributes**: ``sample_seed`` (the seed that drew the sample's initial condition)
  and ``complete`` (``True``, written last, after the datasets).

Resumability. The writer fills ``<out>.partial`` beside the final file, flushes after every
batch and renames it to ``<out>`` only once every sample is in (the rename is atomic on
POSIX, so a file under the final name is always complete). Re-running with the same
config resumes: groups without ``complete`` (half written when the run stopped) are
dropped and only the missing samples are simulated. A resume whose config differs in
anything that changes the data is refused. Sample ``i``'s initial condition is drawn from
a generator seeded by ``(seed, i)`` only, and batches are always the same index ranges
``[k * batch_size, (k + 1) * batch_size)``, so a resumed file holds exactly the bytes an
uninterrupted run writes (on the same device).

Initial conditions (one per sample, from its own generator):

- diffusion-sorption: ``solvers.pdes.diffusion_sorption.initial_condition`` (PDEBench's
  spatially constant ``U(0, 0.2)``), on ``x in (0, length)`` cell centres;
- navier-stokes: ``solvers.pdes.navier_stokes.gaussian_random_field`` (zero mean, periodic
  kernel, length scale 0.8 as PI-HC-MoE) on the periodic unit square, ``x_i = y_i = i / n``;
- burgers: ``u0(x) = sin(x) + g(x)`` on the periodic ``[0, 2 pi)``, ``x_i = 2 pi i / n``,
  with ``g`` a zero-mean Gaussian random Fourier series
  ``sum_{k=1}^{K} (a_k cos kx + b_k sin kx)``, ``a_k, b_k ~ N(0, (0.5 / k^2)^2)``,
  ``K = min(16, n // 4)``: smooth and periodic, so any grid resolves it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset
from tqdm.auto import tqdm

__all__ = [
    "PDE_NAMES",
    "DatasetConfig",
    "DatasetResult",
    "PDEDataset",
    "burgers_initial_condition",
    "generate_dataset",
    "partial_path",
    "sample_seed",
]

logger = logging.getLogger(__name__)

#: The PDEs :func:`generate_dataset` can simulate.
PDE_NAMES: tuple[str, ...] = ("diffusion-sorption", "navier-stokes", "burgers")

_FORMAT_VERSION = 1
_PARTIAL_SUFFIX = ".partial"

# Per-PDE defaults: resolution (nx, or n for an n x n grid), stored time points, final time.
# diffusion-sorption: PDEBench's 1024 cells x 101 times over 500 s; navier-stokes: PI-HC-MoE's
# 64^2 x 64 times over 5 s at nu = 1e-4; burgers: our own choice (see the module docstring).
_DEFAULTS: dict[str, dict[str, float | int]] = {
    "diffusion-sorption": {"resolution": 1024, "n_times": 101, "t_final": 500.0},
    "navier-stokes": {"resolution": 64, "n_times": 64, "t_final": 5.0, "viscosity": 1e-4},
    "burgers": {"resolution": 256, "n_times": 101, "t_final": 1.0, "viscosity": 0.05},
}
_NS_DEFAULT_DT = 1e-3  # the pseudo-spectral NS time step of Neural-Spectral-Methods / PI-HC-MoE
_BURGERS_LENGTH = 2.0 * math.pi
_BURGERS_MAX_MODES = 16

# Config fields that do not change the data, so a resume may change them.
_NOT_IN_DATA = ("device",)


# --------------------------------------------------------------------------------------
# Config and result
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetConfig:
    """What to simulate and store. ``None`` fields take the PDE's default on construction.

    Attributes:
        pde: one of :data:`PDE_NAMES`.
        n: number of samples (trajectories), >= 1.
        resolution: spatial points: ``nx`` for 1D PDEs, ``n`` of an ``n x n`` grid for
            Navier-Stokes [default: 1024 / 64 / 256 for diffusion-sorption / NS / Burgers].
        n_times: stored time points, ``t = linspace(0, t_final, n_times)``, including the
            initial condition at ``t = 0`` [default: 101 / 64 / 101].
        t_final: final time, seconds (PDE time units) [default: 500 / 5 / 1].
        seed: non-negative base seed; sample ``i`` draws its initial condition from a
            generator seeded by ``(seed, i)`` (see :func:`sample_seed`).
        batch_size: trajectories simulated together, >= 1.
        viscosity: kinematic viscosity ``nu`` (Navier-Stokes [1e-4], Burgers [0.05]); must
            be ``None`` for diffusion-sorption.
        diffusivity: diffusion coefficient ``D``, m^2/s (diffusion-sorption only [5e-4]).
        dt: Navier-Stokes solver time step [1e-3]; must be ``None`` for the others.
        precision: ``"float64"`` or ``"float32"``, the dtype the solver runs in (the file
            always stores float32, as PDEBench's does).
        device: torch device the solver runs on (``"cpu"``, ``"cuda"``, ``"cuda:1"``).
    """

    pde: str
    n: int
    resolution: int | None = None
    n_times: int | None = None
    t_final: float | None = None
    seed: int = 0
    batch_size: int = 16
    viscosity: float | None = None
    diffusivity: float | None = None
    dt: float | None = None
    precision: str = "float64"
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.pde not in PDE_NAMES:
            raise ValueError(f"pde must be one of {PDE_NAMES}, got {self.pde!r}")
        defaults = _DEFAULTS[self.pde]
        for name in ("resolution", "n_times", "t_final", "viscosity"):
            if getattr(self, name) is None and name in defaults:
                object.__setattr__(self, name, type(defaults[name])(defaults[name]))
        if self.pde == "diffusion-sorption" and self.diffusivity is None:
            object.__setattr__(self, "diffusivity", 5e-4)
        if self.pde == "navier-stokes" and self.dt is None:
            object.__setattr__(self, "dt", _NS_DEFAULT_DT)

        _check_int(self.n, "n", 1)
        _check_int(self.resolution, "resolution", 8)
        _check_int(self.n_times, "n_times", 2)
        _check_int(self.seed, "seed", 0)
        _check_int(self.batch_size, "batch_size", 1)
        _check_positive(self.t_final, "t_final")
        if self.pde != "diffusion-sorption" and self.resolution % 2:
            raise ValueError(
                f"resolution must be even for {self.pde} (a pseudo-spectral solver), "
                f"got {self.resolution!r}"
            )
        if self.pde == "diffusion-sorption":
            if self.viscosity is not None:
                raise ValueError(
                    f"viscosity applies to navier-stokes and burgers, not diffusion-sorption "
                    f"(got {self.viscosity!r}); use diffusivity"
                )
            _check_positive(self.diffusivity, "diffusivity")
        else:
            _check_positive(self.viscosity, "viscosity")
            if self.diffusivity is not None:
                raise ValueError(
                    f"diffusivity applies to diffusion-sorption only, got {self.diffusivity!r} "
                    f"for pde={self.pde!r}"
                )
        if self.pde == "navier-stokes":
            _check_positive(self.dt, "dt")
            assert self.t_final is not None and self.n_times is not None
            if self.dt > self.t_final / (self.n_times - 1):
                raise ValueError(
                    f"dt={self.dt!r} exceeds the spacing of the stored times "
                    f"t_final / (n_times - 1) = {self.t_final / (self.n_times - 1)!r}"
                )
        elif self.dt is not None:
            raise ValueError(f"dt applies to navier-stokes only, got {self.dt!r} for {self.pde!r}")
        if self.precision not in ("float32", "float64"):
            raise ValueError(f"precision must be 'float32' or 'float64', got {self.precision!r}")
        if not isinstance(self.device, str):
            object.__setattr__(self, "device", str(self.device))

    @property
    def spatial_dims(self) -> int:
        """1 for diffusion-sorption and Burgers, 2 for Navier-Stokes."""
        return 2 if self.pde == "navier-stokes" else 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DatasetResult:
    """What :func:`generate_dataset` did.

    Attributes:
        path: the finished file.
        config: the config it was written with.
        n_samples: samples in the file.
        generated: samples simulated by this call (0 when the file was already complete).
        resumed_from: complete samples found in a ``.partial`` file at the start (0 if none).
        seconds: wall-clock time of this call.
    """

    path: Path
    config: DatasetConfig
    n_samples: int
    generated: int
    resumed_from: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"] = str(self.path)
        return d


def _check_int(value: object, name: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")


def _check_positive(value: object, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    if not (math.isfinite(float(value)) and float(value) > 0):
        raise ValueError(f"{name} must be positive and finite, got {value!r}")


def partial_path(out_path: str | os.PathLike[str]) -> Path:
    """The temporary sibling (``<out>.partial``) the writer fills before the final rename."""
    out = Path(out_path)
    return out.with_name(out.name + _PARTIAL_SUFFIX)


def sample_seed(seed: int, index: int) -> int:
    """The 63-bit seed of sample ``index``'s initial condition, a function of both only."""
    words = np.random.SeedSequence([int(seed), int(index)]).generate_state(2, dtype=np.uint32)
    return (int(words[0]) << 31 | int(words[1]) >> 1) & (2**63 - 1)


def _group_name(index: int, n: int) -> str:
    return f"{index:0{max(4, len(str(n - 1)))}d}"


# --------------------------------------------------------------------------------------
# Simulation of one batch (solvers imported lazily: they are optional for the reader)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Chunk:
    """One simulated batch: ``data`` (B, T, X[, Y]) float64 numpy; grids (T,), (X,)[, (Y,)]."""

    data: np.ndarray
    grids: dict[str, np.ndarray]


def _generator(seed: int, index: int) -> torch.Generator:
    return torch.Generator(device="cpu").manual_seed(sample_seed(seed, index))


def _times(config: DatasetConfig, device: torch.device, dtype: torch.dtype) -> Tensor:
    assert config.t_final is not None and config.n_times is not None
    return torch.linspace(0.0, config.t_final, config.n_times, dtype=torch.float64).to(
        device=device, dtype=dtype
    )


def _ds_params(config: DatasetConfig) -> Any:
    from solvers.pdes.diffusion_sorption import DiffusionSorptionParams

    return DiffusionSorptionParams(D=config.diffusivity, t_final=config.t_final)


def _ns_params(config: DatasetConfig) -> Any:
    from solvers.pdes.navier_stokes import NavierStokesParams

    return NavierStokesParams(nu=config.viscosity)


def _check_converged(sol: Any, config: DatasetConfig) -> None:
    if getattr(sol, "converged", True) is False:
        status = getattr(sol, "status", "")
        raise RuntimeError(f"the {config.pde} solver did not converge: {status}")


def _simulate_diffusion_sorption(
    config: DatasetConfig, indices: Sequence[int], device: torch.device, dtype: torch.dtype
) -> _Chunk:
    from solvers.numerics.diffusion_sorption import solve_diffusion_sorption
    from solvers.pdes.diffusion_sorption import initial_condition

    nx = config.resolution
    u0 = torch.cat(
        [
            initial_condition(1, nx, generator=_generator(config.seed, i), dtype=torch.float64)
            for i in indices
        ]
    ).to(device=device, dtype=dtype)
    t = _times(config, device, dtype)
    sol = solve_diffusion_sorption(u0, t, _ds_params(config))
    _check_converged(sol, config)
    return _Chunk(
        data=sol.u.detach().cpu().double().numpy(),
        grids={"t": t.cpu().double().numpy(), "x": sol.x.detach().cpu().double().numpy()},
    )


def _simulate_navier_stokes(
    config: DatasetConfig, indices: Sequence[int], device: torch.device, dtype: torch.dtype
) -> _Chunk:
    from solvers.numerics.navier_stokes import solve_navier_stokes
    from solvers.pdes.navier_stokes import gaussian_random_field

    n = config.resolution
    assert n is not None
    w0 = torch.cat(
        [
            gaussian_random_field(
                1,
                n,
                generator=_generator(config.seed, i),
                dtype=torch.float64,
                device=torch.device("cpu"),
            )
            for i in indices
        ]
    ).to(device=device, dtype=dtype)
    t = _times(config, device, dtype)
    sol = solve_navier_stokes(w0, t, _ns_params(config), dt=config.dt)
    _check_converged(sol, config)
    x = sol.x.detach().cpu().double().numpy()  # i L / n on both axes (periodic)
    return _Chunk(
        data=sol.w.detach().cpu().double().numpy(),
        grids={"t": t.cpu().double().numpy(), "x": x, "y": x.copy()},
    )


def burgers_initial_condition(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """A random periodic Burgers initial condition ``sin(x) + g(x)`` (module docstring).

    Args:
        x: (X,) float, points of the periodic ``[0, 2 pi)``, radians.
        generator: CPU generator drawing the Fourier coefficients of ``g``.

    Returns:
        (X,) tensor, same dtype and device as ``x``.
    """
    if x.ndim != 1 or x.numel() < 8:
        raise ValueError(f"x must be a 1D tensor of >= 8 points, got shape {tuple(x.shape)}")
    n_modes = max(1, min(_BURGERS_MAX_MODES, x.numel() // 4))
    k = torch.arange(1, n_modes + 1, dtype=torch.float64)
    coef = torch.randn(2, n_modes, generator=generator, dtype=torch.float64) * (0.5 / k**2)
    kx = k.to(x) * x[:, None]
    g = torch.cos(kx) @ coef[0].to(x) + torch.sin(kx) @ coef[1].to(x)
    return torch.sin(x) + g


def _simulate_burgers(
    config: DatasetConfig, indices: Sequence[int], device: torch.device, dtype: torch.dtype
) -> _Chunk:
    from solvers.numerics.burgers import solve_burgers

    n = config.resolution
    assert n is not None
    x = torch.arange(n, dtype=torch.float64) * (_BURGERS_LENGTH / n)
    u0 = torch.stack(
        [burgers_initial_condition(x, _generator(config.seed, i)) for i in indices]
    ).to(device=device, dtype=dtype)
    t = _times(config, device, dtype)
    sol = solve_burgers(u0, t, config.viscosity)
    _check_converged(sol, config)
    x_sol = sol.x.detach().cpu().double().numpy()
    if x_sol.shape != (n,) or not np.allclose(x_sol, x.numpy(), atol=1e-9 * _BURGERS_LENGTH):
        raise RuntimeError(
            "solve_burgers returned a grid other than x_i = 2 pi i / n; the initial "
            "condition was sampled on the wrong points"
        )
    return _Chunk(
        data=sol.u.detach().cpu().double().numpy(),
        grids={"t": t.cpu().double().numpy(), "x": x_sol},
    )


_SIMULATORS: dict[str, Callable[..., _Chunk]] = {
    "diffusion-sorption": _simulate_diffusion_sorption,
    "navier-stokes": _simulate_navier_stokes,
    "burgers": _simulate_burgers,
}


def _simulate_chunk(config: DatasetConfig, indices: Sequence[int], device: torch.device) -> _Chunk:
    dtype = torch.float64 if config.precision == "float64" else torch.float32
    chunk = _SIMULATORS[config.pde](config, indices, device, dtype)
    expected = (len(indices), config.n_times) + (config.resolution,) * config.spatial_dims
    if chunk.data.shape != expected:
        raise RuntimeError(
            f"the {config.pde} solver returned shape {chunk.data.shape}, expected {expected}"
        )
    if not np.isfinite(chunk.data).all():
        bad = [
            int(indices[b])
            for b in np.flatnonzero(~np.isfinite(chunk.data).reshape(len(indices), -1).all(1))
        ]
        raise RuntimeError(
            f"the {config.pde} solver returned non-finite values for samples {bad}; "
            "try a smaller dt, a higher resolution or precision='float64'"
        )
    return chunk


def _pde_params(config: DatasetConfig) -> dict[str, Any]:
    """The PDE parameters stored as file attributes (scalars only)."""
    if config.pde == "diffusion-sorption":
        params = asdict(_ds_params(config))
    elif config.pde == "navier-stokes":
        params = asdict(_ns_params(config))
    else:
        params = {"nu": config.viscosity, "length": _BURGERS_LENGTH}
    return {k: v for k, v in params.items() if isinstance(v, (int, float, str, bool, np.number))}


# --------------------------------------------------------------------------------------
# Writer
# --------------------------------------------------------------------------------------


def _data_fields(config_dict: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config_dict.items() if k not in _NOT_IN_DATA}


def _check_same_config(path: Path, stored_json: str, config: DatasetConfig) -> None:
    try:
        stored = json.loads(stored_json)
    except (TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} has an unreadable 'config' attribute: {exc}") from exc
    want, have = _data_fields(config.to_dict()), _data_fields(stored)
    diff = {
        k: (have.get(k), want.get(k)) for k in set(want) | set(have) if have.get(k) != want.get(k)
    }
    if diff:
        details = ", ".join(
            f"{k}: file has {a!r}, asked for {b!r}" for k, (a, b) in sorted(diff.items())
        )
        raise ValueError(
            f"{path} was written with a different config ({details}); refusing to mix them. "
            f"Use the original config, another --out, or delete {path} to start over."
        )


def _is_complete_group(group: Any) -> bool:
    return isinstance(group, h5py.Group) and bool(group.attrs.get("complete", False))


def _open_partial(path: Path, config: DatasetConfig) -> h5py.File:
    if path.exists():
        try:
            f = h5py.File(path, "r+")
        except OSError as exc:
            raise ValueError(
                f"cannot resume: {path} is corrupt or truncated ({exc}); delete it to start over"
            ) from exc
        if f.attrs.get("simkit_format") != _FORMAT_VERSION or "config" not in f.attrs:
            f.close()
            raise ValueError(
                f"cannot resume: {path} is not a partial simkit dataset; delete it to start over"
            )
        try:
            _check_same_config(path, f.attrs["config"], config)
        except ValueError:
            f.close()
            raise
        for name in list(f.keys()):
            if not _is_complete_group(f[name]):
                logger.info("dropping half-written sample %s from %s", name, path)
                del f[name]
        return f
    path.parent.mkdir(parents=True, exist_ok=True)
    f = h5py.File(path, "w-", track_order=True)
    f.attrs["simkit_format"] = _FORMAT_VERSION
    f.attrs["pde"] = config.pde
    f.attrs["n_samples"] = config.n
    f.attrs["config"] = json.dumps(config.to_dict())
    f.attrs["complete"] = False
    for key, value in _pde_params(config).items():
        f.attrs[key] = value
    f.flush()
    return f


def _write_sample(
    f: h5py.File, name: str, data: np.ndarray, grids: dict[str, np.ndarray], seed: int
) -> None:
    if name in f:
        del f[name]
    g = f.create_group(name)
    g.create_dataset("data", data=data[..., None].astype(np.float32))
    grid = g.create_group("grid")
    for axis in ("x", "y", "t"):
        if axis in grids:
            grid.create_dataset(axis, data=grids[axis].astype(np.float32))
    g.attrs["sample_seed"] = np.uint64(seed)
    g.attrs["complete"] = True  # last: a group without it is half written


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _existing_complete(out: Path, config: DatasetConfig) -> bool:
    """True when ``out`` is already a complete dataset of ``config``; raises on a mismatch."""
    try:
        with h5py.File(out, "r") as f:
            stored = f.attrs.get("config")
            complete = bool(f.attrs.get("complete", False))
    except OSError as exc:
        raise ValueError(
            f"{out} exists and is not a readable HDF5 file ({exc}); pass overwrite=True"
        ) from exc
    if stored is None:
        raise ValueError(f"{out} exists and was not written by simkit; pass overwrite=True")
    _check_same_config(out, stored, config)
    return complete


def generate_dataset(
    config: DatasetConfig,
    out_path: str | os.PathLike[str],
    *,
    progress: bool = True,
    overwrite: bool = False,
) -> DatasetResult:
    """Simulate ``config.n`` trajectories and store them in PDEBench's HDF5 layout.

    Resumable: an interrupted call leaves ``<out>.partial``; calling again with the same
    config finishes it (see the module docstring). The final file appears under
    ``out_path`` only when complete.

    Args:
        config: what to simulate.
        out_path: the ``.h5`` file to write.
        progress: show a tqdm progress bar (on stderr).
        overwrite: replace an existing complete ``out_path`` (written with any config).
            Without it, an existing file of the same config is left as is (nothing is
            simulated) and one of another config is refused.

    Returns:
        A :class:`DatasetResult`.

    Raises:
        ValueError: a ``.partial`` or existing file of a different config, or a corrupt one.
        RuntimeError: the solver returned a wrong shape or non-finite values.
    """
    if not isinstance(config, DatasetConfig):
        raise TypeError(f"config must be a DatasetConfig, got {type(config).__name__}")
    start_time = time.perf_counter()
    out = Path(out_path)
    partial = partial_path(out)
    if out.is_dir():
        raise ValueError(f"out_path {out} is a directory; expected an .h5 file path")
    if out.exists() and not overwrite and _existing_complete(out, config):
        return DatasetResult(out, config, config.n, 0, config.n, time.perf_counter() - start_time)

    device = torch.device(config.device)
    f = _open_partial(partial, config)
    try:
        done = {i for i in range(config.n) if _group_name(i, config.n) in f}
        resumed_from = len(done)
        if resumed_from:
            logger.info(
                "resuming %s: %d/%d samples already written", partial, resumed_from, config.n
            )
        generated = 0
        bar = tqdm(
            total=config.n,
            initial=resumed_from,
            desc=f"{config.pde}",
            unit="sample",
            disable=not progress,
        )
        with bar:
            for begin in range(0, config.n, config.batch_size):
                indices = list(range(begin, min(begin + config.batch_size, config.n)))
                todo = [i for i in indices if i not in done]
                if not todo:
                    continue
                # The whole aligned batch is simulated even when some of it is on disk, so
                # every sample sees the same batch as in an uninterrupted run.
                chunk = _simulate_chunk(config, indices, device)
                for b, i in enumerate(indices):
                    if i in done:
                        continue
                    _write_sample(
                        f,
                        _group_name(i, config.n),
                        chunk.data[b],
                        chunk.grids,
                        sample_seed(config.seed, i),
                    )
                f.flush()
                generated += len(todo)
                bar.update(len(todo))
        f.attrs["complete"] = True
        f.flush()
    finally:
        f.close()
    _fsync(partial)
    os.replace(partial, out)
    _fsync(out.parent)
    return DatasetResult(
        out, config, config.n, generated, resumed_from, time.perf_counter() - start_time
    )


# --------------------------------------------------------------------------------------
# Reader
# --------------------------------------------------------------------------------------


def _sort_key(name: str) -> tuple[int, int | str]:
    return (0, int(name)) if name.isdigit() else (1, name)


class PDEDataset(Dataset):
    """Lazy reader of a PDEBench-layout HDF5 file (ours or PDEBench's own).

    The file is checked on construction (readable, complete, every selected group has
    ``data``, ``grid/t`` and ``grid/x`` of consistent shapes) and then closed; each process
    opens its own handle on first access, so the dataset is safe with DataLoader workers
    (h5py handles must not cross a fork).

    Each item is a dict of tensors:

    - ``"data"``: (t, x, C) or (t, x, y, C), the stored layout (C = 1 for PDEBench);
    - ``"t"``: (t,), ``"x"``: (x,) and, for 2D data, ``"y"``: (y,).

    Args:
        path: the ``.h5`` file.
        groups: sample groups to serve, in order [default: all, sorted by number].
        dtype: floating dtype of the returned tensors.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: a ``.partial`` or incomplete file, a corrupt or truncated file, or a
            missing group or dataset.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        groups: Sequence[str] | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.path = Path(path)
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating torch dtype, got {dtype!r}")
        self.dtype = dtype
        if self.path.name.endswith(_PARTIAL_SUFFIX):
            raise ValueError(
                f"{self.path} is an incomplete dataset (a .partial file of an interrupted or "
                "running generate); rerun the same generate command to finish it"
            )
        if not self.path.exists():
            raise FileNotFoundError(f"no dataset at {self.path}")
        try:
            with h5py.File(self.path, "r") as f:
                self.attrs: dict[str, Any] = {k: _plain(v) for k, v in f.attrs.items()}
                if "complete" in self.attrs and not self.attrs["complete"]:
                    raise ValueError(
                        f"{self.path} is marked incomplete (its writer did not finish)"
                    )
                available = sorted(
                    (k for k in f.keys() if isinstance(f[k], h5py.Group)), key=_sort_key
                )
                if groups is None:
                    names = available
                else:
                    names = [str(g) for g in groups]
                    missing = [g for g in names if g not in f]
                    if missing:
                        raise ValueError(
                            f"{self.path} has no group(s) {missing[:5]}; it has {len(available)} "
                            f"groups ({available[:3]}...)"
                        )
                if not names:
                    raise ValueError(f"{self.path} holds no sample groups")
                self.spatial_dims = self._check_groups(f, names)
        except OSError as exc:
            raise ValueError(
                f"{self.path} is not a readable HDF5 file (corrupt or truncated?): {exc}"
            ) from exc
        self.groups: tuple[str, ...] = tuple(names)
        self._file: h5py.File | None = None
        self._pid: int | None = None

    def _check_groups(self, f: h5py.File, names: Sequence[str]) -> int:
        dims = None
        for name in names:
            g = f[name]
            for key in ("data", "grid/t", "grid/x"):
                if key not in g or not isinstance(g[key], h5py.Dataset):
                    raise ValueError(f"{self.path}: group {name!r} has no dataset {key!r}")
            shape = g["data"].shape
            if len(shape) not in (3, 4):
                raise ValueError(
                    f"{self.path}: {name}/data has shape {shape}; expected (t, x, C) or (t, x, y, C)"
                )
            d = len(shape) - 2
            if dims is None:
                dims = d
            elif d != dims:
                raise ValueError(f"{self.path}: {name}/data is {d}D, earlier groups are {dims}D")
            axes = ("t", "x", "y")[: d + 1]
            if d == 2 and "grid/y" not in g:
                raise ValueError(f"{self.path}: group {name!r} has no dataset 'grid/y'")
            for k, axis in enumerate(axes):
                n_axis = g[f"grid/{axis}"].shape
                if n_axis != (shape[k],):
                    raise ValueError(
                        f"{self.path}: {name}/grid/{axis} has shape {n_axis}, expected "
                        f"({shape[k]},) to match {name}/data {shape}"
                    )
        assert dims is not None
        return dims

    def __len__(self) -> int:
        return len(self.groups)

    def _handle(self) -> h5py.File:
        if self._file is None or self._pid != os.getpid():
            # A handle inherited through fork is never reused: open a fresh one.
            self._file = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._file

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"index must be an integer, got {type(index).__name__}")
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        name = self.groups[int(index)]
        try:
            g = self._handle()[name]
            out = {"data": torch.from_numpy(np.asarray(g["data"][()]))}
            for axis in ("t", "x", "y"):
                if f"grid/{axis}" in g:
                    out[axis] = torch.from_numpy(np.asarray(g[f"grid/{axis}"][()]))
        except (OSError, KeyError) as exc:
            raise ValueError(f"{self.path}: cannot read sample {name!r} ({exc})") from exc
        return {k: v.to(self.dtype) for k, v in out.items()}

    def close(self) -> None:
        """Close this process's file handle (it reopens on the next access)."""
        if self._file is not None:
            self._file.close()
        self._file = None
        self._pid = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_file"] = None
        state["_pid"] = None
        return state

    def __del__(self) -> None:
        try:
            self.close()
        except (AttributeError, TypeError, RuntimeError):  # interpreter shutdown
            pass


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode()
    return value
