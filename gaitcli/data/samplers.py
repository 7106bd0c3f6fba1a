"""Batch samplers (docs/config.md, ``trainer_cfg.sampler``): the endless P×K triplet sampler and
the inference sampler.

Every batch of the triplet sampler is drawn from its own RNG, seeded by ``(seed, batch
number)``. That makes the stream identical on every rank without any communication, independent
of DataLoader workers, and resumable exactly: a run restored at batch ``b`` draws the same
batches as an uninterrupted one.

Each element a sampler yields is ``(dataset index, batch number, position in the global batch)``,
so the collate function can seed each sequence's frame sampling from the batch number and its
global position: a rank picks exactly the frames a single process would for the same sequence.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from gaitcli.errors import ConfigError


def batch_rng(seed: int, batch: int, stream: int = 0) -> np.random.Generator:
    """The RNG of one batch: a pure function of the seed, the batch number and a stream id."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, batch, stream])))


class TripletSampler:
    """Endless P×K batches: P distinct ids, K sequences of each.

    K sequences are drawn without replacement when the id has at least K, else with
    replacement. With ``world_size`` > 1 every rank draws the same global batch and keeps every
    ``world_size``-th element, starting at its rank.
    """

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray,
        batch_size: Sequence[int],
        *,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        start_batch: int = 0,
    ) -> None:
        p, k = int(batch_size[0]), int(batch_size[1])
        if (p * k) % world_size:
            raise ConfigError(
                f"trainer_cfg.sampler.batch_size {p}x{k} = {p * k} sequences cannot be split over "
                f"{world_size} processes; make P*K a multiple of the process count"
            )
        labels = np.asarray(labels)
        self.ids = np.unique(labels)
        if len(self.ids) < p:
            raise ConfigError(
                f"trainer_cfg.sampler.batch_size asks for P={p} ids per batch but the training set has "
                f"{len(self.ids)}; lower P (e.g. trainer_cfg.sampler.batch_size=[{len(self.ids)},{k}])"
            )
        order = np.argsort(labels, kind="stable")
        bounds = np.searchsorted(labels[order], self.ids)
        self._members = np.split(order, bounds[1:])  # dataset indices of each id
        self.p, self.k = p, k
        self.shuffle = shuffle
        self.seed = seed
        self.rank, self.world_size = rank, world_size
        self.batch = start_batch  # number of the next batch to draw

    def global_batch(self, batch: int) -> np.ndarray:
        """The dataset indices of global batch number ``batch`` (all ranks)."""
        rng = batch_rng(self.seed, batch)
        chosen = rng.choice(len(self.ids), size=self.p, replace=False)
        picks = []
        for c in chosen:
            members = self._members[c]
            picks.append(rng.choice(members, size=self.k, replace=len(members) < self.k))
        out = np.concatenate(picks)
        if self.shuffle:
            out = out[rng.permutation(len(out))]
        return out

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        while True:
            batch = self.batch
            self.batch += 1
            full = self.global_batch(batch)
            positions = range(self.rank, len(full), self.world_size)
            yield [(int(full[pos]), batch, pos) for pos in positions]

    def state_dict(self) -> dict[str, int]:
        return {"batch": self.batch, "seed": self.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.batch = int(state["batch"])
        self.seed = int(state["seed"])


def rank_bounds(size: int, world_size: int) -> np.ndarray:
    """Rank r's contiguous share of ``size`` items is ``[bounds[r], bounds[r + 1])``."""
    bounds: np.ndarray = np.linspace(0, size, world_size + 1).round().astype(int)
    return bounds


class InferenceSampler:
    """Every sequence once, in dataset order, in batches; rank r takes the r-th contiguous share.

    Shares are contiguous so that gathering them back rank by rank restores dataset order.
    """

    def __init__(self, size: int, batch_size: int, *, rank: int = 0, world_size: int = 1) -> None:
        if batch_size < 1:
            raise ConfigError("evaluator_cfg.sampler.batch_size must be at least 1")
        bounds = rank_bounds(size, world_size)
        self.indices = np.arange(bounds[rank], bounds[rank + 1])
        self.batch_size = batch_size

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        for start in range(0, len(self.indices), self.batch_size):
            yield [(int(i), 0, int(i)) for i in self.indices[start : start + self.batch_size]]

    def __len__(self) -> int:
        return (len(self.indices) + self.batch_size - 1) // self.batch_size
