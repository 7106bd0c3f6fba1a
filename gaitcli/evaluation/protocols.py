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

The views are the ones present in the data. A cell without probes or without gallery sequences
is ``None`` (n/a) and stays out of every average; a mean over nothing is ``None`` too. Where the
reference is defined (every cell present), the numbers are the reference's.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from gaitcli.errors import GaitError, option

PROTOCOLS = ("auto", "casia-b", "ou-mvlp", "cross-view", "generic")
Warn = Callable[[str], None]


@dataclass(frozen=True)
class ProtocolSpec:
    """A protocol resolved to type lists. ``kind`` is ``single-view`` (one gallery per view,
    a views × views matrix) or ``cross-view`` (one gallery over all views)."""

    name: str
    kind: str
    gallery_types: tuple[str, ...]
    probe_sets: dict[str, tuple[str, ...]] = field(default_factory=dict)


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


def dataset_family(name: str | None) -> str | None:
    """``casia-b`` / ``ou-mvlp`` for the data set names the reference knows, else None."""
    if not name:
        return None
    key = re.sub(r"[^a-z0-9]", "", str(name).lower())
    if key == "casiab":
        return "casia-b"
    if key == "oumvlp":
        return "ou-mvlp"
    return None


def family_from_types(types: Sequence[str] | None) -> str | None:
    """Guess the layout from the sequence types present (used for saved features)."""
    if types is None or len(types) == 0:
        return None
    present = set(np.unique(np.asarray(types).astype(str)).tolist())
    if present <= _CASIA_TYPES:
        return "casia-b"
    if present <= {"00", "01"}:
        return "ou-mvlp"
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
    return _cross_view_spec(generic, family or family_from_types(types), dataset_name)


_Sets = tuple[tuple[str, ...], dict[str, tuple[str, ...]]]


def _auto_name(ev: Mapping[str, object], family: str | None, generic: _Sets | None, dataset_name: str | None,
               types: Sequence[str] | None) -> tuple[str, str | None]:
    """``auto``: the data set's family (cross-view with ``cross_view_gallery``), else generic,
    else the family the types present suggest."""
    if family is None and generic is None:
        family = family_from_types(types)
    if family is not None:
        return ("cross-view" if ev.get("cross_view_gallery") else family), family
    if generic is not None:
        return "generic", family
    raise GaitError(
        f"cannot pick an evaluation protocol for data set {dataset_name or '(unnamed)'}: pass "
        f"{option('protocol')} casia-b, ou-mvlp or cross-view, or {option('protocol', 'generic')} with "
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
    if family is None:
        raise GaitError(
            "the cross-view protocol knows CASIA-B and OU-MVLP layouts; "
            f"data set {dataset_name or '(unnamed)'} needs evaluator_cfg.gallery_types and "
            "evaluator_cfg.probe_sets"
        )
    return CROSS_VIEW[family]


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


@dataclass
class ProtocolFit:
    """Which sequences of a data set play which part in a protocol."""

    gallery: np.ndarray
    """Boolean mask over the sequences: the gallery."""
    probe_sets: dict[str, np.ndarray]
    """Probe set name → boolean mask of its probes."""


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
