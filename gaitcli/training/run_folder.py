"""The rules of a training run's output folder, in one place (docs/train.md, "The output folder").

Layout (rank 0 writes it)::

    OUT/config.yaml                                      the resolved config of the run
    OUT/checkpoints/{save_name}-{iter:05d}.safetensors        weights + metadata
    OUT/checkpoints/{save_name}-{iter:05d}.state.safetensors  optimiser, scheduler, RNG, sampler
    OUT/metrics.jsonl  OUT/train.log  OUT/tensorboard/

- ``config.yaml`` is only ever written over when gaitcli wrote it: the folder records the
  SHA-256 of every ``config.yaml`` it writes (:data:`RECORD_FILE`), and a fresh run,
  ``--overwrite`` and ``--resume`` refuse a ``config.yaml`` it did not write (:meth:`RunFolder.check_config`).
- ``--overwrite`` removes exactly the previous run's files (:data:`RUN_FILES`, the checkpoint
  files and error files of older versions) before the first new write; nothing else in OUT.
- ``--resume`` finds its checkpoint here, and refuses a config that differs from the stored one
  in anything but the keys of :data:`HARMLESS_KEYS` (those are stated in one line).
- pruning (``keep_last``) goes by the order in which THIS run saved, never by iteration number.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from gaitcli.config_types import GaitConfig
from gaitcli.errors import ConfigError, GaitError, option
from gaitcli.fileio import atomic_write_bytes
from gaitcli.runtime.lock import exclusive_lock
from gaitcli.training.state import state_path

RUN_FILES = ("config.yaml", "metrics.jsonl", "train.log")
RECORD_FILE = ".gaitcli-run.json"
"""What gaitcli wrote into the folder: ``{"config.yaml": [sha256, ...]}`` (the current
config.yaml's digest, and the one before it while a new one is being written)."""
RUN_DIRS = ("checkpoints", "tensorboard")
ERROR_FILE_GLOB = ".train-error-rank*"  # left by gaitcli versions before the runtime launcher
HARMLESS_KEYS = (
    "trainer_cfg.total_iter",
    "trainer_cfg.time_budget",  # a resumed run follows the schedule its state stores
    "trainer_cfg.time_budget_probe",
    "trainer_cfg.restore_hint",
    "trainer_cfg.save_iter",
    "trainer_cfg.keep_last",
    "trainer_cfg.with_test",
    "data_cfg.num_workers",
    "data_cfg.cache",
    "data_cfg.dataset_root",
    "evaluator_cfg",
)
"""Config keys (or whole sections) a resumed run may change: they do not alter what is trained."""


def output_dir_for(cfg: GaitConfig, output: str | os.PathLike[str] | None = None) -> Path:
    """The chosen output folder, or ``output/{dataset_name}/{model}/{save_name}``."""
    if output is not None:
        return Path(output)
    return Path("output", cfg.data.dataset_name, cfg.model.name, cfg.trainer.save_name)


def checkpoint_name(cfg: GaitConfig, iteration: int) -> str:
    return f"{cfg.trainer.save_name}-{iteration:05d}.safetensors"


def list_checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """(iteration, weights path) of every complete checkpoint (weights and state present)."""
    out: list[tuple[int, Path]] = []
    if not folder.is_dir():
        return out
    for path in folder.glob("*.safetensors"):
        if path.name.endswith(".state.safetensors") or path.name.startswith("."):
            continue
        tail = path.name[: -len(".safetensors")].rsplit("-", 1)[-1]
        if tail.isdigit() and state_path(path).exists():
            out.append((int(tail), path))
    return sorted(out)


@dataclass(frozen=True)
class RunFolder:
    """The paths of one run's output folder."""

    root: Path
    """The output folder (``--output``)."""

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def log(self) -> Path:
        return self.root / "train.log"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"

    @property
    def record(self) -> Path:
        return self.root / RECORD_FILE

    def _recorded(self) -> list[str]:
        try:
            data = json.loads(self.record.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []
        digests = data.get("config.yaml") if isinstance(data, dict) else None
        return [d for d in digests if isinstance(d, str)] if isinstance(digests, list) else []

    def _config_digest(self) -> str | None:
        try:
            return hashlib.sha256(self.config.read_bytes()).hexdigest()
        except FileNotFoundError:
            return None

    def config_is_ours(self) -> bool:
        """Whether ``config.yaml`` is absent or exactly what a gaitcli run of this folder wrote.
        A folder of an older gaitcli (no record) counts as ours while it holds that run's
        checkpoints."""
        digest = self._config_digest()
        if digest is None:
            return True
        if self.record.exists():
            return digest in self._recorded()
        return bool(list_checkpoints(self.checkpoints))

    def check_config(self) -> None:
        """Refuse, in one line and before anything is written, a ``config.yaml`` that gaitcli did
        not write (a user's config kept in the output folder, or the run's config edited)."""
        if not self.config_is_ours():
            raise GaitError(
                f"{self.config} was not written by a gaitcli run of this folder (or was edited since), and "
                "gaitcli never replaces or removes such a file: move it out of the folder (it can stay "
                f"your {option('config')} elsewhere) or train into another {option('output')}"
            )

    def write_config(self, text: str) -> None:
        """Write ``config.yaml`` and record its digest (recorded first: a crash in between leaves
        a config.yaml that the record still names)."""
        data = text.encode()
        current = self._config_digest()
        kept = [current] if current is not None and current in self._recorded() else []
        record = {"config.yaml": [*kept, hashlib.sha256(data).hexdigest()]}
        atomic_write_bytes(self.record, (json.dumps(record) + "\n").encode())
        atomic_write_bytes(self.config, data)

    def previous_run(self) -> list[Path]:
        """What ``--overwrite`` removes: the previous run's files, nothing else."""
        found = [self.root / name for name in (*RUN_FILES, *RUN_DIRS) if (self.root / name).exists()]
        return found + sorted(self.root.glob(ERROR_FILE_GLOB))

    def remove_previous_run(self) -> list[Path]:
        """Delete :meth:`previous_run` (before the new run writes anything); returns what went."""
        removed = self.previous_run()
        for path in removed:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        return removed


def find_resume_checkpoint(hint: int | str | None, cfg: GaitConfig, ckpt_dir: Path) -> Path | None:
    """Resolve ``restore_hint`` / ``--resume``: 0 (fresh), an iteration, a path, or 'latest'."""
    if not resume_requested(hint):
        return None
    if isinstance(hint, str) and hint.lower() == "latest":
        found = list_checkpoints(ckpt_dir)
        if not found:
            raise GaitError(f"{option('resume', 'latest')}: no checkpoint in {ckpt_dir}; start without "
                            f"{option('resume')}")
        return found[-1][1]
    if isinstance(hint, int) or (isinstance(hint, str) and hint.isdigit()):
        path = ckpt_dir / checkpoint_name(cfg, int(hint))
        if not path.exists():
            have = ", ".join(str(i) for i, _ in list_checkpoints(ckpt_dir)) or "none"
            raise GaitError(f"no checkpoint for iteration {int(hint)} in {ckpt_dir} (available: {have})")
        return path
    path = Path(str(hint))
    if not path.exists():
        raise GaitError(f"{option('resume', hint)}: no such checkpoint file")
    return path


def resume_requested(hint: int | str | None) -> bool:
    return hint not in (None, 0, "0", "")


# ------------------------------------------------------------------------------ config comparison
@dataclass(frozen=True)
class ConfigDifference:
    """How a resumed run's config differs from the stored one."""

    refused: list[str] = field(default_factory=list)
    """Dotted keys whose change would alter what is trained."""
    harmless: list[str] = field(default_factory=list)
    """``key: old -> new`` for keys in :data:`HARMLESS_KEYS`."""


def compare_configs(stored: Mapping[str, object], new: Mapping[str, object]) -> ConfigDifference:
    """Every differing leaf key, split into refused and harmless ones."""
    refused: list[str] = []
    harmless: list[str] = []
    for key, old, value in _differences(stored, new, ""):
        if any(key == h or key.startswith(h + ".") for h in HARMLESS_KEYS):
            harmless.append(f"{key}: {_short(old)} -> {_short(value)}")
        else:
            refused.append(key)
    return ConfigDifference(refused, harmless)


def _differences(a: object, b: object, prefix: str) -> Iterator[tuple[str, object, object]]:
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for key in sorted(set(a) | set(b), key=str):
            yield from _differences(a.get(key), b.get(key), f"{prefix}.{key}" if prefix else str(key))
    elif a != b:
        yield prefix, a, b


def _short(value: object) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 40 else text[:37] + "..."


def check_resumed_config(
    stored: Mapping[str, object] | None, new: Mapping[str, object], where: Path
) -> list[str]:
    """Refuse a resumed config that changes what is trained; return the harmless changes."""
    if stored is None:
        return []
    diff = compare_configs(stored, new)
    if diff.refused:
        shown = ", ".join(diff.refused[:6]) + (
            f" (+{len(diff.refused) - 6} more)" if len(diff.refused) > 6 else ""
        )
        raise ConfigError(
            f"{option('resume')}: the config differs from the run's stored {where} in {shown}; resume "
            f"with that config ({option('config_path', where)}), train elsewhere with {option('output')}, or "
            f"start over with {option('overwrite')}"
        )
    return diff.harmless


def check_world_size(stored: int | None, now: int, checkpoint: Path) -> None:
    """A run resumes with the process count it was trained with (the batch split depends on it)."""
    if stored is not None and int(stored) != now:
        raise ConfigError(
            f"{checkpoint} was trained with {stored} process(es) and this run has {now}; resume with "
            f"{option('nproc', stored)} (or {option('gpus', stored)}) so the run continues exactly"
        )


# ----------------------------------------------------------------------------------------- pruning
class Pruner:
    """``keep_last`` by save order: the run's checkpoints up to the resume point (in iteration
    order, which was their save order), then every checkpoint this run saves, in order."""

    def __init__(self, ckpt_dir: Path, keep_last: int | None, resumed_at: int | None) -> None:
        self.keep = int(keep_last or 0)
        earlier = list_checkpoints(ckpt_dir) if resumed_at is not None else []
        self.order: list[Path] = [path for it, path in earlier if it <= (resumed_at or 0)]

    def saved(self, path: Path) -> list[Path]:
        """Record ``path`` as this run's newest checkpoint; delete and return the ones beyond keep_last."""
        self.order = [p for p in self.order if p != path] + [path]
        if not self.keep or len(self.order) <= self.keep:
            return []
        old, self.order = self.order[: -self.keep], self.order[-self.keep :]
        for weights in old:
            state_path(weights).unlink(missing_ok=True)
            weights.unlink(missing_ok=True)
        return old


# ----------------------------------------------------------------------------------------- metrics
def truncate_metrics(path: Path, iteration: int) -> None:
    """Drop metrics lines written after ``iteration`` by the run being resumed, and its closing
    partial-window line (the resumed run completes that window)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a half-written last line of a killed run
        at = entry.get("iteration", 0)
        if at < iteration or (at == iteration and not entry.get("partial")):
            kept.append(line)
    atomic_write_bytes(path, ("\n".join(kept) + "\n" if kept else "").encode())


# ------------------------------------------------------------------------------------------ lock
LOCK_FILE = ".train.lock"
"""The run folder's lock file; held with :func:`gaitcli.runtime.lock.exclusive_lock` while a run
writes into the folder (docs/train.md, "Output folder")."""


def acquire_output_lock(folder: Path) -> Callable[[], None]:
    """Hold the run folder against a second ``gait train``; returns the release function.

    The lock is the one lock of gaitcli: dropped by the kernel when the holder dies (SIGKILL
    included), the refusal names the owner, a network file system is refused."""
    folder.mkdir(parents=True, exist_ok=True)
    stack = ExitStack()
    stack.enter_context(exclusive_lock(folder / LOCK_FILE, what="gait train"))
    return stack.close
