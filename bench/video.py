"""Benchmark video input: speed, mask quality, tracking and identification from rendered videos.

    python bench/video.py [--quick] [--checkpoint CKPT] [--demo-dir /tmp/demo] [--repeats 3]
                          [--backends mog2,knn,mediapipe] [--keep DIR]

Every video is rendered here (:func:`gaitcli.synth.video.render_video`, 640x360, mp4v, the
project's default :class:`~gaitcli.synth.video.VideoStyle` unless a scene says otherwise), so
the ground truth of every pixel is known. Prints one JSON object:

- ``speed``: end-to-end :func:`gaitcli.video.silhouettes.extract_video` frames/s (decode, segment,
  track, normalise to 64x64, the segmenter made inside as ``gait silhouettes`` does) per backend,
  best of ``--repeats``, against a bare loop measured in the same run on the same file
  (``cv2.VideoCapture`` + ``cv2.createBackgroundSubtractorMOG2().apply`` per frame, nothing else);
  ``ratio_vs_bare`` > 1 is faster than the bare loop. ``frames_per_s_model_ready`` leaves the
  segmenter's construction (MediaPipe's graph start-up) out of the clock.
- ``quality``: per backend and scene, the mean IoU of the backend's per-frame mask against the
  ground truth ``truth.mask(frame)`` (every walker) over the frames after the warm-up in which a
  walker is in view. Scenes: ``one`` (one walker crossing, default style), ``crossing`` (two
  walkers crossing at different depths, a third passing in front of one of them later),
  ``camouflage`` (every walker's trousers close to the floor's colour, another background).
- ``tracking``: per backend and scene, from the masks of every observation of every kept track
  (``extract_video(masks=...)``): each frame's blob is given to the ground-truth walker it
  overlaps most; a frame is *pure* when that walker is the track's own (the one most of its
  frames go to) and holds at least 90 % of the blob's walker pixels. ``purity`` is the share of
  pure frames, ``same_walker`` says no frame went to another walker, and ``one_track_per_walker``
  that every walker in view for at least ``min_frames`` frames got exactly one kept track.
- ``identification``: rank-1 of the demo's trained checkpoint (``gait demo --workdir
  /tmp/demo``) on the test ids' walks, (a) from the clean ``gait synth`` silhouettes of the walk
  (pretreated as ``gait prepare`` does) and (b) from the same walk rendered into a video and
  extracted with mog2 (the longest kept track), against the gallery of the test ids' prepared
  nm-01..04 sequences (all five demo views); ``drop_points`` = (a) - (b). Two controls:
  ``truth_masks``, the video's ground-truth masks through the same pretreatment (a perfect
  segmenter), and ``video_tuned``, mog2 with :data:`TUNED` instead of its defaults.

``mog2_tuned`` in ``quality`` and ``tracking`` is that same diagnostic setting (not a default).
Run it on idle cores: it times things (``pgrep -f "pytest|gait "`` should find nothing).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from gaitcli.errors import GaitError, render
from gaitcli.synth.video import VideoStyle, VideoTruth, VideoWalker, clean_silhouettes, render_video
from gaitcli.video.backends import BackendOptions, Segmenter, make_segmenter
from gaitcli.video.silhouettes import SilhouetteOptions, TrackResult, extract_video

DEMO_DIR = Path("/tmp/demo")
PURE_SHARE = 0.9  # a pure frame: the track's walker holds this share of the blob's walker pixels
TUNED = BackendOptions(var_threshold=32.0, close_size=3)
"""A diagnostic mog2 setting (not the default), reported beside the defaults."""
TUNED_TEXT = "mog2 with var_threshold 32 and close_size 3 (defaults 16 and 7), a diagnostic"


# --------------------------------------------------------------------------- machine
def cpu_info() -> dict[str, Any]:
    """``lscpu``'s model name and core counts (and Python's view of the CPUs)."""
    fields: dict[str, str] = {}
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=False, timeout=10).stdout
        for line in text.splitlines():
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    flags = fields.get("Flags", "").split()
    return {
        "model_name": fields.get("Model name") or platform.processor() or None,
        "cpus": int(fields["CPU(s)"]) if fields.get("CPU(s)", "").isdigit() else os.cpu_count(),
        "cores_per_socket": fields.get("Core(s) per socket"),
        "threads_per_core": fields.get("Thread(s) per core"),
        "amx": any(f.startswith("amx") for f in flags),
        "avx512": "avx512f" in flags,
        "opencv_threads": cv2.getNumThreads(),
        "machine": platform.machine(),
    }


def mediapipe_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("mediapipe")
    except Exception:  # not installed
        return None


# --------------------------------------------------------------------------- scenes
@dataclass(frozen=True)
class Scene:
    name: str
    walkers: tuple[VideoWalker, ...]
    frames: int
    style: VideoStyle = VideoStyle()
    what: str = ""


def scenes(quick: bool) -> list[Scene]:
    """The rendered scenes (640x360, mp4v). Offsets put the feet on the floor; walkers later in
    the list are nearer the camera (and in front)."""
    long_walk = 60 if quick else 120
    one = Scene("one", (VideoWalker(0, 1, "nm-01", "090", offset=(100, 0), scale=1.4, length=long_walk),),
                frames=15 + long_walk + 30, what="one walker crossing, default style")
    crossing = Scene(
        "crossing",
        (VideoWalker(0, 2, "nm-01", "090", offset=(150, 25), scale=1.1, length=100),
         VideoWalker(0, 3, "nm-02", "090", offset=(70, 10), scale=1.5, length=100, mirror=True),
         VideoWalker(0, 4, "nm-01", "126", start=70, offset=(250, 20), scale=1.2, length=60)),
        frames=170,
        what="two walkers crossing at different depths (about 100 and 130 px tall), a third (150 px) "
             "passing in front of the second later; default style",
    )
    camouflage = Scene(
        "camouflage",
        (VideoWalker(0, 5, "nm-01", "054", offset=(120, 0), scale=1.3, length=80),
         VideoWalker(0, 6, "nm-03", "090", start=60, offset=(90, 0), scale=1.4, length=80, mirror=True)),
        frames=170, style=VideoStyle(camouflage=1.0, background_seed=1),
        what="every walker's trousers 18-30 grey levels lighter than the floor, another background; "
             "the second walker comes in the other way before the first has left",
    )
    return [one, crossing] if quick else [one, crossing, camouflage]


def render_scene(scene: Scene, folder: Path) -> VideoTruth:
    return render_video(folder / f"{scene.name}.mp4", scene.walkers, scene.frames, scene.style)


# --------------------------------------------------------------------------- speed
def bare_loop(path: Path) -> tuple[float, int]:
    """Seconds and frames of ``VideoCapture`` + ``MOG2.apply`` per frame, nothing else."""
    started = time.perf_counter()
    capture = cv2.VideoCapture(str(path))
    subtractor = cv2.createBackgroundSubtractorMOG2()
    frames = 0
    while True:
        ok, image = capture.read()
        if not ok:
            break
        subtractor.apply(image)
        frames += 1
    capture.release()
    return time.perf_counter() - started, frames


def pipeline(path: Path, backend: str, model_ready: bool) -> tuple[float, int]:
    """Seconds and frames of ``extract_video`` (the segmenter made inside, or before the clock)."""
    options = SilhouetteOptions(backend=backend)
    segmenter = make_segmenter(backend, options.segmentation) if model_ready else None
    try:
        started = time.perf_counter()
        result = extract_video(path, options, segmenter=segmenter)
        seconds = time.perf_counter() - started
    finally:
        if segmenter is not None:
            segmenter.close()
    return seconds, result.decoded


def measure_speed(path: Path, backends: Sequence[str], repeats: int) -> dict[str, Any]:
    """Best of ``repeats`` per variant, the variants interleaved (a shared CPU drifts)."""
    best: dict[str, float] = {}
    frames: dict[str, int] = {}
    variants: list[tuple[str, Callable[[], tuple[float, int]]]] = [("bare", lambda: bare_loop(path))]
    for backend in backends:
        variants.append((backend, lambda b=backend: pipeline(path, b, False)))  # type: ignore[misc]
        variants.append((f"{backend}:ready", lambda b=backend: pipeline(path, b, True)))  # type: ignore[misc]
    for _name, run in variants:  # one untimed pass each: file cache, imports, MediaPipe's first load
        run()
    for _ in range(repeats):
        for name, run in variants:
            seconds, count = run()
            frames[name] = count
            best[name] = min(best.get(name, float("inf")), seconds)

    def fps(name: str) -> float:
        return round(frames[name] / best[name], 1)

    out: dict[str, Any] = {"video": path.name, "frames": frames["bare"], "repeats": repeats,
                           "bare_loop_frames_per_s": fps("bare"), "backends": {}}
    for backend in backends:
        out["backends"][backend] = {
            "frames_per_s": fps(backend),
            "ratio_vs_bare": round(fps(backend) / fps("bare"), 3),
            "frames_per_s_model_ready": fps(f"{backend}:ready"),
            "best_seconds": round(best[backend], 3),
        }
    return out


# --------------------------------------------------------------------------- quality + tracking
class ScoredSegmenter:
    """Passes a segmenter's masks through, scoring each against the ground truth as it goes."""

    def __init__(self, inner: Segmenter, truth: VideoTruth, first: int) -> None:
        self.inner = inner
        self.name = inner.name
        self.warmup = inner.warmup
        self.truth = truth
        self.first = first
        self.frame = 0
        self.ious: list[float] = []

    def segment(self, image: np.ndarray) -> np.ndarray:
        mask = self.inner.segment(image)
        frame, self.frame = self.frame, self.frame + 1
        if frame >= self.first:
            truth = self.truth.mask(frame)
            if truth.any():
                found = mask > 0
                union = int(np.count_nonzero(found | truth))
                self.ious.append(int(np.count_nonzero(found & truth)) / union)
        return mask

    def close(self) -> None:
        self.inner.close()


def track_walkers(track: TrackResult, folder: Path, truth: VideoTruth) -> dict[str, Any]:
    """Which ground-truth walker each observation of ``track`` covers (its masks in ``folder``)."""
    best: list[int | None] = []
    pure_share: list[float] = []
    for png in sorted((folder / f"t{track.number}").glob("*.png")):
        frame = int(png.stem)
        image = cv2.imread(str(png), cv2.IMREAD_GRAYSCALE)
        if image is None:
            raise RuntimeError(f"cannot read the mask {png}")
        blob = image > 0
        overlaps = [int(np.count_nonzero(blob & truth.mask(frame, w))) for w in range(len(truth.walkers))]
        top = int(np.argmax(overlaps))
        best.append(top if overlaps[top] > 0 else None)
        pure_share.append(overlaps[top] / max(1, sum(overlaps)))
    seen = Counter(b for b in best if b is not None)
    own = seen.most_common(1)[0][0] if seen else None
    pure = sum(1 for b, s in zip(best, pure_share, strict=True) if b == own and s >= PURE_SHARE)
    return {
        "track": track.number,
        "walker": own,
        "observed": len(best),
        "silhouettes": len(track.frames.silhouettes),
        "merged_frames": track.summary.quality.merged_frames,
        "purity": round(pure / max(1, len(best)), 3),
        "same_walker": all(b in (own, None) for b in best),
        "frames_on_no_walker": sum(1 for b in best if b is None),
    }


def score_scene(video: Path, truth: VideoTruth, backend: str, work: Path,
                segmentation: BackendOptions = BackendOptions()) -> tuple[dict[str, Any], dict[str, Any]]:
    """Mask quality and tracking of one backend on one scene, in one pass of ``extract_video``."""
    options = SilhouetteOptions(backend=backend, segmentation=segmentation)
    first = BackendOptions().warmup  # the same frames for every backend (mog2 / knn learn until then)
    scored = ScoredSegmenter(make_segmenter(backend, options.segmentation), truth, first)
    masks = work / f"masks-{backend}"
    try:
        result = extract_video(video, options, segmenter=scored, masks=masks)
    finally:
        scored.close()
    ious = scored.ious
    quality = {
        "mean_iou": round(statistics.fmean(ious), 4) if ious else None,
        "median_iou": round(statistics.median(ious), 4) if ious else None,
        "share_below_0_8": round(sum(1 for v in ious if v < 0.8) / len(ious), 3) if ious else None,
        "frames": len(ious),
    }
    folder = masks / video.stem
    kept = [track_walkers(t, folder, truth) for t in result.kept]
    shutil.rmtree(masks, ignore_errors=True)
    min_frames = options.tracking.min_frames
    expected = []
    for w in range(len(truth.walkers)):
        in_view = sum(1 for f in range(first, truth.frames) if truth.box(f, w) is not None)
        if in_view >= min_frames:
            expected.append(w)
    per_walker = Counter(t["walker"] for t in kept)
    tracking = {
        "walkers": len(truth.walkers),
        "walkers_expected": expected,
        "tracks": len(result.tracks),
        "kept": len(kept),
        "kept_per_walker": {str(w): per_walker.get(w, 0) for w in range(len(truth.walkers))},
        "one_track_per_walker": all(per_walker.get(w, 0) == 1 for w in expected)
        and sum(per_walker.values()) == len(expected),
        "min_purity": min((t["purity"] for t in kept), default=None),
        "all_same_walker": all(t["same_walker"] for t in kept),
        "kept_tracks": kept,
        "dropped": [{"track": t.number, "reason": render(t.reason or "")}
                    for t in result.tracks if not t.kept],
    }
    return quality, tracking


# --------------------------------------------------------------------------- identification
def demo_checkpoint(demo: Path) -> Path | None:
    """The demo run's final checkpoint (the highest iteration, training state files left out)."""
    folder = demo / "run" / "checkpoints"
    found = sorted(p for p in folder.glob("*.safetensors") if not p.name.endswith(".state.safetensors"))
    return found[-1] if found else None


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    """Nothing but the JSON on stdout (rich consoles may print while loading)."""
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        yield


def longest_track(result: Any) -> TrackResult | None:
    kept = sorted(result.kept, key=lambda t: len(t.frames.silhouettes), reverse=True)
    return kept[0] if kept else None


def identification(checkpoint: Path, demo: Path, work: Path, quick: bool,
                   style: VideoStyle = VideoStyle()) -> dict[str, Any]:
    """Rank-1 from clean silhouettes and from videos of the same walks (module docstring).

    Two controls besides: ``truth_masks``, the video's ground-truth masks through the same
    pretreatment (what a perfect segmenter would give), and ``video_tuned``, the video through
    mog2 with :data:`TUNED` instead of the defaults."""
    import torch

    from gaitcli.data.pickle_io import load_array
    from gaitcli.data.pretreat import pretreat_frame, pretreat_sequence
    from gaitcli.demo import DEMO_FRAMES, DEMO_IMG_SIZE, DEMO_VIEWS, GALLERY_TYPES, split_ids
    from gaitcli.deploy.embed import embed_walks, load_for_inference
    from gaitcli.deploy.identify import identify
    from gaitcli.deploy.inputs import Walk, WalkSet

    started = time.perf_counter()
    partition = demo / "partition.json"
    test_ids = json.loads(partition.read_text())["TEST_SET"] if partition.is_file() else split_ids(16)[1]
    seed, length, size = 0, DEMO_FRAMES, DEMO_IMG_SIZE  # gait demo's synth: --seed 0 --frames 40

    def walk(label: str, type_: str, view: str, array: np.ndarray, source: str) -> Walk:
        return Walk(label, type_, view, source, lambda a=array: [a])  # type: ignore[misc]

    def iou(a: np.ndarray, b: np.ndarray) -> float:
        return int(np.count_nonzero(a & b)) / max(1, int(np.count_nonzero(a | b)))

    gallery_walks = []
    for ident in test_ids:
        for type_ in GALLERY_TYPES:
            for view in DEMO_VIEWS:
                pkl = demo / "pkl" / ident / type_ / view / f"{view}.pkl"
                gallery_walks.append(walk(ident, type_, view, load_array(pkl), str(pkl)))

    probe_types = ["nm-05"] if quick else ["nm-05", "nm-06", "bg-01", "cl-01"]
    probe_views = ["090"] if quick else ["090", "054"]
    sources = ("clean", "video", "video_tuned", "truth_masks")
    probes: dict[str, list[tuple[int, Walk]]] = {name: [] for name in sources}
    keys: list[tuple[str, str, str]] = []
    misses: list[str] = []
    same_as_prepared = 0
    sil_ious: dict[str, list[float]] = {"video": [], "video_tuned": [], "truth_masks": []}
    seconds = {"render": 0.0, "extract": 0.0}
    for ident in test_ids:
        for type_ in probe_types:
            for view in probe_views:
                row = len(keys)
                keys.append((ident, type_, view))
                walker = VideoWalker(seed, int(ident), type_, view, offset=(160, 50), scale=1.0,
                                     length=length)
                frames = clean_silhouettes(walker)
                clean, _ = pretreat_sequence(frames, size)
                prepared = demo / "pkl" / ident / type_ / view / f"{view}.pkl"
                if prepared.is_file() and np.array_equal(load_array(prepared), clean):
                    same_as_prepared += 1
                name = f"{ident}/{type_}/{view}"
                probes["clean"].append((row, walk(ident, type_, view, clean, f"clean {name}")))
                video = work / f"probe-{ident}-{type_}-{view}.mp4"
                t0 = time.perf_counter()
                truth = render_video(video, [walker], style.lead_in + len(frames) + 5, style)
                t1 = time.perf_counter()
                seconds["render"] += t1 - t0
                masks = [truth.mask(f).astype(np.uint8) * 255 for f in range(truth.frames)]
                from_truth, _ = pretreat_sequence(masks, size)
                probes["truth_masks"].append((row, walk(ident, type_, view, from_truth, f"truth {name}")))
                for kind, seg in (("video", BackendOptions()), ("video_tuned", TUNED)):
                    t1 = time.perf_counter()
                    result = extract_video(video, SilhouetteOptions(segmentation=seg, img_size=size,
                                                                    type=type_, view=view))
                    if kind == "video":
                        seconds["extract"] += time.perf_counter() - t1
                    track = longest_track(result)
                    if track is None:
                        misses.append(f"{kind} {name}")
                        continue
                    probes[kind].append((row, walk(ident, type_, view, track.frames.array(), str(video))))
                    for index, sil in zip(track.frames.indices, track.frames.silhouettes, strict=True):
                        k = truth.sequence_frame(index, 0)
                        ref = pretreat_frame(frames[k], size) if k is not None else None
                        if ref is not None:
                            sil_ious[kind].append(iou(sil > 127, ref > 127))
                for index, mask in enumerate(masks):
                    k = truth.sequence_frame(index, 0)
                    ref = pretreat_frame(frames[k], size) if k is not None else None
                    perfect = pretreat_frame(mask, size) if ref is not None else None
                    if ref is not None and perfect is not None:
                        sil_ious["truth_masks"].append(iou(perfect > 127, ref > 127))
                video.unlink()

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    loaded = load_for_inference(checkpoint, device="cpu")
    gallery = embed_walks(loaded, WalkSet(gallery_walks))
    feats = {name: embed_walks(loaded, WalkSet([w for _, w in found])) if found else None
             for name, found in probes.items()}
    n = len(keys)

    def hits(name: str, exclude_same_view: bool) -> list[bool]:
        """Per probe row: rank-1 correct (a walk without a kept track is a miss)."""
        out = [False] * n
        probe_feats = feats[name]
        if probe_feats is None:
            return out
        answers = identify(gallery, probe_feats, top_k=1, exclude_same_view=exclude_same_view).answers
        for (row, _), answer in zip(probes[name], answers, strict=True):
            out[row] = answer.best is not None and answer.best.label == answer.probe
        return out

    def pct(values: Sequence[bool]) -> float:
        return round(100.0 * sum(values) / len(values), 2) if values else 0.0

    out: dict[str, Any] = {
        "checkpoint": str(checkpoint), "gallery_sequences": len(gallery_walks),
        "gallery": f"test ids {test_ids[0]}..{test_ids[-1]}, {','.join(GALLERY_TYPES)}, "
                   f"views {','.join(DEMO_VIEWS)}",
        "probes": n, "probe_types": probe_types, "probe_views": probe_views,
        "video": "640x360 mp4v, default VideoStyle, scale 1.0 (walker about 110-130 px tall), "
                 "mog2, img_size 32",
        "tuned": TUNED_TEXT,
        "clean_same_as_demo_pkls": same_as_prepared,
        "probes_with_a_kept_track": {name: len(probes[name]) for name in ("video", "video_tuned")},
    }
    for exclude in (False, True):
        got = {name: hits(name, exclude) for name in sources}
        by_type = {}
        for prefix in sorted({t[:2] for t in probe_types}):
            rows = [i for i, key in enumerate(keys) if key[1].startswith(prefix)]
            by_type[prefix] = {name: pct([got[name][i] for i in rows]) for name in sources}
        rank1 = {name: pct(got[name]) for name in sources}
        out["excluding_same_view" if exclude else "all_views"] = {
            **{f"rank1_{name}": value for name, value in rank1.items()},
            "drop_points": round(rank1["clean"] - rank1["video"], 2),
            "drop_points_tuned": round(rank1["clean"] - rank1["video_tuned"], 2),
            "by_type": by_type,
        }
    out["silhouette_iou_vs_clean"] = {name: round(statistics.fmean(v), 4) if v else None
                                      for name, v in sil_ious.items()}
    out["misses"] = misses
    out["seconds"] = {**{k: round(v, 1) for k, v in seconds.items()},
                      "total": round(time.perf_counter() - started, 1)}
    return out


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter videos, fewer probes, 2 repeats")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timing repeats (default 3; 2 with --quick)")
    parser.add_argument("--backends", default="mog2,knn,mediapipe")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="trained checkpoint for the identification part "
                             "(default: gait demo's final one)")
    parser.add_argument("--demo-dir", type=Path, default=DEMO_DIR,
                        help="the gait demo work folder (its pkl tree and partition give the gallery)")
    parser.add_argument("--keep", type=Path, default=None, help="keep the rendered videos in this folder")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    repeats = args.repeats or (2 if args.quick else 3)
    notes: list[str] = []

    backends = []
    for name in [b.strip() for b in args.backends.split(",") if b.strip()]:
        try:
            make_segmenter(name).close()
            backends.append(name)
        except GaitError as exc:
            notes.append(f"{name} skipped: {exc}")

    work = Path(tempfile.mkdtemp(prefix="gait-bench-video-"))
    try:
        folder = args.keep or work
        folder.mkdir(parents=True, exist_ok=True)
        rendered: dict[str, tuple[Scene, VideoTruth, float]] = {}
        for scene in scenes(args.quick):
            t0 = time.perf_counter()
            truth = render_scene(scene, folder)
            rendered[scene.name] = (scene, truth, time.perf_counter() - t0)

        speed = measure_speed(rendered["one"][1].path, backends, repeats)

        scored = [(b, b, BackendOptions()) for b in backends]
        if "mog2" in backends:
            scored.append(("mog2_tuned", "mog2", TUNED))
        quality: dict[str, dict[str, Any]] = {label: {} for label, _, _ in scored}
        tracking: dict[str, dict[str, Any]] = {label: {} for label, _, _ in scored}
        for name, (_, truth, _) in rendered.items():
            for label, backend, seg in scored:
                scores = score_scene(truth.path, truth, backend, work, seg)
                quality[label][name], tracking[label][name] = scores
        if "mog2" in backends:
            notes.append(f"mog2_tuned: {TUNED_TEXT}")
        if "mediapipe" in backends:
            notes.append("mediapipe finds one person per frame: its IoU and tracking on the multi-walker "
                         "scenes count the walkers it cannot see")

        checkpoint = args.checkpoint or demo_checkpoint(args.demo_dir)
        ident: dict[str, Any] | None = None
        if checkpoint is None or not Path(checkpoint).is_file():
            where = checkpoint or args.demo_dir / "run" / "checkpoints"
            notes.append(f"identification skipped: no checkpoint ({where}); "
                         f"run gait demo --workdir {args.demo_dir} or pass --checkpoint")
        elif not (args.demo_dir / "pkl").is_dir():
            notes.append(f"identification skipped: no prepared tree at {args.demo_dir / 'pkl'}")
        else:
            with quiet_stdout():
                ident = identification(Path(checkpoint), args.demo_dir, work, args.quick)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    mog2 = speed["backends"].get("mog2", {})
    mp = speed["backends"].get("mediapipe", {})
    goals: dict[str, Any] = {
        "mog2_ratio_vs_bare >= 0.5": mog2.get("ratio_vs_bare", 0) >= 0.5 if mog2 else None,
        "mediapipe_frames_per_s >= 10": mp.get("frames_per_s", 0) >= 10 if mp else None,
        "mog2_mean_iou_one >= 0.92": (quality.get("mog2", {}).get("one", {}).get("mean_iou") or 0) >= 0.92
        if "mog2" in quality else None,
        "identification_drop_points <= 6.5": ident["all_views"]["drop_points"] <= 6.5 if ident else None,
    }
    result = {
        "benchmark": "video",
        "quick": args.quick,
        "cpu": cpu_info(),
        "python": platform.python_version(),
        "opencv": cv2.__version__,
        "mediapipe": mediapipe_version(),
        "scenes": {name: {"frames": s.frames, "walkers": len(s.walkers), "what": s.what,
                          "render_seconds": round(sec, 1)}
                   for name, (s, _, sec) in rendered.items()},
        "speed": speed,
        "quality": quality,
        "tracking": tracking,
        "identification": ident,
        "goals": goals,
        "notes": notes,
        "seconds": round(time.perf_counter() - started, 1),
        "load_average_1min": {"start": round(load_before, 2), "end": round(os.getloadavg()[0], 2)},
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
