"""``gait compare``: two evaluations of the same probes, the difference in rank-1 per probe set,
probe view and cell with its paired subject-bootstrap interval and McNemar's exact p-value
(docs/compare.md). Parsing and printing only; the statistics are :mod:`gaitcli.compare`.

``cli.py`` registers :func:`compare` (wrapped in :func:`gaitcli.cli_common.handle_errors`); the
consoles and JSON output are :mod:`gaitcli.cli_common`'s: tables on stdout, or on stderr when the
JSON goes to stdout."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from gaitcli.cli_common import console, out_console, write_json

if TYPE_CHECKING:
    from rich.console import Console

    from gaitcli.compare import Comparison, Estimate, RunSummary


def compare(
    files: Annotated[list[Path] | None, typer.Argument(
        metavar="[A.json B.json]",
        help="Two hits files (gait eval --save-hits): A, then B. Or give each side with --a / --b.")] = None,
    a: Annotated[list[Path] | None, typer.Option(
        "--a", metavar="HITS.json",
        help="A run of side A (repeatable: one per training seed).")] = None,
    b: Annotated[list[Path] | None, typer.Option(
        "--b", metavar="HITS.json",
        help="A run of side B (repeatable: one per training seed).")] = None,
    resamples: Annotated[int, typer.Option(
        min=1, help="Bootstrap draws of the subjects.")] = 10_000,
    bootstrap_seed: Annotated[int, typer.Option(
        min=0, help="Seed of the bootstrap draws (the same seed gives the same intervals).")] = 0,
    cells: Annotated[bool, typer.Option(
        "--cells", help="Also print every cell (probe view x gallery view) of each probe set.")] = False,
    json_out: Annotated[str | None, typer.Option(
        "--json", metavar="FILE", help="Write the comparison as JSON ('-' = stdout).")] = None,
) -> None:
    """Is A better than B? Rank-1 difference per probe set, view and cell: paired bootstrap
    interval over subjects and McNemar's exact test."""
    from gaitcli.compare import compare_hits
    from gaitcli.errors import GaitError, option
    from gaitcli.evaluation.hits import load_hits

    if files and (a or b):
        raise GaitError(f"give two hits files (A B), or each side with {option('a')} / {option('b')}, "
                        "not both")
    if files:
        if len(files) != 2:
            raise GaitError(
                f"gait compare takes two hits files (A then B), got {len(files)}; for several runs per side "
                f"use {option('a', 'A1.json')} {option('a', 'A2.json')} {option('b', 'B1.json')} ..."
            )
        side_a, side_b = [files[0]], [files[1]]
    else:
        if not a or not b:
            raise GaitError(
                f"give two hits files (gait compare A.json B.json), or at least one {option('a')} and one "
                f"{option('b')}; make them with gait eval CKPT {option('save_hits', 'FILE.json')}"
            )
        side_a, side_b = list(a), list(b)
    if json_out and json_out != "-":
        from gaitcli.fileio import check_writable

        check_writable(json_out, option("json_out"))  # one line now, not after the bootstrap
    result = compare_hits([load_hits(p) for p in side_a], [load_hits(p) for p in side_b],
                          resamples=resamples, seed=bootstrap_seed)
    # stdout stays pure JSON when the JSON goes there
    render_comparison(result, console if json_out == "-" else out_console, cells=cells)
    if json_out:
        write_json(json_out, result.to_json())


# ---------------------------------------------------------------------------------------------- printing


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _diff(e: Estimate) -> str:
    return "n/a" if e.diff is None else f"{e.diff:+.2f}"


def _interval(e: Estimate) -> str:
    if e.low is None or e.high is None:
        return "n/a"
    return f"[{e.low:+.2f}, {e.high:+.2f}]"


def _p(e: Estimate) -> str:
    if e.p_value is None:
        return "–"
    return f"{e.p_value:.3g}" if e.p_value >= 1e-4 else f"{e.p_value:.1e}"


def _side(runs: list[RunSummary]) -> str:
    names = "; ".join(f"{Path(r.source).name} ({r.identity.short()}, {r.identity.metric})" for r in runs[:4])
    names += "; ..." if len(runs) > 4 else ""
    return f"{len(runs)} run{'s' if len(runs) > 1 else ''}: {names}"


def _spread(runs: list[RunSummary], name: str) -> str:
    values = [r.rank1.get(name) for r in runs]
    known = [v for v in values if v is not None]
    if len(known) < 2:
        return ""
    import statistics

    return f" ± {statistics.stdev(known):.2f}"


def _estimate_columns(table: object) -> None:
    from rich.table import Table

    assert isinstance(table, Table)
    for name in ("A", "B", "A − B", "interval", "McNemar p", "A/B only"):
        table.add_column(name, justify="right", no_wrap=True)


def _cells(e: Estimate) -> list[str]:
    return [_pct(e.a), _pct(e.b), _diff(e), _interval(e), _p(e), f"{e.a_only}/{e.b_only}"]


def render_comparison(cmp: Comparison, console: Console, *, cells: bool = False) -> None:
    """The comparison as rich tables: per probe set, per probe view, and (``cells``) per cell."""
    from rich.table import Table

    level = f"{cmp.confidence * 100:g} %"
    console.print(
        f"{cmp.protocol} protocol · {cmp.probes} probes of {cmp.subjects} subjects · "
        f"{cmp.resamples} bootstrap draws of the subjects (seed {cmp.seed})",
        highlight=False, soft_wrap=True,
    )
    console.print(f"A: {_side(cmp.runs_a)}", highlight=False, soft_wrap=True, markup=False)
    console.print(f"B: {_side(cmp.runs_b)}", highlight=False, soft_wrap=True, markup=False)
    sets = Table(title=f"Rank-1 (%) per probe set: A − B, {level} paired-bootstrap interval",
                 title_justify="left")
    sets.add_column("Set", no_wrap=True)
    _estimate_columns(sets)
    for s in cmp.sets:
        row = _cells(s.overall)
        row[0] += _spread(cmp.runs_a, s.name)
        row[1] += _spread(cmp.runs_b, s.name)
        sets.add_row(s.name + (" (incl. identical)" if s.identical_views else ""), *row)
    console.print(sets)
    views = Table(title="Per probe view (mean over the gallery columns, identical view left out)"
                  if cmp.kind == "single-view" else "Per probe view", title_justify="left")
    views.add_column("Set, view", no_wrap=True)
    _estimate_columns(views)
    for s in cmp.sets:
        for v, e in s.views.items():
            views.add_row(f"{s.name} {v}", *_cells(e))
    console.print(views)
    if cells and cmp.kind == "single-view":
        table = Table(title="Per cell (set, probe view→gallery view)", title_justify="left")
        table.add_column("Cell", no_wrap=True)
        _estimate_columns(table)
        for s in cmp.sets:
            for v, by_column in s.cells.items():
                for c, e in by_column.items():
                    table.add_row(f"{s.name} {v}→{c}", *_cells(e))
        console.print(table)
    if len(cmp.pairs) > 1:
        pairs = Table(title=f"Per pair of runs ({cmp.pairing})", title_justify="left")
        pairs.add_column("Seed" if cmp.pairing == "seed" else "Pair")
        for s in cmp.sets:
            pairs.add_column(f"{s.name} A − B (p)", justify="right")
        for pair in cmp.pairs:
            label = str(pair.seed) if pair.seed is not None else f"A{pair.a + 1} vs B{pair.b + 1}"
            pairs.add_row(label, *(f"{_diff(pair.sets[s.name])} ({_p(pair.sets[s.name])})" for s in cmp.sets))
        console.print(pairs)
    for note in cmp.notes:
        console.print(f"note: {note}", highlight=False, soft_wrap=True, markup=False)
    console.print(
        f"interval: {cmp.resamples} draws of the subjects with replacement, both sides on each draw, gallery "
        "fixed; McNemar: exact binomial test on the discordant outcomes of the paired runs",
        highlight=False, soft_wrap=True,
    )
