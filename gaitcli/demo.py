"""``gait demo``: the whole pipeline on synthetic data, sized for a laptop CPU (docs/demo.md).

synth → prepare → inspect → train (``configs/demo.yaml``) → eval → identify, each stage with a
heading and its own progress. Every stage records what it was run with in
``WORKDIR/.demo-stages.json``, with a fingerprint of the files it wrote; a re-run reuses a stage
whose inputs did not change and whose files are all still there (and says so), redoes a stage
whose files were deleted or changed together with the stages after it, resumes an interrupted
training run, and never deletes a training run it cannot continue (it refuses, before any stage,
a request that would replace one). The last stage embeds the
test ids into a gallery (``gait embed``) and identifies one held-back walk of a test walker,
straight from its PNG frames (``gait identify``). Everything lives under the work folder.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from gaitcli.config_types import GaitConfig
from gaitcli.errors import GaitError, option
from gaitcli.evaluation.results import EvalResult
from gaitcli.fileio import JSONValue, atomic_write_bytes

DEMO_VIEWS = ["000", "054", "090", "126", "180"]
DEMO_FRAMES = 40
DEMO_IMG_SIZE = 32  # 32x32 frames cut to 32x22: a quarter of the pixels of 64x44
TRAIN_SHARE = 0.6
STATE_FILE = ".demo-stages.json"
STAGES = ["synth", "prepare", "inspect", "train", "eval", "identify"]
GALLERY_TYPES = ["nm-01", "nm-02", "nm-03", "nm-04"]
HELD_BACK = ("nm-05", "090")  # the type and view of the walk the last stage identifies


Fingerprint = dict[str, int]
"""``{"files": N, "bytes": B}`` of the files a stage wrote."""

StageParams = dict[str, JSONValue]
"""What a stage was run with, as the stage record stores it (a changed value redoes the stage)."""


def fingerprint(files: Iterable[Path]) -> Fingerprint:
    """How many of ``files`` exist and their total size: a deleted, added or truncated file
    changes it."""
    count = size = 0
    for path in files:
        try:
            size += path.stat().st_size
        except OSError:
            continue
        count += 1
    return {"files": count, "bytes": size}


class DemoStages:
    """The record of finished stages: name -> {"params": ..., "seconds": ..., "outputs": ...}."""

    def __init__(self, workdir: Path) -> None:
        self.path = workdir / STATE_FILE
        try:
            loaded = json.loads(self.path.read_text()) if self.path.exists() else {}
        except ValueError:
            loaded = {}
        self.done: dict[str, JSONValue] = loaded if isinstance(loaded, dict) else {}

    def finished(self, name: str, params: StageParams) -> dict[str, JSONValue] | None:
        """The fingerprint (as recorded) of the files a finished run of stage ``name`` with
        ``params`` wrote (None when there was none)."""
        entry = self.done.get(name)
        if not isinstance(entry, dict) or entry.get("params") != params:
            return None
        outputs = entry.get("outputs")
        return outputs if isinstance(outputs, dict) else None

    def record(self, name: str, params: StageParams, seconds: float, outputs: Fingerprint) -> None:
        self.done[name] = {"params": params, "seconds": round(seconds, 2), "outputs": dict(outputs)}
        atomic_write_bytes(self.path, json.dumps(self.done, indent=2).encode())

    def forget_from(self, names: list[str]) -> None:
        for name in names:
            self.done.pop(name, None)


@dataclass(frozen=True)
class Identification:
    """The demo's last stage: one held-back walk identified against the test gallery."""

    walk: str
    """The PNG folder of the walk (never prepared)."""
    truth: str
    """Its walker."""
    answer: str
    """The gallery identity ``gait identify`` answered."""
    distance: float
    """Distance to the best-matching gallery sequence."""
    gallery: str
    """The gallery feature file."""
    gallery_sequences: int
    """Gallery sequences matched against (types nm-01..04)."""

    @property
    def correct(self) -> bool:
        return self.answer == self.truth

    def line(self) -> str:
        mark = "[green]correct[/]" if self.correct else "[red]wrong[/]"
        return f"answer {self.answer} (distance {self.distance:.3f}) · truth {self.truth} · {mark}"

    def to_json(self) -> dict[str, JSONValue]:
        return {
            "walk": self.walk,
            "truth": self.truth,
            "answer": self.answer,
            "distance": self.distance,
            "correct": self.correct,
            "gallery": self.gallery,
            "gallery_sequences": self.gallery_sequences,
        }


@dataclass
class DemoResult:
    """What ``gait demo`` produced."""

    eval: EvalResult
    """The evaluation of the trained checkpoint on the test ids."""
    identification: Identification
    """The held-back walk and its answer."""
    stages: dict[str, float] = field(default_factory=dict)
    """Seconds per stage (0 for a reused stage), and ``total``."""
    artefacts: dict[str, str] = field(default_factory=dict)
    """Label -> path of every artefact."""
    workdir: str = "."
    """The work folder they are in."""

    def to_json(self) -> dict[str, JSONValue]:
        """The eval JSON (docs/eval.md) plus ``stages`` and ``identify``."""
        return {**self.eval.to_json(), "stages": dict(self.stages), "identify": self.identification.to_json()}


@dataclass
class _Demo:
    """One demo run: where things go and what was done."""

    workdir: Path
    subjects: int
    iters: int | None
    console: Console
    verbose: bool
    warn: Callable[[str], None] | None
    stages: DemoStages
    timings: dict[str, float] = field(default_factory=dict)

    def path(self, name: str) -> Path:
        names = {"raw": "raw", "pkl": "pkl", "partition": "partition.json", "run": "run",
                 "eval_json": "eval.json", "gallery": "gallery.npz"}
        return self.workdir / names[name]

    def heading(self, name: str, what: str) -> None:
        self.console.rule(f"[bold cyan]{STAGES.index(name) + 1}/{len(STAGES)}  {name}[/]  {what}")

    def reuse(self, name: str, params: StageParams, outputs: Callable[[], Fingerprint]) -> bool:
        """Whether stage ``name`` finished with ``params`` and its files (``outputs()``, their
        fingerprint now) are all as it left them; otherwise it and every later stage are redone."""
        recorded = self.stages.finished(name, params)
        if recorded is not None and outputs() == recorded:
            self.console.print(f"[green]reusing[/] the finished {name} stage "
                               f"(delete {self.stages.path.name} to redo it)")
            self.timings[name] = 0.0
            return True
        if recorded is not None:
            self.console.print(f"[yellow]redoing[/] the {name} stage: files it wrote were deleted or changed")
        self.stages.forget_from(STAGES[STAGES.index(name):])  # every later stage is stale
        return False

    def done(self, name: str, params: StageParams, started: float, outputs: Fingerprint) -> None:
        self.timings[name] = time.perf_counter() - started
        self.stages.record(name, params, self.timings[name], outputs)


def split_ids(subjects: int) -> tuple[list[str], list[str]]:
    ids = [f"{i:03d}" for i in range(1, subjects + 1)]
    cut = max(2, round(subjects * TRAIN_SHARE))
    return ids[:cut], ids[cut:]


def run_demo(
    workdir: Path,
    *,
    subjects: int = 16,
    iters: int | None = None,
    console: Console | None = None,
    out: Console | None = None,
    warn: Callable[[str], None] | None = None,
    verbose: bool = False,
) -> DemoResult:
    """Run every stage; return the eval results, the identification, timings and artefacts."""
    if subjects < 4:
        raise GaitError(f"{option('subjects', subjects)}: the demo needs at least 4 "
                        "(ids are split 60/40 into train and test)")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    console = console or Console(stderr=True)
    demo = _Demo(workdir, subjects, iters, console, verbose, warn, DemoStages(workdir))
    out = out or Console()
    train_cfg = _train_config(demo, split_ids(subjects)[0])
    _check_run_kept(demo, train_cfg)  # before any stage: a refusal changes nothing
    _synth(demo)
    _prepare(demo)
    _inspect(demo)
    checkpoint = _train(demo, train_cfg)
    result = _evaluate(demo, checkpoint, out)
    identification = _identify(demo, checkpoint, out)
    stages = {name: round(demo.timings.get(name, 0.0), 2) for name in STAGES}
    stages["total"] = round(sum(demo.timings.values()), 2)
    artefacts = {"silhouette PNGs": demo.path("raw"), "prepared pkls": demo.path("pkl"),
                 "partition": demo.path("partition"), "training run": demo.path("run"),
                 "checkpoint": checkpoint, "metrics": demo.path("run") / "metrics.jsonl",
                 "eval results": demo.path("eval_json"), "gallery": demo.path("gallery")}
    done = DemoResult(result, identification, stages, {k: str(v) for k, v in artefacts.items()})
    done.workdir = str(workdir)
    atomic_write_bytes(demo.path("eval_json"), json.dumps(done.to_json(), indent=2).encode())
    _render_artefacts(done, out)
    return done


def _synth(demo: _Demo) -> None:
    from gaitcli.synth.generate import CASIA_B_TYPES, synthesize

    params: StageParams = {"subjects": demo.subjects, "views": list(DEMO_VIEWS), "types": list(CASIA_B_TYPES),
                           "frames": DEMO_FRAMES, "seed": 0}
    demo.heading("synth", f"{demo.subjects} walkers x {len(CASIA_B_TYPES)} walks x {len(DEMO_VIEWS)} views")
    def outputs() -> Fingerprint:
        return fingerprint(demo.path("raw").rglob("*.png"))

    if not demo.reuse("synth", params, outputs):
        started = time.perf_counter()
        synthesize(demo.path("raw"), subjects=demo.subjects, views=DEMO_VIEWS, types=CASIA_B_TYPES,
                   frames=DEMO_FRAMES, seed=0, overwrite=True, console=demo.console)
        demo.done("synth", params, started, outputs())


def _prepare(demo: _Demo) -> None:
    from gaitcli.data.prepare import prepare_dataset

    params: StageParams = {"img_size": DEMO_IMG_SIZE}
    demo.heading("prepare", f"PNG frames -> one pkl per walk, {DEMO_IMG_SIZE}x{DEMO_IMG_SIZE}")
    def outputs() -> Fingerprint:
        return fingerprint(demo.path("pkl").rglob("*.pkl"))

    if not demo.reuse("prepare", params, outputs):
        started = time.perf_counter()
        prepare_dataset(demo.path("raw"), demo.path("pkl"), img_size=DEMO_IMG_SIZE, overwrite=True,
                        console=demo.console)
        demo.done("prepare", params, started, outputs())


def _inspect(demo: _Demo) -> None:
    from gaitcli.data.inspect import inspect_dataset

    demo.heading("inspect", "what the prepared set holds")
    started = time.perf_counter()
    report = inspect_dataset(demo.path("pkl"))
    frames = report.frames
    demo.console.print(
        f"{report.sequences} sequences · {report.ids} ids · {len(report.types)} types · "
        f"{len(report.views)} views · frames min {frames.min} / median {frames.median} / max {frames.max} · "
        f"{len(report.missing)} missing · {len(report.unreadable)} unreadable",
        highlight=False,
    )
    demo.timings["inspect"] = time.perf_counter() - started


def _train_config(demo: _Demo, train_ids: list[str]) -> GaitConfig:
    from gaitcli.config import Override, load_config

    overrides = [Override(("data_cfg", "dataset_root"), str(demo.path("pkl").resolve())),
                 Override(("data_cfg", "dataset_partition"), str(demo.path("partition").resolve())),
                 Override(("model_cfg", "class_num"), len(train_ids))]
    if demo.iters is not None:
        overrides.append(Override(("trainer_cfg", "total_iter"), demo.iters))
    cfg = load_config("demo", overrides, warn=demo.warn)
    p, k = cfg.trainer.sampler.batch_size
    # tiny demos: fewer ids per batch than the recipe's P
    sampler = dataclasses.replace(cfg.trainer.sampler, batch_size=(min(p, len(train_ids)), k))
    return cfg.replace(trainer=dataclasses.replace(cfg.trainer, sampler=sampler))


def _check_run_kept(demo: _Demo, cfg: GaitConfig) -> None:
    """Refuse a request whose training stage would have to delete the training run in the work
    folder: one of other settings, or one that got further than this request's length (a
    shorter run is not its prefix once the schedule differs). Such a run is kept; the user picks
    another --workdir (or deletes it)."""
    from gaitcli.training.trainer import list_checkpoints

    run = demo.path("run")
    existing = list_checkpoints(run / "checkpoints")
    if not existing:
        return
    stored, reached, total = _stored_config(run), existing[-1][0], cfg.trainer.total_iter
    changed = _changed_settings(stored, cfg)
    if changed:
        raise GaitError(
            f"{run} holds a training run with other settings ({', '.join(changed)}), which this demo would "
            f"delete; gait demo keeps it: use another {option('workdir')} "
            f"(or delete {run} to start over here)"
        )
    if reached > total:
        stored_trainer = stored.get("trainer_cfg")
        stored_total = stored_trainer.get("total_iter") if isinstance(stored_trainer, Mapping) else None
        what = f"a finished {reached}-iteration" if stored_total == reached else f"a {reached}-iteration"
        raise GaitError(
            f"{run} holds {what} training run, which this {total}-iteration demo would delete; gait demo "
            f"keeps it: give {option('iters', reached)} or more to reuse or continue it, or another "
            f"{option('workdir')} for a {total}-iteration demo"
        )


def _changed_settings(stored: Mapping[str, object], cfg: GaitConfig) -> list[str]:
    """The model and trainer keys (but the length) in which a stored run differs from ``cfg``;
    a stored config that cannot be read differs in everything."""
    plain = cfg.to_dict()
    changed: list[str] = []
    for section in ("model_cfg", "trainer_cfg"):
        old, new = stored.get(section), plain[section]
        if not isinstance(old, Mapping) or not isinstance(new, Mapping):
            return ["its config.yaml is missing or unreadable"]
        changed += [f"{section}.{key}" for key in sorted(set(old) | set(new), key=str)
                    if key != "total_iter" and old.get(key) != new.get(key)]
    return changed


def _train(demo: _Demo, cfg: GaitConfig) -> Path:
    from gaitcli.training.state import state_path
    from gaitcli.training.trainer import checkpoint_name, list_checkpoints, train

    train_ids, test_ids = split_ids(demo.subjects)
    partition = {"TRAIN_SET": train_ids, "TEST_SET": test_ids}
    atomic_write_bytes(demo.path("partition"), json.dumps(partition).encode())
    total = cfg.trainer.total_iter
    plain = cfg.to_dict()
    params: StageParams = {"config": plain["model_cfg"], "trainer": plain["trainer_cfg"],
                           "train_ids": list(train_ids)}
    demo.heading("train", f"{cfg.model.name} on {len(train_ids)} ids, {total} iterations")
    run, ckpt_dir = demo.path("run"), demo.path("run") / "checkpoints"
    checkpoint = ckpt_dir / checkpoint_name(cfg, total)

    def outputs() -> Fingerprint:
        return fingerprint([checkpoint, state_path(checkpoint)])

    if not demo.reuse("train", params, outputs):
        started = time.perf_counter()
        existing = list_checkpoints(ckpt_dir)
        if existing:  # _check_run_kept: same settings, not past this length: continue it
            demo.console.print(f"[green]resuming[/] the training run at iteration {existing[-1][0]}")
            train(cfg, output=run, device="cpu", resume="latest", console=demo.console, verbose=demo.verbose)
        else:  # a run that never saved (or none): start over
            train(cfg, output=run, device="cpu", overwrite=True, console=demo.console, verbose=demo.verbose)
        demo.done("train", params, started, outputs())
    if not checkpoint.exists():  # a training run ends with its last checkpoint: a bug if not
        raise GaitError(f"the training stage left no checkpoint at {checkpoint}; run gait demo again")
    return checkpoint


def _evaluate(demo: _Demo, checkpoint: Path, out: Console) -> EvalResult:
    from gaitcli.evaluation.api import evaluate_checkpoint
    from gaitcli.evaluation.report import render_results

    _, test_ids = split_ids(demo.subjects)
    demo.heading("eval", f"cross-view rank-1 on the {len(test_ids)} unseen test ids")
    started = time.perf_counter()
    result = evaluate_checkpoint(checkpoint, device="cpu", console=demo.console, warn=demo.warn)
    demo.timings["eval"] = time.perf_counter() - started
    render_results(result, out)
    return result


def _identify(demo: _Demo, checkpoint: Path, out: Console) -> Identification:
    """Embed the test ids into a gallery, then identify one held-back walk from its PNG frames
    against the gallery's nm-01..04 sequences (the walk, nm-05, is not among them)."""
    from gaitcli.deploy.embed import run_embed
    from gaitcli.deploy.identify import identify, load_probes
    from gaitcli.evaluation.extract import FeatureSet

    _, test_ids = split_ids(demo.subjects)
    walk = demo.path("raw") / test_ids[0] / HELD_BACK[0] / HELD_BACK[1]
    demo.heading("identify", f"who walks in {walk.relative_to(demo.workdir)}?")
    started = time.perf_counter()
    gallery = demo.path("gallery")
    run_embed(checkpoint, [str(demo.path("pkl"))], gallery, partition=demo.path("partition"), split="test",
              device="cpu", overwrite=True, console=demo.console)
    gal = FeatureSet.load(gallery)
    probe, _, _ = load_probes([str(walk)], gal, str(gallery), checkpoint=str(checkpoint), img_size=None,
                           device="cpu", batch_size=None, console=demo.console)
    found = identify(gal, probe, top_k=1, gallery_types=GALLERY_TYPES, gallery_name=str(gallery))
    demo.timings["identify"] = time.perf_counter() - started
    best = found.answers[0].best
    if best is None:
        raise GaitError(f"{gallery}: no gallery sequence of types {','.join(GALLERY_TYPES)} to match against")
    answer = Identification(str(walk), test_ids[0], found.answers[0].answer, best.distance, str(gallery),
                            found.gallery_sequences)
    out.print(f"{walk.relative_to(demo.workdir)}: {answer.line()}", highlight=False)
    return answer


def _render_artefacts(result: DemoResult, out: Console) -> None:
    out.print()
    out.print(f"[bold]artefacts[/] in {result.workdir}", highlight=False)
    for label, path in result.artefacts.items():
        out.print(f"  {label:<16} {Path(path).relative_to(result.workdir)}", highlight=False)
    items = [f"{name} {seconds:.1f}" for name, seconds in result.stages.items()]
    half = (len(items) + 1) // 2  # two short lines: one long one wraps mid-figure at 80 columns
    out.print(f"  stage seconds    {' · '.join(items[:half])}", highlight=False)
    if items[half:]:
        out.print(f"                   {' · '.join(items[half:])}", highlight=False)


def _stored_config(run: Path) -> dict[str, object]:
    """The config a previous training stage wrote, in the current shape (empty when there is none
    or it is unreadable)."""
    import yaml

    from gaitcli.config import migrate_config

    try:
        stored = yaml.safe_load((run / "config.yaml").read_text())
        return migrate_config(stored, str(run / "config.yaml")) if isinstance(stored, dict) else {}
    except (OSError, yaml.YAMLError, GaitError):
        return {}
