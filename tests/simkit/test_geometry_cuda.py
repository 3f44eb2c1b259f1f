"""The geometry layer gives the same answers on CUDA as on the CPU (skips without a GPU)."""

from __future__ import annotations

import pytest
import torch
import trimesh

from simkit.geometry import Mesh, VoxelGrid, chamfer_distance

pytestmark = pytest.mark.gpu


def _torus() -> Mesh:
    return Mesh.from_trimesh(
        trimesh.creation.torus(0.4, 0.15, major_sections=32, minor_sections=16)
    )


def test_mass_properties_cuda_matches_cpu():
    cpu = _torus()
    gpu = cpu.to("cuda")
    a, b = cpu.mass_properties(3.0), gpu.mass_properties(3.0)
    assert b.inertia.device.type == "cuda"
    torch.testing.assert_close(b.inertia.cpu(), a.inertia, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(b.center_of_mass.cpu(), a.center_of_mass, rtol=1e-12, atol=1e-14)


def test_voxelize_cuda_matches_cpu():
    meshes = [_torus(), Mesh.from_trimesh(trimesh.creation.icosphere(3))]
    cpu = VoxelGrid.from_mesh(meshes, 32)
    gpu = VoxelGrid.from_mesh([m.to("cuda") for m in meshes], 32)
    assert gpu.occupancy.device.type == "cuda"
    assert torch.equal(gpu.occupancy.cpu(), cpu.occupancy)
    torch.testing.assert_close(gpu.mass_properties().volume.cpu(), cpu.mass_properties().volume)
    surface = gpu.to_mesh()[0]
    assert surface.device.type == "cuda" and surface.is_watertight


def test_chamfer_cuda_matches_cpu():
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(4, 256, 3, generator=g), torch.rand(4, 300, 3, generator=g)
    torch.testing.assert_close(chamfer_distance(a.cuda(), b.cuda()).cpu(), chamfer_distance(a, b))
