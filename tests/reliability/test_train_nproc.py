"""`gait train --nproc 2` through the real CLI, as a subprocess, with and without a terminal.

Before: the rich console travelled in the spawned processes' arguments and the command ended in
`TypeError: cannot pickle '_thread.RLock' object`. Now each rank builds its own console, a
rank's one-line error reaches the user once with its exit code, Ctrl-C on the terminal stops
every rank after the step they are in (exit 130) and a resume continues exactly."""

from __future__ import annotations

import os
import pty
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from conftest import tiny_config
from train_helpers import (
    ENV,
    assert_same_tensors,
    gait_train,
    metric_lines,
    metrics_at,
    run_cli,
    wait_for,
    write_config,
)

from gaitcli.training.run_folder import list_checkpoints
from gaitcli.training.state import state_path


class PtyRun:
    """A command on a pseudo-terminal: what a user at a terminal sees, and Ctrl-C as they send it."""

    def __init__(self, cmd: list[str]) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: a session whose controlling terminal is the pty
            # as at a user's terminal: a test run started in the background (nohup, `&` in a
            # script) ignores SIGINT, and an ignored signal would be inherited across exec
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.execvpe(cmd[0], cmd, ENV)
        self.chunks: list[bytes] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.fd, 4096)
            except OSError:
                return
            if not data:
                return
            self.chunks.append(data)

    def ctrl_c(self) -> None:
        os.write(self.fd, b"\x03")  # the terminal turns it into SIGINT for the foreground group

    def wait(self, timeout: float = 120) -> int:
        deadline = time.time() + timeout
        while time.time() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.reader.join(5)
                return os.waitstatus_to_exitcode(status)
            time.sleep(0.05)
        os.kill(self.pid, signal.SIGKILL)
        raise AssertionError("the run did not stop after Ctrl-C:\n" + self.output[-3000:])

    @property
    def output(self) -> str:
        return b"".join(self.chunks).decode(errors="replace")


@pytest.mark.slow
def test_nproc2_on_a_terminal_ctrl_c_then_resume_equals_uninterrupted(tiny_data, tmp_path):
    cfg = write_config(
        tmp_path / "cfg.yaml", tiny_config(*tiny_data, total_iter=400, save_iter=1000, log_iter=1)
    )
    out = tmp_path / "split"
    term = PtyRun(gait_train(cfg, out, "--nproc", "2"))
    assert wait_for(lambda: metrics_at(out) >= 4), "no training progress:\n" + term.output[-3000:]
    term.ctrl_c()
    assert term.wait() == 130, term.output[-3000:]
    text = term.output
    assert "Traceback" not in text and "cannot pickle" not in text
    assert text.count("interrupted at iteration") == 1, text[-3000:]
    assert "train" in text and "loss_num" in text  # rank 0 drew its bar on the terminal
    ((stopped, _),) = list_checkpoints(out / "checkpoints")
    assert f"interrupted at iteration {stopped}; saved" in text.replace("\r\n", " ").replace("\n", " ")
    assert (out / ".train.lock").read_text() == ""  # released: no owner recorded

    other = run_cli(gait_train(cfg, out, "--resume", "latest", "--iters", str(stopped + 2)))
    assert other.returncode == 2 and "trained with 2 process(es)" in other.stderr  # one process: refused

    end = str(stopped + 2)
    resumed = run_cli(gait_train(cfg, out, "--nproc", "2", "--resume", "latest", "--iters", end))
    assert resumed.returncode == 0, resumed.stderr
    assert f"trained to iteration {end}; checkpoint" in resumed.stdout
    full = run_cli(gait_train(cfg, tmp_path / "full", "--nproc", "2", "--iters", end))
    assert full.returncode == 0, full.stderr
    name = f"tiny-{int(end):05d}.safetensors"
    a, b = out / "checkpoints" / name, tmp_path / "full" / "checkpoints" / name
    assert_same_tensors(a, b)
    assert_same_tensors(state_path(a), state_path(b))
    assert metric_lines(out) == metric_lines(tmp_path / "full")


@pytest.mark.slow
def test_nproc2_without_terminal_trains_and_a_rank_error_is_one_line(tiny_data, tmp_path):
    cfg = write_config(tmp_path / "cfg.yaml", tiny_config(*tiny_data, total_iter=2, save_iter=2, log_iter=1))
    done = run_cli(gait_train(cfg, tmp_path / "run", "--nproc", "2"))
    assert done.returncode == 0, done.stderr
    checkpoint = done.stdout.strip().rsplit(" ", 1)[-1]
    assert checkpoint.endswith("tiny-00002.safetensors") and Path(checkpoint).exists()

    bad = tiny_config(*tiny_data, total_iter=2)
    bad["data_cfg"]["dataset_root"] = str(tmp_path / "missing")
    failed = run_cli(gait_train(write_config(tmp_path / "bad.yaml", bad), tmp_path / "bad", "--nproc", "2"))
    assert failed.returncode == 2, failed.stderr
    assert failed.stderr.count("error:") == 1 and "data folder not found" in failed.stderr
    assert "Traceback" not in failed.stderr


def rank_pids(parent: int) -> list[int]:
    """The spawned ranks among the launcher's children (not multiprocessing's resource tracker)."""
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    ranks = []
    for pid in map(int, children):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        if b"spawn_main" in cmdline:
            ranks.append(pid)
    return ranks


@pytest.mark.slow
@pytest.mark.skipif(
    not Path("/proc/self/task").exists(),
    reason="finds the rank processes to kill through /proc, which only Linux has; CI runs Linux",
)
def test_a_dead_rank_stops_every_rank_promptly(tiny_data, tmp_path):
    cfg = write_config(
        tmp_path / "cfg.yaml", tiny_config(*tiny_data, total_iter=4000, save_iter=1000, log_iter=1)
    )
    out = tmp_path / "run"
    proc = subprocess.Popen(
        gait_train(cfg, out, "--nproc", "2"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        assert wait_for(lambda: metrics_at(out) >= 2), "no training progress"
        ranks = rank_pids(proc.pid)
        assert len(ranks) == 2
        os.kill(ranks[1], signal.SIGKILL)  # a rank dies (say, the OOM killer): rank 0 waits in a collective
        started = time.time()
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1 and time.time() - started < 30
    assert err.count("error:") == 1 and "was killed by SIGKILL" in err and "Traceback" not in err
    assert not any(Path(f"/proc/{pid}").exists() for pid in ranks)
