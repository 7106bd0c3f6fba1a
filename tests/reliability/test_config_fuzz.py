"""Property-based fuzzing of config files, --set overrides, the training setup and lr-plot: every
input ends in success or one error line with exit 2, never a traceback or a hang. The oracle
tests at the end also know which answer is right (valid overrides accepted, one invalid override
refused naming its key), so a validator refusing everything or accepting everything fails them."""

from __future__ import annotations

import contextlib
import signal

import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from gaitcli.cli import app
from gaitcli.config import load_config
from gaitcli.config_schema import SCHEMA, model_keys
from gaitcli.errors import ConfigError
from gaitcli.schedule import build_optimizer, build_scheduler, check_config_optimisation

SECTIONS = list(SCHEMA) + ["model", "trainer", "extra_cfg"]
KEYS = sorted({k for keys in [*SCHEMA.values(), model_keys()] for k in keys}) + [
    "solver",
    "scheduler",
    "type",
    "margin",
    "T_max",
    "typo_key",
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(
        [
            "Adam",
            "SGD",
            "warmup",
            "MultiStepLR",
            "GaitGL",
            "MetaGait",
            "fixed_ordered",
            "TripletLoss",
            "CrossEntropyLoss",
            "latest",
            "1e-4",
            "[8, 8]",
        ]
    ),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(KEYS), inner, max_size=4)
    ),
    max_leaves=10,
)
configs = st.one_of(
    st.dictionaries(
        st.sampled_from(SECTIONS), st.dictionaries(st.sampled_from(KEYS), values, max_size=5), max_size=4
    ),
    values,
)
override_text = st.builds(
    lambda section, key, value: f"{section}.{key}={value}",
    st.sampled_from(SECTIONS + ["loss_cfg.0", "loss_cfg.9", "trainer_cfg.sampler"]),
    st.sampled_from(KEYS),
    st.one_of(
        st.text(max_size=10), st.sampled_from(["1", "1e-3", "[4,4]", "true", "null", "{a: 1}", "[", "'x"])
    ),
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


# ----------------------------------------------------------------------------- train and lr-plot
# The same strategies drive the validation `gait train` runs before building its optimiser and
# scheduler (gaitcli.schedule.check_optimisation, through load_config) and `gait lr-plot`: zero,
# negative, huge, NaN and infinite numbers, in every numeric key of the schedule.
numbers = st.one_of(
    st.sampled_from(
        [
            0,
            -1,
            1,
            2,
            0.5,
            -0.1,
            1e-3,
            1e308,
            -1e308,
            10**30,
            2**63,
            100,
            10**7,
            float("nan"),
            float("inf"),
            float("-inf"),
        ]
    ),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**20), 10**20),
)
NUMERIC_KEYS = [
    "optimizer_cfg.lr",
    "optimizer_cfg.weight_decay",
    "scheduler_cfg.gamma",
    "scheduler_cfg.warmup_factor",
    "scheduler_cfg.warmup_iters",
    "trainer_cfg.total_iter",
    "optimizer_cfg.momentum",
    "optimizer_cfg.eps",
]


def _yaml_number(value) -> str:
    if isinstance(value, float) and value != value:
        return ".nan"
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return ".inf" if value > 0 else "-.inf"
    return repr(value)


schedule_overrides = st.lists(
    st.one_of(
        st.builds(lambda k, v: f"{k}={_yaml_number(v)}", st.sampled_from(NUMERIC_KEYS), numbers),
        st.builds(
            lambda a, b: f"scheduler_cfg.milestones=[{_yaml_number(a)}, {_yaml_number(b)}]", numbers, numbers
        ),
        st.sampled_from(
            [
                "optimizer_cfg.solver=SGD",
                "optimizer_cfg.solver=AdamW",
                "scheduler_cfg.scheduler=MultiStepLR",
                "scheduler_cfg.scheduler=StepLR",
                "scheduler_cfg.step_size=7",
                "scheduler_cfg.scheduler=CosineAnnealingLR",
                "scheduler_cfg.T_max=50",
                "trainer_cfg.total_iter=300",
                "optimizer_cfg.betas=[0.9, 1.5]",
            ]
        ),
    ),
    min_size=1,
    max_size=5,
)


class _Hang(Exception):
    pass


@contextlib.contextmanager
def _no_hang(seconds: float = 30.0):
    def alarm(*_):
        raise _Hang(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@settings(max_examples=80, deadline=None)
@given(overrides=schedule_overrides)
def test_fuzzed_training_setup_is_one_line_or_builds(overrides):
    with _no_hang():
        try:
            cfg = load_config("metagait", overrides)
            check_config_optimisation(cfg)  # what gaitcli.training.trainer.train runs before launching
        except ConfigError as exc:
            assert "\n" not in str(exc)
            return
        model = torch.nn.Linear(2, 2)  # then the trainer's own construction must not fail
        optimizer = build_optimizer(model.parameters(), cfg.optimizer.as_mapping())
        build_scheduler(optimizer, cfg.scheduler.as_mapping())
        assert optimizer.param_groups[0]["lr"] >= 0


@settings(max_examples=60, deadline=None)
@given(overrides=schedule_overrides, log=st.booleans())
def test_fuzzed_lr_plot_is_one_line_or_a_chart(overrides, log):
    args = ["lr-plot", "--width", "30", "--height", "5"] + (["--log"] if log else [])
    for text in overrides:
        args += ["--set", text]
    with _no_hang():
        check(CliRunner().invoke(app, args))


def test_lr_plot_negative_lr_no_longer_spins():
    with _no_hang(20):
        result = CliRunner().invoke(
            app, ["lr-plot", "--lr", "-0.1", "--total-iters", "100", "--milestones", "50,80"]
        )
    check(result)
    assert result.exit_code == 2 and "optimizer_cfg.lr must be > 0" in result.output


def test_train_refuses_what_config_and_lr_plot_refuse(tmp_path):
    """One validation: the three commands give the same one line for the same bad value."""
    messages = []
    for args in (
        ["config", "metagait"],
        ["lr-plot"],
        ["train", "-c", "metagait", "--output", str(tmp_path / "run")],
    ):
        result = CliRunner().invoke(app, [*args, "--set", "scheduler_cfg.gamma=-1"])
        check(result)
        assert result.exit_code == 2
        messages.append([line for line in result.output.splitlines() if line.startswith("error:")][0])
    assert len(set(messages)) == 1 and "scheduler_cfg.gamma must be in (0, 1]" in messages[0]
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- with an oracle
# The tests above only check the form of the answer (success, or one error line), so a validator
# that refused everything, or accepted everything, would pass them. These know the answer: a set
# of overrides that are each valid must be accepted, and the same set plus one known-invalid
# override must be refused in one line that names that key.
def _decimal(value: float) -> str:
    return f"{value:.6f}"  # YAML reads it as a float (PyYAML takes "1e-06" for text)


valid_overrides = st.lists(
    st.one_of(
        st.builds(lambda v: f"optimizer_cfg.lr={_decimal(v)}", st.floats(1e-5, 1.0)),
        st.builds(lambda v: f"optimizer_cfg.weight_decay={_decimal(v)}", st.floats(0, 0.1)),
        st.builds(lambda v: f"scheduler_cfg.gamma={_decimal(v)}", st.floats(1e-5, 1.0)),
        st.builds(lambda v: f"trainer_cfg.log_iter={v}", st.integers(1, 10**6)),
        st.builds(lambda v: f"trainer_cfg.save_iter={v}", st.integers(1, 10**6)),
        st.builds(lambda p, k: f"trainer_cfg.sampler.batch_size=[{p}, {k}]", st.integers(2, 32),
                  st.integers(2, 16)),
        st.builds(lambda v: f"evaluator_cfg.sampler.batch_size={v}", st.integers(1, 64)),
        st.builds(lambda v: f"data_cfg.num_workers={v}", st.integers(0, 8)),
        st.builds(lambda v: f"trainer_cfg.with_test={str(v).lower()}", st.booleans()),
        st.builds(lambda p, d: f"trainer_cfg.transform=[{{type: RandomRotate, prob: {_decimal(p)}, "
                               f"degree: {_decimal(d)}}}, {{type: BaseSilCuttingTransform}}]",
                  st.floats(0, 1), st.floats(0, 180)),
        st.builds(lambda s: f"evaluator_cfg.transform=[{{type: Resize, size: [{s}, {s}]}}, "
                            "{type: BaseSilCuttingTransform, cutting: 0}]", st.integers(8, 128)),
    ),
    max_size=4,
)
# (override, what the one error line must name)
invalid_override = st.one_of(
    st.sampled_from([
        ("optimizer_cfg.lr=abc", "optimizer_cfg.lr"),
        ("optimizer_cfg.lr=.nan", "optimizer_cfg.lr"),
        ("optimizer_cfg.weight_decay=-0.5", "optimizer_cfg.weight_decay"),
        ("scheduler_cfg.gamma=0", "scheduler_cfg.gamma"),
        ("trainer_cfg.log_iter=x", "trainer_cfg.log_iter"),
        ("trainer_cfg.sampler.batch_size=[0, 4]", "trainer_cfg.sampler.batch_size"),
        ("data_cfg.num_workers=-1", "data_cfg.num_workers"),
        ("trainer_cfg.typo_key=1", "trainer_cfg.typo_key"),
        ("evaluator_cfg.metric=manhattan", "evaluator_cfg.metric"),
        ("trainer_cfg.transform=[{type: RandomRotate, degree: .nan}]", "RandomRotate.degree"),
        ("evaluator_cfg.transform=[{type: RandomHorizontalFlip}]", "RandomHorizontalFlip"),
    ]),
    st.builds(lambda v: (f"optimizer_cfg.lr={_yaml_number(v)}", "optimizer_cfg.lr"),
              st.floats(max_value=0) | st.just(float("inf"))),
    st.builds(lambda v: (f"scheduler_cfg.gamma={_decimal(v)}", "scheduler_cfg.gamma"), st.floats(1.001, 1e6)),
    st.builds(lambda v: (f"trainer_cfg.log_iter={v}", "trainer_cfg.log_iter"), st.integers(max_value=0)),
)


def _config(overrides: list[str], via: str, folder) -> object:
    """``gait config metagait`` with ``overrides`` as --set options, or written into a YAML file."""
    args = ["config", "metagait"]
    if via == "set":
        for text in overrides:
            args += ["--set", text]
    else:
        tree: dict = {}
        for text in overrides:
            dotted, value = text.split("=", 1)
            *parents, leaf = dotted.split(".")
            node = tree
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = yaml.safe_load(value)
        path = folder / "oracle.yaml"
        path.write_text(yaml.safe_dump(tree))
        args = ["config", str(path)]
    result = CliRunner().invoke(app, args)
    check(result)
    return result


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(overrides=valid_overrides, via=st.sampled_from(["set", "file"]))
def test_fuzzed_valid_overrides_are_accepted(tmp_path, overrides, via):
    result = _config(overrides, via, tmp_path)
    assert result.exit_code == 0, result.output


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(overrides=valid_overrides, bad=invalid_override, via=st.sampled_from(["set", "file"]))
def test_fuzzed_one_invalid_override_is_refused_naming_its_key(tmp_path, overrides, bad, via):
    text, key = bad
    result = _config([*overrides, text], via, tmp_path)
    assert result.exit_code == 2, result.output
    error = next(line for line in result.output.splitlines() if line.startswith("error:"))
    assert key in error, error
