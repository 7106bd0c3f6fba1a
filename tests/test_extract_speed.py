"""The fast extraction paths: the bf16 mode stays close to fp32 and still returns float32."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gaitcli.build import build_model
from gaitcli.data.dataset import GaitDataset
from gaitcli.evaluation import extract_features

pytestmark = pytest.mark.usefixtures("one_thread")


def test_bf16_extraction_is_close_to_fp32(tiny_data):
    root, partition = tiny_data
    ds = GaitDataset(root, partition, "test")
    torch.manual_seed(0)
    model_cfg = {"model": "GaitGL", "channels": [4, 8, 8], "class_num": 4, "bin_num": [32]}
    model = build_model({"model_cfg": model_cfg, "data_cfg": {"dataset_name": "CASIA-B"}}).eval()
    idx = [0, 3, 5]
    full = extract_features(model, ds, batch_size=2, indices=idx, progress=False).embeddings
    low = extract_features(model, ds, batch_size=2, indices=idx, progress=False, bf16=True).embeddings
    assert low.dtype == np.float32 and low.shape == full.shape
    assert not np.array_equal(low, full)  # it really ran in bfloat16
    cos = (low * full).sum() / np.sqrt((low * low).sum() * (full * full).sum())
    assert cos > 0.995
