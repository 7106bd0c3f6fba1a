"""The ``gait`` command line: argument parsing only.

Each command parses its options and calls into ``gaitcli.data``, ``gaitcli.config``,
``gaitcli.models``, ``gaitcli.training`` or ``gaitcli.evaluation``. User mistakes arrive here as
:class:`gaitcli.errors.GaitError` and are printed as one line with a non-zero exit code.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape

from gaitcli import __version__
from gaitcli.cli_common import (
    PrecisionOption,
    chosen_precision,
    console,
    out_console,
    precision_note,
    warn,
    write_json,
)
from gaitcli.cli_common import handle_errors as _handle_errors
from gaitcli.cli_video import VIDEO_PANEL, VideoOptionsBuilder, with_video_options
from gaitcli.errors import GaitError, render

app = typer.Typer(
    name="gait",
    help="Silhouette-based gait recognition (MetaGait / GaitGL): prepare, inspect, train, evaluate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

_warn = warn


def _warn_wrapped(message: str) -> None:
    """A warning wrapped at the terminal's width (``gait demo`` reads well at 80 columns)."""
    console.print(f"[yellow]warning:[/] {escape(render(message))}", highlight=False)


def _note(message: str) -> None:
    console.print(f"[cyan]note:[/] {escape(render(message))}", highlight=False, soft_wrap=True)


def _version_callback(value: bool) -> None:
    if value:
        out_console.print(f"gaitcli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version_callback, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """gaitcli: MetaGait / GaitGL gait recognition toolkit."""


# --------------------------------------------------------------------------- synth
@app.command()
@_handle_errors
def synth(
    out: Annotated[Path, typer.Argument(help="Folder to write the PNG tree into.")],
    subjects: Annotated[int, typer.Option(min=1, help="Number of subjects (ids 001, 002, ...).")] = 20,
    views: Annotated[Optional[str], typer.Option(
        help="Comma list of views, e.g. 000,090 (default: all 11).")] = None,
    types: Annotated[Optional[str], typer.Option(
        help="Comma list of type-seq, e.g. nm-01,bg-01 (default: the 10 CASIA-B types).")] = None,
    frames: Annotated[int, typer.Option(min=8, help="Mean sequence length in frames.")] = 60,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives byte-identical output.")] = 0,
    workers: Annotated[Optional[int], typer.Option(
        min=1, help="Worker processes (default: all cores).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace existing sequences in OUT.")] = False,
) -> None:
    """Write a synthetic CASIA-B-shaped silhouette data set (PNG frames)."""
    from gaitcli.synth import synthesize

    summary = synthesize(
        out,
        subjects=subjects,
        views=_split_list(views),
        types=_split_list(types),
        frames=frames,
        seed=seed,
        workers=workers,
        overwrite=overwrite,
        console=console,
    )
    out_console.print(
        f"wrote {summary.sequences_written} sequences, {summary.frames_written} frames to {out}"
        + (f" ({summary.skipped_existing} already there)" if summary.skipped_existing else "")
    )


def _set_overrides(texts: Optional[list[str]]) -> list[Any]:
    """``--set KEY=VALUE`` options as typed overrides whose messages name the option."""
    from gaitcli.config import parse_override

    return [parse_override(text, source=f"--set {text}") for text in texts or []]


def _split_list(value: Optional[str]) -> Optional[list[str]]:
    if value is None:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    return items or None


# --------------------------------------------------------------------------- prepare
@app.command()
@_handle_errors
def prepare(
    input_dir: Annotated[Path, typer.Argument(
        metavar="IN", help="Raw silhouettes: id/type-seq/view/*.png, or a data set's download (--layout).")],
    output_dir: Annotated[Path, typer.Argument(metavar="OUT", help="Output: id/type-seq/view/view.pkl.")],
    img_size: Annotated[int, typer.Option("--img-size", min=8, help="Output height and width.")] = 64,
    workers: Annotated[Optional[int], typer.Option(
        min=1, help="Worker processes (default: all cores).")] = None,
    overwrite: Annotated[bool, typer.Option(
        help="Make OUT hold exactly what IN gives: rewrite every sequence, remove pkls IN does not "
        "produce.")] = False,
    follow_links: Annotated[bool, typer.Option(
        "--follow-links", help="Follow directory links in IN (never into a folder already walked).")] = False,
    layout: Annotated[str, typer.Option(
        "--layout", metavar="default|grew|gait3d|ccpg|oumvlp",
        help="How IN is laid out: id/type/view folders (default) or a data set's own download "
        "(docs/prepare-layouts.md).")] = "default",
    json_out: Annotated[Optional[str], typer.Option(
        "--json", metavar="FILE", help="Write the summary as JSON ('-' = stdout).")] = None,
) -> None:
    """Turn silhouette PNG folders into one pkl per sequence (OpenGait pretreatment)."""
    from gaitcli.data.prepare import prepare_dataset, render_summary

    summary = prepare_dataset(input_dir, output_dir, img_size=img_size, workers=workers, overwrite=overwrite,
                              follow_links=follow_links, layout=layout, console=console)
    render_summary(summary, console)
    if json_out:
        write_json(json_out, summary.to_json())


# --------------------------------------------------------------------------- silhouettes
@app.command()
@_handle_errors
@with_video_options
def silhouettes(
    inputs: Annotated[list[str], typer.Argument(
        metavar="INPUT...", help="Video files (mp4, avi, mov, mkv) or folders of frames.")],
    out: Annotated[Path, typer.Option(metavar="DIR", help="Prepared tree to write: ID/TYPE/VIEW/VIEW.pkl.")],
    video: VideoOptionsBuilder | None = None,
    img_size: Annotated[int, typer.Option("--img-size", min=8, help="Silhouette height and width.")] = 64,
    keep_masks: Annotated[Optional[Path], typer.Option(
        metavar="DIR", help="Also write the full-frame masks: DIR/STEM/tK/FRAME.png.")] = None,
    sheet: Annotated[Optional[Path], typer.Option(
        metavar="DIR", help="Write a contact sheet PNG per kept track into DIR.")] = None,
    sheet_every: Annotated[int, typer.Option(min=1, help="Every N-th silhouette on the sheet.")] = 5,
    overwrite: Annotated[bool, typer.Option(
        help="Start over: remove what gaitcli wrote into DIR, then write.")] = False,
    json_out: Annotated[Optional[str], typer.Option(
        "--json", metavar="FILE", help="Write the summary as JSON ('-' = stdout).")] = None,
) -> None:
    """Tracked, normalised silhouettes from videos, as a prepared tree every command reads."""
    from gaitcli.video.report import render_silhouettes
    from gaitcli.video.silhouettes import run_silhouettes

    if video is None:  # pragma: no cover - with_video_options always passes it
        raise GaitError("internal: no video options")
    summary = run_silhouettes(inputs, out, video(img_size), keep_masks=keep_masks, sheets=sheet,
                              sheet_every=sheet_every, overwrite=overwrite, console=console)
    render_silhouettes(summary, console if json_out == "-" else out_console)
    if json_out:
        write_json(json_out, summary.to_json())


# --------------------------------------------------------------------------- inspect
@app.command()
@_handle_errors
def inspect(
    directory: Annotated[Path, typer.Argument(
        metavar="DIR", help="A prepared tree (id/type-seq/view/*.pkl).")],
    short: Annotated[Optional[int], typer.Option(
        min=1, help="Report sequences with fewer frames than this (default: 5, what prepare calls "
        "short).")] = None,
    partition: Annotated[Optional[Path], typer.Option(
        help="Partition JSON to cross-check against the tree.")] = None,
    json_out: Annotated[Optional[str], typer.Option(
        "--json", metavar="FILE", help="Write the report as JSON ('-' = stdout).")] = None,
    strict: Annotated[bool, typer.Option(
        help="Exit 1 when problems were found (every file training would refuse is one).")] = False,
    workers: Annotated[Optional[int], typer.Option(
        min=1, help="Worker threads for reading headers (default: all cores).")] = None,
) -> None:
    """Count ids / types / views, frame lengths, and what is missing or broken."""
    from gaitcli.data.inspect import inspect_dataset
    from gaitcli.data.inspect_render import render_report
    from gaitcli.data.validity import SHORT_SEQUENCE_FRAMES

    report = inspect_dataset(directory, short=SHORT_SEQUENCE_FRAMES if short is None else short,
                             partition=partition, workers=workers, console=console)
    render_report(report, console if json_out == "-" else out_console)  # keep stdout pure JSON
    if json_out:
        write_json(json_out, report.to_json())
    if strict and report.problems:
        raise typer.Exit(1)


# --------------------------------------------------------------------------- config
@app.command(name="config")
@_handle_errors
def show_config(
    config: Annotated[
        Optional[str],
        typer.Argument(
            metavar="[CONFIG]", help="YAML file or packaged name (metagait, gaitgl); default: the defaults."
        ),
    ] = None,
    set_: Annotated[
        Optional[list[str]],
        typer.Option(
            "--set", metavar="KEY=VALUE",
            help="Override a key, e.g. trainer_cfg.total_iter=1000 (repeatable).",
        ),
    ] = None,
) -> None:
    """Validate a config and print it fully resolved (defaults merged, overrides applied)."""
    from gaitcli.config import dump_config, load_config

    cfg = load_config(config, _set_overrides(set_), warn=_warn)
    out_console.print(dump_config(cfg), end="", highlight=False, markup=False)


# --------------------------------------------------------------------------- train
@app.command()
@_handle_errors
def train(
    config: Annotated[str, typer.Option(
        "--config", "-c", help="YAML config file or packaged name (metagait, gaitgl, demo).")],
    gpus: Annotated[Optional[int], typer.Option(
        min=1, help="Train on N CUDA devices, one process each.")] = None,
    device: Annotated[Optional[str], typer.Option(
        help="cpu, cuda or auto (default: cuda when present).")] = None,
    nproc: Annotated[Optional[int], typer.Option(
        min=1, help="Processes on --device cpu (gloo), e.g. to test DDP.")] = None,
    iters: Annotated[Optional[int], typer.Option(min=0, help="Override trainer_cfg.total_iter.")] = None,
    resume: Annotated[Optional[str], typer.Option(
        help="Resume: an iteration, a checkpoint path, or 'latest'.")] = None,
    output: Annotated[Optional[Path], typer.Option(
        help="Output folder (default output/{dataset}/{model}/{save_name}).")] = None,
    set_: Annotated[Optional[list[str]], typer.Option(
        "--set", metavar="KEY=VALUE", help="Override a config key (repeatable).")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Override trainer_cfg.seed.")] = None,
    overwrite: Annotated[bool, typer.Option(
        help="Start over: remove the previous run's files from the output folder first.")] = False,
    data: Annotated[Optional[Path], typer.Option(help="Override data_cfg.dataset_root.")] = None,
    verbose: Annotated[bool, typer.Option(
        "--verbose", "-v", help="Print the full resolved config and every log window.")] = False,
    time_budget: Annotated[Optional[float], typer.Option(
        "--time-budget", metavar="MINUTES", min=0.01,
        help="Fit the run and its schedule into MINUTES of wall time, then save and stop "
             "(trainer_cfg.time_budget).")] = None,
) -> None:
    """Train a model from a config (single process or distributed)."""
    from gaitcli.config import Override, load_config
    from gaitcli.training.trainer import train as run_training

    overrides = _set_overrides(set_)
    # options reach the config as typed values, never as text read again as YAML ('#' in a path)
    for key, value, flag in ((("trainer_cfg", "total_iter"), iters, "--iters"),
                             (("trainer_cfg", "seed"), seed, "--seed"),
                             (("data_cfg", "dataset_root"), None if data is None else str(data), "--data"),
                             (("trainer_cfg", "time_budget"), time_budget, "--time-budget")):
        if value is not None:
            overrides.append(Override(key, value, source=f"{flag} {value}"))
    cfg = load_config(config, overrides, warn=_warn)
    summary = run_training(cfg, output=output, device=device, gpus=gpus, nproc=nproc, resume=resume,
                           overwrite=overwrite, console=console, verbose=verbose)
    if summary.checkpoint is None:
        out_console.print(f"trained 0 iterations (total_iter is {summary.iteration}): no checkpoint written",
                          highlight=False, soft_wrap=True)
    else:
        out_console.print(f"trained to iteration {summary.iteration}; checkpoint {summary.checkpoint}",
                          highlight=False, soft_wrap=True)  # a path never broken over lines


@app.command(name="eval")
@_handle_errors
def evaluate(
    checkpoint: Annotated[Optional[Path], typer.Argument(
        metavar="[CKPT]", help="A gaitcli .safetensors checkpoint (not needed with --features).")] = None,
    data: Annotated[Optional[Path], typer.Option(
        help="Prepared data folder (default: the checkpoint's data_cfg.dataset_root).")] = None,
    partition: Annotated[Optional[Path], typer.Option(
        help="Partition JSON (default: the checkpoint's data_cfg.dataset_partition); with --features, "
             "the gait3d protocol's PROBE_SET.")] = None,
    protocol: Annotated[str, typer.Option(
        help="auto, casia-b, ou-mvlp, cross-view, generic, gait3d, grew or ccpg.")] = "auto",
    metric: Annotated[Optional[str], typer.Option(
        help="euc (per-part Euclidean) or cos (default: evaluator_cfg.metric).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(
        min=1, help="Sequences per inference batch (default: evaluator_cfg.sampler.batch_size).")] = None,
    device: Annotated[Optional[str], typer.Option(
        help="cpu, cuda or auto (default: cuda when present).")] = None,
    gpus: Annotated[Optional[int], typer.Option(
        min=1, help="Extract on N CUDA devices, one process each.")] = None,
    nproc: Annotated[Optional[int], typer.Option(
        min=1, help="Extract with N processes on --device cpu.")] = None,
    json_out: Annotated[Optional[str], typer.Option(
        "--json", metavar="FILE", help="Write the results as JSON ('-' = stdout).")] = None,
    csv_out: Annotated[Optional[str], typer.Option(
        "--csv", metavar="FILE", help="Write the tables as CSV ('-' = stdout).")] = None,
    submission: Annotated[Optional[str], typer.Option(
        metavar="FILE.csv",
        help="--protocol grew: write GREW's competition file (probes of type 03, their 20 nearest "
             "gallery ids; '-' = stdout).")] = None,
    save_features: Annotated[Optional[Path], typer.Option(
        metavar="FILE.npz", help="Save the extracted features (embeddings, labels, types, views).")] = None,
    features: Annotated[Optional[Path], typer.Option(
        metavar="FILE.npz", help="Evaluate saved features instead of a checkpoint.")] = None,
    heatmap: Annotated[Optional[Path], typer.Option(
        metavar="FILE.png",
        help="Draw the gallery-view x probe-view rank-1 matrix per probe set (needs matplotlib).")] = None,
    rank5: Annotated[bool, typer.Option("--rank5", help="Also print the rank-5 table.")] = False,
    map_: Annotated[bool, typer.Option("--map", help="Also compute and print mAP.")] = False,
    set_: Annotated[Optional[list[str]], typer.Option(
        "--set", metavar="KEY=VALUE",
        help="Override a key of the stored config, e.g. evaluator_cfg.sampler.frames_all_limit=300 "
             "(repeatable).")] = None,
    verification: Annotated[bool, typer.Option(
        "--verification",
        help="Also genuine/impostor distributions, EER and TAR@FAR per probe set.")] = False,
    calibrate: Annotated[Optional[float], typer.Option(
        metavar="FPIR",
        help="With --verification: store the open-set threshold for this false positive identification "
             "rate (leave-one-identity-out searches; --calibration-out).")] = None,
    calibration_out: Annotated[Optional[Path], typer.Option(
        metavar="CAL.json",
        help="Where --calibrate writes the threshold, its FPIR and FNIR (read by gait identify "
             "--calibration).")] = None,
    roc: Annotated[Optional[Path], typer.Option(
        metavar="FILE.png", help="With --verification: draw ROC and DET curves.")] = None,
    save_hits: Annotated[Optional[Path], typer.Option(
        metavar="FILE.json",
        help="Save every probe's rank-1 hit or miss per cell of the table, with the run's checkpoint, "
             "seed and protocol, for gait compare.")] = None,
    precision: PrecisionOption = None,
) -> None:
    """Evaluate a checkpoint (or saved features): rank-1 tables per probe set and view."""
    from gaitcli.evaluation.api import run_plan
    from gaitcli.evaluation.plan import EvalOutputs, ModelOptions, plan_checkpoint, plan_features
    from gaitcli.evaluation.report import render_results, write_outputs

    if (checkpoint is None) == (features is None):
        raise GaitError("give either a checkpoint (gait eval CKPT) or --features FILE.npz, "
                        "not both and not neither")
    outputs = EvalOutputs(json=json_out, csv=csv_out, submission=submission, heatmap=heatmap,
                          save_features=save_features,
                          verification=verification, calibrate=calibrate, calibration_out=calibration_out,
                          roc=roc, save_hits=save_hits)
    if features is not None:
        if save_features is not None:
            raise GaitError("--save-features needs a checkpoint; --features already is a feature file")
        given = (("--data", data), ("--batch-size", batch_size), ("--gpus", gpus), ("--nproc", nproc),
                 ("--precision", precision))
        unused = [name for name, value in given if value is not None]
        if unused:
            raise GaitError(f"{', '.join(unused)}: no effect with --features (no model runs); drop them")
        plan = plan_features(features, protocol=protocol, metric=metric, overrides=_set_overrides(set_),
                             want_map=map_, device=device, outputs=outputs, warn=_warn, partition=partition)
    else:
        assert checkpoint is not None  # one of the two, checked above
        opts = ModelOptions(data=data, partition=partition, protocol=protocol, metric=metric,
                            batch_size=batch_size, want_map=map_, outputs=outputs,
                            precision=precision or "auto")
        plan = plan_checkpoint(checkpoint, opts, device=device, gpus=gpus, nproc=nproc,
                               overrides=_set_overrides(set_), warn=_warn)
        if plan.extraction is not None:
            precision_note(plan.extraction.precision)
    result = run_plan(plan, console=console, warn=_warn)
    to_stdout = "-" in (json_out, csv_out, submission)
    tables_to = console if to_stdout else out_console  # keep stdout pure JSON / CSV
    render_results(result, tables_to, rank5=rank5, show_map=map_)
    write_outputs(plan.outputs, result, _note)
    if save_hits is not None:
        _note(f"per-probe hits written to {save_hits} (gait compare)")


@app.command(name="lr-plot")
@_handle_errors
def lr_plot(
    config: Annotated[Optional[str], typer.Option(
        "--config", "-c", help="YAML config or packaged name (default: the MetaGait recipe).")] = None,
    scheduler: Annotated[Optional[str], typer.Option(
        help="warmup (WarmupMultiStepLR) or a torch.optim.lr_scheduler name, e.g. MultiStepLR.")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Base learning rate (optimizer_cfg.lr).")] = None,
    milestones: Annotated[Optional[str], typer.Option(
        metavar="A,B", help="Comma-separated milestone iterations.")] = None,
    gamma: Annotated[Optional[float], typer.Option(help="Decay factor at each milestone.")] = None,
    warmup_iters: Annotated[Optional[int], typer.Option(min=0, help="warmup: length of the warm-up.")] = None,
    warmup_factor: Annotated[Optional[float], typer.Option(help="warmup: lr factor at iteration 0.")] = None,
    warmup_method: Annotated[Optional[str], typer.Option(help="warmup: linear or constant.")] = None,
    total_iters: Annotated[Optional[int], typer.Option(
        min=1, help="Iterations of the run (trainer_cfg.total_iter).")] = None,
    log: Annotated[bool, typer.Option("--log", help="Logarithmic lr axis.")] = False,
    out: Annotated[Optional[Path], typer.Option(
        metavar="FILE.png|.svg", help="Also draw the schedule into an image (needs matplotlib).")] = None,
    json_out: Annotated[Optional[str], typer.Option(
        "--json", metavar="FILE", help="Write the points as JSON ('-' = stdout).")] = None,
    set_: Annotated[Optional[list[str]], typer.Option(
        "--set", metavar="KEY=VALUE",
        help="Override any config key, e.g. scheduler_cfg.T_max=1000 (repeatable).")] = None,
    width: Annotated[Optional[int], typer.Option(
        min=16, help="Chart width in characters (default: fits the terminal).")] = None,
    height: Annotated[int, typer.Option(min=4, help="Chart height in lines.")] = 14,
) -> None:
    """Show the learning-rate schedule: terminal chart, key-point table, image, JSON."""
    from gaitcli.imaging import check_image_target
    from gaitcli.training.lr_plot import (
        lr_json,
        parse_milestones,
        render_lr_plot,
        save_lr_image,
        schedule_from_options,
    )

    if out is not None:
        check_image_target(out, "out")
    schedule = schedule_from_options(
        config, scheduler=scheduler, lr=lr, milestones=parse_milestones(milestones), gamma=gamma,
        warmup_iters=warmup_iters, warmup_factor=warmup_factor, warmup_method=warmup_method,
        total_iters=total_iters, overrides=_set_overrides(set_), warn=_warn,
    )
    render_lr_plot(schedule, console if json_out == "-" else out_console, log=log, width=width, height=height)
    if out is not None:
        save_lr_image(schedule, out, log=log)
        _note(f"image written to {out}")
    if json_out:
        write_json(json_out, lr_json(schedule))


@app.command()
@_handle_errors
def convert(
    src: Annotated[Path, typer.Argument(
        metavar="REF.pt",
        help="OpenGait / MetaGait checkpoint ({model, ...} or a bare state dict), "
             "or a gaitcli .safetensors.")],
    dst: Annotated[Path, typer.Argument(
        metavar="OUT.safetensors", help="Where to write the safetensors checkpoint.")],
    config: Annotated[Optional[str], typer.Option(
        help="The config the checkpoint was trained with (embedded in OUT; default: the source's own "
             "config, else inferred).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace OUT if it exists.")] = False,
) -> None:
    """Convert an OpenGait / MetaGait .pt checkpoint to safetensors (no pickled code runs)."""
    from gaitcli.convert import convert_checkpoint

    summary = convert_checkpoint(src, dst, config_path=config, overwrite=overwrite, warn=_warn)
    out_console.print(
        f"wrote {summary.dst}: {summary.model}" + (f" ({summary.variant})" if summary.variant else "")
        + f", channels {summary.channels}, {summary.class_num} classes, {summary.parts} parts, "
        f"{summary.parameters / 1e6:.2f} M parameters, iteration {summary.iteration}"
    )


@app.command()
@_handle_errors
def demo(
    workdir: Annotated[Path, typer.Option(
        help="Folder for every artefact; a re-run reuses finished stages.")] = Path("gait-demo"),
    subjects: Annotated[int, typer.Option(min=4, help="Synthetic subjects (60% train, 40% test).")] = 16,
    iters: Annotated[Optional[int], typer.Option(
        min=1, help="Training iterations (default: configs/demo.yaml).")] = None,
    json_out: Annotated[Optional[str], typer.Option(
        "--json", metavar="FILE",
        help="Write the eval JSON plus stage timings and the identification ('-' = stdout).")] = None,
    verbose: Annotated[bool, typer.Option(
        "--verbose", "-v", help="Print the full resolved config and every log window.")] = False,
) -> None:
    """Run the whole pipeline on synthetic data on a laptop CPU: synth, prepare, inspect, train, eval,
    identify."""
    from gaitcli.demo import run_demo
    from gaitcli.fileio import check_writable

    if json_out and json_out != "-":
        check_writable(json_out, "--json")  # now, not after the whole demo
    result = run_demo(workdir, subjects=subjects, iters=iters, console=console,
                      out=console if json_out == "-" else out_console, warn=_warn_wrapped, verbose=verbose)
    if json_out:
        write_json(json_out, result.to_json())


# --------------------------------------------------------------------------- deploy (docs/deploy.md)
@app.command()
@_handle_errors
@with_video_options
def embed(
    checkpoint: Annotated[Path, typer.Argument(metavar="CKPT", help="A gaitcli .safetensors checkpoint.")],
    inputs: Annotated[list[str], typer.Argument(
        metavar="INPUT...", help="PNG walk folders, sequence .pkl files, prepared trees or videos.")],
    out: Annotated[Optional[Path], typer.Option(
        "--out", metavar="FEATURES.npz",
        help="Feature file to write (as gait eval --save-features).")] = None,
    append: Annotated[Optional[Path], typer.Option(
        metavar="G.npz",
        help="Add the walks to this gallery; walks it already holds are not re-embedded.")] = None,
    partition: Annotated[Optional[Path], typer.Option(
        help="Partition JSON for a prepared tree INPUT.")] = None,
    split: Annotated[str, typer.Option(help="With --partition: test, train or all.")] = "test",
    img_size: Annotated[Optional[str], typer.Option(
        "--img-size", metavar="N|HxW",
        help="Frame size of a checkpoint that does not record it (a recorded one is fixed).")] = None,
    device: Annotated[Optional[str], typer.Option(
        help="cpu, cuda or auto (default: cuda when present).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(min=1, help="Sequences per inference batch.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace --out if it exists.")] = False,
    json_out: Annotated[Optional[str], typer.Option(
        "--json", metavar="FILE", help="Write the summary as JSON ('-' = stdout).")] = None,
    precision: PrecisionOption = None,
    video: VideoOptionsBuilder | None = None,
) -> None:
    """Embed walks (PNG folders, pkls, prepared trees, every track of a video) into a feature file."""
    from gaitcli.deploy.embed import run_embed
    from gaitcli.deploy.render import render_embed

    chosen = chosen_precision(precision, device)
    result = run_embed(checkpoint, inputs, out, append=append, partition=partition, split=split,
                       img_size=img_size, device=device, batch_size=batch_size, overwrite=overwrite,
                       console=console, video=video, precision=precision or "auto")
    precision_note(chosen)
    render_embed(result, console if json_out == "-" else out_console)
    if json_out:
        write_json(json_out, result.to_json())


@app.command()
@_handle_errors
@with_video_options
def identify(
    gallery: Annotated[Path, typer.Option(
        metavar="G.npz", help="Gallery feature file (gait embed / gait eval --save-features).")],
    probes: Annotated[Optional[list[str]], typer.Argument(
        metavar="PROBE...", help="Feature files, or with --checkpoint anything gait embed takes "
        "(videos too).")] = None,
    checkpoint: Annotated[Optional[Path], typer.Option(
        metavar="CKPT", help="Embed non-.npz probes with this checkpoint.")] = None,
    top_k: Annotated[int, typer.Option(min=1, help="Identities listed per probe.")] = 5,
    threshold: Annotated[Optional[float], typer.Option(
        help="Open set: no answer (known: no) when the best distance is above this.")] = None,
    calibration: Annotated[Optional[Path], typer.Option(
        metavar="CAL.json", help="Open-set threshold: gait eval --verification --calibrate FPIR.")] = None,
    exclude_same_view: Annotated[bool, typer.Option(
        "--exclude-same-view", help="Drop gallery sequences at the probe's view.")] = False,
    gallery_types: Annotated[Optional[str], typer.Option(
        metavar="T1,T2", help="Use only these gallery types, e.g. nm-01,nm-02.")] = None,
    img_size: Annotated[Optional[str], typer.Option(
        "--img-size", metavar="N|HxW",
        help="Frame size of a --checkpoint that does not record it.")] = None,
    device: Annotated[Optional[str], typer.Option(help="cpu, cuda or auto.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(min=1, help="Sequences per inference batch.")] = None,
    json_out: Annotated[Optional[str], typer.Option(
        "--json", metavar="FILE", help="Write the answers as JSON ('-' = stdout).")] = None,
    stream: Annotated[Optional[str], typer.Option(
        metavar="SOURCE", rich_help_panel=VIDEO_PANEL,
        help="Identify walkers as frames come: a video file, a camera index or a stream URL; "
        "JSON lines on stdout.")] = None,
    window: Annotated[int, typer.Option(
        min=1, rich_help_panel=VIDEO_PANEL, help="--stream: silhouettes per decision.")] = 30,
    precision: PrecisionOption = None,
    video: VideoOptionsBuilder | None = None,
) -> None:
    """Who is this? The top-k gallery identities for each probe walk (or each walker of a video)."""
    from gaitcli.deploy.identify import identify as run_identify
    from gaitcli.deploy.identify import load_probes, place_tracks, resolve_threshold
    from gaitcli.deploy.render import render_identify, render_problems
    from gaitcli.evaluation.extract import FeatureSet

    gal = FeatureSet.load(gallery)
    cut = resolve_threshold(threshold, str(calibration) if calibration else None, gal, str(gallery))
    if stream is not None:
        return _identify_stream(stream, probes, gal, str(gallery), checkpoint, cut, img_size, device, window,
                                video, precision)
    if not probes:
        raise GaitError("no PROBE given: pass feature files, walks or videos (or --stream SOURCE)")
    chosen = chosen_precision(precision, device)
    probe_set, skipped, origins = load_probes(probes, gal, str(gallery),
                                              checkpoint=str(checkpoint) if checkpoint else None,
                                              img_size=img_size, device=device, batch_size=batch_size,
                                              console=console, video=video, precision=precision or "auto")
    if checkpoint is not None and any(origin is not None for origin in origins):
        precision_note(chosen)
    result = run_identify(gal, probe_set, top_k=top_k, exclude_same_view=exclude_same_view,
                          gallery_types=_split_list(gallery_types), threshold=cut, gallery_name=str(gallery))
    place_tracks(result, origins)
    target = console if json_out == "-" else out_console
    render_problems(skipped, target)
    render_identify(result, target)
    if json_out:
        write_json(json_out, result.to_json())


def _identify_stream(source: str, probes: Optional[list[str]], gal: Any, gallery_name: str,
                     checkpoint: Optional[Path], cut: Any, img_size: Optional[str], device: Optional[str],
                     window: int, video: VideoOptionsBuilder | None, precision: Optional[str]) -> None:
    """gait identify --stream: JSON lines on stdout, a human line per decision on stderr."""
    from gaitcli.deploy.stream import open_stream_model, stream_identify

    if probes:
        raise GaitError("--stream takes its frames from SOURCE: drop the PROBE arguments")
    if checkpoint is None:
        raise GaitError("--stream needs --checkpoint CKPT to embed the walkers it sees")
    chosen = chosen_precision(precision, device)
    loaded = open_stream_model(str(checkpoint), gal, gallery_name, img_size=img_size, device=device,
                               precision=precision or "auto")
    precision_note(chosen)
    if video is None:  # pragma: no cover - with_video_options always passes it
        raise GaitError("internal: no video options")
    options = video(loaded.frame_size[0])
    # --stream: --stride is the decision interval (docs/video.md, "Streaming"); every frame is read
    every = video.stride or 10
    options = replace(options, reading=replace(options.reading, stride=1))

    def emit(decision: Any) -> None:
        sys.stdout.write(json.dumps(decision.to_json()) + "\n")
        sys.stdout.flush()
        who = decision.answer if decision.answer is not None else "unknown"
        dist = "-" if decision.distance is None else f"{decision.distance:.3f}"
        tag = "[bold]final[/]" if decision.final else "window"
        console.print(f"track {decision.track} frames {decision.frames[0]}-{decision.frames[1]} {tag}: "
                      f"{escape(who)} (distance {dist})", highlight=False)

    result = stream_identify(source, loaded, gal, options, every=every, window=window,
                             threshold=cut, emit=emit)
    if result.interrupted:
        console.print("[yellow]interrupted[/]: final answers given for the open tracks", highlight=False)
    console.print(f"{result.frames} frames in {result.seconds:.1f} s, {len(result.decisions)} decisions",
                  highlight=False)


@app.command()
@_handle_errors
def export(
    checkpoint: Annotated[Path, typer.Argument(metavar="CKPT", help="A gaitcli .safetensors checkpoint.")],
    out: Annotated[Path, typer.Argument(
        metavar="MODEL.onnx", help="Where to write the ONNX embedding network.")],
    img_size: Annotated[Optional[str], typer.Option(
        "--img-size", metavar="N|HxW",
        help="Frame size of a checkpoint that does not record it (a recorded one is fixed).")] = None,
    check: Annotated[bool, typer.Option(
        "--check/--no-check",
        help="Compare onnxruntime with PyTorch on walks of 10, 30, 100 frames.")] = True,
    overwrite: Annotated[bool, typer.Option(help="Replace MODEL.onnx if it exists.")] = False,
    json_out: Annotated[Optional[str], typer.Option(
        "--json", metavar="FILE", help="Write the summary as JSON ('-' = stdout).")] = None,
) -> None:
    """Export the embedding network to ONNX (needs the 'export' extra)."""
    from gaitcli.deploy.export import export_onnx
    from gaitcli.deploy.render import render_export

    result = export_onnx(checkpoint, out, img_size=img_size, check=check, overwrite=overwrite)
    render_export(result, console if json_out == "-" else out_console)
    if json_out:
        write_json(json_out, result.to_json())


from gaitcli.cli_zoo import zoo_app  # noqa: E402

app.add_typer(zoo_app, name="zoo")


from gaitcli.cli_compare import compare as _compare  # noqa: E402

app.command(name="compare")(_handle_errors(_compare))


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
