"""ShapePipeline end to end: exact samples from an oracle network, save/load, labels."""

from __future__ import annotations

import pytest
import torch

from generators.pipeline import ShapePipeline, samples_to_voxels
from generators.schedulers import PFGMPPScheduler
from tests.generators._oracle import OracleUNet, blocks

R = 8
CHAIR = blocks(R, (slice(2, 6), slice(2, 6), slice(0, 3)), (slice(2, 3), slice(2, 6), slice(3, 7)))
POLE = blocks(R, (slice(3, 5), slice(3, 5), slice(0, 8)))
TWO_PIECES = blocks(
    R, (slice(0, 2), slice(0, 2), slice(0, 2)), (slice(5, 8), slice(5, 8), slice(0, 3))
)

# A step: two boxes touching only along an edge (one solid under 26-connectivity).
STEP = blocks(R, (slice(1, 4), slice(1, 4), slice(0, 3)), (slice(4, 7), slice(4, 7), slice(0, 3)))


def _oracle(*atoms: torch.Tensor) -> OracleUNet:
    model = OracleUNet(resolution=R, num_classes=len(atoms))
    with torch.no_grad():
        for i, atom in enumerate(atoms):
            model.atoms[i] = atom
    return model


@pytest.mark.parametrize("D", [4.0, 128.0, None])
@pytest.mark.parametrize("solver", ["euler", "heun", "dpmpp_2m"])
def test_oracle_samples_land_on_their_class_atom(D, solver):
    """The ideal denoiser of a one-object-per-class data set makes every ODE sample that
    object exactly, whatever the prior draw: checks that the pipeline, scheduler and EDM
    preconditioning agree on sigma, c_in, c_noise and the F parameterisation."""
    pipe = ShapePipeline(
        unet=_oracle(CHAIR, POLE),
        scheduler=PFGMPPScheduler(D=D, solver=solver),
        families=["chair", "pole"],
    )
    pipe.set_progress_bar_config(disable=True)
    out = pipe(
        batch_size=4,
        num_inference_steps=6,
        class_labels=["chair", "pole", 1, 0],
        generator=torch.Generator().manual_seed(0),
    )
    want = torch.stack([CHAIR, POLE, POLE, CHAIR])[:, 0] > 0
    assert torch.equal(out.voxels.occupancy, want)
    torch.testing.assert_close(
        out.samples.double(), torch.stack([CHAIR, POLE, POLE, CHAIR]).double(), atol=1e-4, rtol=0
    )
    assert out.valid.all()
    assert out.class_labels.tolist() == [0, 1, 1, 0]


def test_heun_calls_the_network_2n_minus_1_times_and_guidance_doubles_the_batch():
    unet = _oracle(CHAIR, POLE)
    pipe = ShapePipeline(unet=unet, scheduler=PFGMPPScheduler(D=128.0, solver="heun"))
    pipe.set_progress_bar_config(disable=True)
    pipe(batch_size=2, num_inference_steps=5, class_labels=[0, 1])
    assert unet.calls == 2 * 5 - 1
    unet.calls = 0
    out = pipe(batch_size=2, num_inference_steps=5, class_labels=[0, 1], guidance_scale=2.0)
    assert unet.calls == 2 * 5 - 1  # one doubled batch per call, not two calls
    # the null class's atom is all -1 (empty): guidance w=2 gives F = 2 F_c - F_null,
    # i.e. the denoised 2 y_c - y_null, whose sign is the class atom's
    assert torch.equal(out.voxels.occupancy, torch.stack([CHAIR, POLE])[:, 0] > 0)


def test_mesh_output_is_watertight_and_keeps_the_largest_piece():
    pipe = ShapePipeline(unet=_oracle(TWO_PIECES, POLE), scheduler=PFGMPPScheduler(D=None))
    pipe.set_progress_bar_config(disable=True)
    out = pipe(batch_size=2, num_inference_steps=4, class_labels=[0, 1], output_type="mesh")
    assert out.valid.tolist() == [False, True]
    assert int(out.voxels.occupancy[0].sum()) == 27  # the 3x3x3 piece, not the 2x2x2 one
    for mesh, grid in zip(out.meshes, out.voxels.occupancy, strict=True):
        assert mesh.is_watertight
        # marching cubes at 0.5 on a binary grid cuts corners: volume a bit under the voxels'
        voxel_volume = float(grid.sum()) / R**3
        assert 0.6 * voxel_volume < float(mesh.volume()) < voxel_volume


def test_save_then_load_gives_identical_samples(tiny_unet, tmp_path):
    torch.nn.init.normal_(tiny_unet.conv_out.weight, std=0.1)
    pipe = ShapePipeline(
        unet=tiny_unet, scheduler=PFGMPPScheduler(D=64.0, solver="heun"), families=["a", "b", "c"]
    )
    pipe.set_progress_bar_config(disable=True)
    pipe.save_pretrained(tmp_path)
    loaded = ShapePipeline.from_pretrained(tmp_path, local_files_only=True)
    loaded.set_progress_bar_config(disable=True)
    assert loaded.families == ("a", "b", "c")
    assert loaded.scheduler.config.D == 64.0 and loaded.scheduler.config.solver == "heun"
    kw = dict(batch_size=3, num_inference_steps=4, class_labels=["a", "c", None])
    a = pipe(generator=torch.Generator().manual_seed(7), **kw).samples
    b = loaded(generator=torch.Generator().manual_seed(7), **kw).samples
    c = loaded(generator=torch.Generator().manual_seed(8), **kw).samples
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_saving_a_loaded_pipeline_does_not_record_where_it_was_loaded_from(tiny_unet, tmp_path):
    # A fine-tune of a loaded checkpoint, saved, must not depend on the folder it came
    # from: the shipped checkpoints are rebuilt byte for byte on fresh clones elsewhere.
    ShapePipeline(unet=tiny_unet, scheduler=PFGMPPScheduler(), families=["a"]).save_pretrained(
        tmp_path / "first"
    )
    loaded = ShapePipeline.from_pretrained(tmp_path / "first", local_files_only=True)
    assert "_name_or_path" in loaded.unet.config  # diffusers records it on load
    loaded.save_pretrained(tmp_path / "second")
    for f in (tmp_path / "second").rglob("*.json"):
        assert "first" not in f.read_text() and "_name_or_path" not in f.read_text(), f
    for f in (tmp_path / "first").rglob("*"):
        if f.is_file():  # the same files, byte for byte
            assert (
                f.read_bytes()
                == (tmp_path / "second" / f.relative_to(tmp_path / "first")).read_bytes()
            )
    assert loaded.unet.config._name_or_path == str(tmp_path / "first" / "unet")  # kept in memory
    again = ShapePipeline.from_pretrained(tmp_path / "second", local_files_only=True)
    assert again.families == ("a",)


def test_bad_arguments_name_the_problem(tiny_unet):
    pipe = ShapePipeline(unet=tiny_unet, scheduler=PFGMPPScheduler(), families=["a", "b", "c"])
    assert pipe.resolve_labels(["c", None, 1], 3).tolist() == [2, 3, 1]  # None: no class
    assert pipe.resolve_labels(None, 2).tolist() == [3, 3]
    with pytest.raises(ValueError, match="unknown family 'mug'"):
        pipe(batch_size=1, class_labels="mug")
    with pytest.raises(ValueError, match="outside"):
        pipe(batch_size=1, class_labels=7)
    with pytest.raises(ValueError, match="2 class labels for batch_size 3"):
        pipe(batch_size=3, class_labels=[0, 1])
    with pytest.raises(ValueError, match="output_type"):
        pipe(batch_size=1, output_type="png")
    with pytest.raises(ValueError, match="batch_size"):
        pipe(batch_size=0)
    with pytest.raises(ValueError, match="latents"):
        pipe(batch_size=1, latents=torch.zeros(1, 1, 4, 4, 4))
    with pytest.raises(ValueError, match="samples must be"):
        samples_to_voxels(torch.zeros(2, 8, 8, 8))


def test_pieces_touching_along_an_edge_are_bridged_into_one_solid():
    pipe = ShapePipeline(unet=_oracle(STEP, TWO_PIECES), scheduler=PFGMPPScheduler(D=None))
    pipe.set_progress_bar_config(disable=True)
    kw = dict(batch_size=2, num_inference_steps=4, class_labels=[0, 1], output_type="mesh")
    out = pipe(**kw)
    plain = pipe(**kw, bridge=False)
    # Unbridged, the step is two solids and keeps one box; bridged it is one solid: both
    # boxes and one voxel beside the edge they share (one bridge for the one join).
    assert plain.valid.tolist() == [False, False]
    assert int(plain.voxels.occupancy[0].sum()) == 27
    assert out.valid.tolist() == [True, False]
    assert int(out.voxels.occupancy[0].sum()) == 2 * 27 + 1
    assert bool((out.voxels.occupancy[0] >= (STEP[0] > 0)).all())
    assert out.meshes[0].is_watertight and len(out.meshes[0].to_trimesh().split()) == 1
    # Pieces apart are not joined.
    assert torch.equal(out.voxels.occupancy[1], plain.voxels.occupancy[1])
