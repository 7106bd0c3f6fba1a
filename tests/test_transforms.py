"""Transforms under OpenGait's names: pixels, seeding, the train/eval rule, config loading."""

from __future__ import annotations

import numpy as np
import pytest

from gaitcli.data.collate import Collator, FrameSampling
from gaitcli.data.transforms import build_transform
from gaitcli.errors import ConfigError

RANDOM = ["RandomHorizontalFlip", "RandomErasing", "RandomRotate", "RandomPerspective", "RandomAffine"]


def clip(s=6, h=64, w=64):
    frame = np.random.default_rng(7).integers(1, 256, (h, w), dtype=np.uint8)  # no zero pixel
    frame[10:50, 20:30] = 255
    return np.repeat(frame[None], s, axis=0)


def test_cut_is_the_old_slice_and_cutting_overrides():
    frames = np.random.default_rng(0).integers(0, 256, (3, 64, 64), dtype=np.uint8)
    out = build_transform(None, training=False)(frames, np.random.default_rng(0))
    assert np.array_equal(out, frames[..., 10:54])
    out = build_transform([{"type": "BaseSilCuttingTransform", "cutting": 5}], training=False)(
        frames[:, ::2, ::2], np.random.default_rng(0))
    assert out.shape == (3, 32, 22)


def test_resize_then_cut_is_32x22_area_mean():
    spec = [{"type": "Resize", "size": [32, 32]}, {"type": "BaseSilCuttingTransform", "cutting": 5}]
    frames = clip()
    out = build_transform(spec, training=False)(frames, np.random.default_rng(0))
    assert out.shape == (6, 32, 22) and out.dtype == np.uint8
    block = frames[0, :2, 20:22].astype(float).mean()
    assert out[0, 0, 5] == round(block)
    assert build_transform(spec, training=False).out_size(64, 64) == (32, 22)


@pytest.mark.parametrize("name", RANDOM)
def test_random_transform_changes_pixels_and_is_seeded(name):
    t = build_transform([{"type": name, "prob": 1.0}], training=True)
    a = t(clip(), np.random.default_rng(3))
    b = t(clip(), np.random.default_rng(3))
    assert a.shape == (6, 64, 64) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, clip())
    assert all(np.array_equal(a[0], a[i]) for i in range(6))


def test_prob_zero_is_identity_and_flip_mirrors():
    assert np.array_equal(build_transform([{"type": "RandomRotate", "prob": 0.0}], training=True)(
        clip(), np.random.default_rng(0)), clip())
    flip = build_transform([{"type": "RandomHorizontalFlip", "prob": 1.0}], training=True)
    assert np.array_equal(flip(clip(), np.random.default_rng(0)), clip()[..., ::-1])


def test_compose_of_opengait_config_loads():
    spec = [{"type": "Compose", "trf_cfg": [{"type": "RandomPerspective", "prob": 0.2},
                                             {"type": "BaseSilCuttingTransform"},
                                             {"type": "RandomHorizontalFlip", "prob": 0.2},
                                             {"type": "RandomRotate", "prob": 0.2}]}]
    t = build_transform(spec, training=True)
    assert len(t.items) == 4 and t.out_size(64, 64) == (64, 44)


def test_evaluation_refuses_random_and_unknown_names_one_line():
    with pytest.raises(ConfigError, match="RandomRotate is random.*trainer_cfg.transform"):
        build_transform([{"type": "RandomRotate"}], training=False)
    with pytest.raises(ConfigError, match="did you mean 'RandomErasing'"):
        build_transform([{"type": "RandomErasin"}], training=True)
    with pytest.raises(ConfigError, match="RandomRotate does not take"):
        build_transform([{"type": "RandomRotate", "degrees": 3}], training=True)


def test_collator_augments_per_sequence_from_the_batch_seed():
    arr = clip(20)
    items = [([arr], f"{i:03d}", "nm-01", "090", i, 5, i) for i in range(4)]
    cfg = FrameSampling(sample_type="fixed_ordered", frames_num_fixed=8)
    spec = [{"type": "RandomRotate", "prob": 1.0, "degree": 30}, {"type": "BaseSilCuttingTransform"}]
    one = Collator(cfg, seed=1, transform=spec)(items).sils
    again = Collator(cfg, seed=1, transform=spec)(items).sils
    half = Collator(cfg, seed=1, transform=spec)(items[2:]).sils  # a rank's share: positions kept
    assert one.shape == (4, 8, 64, 44)
    assert np.array_equal(one.numpy(), again.numpy()) and np.array_equal(one[2:].numpy(), half.numpy())
    assert not np.array_equal(one[0].numpy(), one[1].numpy())  # each sequence its own angle


def test_resized_input_with_bin_num_null_is_one_line(tiny_data, tmp_path):
    from conftest import tiny_config

    from gaitcli.config import resolve_config
    from gaitcli.training.trainer import train

    cfg = tiny_config(*tiny_data, transform=[{"type": "Resize", "size": [16, 16]}])
    cfg["model_cfg"]["bin_num"] = None
    with pytest.raises(ConfigError, match=r"gives 16x16 frames .* set model_cfg.bin_num: \[16\]"):
        train(resolve_config(cfg), output=tmp_path / "run", device="cpu", progress=False)


def test_evaluation_frames_are_resized_and_config_refuses_random_eval_transform(tiny_data):
    from conftest import tiny_config

    from gaitcli.config import resolve_config
    from gaitcli.evaluation.extract import FramePicker

    spec = [{"type": "Resize", "size": [32, 32]}, {"type": "BaseSilCuttingTransform", "cutting": 5}]
    assert FramePicker({"sample_type": "all_ordered"}, spec)(clip(), 0).shape == (6, 32, 22)
    cfg = tiny_config(*tiny_data)
    cfg["evaluator_cfg"] = {"transform": [{"type": "RandomHorizontalFlip"}]}
    with pytest.raises(ConfigError, match="evaluator_cfg.transform: RandomHorizontalFlip is random"):
        resolve_config(cfg)
    cfg["evaluator_cfg"] = {"transform": {"type": "Compose", "trf_cfg": spec}}  # OpenGait's form
    assert resolve_config(cfg).evaluator.transform[0]["type"] == "Compose"


def test_erasing_per_frame_draws_each_frame():
    t = build_transform([{"type": "RandomErasing", "prob": 1.0, "per_frame": True}], training=True)
    out = t(clip(), np.random.default_rng(0))
    zeros = [(out[i] == 0).sum() for i in range(6)]
    assert all(z > 0 for z in zeros) and not all(np.array_equal(out[0], out[i]) for i in range(1, 6))


def test_export_of_a_resized_checkpoint_takes_the_transformed_frames(tmp_path):
    # the CPU recipe resizes 64x64 -> 32x32 and cuts 5: its ONNX input is 32x22, the metadata
    # says so, and the ONNX model on the transformed frames gives PyTorch's embedding
    import onnx
    import onnxruntime as ort
    import torch

    from gaitcli.build import build_model
    from gaitcli.deploy.export import export_onnx
    from gaitcli.models import save_checkpoint

    torch.manual_seed(0)
    model = build_model({"model_cfg": {"model": "GaitGL", "channels": [4, 8, 8], "class_num": 3,
                                       "bin_num": [32]}})
    chain = [{"type": "Resize", "size": [32, 32]}, {"type": "BaseSilCuttingTransform", "cutting": 5}]
    cfg = {**model.config, "evaluator_cfg": {"transform": chain}}
    path = save_checkpoint(tmp_path / "m.safetensors", model, cfg, iteration=1, frame_size="64x64")
    result = export_onnx(path, tmp_path / "m.onnx")
    assert max(result.differences.values()) <= 1e-4
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    assert meta["input_size"] == "32x22" and meta["frame_size"] == "64x64"
    assert "Resize size [32, 32], BaseSilCuttingTransform cutting 5 (32x22)" in meta["preprocessing"]
    walk = (np.random.default_rng(1).random((12, 64, 64)) > 0.5).astype(np.uint8) * 255
    frames = build_transform(chain, training=False)(walk, np.random.default_rng(0))
    x = (frames.astype(np.float32) / 255)[None]
    assert x.shape == (1, 12, 32, 22)
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        ref = model.eval()(torch.from_numpy(x))["embeddings"][0].numpy()
    assert np.abs(session.run(None, {"frames": x})[0] - ref).max() <= 1e-4
