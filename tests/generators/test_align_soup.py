"""Model soups: averaging fine-tunes of one pipeline."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from generators.align.soup import average_pipelines, save_soup
from generators.generate import load_pipeline
from generators.pipeline import ShapePipeline
from generators.schedulers import PFGMPPScheduler


def _pipe(unet, *, families=("a", "b", "c"), D=128.0, seed=None) -> ShapePipeline:
    unet = copy.deepcopy(unet)
    if seed is not None:  # a "fine-tune": every weight moved a little, differently
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in unet.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=g))
    pipe = ShapePipeline(unet=unet.eval(), scheduler=PFGMPPScheduler(D=D), families=list(families))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _sample(pipe: ShapePipeline) -> torch.Tensor:
    return pipe(
        batch_size=3, num_inference_steps=3, generator=torch.Generator().manual_seed(7),
        class_labels=[0, 1, 2], output_type="voxels", guidance_scale=2.0,
    ).samples  # fmt: skip


def test_soup_is_the_weighted_mean_of_the_weights(tiny_unet):
    a, b = _pipe(tiny_unet, seed=1), _pipe(tiny_unet, seed=2)
    soup = average_pipelines([a, b], weights=[1.0, 3.0])  # normalised to 1/4, 3/4
    sa, sb, ss = a.unet.state_dict(), b.unet.state_dict(), soup.unet.state_dict()
    assert set(ss) == set(sa)
    moved = 0
    for key, t in ss.items():
        expected = 0.25 * sa[key].double() + 0.75 * sb[key].double()
        torch.testing.assert_close(t.double(), expected, rtol=0, atol=1e-6)
        moved += int(not torch.equal(sa[key], sb[key]))
    assert moved > 10  # the two ingredients really differ
    # The order of the ingredients does not matter; equal weights by default.
    ba = average_pipelines([b, a], weights=[3.0, 1.0]).unet.state_dict()
    assert all(torch.equal(ba[k], ss[k]) for k in ss)
    half = average_pipelines([a, b]).unet.state_dict()
    torch.testing.assert_close(half["class_embedding.weight"],
                               (sa["class_embedding.weight"] + sb["class_embedding.weight"]) / 2)  # fmt: skip
    # The ingredients are left as they were.
    assert torch.equal(a.unet.state_dict()["class_embedding.weight"], sa["class_embedding.weight"])


def test_a_soup_of_one_model_samples_as_that_model(tiny_unet):
    a = _pipe(tiny_unet, seed=1)
    same = average_pipelines([a, a, a])
    assert torch.equal(_sample(same), _sample(a))
    only_first = average_pipelines([a, _pipe(tiny_unet, seed=2)], weights=[1, 0])
    assert torch.equal(_sample(only_first), _sample(a))
    assert same.families == a.families and same.scheduler.config.D == 128.0


def test_only_fine_tunes_of_one_model_can_be_averaged(tiny_unet):
    a = _pipe(tiny_unet, seed=1)
    with pytest.raises(ValueError, match="families"):
        average_pipelines([a, _pipe(tiny_unet, families=("a", "c", "b"))])
    with pytest.raises(ValueError, match="scheduler.*D: 128.0 against 64.0"):
        average_pipelines([a, _pipe(tiny_unet, D=64.0)])
    from generators.models import VoxelUNet3D

    wider = VoxelUNet3D(resolution=8, patch_size=2, block_channels=(8, 24),
                        attention_levels=(False, True), num_classes=3, embedding_dim=16,
                        norm_groups=4)  # fmt: skip
    with pytest.raises(ValueError, match="denoiser.*block_channels"):
        average_pipelines([a, _pipe(wider)])
    with pytest.raises(ValueError, match="two or more"):
        average_pipelines([a])
    with pytest.raises(ValueError, match="2 weights for 3"):
        average_pipelines([a, a, a], weights=[1, 1])
    with pytest.raises(ValueError, match="non-negative"):
        average_pipelines([a, a], weights=[1, -1])
    with pytest.raises(ValueError, match="not all zero"):
        average_pipelines([a, a], weights=[0, 0])


def test_save_soup_writes_a_loadable_pipeline_atomically(tiny_unet, tmp_path):
    a, b = _pipe(tiny_unet, seed=1), _pipe(tiny_unet, seed=2)
    a.save_pretrained(tmp_path / "a")
    b.save_pretrained(tmp_path / "b")
    out = save_soup([tmp_path / "a", tmp_path / "b"], tmp_path / "soup", weights=[1, 1])
    loaded = load_pipeline(out)
    assert torch.equal(_sample(loaded), _sample(average_pipelines([a, b])))
    info = json.loads((out / "soup.json").read_text())
    assert [i["weight"] for i in info["ingredients"]] == [0.5, 0.5]
    assert info["ingredients"][0]["checkpoint"] == str(tmp_path / "a")
    # A refused soup leaves the folder that was there untouched.
    with pytest.raises(ValueError, match="save_dtype"):
        save_soup([tmp_path / "a", tmp_path / "b"], out, save_dtype="int8")
    with pytest.raises(ValueError, match="families"):
        _pipe(tiny_unet, families=("x", "y", "z")).save_pretrained(tmp_path / "c")
        save_soup([tmp_path / "a", tmp_path / "c"], out)
    assert torch.equal(_sample(load_pipeline(out)), _sample(loaded))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_cli_soup_of_the_shipped_checkpoints(tmp_path):
    from click.testing import CliRunner

    from simkit.cli import main

    runner = CliRunner()
    out = tmp_path / "soup"
    res = runner.invoke(
        main,
        ["soup", "shapes-base", "shapes-dso", "--weight", "1", "--weight", "3", "--out",
         str(out), "--save-dtype", "float16", "--json"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert info["pipeline"] == str(out) and info["save_dtype"] == "float16"
    assert [i["weight"] for i in info["ingredients"]] == [0.25, 0.75]
    from safetensors.torch import load_file

    raw = load_file(out / "unet" / "diffusion_pytorch_model.safetensors")
    assert all(t.dtype == torch.float16 for t in raw.values())
    base, dso = load_pipeline("shapes-base"), load_pipeline("shapes-dso")
    soup = load_pipeline(out)
    for key, t in soup.unet.state_dict().items():
        expected = 0.25 * base.unet.state_dict()[key] + 0.75 * dso.unet.state_dict()[key]
        # float16 rounding: half a unit in the last place, 2^-11 relative.
        torch.testing.assert_close(t, expected, rtol=2**-10, atol=1e-7)
    bad = runner.invoke(main, ["soup", "shapes-base", "--out", str(tmp_path / "x")])
    assert bad.exit_code != 0 and "two or more" in bad.output
    bad = runner.invoke(main, ["soup", "shapes-base", "nope", "--out", str(tmp_path / "x")])
    assert bad.exit_code != 0 and "nope" in bad.output


def test_a_soup_moved_along_its_direction_from_the_base(tiny_unet):
    base = _pipe(tiny_unet)
    a, b = _pipe(tiny_unet, seed=1), _pipe(tiny_unet, seed=2)
    sbase, sa, sb = base.unet.state_dict(), a.unet.state_dict(), b.unet.state_dict()
    for scale in (0.5, 1.5):
        moved = average_pipelines([a, b], weights=[1, 3], base=base, scale=scale)
        for key, t in moved.unet.state_dict().items():
            mean = 0.25 * sa[key].double() + 0.75 * sb[key].double()
            expected = sbase[key].double() + scale * (mean - sbase[key].double())
            torch.testing.assert_close(t.double(), expected, rtol=0, atol=1e-6)
    # Scale 1 is the soup itself; one fine-tune and its base at scale 1 is that fine-tune.
    plain = average_pipelines([a, b], weights=[1, 3]).unet.state_dict()
    same = average_pipelines([a, b], weights=[1, 3], base=base).unet.state_dict()
    for key, t in same.items():
        torch.testing.assert_close(t, plain[key], rtol=0, atol=1e-6)
    assert torch.equal(_sample(average_pipelines([a], base=base, scale=1.0)), _sample(a))
    with pytest.raises(ValueError, match="scale 1.5 needs a base"):
        average_pipelines([a, b], scale=1.5)
    with pytest.raises(ValueError, match="scale must be a finite number > 0"):
        average_pipelines([a], base=base, scale=0.0)
    with pytest.raises(ValueError, match="scale must be a finite number > 0"):
        average_pipelines([a], base=base, scale=float("nan"))
    with pytest.raises(ValueError, match="the base differs.*scheduler"):
        average_pipelines([a], base=_pipe(tiny_unet, D=64.0), scale=1.5)


def test_cli_soup_extrapolates_the_shipped_checkpoint_from_its_base(tmp_path):
    from click.testing import CliRunner

    from simkit.cli import main

    runner = CliRunner()
    out = tmp_path / "expo"
    res = runner.invoke(
        main,
        ["soup", "shapes-dso", "--base", "shapes-base", "--scale", "1.5", "--out", str(out),
         "--json"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert info["scale"] == 1.5 and info["base"]["checkpoint"] == "shapes-base"
    assert [i["weight"] for i in info["ingredients"]] == [1.0]
    base, dso, expo = load_pipeline("shapes-base"), load_pipeline("shapes-dso"), load_pipeline(out)
    sb, sd = base.unet.state_dict(), dso.unet.state_dict()
    for key, t in expo.unet.state_dict().items():
        torch.testing.assert_close(t, sb[key] + 1.5 * (sd[key] - sb[key]), rtol=1e-6, atol=1e-6)
    bad = runner.invoke(main, ["soup", "shapes-dso", "--scale", "2", "--out", str(tmp_path / "x")])
    assert bad.exit_code != 0 and "needs a base" in bad.output
    assert not (tmp_path / "x").exists()
