"""Model soups: the weighted average of fine-tunes of one base model.

Fine-tunes that start from the same weights with a small learning rate stay in one
basin of the loss, so their weights can be averaged (Wortsman et al., "Model soups",
ICML 2022): the average keeps what the runs agree on and damps what each drifted to on
its own. Two of our simulation-feedback runs from ``shapes-base`` (one rewarded for
standing, one for standing *and* being recognised as the family asked for) each lost a
different family's look; their average lost neither (BENCHMARKS.md, "A soup of two
fine-tunes").

A soup can also be moved along its direction from the model the runs started from:
with a ``base`` and a ``scale`` λ the weights are θ_base + λ·(θ_soup − θ_base). λ < 1
interpolates back toward the base (WiSE-FT, Wortsman et al., CVPR 2022); λ > 1
extrapolates past the fine-tunes (ExPO, Zheng et al., 2024), which on our stability
rewards buys standing at the cost of looking like the family (BENCHMARKS.md, "After the
soup").

Only pipelines that differ in their denoiser's weights can be combined: the same
denoiser architecture, the same scheduler settings (noise law, D, solver) and the same
families, in the same order. Anything else is refused with the difference named.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = ["average_pipelines", "save_soup"]

# Config entries that record provenance, not what the model is.
_PROVENANCE = ("_name_or_path", "_diffusers_version", "_class_name", "_use_default_values")


def _config(obj: Any) -> dict[str, Any]:
    return {k: v for k, v in dict(obj.config).items() if k not in _PROVENANCE}


def _first_difference(a: dict[str, Any], b: dict[str, Any]) -> str:
    for key in sorted(set(a) | set(b)):
        if a.get(key, "<missing>") != b.get(key, "<missing>"):
            return f"{key}: {a.get(key, '<missing>')!r} against {b.get(key, '<missing>')!r}"
    return ""


def _weights(weights: Sequence[float] | None, n: int) -> list[float]:
    if weights is None:
        return [1.0 / n] * n
    w = [float(x) for x in weights]
    if len(w) != n:
        raise ValueError(f"{len(w)} weights for {n} checkpoints; give one per checkpoint")
    if not all(math.isfinite(x) and x >= 0 for x in w) or sum(w) <= 0:
        raise ValueError(f"weights must be non-negative and not all zero, got {w}")
    total = sum(w)
    return [x / total for x in w]


def _check_scale(base: Any, scale: float, n: int) -> float:
    scale = float(scale)
    if base is None:
        if scale != 1.0:
            raise ValueError(
                f"scale {scale:g} needs a base: the soup is moved along its direction from it"
            )
        if n < 2:
            raise ValueError("a soup needs two or more checkpoints (or one and a base)")
    else:
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale must be a finite number > 0, got {scale:g}")
        if n < 1:
            raise ValueError("a soup needs one or more checkpoints")
    return scale


def average_pipelines(
    checkpoints: Sequence[Any],
    *,
    weights: Sequence[float] | None = None,
    base: Any = None,
    scale: float = 1.0,
    device: str | torch.device = "cpu",
) -> Any:
    """The weighted average of pipelines' denoisers, as a new pipeline, optionally
    moved along its direction from a base: θ_base + scale·(θ_average − θ_base).

    Args:
        checkpoints: two or more pipelines, or folders / shipped names
            (:func:`generators.generate.load_pipeline`), fine-tuned from one base (one is
            enough with ``base``).
        weights: one non-negative weight per checkpoint, normalised to sum to one
            (None: equal weights).
        base: the pipeline (or folder / shipped name) the fine-tunes started from;
            needed for a ``scale`` other than 1.
        scale: how far to go from ``base`` toward (< 1) or past (> 1) the average; 1 is
            the average itself.
        device: torch device of the returned pipeline.

    Returns:
        A :class:`~generators.pipeline.ShapePipeline` in float32 with the first
        checkpoint's scheduler and families and the combined denoiser (computed in
        float64, so the order of the checkpoints does not matter).

    Raises:
        ValueError: too few checkpoints, bad weights or scale, or pipelines that differ
            in anything but their denoiser's weights (the message names the difference).
    """
    from generators.generate import load_pipeline
    from generators.pipeline import ShapePipeline

    if isinstance(checkpoints, (str, os.PathLike)):
        checkpoints = [checkpoints]
    scale = _check_scale(base, scale, len(checkpoints))
    w = _weights(weights, len(checkpoints))
    pipes = [load_pipeline(c) if isinstance(c, (str, os.PathLike)) else c for c in checkpoints]
    if base is not None:
        base = load_pipeline(base) if isinstance(base, (str, os.PathLike)) else base
        # The base is one more term: (1 - scale) of it, scale of the average.
        w = [scale * x for x in w] + [1.0 - scale]
        pipes.append(base)
    first = pipes[0]
    for i, p in enumerate(pipes[1:], start=1):
        for what, a, b in (
            ("denoiser", _config(first.unet), _config(p.unet)),
            ("scheduler", _config(first.scheduler), _config(p.scheduler)),
            ("families", {"families": list(first.families)}, {"families": list(p.families)}),
        ):
            if a != b:
                who = "the base" if base is not None and i == len(pipes) - 1 else f"checkpoint {i}"
                raise ValueError(
                    f"{who} differs from checkpoint 0 in its {what} "
                    f"({_first_difference(a, b)}): only fine-tunes of one model can be averaged"
                )
    states = [p.unet.state_dict() for p in pipes]
    averaged: dict[str, torch.Tensor] = {}
    for key, ref in states[0].items():
        tensors = [s[key] for s in states]
        if any(t.shape != ref.shape for t in tensors):
            raise ValueError(f"parameter {key!r} has different shapes across checkpoints")
        if ref.is_floating_point():
            acc = sum(
                wi * t.detach().to("cpu", torch.float64) for wi, t in zip(w, tensors, strict=True)
            )
            averaged[key] = acc.to(torch.float32)
        elif all(torch.equal(t.cpu(), ref.cpu()) for t in tensors):
            averaged[key] = ref.detach().cpu().clone()
        else:
            raise ValueError(f"integer buffer {key!r} differs across checkpoints")
    unet = type(first.unet).from_config(first.unet.config)
    unet.load_state_dict(averaged)
    pipe = ShapePipeline(
        unet=unet.to(device).eval(),
        scheduler=type(first.scheduler).from_config(first.scheduler.config),
        families=list(first.families),
    )
    return pipe


def save_soup(
    checkpoints: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    weights: Sequence[float] | None = None,
    base: str | os.PathLike[str] | None = None,
    scale: float = 1.0,
    save_dtype: str = "float32",
) -> Path:
    """Average ``checkpoints`` (:func:`average_pipelines`, with its ``base`` and ``scale``)
    and save the pipeline to ``out``, atomically, with a ``soup.json`` that names its
    ingredients, weights, base and scale.

    Args:
        save_dtype: "float32" or "float16" (half the size; the weights are rounded once,
            after averaging).
    """
    from generators.align.collect import model_fingerprint
    from simkit.io import atomic_directory, write_json

    if save_dtype not in ("float32", "float16"):
        raise ValueError(f"save_dtype must be 'float32' or 'float16', got {save_dtype!r}")
    if isinstance(checkpoints, (str, os.PathLike)):
        checkpoints = [checkpoints]
    scale = _check_scale(base, scale, len(checkpoints))
    w = _weights(weights, len(checkpoints))
    from generators.generate import load_pipeline

    pipes = [load_pipeline(c) for c in checkpoints]
    base_pipe = None if base is None else load_pipeline(base)
    pipe = average_pipelines(pipes, weights=w, base=base_pipe, scale=scale)
    if save_dtype == "float16":
        pipe.unet.half()
    out = Path(out)
    with atomic_directory(out) as tmp:
        pipe.save_pretrained(tmp)
        write_json(
            Path(tmp) / "soup.json",
            {
                "ingredients": [
                    {"checkpoint": str(c), "weight": wi, "model": model_fingerprint(p)}
                    for c, wi, p in zip(checkpoints, w, pipes, strict=True)
                ],
                "base": None
                if base_pipe is None
                else {"checkpoint": str(base), "model": model_fingerprint(base_pipe)},
                "scale": scale,
                "save_dtype": save_dtype,
            },
        )
    return out
