"""Property-based fuzzing of config files and --set overrides: every input ends in success or
one error line with exit 2, never a traceback."""

from __future__ import annotations

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from gaitcli.cli import app
from gaitcli.config_schema import SCHEMA

SECTIONS = list(SCHEMA) + ["model", "trainer", "extra_cfg"]
KEYS = sorted({k for keys in SCHEMA.values() for k in keys}) + ["solver", "scheduler", "type", "margin", "T_max", "typo_key"]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.sampled_from(["Adam", "SGD", "warmup", "MultiStepLR", "GaitGL", "MetaGait", "fixed_ordered",
                                           "TripletLoss", "CrossEntropyLoss", "latest", "1e-4", "[8, 8]"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.sampled_from(KEYS), inner, max_size=4)),
                      max_leaves=10)
configs = st.one_of(
    st.dictionaries(st.sampled_from(SECTIONS), st.dictionaries(st.sampled_from(KEYS), values, max_size=5), max_size=4),
    values,
)
override_text = st.builds(
    lambda section, key, value: f"{section}.{key}={value}",
    st.sampled_from(SECTIONS + ["loss_cfg.0", "loss_cfg.9", "trainer_cfg.sampler"]),
    st.sampled_from(KEYS),
    st.one_of(st.text(max_size=10), st.sampled_from(["1", "1e-3", "[4,4]", "true", "null", "{a: 1}", "[", "'x"])),
) | st.text(max_size=20)


def check(result) -> None:
    assert "Traceback" not in result.output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code in (0, 2), result.output
    if result.exit_code == 2:
        errors = [line for line in result.output.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, result.output


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cfg=configs)
def test_fuzzed_config_files(tmp_path, cfg):
    path = tmp_path / "fuzz.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True))
    check(CliRunner().invoke(app, ["config", str(path)]))


@settings(max_examples=120, deadline=None)
@given(overrides=st.lists(override_text, min_size=1, max_size=3))
def test_fuzzed_overrides(overrides):
    args = ["config", "metagait"]
    for text in overrides:
        args += ["--set", text]
    check(CliRunner().invoke(app, args))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200))
def test_fuzzed_raw_yaml_text(tmp_path, text):
    path = tmp_path / "raw.yaml"
    path.write_text(text)
    check(CliRunner().invoke(app, ["config", str(path)]))
