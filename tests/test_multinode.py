"""Multi-node training proven on one machine: two ``torchrun --nnodes 2`` launchers (one process
each, gloo over loopback) log bit-identical loss fields to a 2-process single-node run."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import tiny_config, write_tiny_tree

TIMING = {"seconds", "sequences_per_s", "data_wait"}
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def environment() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    }
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    env.update(GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS="1", NO_COLOR="1")
    return env


def loss_lines(run: Path) -> list[dict[str, object]]:
    """metrics.jsonl without its timing fields."""
    lines = [json.loads(t) for t in (run / "metrics.jsonl").read_text().splitlines() if t.strip()]
    return [{k: v for k, v in line.items() if k not in TIMING} for line in lines]


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("multinode-data")
    write_tiny_tree(tmp / "pkl")
    partition = tmp / "partition.json"
    partition.write_text(json.dumps({"TRAIN_SET": ["001", "002", "003", "004"], "TEST_SET": ["005", "006"]}))
    path = tmp / "tiny.yaml"
    path.write_text(json.dumps(tiny_config(tmp / "pkl", partition, total_iter=4, save_iter=4, log_iter=2)))
    return path  # JSON is YAML


def train_command(config: Path, output: Path) -> list[str]:
    return ["-m", "gaitcli", "train", "--config", str(config), "--device", "cpu", "--output", str(output)]


@pytest.fixture(scope="module")
def two_nodes(config_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two torchrun launchers, node ranks 0 and 1, one process each, on loopback; their output
    folders ``node0`` / ``node1`` under the returned folder."""
    out, port, env = tmp_path_factory.mktemp("multinode-runs"), free_port(), environment()
    launchers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nnodes",
                "2",
                "--node-rank",
                str(rank),
                "--nproc-per-node",
                "1",
                "--master-addr",
                "127.0.0.1",
                "--master-port",
                str(port),
                *train_command(config_file, out / f"node{rank}"),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in (0, 1)
    ]
    outputs = []
    try:
        for proc in launchers:
            outputs.append(proc.communicate(timeout=240)[0])
    finally:
        for proc in launchers:
            if proc.poll() is None:
                proc.kill()
    assert [p.returncode for p in launchers] == [0, 0], "\n".join(o[-3000:] for o in outputs)
    return out


def test_two_torchrun_nodes_train(two_nodes: Path) -> None:
    nodes = loss_lines(two_nodes / "node0")
    assert [line["iteration"] for line in nodes] == [2, 4]
    assert all(isinstance(line["total_loss"], float) for line in nodes)
    assert not (two_nodes / "node1" / "metrics.jsonl").exists()  # only the global rank 0 logs


def test_two_nodes_log_the_same_losses_as_two_spawned_processes(
    two_nodes: Path, config_file: Path, tmp_path: Path
) -> None:
    """The same single-node run through the Python API (which spawns fine today), in a process
    with the launchers' environment (one OpenMP thread per rank: the same summation order)."""
    script = (
        "import sys; from gaitcli.config import load_config; from gaitcli.training.trainer import train; "
        "train(load_config(sys.argv[1]), output=sys.argv[2], device='cpu', nproc=2, progress=False)"
    )
    command = [sys.executable, "-c", script, str(config_file), str(tmp_path / "single")]
    done = subprocess.run(command, env=environment(), capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert loss_lines(tmp_path / "single") == loss_lines(two_nodes / "node0")  # bit-identical, timing aside


def test_two_nodes_log_the_same_losses_as_gait_train_nproc_2(
    two_nodes: Path, config_file: Path, tmp_path: Path
) -> None:
    command = [sys.executable, *train_command(config_file, tmp_path / "single"), "--nproc", "2"]
    single = subprocess.run(command, env=environment(), capture_output=True, text=True, timeout=240)
    assert single.returncode == 0, single.stdout[-1500:] + single.stderr[-1500:]
    assert loss_lines(tmp_path / "single") == loss_lines(two_nodes / "node0")  # bit-identical, timing aside
