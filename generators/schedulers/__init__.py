"""Schedulers with the diffusers API: PFGM++ (any D) and EDM diffusion (D = None)."""

from generators.schedulers.pfgmpp import PFGMPPScheduler, PFGMPPSchedulerOutput

__all__ = ["PFGMPPScheduler", "PFGMPPSchedulerOutput"]
