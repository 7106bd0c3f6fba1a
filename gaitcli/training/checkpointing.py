"""Checkpoints of a run: what a save writes, what a resume restores (docs/train.md, "Resuming").

A save writes the training state first, then the weights (a weights file is only "complete"
once its state exists beside it), atomically, and prunes by this run's save order. The state
holds every rank's RNG and the process count, so a resumed multi-process run continues exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from gaitcli.config import stored_config
from gaitcli.config_types import GaitConfig
from gaitcli.errors import GaitError, option
from gaitcli.fileio import WriteError
from gaitcli.runtime.distributed import DistInfo, barrier, gather_objects
from gaitcli.training.builders import Optimisation, TrainNetwork
from gaitcli.training.metrics_log import Window
from gaitcli.training.run_folder import Pruner, RunFolder, check_world_size, checkpoint_name
from gaitcli.training.state import entry, load_state, rng_state, save_state, set_rng_state, state_path
from gaitcli.training.time_budget import BudgetSetting, DerivedSchedule


class TrainingStopped(GaitError):
    """The run stopped early (interrupt, non-finite loss, a failed save) after saving what it could."""


class CheckpointWriteError(TrainingStopped):
    """A checkpoint could not be written (full disk, permissions); the previous one is intact."""

    exit_code = 1


@dataclass
class Progress:
    """Where the loop stands: what a checkpoint records besides the weights."""

    iteration: int
    """Completed iterations."""
    next_batch: int
    """The sampler's next batch number."""
    window: Window
    """The partly filled logging window."""
    schedule: DerivedSchedule | None = None
    """The schedule a time budget derived, or None: a resumed run follows it exactly."""
    budget: BudgetSetting | None = None
    """The run's time budget, or None: a resumed run keeps it."""


def stored_budget(state: Mapping[str, object]) -> BudgetSetting | None:
    """The time budget a training state stores (None when the run had none)."""
    if state.get("time_budget") is None:
        return None
    return BudgetSetting.from_json(entry(state, "time_budget", dict))


def read_training_state(path: Path) -> dict[str, object]:
    """The training state beside the weights checkpoint ``path`` (one line when it is missing)."""
    spath = state_path(path)
    if not spath.exists():
        raise GaitError(
            f"{path}: its training state {spath.name} is missing; it can be evaluated but not resumed"
        )
    return load_state(spath)


class CheckpointConnector:
    """Saving and restoring one run's checkpoints."""

    def __init__(
        self, folder: RunFolder, cfg: GaitConfig, info: DistInfo, labels: list[str], frame_size: str
    ) -> None:
        self.folder, self.cfg, self.info = folder, cfg, info
        self.labels, self.frame_size = labels, frame_size
        self.pruner: Pruner | None = None
        self.last_saved: Path | None = None

    def start(self, resumed_at: int | None) -> None:
        self.pruner = Pruner(self.folder.checkpoints, self.cfg.trainer.keep_last, resumed_at)

    def save(self, progress: Progress, network: TrainNetwork, opt: Optimisation) -> Path:
        """Write weights and state of ``progress.iteration`` (rank 0; every rank must call)."""
        path = self.folder.checkpoints / checkpoint_name(self.cfg, progress.iteration)
        rngs = gather_objects(rng_state())  # a collective: before rank 0 starts writing
        if self.info.is_main:
            state: dict[str, object] = {
                "iteration": progress.iteration,
                "next_batch": progress.next_batch,
                "optimizer": opt.optimizer.state_dict(),
                "scheduler": opt.scheduler.state_dict(),  # LambdaLR stores its functions as None
                "scaler": opt.scaler.state_dict() if opt.scaler.is_enabled() else {},
                "rng": rngs[0],
                "rng_ranks": rngs if len(rngs) > 1 else [],
                "world_size": self.info.world_size,
                "window": progress.window.to_state(),
            }
            if progress.schedule is not None:
                state["derived_schedule"] = progress.schedule.to_json()
            if progress.budget is not None:
                state["time_budget"] = progress.budget.to_json()
            self._write(path, state, network.model, progress.iteration)
        barrier()
        self.last_saved = path
        return path

    def _write(self, path: Path, state: Mapping[str, object], model: torch.nn.Module, iteration: int) -> None:
        from gaitcli.models import save_checkpoint

        self.folder.checkpoints.mkdir(parents=True, exist_ok=True)
        try:
            save_state(state_path(path), state)
            save_checkpoint(
                path, model, stored_config(self.cfg), iteration=iteration, labels=self.labels,
                frame_size=self.frame_size, seed=self.cfg.trainer.seed,
            )
        except (OSError, WriteError) as exc:
            state_path(path).unlink(missing_ok=True)  # never leave a state without its weights
            reason = exc.strerror if isinstance(exc, OSError) else str(exc)
            raise CheckpointWriteError(
                f"could not write the checkpoint of iteration {iteration} to {self.folder.checkpoints} "
                f"({reason or exc}); the last good checkpoint {self.last_saved or '(none yet)'} is intact; "
                f"free disk space and continue with {option('resume', 'latest')}"
            ) from None
        if self.pruner is not None:
            self.pruner.saved(path)

    def restore(
        self, path: Path, state: Mapping[str, object], network: TrainNetwork, opt: Optimisation
    ) -> Progress:
        """Load weights, optimiser, scheduler, scaler and this rank's RNG from ``path`` and its
        training ``state`` (:func:`read_training_state`)."""
        from gaitcli.models import load_state_dict_checked, read_checkpoint

        tcfg = self.cfg.trainer
        stored_world = entry(state, "world_size", int) if state.get("world_size") is not None else None
        check_world_size(stored_world, self.info.world_size, path)
        weights, _meta = read_checkpoint(path)
        if tcfg.restore_ckpt_strict:
            load_state_dict_checked(network.model, weights, source=str(path))
        else:
            network.model.load_state_dict(weights, strict=False)
        if not tcfg.optimizer_reset:
            opt.optimizer.load_state_dict(entry(state, "optimizer", dict))
        if not tcfg.scheduler_reset:
            opt.scheduler.load_state_dict(entry(state, "scheduler", dict))
        if state.get("scaler"):
            opt.scaler.load_state_dict(entry(state, "scaler", dict))
        ranks = state.get("rng_ranks") or []
        if not isinstance(ranks, list):
            ranks = []
        set_rng_state(ranks[self.info.rank] if len(ranks) == self.info.world_size else state.get("rng"))
        self.last_saved = path
        derived = state.get("derived_schedule")
        return Progress(
            entry(state, "iteration", int), entry(state, "next_batch", int),
            Window.from_state(entry(state, "window", dict)),
            None if derived is None else DerivedSchedule.from_json(entry(state, "derived_schedule", dict)),
            stored_budget(state),
        )
