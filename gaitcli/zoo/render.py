"""Terminal output of ``gait zoo list`` / ``get`` / ``verify``."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .catalogue import Catalogue
from .get import GetResult
from .verify import VerifyResult

_SOURCE = {"docs": "linked", "release": "release", "derived": "derived?", "local": "local"}


def _num(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def render_list(catalogue: Catalogue, console: Console) -> None:
    """One row per entry: name, model, data set, the published rank-1, hash, address source."""
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("name", no_wrap=True)
    table.add_column("model", overflow="fold")
    for column in ("data", "rank-1", "sha256", "address"):
        table.add_column(column, no_wrap=True)
    for e in catalogue.entries:
        sha = e.sha256[:12] if e.sha256 else "[yellow]unknown[/]"
        table.add_row(escape(e.name), escape(e.title), escape(e.dataset), e.headline or "-", sha,
                      _SOURCE.get(e.url_source, e.url_source))
    console.print(table)
    console.print(
        f"{len(catalogue.entries)} entries from {escape(str(catalogue.path))}; rank-1 as OpenGait "
        "publishes it. sha256 unknown: get downloads the file, prints its hash and converts only once you "
        "pin one you checked. address derived?: not published by OpenGait, a guess from its output layout.",
        highlight=False,
    )


def render_get(result: GetResult, console: Console) -> None:
    e = result.entry
    if result.reused:
        console.print(f"{escape(e.name)}: already converted at {escape(str(result.checkpoint))} "
                      "(nothing downloaded)", highlight=False, soft_wrap=True)
        return
    d, s = result.download, result.summary
    assert d is not None and s is not None
    how = "reused" if d.reused else (f"resumed at {d.resumed_from} bytes" if d.resumed_from else "downloaded")
    console.print(f"{escape(e.name)}: {how} {escape(str(d.path))} ({d.size} bytes), SHA-256 {d.sha256} "
                  f"matches the {result.sha256_source} pin", highlight=False, soft_wrap=True)
    if result.member:
        console.print(f"  member {escape(result.member)}", highlight=False, soft_wrap=True)
    console.print(
        f"wrote {escape(str(result.checkpoint))}: {escape(s.model)}, {s.class_num} classes, {s.parts} parts, "
        f"{s.parameters / 1e6:.2f} M parameters, iteration {s.iteration} (config {escape(result.config)})",
        highlight=False, soft_wrap=True,
    )


def render_verify(result: VerifyResult, console: Console) -> None:
    e = result.entry
    table = Table(title=f"{escape(e.name)} on {escape(str(result.data))}", box=None, pad_edge=False,
                  header_style="bold", title_justify="left")
    for column in ("metric", "protocol", "published", "paper", "gaitcli", "difference"):
        table.add_column(column, justify="left" if column in ("metric", "protocol") else "right")
    for row in result.rows:
        p = row.published
        table.add_row(escape(p.label()), escape(row.protocol), _num(p.value), _num(p.paper),
                      _num(row.measured), _num(row.difference, signed=True))
    console.print(table)
    console.print(f"published: {escape(e.published_source)}", highlight=False, soft_wrap=True)
    if any(r.measured is None for r in result.rows):
        console.print("n/a: the evaluation gave no such number (a probe set missing from the data?)",
                      highlight=False)
