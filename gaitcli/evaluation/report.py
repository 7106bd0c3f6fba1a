"""Evaluation results as papers print them (rich tables), as JSON, CSV and a heatmap image.

Table layout: one row per probe set (NM / BG / CL), one column per probe view, the mean last;
excluding-identical-view first, then including, then rank-5 and mAP when asked. Per-view cells
show one decimal, the mean two (the reference prints its means with two decimals). Values that
do not exist (no probes or no gallery at a view) show as ``n/a`` and are ``null`` in JSON.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from gaitcli.errors import GaitError, option
from gaitcli.fileio import JSONValue, atomic_write_bytes

from .plan import EvalOutputs
from .results import Cell, EvalResult, Matrix, ProtocolResult, RetrievalScores
from .results import Table as ScoreTable
from .submission import submission_csv
from .verification import csv_text, render_verification, save_roc

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.colors import Colormap
    from matplotlib.image import AxesImage

TABLES = ("rank1_exclude", "rank1_include", "rank5_exclude", "map")
Results = EvalResult | ProtocolResult


def _protocol(result: Results) -> ProtocolResult:
    return result.result if isinstance(result, EvalResult) else result


def _tables(result: ProtocolResult) -> dict[str, ScoreTable | None]:
    """The tables by their JSON key (:data:`TABLES`)."""
    t = result.tables
    return {"rank1_exclude": t.rank1_exclude, "rank1_include": t.rank1_include,
            "rank5_exclude": t.rank5_exclude, "map": t.map}


def json_payload(results: Results) -> dict[str, JSONValue]:
    """The ``--json`` document: the documented keys first, then the details (views, counts,
    the gallery-view × probe-view matrices)."""
    return results.to_json()


def _fmt(value: float | None, decimals: int) -> str:
    return "n/a" if value is None else f"{value:.{decimals}f}"


def _titles(kind: str) -> dict[str, str]:
    if kind == "cross-view":
        return {
            "rank1_exclude": "Rank-1 accuracy (%), cross-view gallery without the probe's id at its own view",
            "rank1_include": "Rank-1 accuracy (%), cross-view gallery, nothing removed",
            "rank5_exclude": "Rank-5 accuracy (%), cross-view gallery without the probe's id at its own view",
            "map": "mAP (%), cross-view gallery without the probe's id at its own view",
        }
    return {
        "rank1_exclude": "Rank-1 accuracy (%) excluding identical views",
        "rank1_include": "Rank-1 accuracy (%) including identical views",
        "rank5_exclude": "Rank-5 accuracy (%) excluding identical views",
        "map": "mAP (%) excluding identical views",
    }


def build_table(result: ProtocolResult, key: str) -> Table | None:
    """One rich table (rows = probe sets, columns = probe views, then the mean)."""
    body = _tables(result).get(key)
    if not body:
        return None
    views = list(result.views or next(iter(body.values())).views.keys())
    table = Table(header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 0), show_edge=False)
    rows = [
        (name, [_cell(row.views.get(v), 1) for v in views], _cell(row.mean, 2))
        for name, row in body.items()
    ]
    width = max([5, *(len(Text.from_markup(c).plain) for _, cells, _ in rows for c in cells)])
    table.add_column("Probe", justify="left", no_wrap=True, min_width=max(5, *(len(n) for n, _, _ in rows)))
    for view in views:
        table.add_column(view, justify="right", no_wrap=True, min_width=max(width, len(view)))
    table.add_column("Mean", justify="right", style="bold", no_wrap=True, min_width=6)
    for name, cells, mean in rows:
        table.add_row(name, *cells, mean)
    return table


def _cell(value: float | None, decimals: int) -> str:
    return "[dim]n/a[/]" if value is None else _fmt(value, decimals)


SCORE_NAMES = {"rank1": "Rank-1", "rank5": "Rank-5", "rank10": "Rank-10", "rank20": "Rank-20", "map": "mAP",
               "minp": "mINP"}
"""The retrieval scores in table order, with their column titles."""
_RETRIEVAL_TITLES = {
    "gait3d": "Gait3D (%): each PROBE_SET probe against every other sequence",
    "grew": "GREW (%): probes of type 02 against the gallery of type 01",
    "ccpg": "Re-identification (%): each setting's whole gallery without the probe's id at its own camera",
}


def _score_keys(rows: dict[str, RetrievalScores]) -> list[str]:
    present = {key for row in rows.values() for key in row.scores}
    return [key for key in SCORE_NAMES if key in present]


def build_retrieval_table(result: ProtocolResult) -> Table | None:
    """The retrieval table of a field protocol: one row per probe set, one column per score, then
    the probes scored (None for the other protocols)."""
    rows = result.retrieval
    if not rows:
        return None
    keys = _score_keys(rows)
    table = Table(header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1), show_edge=False)
    table.add_column("Probe", justify="left", no_wrap=True)
    for key in keys:
        table.add_column(SCORE_NAMES[key], justify="right", no_wrap=True)
    table.add_column("probes", justify="right", no_wrap=True, style="dim")
    for name, row in rows.items():
        table.add_row(name, *[_cell(row.scores.get(k), 2) for k in keys], str(row.probes))
    return table


def _render_retrieval(proto: ProtocolResult, console: Console) -> None:
    table = build_retrieval_table(proto)
    if table is None or proto.retrieval is None:
        return
    console.print(f"[bold]{_RETRIEVAL_TITLES.get(proto.protocol, 'Retrieval (%)')}[/]", highlight=False)
    console.print(table)
    left_out = sum(row.left_out for row in proto.retrieval.values())
    if left_out:
        console.print(f"[dim]{left_out} probes without a gallery sequence of their id are left out of this "
                      "table (as the reference evaluator does)[/]", highlight=False)


def render_results(result: Results, console: Console, *, rank5: bool = False, show_map: bool = False) -> None:
    """Print the header line and the tables (cross-view always shows its mAP)."""
    proto = _protocol(result)
    run = result if isinstance(result, EvalResult) else None
    where = (run.checkpoint or run.features if run is not None else None) or "features"
    iteration = run.iteration if run is not None else None
    head = (
        f"[bold]{proto.protocol}[/] protocol · metric {proto.metric} · "
        f"{proto.num_probes} probes vs {proto.num_gallery} gallery sequences · "
        f"{where}" + (f" (iteration {iteration})" if iteration is not None else "")
    )
    console.print(head, highlight=False)
    titles = _titles(proto.kind)
    wanted = ["rank1_exclude", "rank1_include"]
    if rank5:
        wanted.append("rank5_exclude")
    if show_map or proto.kind == "cross-view":
        wanted.append("map")
    any_na = False
    for key in wanted:
        table = build_table(proto, key)
        body = _tables(proto)[key]
        if table is None or body is None:
            continue
        console.print(f"[bold]{titles[key]}[/]", highlight=False)
        # never drop columns on a narrow terminal: let the lines run long instead
        needed = Measurement.get(console, console.options, table).minimum
        console.print(table, width=max(console.width, needed), crop=False)
        any_na = any_na or _has_na(body)
    _render_retrieval(proto, console)
    if any_na:
        console.print("[dim]n/a: no probe or no gallery sequence at that view (left out of the means)[/]")
    seconds = run.seconds.to_json() if run is not None else {}
    parts = [
        f"{k} {v:.1f} s"
        for k, v in seconds.items()
        if isinstance(v, (int, float)) and k != "sequences_per_second"
    ]
    per_second = seconds.get("sequences_per_second")
    if per_second and isinstance(per_second, (int, float)):
        parts.append(f"{per_second:.1f} sequences/s")
    if parts:
        console.print("[dim]" + " · ".join(parts) + "[/]", highlight=False)
    if isinstance(result, EvalResult) and result.verification is not None:
        render_verification(result.verification, console)


def _has_na(body: ScoreTable) -> bool:
    return any(v is None for row in body.values() for v in [*row.views.values(), row.mean])


def results_csv(result: Results) -> str:
    """CSV text: ``table, probe_set, gallery_view, <probe views...>, mean``. Summary rows leave
    ``gallery_view`` empty; ``<table>_matrix`` rows give one gallery view each (single-view
    protocols). n/a is an empty cell."""
    proto = _protocol(result)
    if proto.kind == "retrieval":
        return retrieval_csv(proto)
    views = list(proto.views)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["table", "probe_set", "gallery_view", *views, "mean"])
    tables = _tables(proto)
    for key in TABLES:
        body = tables[key]
        if not body:
            continue
        for name, row in body.items():
            writer.writerow(
                [key, name, "", *[_csv(row.views.get(v)) for v in views], _csv(row.mean)]
            )
    matrix = proto.tables.matrix or {}
    for key, sets in matrix.items():
        for name, rows in sets.items():
            for u, gallery_view in enumerate(views):
                writer.writerow(
                    [f"{key}_matrix", name, gallery_view, *[_csv(rows[v][u]) for v in range(len(views))], ""]
                )
    if proto.retrieval:
        buf.write("\n" + retrieval_csv(proto))
    return buf.getvalue()


def retrieval_csv(proto: ProtocolResult) -> str:
    """The retrieval table as CSV: ``table, probe_set, <scores...>, probes, left_out`` (``table``
    is ``retrieval``); n/a is an empty cell."""
    rows = proto.retrieval or {}
    keys = _score_keys(rows)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["table", "probe_set", *keys, "probes", "left_out"])
    for name, row in rows.items():
        cells = [_csv(row.scores.get(k)) for k in keys]
        writer.writerow(["retrieval", name, *cells, row.probes, row.left_out])
    return buf.getvalue()


def _csv(value: Cell) -> str:
    return "" if value is None else repr(float(value))


def _write_text(target: str | os.PathLike[str], text: str) -> None:
    if str(target) == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    atomic_write_bytes(str(target), text.encode())


def write_csv(target: str | os.PathLike[str], results: Results) -> None:
    """The CSV text into ``target`` (``-`` is stdout), atomically for files; the verification
    rows (``table=verification``) follow the tables after a blank line."""
    text = results_csv(results)
    if isinstance(results, EvalResult) and results.verification is not None:
        text += "\n" + csv_text(results.verification)
    _write_text(target, text)


def write_json(target: str | os.PathLike[str], results: Results) -> None:
    """The ``--json`` document into ``target`` (``-`` is stdout), atomically for files."""
    _write_text(target, json.dumps(json_payload(results), indent=2, sort_keys=False) + "\n")


def write_outputs(outputs: EvalOutputs, result: EvalResult, note: Callable[[str], None]) -> None:
    """JSON, CSV and heatmap of a finished evaluation (the plan checked every target)."""
    if outputs.json:
        write_json(outputs.json, result)
    if outputs.csv:
        write_csv(outputs.csv, result)
    submission = result.result.submission
    if outputs.submission is not None and submission is not None:
        _write_text(outputs.submission, submission_csv(submission))
        if outputs.submission != "-":
            note(f"GREW submission written to {outputs.submission}: {len(submission.video_ids)} probes")
    if outputs.heatmap is not None:
        save_heatmap(result, outputs.heatmap)
        note(f"heatmap written to {outputs.heatmap}")
    if outputs.save_features is not None:
        note(f"features written to {outputs.save_features}")
    if outputs.roc is not None and result.verification is not None:
        save_roc(result.verification, outputs.roc)
        note(f"ROC / DET curves written to {outputs.roc}")
    if outputs.calibration_out is not None and result.calibration is not None:
        result.calibration.save(outputs.calibration_out)
        note(f"calibration written to {outputs.calibration_out}: {result.calibration.meaning()}")


def save_heatmap(result: Results, path: str | os.PathLike[str], key: str = "rank1") -> Path:
    """Draw the gallery-view × probe-view accuracy matrix of each probe set (x: probe view,
    y: gallery view) into ``path`` (png, svg or pdf by its extension), atomically."""
    from gaitcli.imaging import figure_class, save_figure

    proto = _protocol(result)
    matrices = (proto.tables.matrix or {}).get(key)
    if not matrices:
        raise GaitError(
            f"{option('heatmap')}: the {proto.protocol} protocol has no gallery-view x probe-view "
            "matrix (use casia-b, ou-mvlp or generic)"
        )
    views, names = list(proto.views), list(matrices)
    excluding = _tables(proto).get(f"{key}_exclude") or {}
    size = max(3.2, 0.42 * len(views) + 1.6)
    fig = figure_class("heatmap")(figsize=(size * len(names), size + 0.4), layout="constrained")
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    image = None
    for ax, name in zip(axes, names, strict=True):
        row = excluding.get(name)
        mean = row.mean if row is not None else None
        image = _draw_matrix(ax, matrices[name], views, _panel_title(name, key, mean))
    if image is not None:
        fig.colorbar(image, ax=list(axes), shrink=0.8, label="%")
    fig.suptitle(f"{proto.protocol} · {proto.metric} · gallery view x probe view")
    return save_figure(fig, path, "heatmap")


def _panel_title(name: str, key: str, mean: float | None) -> str:
    label = {"rank1": "rank-1", "rank5": "rank-5", "map": "mAP"}.get(key, key)
    return f"{name} {label} (%)" + (f", mean excl. identical {mean:.2f}" if mean is not None else "")


def _draw_matrix(ax: Axes, rows: Matrix, views: list[str], title: str) -> AxesImage:
    """One panel: rows of ``rows`` are probe views, its columns gallery views; drawn transposed
    (y: gallery view, x: probe view), n/a grey."""
    import numpy as np

    nv = len(views)
    data = np.array([[np.nan if rows[v][u] is None else rows[v][u] for v in range(nv)] for u in range(nv)])
    image = ax.imshow(
        np.ma.masked_invalid(data), vmin=0, vmax=100, cmap=_cmap(), origin="upper", aspect="equal"
    )
    ax.set_xticks(range(nv), views, rotation=90 if nv > 8 else 0, fontsize=8)
    ax.set_yticks(range(nv), views, fontsize=8)
    ax.set_xlabel("probe view")
    ax.set_ylabel("gallery view")
    ax.set_title(title, fontsize=9)
    if nv <= 16:
        for u in range(nv):
            for v in range(nv):
                value = data[u, v]
                text = "n/a" if np.isnan(value) else f"{value:.0f}" if nv > 8 else f"{value:.1f}"
                colour = "black" if np.isnan(value) or value > 60 else "white"
                ax.text(v, u, text, ha="center", va="center", fontsize=6 if nv > 8 else 8, color=colour)
    return image


def _cmap() -> Colormap:
    from matplotlib import colormaps

    return colormaps["viridis"].with_extremes(bad="#d0d0d0")
