"""PI-HC-MoE: the hard constraint solved per expert block of a fixed space-time partition.

PI-HC-MoE (Chalapathi et al., ICLR 2024, Eq. 3; papers/pihcmoe.md sec. 1): the grid is cut
into K blocks by a fixed, uniform partition (:class:`simkit.domain.Partition`; no learned
gating). Expert k samples its m collocation points inside its block and solves its own NLLS
for ω_k on the *shared* basis; the field is ``u = Σ_k 1_{Ω_k}·(b·ω_k)``.

* DS: the global IC and boundary rows are copied into every expert's solve (as the paper).
* NS: the IC holds by construction of the ansatz, so it is partitioned with the blocks.
* All B × K solves go into one batched LM call. Under ``torch.distributed`` (torchrun) the
  experts are sharded over the ranks (K divisible by the world size), each rank solves its
  experts for the whole batch and the assembled field is all-gathered (differentiably).

Beyond the paper (options):

* ``overlap > 0``: blocks extended by ``overlap`` cells on each interior side, their fields
  blended by a partition of unity (piecewise-linear ramps across the overlaps, normalised to
  sum to 1), so the assembled field has no jumps at the interfaces.
* ``assignment="random"``: the control the reviewers asked for; grid points are assigned to
  experts at random (balanced, seeded) instead of by block.

With K = 1 the layer is exactly :class:`~solvers.constraints.hard.HardConstraint`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

import torch
from torch import Tensor, nn

from simkit.domain import Partition
from solvers.constraints.hard import (
    HardConstraintConfig,
    HardConstraintResult,
    constrained_field,
)

__all__ = ["MixtureOfExperts", "MoEConfig", "expert_layout"]


@dataclass(frozen=True)
class MoEConfig:
    """The expert layout.

    Attributes:
        splits: blocks per grid axis (t, x[, y]); K = prod(splits). Paper: DS (1, 4),
            NS (1, 2, 2). Every split must divide its axis.
        overlap: cells each block extends into its neighbours (0: the paper's indicator
            partition; > 0: partition-of-unity blending).
        assignment: ``"block"`` (the paper) or ``"random"`` (points assigned to experts at
            random, balanced; the control).
        assignment_seed: seed of the random assignment.
        shard: shard the experts over ranks when ``torch.distributed`` is initialised.
    """

    splits: tuple[int, ...] = (1, 4)
    overlap: int = 0
    assignment: Literal["block", "random"] = "block"
    assignment_seed: int = 0
    shard: bool = True

    def __post_init__(self) -> None:
        splits = tuple(self.splits)
        if not splits or any(
            isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in splits
        ):
            raise ValueError(f"splits must be positive ints, got {self.splits!r}")
        object.__setattr__(self, "splits", splits)
        if isinstance(self.overlap, bool) or not isinstance(self.overlap, int) or self.overlap < 0:
            raise ValueError(f"overlap must be an int >= 0, got {self.overlap!r}")
        if self.assignment not in ("block", "random"):
            raise ValueError(f"assignment must be 'block' or 'random', got {self.assignment!r}")
        if self.assignment == "random" and self.overlap:
            raise ValueError("overlap applies to assignment='block' only")

    @property
    def num_experts(self) -> int:
        return math.prod(self.splits)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MoEConfig:
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown MoEConfig keys {unknown}")
        d = dict(d)
        d["splits"] = tuple(d.get("splits", (1, 4)))
        return cls(**d)


def _ramp(n: int, sl: slice, overlap: int) -> Tensor:
    """1D raw weight of one block: 1 on [start, stop), falling linearly to 0 over `overlap`
    cells on each side (the d-th cell outside has 1 − d/(overlap + 1))."""
    i = torch.arange(n, dtype=torch.float64)
    dist = torch.clamp(sl.start - i, min=0) + torch.clamp(i - (sl.stop - 1), min=0)
    return torch.clamp(1 - dist / (overlap + 1), min=0)


def expert_layout(grid: tuple[int, ...], config: MoEConfig) -> tuple[list[Tensor], Tensor]:
    """Where each expert samples and how the experts' fields are assembled.

    Args:
        grid: the grid shape (T, X[, Y]).
        config: the layout.

    Returns:
        supports: K int64 tensors of flat (row-major) grid indices, expert k's points;
        weights: (K, G) float64 assembly weights, ≥ 0, summing to 1 over k at every point
        (one-hot unless ``overlap > 0``).

    Raises:
        ValueError: splits of the wrong length, or not dividing the grid.
    """
    grid = tuple(int(n) for n in grid)
    if len(config.splits) != len(grid):
        raise ValueError(
            f"splits {config.splits} need one entry per grid axis (t, x[, y]) of grid {grid}"
        )
    for n, s in zip(grid, config.splits, strict=True):
        if n % s:
            raise ValueError(f"experts {config.splits} do not divide the grid {grid} evenly")
    part = Partition(grid, config.splits)
    K, G = part.num_blocks, math.prod(grid)
    if config.assignment == "random":
        g = torch.Generator().manual_seed(config.assignment_seed)
        perm = torch.randperm(G, generator=g)
        supports = [c.sort().values for c in perm.chunk(K)]
        weights = torch.zeros(K, G, dtype=torch.float64)
        for k, s in enumerate(supports):
            weights[k, s] = 1.0
        return supports, weights
    raw = []
    for sl in part.block_slices:
        w = torch.ones((), dtype=torch.float64)
        for n, s in zip(grid, sl, strict=True):
            w = w.unsqueeze(-1) * _ramp(n, s, config.overlap)
        raw.append(w.reshape(-1))
    weights = torch.stack(raw)
    weights = weights / weights.sum(0, keepdim=True)
    supports = [w.nonzero().squeeze(1) for w in weights]
    return supports, weights


class MixtureOfExperts(nn.Module):
    """PI-HC-MoE: K expert solves on the blocks of a fixed partition of the grid.

    Args:
        constraint: the PDE and solver settings shared by the experts (``n_points`` is m
            per expert).
        config: the expert layout.
    """

    def __init__(
        self, constraint: HardConstraintConfig | None = None, config: MoEConfig | None = None
    ) -> None:
        super().__init__()
        self.constraint = HardConstraintConfig() if constraint is None else constraint
        self.config = MoEConfig() if config is None else config
        if not isinstance(self.constraint, HardConstraintConfig):
            raise TypeError(f"constraint must be a HardConstraintConfig, got {type(constraint)}")
        if not isinstance(self.config, MoEConfig):
            raise TypeError(f"config must be a MoEConfig, got {type(config)}")
        self._layout: dict[tuple[int, ...], tuple[list[Tensor], Tensor]] = {}

    @property
    def num_experts(self) -> int:
        return self.config.num_experts

    def layout(self, grid: tuple[int, ...]) -> tuple[list[Tensor], Tensor]:
        """Cached :func:`expert_layout` for a grid."""
        grid = tuple(grid)
        if grid not in self._layout:
            self._layout[grid] = expert_layout(grid, self.config)
        return self._layout[grid]

    def _shard(self) -> tuple[int, int] | None:
        import torch.distributed as dist

        if not (self.config.shard and dist.is_available() and dist.is_initialized()):
            return None
        world = dist.get_world_size()
        if world == 1:
            return None
        if self.num_experts % world:
            raise ValueError(
                f"{self.num_experts} experts cannot be sharded over {world} ranks; use a "
                "multiple of the world size or MoEConfig(shard=False)"
            )
        return dist.get_rank(), world

    def forward(
        self,
        basis: Tensor,
        u0: Tensor,
        t: Tensor,
        x: Tensor,
        y: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> HardConstraintResult:
        """Solve every expert for every sample and assemble the field.

        Args:
            basis: (B, N, T, X) (DS) or (B, N, T, X, Y) (NS), the shared basis.
            u0: (B, X[, Y]) initial condition.
            t: (T,) times; x: (X,); y: (Y,) for NS.
            generator: CPU generator of the collocation sampling (``constraint.seed`` when
                None). Under sharding every rank must pass an identically seeded one.

        Returns:
            A :class:`HardConstraintResult` with K experts: field (B, T, X[, Y]), weights
            (B, K, N), per-solve statistics (B, K).

        Raises:
            ValueError: as :class:`HardConstraint`, plus experts that do not divide the grid.
        """
        if not isinstance(basis, Tensor) or basis.ndim < 4:
            raise ValueError(
                f"basis must be (B, N, T, X[, Y]), got {getattr(basis, 'shape', basis)}"
            )
        supports, weights = self.layout(tuple(basis.shape[2:]))
        return constrained_field(
            basis, u0, t, x, y, self.constraint, supports, weights, generator, self._shard()
        )
