"""Frame sampling for every sample_type (docs/config.md, the sampler keys), and collation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gaitcli.data.collate import Collator, FrameSampling, cut_width, frame_indices, to_model_input


def rng(seed=0):
    return np.random.default_rng(seed)


def test_fixed_ordered_long_sequence_is_sorted_window():
    for seed in range(30):
        idx = frame_indices(100, "fixed_ordered", rng(seed), frames=30, skip=5)
        assert len(idx) == 30 and len(set(idx.tolist())) == 30
        assert np.all(np.diff(idx) > 0)
        assert idx[-1] - idx[0] < 35  # inside one window of frames + skip


def test_fixed_ordered_short_sequence_wraps_end_to_start():
    for seed in range(30):
        idx = frame_indices(7, "fixed_ordered", rng(seed), frames=30)
        assert len(idx) == 30 and idx.max() < 7
        # the window is a slice of 0..6,0..6,...: consecutive picks step by +1 or wrap 6 -> 0
        steps = np.diff(idx) % 7
        assert np.all(steps == 1)


def test_fixed_ordered_exact_length():
    assert frame_indices(30, "fixed_ordered", rng(), frames=30).tolist() == list(range(30))


def test_fixed_unordered():
    idx = frame_indices(100, "fixed_unordered", rng(), frames=30)
    assert len(set(idx.tolist())) == 30  # without replacement
    idx = frame_indices(10, "fixed_unordered", rng(), frames=30)
    assert len(idx) == 30 and idx.max() < 10  # with replacement when short


def test_all_ordered_and_limit():
    assert frame_indices(12, "all_ordered", rng()).tolist() == list(range(12))
    assert frame_indices(12, "all_ordered", rng(), limit=5).tolist() == list(range(5))
    assert sorted(frame_indices(12, "all_unordered", rng()).tolist()) == list(range(12))


def make_items(lengths, batch=0, w=64):
    items = []
    for i, n in enumerate(lengths):
        arr = np.random.default_rng(i).integers(0, 256, size=(n, 64, w), dtype=np.uint8)
        items.append(([arr], f"{i:03d}", "nm-01", "090", i, batch, i))
    return items


def test_collate_fixed_cuts_width_and_keeps_uint8():
    items = make_items([40, 50, 7])
    views = {"000": 0, "001": 1, "002": 2}
    batch = Collator(FrameSampling(sample_type="fixed_ordered", frames_num_fixed=30), views)(items)
    assert batch.sils.dtype == torch.uint8 and batch.sils.shape == (3, 30, 64, 44)
    assert batch.seq_lens is None and batch.labels.tolist() == [0, 1, 2]
    assert cut_width(64) == 10 and cut_width(128) == 20


def test_collate_all_ordered_pads_and_reports_lengths():
    items = make_items([5, 9])
    batch = Collator(FrameSampling(sample_type="all_ordered"))(items)
    assert batch.sils.shape == (2, 9, 64, 44) and batch.seq_lens.tolist() == [5, 9]
    assert np.array_equal(batch.sils[0, :5].numpy(), items[0][0][0][:, :, 10:54])
    assert batch.sils[0, 5:].sum() == 0


def test_collate_unfixed_lengths_in_range():
    items = make_items([60, 60, 60, 60])
    sampling = FrameSampling(sample_type="unfixed_ordered", frames_num_min=10, frames_num_max=20)
    batch = Collator(sampling)(items)
    assert all(10 <= n <= 20 for n in batch.seq_lens.tolist())


def test_collate_is_deterministic_per_batch_number():
    cfg = FrameSampling(sample_type="fixed_ordered", frames_num_fixed=10)
    a = Collator(cfg, seed=1)(make_items([50, 50], batch=4))
    b = Collator(cfg, seed=1)(make_items([50, 50], batch=4))
    c = Collator(cfg, seed=1)(make_items([50, 50], batch=5))
    assert torch.equal(a.sils, b.sils) and not torch.equal(a.sils, c.sils)


def test_to_model_input_scales_on_device():
    batch = Collator(FrameSampling(sample_type="all_ordered"))(make_items([3]))
    sils, labels, lens = to_model_input(batch, "cpu")
    assert sils.dtype == torch.float32 and 0 <= sils.min() and sils.max() <= 1
    assert torch.allclose(sils * 255, batch.sils.float())


@pytest.mark.parametrize("sample_type",
                         ["fixed_ordered", "fixed_unordered", "unfixed_unordered", "all_unordered"])
def test_every_sample_type_collates(sample_type):
    cfg = FrameSampling(sample_type=sample_type, frames_num_fixed=8, frames_num_min=4, frames_num_max=6)
    batch = Collator(cfg)(make_items([3, 20]))
    assert batch.sils.shape[0] == 2


def test_transform_cut_variants():
    from gaitcli.data.collate import transform_cut
    from gaitcli.errors import ConfigError

    assert transform_cut(None, 64) == 10
    assert transform_cut([{"type": "BaseSilCuttingTransform", "cutting": 5}], 32) == 5
    assert transform_cut([{"type": "BaseSilTransform"}], 64) == 0
    with pytest.raises(ConfigError):
        transform_cut([{"type": "Rotate"}], 64)
    with pytest.raises(ConfigError):
        transform_cut([{"type": "BaseSilCuttingTransform", "cutting": 40}], 64)
    cut = [{"type": "BaseSilCuttingTransform", "cutting": 5}]
    batch = Collator(FrameSampling(sample_type="all_ordered"), transform=cut)(make_items([3], w=32))
    assert batch.sils.shape[-1] == 22
