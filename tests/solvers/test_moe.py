"""PI-HC-MoE: K = 1 is PI-HC, the layout (blocks, partition of unity, random control), the
block-wise ansatz of Eq. 3, and expert sharding over two gloo ranks."""

from __future__ import annotations

import os
import sys

import pytest
import torch
import torch.multiprocessing as mp

from solvers.constraints import (
    HardConstraint,
    HardConstraintConfig,
    MixtureOfExperts,
    MoEConfig,
)
from solvers.constraints.hard import physics_loss
from solvers.constraints.moe import expert_layout
from solvers.pdes.diffusion_sorption import cell_centres

F64 = torch.float64


def _ds(B=2, N=6, T=10, X=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 500, T, dtype=F64)
    x = cell_centres(X, dtype=F64)
    basis = 0.3 * torch.rand(B, N, T, X, generator=g, dtype=F64)
    u0 = torch.full((B, X), 0.1, dtype=F64)
    return basis, u0, t, x


def _ns(B=2, N=4, T=5, n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 1, T, dtype=F64)
    x = torch.arange(n, dtype=F64) / n
    basis = 20 * torch.randn(B, N, T, n, n, generator=g, dtype=F64)
    u0 = torch.randn(B, n, n, generator=g, dtype=F64)
    return basis, u0, t, x


@pytest.mark.parametrize("pde", ["diffusion-sorption", "navier-stokes"])
def test_one_expert_is_exactly_pihc(pde):
    if pde == "diffusion-sorption":
        basis, u0, t, x = _ds()
        args, splits = (basis, u0, t, x), (1, 1)
    else:
        basis, u0, t, x = _ns()
        args, splits = (basis, u0, t, x, x), (1, 1, 1)
    cfg = HardConstraintConfig(pde=pde, n_points=100)
    a = HardConstraint(cfg)(*args, generator=torch.Generator().manual_seed(3))
    b = MixtureOfExperts(cfg, MoEConfig(splits=splits))(
        *args, generator=torch.Generator().manual_seed(3)
    )
    assert torch.equal(a.field, b.field)
    assert torch.equal(a.weights, b.weights)
    assert torch.equal(a.iterations, b.iterations)


def test_field_is_the_blockwise_ansatz_of_eq3():
    basis, u0, t, x = _ds()
    # residual_scale: PDE rows in nondimensional time, so that they shape each expert's ω
    cfg = HardConstraintConfig(n_points=60, residual_scale=500.0)
    out = MixtureOfExperts(cfg, MoEConfig(splits=(2, 4)))(basis, u0, t, x)
    assert out.weights.shape == (2, 8, 6) and out.converged.shape == (2, 8)
    assert out.converged.all()
    for k in range(8):
        tb, xb = k // 4, k % 4
        sl = (slice(None), slice(5 * tb, 5 * tb + 5), slice(8 * xb, 8 * xb + 8))
        expected = torch.einsum(
            "bntx,bn->btx", basis[(sl[0], slice(None), *sl[1:])], out.weights[:, k]
        )
        torch.testing.assert_close(out.field[sl], expected, rtol=0, atol=1e-14)
    # each expert differs: the blocks are solved separately
    assert (out.weights[:, 0] - out.weights[:, 3]).abs().max() > 1e-3


def test_layout_blocks_random_and_partition_of_unity():
    grid = (4, 12)
    sup, w = expert_layout(grid, MoEConfig(splits=(1, 3)))
    assert torch.equal(torch.cat(sup).sort().values, torch.arange(48))
    assert torch.equal(w.sum(0), torch.ones(48, dtype=F64)) and set(w.unique().tolist()) == {0, 1}
    sup_r, w_r = expert_layout(grid, MoEConfig(splits=(1, 3), assignment="random"))
    assert [len(s) for s in sup_r] == [16, 16, 16]
    assert torch.equal(torch.cat(sup_r).sort().values, torch.arange(48))
    assert not torch.equal(sup_r[0], sup[0])  # not the blocks
    sup_o, w_o = expert_layout(grid, MoEConfig(splits=(1, 3), overlap=2))
    torch.testing.assert_close(w_o.sum(0), torch.ones(48, dtype=F64))
    prof = w_o.reshape(3, 4, 12)[:, 0]  # along x, one time row
    # continuous blend: the weights change by at most 1/(overlap+1) between neighbours
    assert (prof.diff(dim=1).abs() <= 1 / 3 + 1e-12).all()
    assert len(sup_o[1]) == 4 * (4 + 2 * 2)  # the middle block grows by 2 cells each side


def test_overlap_removes_interface_jumps():
    basis, u0, t, x = _ds(N=6, X=32, seed=1)
    cfg = HardConstraintConfig(n_points=None, residual_scale=500.0)
    hard = MixtureOfExperts(cfg, MoEConfig(splits=(1, 4)))(basis, u0, t, x).field
    blend = MixtureOfExperts(cfg, MoEConfig(splits=(1, 4), overlap=3))(basis, u0, t, x).field

    # the jump across an interface (x index 7|8) relative to the typical neighbour difference
    def jump(f):
        d = f.diff(dim=-1).abs()
        return (d[..., 7] / d.median()).mean()

    assert jump(blend) < jump(hard)


def test_experts_must_divide_the_grid():
    basis, u0, t, x = _ds(X=30)
    with pytest.raises(ValueError, match="do not divide the grid"):
        MixtureOfExperts(HardConstraintConfig(n_points=20), MoEConfig(splits=(1, 4)))(
            basis, u0, t, x
        )
    with pytest.raises(ValueError, match="one entry per grid axis"):
        MixtureOfExperts(HardConstraintConfig(n_points=20), MoEConfig(splits=(5,)))(basis, u0, t, x)


# ----------------------------------------------------------------------------- gloo ranks


def _worker(rank: int, world: int, store: str, path: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    # A file rendezvous, not a TCP port: no race for a free port on a busy machine.
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        basis, u0, t, x = _ds(N=6, X=32, seed=5)
        basis.requires_grad_(True)
        cfg = HardConstraintConfig(n_points=80)
        out = MixtureOfExperts(cfg, MoEConfig(splits=(1, 4)))(
            basis, u0, t, x, generator=torch.Generator().manual_seed(7)
        )
        loss = physics_loss(out.field, u0, t, x, cfg)[0]
        loss.backward()
        grad = basis.grad.clone()
        dist.all_reduce(grad)
        grad /= world  # DDP's averaging
        if rank == 0:
            torch.save(
                {
                    "field": out.field.detach(),
                    "grad": grad,
                    "weights": out.weights.detach(),
                    "iterations": out.iterations,
                },
                path,
            )
        dist.barrier()  # rank 1 must not tear gloo down while rank 0 is still writing
    finally:
        dist.destroy_process_group()
    # Leave without the interpreter's teardown: there, a rank once aborted ("terminate
    # called without an active exception", SIGABRT) after all its work was done, as a
    # C++ thread of the collectives was destroyed. A failure above still raises first.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def test_two_gloo_ranks_give_the_single_process_result(tmp_path):
    path = str(tmp_path / "rank0.pt")
    store = str(tmp_path / "rendezvous")
    mp.spawn(_worker, args=(2, store, path), nprocs=2, join=True)
    got = torch.load(path, weights_only=True)
    basis, u0, t, x = _ds(N=6, X=32, seed=5)
    basis.requires_grad_(True)
    cfg = HardConstraintConfig(n_points=80)
    out = MixtureOfExperts(cfg, MoEConfig(splits=(1, 4)))(
        basis, u0, t, x, generator=torch.Generator().manual_seed(7)
    )
    physics_loss(out.field, u0, t, x, cfg)[0].backward()
    torch.testing.assert_close(got["field"], out.field.detach(), rtol=0, atol=1e-12)
    torch.testing.assert_close(got["weights"], out.weights.detach(), rtol=0, atol=1e-12)
    assert torch.equal(got["iterations"], out.iterations)
    torch.testing.assert_close(got["grad"], basis.grad, rtol=1e-9, atol=1e-12)


@pytest.mark.gpu
def test_cuda_matches_cpu():
    basis, u0, t, x = _ds(N=6, X=32, seed=2)
    cfg = HardConstraintConfig(n_points=80)
    layer = MixtureOfExperts(cfg, MoEConfig(splits=(1, 4)))
    cpu = layer(basis, u0, t, x, generator=torch.Generator().manual_seed(1))
    dev = torch.device("cuda")
    gpu = layer(
        basis.to(dev), u0.to(dev), t.to(dev), x.to(dev), generator=torch.Generator().manual_seed(1)
    )
    assert gpu.field.device.type == "cuda"
    torch.testing.assert_close(gpu.field.cpu(), cpu.field, rtol=1e-9, atol=1e-11)
