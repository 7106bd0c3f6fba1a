"""The one process launcher and its rank-result protocol, used by training and evaluation.

``launch(fn, payload, nproc, device)`` runs ``fn(info, payload)`` once per rank and returns rank
0's return value::

    @dataclass
    class Job:            # plain, picklable values only: each rank builds its own console etc.
        cfg: GaitConfig
        out_dir: str

    def work(info: DistInfo, job: Job) -> Summary:    # a module-level function
        ...

    summary = launch(work, Job(cfg, "out"), nproc=2, device="cpu")

- ``nproc == 1``: ``fn`` runs in this process, without a process group.
- under ``torchrun``: this process is one rank already; the group is initialised from the
  environment and ``fn`` runs here (every rank returns its own value).
- otherwise ``nproc`` processes are spawned on this node (gloo on the CPU, NCCL on CUDA), each in
  its own process group so that only the launcher receives the terminal's Ctrl-C.

The protocol: each rank sends one :class:`RankOutcome` back through a pipe. A
:class:`gaitcli.errors.GaitError` in a rank is re-raised here once, as a ``GaitError`` with
that rank's message and exit code (rank 0's when several ranks fail, else the lowest rank's);
an interrupted rank reports exit code 130; any other exception is a bug and is re-raised as
:class:`RankCrashed` carrying the rank's traceback. The launcher watches its children: when a
rank fails or dies, the others get a short grace to report, then are terminated, so no rank
waits in a collective forever. Ctrl-C in the launcher is forwarded to every rank (once per
press); ranks that handle it (the trainer saves its last completed iteration) report 130.
docs/train.md ("Distributed") describes what a user sees.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Generic, TypeVar

from gaitcli.errors import GaitError
from gaitcli.runtime.distributed import DistInfo, free_port, init_process_group, torchrun_info, under_torchrun

P = TypeVar("P")
R = TypeVar("R")

FAILURE_GRACE_S = 3.0
"""Seconds the other ranks get to report their own error after one rank failed."""
INTERRUPT_GRACE_S = 120.0
"""Seconds the other ranks get after one reported an interrupt (they may be saving)."""
TERMINATE_GRACE_S = 5.0
"""Seconds between SIGTERM and SIGKILL when ranks are stopped."""


class RankCrashed(RuntimeError):
    """A rank raised something other than a GaitError (a bug): its traceback is the message."""


@dataclass(frozen=True)
class RankOutcome(Generic[R]):
    """What one rank reports to the launcher."""

    rank: int
    """The reporting rank."""
    status: str
    """``ok``, ``error`` (a GaitError or an interrupt) or ``crashed`` (any other exception)."""
    value: tuple[R] | None = None
    """``(fn's return value,)`` from rank 0 (None from the other ranks and on failure)."""
    message: str = ""
    """The one-line error message, or the traceback of a crash."""
    exit_code: int = 0
    """The exit code the user should see (2 user mistake, 1 failed, 130 interrupted)."""


def launch(fn: Callable[[DistInfo, P], R], payload: P, nproc: int, device: str) -> R:
    """Run ``fn(info, payload)`` in ``nproc`` ranks on ``device``; return rank 0's value."""
    if under_torchrun():
        info = torchrun_info(device)
        if info.world_size > 1:
            import torch.distributed as dist

            if not dist.is_initialized():
                init_process_group(info)
        return fn(info, payload)
    if nproc <= 1:
        return fn(DistInfo(device=device), payload)
    return _Supervisor(fn, payload, nproc, device).run()


# ---------------------------------------------------------------------------------------- a rank
def _rank_main(
    rank: int,
    nproc: int,
    device: str,
    port: int,
    fn: Callable[[DistInfo, P], R],
    payload: P,
    conn: Connection,
    parent: int,
) -> None:
    """Entry point of one spawned rank: its own process group, a group, ``fn``, one report."""
    if hasattr(os, "setpgrp"):
        os.setpgrp()  # the terminal's Ctrl-C reaches the launcher only; it forwards it once
    _watch_parent(parent)
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(nproc),
        LOCAL_RANK=str(rank),
    )
    info = DistInfo(rank=rank, world_size=nproc, local_rank=rank, device=device)
    outcome = _run_rank(fn, info, payload)
    try:
        conn.send(outcome)
    except (BrokenPipeError, OSError):
        pass
    conn.close()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(0 if outcome.status == "ok" else outcome.exit_code or 1)  # skip torch's atexit hooks


def _run_rank(fn: Callable[[DistInfo, P], R], info: DistInfo, payload: P) -> RankOutcome[R]:
    import torch.distributed as dist

    try:
        init_process_group(info)
        value = fn(info, payload)
        return RankOutcome(info.rank, "ok", (value,) if info.is_main else None)
    except GaitError as exc:
        return RankOutcome(info.rank, "error", message=str(exc), exit_code=exc.exit_code)
    except KeyboardInterrupt:
        return RankOutcome(info.rank, "error", message=f"rank {info.rank} interrupted", exit_code=130)
    except BaseException:  # a bug: keep its traceback for the launcher to show
        return RankOutcome(info.rank, "crashed", message=traceback.format_exc(), exit_code=1)
    finally:
        if dist.is_initialized():
            try:
                dist.destroy_process_group()
            except (RuntimeError, ValueError):  # a peer already gone (c10d errors are RuntimeErrors)
                pass  # or the group never formed: nothing left to tidy


def _watch_parent(parent: int) -> None:
    """Exit when the launcher is gone (SIGKILL of the launcher must not leave ranks behind)."""

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="gaitcli-parent-watch", daemon=True).start()


# ------------------------------------------------------------------------------------ the launcher
class _Supervisor(Generic[P, R]):
    """Spawns the ranks, collects their outcomes, stops them all when one fails or dies."""

    def __init__(self, fn: Callable[[DistInfo, P], R], payload: P, nproc: int, device: str) -> None:
        import multiprocessing as mp

        self.ctx = mp.get_context("spawn")
        self.fn, self.payload, self.nproc, self.device = fn, payload, nproc, device
        self.procs: list[BaseProcess] = []
        self.conns: dict[int, Connection] = {}
        self.outcomes: dict[int, RankOutcome[R]] = {}
        self.failed_at: float | None = None
        self.grace = FAILURE_GRACE_S

    def run(self) -> R:
        self._start()
        try:
            self._watch()
        finally:
            self._stop_all()
        return self._result()

    def _start(self) -> None:
        port = free_port()
        for rank in range(self.nproc):
            receive, send = self.ctx.Pipe(duplex=False)
            proc = self.ctx.Process(
                target=_rank_main,
                name=f"gaitcli-rank{rank}",
                daemon=False,
                args=(rank, self.nproc, self.device, port, self.fn, self.payload, send, os.getpid()),
            )
            proc.start()
            send.close()
            self.procs.append(proc)
            self.conns[rank] = receive

    def _watch(self) -> None:
        while any(p.exitcode is None for p in self.procs):
            try:
                self._poll(0.5)
            except KeyboardInterrupt:
                self._signal_all(signal.SIGINT)
            if self.failed_at is not None and time.monotonic() - self.failed_at > self.grace:
                return
        self._poll(0.0)

    def _poll(self, timeout: float) -> None:
        waitables: list[Connection | int] = [*self.conns.values()] + [
            p.sentinel for p in self.procs if p.exitcode is None
        ]
        wait(waitables, timeout)
        for rank, conn in list(self.conns.items()):
            if conn.poll():
                try:
                    self._record(conn.recv())
                except (EOFError, OSError):
                    pass
                del self.conns[rank]
        for rank, proc in enumerate(self.procs):
            if proc.exitcode is not None and rank not in self.outcomes and rank not in self.conns:
                self._record(RankOutcome(rank, "error", exit_code=1, message=_death(rank, proc.exitcode)))
            elif proc.exitcode is not None and rank in self.conns and not self.conns[rank].poll():
                self.conns.pop(rank).close()  # exited without a report: recorded on the next pass

    def _record(self, outcome: RankOutcome[R]) -> None:
        self.outcomes[outcome.rank] = outcome
        if outcome.status != "ok" and self.failed_at is None:
            self.failed_at = time.monotonic()
            self.grace = INTERRUPT_GRACE_S if outcome.exit_code == 130 else FAILURE_GRACE_S

    def _signal_all(self, signum: int) -> None:
        for proc in self.procs:
            if proc.exitcode is None and proc.pid is not None:
                _signal(proc.pid, signum)

    def _stop_all(self) -> None:
        """Terminate ranks still running (their process groups: DataLoader workers too)."""
        alive = [p for p in self.procs if p.exitcode is None]
        for proc in alive:
            _kill_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + TERMINATE_GRACE_S
        for proc in alive:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.exitcode is None:
                _kill_group(proc, signal.SIGKILL)
                proc.join()
        for conn in self.conns.values():
            conn.close()

    def _result(self) -> R:
        failures = [o for o in sorted(self.outcomes.values(), key=lambda o: o.rank) if o.status != "ok"]
        if failures:
            errors = [o for o in failures if o.status == "error"] or failures
            first = errors[0]
            if first.status == "crashed":
                raise RankCrashed(f"rank {first.rank} of {self.nproc} failed:\n{first.message}")
            raise GaitError(first.message, exit_code=first.exit_code)
        main = self.outcomes.get(0)
        if main is None or main.value is None:
            raise RankCrashed(f"rank 0 of {self.nproc} ended without a result")
        return main.value[0]


def _death(rank: int, exitcode: int) -> str:
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"rank {rank} was killed by {name}; the other ranks were stopped"
    return f"rank {rank} exited with code {exitcode} without a report; the other ranks were stopped"


def _kill_group(proc: BaseProcess, signum: int) -> None:
    if proc.pid is None:
        return
    try:
        os.killpg(proc.pid, signum)  # the rank leads its own group (see _rank_main)
    except (ProcessLookupError, PermissionError, AttributeError):
        _signal(proc.pid, signum)


def _signal(pid: int, signum: int) -> None:
    """Send ``signum`` to ``pid``; a process already gone is no error."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)
