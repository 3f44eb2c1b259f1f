"""Test helpers: an exact (oracle) network for one-object-per-class data."""

from __future__ import annotations

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from generators.pfgmpp import edm_scalings


class OracleUNet(ModelMixin, ConfigMixin):
    """The exact network F for data that is one fixed object per class.

    With one atom y_c per class, the ideal denoiser is D(x, sigma) = y_c for every x
    and sigma, so F = (y_c - c_skip x) / c_out (EDM eq. 7 solved for F). The pipeline
    passes c_in * x and c_noise; the oracle inverts both, so any mismatch between the
    pipeline's, the scheduler's and the training preconditioning shows up as a sample
    that misses its atom. ``calls`` counts network evaluations.
    """

    @register_to_config
    def __init__(
        self,
        resolution: int = 8,
        num_classes: int = 2,
        sigma_data: float = 0.5,
        in_channels: int = 1,
    ):
        super().__init__()
        self.atoms = nn.Parameter(
            torch.zeros(num_classes + 1, 1, resolution, resolution, resolution)
        )
        self.calls = 0

    @property
    def null_class(self) -> int:
        return self.config.num_classes

    def forward(self, sample, timestep, class_labels=None, return_dict=True):
        self.calls += 1
        sigma = torch.exp(4 * torch.as_tensor(timestep, dtype=torch.float64)).reshape(-1)
        s = edm_scalings(sigma, self.config.sigma_data)
        shape = (-1, 1, 1, 1, 1)
        x = sample.double() / s.c_in.reshape(shape)
        y = self.atoms[class_labels].double()
        f = (y - s.c_skip.reshape(shape) * x) / s.c_out.reshape(shape)
        out = f.to(sample.dtype)
        return type("Out", (), {"sample": out})() if return_dict else (out,)


def blocks(resolution: int, *boxes: tuple[slice, slice, slice]) -> torch.Tensor:
    """(1, R, R, R) field in {-1, +1}: +1 inside the given index boxes."""
    occ = torch.zeros(resolution, resolution, resolution)
    for box in boxes:
        occ[box] = 1
    return (2 * occ - 1)[None]


class MixtureOracleUNet(ModelMixin, ConfigMixin):
    """The exact F for data that is a mixture of K objects per class (equal weights).

    D(x, sigma) is the posterior mean over the class's atoms
    (:func:`generators.pfgmpp.ideal_denoiser`), so exact sampling lands on one atom per
    sample, chosen by the prior draw with probability 1/K: a class can then hold both
    standing and falling samples.
    """

    @register_to_config
    def __init__(
        self,
        resolution: int = 8,
        num_classes: int = 2,
        atoms_per_class: int = 2,
        sigma_data: float = 0.5,
        D: float | None = 128.0,
        in_channels: int = 1,
    ):
        super().__init__()
        r = resolution
        self.atoms = nn.Parameter(torch.full((num_classes + 1, atoms_per_class, 1, r, r, r), -1.0))

    def forward(self, sample, timestep, class_labels=None, return_dict=True):
        return _mixture_forward(self, sample, timestep, class_labels, return_dict, None)


class WeightedMixtureOracleUNet(ModelMixin, ConfigMixin):
    """:class:`MixtureOracleUNet` with learnable mixture weights and fixed atoms.

    ``logits`` (classes + 1, K) are the only parameters: D(x, sigma) is the exact
    posterior mean of the mixture sum_k softmax(logits)_k delta(atom_k), so fine-tuning
    can only move probability between the atoms. A test can then read off what an
    objective did: DRO on a class whose atoms stand or fall must move weight onto the
    standing one.
    """

    @register_to_config
    def __init__(
        self,
        resolution: int = 8,
        num_classes: int = 2,
        atoms_per_class: int = 2,
        sigma_data: float = 0.5,
        D: float | None = 128.0,
        in_channels: int = 1,
    ):
        super().__init__()
        r = resolution
        self.register_buffer(
            "atoms", torch.full((num_classes + 1, atoms_per_class, 1, r, r, r), -1.0)
        )
        self.logits = nn.Parameter(torch.zeros(num_classes + 1, atoms_per_class))

    def forward(self, sample, timestep, class_labels=None, return_dict=True):
        weights = [torch.softmax(self.logits[c].double(), 0) for c in range(len(self.logits))]
        return _mixture_forward(self, sample, timestep, class_labels, return_dict, weights)


class AdaptedMixtureOracleUNet(WeightedMixtureOracleUNet):
    """:class:`WeightedMixtureOracleUNet` plus convolutions LoRA can adapt.

    F = F_oracle + conv3(x) + conv1(x), both zero-initialised (3x3x3 and 1x1x1 Conv3d), so
    the network starts as the exact oracle (clean single-solid samples) and a LoRA
    fine-tuning has real layers to change, of both kernel shapes the U-Net has.
    """

    @register_to_config
    def __init__(
        self,
        resolution: int = 8,
        num_classes: int = 2,
        atoms_per_class: int = 2,
        sigma_data: float = 0.5,
        D: float | None = 128.0,
        in_channels: int = 1,
    ):
        super().__init__(resolution, num_classes, atoms_per_class, sigma_data, D, in_channels)
        self.conv3 = nn.Conv3d(1, 1, 3, padding=1)
        self.conv1 = nn.Conv3d(1, 1, 1)
        for conv in (self.conv3, self.conv1):
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(self, sample, timestep, class_labels=None, return_dict=True):
        f = super().forward(sample, timestep, class_labels, return_dict=False)[0]
        out = f + self.conv3(sample) + self.conv1(sample)
        return type("Out", (), {"sample": out})() if return_dict else (out,)


def _mixture_forward(model, sample, timestep, class_labels, return_dict, weights):
    """F of the exact posterior mean over ``model.atoms[class]`` (``weights[class]``, or
    uniform when ``weights`` is None), in the network's EDM parameterisation."""
    from generators.pfgmpp import ideal_denoiser

    sigma = torch.exp(4 * torch.as_tensor(timestep, dtype=torch.float64)).reshape(-1)
    sigma = sigma.expand(sample.shape[0])
    s = edm_scalings(sigma, model.config.sigma_data)
    shape = (-1, 1, 1, 1, 1)
    x = sample.double() / s.c_in.reshape(shape)
    d = torch.cat(
        [
            ideal_denoiser(
                x[i : i + 1],
                sigma[i : i + 1],
                model.atoms[c].double(),
                None if weights is None else weights[c],
                model.config.D,
            )
            for i, c in enumerate(class_labels.tolist())
        ]
    )
    f = (d - s.c_skip.reshape(shape) * x) / s.c_out.reshape(shape)
    out = f.to(sample.dtype)
    return type("Out", (), {"sample": out})() if return_dict else (out,)
