"""`generate` and `simkit generate`: files, picture and verdicts, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from generators.generate import GenerateConfig, checkpoint_path, generate
from generators.pipeline import ShapePipeline
from generators.schedulers import PFGMPPScheduler
from simkit.cli import main
from simkit.geometry import Mesh
from simkit.physics import support_margin
from tests.generators._oracle import OracleUNet, WeightedMixtureOracleUNet, blocks

R = 8
# A squat block: stands. An inverted L whose top reaches far past its one leg: the
# centre of mass (x = 2.7 voxels) is outside the leg's footprint (x in [0, 2]): falls.
BLOCK = blocks(R, (slice(1, 7), slice(1, 7), slice(0, 3)))
OVERHANG = blocks(
    R, (slice(0, 2), slice(3, 5), slice(0, 6)), (slice(0, 8), slice(3, 5), slice(6, 8))
)


@pytest.fixture
def oracle_checkpoint(tmp_path):
    unet = OracleUNet(resolution=R, num_classes=2)
    with torch.no_grad():
        unet.atoms[0], unet.atoms[1] = BLOCK, OVERHANG
        unet.atoms[2] = -1.0  # the null class: an empty grid
    pipe = ShapePipeline(
        unet=unet, scheduler=PFGMPPScheduler(D=128.0), families=["block", "overhang"]
    )
    pipe.save_pretrained(tmp_path / "ckpt")
    return tmp_path / "ckpt"


def test_generate_writes_meshes_preview_report_and_true_verdicts(oracle_checkpoint, tmp_path):
    result = generate(
        GenerateConfig(out=tmp_path / "out", n=3, checkpoint=oracle_checkpoint, steps=4),
        progress=False,
    )
    assert [o.family for o in result.objects] == ["block", "overhang", "block"]
    assert [o.valid for o in result.objects] == [True, True, True]
    # PyBullet's verdicts agree with the analytic support check on the written files
    assert [o.stable for o in result.objects] == [True, False, True]
    for o in result.objects:
        assert [f[-4:] for f in o.files] == [".glb", ".obj"]
        mesh = Mesh.load(o.files[1])
        assert mesh.is_watertight
        assert (support_margin(mesh) > 0) == o.stable
        assert o.support_margin == pytest.approx(float(support_margin(mesh)), abs=1e-6)
    report = json.loads((tmp_path / "out" / "generate.json").read_text())
    assert report["fraction_stable"] == pytest.approx(2 / 3)
    assert (tmp_path / "out" / "preview.png").stat().st_size > 1000


def test_the_same_seed_gives_the_same_files(oracle_checkpoint, tmp_path):
    # an oracle ignores its prior draw, so check the draw itself through the pipeline
    pipe = ShapePipeline.from_pretrained(oracle_checkpoint)
    a = pipe.scheduler.sample_prior((2, 1, R, R, R), generator=torch.Generator().manual_seed(3))
    b = pipe.scheduler.sample_prior((2, 1, R, R, R), generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    for name in ("a", "b"):
        generate(
            GenerateConfig(
                out=tmp_path / name, n=2, checkpoint=oracle_checkpoint, steps=3, stability=False
            ),
            progress=False,
        )
    for f in ("000_block.obj", "001_overhang.obj"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()


def test_cli_generate_json_and_errors(oracle_checkpoint, tmp_path):
    runner = CliRunner()
    res = runner.invoke(
        main,
        [
            "generate",
            "--n",
            "2",
            "--checkpoint",
            str(oracle_checkpoint),
            "--out",
            str(tmp_path / "o"),
            "--steps",
            "3",
            "--family",
            "none",
            "--json",
            "--no-stability",
        ],
    )
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert len(data["objects"]) == 2 and data["fraction_stable"] is None
    # the oracle's null class is an empty grid: empty samples are reported, not crashed on
    assert all(o["error"] == "empty sample" and not o["valid"] for o in data["objects"])

    res = runner.invoke(
        main,
        [
            "generate",
            "--n",
            "1",
            "--checkpoint",
            str(oracle_checkpoint),
            "--out",
            str(tmp_path / "o"),
            "--family",
            "mug",
        ],
    )
    assert res.exit_code != 0 and "unknown family 'mug'" in res.output
    res = runner.invoke(main, ["generate", "--checkpoint", str(tmp_path / "nothing")])
    assert res.exit_code != 0 and "no pipeline at" in res.output
    res = runner.invoke(main, ["generate", "--checkpoint", str(oracle_checkpoint), "--D", "-3"])
    assert res.exit_code != 0 and "D must be positive" in res.output


@pytest.fixture
def coin_checkpoint(tmp_path):
    """One family whose every draw is the block (stands) with probability 1/4, else the
    overhang (falls): the exact denoiser of that two-atom mixture."""
    import math

    unet = WeightedMixtureOracleUNet(resolution=R, num_classes=1, atoms_per_class=2, D=128.0)
    unet.atoms[0, 0], unet.atoms[0, 1] = BLOCK, OVERHANG
    with torch.no_grad():
        unet.logits[0] = torch.tensor([math.log(0.25), math.log(0.75)])
    pipe = ShapePipeline(unet=unet, scheduler=PFGMPPScheduler(D=128.0), families=["coin"])
    pipe.save_pretrained(tmp_path / "coin")
    return tmp_path / "coin"


def test_retries_redraw_the_objects_that_fall_and_only_those(coin_checkpoint, tmp_path):
    n, retries = 24, 4

    def run(name: str, k: int):
        cfg = GenerateConfig(
            out=tmp_path / name, n=n, checkpoint=coin_checkpoint, steps=6, seed=5, retries=k
        )
        return generate(cfg, progress=False)

    once, redrawn = run("once", 0), run("redrawn", retries)
    first = [o.stable for o in once.objects]
    # The first draws are the same objects with and without retries, and the report keeps
    # their rate (the model's own): about 1/4 stand (binomial, 24 draws).
    assert redrawn.first_draw_fraction_stable == once.fraction_stable
    assert 1 <= sum(first) <= 12
    for o, stood in zip(redrawn.objects, first, strict=True):
        if stood:  # kept as drawn, byte for byte
            assert o.draws == 1
            assert (
                Path(o.files[1]).read_bytes()
                == (tmp_path / "once" / Path(o.files[1]).name).read_bytes()
            )
        else:
            assert o.draws > 1
        # drawn again only while it fell; the last draw kept when none stood
        assert o.stable or o.draws == retries + 1
        assert o.draws <= retries + 1
        # the verdict is the written file's: the analytic support check agrees
        assert (support_margin(Mesh.load(o.files[1])) > 0) == o.stable
    # Each redraw stands with probability 1/4, so an object falls after 5 draws with
    # probability 0.75^5 = 0.24: of 24, at most 12 (binomial tail ~1e-3) fall at the end,
    # against ~18 on the first draw.
    falls = sum(not o.stable for o in redrawn.objects)
    assert falls <= 12 and falls < n - sum(first)
    report = json.loads((tmp_path / "redrawn" / "generate.json").read_text())
    assert [o["draws"] for o in report["objects"]] == [o.draws for o in redrawn.objects]
    assert report["first_draw_fraction_stable"] == once.fraction_stable
    # The same settings give the same files.
    again = run("again", retries)
    assert [o.draws for o in again.objects] == [o.draws for o in redrawn.objects]
    with pytest.raises(ValueError, match="retries redraw the objects that fall"):
        GenerateConfig(retries=2, stability=False)
    with pytest.raises(ValueError, match="retries must be a non-negative int"):
        GenerateConfig(retries=-1)


def test_cli_generate_retries(coin_checkpoint, tmp_path):
    res = CliRunner().invoke(
        main,
        ["generate", "--n", "4", "--checkpoint", str(coin_checkpoint), "--out",
         str(tmp_path / "o"), "--steps", "4", "--retries", "2"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "draws" in res.output and "first draws:" in res.output
    res = CliRunner().invoke(
        main, ["generate", "--checkpoint", str(coin_checkpoint), "--retries", "1",
               "--no-stability", "--out", str(tmp_path / "x")],
    )  # fmt: skip
    assert res.exit_code != 0 and "need the stability verdicts" in res.output


def test_unknown_checkpoint_names_list_the_shipped_ones():
    with pytest.raises(FileNotFoundError, match="shipped checkpoints: \\[.*shapes-base"):
        checkpoint_path("no-such-checkpoint")


@pytest.mark.parametrize("name", ["shapes-base", "shapes-dso"])
def test_the_shipped_checkpoint_loads_offline_and_samples_every_family(name):
    from generators.generate import load_pipeline
    from simkit.shapes import FAMILIES

    path = checkpoint_path(name)
    assert sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) < 20 * 2**20
    pipe = load_pipeline(name)
    assert pipe.families == FAMILIES and pipe.unet.dtype == torch.float32
    assert pipe.scheduler.config.D == 128
    kw = dict(batch_size=9, class_labels=list(FAMILIES), num_inference_steps=6)
    a = pipe(generator=torch.Generator().manual_seed(0), **kw)
    b = pipe(generator=torch.Generator().manual_seed(0), **kw)
    assert torch.equal(a.samples, b.samples)
    occupied = a.voxels.occupancy.flatten(1).float().mean(1)
    # the training shapes fill 2-20 % of the grid; samples must be objects, not noise
    assert bool(((occupied > 0.005) & (occupied < 0.4)).all()), occupied


def test_generate_uses_the_aligned_checkpoint_unless_asked_for_the_base(tmp_path):
    runner = CliRunner()
    used = {}
    for flag in ([], ["--base"]):
        res = runner.invoke(
            main,
            ["generate", "--n", "1", "--steps", "2", "--no-stability", "--json",
             "--out", str(tmp_path / f"o{len(flag)}"), *flag],
        )  # fmt: skip
        assert res.exit_code == 0, res.output
        used[tuple(flag)] = Path(json.loads(res.stdout)["checkpoint"]).name
    assert used == {(): "shapes-dso", ("--base",): "shapes-base"}
    res = runner.invoke(main, ["generate", "--base", "--checkpoint", "shapes-dso"])
    assert res.exit_code != 0 and "--base and --checkpoint" in res.output


def test_the_shipped_aligned_checkpoint_stands_more_often_than_the_base(tmp_path):
    # Paired on the same 108 seeds (12 a family), apart from those its fine-tune drew
    # (from 0) and those its BENCHMARKS figures come from (50,000,000, ...).
    # On evaluation's 288 seeds the aligned model stood alone on far more seeds than the
    # base did (see its README); here McNemar's exact test must find the same direction.
    from generators.align.evaluate import EvaluateConfig, evaluate_pipeline
    from generators.generate import load_pipeline

    cfg = EvaluateConfig(out=tmp_path, n=108, seed=60_000_000, fidelity=False, workers=2)
    base = load_pipeline("shapes-base")
    report = evaluate_pipeline(load_pipeline("shapes-dso"), cfg, baseline=base, progress=False)
    paired = report.paired
    assert paired["only_this_passes"] > paired["only_baseline_passes"]
    assert paired["mcnemar_p"] < 0.01, paired
    # ...and not by drawing its families less recognisably than the base (each object's
    # nearest held-out procedural object is of the family asked for). At 108 seeds this
    # catches only a gross loss: the checkpoint shipped before the soup lost 9 points
    # (76.7 against 85.4 % on 288 seeds, p = 0.005) and here scores 73 against 78 %,
    # p = 0.47. BENCHMARKS.md has the 288- and 504-seed figures.
    rec = paired["recognised"]
    assert not (rec["only_baseline"] > rec["only_this"] and rec["mcnemar_p"] < 0.05), rec
