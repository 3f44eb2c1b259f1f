"""FNO backbones with a basis head, in PI-HC-MoE's input convention.

PI-HC-MoE (Chalapathi et al., ICLR 2024, Sec. 3) feeds an FNO the space-time grid
coordinates with the initial condition broadcast along time, and reads out ``N`` basis
functions on the whole grid; the hard constraint then solves for their weights. For a 1D
PDE the input has channels ``(t, x, u0(x))`` on a ``T x X`` grid (a 2D FNO); for a 2D PDE
``(t, x, y, w0(x, y))`` on ``T x X x Y`` (a 3D FNO). PDE parameters are not inputs.

The FNO itself is ``neuralop.models.FNO`` (neuraloperator); this module adds the input
builder (:func:`pihcmoe_inputs`), the optional final GELU of the hard-constraint models, a
frozen config, dtype conversion that neuralop's complex spectral weights need, and
``save_pretrained`` / ``from_pretrained``.

Paper sizes (see :meth:`BasisFNOConfig.paper_diffusion_sorption` and
:meth:`BasisFNOConfig.paper_navier_stokes`): diffusion-sorption width 64, 5 spectral layers,
8 x 8 modes, lift 3 -> 32 -> 64, projection 64 -> 128 -> 16 (5.2M real parameters here;
the paper's first spectral layer maps 32 -> 64, neuralop's lifting reaches 64 first);
Navier-Stokes width 64, 8 layers, 8 x 8 x 8 modes, lift 4 -> 64 -> 64, projection
64 -> 256 -> 64 (134M, as the paper's). The defaults here are small, for CPU tests.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["BasisFNO", "BasisFNOConfig", "pihcmoe_inputs"]

_CONFIG_NAME = "config.json"
_WEIGHTS_NAME = "model.safetensors"

Range = tuple[float, float]


def _check_range(value: object, name: str) -> Range | None:
    if value is None:
        return None
    try:
        lo, hi = (float(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a (lo, hi) pair of numbers, got {value!r}") from None
    if not lo < hi:
        raise ValueError(f"{name} must have lo < hi, got {value!r}")
    return (lo, hi)


def _coord(c: Tensor, name: str, n: int, like: Tensor, rng: Range | None) -> Tensor:
    if not isinstance(c, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(c).__name__}")
    if c.ndim != 1 or c.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},) to match u0, got {tuple(c.shape)}")
    if c.device != like.device:
        raise ValueError(f"{name} is on {c.device} but u0 is on {like.device}")
    c = c.to(like.dtype)
    if rng is not None:
        c = (c - rng[0]) / (rng[1] - rng[0])
    return c


def pihcmoe_inputs(
    u0: Tensor,
    t: Tensor,
    x: Tensor,
    y: Tensor | None = None,
    *,
    t_range: Range | None = None,
    x_range: Range | None = None,
    y_range: Range | None = None,
) -> Tensor:
    """The FNO input of PI-HC-MoE: coordinates plus the initial condition, channels first.

    Channel order is ``(t, x, u0)`` in 1D and ``(t, x, y, w0)`` in 2D; the IC channel is
    constant along time. A coordinate with a ``*_range`` is rescaled to ``[0, 1]`` by
    ``(c - lo) / (hi - lo)`` (the paper feeds the network ``t, x`` in ``[0, 1]`` and keeps
    physical units for the residual); without one it is passed as given.

    Args:
        u0: (B, X) initial condition of a 1D PDE, or (B, X, Y) of a 2D one (PDE units).
        t: (T,) times, seconds (any units).
        x: (X,) first spatial coordinate.
        y: (Y,) second spatial coordinate; required exactly when ``u0`` is 3D.
        t_range, x_range, y_range: optional ``(lo, hi)`` physical extents for rescaling.

    Returns:
        (B, 3, T, X) or (B, 4, T, X, Y), the dtype and device of ``u0``.

    Raises:
        TypeError: a non-tensor or non-floating ``u0``.
        ValueError: shapes that do not match, tensors on other devices, non-finite values,
            or a bad range.
    """
    if not isinstance(u0, Tensor):
        raise TypeError(f"u0 must be a torch.Tensor, got {type(u0).__name__}")
    if not u0.dtype.is_floating_point:
        raise TypeError(f"u0 must be a floating tensor, got dtype {u0.dtype}")
    if y is None and u0.ndim != 2:
        raise ValueError(
            f"u0 must be (B, X) for a 1D PDE (or pass y for a 2D one), got {tuple(u0.shape)}"
        )
    if y is not None and u0.ndim != 3:
        raise ValueError(f"with y given, u0 must be (B, X, Y), got {tuple(u0.shape)}")
    if not torch.isfinite(u0).all():
        raise ValueError("u0 has non-finite values")
    if not isinstance(t, Tensor) or t.ndim != 1 or t.numel() < 1:
        raise ValueError(f"t must be a non-empty 1D tensor (T,), got {getattr(t, 'shape', t)!r}")
    n_t = t.shape[0]
    tt = _coord(t, "t", n_t, u0, _check_range(t_range, "t_range"))
    xx = _coord(x, "x", u0.shape[1], u0, _check_range(x_range, "x_range"))
    batch = u0.shape[0]
    if y is None:
        grid = (batch, n_t, u0.shape[1])
        channels = [
            tt[None, :, None].expand(grid),
            xx[None, None, :].expand(grid),
            u0[:, None, :].expand(grid),
        ]
    else:
        yy = _coord(y, "y", u0.shape[2], u0, _check_range(y_range, "y_range"))
        grid = (batch, n_t, u0.shape[1], u0.shape[2])
        channels = [
            tt[None, :, None, None].expand(grid),
            xx[None, None, :, None].expand(grid),
            yy[None, None, None, :].expand(grid),
            u0[:, None].expand(grid),
        ]
    out = torch.stack(channels, dim=1)
    if not torch.isfinite(out).all():
        raise ValueError("the coordinates t, x (or y) have non-finite values")
    return out


@dataclass(frozen=True)
class BasisFNOConfig:
    """Architecture of a :class:`BasisFNO`.

    Attributes:
        spatial_dims: 1 (inputs ``(t, x, u0)``, a 2D FNO) or 2 (``(t, x, y, w0)``, a 3D FNO).
        n_basis: basis functions out, ``N`` (paper: 16 for DS, 64 for NS).
        modes: Fourier modes per axis (t, x[, y]); one int for all axes. neuraloperator's
            convention: ``m`` on an axis keeps the ``m`` lowest frequencies (positive and
            negative), on the last axis (a real FFT) ``m // 2 + 1``; the original FNO's
            "modes = 8" (8 positive and 8 negative, 8 on the last axis) is ``(16, 14)``
            in 2D and ``(16, 16, 14)`` in 3D. A grid axis may be smaller than its modes.
        width: hidden channels of the spectral layers.
        n_layers: spectral layers.
        lifting_channel_ratio: lifting MLP hidden size = ratio * width.
        projection_channel_ratio: projection MLP hidden size = ratio * width.
        channel_mlp: add neuralop's channel MLP after each spectral layer (the paper's FNO
            has a plain 1x1 convolution skip only, so the default is False).
        final_gelu: GELU on the output, as PI-HC-MoE's hard-constraint models.
        t_range, x_range, y_range: physical extents rescaled to [0, 1] on input (see
            :func:`pihcmoe_inputs`); ``None`` passes coordinates unchanged.
    """

    spatial_dims: int = 1
    n_basis: int = 16
    modes: int | tuple[int, ...] = 8
    width: int = 16
    n_layers: int = 4
    lifting_channel_ratio: float = 1.0
    projection_channel_ratio: float = 2.0
    channel_mlp: bool = False
    final_gelu: bool = True
    t_range: Range | None = None
    x_range: Range | None = None
    y_range: Range | None = None

    def __post_init__(self) -> None:
        if self.spatial_dims not in (1, 2) or isinstance(self.spatial_dims, bool):
            raise ValueError(f"spatial_dims must be 1 or 2, got {self.spatial_dims!r}")
        for name in ("n_basis", "width", "n_layers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        modes = self.modes
        n_axes = self.spatial_dims + 1
        modes_t = (modes,) * n_axes if isinstance(modes, int) else tuple(modes)
        if len(modes_t) != n_axes or any(
            isinstance(m, bool) or not isinstance(m, int) or m < 1 for m in modes_t
        ):
            raise ValueError(
                f"modes must be a positive int or {n_axes} positive ints (t, x{', y' if n_axes == 3 else ''}), "
                f"got {modes!r}"
            )
        object.__setattr__(self, "modes", modes_t)
        for name in ("lifting_channel_ratio", "projection_channel_ratio"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        for name in ("t_range", "x_range", "y_range"):
            object.__setattr__(self, name, _check_range(getattr(self, name), name))
        if self.spatial_dims == 1 and self.y_range is not None:
            raise ValueError(f"y_range applies to spatial_dims=2 only, got {self.y_range!r}")

    @property
    def in_channels(self) -> int:
        """Coordinates plus the initial condition: 3 in 1D, 4 in 2D."""
        return self.spatial_dims + 2

    @classmethod
    def paper_diffusion_sorption(cls, **overrides: Any) -> BasisFNOConfig:
        """PI-HC-MoE's diffusion-sorption FNO2D (16 basis functions, t in [0, 500] s)."""
        kwargs: dict[str, Any] = dict(
            spatial_dims=1,
            n_basis=16,
            modes=(16, 14),  # the original FNO's 8 x 8 (see `modes`)
            width=64,
            n_layers=5,
            lifting_channel_ratio=0.5,  # 3 -> 32 -> 64
            projection_channel_ratio=2.0,  # 64 -> 128 -> 16
            t_range=(0.0, 500.0),
            x_range=(0.0, 1.0),
        )
        return cls(**{**kwargs, **overrides})

    @classmethod
    def paper_navier_stokes(cls, **overrides: Any) -> BasisFNOConfig:
        """PI-HC-MoE's Navier-Stokes FNO3D (64 basis functions, t in [0, 5], unit square)."""
        kwargs: dict[str, Any] = dict(
            spatial_dims=2,
            n_basis=64,
            modes=(16, 16, 14),  # the original FNO3D's 8 x 8 x 8
            width=64,
            n_layers=8,
            lifting_channel_ratio=1.0,  # 4 -> 64 -> 64
            projection_channel_ratio=4.0,  # 64 -> 256 -> 64
            t_range=(0.0, 5.0),
            x_range=(0.0, 1.0),
            y_range=(0.0, 1.0),
        )
        return cls(**{**kwargs, **overrides})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BasisFNOConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown BasisFNOConfig keys {unknown}")
        d = dict(d)
        for key in ("modes", "t_range", "x_range", "y_range"):
            if isinstance(d.get(key), list):
                d[key] = tuple(d[key])
        return cls(**d)


class BasisFNO(nn.Module):
    """An FNO mapping ``(u0, t, x[, y])`` to ``N`` basis functions on the space-time grid.

    ``forward(u0, t, x)`` returns ``(B, N, T, X)`` (1D PDE, a 2D FNO over (t, x));
    ``forward(u0, t, x, y)`` returns ``(B, N, T, X, Y)`` (2D PDE, a 3D FNO). Being a
    neural operator, one model accepts any grid size.

    The module computes in its parameters' dtype; inputs must match it (convert the
    model with ``.to(torch.float64)`` / ``.double()``, which here also move neuralop's
    complex spectral weights to complex128). The output follows the input's dtype and
    device. Note: neuraloperator 2.0's SpectralConv accumulates the spectrum in complex64
    whatever the model's dtype, so a float64 model is float32-accurate (~1e-7 relative)
    in its spectral layers; the float64 LM solve downstream is unaffected by this.

    Args:
        config: the architecture [default: ``BasisFNOConfig()``].
    """

    def __init__(self, config: BasisFNOConfig | None = None) -> None:
        super().__init__()
        from neuralop.models import FNO  # heavy import (tensorly, ...): only when built

        self.config = BasisFNOConfig() if config is None else config
        if not isinstance(self.config, BasisFNOConfig):
            raise TypeError(f"config must be a BasisFNOConfig, got {type(config).__name__}")
        c = self.config
        assert isinstance(c.modes, tuple)
        self.fno = FNO(
            n_modes=c.modes,
            in_channels=c.in_channels,
            out_channels=c.n_basis,
            hidden_channels=c.width,
            n_layers=c.n_layers,
            lifting_channel_ratio=c.lifting_channel_ratio,
            projection_channel_ratio=c.projection_channel_ratio,
            positional_embedding=None,  # the coordinates are input channels already
            use_channel_mlp=c.channel_mlp,
        )

    def forward(self, u0: Tensor, t: Tensor, x: Tensor, y: Tensor | None = None) -> Tensor:
        """Basis functions on the grid ``t x x[ x y]``.

        Args:
            u0: (B, X) or (B, X, Y) initial condition, the model's dtype and device.
            t: (T,) times; x: (X,); y: (Y,) for 2D PDEs (see :func:`pihcmoe_inputs`).

        Returns:
            (B, N, T, X) or (B, N, T, X, Y) basis functions.
        """
        c = self.config
        if (y is None) != (c.spatial_dims == 1):
            raise ValueError(
                f"this BasisFNO has spatial_dims={c.spatial_dims}: "
                + ("pass y and a (B, X, Y) u0" if y is None else "do not pass y")
            )
        param = next(self.parameters())
        if isinstance(u0, Tensor) and (u0.dtype != param.dtype or u0.device != param.device):
            raise TypeError(
                f"u0 is {u0.dtype} on {u0.device} but the model is {param.dtype} on "
                f"{param.device}; convert one of them (model.to(dtype / device))"
            )
        inputs = pihcmoe_inputs(
            u0, t, x, y, t_range=c.t_range, x_range=c.x_range, y_range=c.y_range
        )
        basis = self.fno(inputs)
        return F.gelu(basis) if c.final_gelu else basis

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        out = super().state_dict(*args, **kwargs)
        # neuralop's FNO.state_dict adds its constructor arguments (functions and classes
        # among them) under a top-level "_metadata" key; our config holds them already, and
        # the key breaks load_state_dict(strict=True) on this module and on any parent.
        out.pop("_metadata", None)
        return out

    # -- dtype conversion ----------------------------------------------------------------
    # torch's Module.to(float64) casts complex parameters to *real* float64 (dropping the
    # imaginary part of neuralop's spectral weights) and Module.double() leaves them
    # complex64, so the FFT contraction then fails. Convert each kind to its own family.

    def to(self, *args: Any, **kwargs: Any) -> BasisFNO:  # type: ignore[override]
        device, dtype, non_blocking, _ = torch._C._nn._parse_to(*args, **kwargs)
        if device is not None:
            super().to(device=device, non_blocking=non_blocking)
        if dtype is not None:
            if not dtype.is_floating_point:
                raise TypeError(f"BasisFNO can only be converted to a floating dtype, got {dtype}")
            complex_dtype = {
                torch.float64: torch.complex128,
                torch.float32: torch.complex64,
            }.get(dtype)
            if complex_dtype is None:
                raise TypeError(f"BasisFNO supports float32 and float64, got {dtype}")
            for tensor in [*self.parameters(), *self.buffers()]:
                target = complex_dtype if tensor.is_complex() else dtype
                if tensor.is_floating_point() or tensor.is_complex():
                    tensor.data = tensor.data.to(target)
        return self

    def double(self) -> BasisFNO:
        return self.to(torch.float64)

    def float(self) -> BasisFNO:
        return self.to(torch.float32)

    # -- persistence ----------------------------------------------------------------------

    def save_pretrained(self, path: str | os.PathLike[str]) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into folder ``path`` atomically."""
        from safetensors.torch import save_file

        from simkit.io import atomic_directory

        # safetensors has no complex128: complex weights are stored as (..., 2) real pairs.
        tensors = {
            k: (torch.view_as_real(v) if v.is_complex() else v).detach().contiguous().cpu()
            for k, v in self.state_dict().items()
            if isinstance(v, Tensor)
        }
        with atomic_directory(path) as tmp:
            (tmp / _CONFIG_NAME).write_text(json.dumps(self.config.to_dict(), indent=2) + "\n")
            save_file(tensors, str(tmp / _WEIGHTS_NAME))
        return Path(path)

    @classmethod
    def from_pretrained(
        cls, path: str | os.PathLike[str], *, device: torch.device | str = "cpu"
    ) -> BasisFNO:
        """Load a model written by :meth:`save_pretrained` (no pickle involved)."""
        from safetensors.torch import load_file

        folder = Path(path)
        for name in (_CONFIG_NAME, _WEIGHTS_NAME):
            if not (folder / name).is_file():
                raise FileNotFoundError(f"{folder} has no {name}; not a saved BasisFNO")
        config = BasisFNOConfig.from_dict(json.loads((folder / _CONFIG_NAME).read_text()))
        model = cls(config)
        tensors = load_file(str(folder / _WEIGHTS_NAME))
        dtype = next((v.dtype for v in tensors.values() if v.is_floating_point()), None)
        if dtype is not None:
            model.to(dtype)
        own = model.state_dict()
        for key, value in tensors.items():
            if key in own and isinstance(own[key], Tensor) and own[key].is_complex():
                tensors[key] = torch.view_as_complex(value.contiguous())
        missing, unexpected = model.load_state_dict(tensors, strict=False)
        if missing or unexpected:
            raise ValueError(
                f"{folder}: weights do not match the config (missing {missing[:5]}, "
                f"unexpected {unexpected[:5]})"
            )
        return model.to(device)
