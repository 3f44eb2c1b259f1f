"""PFGMPPScheduler: deterministic EDM-style ODE solvers for PFGM++ with the diffusers API.

With r = sigma·sqrt(D), the PFGM++ sampling ODE dx/dr = (x - E_r[y|x]) / r is
dx/dσ = (x - D(x, σ)) / σ, the same ODE as EDM's probability flow (paper, sec. 4;
``shared/papers/pfgmpp.md``, section 1). So every deterministic EDM solver is exact for any
D; only the prior changes (the D-kernel at σ_max, see :meth:`PFGMPPScheduler.sample_prior`).

Solvers (Karras ρ-schedule from σ_max to σ_min, then σ = 0):

- ``"euler"``: one model call per step; with D=None this is diffusers' ``EDMEulerScheduler``
  (no churn).
- ``"heun"``: EDM's 2nd-order Heun (Karras et al. 2022, alg. 1), the last step plain Euler to
  σ = 0. Laid out as diffusers' ``HeunDiscreteScheduler``: sigmas and timesteps are
  interleaved so that the usual loop over ``scheduler.timesteps`` makes 2·steps - 1 calls.
- ``"dpmpp_2m"``: DPM-Solver++(2M) in σ-space (λ = -ln σ; Lu et al. 2022, alg. 2), the first
  and the final step first order (the final step returns the denoised sample). With
  D=None it equals ``EDMDPMSolverMultistepScheduler(solver_order=2)``.

Stochastic samplers (churn, ancestral) are deliberately absent: they inject Gaussian noise,
which is only approximate for finite D (Student-t kernels do not compose by convolution).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput

from generators.pfgmpp import sample_prior as _kernel_prior

__all__ = ["PFGMPPScheduler", "PFGMPPSchedulerOutput"]

_SOLVERS = ("euler", "heun", "dpmpp_2m")
_PREDICTION_TYPES = ("epsilon", "sample")


@dataclass
class PFGMPPSchedulerOutput(BaseOutput):
    """Output of :meth:`PFGMPPScheduler.step`.

    Attributes:
        prev_sample: (B, ...) the sample at the next (lower) noise level; feed it back.
        pred_original_sample: (B, ...) the denoised estimate D(x, σ) at this call.
    """

    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor | None = None


class PFGMPPScheduler(SchedulerMixin, ConfigMixin):
    """ODE sampler for PFGM++ (any D > 0) and EDM diffusion (D = None).

    Pipeline contract (as diffusers' EDM schedulers)::

        scheduler.set_timesteps(steps)
        x = scheduler.sample_prior(shape, generator=g)       # not randn * init_noise_sigma
        for t in scheduler.timesteps:
            out = model(scheduler.scale_model_input(x, t), t)  # t = c_noise = ln(σ)/4
            x = scheduler.step(out, t, x).prev_sample

    The σ of the current call is ``scheduler.current_sigma`` (or
    ``scheduler.timestep_to_sigma(t)``), for denoisers written as ``denoiser(x, σ) -> x0``
    (use ``prediction_type="sample"`` and skip ``scale_model_input`` for those).

    Args:
        sigma_min: smallest nonzero noise level of the schedule (EDM: 0.002).
        sigma_max: largest noise level; the prior is the kernel at sigma_max (EDM: 80).
        sigma_data: EDM σ_d, used by the preconditioning.
        rho: exponent of the Karras schedule (EDM: 7).
        D: PFGM++ augmented dimensions, a real > 0, or None for diffusion (D = ∞). Only the
            prior depends on D.
        solver: ``"euler"``, ``"heun"`` or ``"dpmpp_2m"``.
        prediction_type: ``"epsilon"`` means EDM's F-parameterisation exactly as diffusers'
            ``EDMEulerScheduler`` (denoised = c_skip·x + c_out·model_output); ``"sample"``
            means the model output is the denoised x0.
        num_train_timesteps: length of the schedule before ``set_timesteps`` (diffusers
            convention; ``len(scheduler)``).
    """

    _compatibles: list = []
    order = 1

    @register_to_config
    def __init__(
        self,
        sigma_min: float = 0.002,
        sigma_max: float = 80.0,
        sigma_data: float = 0.5,
        rho: float = 7.0,
        D: float | None = None,
        solver: Literal["euler", "heun", "dpmpp_2m"] = "heun",
        prediction_type: Literal["epsilon", "sample"] = "epsilon",
        num_train_timesteps: int = 1000,
    ) -> None:
        if solver not in _SOLVERS:
            raise ValueError(f"solver must be one of {_SOLVERS}, got solver={solver!r}")
        if prediction_type not in _PREDICTION_TYPES:
            raise ValueError(
                f"prediction_type must be one of {_PREDICTION_TYPES}, got prediction_type={prediction_type!r}"
            )
        if D is not None and (
            isinstance(D, bool) or not isinstance(D, (int, float)) or not (D > 0) or math.isinf(D)
        ):
            raise ValueError(f"D must be a finite real > 0 or None (diffusion), got D={D!r}")
        if not (0 < sigma_min < sigma_max) or math.isinf(sigma_max):
            raise ValueError(
                f"need 0 < sigma_min < sigma_max < inf, got sigma_min={sigma_min!r}, sigma_max={sigma_max!r}"
            )
        if not sigma_data > 0:
            raise ValueError(f"sigma_data must be > 0, got sigma_data={sigma_data!r}")
        if not rho > 0:
            raise ValueError(f"rho must be > 0, got rho={rho!r}")
        if int(num_train_timesteps) < 1:
            raise ValueError(f"num_train_timesteps must be >= 1, got {num_train_timesteps!r}")
        self.order = 2 if solver == "heun" else 1
        self._begin_index: int | None = None
        self.set_timesteps(int(num_train_timesteps))
        self.num_inference_steps = None

    # ------------------------------------------------------------------ schedule

    @property
    def init_noise_sigma(self) -> float:
        """σ_max. Diffusers pipelines scale N(0, I) latents by this; that is right only for
        D=None. For finite D, draw the initial latents with :meth:`sample_prior`."""
        return float(self.config.sigma_max)

    @property
    def step_index(self) -> int | None:
        """Index of the next call into ``sigmas``/``timesteps`` (None before the first call)."""
        return self._step_index

    @property
    def begin_index(self) -> int | None:
        return self._begin_index

    def set_begin_index(self, begin_index: int = 0) -> None:
        """Start the next sampling loop at ``timesteps[begin_index]`` (diffusers API)."""
        self._begin_index = int(begin_index)

    @property
    def current_sigma(self) -> float:
        """σ at which the model is evaluated by the next ``step`` call."""
        return self._sig[self._step_index if self._step_index is not None else 0]

    def _karras(self, n: int) -> list[float]:
        """EDM eq. 5: σ_i = (σ_max^(1/ρ) + i/(n-1) (σ_min^(1/ρ) - σ_max^(1/ρ)))^ρ, float64."""
        c = self.config
        ramp = torch.linspace(0, 1, n, dtype=torch.float64)
        lo, hi = c.sigma_min ** (1 / c.rho), c.sigma_max ** (1 / c.rho)
        return ((hi + ramp * (lo - hi)) ** c.rho).tolist()

    def set_timesteps(
        self, num_inference_steps: int, device: str | torch.device | None = None
    ) -> None:
        """Build the schedule for ``num_inference_steps`` solver steps.

        ``sigmas`` (float32, CPU) holds one σ per model call plus the final 0;
        ``timesteps`` (float32, on ``device``) holds c_noise = ln(σ)/4 per model call:
        ``steps`` entries for euler/dpmpp_2m, 2·steps - 1 for heun.
        """
        n = int(num_inference_steps)
        if n < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps!r}")
        self.num_inference_steps = n
        base = self._karras(n) + [0.0]
        if self.config.solver == "heun":
            # HeunDiscrete layout: [σ0, σ1, σ1, σ2, σ2, ..., σ_{n-1}, σ_{n-1}, 0]
            sig = base[:1] + [s for s in base[1:-1] for _ in (0, 1)] + base[-1:]
        else:
            sig = base
        self._sig = sig
        sd2 = self.config.sigma_data**2
        # EDM preconditioning per call (float64 Python scalars: cheap in step()).
        self._c_in = [1.0 / math.sqrt(s * s + sd2) for s in sig]
        self._c_skip = [sd2 / (s * s + sd2) for s in sig]
        self._c_out = [s * self.config.sigma_data / math.sqrt(s * s + sd2) for s in sig]
        self.sigmas = torch.tensor(sig, dtype=torch.float64).to(torch.float32)
        self.timesteps = (0.25 * torch.log(self.sigmas[:-1])).to(device=device)
        self._step_index: int | None = None
        self._begin_index = None
        self._reset_state()

    def _reset_state(self) -> None:
        self._prev_derivative: torch.Tensor | None = None  # heun
        self._prev_sample: torch.Tensor | None = None  # heun
        self._old_denoised: torch.Tensor | None = None  # dpmpp_2m

    def timestep_to_sigma(self, timesteps: float | torch.Tensor) -> torch.Tensor:
        """σ for timesteps t = ln(σ)/4: the schedule's σ where t is in ``timesteps``, else exp(4t).

        Returns a float64 tensor shaped like ``timesteps`` (0-d for a float), on CPU.
        """
        t = torch.as_tensor(timesteps).detach().to("cpu")
        t32 = t.to(torch.float32).reshape(-1)
        sched = self.timesteps.detach().to("cpu")
        out = torch.exp(4.0 * t.to(torch.float64).reshape(-1))
        match = t32[:, None] == sched[None, :]
        hit = match.any(dim=1)
        if bool(hit.any()):
            first = match.float().argmax(dim=1)
            out[hit] = self.sigmas.to(torch.float64)[first[hit]]
        return out.reshape(t.shape)

    def _index_for_timestep(self, timestep: float | torch.Tensor) -> int:
        sched = self.timesteps.detach().to("cpu")
        t = torch.as_tensor(timestep).detach().to("cpu", torch.float32).reshape(())
        idx = (sched == t).nonzero()
        if len(idx) == 0:
            raise ValueError(
                f"timestep {float(t)} is not in scheduler.timesteps; call set_timesteps() and "
                "pass the values of scheduler.timesteps"
            )
        return int(idx[0])

    def _init_step_index(self, timestep: float | torch.Tensor) -> None:
        if self._begin_index is None:
            self._step_index = self._index_for_timestep(timestep)
        else:
            self._step_index = self._begin_index
        self._reset_state()

    # ------------------------------------------------------------------ per call

    def scale_model_input(
        self, sample: torch.Tensor, timestep: float | torch.Tensor
    ) -> torch.Tensor:
        """EDM's c_in(σ)·x for the σ of this call (σ from the scheduler's own step counter)."""
        if self._step_index is None:
            self._init_step_index(timestep)
        return sample * self._c_in[self._step_index]

    def _denoised(self, model_output: torch.Tensor, x: torch.Tensor, j: int) -> torch.Tensor:
        if self.config.prediction_type == "sample":
            return model_output
        return self._c_skip[j] * x + self._c_out[j] * model_output  # D = c_skip x + c_out F

    def step(
        self,
        model_output: torch.Tensor,
        timestep: float | torch.Tensor,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
    ) -> PFGMPPSchedulerOutput | tuple[torch.Tensor, torch.Tensor]:
        """Advance the ODE by one call's worth of the chosen solver.

        Args:
            model_output: (B, ...) the model's output at ``scale_model_input(sample, timestep)``.
            timestep: the current entry of ``timesteps`` (used only to find the first index).
            sample: (B, ...) current sample x at σ = ``current_sigma``.
            generator: unused (deterministic solvers); accepted for pipeline compatibility.
            return_dict: return a :class:`PFGMPPSchedulerOutput` (else a tuple).

        Returns:
            ``prev_sample`` (same shape and dtype as ``sample``) and ``pred_original_sample``.
        """
        if self._step_index is None:
            self._init_step_index(timestep)
        j = self._step_index
        if j >= len(self._sig) - 1:
            raise ValueError(
                f"step() called {j + 1} times but the schedule has {len(self._sig) - 1} calls; "
                "call set_timesteps() again"
            )
        out_dtype = sample.dtype
        cdtype = out_dtype if out_dtype in (torch.float32, torch.float64) else torch.float32
        x = sample.to(cdtype)
        denoised = self._denoised(model_output.to(cdtype), x, j)
        sigma, sigma_next = self._sig[j], self._sig[j + 1]
        solver = self.config.solver

        if solver == "euler":
            derivative = (x - denoised) / sigma  # dx/dσ = (x - D(x, σ)) / σ
            prev = x + derivative * (sigma_next - sigma)
        elif solver == "heun":
            if self._prev_derivative is None:  # first-order (Euler) predictor
                derivative = (x - denoised) / sigma
                prev = x + derivative * (sigma_next - sigma)
                if sigma_next > 0:  # EDM alg. 1: no correction on the step to σ = 0
                    self._prev_derivative, self._prev_sample = derivative, x
            else:  # trapezoidal corrector; this call evaluated the model at σ_{i+1} = σ
                sigma_prev = self._sig[j - 1]
                derivative = 0.5 * (self._prev_derivative + (x - denoised) / sigma)
                prev = self._prev_sample + derivative * (sigma - sigma_prev)
                self._prev_derivative = self._prev_sample = None
        else:  # dpmpp_2m, λ = -ln σ
            if sigma_next == 0.0:
                prev = denoised  # first-order limit of the final step
            else:
                h = math.log(sigma / sigma_next)
                if self._old_denoised is None:
                    d = denoised
                else:
                    r = math.log(self._sig[j - 1] / sigma) / h  # h_last / h
                    d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * self._old_denoised
                prev = (sigma_next / sigma) * x - math.expm1(-h) * d
            self._old_denoised = denoised

        self._step_index = j + 1
        prev = prev.to(out_dtype)
        if not return_dict:
            return prev, denoised
        return PFGMPPSchedulerOutput(prev_sample=prev, pred_original_sample=denoised)

    # ------------------------------------------------------------------ noise

    def sample_prior(
        self,
        shape: tuple[int, ...] | torch.Size,
        generator: torch.Generator | None = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> torch.Tensor:
        """Initial latents: the D-kernel centred at 0 at σ_max (σ_max·N(0, I) for D=None)."""
        return _kernel_prior(
            shape, self.config.sigma_max, self.config.D, generator, device=device, dtype=dtype
        )

    def add_noise(
        self,
        original_samples: torch.Tensor,
        noise: torch.Tensor,
        timesteps: float | torch.Tensor,
    ) -> torch.Tensor:
        """``original_samples + noise · σ(t)`` (diffusers semantics), σ from :meth:`timestep_to_sigma`.

        Unlike ``EDMEulerScheduler``, any t = ln(σ)/4 works, not only schedule entries. For
        finite D, ``noise`` must be the unit-scale kernel draw
        ``generators.pfgmpp.sample_noise(shape, 1.0, D, generator)`` (one W per sample, so
        σ·noise is the kernel at σ); Gaussian noise would train the D = ∞ model.

        Args:
            original_samples: (B, ...) clean data.
            noise: (B, ...) unit-scale noise.
            timesteps: float or (B,) tensor of t = ln(σ)/4.
        """
        sigma = self.timestep_to_sigma(timesteps).to(
            device=original_samples.device, dtype=original_samples.dtype
        )
        sigma = sigma.reshape(-1, *([1] * (original_samples.ndim - 1))) if sigma.ndim else sigma
        return original_samples + noise * sigma

    def __len__(self) -> int:
        return int(self.config.num_train_timesteps)
