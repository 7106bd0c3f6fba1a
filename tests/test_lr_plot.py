"""``gait lr-plot``: SPEC §8's worked examples, torch's own schedulers stepped t times, the JSON
points, the chart, the image and the errors."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from gaitcli.cli import app
from gaitcli.errors import GaitError
from gaitcli.training.lr_plot import (
    key_points,
    lr_json,
    parse_milestones,
    render_chart,
    sample_iterations,
    save_lr_image,
    schedule_from_options,
)


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def one_error_line(result):
    lines = [line for line in result.output.splitlines() if line.strip()]
    return len(lines) == 1 and lines[0].startswith("error:")


def test_metagait_recipe_matches_the_worked_examples():
    schedule = schedule_from_options()  # no options: the MetaGait recipe
    assert schedule.total_iter == 120_000 and schedule.name == "warmup"
    values = schedule.lr([0, 5_000, 80_000, 100_000])
    np.testing.assert_allclose(values, [3.5e-6, 1.7675e-4, 3.5e-5, 3.5e-6], rtol=1e-12)
    points = dict((name, lr) for name, _, lr in key_points(schedule))
    assert points["start"] == pytest.approx(3.5e-6) and points["warm-up end"] == pytest.approx(3.5e-4)
    assert [it for _, it, _ in key_points(schedule)] == [0, 10_000, 80_000, 100_000, 119_999]


def stepped(scheduler_factory, lr, t_max):
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=lr)
    sched = scheduler_factory(opt)
    out = []
    for _ in range(t_max + 1):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return np.array(out)


def test_warmup_equals_torch_linear_warmup_chained_with_multistep():
    schedule = schedule_from_options(
        lr=0.01, warmup_iters=100, warmup_factor=0.05, milestones=[300, 450], gamma=0.5, total_iters=500
    )
    expected = stepped(
        lambda o: torch.optim.lr_scheduler.ChainedScheduler(
            [
                torch.optim.lr_scheduler.LinearLR(o, start_factor=0.05, end_factor=1.0, total_iters=100),
                torch.optim.lr_scheduler.MultiStepLR(o, milestones=[300, 450], gamma=0.5),
            ]
        ),
        0.01,
        499,
    )
    np.testing.assert_allclose(schedule.lr(range(500)), expected, rtol=1e-6)


def test_constant_warmup():
    schedule = schedule_from_options(
        warmup_method="constant", warmup_iters=10, warmup_factor=0.1, lr=1.0, milestones=[20], total_iters=30
    )
    np.testing.assert_allclose(schedule.lr([0, 9, 10, 19, 20, 29]), [0.1, 0.1, 1.0, 1.0, 0.1, 0.1])


def test_torch_scheduler_by_name_equals_torch_stepped():
    schedule = schedule_from_options("gaitgl", total_iters=900, milestones=[700])
    expected = stepped(
        lambda o: torch.optim.lr_scheduler.MultiStepLR(o, milestones=[700], gamma=0.1), 1e-4, 899
    )
    np.testing.assert_allclose(schedule.lr(range(900)), expected, rtol=1e-12)
    cosine = schedule_from_options(
        scheduler="CosineAnnealingLR", overrides=["scheduler_cfg.T_max=50"], total_iters=50, lr=1.0
    )
    expected = stepped(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=50), 1.0, 49)
    np.testing.assert_allclose(cosine.lr(range(50)), expected, rtol=1e-12)


def test_json_points_are_even_plus_every_boundary():
    payload = lr_json(schedule_from_options())
    assert (
        payload["scheduler"] == "warmup" and payload["base_lr"] == 3.5e-4 and payload["total_iter"] == 120_000
    )
    its = [p[0] for p in payload["points"]]
    assert its == sorted(set(its)) and len(its) <= 1010
    assert {0, 10_000, 79_999, 80_000, 99_999, 100_000, 119_999} <= set(its)
    lookup = dict(map(tuple, payload["points"]))
    assert lookup[79_999] == pytest.approx(3.5e-4) and lookup[80_000] == pytest.approx(3.5e-5)
    short = schedule_from_options(total_iters=50, warmup_iters=5, milestones=[20, 40])
    assert sample_iterations(short) == list(range(50))


def test_terminal_chart_has_axes_marks_and_both_scales():
    schedule = schedule_from_options()
    lines = [t.plain for t in render_chart(schedule, width=60, height=10)]
    text = "\n".join(lines)
    assert "┤" in text and "└" in text and "┬" in text
    assert any(0x2800 < ord(ch) <= 0x28FF for ch in text)  # braille dots
    assert "3.50e-04" in text and "120k" in text
    assert "W = warm-up end 10,000" in text and "M2 = milestone 2 100,000" in text
    log_text = "\n".join(t.plain for t in render_chart(schedule, width=60, height=10, log=True))
    assert "3.50e-06" in log_text and "log scale" in log_text


def test_cli_default_shows_recipe_and_writes_json_and_images(tmp_path):
    result = run("lr-plot", "--json", tmp_path / "lr.json", "--out", tmp_path / "lr.png")
    assert result.exit_code == 0, result.output
    assert (
        "WarmupMultiStepLR" in result.output
        and "3.5000e-06" in result.output
        and "1.7675e-04" not in result.output
    )
    assert "milestone 1" in result.output and "119,999" in result.output
    assert json.loads((tmp_path / "lr.json").read_text())["scheduler"] == "warmup"
    assert (tmp_path / "lr.png").stat().st_size > 5000
    svg = run(
        "lr-plot", "--log", "--out", tmp_path / "lr.svg", "--milestones", "60000,90000", "--gamma", "0.5"
    )
    assert svg.exit_code == 0, svg.output
    assert (tmp_path / "lr.svg").read_text().lstrip().startswith("<?xml")
    stdout = run(
        "lr-plot",
        "--json",
        "-",
        "--lr",
        "1e-05",
        "--total-iters",
        "1000",
        "--warmup-iters",
        "100",
        "--milestones",
        "800",
    )
    assert stdout.exit_code == 0, stdout.output
    payload = json.loads(stdout.stdout)
    assert payload["base_lr"] == 1e-05 and payload["total_iter"] == 1000


@pytest.mark.parametrize(
    "args",
    [
        ["--milestones", "100000,80000"],
        ["--milestones", "8e4,x"],
        ["--lr", "-0.1", "--total-iters", "100", "--milestones", "50,80"],
        ["--lr", "0"],
        ["--gamma", "-1"],
        ["--warmup-factor", "-1"],
        ["--warmup-factor", "nan"],
        ["--scheduler", "StepLR", "--set", "scheduler_cfg.step_size=10", "--total-iters", "100000000"],
        ["--scheduler", "NoSuchLR"],
        ["--scheduler", "MultiStepLR", "--warmup-iters", "5"],
        ["--warmup-method", "cubic"],
        ["--config", "no-such-config.yaml"],
        ["--out", "chart.bmpx"],
    ],
)
def test_bad_combinations_are_one_line_exit_2(args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run("lr-plot", *args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[-1].startswith("error:") and all(line.startswith("warning:") for line in lines[:-1]), (
        result.output
    )


def test_missing_matplotlib_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    monkeypatch.setitem(sys.modules, "matplotlib.backend_bases", None)
    with pytest.raises(GaitError, match="pip install matplotlib"):
        save_lr_image(
            schedule_from_options(total_iters=10, warmup_iters=2, milestones=[5]), tmp_path / "x.png"
        )
    for args in (
        ["lr-plot", "--out", tmp_path / "x.png"],
        ["eval", "--features", tmp_path / "f.npz", "--heatmap", tmp_path / "h.png"],
    ):
        result = run(*args)
        assert (
            result.exit_code == 2 and one_error_line(result) and "pip install matplotlib" in result.output
        ), result.output


def test_parse_milestones():
    assert parse_milestones("80000, 100_000") == [80000, 100000]
    assert parse_milestones("") == [] and parse_milestones(None) is None


def test_warmup_longer_than_the_run_is_a_note_as_in_train():
    notes: list[str] = []
    schedule = schedule_from_options(warmup_iters=500, total_iters=100, milestones=[], warn=notes.append)
    assert schedule.total_iter == 100
    assert any("longer than the run" in n for n in notes), notes


def test_chart_of_a_negative_schedule_is_bounded():
    """The chart once spun forever on a negative lr (a fallback scale of 1e-12): now every line is
    clipped to the canvas, so even a schedule validation would refuse draws at once."""
    from gaitcli.training.lr_plot import Schedule

    bad = Schedule(
        {"solver": "SGD", "lr": -0.1},
        {"scheduler": "warmup", "milestones": [50, 80], "gamma": 0.1, "warmup_iters": 0},
        100,
    )
    lines = render_chart(bad, width=30, height=6)
    assert len(lines) > 6
