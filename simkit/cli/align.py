"""``simkit align`` and ``simkit evaluate``: simulation-feedback fine-tuning and its measure."""

from __future__ import annotations

import click

from simkit.cli._common import (
    device_option,
    emit_json,
    fail_on_value_error,
    json_option,
    resolve_device_or_fail,
    seed_option,
)

_BACKENDS = ("process", "serial", "ray")


def _backend_option(fn):  # type: ignore[no-untyped-def]
    fn = click.option(
        "--workers", type=click.IntRange(min=1), default=None, help="Simulation processes."
    )(fn)
    return click.option(
        "--backend",
        type=click.Choice(_BACKENDS),
        default="process",
        show_default=True,
        help="Where simulations run.",
    )(fn)


@click.command()
@click.option("--checkpoint", default="shapes-base", show_default=True,
              help="Pipeline to start from.")  # fmt: skip
@click.option(
    "--objective",
    type=click.Choice(["dpo", "dro", "kto", "sft"]),
    default="dro",
    show_default=True,
    help="DPO (pairs), DRO (DSO's), KTO (bounded) or SFT (standing samples only).",
)
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Run folder.")
@click.option("--rounds", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--family", "families", multiple=True,
              help="Collect and fine-tune on this family only (repeatable) [default: all "
              "the pipeline's].")  # fmt: skip
@click.option("--samples-per-condition", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--steps", type=click.IntRange(min=1), default=200, show_default=True,
              help="Optimiser steps per round.")  # fmt: skip
@click.option("--sample-steps", type=click.IntRange(min=1), default=18, show_default=True,
              help="Solver steps when collecting samples.")  # fmt: skip
@click.option("--guidance", type=click.FloatRange(min=0), default=2.0, show_default=True,
              help="Classifier-free guidance weight when collecting.")  # fmt: skip
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=1e-4, show_default=True)
@click.option("--beta", type=click.FloatRange(min=0, min_open=True), default=None,
              help="DPO / KTO inverse temperature [default: 500 / 50].")  # fmt: skip
@click.option("--lora-rank", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--full", is_flag=True, help="Fine-tune every weight instead of LoRA adapters.")
@click.option(
    "--fragments",
    type=click.Choice(["drop", "piece", "fail"]),
    default="drop",
    show_default=True,
    help="A sample that is not one solid: left out (drop), trained on as its judged "
    "largest piece (piece), or a failure with all its pieces (fail).",
)
@click.option("--p-mean", type=float, default=-1.2, show_default=True,
              help="Training noise levels: ln sigma ~ N(p_mean, p_std^2), ...")  # fmt: skip
@click.option("--p-std", type=click.FloatRange(min=0, min_open=True), default=1.2,
              show_default=True, help="... (the log-normal's spread), ...")  # fmt: skip
@click.option("--sigma-uniform", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="... with this share log-uniform over the sampling range.")  # fmt: skip
@click.option("--thin-weight", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Extra loss weight on thin parts (legs, poles) and beside them.")  # fmt: skip
@click.option("--class-dropout", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of items trained as the null class (guidance's baseline).")  # fmt: skip
@click.option("--anchor", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Weight of a KL-style penalty keeping the denoiser near the one it "
              "started from (0: none).")  # fmt: skip
@click.option("--anchor-p-mean", type=float, default=None,
              help="The anchor's own noise levels, ln sigma ~ N(this, p_std^2) [default: "
              "the objective's].")  # fmt: skip
@click.option("--sigma-split", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Train the objective only at noise levels >= this and the anchor only "
              "below it [default: no split].")  # fmt: skip
@click.option("--replay", type=click.IntRange(min=0), default=0, show_default=True,
              help="Judge this many procedural training objects per family once; those "
              "that stand join every round's training pool (sft, kto, dro).")  # fmt: skip
@click.option("--verdict-cache", type=click.Path(file_okay=False), default=None,
              help="Keep the replay set's verdicts here; runs that share the folder judge "
              "it once.")  # fmt: skip
@click.option("--balance-conditions", is_flag=True,
              help="Draw training items family-uniformly, not in proportion to how many "
              "of each family passed.")  # fmt: skip
@click.option("--balance-labels", is_flag=True,
              help="Draw passing and failing items equally often, so that replay's "
              "passing objects do not thin out the failing half (kto, dro).")  # fmt: skip
@click.option(
    "--reward",
    type=click.Choice(["stability", "stability+family"]),
    default="stability",
    show_default=True,
    help="What an object must do to pass: stand (DSO), or stand and still be recognised "
    "as the family asked for (its nearest procedural object, up to turns, is of that "
    "family), so that a chair cannot pass by becoming a stool.",
)
@click.option(
    "--save-dtype",
    type=click.Choice(["float32", "float16"]),
    default="float32",
    show_default=True,
    help="Weights of the exported pipeline (float16: half the size, loads as float32).",
)
@_backend_option
@device_option
@seed_option
@json_option
def align(
    checkpoint: str | None,
    objective: str,
    out: str,
    rounds: int,
    families: tuple[str, ...],
    samples_per_condition: int,
    steps: int,
    sample_steps: int,
    guidance: float,
    batch_size: int,
    lr: float,
    beta: float | None,
    lora_rank: int,
    full: bool,
    fragments: str,
    p_mean: float,
    p_std: float,
    sigma_uniform: float,
    thin_weight: float,
    class_dropout: float,
    anchor: float,
    anchor_p_mean: float | None,
    sigma_split: float | None,
    replay: int,
    verdict_cache: str | None,
    balance_conditions: bool,
    balance_labels: bool,
    reward: str,
    save_dtype: str,
    workers: int | None,
    backend: str,
    device: str,
    seed: int,
    as_json: bool,
) -> None:
    """Fine-tune a generator on the simulator's verdicts (DSO); resumes an interrupted run.

    Exports the fine-tuned pipeline to OUT/pipeline: `simkit generate --checkpoint
    OUT/pipeline` samples it.
    """
    from generators.align import AlignConfig, SimFeedbackTrainer
    from generators.generate import load_pipeline

    dev = resolve_device_or_fail(device)
    config = fail_on_value_error(
        lambda: AlignConfig(
            out=out,
            objective=objective,
            rounds=rounds,
            conditions=families or None,
            samples_per_condition=samples_per_condition,
            steps_per_round=steps,
            sample_steps=sample_steps,
            guidance_scale=guidance,
            batch_size=batch_size,
            lr=lr,
            beta=beta,
            lora_rank=None if full else lora_rank,
            fragments=fragments,
            p_mean=p_mean,
            p_std=p_std,
            sigma_uniform=sigma_uniform,
            thin_weight=thin_weight,
            class_dropout=class_dropout,
            anchor=anchor,
            anchor_p_mean=anchor_p_mean,
            sigma_split=sigma_split,
            replay=replay,
            verdict_cache=verdict_cache,
            balance_conditions=balance_conditions,
            balance_labels=balance_labels,
            save_dtype=save_dtype,
            seed=seed,
            workers=workers,
            backend=backend,
        )  # fmt: skip
    )
    pipe = fail_on_value_error(lambda: load_pipeline(checkpoint, device=dev))
    trainer = fail_on_value_error(lambda: SimFeedbackTrainer(pipe, config, reward=reward))
    result = fail_on_value_error(lambda: trainer.run())
    summary = {
        "pipeline": str(result.pipeline_dir),
        "rounds": result.rounds,
        "steps": len(result.history),
        "seconds": result.seconds,
    }
    if as_json:
        emit_json(summary)
        return
    for r in result.rounds:
        loss = r.get("mean_loss")
        click.echo(
            f"round {r['round']}: {r['samples']} samples, {r['pass_rate']:.1%} "
            f"{'stand' if reward == 'stability' else 'pass'}, "
            f"{r['training_items']} training items"
            + ("" if loss is None else f", mean loss {loss:.4g}")
        )
    click.echo(f"fine-tuned pipeline: {result.pipeline_dir} ({result.seconds:.0f} s)")


@click.command()
@click.option("--checkpoint", default=None,
              help="Pipeline to evaluate [default: shapes-dso, what generate uses].")  # fmt: skip
@click.option("--baseline", default=None,
              help="Pipeline to compare with on the same seeds (paired test).")  # fmt: skip
@click.option("--n", "n", type=click.IntRange(min=1), default=512, show_default=True)
@click.option("--steps", type=click.IntRange(min=1), default=18, show_default=True)
@click.option(
    "--out", type=click.Path(file_okay=False), default="out/evaluate", show_default=True,
    help="Samples, verdicts and report.json (an interrupted evaluation resumes).",
)  # fmt: skip
@click.option("--guidance", type=click.FloatRange(min=0), default=2.0, show_default=True,
              help="Classifier-free guidance weight.")  # fmt: skip
@click.option("--no-fidelity", is_flag=True, help="Skip MMD / COV / 1-NNA and diversity.")
@click.option(
    "--verdict-cache", type=click.Path(file_okay=False), default=None,
    help="Keep the held-out references' verdicts here; evaluations that share the folder "
    "judge them once (some minutes each on a CPU).",
)  # fmt: skip
@_backend_option
@device_option
@click.option("--seed", type=int, default=50_000_000, show_default=True,
              help="First sampling seed (keep it apart from fine-tuning seeds).")  # fmt: skip
@json_option
def evaluate(
    checkpoint: str | None,
    baseline: str | None,
    n: int,
    steps: int,
    out: str,
    guidance: float,
    no_fidelity: bool,
    verdict_cache: str | None,
    workers: int | None,
    backend: str,
    device: str,
    seed: int,
    as_json: bool,
) -> None:
    """How many generated objects stand (95% interval), against a baseline, and at what cost."""
    from generators.align.evaluate import EvaluateConfig, evaluate_pipeline
    from generators.generate import load_pipeline

    dev = resolve_device_or_fail(device)
    config = fail_on_value_error(
        lambda: EvaluateConfig(
            out=out,
            n=n,
            steps=steps,
            seed=seed,
            guidance_scale=guidance,
            fidelity=not no_fidelity,
            verdict_cache=verdict_cache,
            workers=workers,
            backend=backend,
        )  # fmt: skip
    )
    pipe = fail_on_value_error(lambda: load_pipeline(checkpoint, device=dev))
    base = (
        None
        if baseline is None
        else fail_on_value_error(lambda: load_pipeline(baseline, device=dev))
    )
    report = fail_on_value_error(lambda: evaluate_pipeline(pipe, config, baseline=base))
    data = report.to_dict()
    if as_json:
        emit_json(data)
        return
    o = data["overall"]
    lo, hi = o["pass_rate_95ci"]
    rec = "recognised" in o

    def recognised(f: dict) -> str:
        return f"{f['recognised']:>12.1%}" if rec else ""

    click.echo(
        f"{'family':<12}{'n':>5}{'stand':>8}{'95% CI':>16}{'tilt':>8}{'valid':>8}"
        + (f"{'recognised':>12}" if rec else "")
    )
    for fam, f in data["per_family"].items():
        flo, fhi = f["pass_rate_95ci"]
        click.echo(
            f"{fam:<12}{f['n']:>5}{f['pass_rate']:>8.1%}{f'{flo:.2f}-{fhi:.2f}':>16}"
            f"{(f['mean_tilt_deg'] or 0):>8.1f}{f['valid']:>8.1%}{recognised(f)}"
        )
    click.echo(
        f"{'all':<12}{o['n']:>5}{o['pass_rate']:>8.1%}{f'{lo:.2f}-{hi:.2f}':>16}"
        f"{(o['mean_tilt_deg'] or 0):>8.1f}{o['valid']:>8.1%}{recognised(o)}"
    )
    ref = data.get("reference") or {}
    if data["paired"]:
        pr, b = data["paired"], data["baseline"]
        click.echo(
            f"baseline stands {b['pass_rate']:.1%}; on the same seeds {pr['only_this_passes']} "
            f"stand only here, {pr['only_baseline_passes']} only there (McNemar p = "
            f"{pr['mcnemar_p']:.3g})"
        )
        if "recognised" in pr:
            r = pr["recognised"]
            click.echo(
                f"baseline recognised as its family {b['recognised']:.1%}; {r['only_this']} "
                f"recognised only here, {r['only_baseline']} only there (McNemar p = "
                f"{r['mcnemar_p']:.3g})"
            )
    if rec:
        click.echo(
            "recognised: the nearest held-out procedural object (up to turns) is of the "
            f"family asked for; a second procedural set scores {ref['recognised']:.1%}"
        )
    if "one_nna_cd" in o:
        click.echo(
            f"fidelity: 1-NNA {o['one_nna_cd']:.1%}, COV {o['cov_cd']:.1%}, MMD {o['mmd_cd']:.4g}"
            f"; against the references that stand: 1-NNA {o['one_nna_cd_passing']:.1%}, "
            f"COV {o['cov_cd_passing']:.1%}; up to turns: 1-NNA {o['one_nna_turns']:.1%}"
        )
    click.echo(
        f"volume {o['volume']:.3f}, base-plate fraction {o['base_fraction']:.3f}"
        + (
            f" (references {ref['volume']:.3f}, {ref['base_fraction']:.3f})"
            if "volume" in ref
            else ""
        )
    )


@click.command()
@click.argument("checkpoints", nargs=-1, required=True)
@click.option("--out", type=click.Path(file_okay=False), required=True,
              help="Folder for the averaged pipeline (written atomically).")  # fmt: skip
@click.option("--weight", "weights", type=click.FloatRange(min=0), multiple=True,
              help="One per checkpoint, in order (default: equal).")  # fmt: skip
@click.option("--base", default=None,
              help="The model the fine-tunes started from; with --scale, the soup is moved "
              "along its direction from it.")  # fmt: skip
@click.option("--scale", type=float, default=1.0, show_default=True,
              help="base + SCALE x (average - base): below 1 back toward the base, above 1 "
              "past the fine-tunes (needs --base).")  # fmt: skip
@click.option("--save-dtype", type=click.Choice(["float32", "float16"]), default="float32",
              show_default=True, help="float16 halves the size.")  # fmt: skip
@json_option
def soup(
    checkpoints: tuple[str, ...],
    out: str,
    weights: tuple[float, ...],
    base: str | None,
    scale: float,
    save_dtype: str,
    as_json: bool,
) -> None:
    """Average fine-tunes of one model (a model soup) into a new pipeline.

    CHECKPOINTS are two or more pipeline folders or shipped names, fine-tuned from the
    same base (e.g. two `simkit align` runs' `pipeline/` folders); one is enough with
    --base and --scale (e.g. `simkit soup shapes-dso --base shapes-base --scale 1.5`).
    """
    from generators.align.soup import save_soup

    path = fail_on_value_error(
        lambda: save_soup(
            checkpoints,
            out,
            weights=list(weights) or None,
            base=base,
            scale=scale,
            save_dtype=save_dtype,
        )
    )
    if as_json:
        import json

        emit_json(json.loads((path / "soup.json").read_text()) | {"pipeline": str(path)})
        return
    moved = "" if base is None else f", moved to {scale:g} x its distance from {base}"
    click.echo(f"averaged {len(checkpoints)} checkpoint(s){moved} into {path}")
