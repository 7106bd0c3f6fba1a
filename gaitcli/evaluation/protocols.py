"""Evaluation protocols: which sequences form the gallery and the probe sets, and how the
accuracies are averaged (docs/eval.md, "Protocols"). Running one is :mod:`.matching`.

* ``casia-b``: gallery ``nm-01..04``; probe sets NM ``nm-05,06``, BG ``bg-01,02``, CL ``cl-01,02``.
  For each probe set, probe view ``v`` and gallery view ``u``: the gallery is restricted to view
  ``u`` and each probe takes its nearest gallery sequence. This gives a views × views matrix per
  probe set whose cells (percentages) are rounded to 2 decimals, as the reference does, before
  any averaging. Per probe view: the mean over the gallery views ``u != v`` (excluding identical
  view) and over all ``u`` (including); overall: the mean over the probe views.
* ``ou-mvlp``: the same with probe seq ``00``, gallery seq ``01`` (14 views).
* ``cross-view``: probes nm-01 / bg-01 / cl-01 (OU-MVLP: 00) against one gallery of nm-02 + bg-02 +
  cl-02 (OU-MVLP: 01) over all views, each probe's own id at its own view removed from its
  gallery; rank-1 and mAP per probe view, rounded to 2 decimals, then averaged.
* ``generic``: the single-view scheme with the gallery types and probe sets of
  ``evaluator_cfg.gallery_types`` / ``evaluator_cfg.probe_sets``.

The field protocols (docs/eval-field-protocols.md), run by :mod:`.retrieval`:

* ``gait3d``: the probes are the partition file's ``PROBE_SET`` entries (``id-type-view``), the
  gallery every other sequence; rank-1/5/10, mAP and mINP over the probes whose id is in the
  gallery.
* ``grew``: gallery type ``01``, probes type ``02`` (rank-1/5/10/20, rounded to 2 decimals); the
  competition file ranks the probes of type ``03`` (id ``probe``, the video id as view) against
  the gallery of types ``01`` + ``02``.
* ``ccpg``: the four cloth-change settings CL, UP, DN, BG, each with its own gallery types; views
  are what precedes the first ``_`` of the view name. A views x views rank-1 matrix per setting
  and, against the setting's whole gallery minus the probe's id at its own view, rank-1, mAP and
  mINP.

The views are the ones present in the data. A cell without probes or without gallery sequences
is ``None`` (n/a) and stays out of every average; a mean over nothing is ``None`` too. Where the
reference is defined (every cell present), the numbers are the reference's.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gaitcli.errors import GaitError, option

PROTOCOLS = ("auto", "casia-b", "ou-mvlp", "cross-view", "generic", "gait3d", "grew", "ccpg")
FIELD_PROTOCOLS = ("gait3d", "grew", "ccpg")
"""The protocols :mod:`.retrieval` runs (the others: :mod:`.matching`)."""
Warn = Callable[[str], None]


@dataclass(frozen=True)
class ProtocolSpec:
    """A protocol resolved to type lists. ``kind`` is ``single-view`` (one gallery per view,
    a views × views matrix), ``cross-view`` (one gallery over all views), ``retrieval`` (one
    gallery, rank-k / mAP / mINP: gait3d, grew) or ``cloth-change`` (ccpg: a gallery per probe
    set, a views × views matrix and rank-1 / mAP / mINP)."""

    name: str
    kind: str
    gallery_types: tuple[str, ...]
    probe_sets: dict[str, tuple[str, ...]] = field(default_factory=dict)
    set_galleries: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Probe set → its own gallery types (ccpg); a set not named here uses ``gallery_types``."""


CASIA_B = ProtocolSpec(
    "casia-b",
    "single-view",
    ("nm-01", "nm-02", "nm-03", "nm-04"),
    {"NM": ("nm-05", "nm-06"), "BG": ("bg-01", "bg-02"), "CL": ("cl-01", "cl-02")},
)
OU_MVLP = ProtocolSpec("ou-mvlp", "single-view", ("01",), {"NM": ("00",)})
CROSS_VIEW = {
    "casia-b": ProtocolSpec(
        "cross-view",
        "cross-view",
        ("nm-02", "bg-02", "cl-02"),
        {"NM": ("nm-01",), "BG": ("bg-01",), "CL": ("cl-01",)},
    ),
    "ou-mvlp": ProtocolSpec("cross-view", "cross-view", ("01",), {"NM": ("00",)}),
}
_CASIA_TYPES = {f"{k}-{i:02d}" for k, n in (("nm", 6), ("bg", 2), ("cl", 2)) for i in range(1, n + 1)}

GAIT3D = ProtocolSpec("gait3d", "retrieval", (), {"Gait3D": ()})
"""Gait3D (OpenGait's ``evaluate_Gait3D``): probes from the partition's ``PROBE_SET``, gallery
all other sequences; no type decides anything."""
GREW = ProtocolSpec("grew", "retrieval", ("01",), {"GREW": ("02",)})
"""GREW's local evaluation (OpenGait's ``evaluate_real_scene`` for ``GREW``)."""
GAIT3D_SET = "Gait3D"
GREW_SET = "GREW"
GREW_SUBMISSION_GALLERY = ("01", "02")
GREW_SUBMISSION_PROBES = ("03",)
"""GREW's competition file (OpenGait's ``GREW_submission``): probes of type ``03`` against the
gallery of types ``01`` + ``02``."""
GREW_SUBMISSION_RANKS = 20
_CCPG_SETS = {
    "CL": (("U0_D0_BG", "U0_D0"), ("U1_D1", "U2_D2", "U3_D3")),
    "UP": (("U3_D3",), ("U0_D3",)),
    "DN": (("U1_D0",), ("U1_D1",)),
    "BG": (("U0_D0_BG",), ("U0_D0",)),
}
CCPG = ProtocolSpec(
    "ccpg",
    "cloth-change",
    tuple(sorted({t for _, gallery in _CCPG_SETS.values() for t in gallery})),
    {name: probes for name, (probes, _) in _CCPG_SETS.items()},
    {name: gallery for name, (_, gallery) in _CCPG_SETS.items()},
)
"""CCPG (OpenGait's ``evaluate_CCPG``): per setting its probe and gallery cloth codes."""
_CCPG_TYPES = {t for probes, gallery in _CCPG_SETS.values() for t in (*probes, *gallery)}
_FIELD_SPECS = {"gait3d": GAIT3D, "grew": GREW, "ccpg": CCPG}


def ccpg_views(views: Sequence[str] | np.ndarray) -> np.ndarray:
    """CCPG's camera of each view name: what precedes its first ``_`` (``01_2`` → ``01``), as the
    reference evaluator reads them."""
    return np.array([str(v).split("_")[0] for v in np.asarray(views).astype(str).tolist()], dtype=str)


def dataset_family(name: str | None) -> str | None:
    """``casia-b`` / ``ou-mvlp`` / ``gait3d`` / ``grew`` / ``ccpg`` for the data set names the
    reference knows, else None."""
    if not name:
        return None
    key = re.sub(r"[^a-z0-9]", "", str(name).lower())
    names = {"casiab": "casia-b", "oumvlp": "ou-mvlp", "gait3d": "gait3d", "grew": "grew", "ccpg": "ccpg"}
    return names.get(key)


def family_from_types(types: Sequence[str] | None) -> str | None:
    """Guess the layout from the sequence types present (used for saved features)."""
    if types is None or len(types) == 0:
        return None
    present = set(np.unique(np.asarray(types).astype(str)).tolist())
    if present <= _CASIA_TYPES:
        return "casia-b"
    if present <= {"00", "01"}:
        return "ou-mvlp"
    if present <= {"01", "02", "03"}:
        return "grew"
    if present <= _CCPG_TYPES:
        return "ccpg"
    if all(re.fullmatch(r"camid\d+_videoid\d+", t) for t in present):
        return "gait3d"
    return None


def resolve_protocol(
    requested: str | ProtocolSpec | None = "auto",
    *,
    dataset_name: str | None = None,
    evaluator_cfg: Mapping[str, object] | None = None,
    types: Sequence[str] | None = None,
) -> ProtocolSpec:
    """The protocol to run. ``auto`` takes ``evaluator_cfg.protocol`` when set, else picks from
    the data set name (CASIA-B → casia-b, OUMVLP → ou-mvlp; ``cross_view_gallery: true`` →
    cross-view), else ``generic`` when gallery types and probe sets are configured, else from
    the types present in the data."""
    if isinstance(requested, ProtocolSpec):
        return requested
    ev = dict(evaluator_cfg or {})
    name = requested or "auto"
    if name not in PROTOCOLS:
        raise GaitError(f"unknown protocol {name!r}: use one of {', '.join(PROTOCOLS)}")
    if name == "auto":
        name = str(ev.get("protocol") or "auto")
    family = dataset_family(dataset_name)
    generic = _generic_sets(ev)
    if name == "auto":
        name, family = _auto_name(ev, family, generic, dataset_name, types)
    if name == "casia-b":
        return CASIA_B
    if name == "ou-mvlp":
        return OU_MVLP
    if name == "generic":
        return _generic_spec(generic)
    if name in _FIELD_SPECS:
        return _FIELD_SPECS[name]
    return _cross_view_spec(generic, family or family_from_types(types), dataset_name)


_Sets = tuple[tuple[str, ...], dict[str, tuple[str, ...]]]


def _auto_name(ev: Mapping[str, object], family: str | None, generic: _Sets | None, dataset_name: str | None,
               types: Sequence[str] | None) -> tuple[str, str | None]:
    """``auto``: the data set's family (cross-view with ``cross_view_gallery``), else generic,
    else the family the types present suggest."""
    if family is None and generic is None:
        family = family_from_types(types)
    if family in _FIELD_SPECS:  # configured generic sets keep winning there, as before these protocols
        return ("generic", family) if generic is not None else (family, family)
    if family is not None:
        return ("cross-view" if ev.get("cross_view_gallery") else family), family
    if generic is not None:
        return "generic", family
    raise GaitError(
        f"cannot pick an evaluation protocol for data set {dataset_name or '(unnamed)'}: pass "
        f"{option('protocol')} casia-b, ou-mvlp, cross-view, gait3d, grew or ccpg, or "
        f"{option('protocol', 'generic')} with "
        f"evaluator_cfg.gallery_types and evaluator_cfg.probe_sets set "
        f"({option('overrides', 'evaluator_cfg.gallery_types=[...]')})"
    )


def _generic_spec(generic: _Sets | None) -> ProtocolSpec:
    if generic is None:
        raise GaitError(
            "the generic protocol needs evaluator_cfg.gallery_types (a list of types) and "
            "evaluator_cfg.probe_sets ({name: [types]}), e.g. "
            f"{option('overrides', 'evaluator_cfg.gallery_types=[nm-01]')} "
            f"{option('overrides', repr('evaluator_cfg.probe_sets={NM: [nm-02]}'))}"
        )
    return ProtocolSpec("generic", "single-view", generic[0], generic[1])


def _cross_view_spec(generic: _Sets | None, family: str | None, dataset_name: str | None) -> ProtocolSpec:
    if generic is not None:
        return ProtocolSpec("cross-view", "cross-view", generic[0], generic[1])
    if family not in CROSS_VIEW:
        raise GaitError(
            "the cross-view protocol knows CASIA-B and OU-MVLP layouts; "
            f"data set {dataset_name or '(unnamed)'} needs evaluator_cfg.gallery_types and "
            "evaluator_cfg.probe_sets"
        )
    return CROSS_VIEW[str(family)]


def _generic_sets(ev: Mapping[str, object]) -> _Sets | None:
    gallery, probes = ev.get("gallery_types"), ev.get("probe_sets")
    if not gallery or not probes:
        return None
    if not isinstance(probes, Mapping):
        raise GaitError(
            "evaluator_cfg.probe_sets must map a probe-set name to a list of types, e.g. {NM: [nm-05, nm-06]}"
        )
    sets = {}
    for key, value in probes.items():
        items = [value] if isinstance(value, str) else list(value or [])
        sets[str(key)] = tuple(str(v) for v in items)
    if not isinstance(gallery, Iterable):
        raise TypeError(f"evaluator_cfg.gallery_types must be a list of types, got {gallery!r}")
    return tuple(str(g) for g in gallery), sets


# ----------------------------------------------------------------------------------------------
# does the data fit the protocol
# ----------------------------------------------------------------------------------------------


def view_sort_key(view: str) -> tuple[int, float, str]:
    """Numeric views in numeric order ("0" < "18" < "180"), anything else after, by name."""
    try:
        return (0, float(view), view)
    except ValueError:
        return (1, 0.0, view)


@dataclass(frozen=True)
class SubmissionFit:
    """The sequences of GREW's competition file."""

    gallery: np.ndarray
    """Boolean mask: the gallery (types ``01`` and ``02``)."""
    probes: np.ndarray
    """Boolean mask: the probes (type ``03``), in the order of the file's rows."""


@dataclass
class ProtocolFit:
    """Which sequences of a data set play which part in a protocol."""

    gallery: np.ndarray
    """Boolean mask over the sequences: the gallery."""
    probe_sets: dict[str, np.ndarray]
    """Probe set name → boolean mask of its probes."""
    set_galleries: dict[str, np.ndarray] = field(default_factory=dict)
    """Probe set name → its own gallery mask (ccpg); a set not named here uses ``gallery``."""
    submission: SubmissionFit | None = None
    """GREW's competition file (``--submission``), None when not asked for."""

    def gallery_of(self, name: str) -> np.ndarray:
        """The gallery mask of probe set ``name``."""
        return self.set_galleries.get(name, self.gallery)


@dataclass(frozen=True)
class ProbeList:
    """A partition file's ``PROBE_SET``: the probes of the gait3d protocol."""

    entries: tuple[str, ...]
    """``id-type-view`` of each probe sequence (OpenGait's Gait3D.json)."""
    source: str
    """The partition file it came from."""


def needs_probe_list(spec: ProtocolSpec) -> bool:
    """Whether ``spec`` takes its probes from the partition file's ``PROBE_SET``."""
    return spec.name == GAIT3D.name


def read_probe_list(partition: str | os.PathLike[str] | None) -> ProbeList:
    """The ``PROBE_SET`` of a partition file (a packaged name such as ``Gait3D.json`` works as for
    training); every problem is one line."""
    from gaitcli.data.partition import load_partition

    if partition is None:
        raise GaitError(
            f"the gait3d protocol takes its probes from the partition file's PROBE_SET: pass "
            f"{option('partition', 'Gait3D.json')} (OpenGait's datasets/Gait3D/Gait3D.json)"
        )
    path = Path(load_partition(partition).path)  # exists, is JSON with TRAIN_SET / TEST_SET
    data = json.loads(path.read_text(encoding="utf-8"))
    entries = data.get("PROBE_SET")
    if not isinstance(entries, list) or not entries or not all(isinstance(e, str) for e in entries):
        found = (
            "none" if entries is None
            else f"a {type(entries).__name__}" if not isinstance(entries, list)
            else "an empty or non-text list"
        )
        raise GaitError(
            f"{path}: the gait3d protocol needs a PROBE_SET list of id-type-view strings (as OpenGait's "
            f'Gait3D.json: "PROBE_SET": ["0002-camid33_videoid2-seq0", ...]); found {found}'
        )
    return ProbeList(tuple(entries), str(path))


def fit_protocol(
    spec: ProtocolSpec,
    labels: Sequence[str] | np.ndarray,
    types: Sequence[str] | np.ndarray,
    views: Sequence[str] | np.ndarray,
    *,
    probe_list: ProbeList | None = None,
    submission: bool = False,
    warn: Warn | None = None,
) -> ProtocolFit:
    """The gallery and probe masks of any protocol over the sequences (``labels`` / ``types`` /
    ``views``, one per sequence): :func:`check_fit` for the type-based ones, the ``PROBE_SET``
    of ``probe_list`` for gait3d, GREW's types (and its competition file's with ``submission``)."""
    if submission and spec.name != GREW.name:
        raise GaitError(
            f"{option('submission')} writes GREW's competition file: use it with "
            f"{option('protocol', 'grew')}, not {spec.name}"
        )
    if spec.name == GAIT3D.name:
        if probe_list is None:
            probe_list = read_probe_list(None)  # the one-line error
        return _gait3d_fit(probe_list, labels, types, views, warn)
    if spec.name == GREW.name:
        return _grew_fit(labels, types, submission, warn)
    fit = check_fit(spec, types, warn)
    if spec.set_galleries:
        fit.set_galleries = _set_galleries(spec, np.asarray(types).astype(str), fit, warn)
    return fit


def _set_galleries(
    spec: ProtocolSpec, types: np.ndarray, fit: ProtocolFit, warn: Warn | None
) -> dict[str, np.ndarray]:
    """Each probe set's own gallery mask (ccpg); a set with probes but no gallery is n/a (a
    warning), none with both is one error."""
    galleries = {name: np.isin(types, list(spec.set_galleries.get(name, spec.gallery_types)))
                 for name in spec.probe_sets}
    usable = [name for name, g in galleries.items() if g.any() and fit.probe_sets[name].any()]
    if not usable:
        raise GaitError(
            f"features do not match the {spec.name} protocol: no setting has both probes and gallery "
            f"sequences (settings: "
            + "; ".join(f"{n} {'+'.join(spec.probe_sets[n])} vs {'+'.join(spec.set_galleries[n])}"
                        for n in spec.probe_sets)
            + f"); choose another {option('protocol')}"
        )
    if warn is not None:
        for name, g in galleries.items():
            if fit.probe_sets[name].any() and not g.any():
                warn(f"probe set {name}: no gallery sequences of type {', '.join(spec.set_galleries[name])}; "
                     "shown as n/a")
    return galleries


def _keys(labels: np.ndarray, types: np.ndarray, views: np.ndarray) -> np.ndarray:
    """``id-type-view`` of each sequence (the keys of a ``PROBE_SET``)."""
    return np.char.add(np.char.add(np.char.add(np.char.add(labels, "-"), types), "-"), views)


def _gait3d_fit(
    probe_list: ProbeList,
    labels: Sequence[str] | np.ndarray,
    types: Sequence[str] | np.ndarray,
    views: Sequence[str] | np.ndarray,
    warn: Warn | None,
) -> ProtocolFit:
    keys = _keys(*(np.asarray(a).astype(str) for a in (labels, types, views)))
    probes = np.isin(keys, np.asarray(probe_list.entries, dtype=str))
    n = len(probe_list.entries)
    if not probes.any():
        example = f"; a sequence here is {keys[0]}" if len(keys) else ""
        raise GaitError(
            f"features do not match the gait3d protocol: none of the {n} PROBE_SET entries of "
            f"{probe_list.source} (e.g. {probe_list.entries[0]}) is among the {len(keys)} "
            f"sequences{example}; "
            "evaluate Gait3D's test set with its own partition file"
        )
    if probes.all():
        raise GaitError(
            f"features do not match the gait3d protocol: every sequence is a PROBE_SET entry of "
            f"{probe_list.source}, so the gallery is empty; evaluate the whole test set"
        )
    missing = len(set(probe_list.entries) - set(keys[probes].tolist()))
    if missing and warn is not None:
        warn(f"{missing} of the {n} PROBE_SET entries of {probe_list.source} have no sequence among the "
             "features; they are left out")
    return ProtocolFit(~probes, {GAIT3D_SET: probes})


def _grew_fit(
    labels: Sequence[str] | np.ndarray, types: Sequence[str] | np.ndarray, submission: bool, warn: Warn | None
) -> ProtocolFit:
    types = np.asarray(types).astype(str)
    gallery = np.isin(types, GREW.gallery_types)
    probes = np.isin(types, GREW.probe_sets[GREW_SET])
    sub = _submission_fit(np.asarray(labels).astype(str), types) if submission else None
    if not (gallery.any() and probes.any()):
        if sub is None:
            check_fit(GREW, types)  # the one-line error, naming what is missing
        elif warn is not None:
            warn("no sequences of types 01 (gallery) and 02 (probes): no local rank-k table, only the "
                 "competition file")
    return ProtocolFit(gallery, {GREW_SET: probes}, submission=sub)


def _submission_fit(labels: np.ndarray, types: np.ndarray) -> SubmissionFit:
    """GREW's competition file: probes of type 03, gallery of types 01 + 02 whose ids are numbers
    (the file lists them as integers, as the reference writes ``int(id)``)."""
    gallery = np.isin(types, GREW_SUBMISSION_GALLERY)
    probes = np.isin(types, GREW_SUBMISSION_PROBES)
    if not probes.any():
        raise GaitError(
            f"{option('submission')}: no probe sequences of type 03 (GREW's test probes, prepared as id "
            "probe, type 03, the video id as view); evaluate GREW's test set"
        )
    if not gallery.any():
        raise GaitError(
            f"{option('submission')}: no gallery sequences of type 01 or 02; evaluate GREW's test set"
        )
    if int(gallery.sum()) < GREW_SUBMISSION_RANKS:
        raise GaitError(
            f"{option('submission')}: GREW's competition file names the {GREW_SUBMISSION_RANKS} nearest "
            f"gallery sequences of each probe, and there are only {int(gallery.sum())} of type 01 or 02; "
            "evaluate GREW's test set"
        )
    for label in np.unique(labels[gallery]).tolist():
        try:
            int(label)
        except ValueError:
            raise GaitError(
                f"{option('submission')}: gallery id {label!r} is not a number; GREW's competition file "
                "lists each probe's nearest gallery ids as integers (its test ids 00001, 00002, ...)"
            ) from None
    return SubmissionFit(gallery, probes)


def check_fit(spec: ProtocolSpec, types: Sequence[str] | np.ndarray, warn: Warn | None = None) -> ProtocolFit:
    """The gallery mask and each probe set's mask over ``types``; one clear error when the data
    has no gallery or no probe at all for ``spec`` (an empty probe set is only a warning)."""
    types = np.asarray(types).astype(str)
    gallery_mask = np.isin(types, spec.gallery_types)
    set_masks = {name: np.isin(types, list(ts)) for name, ts in spec.probe_sets.items()}
    present = ", ".join(sorted(set(types.tolist()))[:12]) or "none"
    if not gallery_mask.any():
        raise GaitError(
            f"features do not match the {spec.name} protocol: no gallery sequences of type "
            f"{', '.join(spec.gallery_types)} (types present: {present}); choose another {option('protocol')}"
        )
    if not any(mask.any() for mask in set_masks.values()):
        raise GaitError(
            f"features do not match the {spec.name} protocol: no probe sequences of type "
            f"{', '.join(t for ts in spec.probe_sets.values() for t in ts)} (types present: {present}); "
            f"choose another {option('protocol')}"
        )
    if warn is not None:
        for name, mask in set_masks.items():
            if not mask.any():
                warn(
                    f"probe set {name}: no sequences of type {', '.join(spec.probe_sets[name])}; shown as n/a"
                )
    return ProtocolFit(gallery_mask, set_masks)
