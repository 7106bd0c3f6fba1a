"""Transform arguments are checked when the config is (issue 19 item 15): a wrong type, a huge
int, NaN or a list of the wrong length is one ConfigError line naming the argument, in ``gait
config`` already, never a ValueError / OverflowError there or a crash later in ``gait train``."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from gaitcli.data.transforms import TRANSFORM_NAMES, TRANSFORM_TYPES, build_transform
from gaitcli.errors import ConfigError

SECTION = "cfg.yaml: trainer_cfg.transform"


def frames(s: int = 3, h: int = 64, w: int = 64) -> np.ndarray:
    out = np.zeros((s, h, w), np.uint8)
    out[:, 10:50, 20:40] = 255
    return out


@pytest.mark.parametrize(("item", "named"), [
    ({"type": "RandomRotate", "degree": float("nan")}, "RandomRotate.degree"),
    ({"type": "RandomRotate", "degree": float("inf")}, "RandomRotate.degree"),
    ({"type": "RandomRotate", "degree": 10**400}, "RandomRotate.degree"),  # float() overflows
    ({"type": "RandomRotate", "prob": "often"}, "RandomRotate.prob"),
    ({"type": "RandomRotate", "prob": float("nan")}, "RandomRotate.prob"),
    ({"type": "RandomAffine", "degree": "ten"}, "RandomAffine.degree"),
    ({"type": "RandomHorizontalFlip", "prob": [0.5]}, "RandomHorizontalFlip.prob"),
    ({"type": "RandomHorizontalFlip", "prob": True}, "RandomHorizontalFlip.prob"),
    ({"type": "BaseSilCuttingTransform", "cutting": "ten"}, "BaseSilCuttingTransform.cutting"),
    ({"type": "BaseSilCuttingTransform", "cutting": 2.5}, "BaseSilCuttingTransform.cutting"),
    ({"type": "BaseSilCuttingTransform", "cutting": float("inf")}, "BaseSilCuttingTransform.cutting"),
    ({"type": "BaseSilCuttingTransform", "divsor": "255"}, "BaseSilCuttingTransform.divsor"),
    ({"type": "BaseSilTransform", "divsor": float("nan")}, "BaseSilTransform.divsor"),
    ({"type": "Resize", "size": [32]}, "Resize.size"),
    ({"type": "Resize", "size": [32, 32, 32]}, "Resize.size"),
    ({"type": "Resize", "size": ["a", 3]}, "Resize.size"),
    ({"type": "Resize", "size": [10**30, 10]}, "Resize.size"),
    ({"type": "Resize", "size": 32}, "Resize.size"),
    ({"type": "RandomErasing", "sl": "small"}, "RandomErasing.sl"),
    ({"type": "RandomErasing", "sh": float("nan")}, "RandomErasing.sh"),
    ({"type": "RandomErasing", "r1": 10**400}, "RandomErasing.r1"),
    ({"type": "RandomErasing", "per_frame": "no"}, "RandomErasing.per_frame"),
    ({"type": "Compose", "trf_cfg": 7}, "Compose.trf_cfg"),
])
def test_bad_argument_is_one_config_error_naming_it(item, named):
    with pytest.raises(ConfigError) as info:
        build_transform([item], training=True, section=SECTION)
    message = str(info.value)
    assert message.startswith(f"{SECTION}: {named} must be ") and "\n" not in message, message


def test_what_opengait_configs_use_still_builds():
    spec = [{"type": "Compose", "trf_cfg": [
        {"type": "RandomPerspective", "prob": 0.2},
        {"type": "BaseSilCuttingTransform", "divsor": 255.0, "cutting": None},
        {"type": "RandomHorizontalFlip", "prob": 0.2},
        {"type": "RandomRotate", "prob": 0.2, "degree": 10},
        {"type": "RandomErasing", "prob": 0.2, "sl": 0.02, "sh": 0.4, "r1": 0.3, "per_frame": False},
        {"type": "RandomAffine", "prob": 0.2, "degree": 10.5},
    ]}, {"type": "BaseSilTransform", "divsor": 255, "img_shape": [64, 44]}, "NoOperation",
        {"type": "Resize", "size": (32, 32)}]
    built = build_transform(spec, training=True)
    assert len(built.items) == 9 and built.out_size(64, 64) == (32, 32)


def test_gait_config_refuses_a_nan_rotation_in_one_line(tmp_path):
    from gaitcli.cli import app

    path = tmp_path / "cfg.yaml"
    path.write_text("trainer_cfg:\n  transform:\n    - type: RandomRotate\n      degree: .nan\n")
    result = CliRunner().invoke(app, ["config", str(path)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.strip()]
    assert len(errors) == 1 and "trainer_cfg.transform" in errors[0] and "RandomRotate.degree" in errors[0]


# ----------------------------------------------------------------------------- property-based
def _parameters(kind: str) -> list[str]:
    """The arguments transform ``kind`` takes (from its signature), so most draws reach the checks."""
    if kind == "Compose":
        return ["trf_cfg"]
    return [name for name in inspect.signature(TRANSFORM_TYPES[kind].__init__).parameters if name != "self"]


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(-(10**400), 10**400),
    st.floats(allow_nan=True, allow_infinity=True), st.floats(0, 1), st.integers(-3, 300),
    st.text(max_size=8), st.sampled_from([255, 255.0, 0.5, 10, 180, 1, 0, 64, 4096, 4097, "RandomRotate"]),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner)
                      | st.dictionaries(st.text(max_size=4), inner, max_size=2), max_leaves=6)


@st.composite
def items(draw: st.DrawFn) -> object:
    """A transform item: mostly a known type with some of its own arguments set to any value."""
    kind = draw(st.sampled_from([*TRANSFORM_NAMES, "Nope"]))
    names = _parameters(kind) if kind in TRANSFORM_TYPES or kind == "Compose" else []
    args = draw(st.dictionaries(st.sampled_from([*names, "degrees"]) if names else st.just("degrees"),
                                values, max_size=len(names) + 1))
    if kind == "Compose" and draw(st.booleans()):
        args["trf_cfg"] = draw(st.lists(st.deferred(lambda: items()), max_size=2))
    return draw(st.one_of(st.just({"type": kind, **args}), values)) if draw(st.integers(0, 9)) == 0 \
        else {"type": kind, **args}


@settings(max_examples=400, deadline=None)
@given(spec=st.lists(items(), max_size=3) | items(), training=st.booleans())
def test_any_argument_values_build_or_are_one_config_error(spec, training):
    """Random argument values either build a transform that then runs on frames, or raise a
    one-line ConfigError: never another exception, in config validation or in training."""
    try:
        built = build_transform(spec, training=training, section=SECTION)
    except ConfigError as exc:
        assert "\n" not in str(exc) and str(exc).startswith(SECTION)
        return
    try:
        height, width = built.out_size(64, 64)
    except ConfigError as exc:  # a cut wider than the frames: known only with the frame size
        assert "\n" not in str(exc)
        return
    out = built(frames(), np.random.default_rng(0))
    assert out.dtype == np.uint8 and out.shape == (3, height, width)


@settings(max_examples=200, deadline=None)
@given(prob=st.floats(0, 1), degree=st.floats(0, 180), sl=st.floats(0.01, 0.5), extra=st.floats(0, 0.49),
       r1=st.floats(0.01, 1), per_frame=st.booleans(), cutting=st.integers(0, 31),
       size=st.tuples(st.integers(1, 128), st.integers(1, 128)))
def test_every_argument_in_range_builds(prob, degree, sl, extra, r1, per_frame, cutting, size):
    """The other half of the property: the checks refuse nothing that is in the documented ranges."""
    spec = [{"type": "Resize", "size": list(size)},
            {"type": "BaseSilCuttingTransform", "cutting": cutting},
            {"type": "RandomRotate", "prob": prob, "degree": degree},
            {"type": "RandomAffine", "prob": prob, "degree": degree},
            {"type": "RandomErasing", "prob": prob, "sl": sl, "sh": sl + extra, "r1": r1,
             "per_frame": per_frame},
            {"type": "RandomPerspective", "prob": prob}, {"type": "RandomHorizontalFlip", "prob": prob}]
    built = build_transform(spec, training=True, section=SECTION)
    assert len(built.items) == 7
    assert math.isfinite(built.items[2].degree)  # type: ignore[attr-defined]
