"""The P×K triplet sampler and the inference sampler (SPEC §4)."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest

from gaitcli.data.samplers import InferenceSampler, TripletSampler
from gaitcli.errors import ConfigError

LABELS = np.repeat(np.arange(10), [5, 5, 5, 5, 5, 5, 5, 5, 2, 9])


def test_p_distinct_ids_k_each():
    sampler = TripletSampler(LABELS, [4, 3], seed=1)
    for batch in itertools.islice(iter(sampler), 50):
        idx = [i for i, *_ in batch]
        counts = Counter(LABELS[idx].tolist())
        assert len(counts) == 4 and set(counts.values()) == {3}
        for label in counts:
            members = [i for i in idx if LABELS[i] == label]
            if (LABELS == label).sum() >= 3:
                assert len(set(members)) == 3  # without replacement when the id has >= K


def test_with_replacement_for_small_ids():
    sampler = TripletSampler(LABELS, [10, 4], seed=0)
    batch = next(iter(sampler))
    idx = [i for i, *_ in batch]
    assert Counter(LABELS[idx].tolist())[8] == 4  # id 8 has only 2 sequences


def test_every_rank_draws_the_same_batch_and_takes_its_share():
    single = TripletSampler(LABELS, [4, 4], seed=3)
    ranks = [TripletSampler(LABELS, [4, 4], seed=3, rank=r, world_size=2) for r in range(2)]
    for b in range(5):
        full = single.global_batch(b)
        shares = [next(iter(s)) for s in ranks]
        assert [i for i, *_ in shares[0]] == full[0::2].tolist()
        assert [i for i, *_ in shares[1]] == full[1::2].tolist()
        assert all(batch_no == b for share in shares for _, batch_no, _ in share)
        assert [pos for _, _, pos in shares[1]] == list(range(1, 16, 2))


def test_resume_continues_the_same_stream():
    a = TripletSampler(LABELS, [4, 2], seed=7)
    stream = [b for b in itertools.islice(iter(a), 6)]
    b = TripletSampler(LABELS, [4, 2], seed=7)
    b.load_state_dict({"batch": 3, "seed": 7})
    assert list(itertools.islice(iter(b), 3)) == stream[3:]


def test_shuffle_changes_order_only():
    a = TripletSampler(LABELS, [4, 2], seed=5, shuffle=False).global_batch(0)
    b = TripletSampler(LABELS, [4, 2], seed=5, shuffle=True).global_batch(0)
    assert sorted(a.tolist()) == sorted(b.tolist())
    unshuffled = LABELS[a]
    assert all(unshuffled[i] == unshuffled[i + 1] for i in range(0, 8, 2))  # K-runs of the same id


def test_config_errors():
    with pytest.raises(ConfigError, match="multiple of the process count"):
        TripletSampler(LABELS, [3, 3], world_size=2)
    with pytest.raises(ConfigError, match="has 10"):
        TripletSampler(LABELS, [11, 2])


def test_inference_sampler_covers_everything_in_order():
    for world in (1, 2, 3):
        got = []
        for rank in range(world):
            got += [i for batch in InferenceSampler(11, 4, rank=rank, world_size=world) for i, *_ in batch]
        assert got == list(range(11))
