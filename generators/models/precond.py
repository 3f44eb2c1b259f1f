"""EDM preconditioning around a raw network: the denoiser D(x, sigma) that losses use."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from generators.pfgmpp import edm_scalings

__all__ = ["Denoiser"]


class Denoiser(nn.Module):
    """``D(x, sigma) = c_skip * x + c_out * F(c_in * x, c_noise)`` (Karras et al. 2022, eq. 7).

    The same preconditioning as :class:`generators.schedulers.PFGMPPScheduler` applies
    at sampling time (``prediction_type="epsilon"``, diffusers' name for EDM's F), so a
    network trained through this wrapper samples through the scheduler unchanged. For
    PFGM++ the denoiser is conditioned on sigma = r / sqrt(D), not on r (the paper's
    hyper-parameter transfer), so nothing here depends on D.

    Args:
        model: the raw network ``model(x_in, c_noise, class_labels=...) -> F``, with a
            ``.sample`` attribute on its output (diffusers models) or a tensor.
        sigma_data: standard deviation of the data, in data units.
    """

    def __init__(self, model: nn.Module, sigma_data: float = 0.5) -> None:
        super().__init__()
        if not sigma_data > 0:
            raise ValueError(f"sigma_data must be positive, got {sigma_data!r}")
        self.model = model
        self.sigma_data = float(sigma_data)

    def forward(self, x: Tensor, sigma: Tensor, **model_kwargs: Any) -> Tensor:
        """Denoise.

        Args:
            x: (B, ...) noisy samples.
            sigma: (B,) or scalar noise level, in data units.
            **model_kwargs: passed to the network (``class_labels``).

        Returns:
            (B, ...) the estimate of the clean sample, in ``x``'s dtype.
        """
        sigma = sigma.to(x.dtype).reshape(-1).expand(x.shape[0])
        s = edm_scalings(sigma, self.sigma_data)
        shape = (-1,) + (1,) * (x.ndim - 1)
        out = self.model(x * s.c_in.reshape(shape), s.c_noise, **model_kwargs)
        f = out.sample if hasattr(out, "sample") else out
        return s.c_skip.reshape(shape) * x + s.c_out.reshape(shape) * f.to(x.dtype)
