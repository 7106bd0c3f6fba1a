"""Terminal output of ``gait embed`` / ``gait identify`` / ``gait export`` (fits 80 columns)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from gaitcli.errors import option, render

from .embed import EmbedResult
from .export import ExportResult
from .identify import IdentifyResult
from .inputs import Problem


def render_problems(problems: Sequence[Problem], console: Console, limit: int = 10) -> None:
    """List skipped inputs (the first ``limit``), as ``gait prepare`` does."""
    if not problems:
        return
    console.print(f"[yellow]skipped {len(problems)} input(s):[/]")
    for p in problems[:limit]:
        console.print(f"  {escape(p.path)}: {escape(render(p.reason))}", highlight=False, soft_wrap=True)
    if len(problems) > limit:
        console.print(escape(render(f"  ... and {len(problems) - limit} more (see {option('json_out')})")))


def render_embed(result: EmbedResult, console: Console) -> None:
    render_problems(result.skipped, console)
    prov = result.provenance
    what = f"{prov.model}, {prov.metric}, {prov.frame_size}" if prov else ""
    extra = f" ({result.kept} kept, {result.embedded} added)" if result.kept or result.already_present else ""
    if result.already_present:
        extra += f"; {result.already_present} already in the gallery, not re-embedded"
    console.print(
        f"wrote {escape(result.out)}: {result.total} sequences{extra} [{escape(what)}]",
        highlight=False,
        soft_wrap=True,
    )


def render_identify(result: IdentifyResult, console: Console) -> None:
    console.print(
        f"gallery {escape(result.gallery)}: {result.gallery_sequences} sequences, "
        f"{result.gallery_identities} identities, metric {result.metric}"
        + (", same-view sequences excluded" if result.exclude_same_view else ""),
        highlight=False,
    )
    if result.threshold is not None:
        console.print(f"open set: {escape(result.threshold.meaning)}", highlight=False, soft_wrap=True)
    else:
        console.print("closed set: every probe is answered with its nearest identity", highlight=False)
    for note in result.notes:
        console.print(f"[yellow]note:[/] {escape(render(note))}", highlight=False, soft_wrap=True)
    # "known" holds only yes / no, never an identity: an identity named like a marker cannot be
    # mistaken for "no answer"; identities appear only under "nearest" and "next best"
    table = Table(box=None, pad_edge=False)
    for name in ("probe", "known", "nearest", "dist", "next best"):
        table.add_column(name, justify="right" if name == "dist" else "left")
    for a in result.answers:
        if a.track is not None and a.frames is not None:  # a walker of a video
            probe = f"{a.probe} track {a.track} [{a.frames[0]}-{a.frames[1]}]"
        else:
            probe = "/".join(x for x in (a.probe, a.type, a.view) if x)
        best = a.best
        others = ", ".join(f"{m.label} {m.distance:.4g}" for m in a.matches[1:3])
        table.add_row(
            escape(probe),
            "yes" if a.known else "no",
            escape(best.label) if best else "",
            f"{best.distance:.4g}" if best else "",
            escape(others) if best else "(no gallery sequence left after the exclusions)",
        )
    console.print(table)


def render_export(result: ExportResult, console: Console) -> None:
    meta = result.metadata
    shape = meta["input_size"].replace("x", ", ")
    console.print(
        f"wrote {escape(result.out)}: {escape(meta['model'])}, input [1, T, {shape}] "
        f"(frame size {meta['frame_size']}, cut {meta['cut_width']} per side, scale 1/255)",
        highlight=False,
        soft_wrap=True,
    )
    if result.differences:
        diffs = ", ".join(f"T={t}: {d:.2g}" for t, d in result.differences.items())
        console.print(f"onnxruntime vs PyTorch, max |difference|: {diffs} (tolerance 1e-4)", highlight=False)
    else:
        console.print("not checked against PyTorch (the check was turned off)")
