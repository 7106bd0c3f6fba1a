"""``gait identify --gallery G.npz PROBE...``: who is this? Top-k gallery identities per probe.

Distances are those of evaluation (:func:`gaitcli.evaluation.metrics.distance_block`: the same
metric and per-part average), made as chunked matrix products against the gallery, whose norms
are computed once. Per probe, each identity is represented by its best-matching gallery sequence;
the k nearest identities are returned. ``exclude_same_view`` drops every gallery sequence at the
probe's view, ``gallery_types`` keeps only those types. With a threshold (open set), a probe whose
best distance is above it has no answer: ``identity`` None, ``known`` False, JSON ``"answer":
null``; no gallery identity can be mistaken for that (docs/deploy.md). Embeddings holding NaN or
infinite values are refused, naming the file and the entry.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from rich.console import Console

from gaitcli.errors import GaitError, option, render
from gaitcli.evaluation.features import FeatureSet, concat_features, require_finite
from gaitcli.evaluation.metrics import as_features, check_metric, distance_block, part_norms
from gaitcli.fileio import JSONValue

from .compat import Source, calibration_file, check_compatible, feature_file
from .inputs import Problem, VideoOptions, Walk

UNKNOWN = "unknown"
"""What :attr:`Answer.answer` (display text) shows for a probe without an identity."""
_BLOCK = 1 << 23  # probe rows x gallery columns per distance block (32 MB of float32)
_REMAKE_FEATURES = "re-create it with gait embed (or leave that walk out)"


@dataclass(frozen=True)
class Threshold:
    """An open-set threshold and what it means."""

    value: float
    """Accept the best identity when its distance is at most this."""
    meaning: str
    """Where it came from (calibrated FPIR and data, or the command line)."""
    caveat: str | None = None
    """Why it may not mean what it says here (e.g. an older, pairwise calibration)."""
    calibrated_identities: int | None = None
    """Gallery identities of the calibration's searches (FPIR grows with the gallery)."""

    def to_json(self) -> dict[str, JSONValue]:
        caveat = None if self.caveat is None else render(self.caveat)
        return {"value": self.value, "meaning": render(self.meaning), "caveat": caveat}


@dataclass(frozen=True)
class Match:
    """One gallery identity for a probe."""

    label: str
    """Gallery identity."""
    distance: float
    """Distance to its best-matching sequence."""
    type: str
    """That sequence's type."""
    view: str
    """That sequence's view."""
    index: int
    """That sequence's row in the gallery file."""

    def to_json(self) -> dict[str, JSONValue]:
        return {
            "label": self.label,
            "distance": self.distance,
            "type": self.type,
            "view": self.view,
            "index": self.index,
        }


@dataclass
class Answer:
    """The answer for one probe."""

    probe: str
    """The probe's label (the path when it has no id/type/view shape)."""
    type: str
    """The probe's type."""
    view: str
    """The probe's view."""
    matches: list[Match]
    """The nearest identities, best first (listed whether or not one is accepted)."""
    identity: str | None
    """The answer: the best identity, or None when its distance is above the threshold or the
    gallery left nothing to match."""
    track: int | None = None
    """For a track of a video (``probe`` is then the video): its number in the video."""
    frames: tuple[int, int] | None = None
    """For a track of a video: its first and last decoded frame index (from 0)."""

    @property
    def best(self) -> Match | None:
        return self.matches[0] if self.matches else None

    @property
    def known(self) -> bool:
        """Whether the probe was given an identity."""
        return self.identity is not None

    @property
    def answer(self) -> str:
        """Display text: the identity, or ``unknown``. An identity may itself be named
        ``unknown``: decide with :attr:`identity` / :attr:`known`, never with this."""
        return self.identity if self.identity is not None else UNKNOWN

    def to_json(self) -> dict[str, JSONValue]:
        out: dict[str, JSONValue] = {"probe": self.probe}
        if self.track is not None:
            out["track"] = self.track
            out["frames"] = list(self.frames) if self.frames is not None else None
        out.update({
            "type": self.type,
            "view": self.view,
            "answer": self.identity,
            "known": self.known,
            "matches": [m.to_json() for m in self.matches],
        })
        return out


@dataclass
class IdentifyResult:
    """Every probe's answer."""

    gallery: str
    """The gallery file."""
    gallery_sequences: int
    """Gallery sequences used (after ``--gallery-types``)."""
    gallery_identities: int
    """Identities among them."""
    metric: str
    """Distance metric."""
    top_k: int
    """Identities listed per probe."""
    exclude_same_view: bool
    """Whether gallery sequences at the probe's view were dropped."""
    threshold: Threshold | None
    """The open-set threshold, if any."""
    answers: list[Answer] = field(default_factory=list)
    """Per probe, in input order."""
    seconds: float = 0.0
    """Matching time."""
    notes: list[str] = field(default_factory=list)
    """What the reader should know about the threshold here."""

    def to_json(self) -> dict[str, JSONValue]:
        return {
            "gallery": self.gallery,
            "gallery_sequences": self.gallery_sequences,
            "gallery_identities": self.gallery_identities,
            "metric": self.metric,
            "top_k": self.top_k,
            "exclude_same_view": self.exclude_same_view,
            "threshold": self.threshold.to_json() if self.threshold else None,
            "answers": [a.to_json() for a in self.answers],
            "notes": [render(note) for note in self.notes],
            "seconds": round(self.seconds, 4),
        }


def select_gallery(gallery: FeatureSet, types: Sequence[str] | None) -> np.ndarray:
    """Rows of ``gallery`` to match against (``types``: keep only these sequence types)."""
    if not types:
        return np.arange(len(gallery))
    rows = np.flatnonzero(np.isin(gallery.types, list(types)))
    if len(rows) == 0:
        present = ", ".join(sorted(set(gallery.types.tolist()))[:12]) or "none"
        raise GaitError(
            f"{option('gallery_types', ','.join(types))}: no gallery sequence has these types "
            f"(present: {present})"
        )
    return rows


class GalleryIndex:
    """A gallery ready for matching: features, norms and identity codes, kept on ``device``."""

    def __init__(self, gallery: FeatureSet, rows: np.ndarray, metric: str, device: str = "cpu") -> None:
        self.metric = check_metric(metric)
        self.rows = rows
        every = len(rows) == len(gallery)  # no copy of a large gallery when all of it is used
        self.features = as_features(gallery.embeddings if every else gallery.embeddings[rows], device)
        self.norms = part_norms(self.features, metric)
        self.names, codes = np.unique(gallery.labels[rows], return_inverse=True)
        self.codes = torch.from_numpy(codes.astype(np.int64)).to(self.features.device)
        self.views = gallery.views[rows]
        self.types = gallery.types[rows]
        view_names, view_codes = np.unique(np.concatenate([self.views, [""]]), return_inverse=True)
        self.view_names = {str(v): i for i, v in enumerate(view_names.tolist())}
        self.view_codes = torch.from_numpy(view_codes[:-1].astype(np.int64)).to(self.features.device)

    def best_per_identity(
        self, probes: torch.Tensor, probe_views: Sequence[str], exclude_same_view: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(best [n, identities], dist [n, gallery])``: each identity's smallest distance
        (inf when all its sequences are excluded) and the masked distances."""
        dist = distance_block(probes, self.features, self.metric, y_norms=self.norms)
        if exclude_same_view:
            codes = [self.view_names.get(str(v), -1) if str(v) else -1 for v in probe_views]
            pv = torch.tensor(codes, dtype=torch.int64, device=dist.device)
            dist = dist.masked_fill(pv[:, None] == self.view_codes[None, :], math.inf)
        best = torch.full((dist.shape[0], len(self.names)), math.inf, device=dist.device)
        best.scatter_reduce_(1, self.codes.expand(dist.shape[0], -1), dist, reduce="amin", include_self=True)
        return best, dist

    def matches(self, best: torch.Tensor, dist: torch.Tensor, top_k: int) -> list[Match]:
        """The ``top_k`` identities of one probe row (``best [identities]``, ``dist [gallery]``)."""
        k = min(top_k, best.numel())
        values, ids = torch.topk(best, k, largest=False, sorted=True)
        out = []
        for value, ident in zip(values.tolist(), ids.tolist(), strict=True):
            if not math.isfinite(value):
                break
            column = int(torch.where(self.codes == ident, dist, math.inf).argmin())
            out.append(
                Match(
                    str(self.names[ident]),
                    float(value),
                    str(self.types[column]),
                    str(self.views[column]),
                    int(self.rows[column]),
                )
            )
        return out


def answer_probes(
    index: GalleryIndex,
    probes: FeatureSet,
    *,
    top_k: int = 5,
    exclude_same_view: bool = False,
    threshold: Threshold | None = None,
) -> list[Answer]:
    """The answers for ``probes`` against a built :class:`GalleryIndex`, in chunks of probes."""
    feats = as_features(probes.embeddings, index.features.device)
    chunk = max(1, min(256, _BLOCK // max(len(index.rows), 1)))
    answers = []
    for c0 in range(0, len(probes), chunk):
        views = probes.views[c0 : c0 + chunk].tolist()
        best, dist = index.best_per_identity(feats[c0 : c0 + chunk], views, exclude_same_view)
        for j in range(best.shape[0]):
            i = c0 + j
            found = index.matches(best[j], dist[j], top_k)
            accepted = bool(found) and (threshold is None or found[0].distance <= threshold.value)
            label = found[0].label if accepted else None
            answers.append(
                Answer(str(probes.labels[i]), str(probes.types[i]), str(probes.views[i]), found, label)
            )
    return answers


def identify(
    gallery: FeatureSet,
    probes: FeatureSet,
    *,
    metric: str | None = None,
    top_k: int = 5,
    exclude_same_view: bool = False,
    gallery_types: Sequence[str] | None = None,
    threshold: Threshold | None = None,
    gallery_name: str = "gallery",
    device: str = "cpu",
) -> IdentifyResult:
    """Answer every probe of ``probes`` against ``gallery``."""
    if top_k < 1:
        raise GaitError(f"{option('top_k')} must be at least 1, got {top_k}")
    chosen = check_metric(metric or gallery.meta.get("metric") or "euc")
    if len(gallery) == 0:
        raise GaitError(f"{gallery_name}: the gallery is empty")
    require_finite(gallery, f"gallery {gallery_name}", _REMAKE_FEATURES)
    require_finite(probes, "probes", _REMAKE_FEATURES)
    if probes.embeddings.shape[1:] != gallery.embeddings.shape[1:]:
        raise GaitError(
            f"probe embeddings {list(probes.embeddings.shape[1:])} do not match the gallery's "
            f"{list(gallery.embeddings.shape[1:])}; embed both with the same checkpoint"
        )
    started = time.perf_counter()
    index = GalleryIndex(gallery, select_gallery(gallery, gallery_types), chosen, device)
    result = IdentifyResult(
        gallery_name, len(index.rows), len(index.names), chosen, top_k, exclude_same_view, threshold
    )
    if threshold is not None and threshold.caveat:
        result.notes.append(threshold.caveat)
    calibrated = threshold.calibrated_identities if threshold is not None else None
    if calibrated is not None and len(index.names) > calibrated:
        result.notes.append(
            f"the threshold was calibrated for a gallery of {calibrated} identities; this one has "
            f"{len(index.names)}, and more identities accept more impostor probes (recalibrate on a "
            "larger evaluation to keep the FPIR)"
        )
    result.answers = answer_probes(
        index, probes, top_k=top_k, exclude_same_view=exclude_same_view, threshold=threshold
    )
    result.seconds = time.perf_counter() - started
    return result


def resolve_threshold(
    value: float | None, calibration: str | None, gallery: FeatureSet, gallery_name: str
) -> Threshold | None:
    """``--threshold`` or ``--calibration`` (checked against the gallery), not both."""
    from gaitcli.evaluation.calibration import Calibration

    if value is not None and calibration is not None:
        raise GaitError(f"give {option('threshold')} or {option('calibration')}, not both")
    if value is not None:
        if not math.isfinite(value) or value < 0:
            raise GaitError(f"{option('threshold')} must be a distance >= 0, got {value}")
        return Threshold(float(value), f"threshold {value:g} given on the command line (no calibrated FAR)")
    if calibration is None:
        return None
    cal = Calibration.load(calibration)
    check_compatible(
        feature_file(gallery.provenance, f"gallery {gallery_name}"),
        calibration_file(cal.provenance, f"calibration {calibration}"),
    )
    return Threshold(float(cal.threshold), cal.meaning(), cal.caveat(), cal.gallery_identities)


def place_tracks(result: IdentifyResult, origins: Sequence[Walk | None]) -> IdentifyResult:
    """Answers of video tracks name the video as ``probe``, with the track and its frames
    (``origins[i]`` is the walk of probe row ``i``, ``None`` for rows from feature files)."""
    for answer, walk in zip(result.answers, origins, strict=True):
        if walk is not None and walk.track is not None:
            answer.probe, answer.track, answer.frames = walk.source, walk.track, walk.frames
    return result


def load_probes(
    probes: Sequence[str],
    gallery: FeatureSet,
    gallery_name: str,
    *,
    checkpoint: str | None,
    img_size: str | None,
    device: str | None,
    batch_size: int | None,
    console: Console | None,
    video: VideoOptions | None = None,
    precision: str = "fp32",
) -> tuple[FeatureSet, list[Problem], list[Walk | None]]:
    """Probe feature files, plus (with ``checkpoint``) anything ``gait embed`` takes, as one
    feature set checked against the gallery; also the skipped inputs, and per probe row the walk
    it came from (``None`` for rows of feature files)."""
    from .embed import embed_walks, load_for_inference
    from .inputs import resolve_inputs

    if checkpoint is None and img_size is not None:
        raise GaitError(
            f"{option('img_size')} applies to walks embedded with {option('checkpoint')}; drop it or add "
            f"{option('checkpoint')}"
        )
    ref = feature_file(gallery.provenance, f"gallery {gallery_name}")
    files = [p for p in probes if str(p).endswith(".npz")]
    walks = [p for p in probes if not str(p).endswith(".npz")]
    parts: list[FeatureSet] = []
    for path in files:
        feats = require_finite(FeatureSet.load(path), f"probe file {path}", _REMAKE_FEATURES)
        check_compatible(ref, feature_file(feats.provenance, f"probe file {path}"))
        parts.append(feats)
    skipped: list[Problem] = []
    origins: list[Walk | None] = [None] * sum(len(p) for p in parts)
    if walks:
        if checkpoint is None:
            raise GaitError(
                f"{walks[0]}: not a feature file (.npz); pass {option('checkpoint', 'CKPT')} to embed "
                "walks on the fly"
            )
        loaded = load_for_inference(
            checkpoint, img_size=img_size, device=device, metric=gallery.meta.get("metric"),
            precision=precision,
        )
        check_compatible(ref, Source(loaded.provenance, f"checkpoint {checkpoint}"))
        walk_set = resolve_inputs(walks, loaded.frame_size, data_in_use=loaded.data_in_use, video=video,
                                  console=console)
        skipped = list(walk_set.skipped)
        parts.append(embed_walks(loaded, walk_set, batch_size=batch_size, console=console))
        origins.extend(walk_set.sequences)
    if not parts:
        raise GaitError(f"no PROBE given: pass feature files or (with {option('checkpoint')}) walks")
    merged = parts[0]
    for extra in parts[1:]:
        merged = concat_features(merged, extra)
    return merged, skipped, origins
