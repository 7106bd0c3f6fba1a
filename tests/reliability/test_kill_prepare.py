"""SIGKILL of a multi-worker `gait prepare` (the parent and its workers): the re-run completes,
every pkl loads, and the result equals an uninterrupted run. (tests/test_prepare.py covers the
single-worker case with exact pixel checks.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np

from gaitcli.data.pickle_io import load_array
from gaitcli.data.prepare import prepare_dataset


def make_raw(root, sequences=40, frames=40):
    shapes = []
    for k in range(5):
        img = np.zeros((240, 320), np.uint8)
        cv2.ellipse(img, (80 + 35 * k, 140), (20 + k, 80), 0, 0, 360, 255, -1)
        cv2.circle(img, (80 + 35 * k, 48), 15, 255, -1)
        shapes.append(cv2.imencode(".png", img)[1].tobytes())
    for i in range(sequences):
        folder = root / f"{i // 4 + 1:03d}" / f"nm-0{i % 4 + 1}" / "090"
        folder.mkdir(parents=True)
        for f in range(frames):
            (folder / f"{f:03d}.png").write_bytes(shapes[(i + f) % 5])


def test_sigkill_multiworker_prepare_then_rerun(tmp_path):
    raw, out, clean = tmp_path / "raw", tmp_path / "out", tmp_path / "clean"
    make_raw(raw)
    command = [sys.executable, "-m", "gaitcli", "prepare", str(raw), str(out), "--workers", "2"]
    proc = subprocess.Popen(command,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None and len(list(out.rglob("*.pkl"))) < 2:
            time.sleep(0.005)
        killed_midway = proc.poll() is None
        os.killpg(proc.pid, signal.SIGKILL)  # the parent and every worker at once
    finally:
        proc.wait(timeout=30)
    written = list(out.rglob("*.pkl"))
    for pkl in written:
        assert load_array(pkl).shape[1:] == (64, 64)  # complete, loadable
    summary = prepare_dataset(raw, out, workers=2)
    assert summary.skipped_existing + summary.sequences_written == 40
    if killed_midway:
        assert summary.skipped_existing == len(written) < 40
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    prepare_dataset(raw, clean, workers=1)
    for pkl in clean.rglob("*.pkl"):
        np.testing.assert_array_equal(load_array(out / pkl.relative_to(clean)), load_array(pkl))
