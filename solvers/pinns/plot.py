"""Headless figure of a PINN/LPINN field: prediction, reference and error (matplotlib, Agg)."""

from __future__ import annotations

import os
from pathlib import Path

from torch import Tensor

from simkit.viz import save_figure

__all__ = ["plot_fields"]


def plot_fields(
    pred: Tensor,
    ref: Tensor,
    x: Tensor,
    t: Tensor,
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
) -> Path:
    """Write a PNG with three panels over ``(t, x)``: prediction, reference, |error|.

    Args:
        pred: (n, T) predicted field.
        ref: (n, T) reference field.
        x: (n,) positions.
        t: (T,) times.
        path: PNG destination (written atomically).
        title: optional figure title.

    Returns:
        The path written.
    """
    from matplotlib.figure import Figure

    if pred.shape != ref.shape or pred.shape != (len(x), len(t)):
        raise ValueError(
            f"pred and ref must be (len(x), len(t)) = ({len(x)}, {len(t)}), "
            f"got {tuple(pred.shape)} and {tuple(ref.shape)}"
        )
    p, r = pred.detach().double().cpu().numpy(), ref.detach().double().cpu().numpy()
    xs, ts = x.detach().double().cpu().numpy(), t.detach().double().cpu().numpy()
    extent = (ts[0], ts[-1], xs[0], xs[-1])
    fig = Figure(figsize=(13, 3.6))
    axes = fig.subplots(1, 3)
    lo, hi = float(min(p.min(), r.min())), float(max(p.max(), r.max()))
    for ax, field, name, kw in (
        (axes[0], p, "prediction", {"vmin": lo, "vmax": hi, "cmap": "RdBu_r"}),
        (axes[1], r, "reference", {"vmin": lo, "vmax": hi, "cmap": "RdBu_r"}),
        (axes[2], abs(p - r), "|error|", {"cmap": "magma"}),
    ):
        im = ax.imshow(field, origin="lower", aspect="auto", extent=extent, **kw)
        ax.set_xlabel("t")
        ax.set_ylabel("x")
        ax.set_title(name)
        fig.colorbar(im, ax=ax)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)
