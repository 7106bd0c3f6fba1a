"""The one worker pool of gaitcli (used by ``gait prepare`` and ``gait synth``).

:func:`run_pool` runs a picklable function over a list of tasks in fresh worker processes and
hands each result to a callback in the parent, as it arrives. Hardened for long data jobs:

* workers start from a clean process (``forkserver``, else ``spawn``; never a bare ``fork``
  that could inherit a lock held by rich's refresh thread or an OpenCV pool);
* workers ignore Ctrl-C: the parent decides. On Ctrl-C (or any error) no new task starts, the
  tasks already running finish and their results still reach the callback, so a report
  matches what is on disk;
* a worker whose parent is SIGKILLed leaves with it instead of waiting for work forever;
* a worker that dies (SIGKILL, out of memory) ends the run with one line
  (:class:`WorkerDied`, exit 1) instead of a ``BrokenProcessPool`` traceback; the results of
  the tasks that finished before have been delivered.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from typing import TypeVar

from gaitcli.errors import GaitError

__all__ = ["WorkerDied", "run_pool", "pool_context"]

T = TypeVar("T")
R = TypeVar("R")


class WorkerDied(GaitError):
    """A worker process ended abnormally (killed, out of memory)."""

    exit_code = 1


def pool_context(preload: Sequence[str] = ()) -> BaseContext:
    """A start method that gives clean workers; ``preload``: modules the forkserver imports once."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        if preload:
            ctx.set_forkserver_preload(list(preload))
        return ctx
    return multiprocessing.get_context("spawn")


def _exit_with_parent(parent: BaseProcess) -> None:
    parent.join()
    os._exit(1)


def _worker_init(user_init: Callable[[], None] | None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    if user_init is not None:
        user_init()


def _drain(futures: Sequence[Future[R]], delivered: set[Future[R]], on_result: Callable[[R], None]) -> None:
    """Deliver the results of tasks that completed but were not delivered yet."""
    for fut in futures:
        if fut in delivered or not fut.done() or fut.cancelled() or fut.exception() is not None:
            continue
        delivered.add(fut)
        on_result(fut.result())


def run_pool(
    func: Callable[[T], R],
    tasks: Sequence[T],
    *,
    workers: int,
    on_result: Callable[[R], None],
    initializer: Callable[[], None] | None = None,
    preload: Sequence[str] = (),
    what: str = "worker",
) -> None:
    """Run ``func(task)`` for every task on ``workers`` processes; ``on_result`` gets each result.

    Results arrive in completion order. The first exception raised by ``func`` (or a Ctrl-C in
    the parent) stops the pool after the running tasks finish and is re-raised; a dead worker
    raises :class:`WorkerDied` naming ``what``.
    """
    executor = ProcessPoolExecutor(
        max_workers=workers, mp_context=pool_context(preload), initializer=_worker_init,
        initargs=(initializer,),
    )
    futures: list[Future[R]] = []
    delivered: set[Future[R]] = set()
    try:
        futures = [executor.submit(func, task) for task in tasks]
        pending: set[Future[R]] = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                delivered.add(fut)
                on_result(fut.result())
    except BrokenProcessPool:
        executor.shutdown(wait=True, cancel_futures=True)
        _drain(futures, delivered, on_result)
        raise WorkerDied(
            f"a {what} process died (killed or out of memory); what finished is on disk: "
            "run the same command again to do the rest"
        ) from None
    except BaseException:
        executor.shutdown(wait=True, cancel_futures=True)
        _drain(futures, delivered, on_result)
        raise
    executor.shutdown(wait=True)
