"""Batched periodic 1D interpolation (Eulerian reconstruction of Lagrangian fields).

``torch.interp`` does not exist and ``numpy.interp(period=...)`` is neither batched nor on
the GPU, so this is hand-written on ``torch.searchsorted``: each row's scattered nodes
are wrapped into the period, sorted, padded with their periodic images, and the queries
are located by binary search.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

__all__ = ["periodic_interp"]


def periodic_interp(
    xp: Tensor,
    fp: Tensor,
    x: Tensor,
    lo: float,
    length: float,
    method: Literal["linear", "cubic"] = "linear",
) -> Tensor:
    """Interpolate periodic samples, row by row.

    Args:
        xp: (B, n) node positions, any order, any real values (wrapped into
            ``[lo, lo + length)``); ``n >= 2`` (``>= 3`` for cubic).
        fp: (B, n) values at the nodes.
        x: (B, m) query positions (wrapped likewise).
        lo: left end of the period.
        length: period ``L > 0``.
        method: ``"linear"``, or ``"cubic"`` (cubic Hermite with finite-difference slopes
            ``(f_{i+1} - f_{i-1}) / (x_{i+1} - x_{i-1})``; exact on linear data).

    Returns:
        (B, m) interpolated values, dtype and device of ``fp``.
    """
    if xp.ndim != 2 or fp.shape != xp.shape or x.ndim != 2 or x.shape[0] != xp.shape[0]:
        raise ValueError(
            f"expected xp (B, n), fp (B, n), x (B, m); got {tuple(xp.shape)}, "
            f"{tuple(fp.shape)}, {tuple(x.shape)}"
        )
    if not length > 0:
        raise ValueError(f"length must be positive, got {length!r}")
    if method not in ("linear", "cubic"):
        raise ValueError(f"method must be 'linear' or 'cubic', got {method!r}")
    pad = 1 if method == "linear" else 2
    n = xp.shape[1]
    if n < pad + 1:
        raise ValueError(f"{method} interpolation needs at least {pad + 1} nodes, got {n}")
    xw = lo + torch.remainder(xp - lo, length)
    xs, order = torch.sort(xw, dim=1)
    fs = torch.gather(fp, 1, order)
    # Periodic images: the last `pad` nodes shifted left by L, the first shifted right.
    xe = torch.cat([xs[:, -pad:] - length, xs, xs[:, :pad] + length], dim=1)
    fe = torch.cat([fs[:, -pad:], fs, fs[:, :pad]], dim=1)
    q = lo + torch.remainder(x.to(xe.dtype) - lo, length)
    q = q.contiguous()
    # Interval [i, i+1] of the padded nodes that holds q (pad-1 <= i <= n+pad-1).
    i = torch.searchsorted(xe.contiguous(), q, right=True) - 1
    i = i.clamp(pad - 1, n + pad - 1)
    x0, x1 = torch.gather(xe, 1, i), torch.gather(xe, 1, i + 1)
    f0, f1 = torch.gather(fe, 1, i), torch.gather(fe, 1, i + 1)
    h = (x1 - x0).clamp_min(torch.finfo(xe.dtype).tiny)
    s = (q - x0) / h
    if method == "linear":
        return f0 + s * (f1 - f0)
    xm, xq = torch.gather(xe, 1, i - 1), torch.gather(xe, 1, i + 2)
    fm, fq = torch.gather(fe, 1, i - 1), torch.gather(fe, 1, i + 2)
    m0 = (f1 - fm) / (x1 - xm)
    m1 = (fq - f0) / (xq - x0)
    s2, s3 = s * s, s * s * s
    h00, h10 = 2 * s3 - 3 * s2 + 1, s3 - 2 * s2 + s
    h01, h11 = -2 * s3 + 3 * s2, s3 - s2
    return h00 * f0 + h10 * h * m0 + h01 * f1 + h11 * h * m1
