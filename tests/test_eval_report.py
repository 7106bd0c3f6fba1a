"""Tables, JSON, CSV and heatmap of evaluation results."""

from __future__ import annotations

import csv
import io
import json

from rich.console import Console
from test_protocols import known_set  # the hand-built set with a known answer

from gaitcli.evaluation.matching import run_protocol
from gaitcli.evaluation.protocols import CASIA_B, CROSS_VIEW
from gaitcli.evaluation.report import json_payload, render_results, results_csv, save_heatmap
from gaitcli.evaluation.results import EvalResult, Seconds


def results(want_map=True):
    r = run_protocol(*known_set(), CASIA_B, "euc", want_map=want_map)
    return EvalResult(
        r, Seconds(protocol=0.1, extract=1.0, total=1.1), checkpoint="run.safetensors", iteration=1000
    )


def test_json_schema():
    payload = json.loads(json.dumps(json_payload(results())))
    assert list(payload)[:11] == [
        "protocol",
        "metric",
        "checkpoint",
        "iteration",
        "num_probes",
        "num_gallery",
        "rank1_exclude",
        "rank1_include",
        "rank5_exclude",
        "map",
        "seconds",
    ]
    assert payload["rank1_exclude"]["NM"] == {
        "views": {"000": 100.0, "090": 83.33, "180": 100.0},
        "mean": payload["rank1_exclude"]["NM"]["mean"],
    }
    assert payload["rank1_exclude"]["CL"]["views"]["000"] is None  # n/a is null, never -1
    assert payload["matrix"]["rank1"]["NM"][1] == [83.33, 83.33, None]
    assert payload["map"]["NM"]["views"]["090"] == 89.42
    no_map = json_payload(results(want_map=False))
    assert no_map["map"] is None


def test_csv_has_summary_and_matrix_rows():
    rows = list(csv.reader(io.StringIO(results_csv(results()))))
    assert rows[0] == ["table", "probe_set", "gallery_view", "000", "090", "180", "mean"]
    by_key = {(r[0], r[1], r[2]): r[3:] for r in rows[1:]}
    assert by_key[("rank1_exclude", "NM", "")][:3] == ["100.0", "83.33", "100.0"]
    assert by_key[("rank1_exclude", "BG", "")] == ["83.33", "", "", "83.33"]  # n/a: empty cells
    # matrix rows: one gallery view each, cells per probe view
    assert by_key[("rank1_matrix", "NM", "000")][:3] == ["100.0", "83.33", "100.0"]
    assert by_key[("rank1_matrix", "NM", "180")][:3] == ["", "", ""]
    assert ("map", "NM", "") in by_key


def test_tables_read_like_a_paper():
    console = Console(record=True, width=120)
    render_results(results(), console, rank5=True, show_map=True)
    text = console.export_text()
    order = [
        text.index(t) for t in ("excluding identical views", "including identical views", "Rank-5", "mAP")
    ]
    assert order == sorted(order)
    assert "n/a" in text and "94.44" in text and "83.33" in text and "iteration 1000" in text
    header = next(line for line in text.splitlines() if "Probe" in line)
    assert header.index("000") < header.index("090") < header.index("180") < header.index("Mean")


def test_cross_view_tables_show_map():
    r = run_protocol(*known_set(), CROSS_VIEW["casia-b"], "euc")
    console = Console(record=True, width=120)
    render_results(r, console)
    assert "mAP (%)" in console.export_text()


def test_heatmap_png_and_svg(tmp_path):
    r = results()
    png = save_heatmap(r, tmp_path / "h.png")
    assert png.stat().st_size > 5000 and png.read_bytes()[:4] == b"\x89PNG"
    svg = save_heatmap(r, tmp_path / "h.svg")
    assert "<svg" in svg.read_text()


def test_images_are_written_atomically_by_the_one_imaging_module(tmp_path, monkeypatch):
    import pytest

    from gaitcli import imaging
    from gaitcli.errors import GaitError
    from gaitcli.training.lr_plot import save_lr_image, schedule_from_options

    written = []
    real = imaging.atomic_write_bytes
    def recording(path, data):
        written.append(path)
        real(path, data)

    monkeypatch.setattr(imaging, "atomic_write_bytes", recording)
    save_heatmap(results(), tmp_path / "h.png")
    save_lr_image(schedule_from_options(total_iters=10, warmup_iters=2, milestones=[5]), tmp_path / "lr.svg")
    assert [p.name for p in written] == ["h.png", "lr.svg"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.png", "lr.svg"]  # no temp file left
    for draw in (lambda p: save_heatmap(results(), p), lambda p: save_lr_image(schedule_from_options(), p)):
        with pytest.raises(GaitError, match="is a folder"):
            draw(tmp_path)
        with pytest.raises(GaitError, match="unknown image type"):
            draw(tmp_path / "x.docx")
