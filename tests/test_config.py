"""The config system: defaults, merging, overrides, packaged files and every error path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from gaitcli.cli import app
from gaitcli.config import default_config, dump_config, load_config, merge, parse_override, resolve_config
from gaitcli.errors import ConfigError

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str, name: str = "cfg.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# ----------------------------------------------------------------------------- merging
def test_merge_mappings_merge_and_lists_replace():
    base = {"a": {"x": 1, "y": [1, 2, 3]}, "b": 2}
    out = merge(base, {"a": {"y": [9]}, "c": 3})
    assert out == {"a": {"x": 1, "y": [9]}, "b": 2, "c": 3}
    assert base["a"]["y"] == [1, 2, 3]  # the input is not modified


def test_user_file_is_merged_over_defaults(tmp_path):
    cfg = load_config(
        write(tmp_path, "trainer_cfg:\n  total_iter: 500\n  sampler:\n    batch_size: [4, 2]\n")
    ).to_dict()
    defaults = default_config()
    assert cfg["trainer_cfg"]["total_iter"] == 500
    assert cfg["trainer_cfg"]["sampler"]["batch_size"] == [4, 2]
    # untouched keys keep their defaults, including siblings in nested sections
    assert (
        cfg["trainer_cfg"]["sampler"]["frames_num_fixed"]
        == defaults["trainer_cfg"]["sampler"]["frames_num_fixed"]
    )
    assert cfg["model_cfg"] == defaults["model_cfg"]


def test_loss_list_replaces_and_is_filled_per_type(tmp_path):
    cfg = load_config(write(tmp_path, "loss_cfg:\n  type: TripletLoss\n  margin: 0.3\n")).to_dict()
    assert len(cfg["loss_cfg"]) == 1
    assert cfg["loss_cfg"][0] == {
        "type": "TripletLoss",
        "loss_term_weight": 1.0,
        "margin": 0.3,
        "log_prefix": "triplet",
    }


def test_other_scheduler_replaces_section(tmp_path):
    path = write(tmp_path, "scheduler_cfg:\n  scheduler: MultiStepLR\n  milestones: [10]\n")
    cfg = load_config(path).to_dict()
    assert cfg["scheduler_cfg"] == {"scheduler": "MultiStepLR", "milestones": [10]}


def test_floats_accept_yaml_ints_and_scientific_notation(tmp_path):
    cfg = load_config(write(tmp_path, "optimizer_cfg:\n  lr: 1\n  weight_decay: 5.0e-4\n")).to_dict()
    assert cfg["optimizer_cfg"]["lr"] == 1.0 and isinstance(cfg["optimizer_cfg"]["lr"], float)


# ----------------------------------------------------------------------------- packaged files
def test_reference_configs_load_unchanged_with_warnings():
    warnings: list[str] = []
    cfg = load_config(FIXTURES / "metagait_authors.yaml", warn=warnings.append).to_dict()
    assert cfg["model_cfg"]["model"] == "GaitGL"  # the quirk is kept; convert recognises the weights
    assert cfg["scheduler_cfg"]["scheduler"] == "warmup"
    assert "wandb" not in cfg["trainer_cfg"]
    assert any("trainer_cfg.wandb" in w for w in warnings)
    assert any("enable_distributed" in w for w in warnings)
    # its partition path does not exist here: the packaged CASIA-B split is used, and said so
    assert Path(cfg["data_cfg"]["dataset_partition"]).name == "CASIA-B.json"
    assert any("packaged CASIA-B.json" in w for w in warnings)

    cfg = load_config(FIXTURES / "opengait_gaitgl.yaml").to_dict()
    assert cfg["scheduler_cfg"] == {"scheduler": "MultiStepLR", "milestones": [70000], "gamma": 0.1}
    assert cfg["evaluator_cfg"]["sampler"]["batch_size"] == 4


@pytest.mark.parametrize("name", ["metagait", "gaitgl", "metagait-paper", "demo"])
def test_shipped_configs(name):
    cfg = load_config(REPO / "configs" / f"{name}.yaml").to_dict()
    assert cfg["model_cfg"]["model"] == {"gaitgl": "GaitGL"}.get(name, "MetaGait")
    if name == "gaitgl":  # model_cfg holds the keys of the model it names, no others
        assert "variant" not in cfg["model_cfg"] and cfg["model_cfg"]["init"] == "reference"
    else:
        assert cfg["model_cfg"]["variant"] == ("paper" if name == "metagait-paper" else "reference")
    # the packaged name works from anywhere too
    assert load_config(name).to_dict() == cfg


def test_metagait_recipe_numbers():
    cfg = load_config(REPO / "configs" / "metagait.yaml").to_dict()
    assert cfg["optimizer_cfg"] == {"solver": "Adam", "lr": 3.5e-4, "weight_decay": 5e-4}
    sched = cfg["scheduler_cfg"]
    assert sched["milestones"] == [80000, 100000] and sched["warmup_iters"] == 10000
    assert sched["warmup_factor"] == 0.01 and sched["gamma"] == 0.1
    assert cfg["trainer_cfg"]["total_iter"] == 120000
    assert cfg["trainer_cfg"]["sampler"]["batch_size"] == [8, 8]


@pytest.mark.parametrize(
    ("name", "train", "test"),
    [("CASIA-B.json", 74, 50), ("CASIA-B_exclude_005.json", 73, 50), ("OUMVLP.json", 5153, 5154)],
)
def test_packaged_partitions(name, train, test):
    split = json.loads((REPO / "configs" / "partitions" / name).read_text())
    assert len(split["TRAIN_SET"]) == train and len(split["TEST_SET"]) == test
    assert not set(split["TRAIN_SET"]) & set(split["TEST_SET"])
    if name.startswith("CASIA-B"):
        assert ("005" in split["TRAIN_SET"]) == (name == "CASIA-B.json")


def test_dataset_root_relative_to_config_file(tmp_path):
    (tmp_path / "sub" / "data").mkdir(parents=True)
    cfg = load_config(write(tmp_path / "sub", "data_cfg:\n  dataset_root: data\n")).to_dict()
    assert cfg["data_cfg"]["dataset_root"] == str((tmp_path / "sub" / "data").resolve())


def test_missing_data_paths_are_not_an_error_when_loading(tmp_path):
    cfg = load_config(
        write(tmp_path, "data_cfg:\n  dataset_root: /nowhere/at/all\n  dataset_partition: /nowhere/x.json\n")
    ).to_dict()
    assert cfg["data_cfg"]["dataset_root"] == "/nowhere/at/all"
    assert cfg["data_cfg"]["dataset_partition"] == "/nowhere/x.json"


def test_dump_round_trip(tmp_path):
    cfg = load_config(REPO / "configs" / "metagait.yaml")
    again = resolve_config(yaml.safe_load(dump_config(cfg)))
    assert again == cfg


# ----------------------------------------------------------------------------- overrides
def test_overrides_are_yaml_typed():
    cfg = load_config(
        "gaitgl",
        [
            "trainer_cfg.total_iter=1000",
            "trainer_cfg.sampler.batch_size=[2, 4]",
            "optimizer_cfg.lr=1e-3",
            "trainer_cfg.with_test=false",
            "model_cfg.model=MetaGait",
            "loss_cfg.1.scale=16",
        ],
    ).to_dict()
    assert cfg["trainer_cfg"]["total_iter"] == 1000
    assert cfg["trainer_cfg"]["sampler"]["batch_size"] == [2, 4]
    assert cfg["optimizer_cfg"]["lr"] == 1e-3
    assert cfg["trainer_cfg"]["with_test"] is False
    assert cfg["model_cfg"]["model"] == "MetaGait"
    assert cfg["loss_cfg"][1]["scale"] == 16.0


def test_override_switching_scheduler():
    warnings: list[str] = []
    cfg = load_config(
        "metagait",
        ["scheduler_cfg.scheduler=CosineAnnealingLR", "scheduler_cfg.T_max=500"],
        warn=warnings.append,
    ).to_dict()
    assert cfg["scheduler_cfg"] == {"scheduler": "CosineAnnealingLR", "T_max": 500}
    assert any("dropping" in w for w in warnings)


def test_parse_override():
    def parsed(text):
        item = parse_override(text)
        return list(item.path), item.value

    assert parsed("a.b=[1, 2]") == (["a", "b"], [1, 2])
    assert parsed("a.b=hello world") == (["a", "b"], "hello world")
    assert parsed("a.b.c=") == (["a", "b", "c"], None)


@pytest.mark.parametrize("path", ["/x/pkl #1", "/x/a: b", "/x/on", "/x/null", "*star", "&anchor", "/x/[1]"])
def test_path_and_string_values_are_never_read_as_yaml(path):
    """issue 19.2: '#' and other YAML-significant text in a path (or a run name) stay in it,
    whether the path comes as --set text or as a typed option."""
    from gaitcli.config import Override

    cfg = load_config(None, [f"data_cfg.dataset_root={path}", f"trainer_cfg.save_name=run {path}"])
    assert cfg.data.dataset_root == Path(path).resolve() if not path.startswith("/") else Path(path)
    assert cfg.trainer.save_name == f"run {path}"
    typed = load_config(None, [Override(("data_cfg", "dataset_root"), path)])
    assert typed.data.dataset_root == cfg.data.dataset_root
    # a nullable string still takes null, and numbers / lists keep their YAML reading
    cfg = load_config(None, ["data_cfg.test_dataset_name=null", "trainer_cfg.sampler.batch_size=[2, 3]"])
    assert cfg.data.test_dataset_name is None and cfg.trainer.sampler.batch_size == (2, 3)


def test_a_folder_named_like_a_packaged_config_does_not_hide_it(tmp_path, monkeypatch):
    """issue 19.1: './demo/' (gait demo's default work folder) in the working folder."""
    from gaitcli.config import find_config_file

    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo").mkdir()
    assert load_config("demo").model.name == "MetaGait"
    assert find_config_file("demo").parent.name in ("configs", "_configs")
    (tmp_path / "mine.yaml").write_text("trainer_cfg: {total_iter: 7}\n")
    assert load_config("mine.yaml").trainer.total_iter == 7  # an existing file is that file
    (tmp_path / "metagait").write_text("trainer_cfg: {total_iter: 9}\n")
    assert load_config("metagait").trainer.total_iter == 9  # ... even when it shadows a name
    with pytest.raises(ConfigError, match="is a folder"):
        load_config("./demo")  # a slash makes it a path
    with pytest.raises(ConfigError, match="not found"):
        load_config("sub/metagait.yaml")


def test_typed_config_round_trips_and_is_frozen():
    import dataclasses

    from gaitcli.config_types import GaitConfig

    for name in ("metagait", "gaitgl", "casia-b-cpu", "demo"):
        cfg = load_config(name)
        assert GaitConfig.from_dict(cfg.to_dict()) == cfg
        with pytest.raises(dataclasses.FrozenInstanceError):
            cfg.trainer.total_iter = 3  # type: ignore[misc]


def test_every_schema_key_has_a_typed_field():
    import dataclasses

    from gaitcli.config_schema import SCHEMA
    from gaitcli.config_types import SECTION_FIELDS, GaitConfig

    cfg = load_config(None)
    for section, keys in SCHEMA.items():
        if section in ("loss_cfg", "model_cfg", "optimizer_cfg", "scheduler_cfg"):
            continue  # a list / the model's own dataclass / torch keyword arguments
        value = getattr(cfg, SECTION_FIELDS[section])
        fields = {f.name for f in dataclasses.fields(value)}
        assert fields == set(keys), section
        for key, spec in keys.items():
            if spec.children:
                assert {f.name for f in dataclasses.fields(getattr(value, key))} == set(spec.children)
    assert {f.name for f in dataclasses.fields(GaitConfig)} == set(SECTION_FIELDS.values())


def test_stored_config_migrates_from_format_1_and_refuses_a_newer_one():
    from gaitcli.config import config_from_stored, migrate_config
    from gaitcli.config_types import CONFIG_FORMAT

    old = yaml.safe_load((FIXTURES / "stored_config_v1.yaml").read_text())
    assert "config_format" not in old and old["model_cfg"]["variant"] == "reference"  # a GaitGL with variant
    cfg = config_from_stored(old, "old.safetensors")
    assert cfg.model.name == "GaitGL" and "variant" not in cfg.model.values
    newer = {**old, "config_format": CONFIG_FORMAT + 1}
    with pytest.raises(ConfigError, match="newer gaitcli"):
        migrate_config(newer, "new.safetensors")
    assert dump_config(cfg).startswith(f"config_format: {CONFIG_FORMAT}\n")
    assert config_from_stored(yaml.safe_load(dump_config(cfg)), "x") == cfg


def test_stored_config_migrates_from_format_2_to_the_settings_it_trained_with():
    """Format 2 had no trainer_cfg.kernel_choice: the run trained with enable_bfloat16 and
    channels_last as written, so it migrates to ``config`` (not to casia-b-cpu's ``auto``)."""
    from gaitcli.config import config_from_stored, resolve_config

    old = yaml.safe_load((FIXTURES / "stored_config_v2.yaml").read_text())
    assert old["config_format"] == 2 and "kernel_choice" not in old["trainer_cfg"]
    cfg = config_from_stored(old, "v2.safetensors")
    assert cfg.trainer.kernel_choice == "config" and cfg.trainer.enable_bfloat16
    assert cfg.model.settings.channels_last
    # a file without config_format (a user's) that sets it keeps it
    mine = resolve_config({"trainer_cfg": {"kernel_choice": "auto"}}, "mine.yaml")
    assert mine.trainer.kernel_choice == "auto"


# ----------------------------------------------------------------------------- errors
ERROR_CASES = [
    (
        "trainer_cfg:\n  totl_iter: 5\n",
        [],
        ["unknown key 'trainer_cfg.totl_iter'", "did you mean 'trainer_cfg.total_iter'"],
    ),
    ("traner_cfg:\n  total_iter: 5\n", [], ["unknown section 'traner_cfg'", "did you mean 'trainer_cfg'"]),
    ("trainer_cfg:\n  total_iter: abc\n", [], ["trainer_cfg.total_iter must be an integer", "'abc'"]),
    ("trainer_cfg:\n  with_test: 3\n", [], ["trainer_cfg.with_test must be true or false"]),
    (
        "trainer_cfg:\n  sampler:\n    sample_type: fixed_orderd\n",
        [],
        ["is not one of", "did you mean 'fixed_ordered'"],
    ),
    ("trainer_cfg:\n  sampler:\n    batch_size: [8]\n", [], ["batch_size must be [P, K]"]),
    (
        "trainer_cfg:\n  sampler:\n    bach_size: [8, 8]\n",
        [],
        ["trainer_cfg.sampler.bach_size", "did you mean 'trainer_cfg.sampler.batch_size'"],
    ),
    ("model_cfg:\n  model: MetaGiat\n", [], ["did you mean 'MetaGait'"]),
    ("model_cfg:\n  channels: 128\n", [], ["model_cfg.channels must be a list of integers"]),
    ("loss_cfg:\n  - type: TripletLos\n", [], ["unknown loss 'TripletLos'", "did you mean 'TripletLoss'"]),
    (
        "loss_cfg:\n  - type: TripletLoss\n    margn: 0.2\n",
        [],
        ["loss_cfg[0].margn", "did you mean 'loss_cfg[0].margin'"],
    ),
    ("optimizer_cfg:\n  solver: Sgd\n", [], ["unknown optimiser", "did you mean 'SGD'"]),
    ("optimizer_cfg:\n  momentm: 0.9\n", [], ["optimizer_cfg.momentm", "Adam takes"]),
    ("scheduler_cfg:\n  scheduler: CosineAnnealingLR\n", [], ["CosineAnnealingLR needs T_max"]),
    ("scheduler_cfg:\n  gama: 0.2\n", [], ["did you mean 'scheduler_cfg.gamma'"]),
    (
        "evaluator_cfg:\n  transform:\n    - type: BaseSilCutting\n",
        [],
        ["unknown transform type", "BaseSilCuttingTransform"],
    ),
    ("- a\n- b\n", [], ["top level must be a mapping"]),
    ("trainer_cfg: [1, 2]\n", [], ["trainer_cfg must be a mapping"]),
    ("trainer_cfg:\n  total_iter: [1\n", [], ["not valid YAML", "line"]),
    (
        "",
        ["trainer_cfg.totl_iter=5"],
        ["trainer_cfg.totl_iter=5", "did you mean 'trainer_cfg.total_iter'"],
    ),
    ("", ["trainer_cfg.total_iter=ten"], ["trainer_cfg.total_iter=ten", "must be an integer"]),
    ("", ["trainer_cfg"], ["expected section.key=value"]),
    ("", ["loss_cfg.7.margin=1"], ["no loss at index '7'"]),
    ("", ["nosuch.key=1"], ["unknown section 'nosuch'"]),
    (
        "trainer_cfg:\n  total_iter: 5\n  total_iter: 6\n",
        [],
        ["key 'total_iter' is given twice", "lines 2 and 3"],
    ),
    (
        "trainer_cfg: {}\nmodel_cfg: {}\ntrainer_cfg: {}\n",
        [],
        ["key 'trainer_cfg' is given twice", "lines 1 and 3"],
    ),
    ("", ["evaluator_cfg.probe_sets={a: [nm], a: [bg]}"], ["key 'a' is given twice"]),
    ("", ["optimizer_cfg.lr=-0.001"], ["optimizer_cfg.lr must be > 0"]),
    ("scheduler_cfg:\n  gamma: -1\n", [], ["scheduler_cfg.gamma must be in (0, 1]"]),
    (
        "model_cfg:\n  init: xavier\n",
        [],
        ["model_cfg.init = 'xavier' is not one of reference, torch, kaiming"],
    ),
    ("model_cfg:\n  model: GaitGL\n  mtpp: true\n", [], ["unknown key 'model_cfg.mtpp'"]),
]


@pytest.mark.parametrize(("text", "overrides", "expected"), ERROR_CASES)
def test_errors_are_one_line_and_name_the_key(tmp_path, text, overrides, expected):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides)
    message = str(info.value)
    assert "\n" not in message
    for part in expected:
        assert part in message, message
    if not overrides:
        assert str(path) in message  # names the file


def test_missing_config_file_lists_packaged_ones(tmp_path):
    with pytest.raises(ConfigError, match="config file not found.*metagait"):
        load_config(tmp_path / "nope.yaml")


# ----------------------------------------------------------------------------- CLI
def test_cli_config_prints_resolved_yaml(tmp_path):
    result = CliRunner().invoke(
        app, ["config", str(FIXTURES / "metagait_authors.yaml"), "--set", "trainer_cfg.total_iter=7"]
    )
    assert result.exit_code == 0, result.output
    assert "total_iter: 7" in result.stdout


def test_cli_config_error_exit_2_one_line(tmp_path):
    path = write(tmp_path, "trainer_cfg:\n  totl_iter: 5\n")
    result = CliRunner().invoke(app, ["config", str(path)])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "did you mean 'trainer_cfg.total_iter'" in lines[0]
    assert "Traceback" not in result.output


def test_config_doc_matches_schema():
    from gaitcli.config_doc import render_reference

    page = (REPO / "docs" / "config.md").read_text()
    assert render_reference() in page, "docs/config.md is stale: run python -m gaitcli.config_doc --write"


def test_resolving_a_resolved_config_changes_nothing():
    for cfg in (resolve_config({}), load_config("metagait"), load_config(FIXTURES / "opengait_gaitgl.yaml")):
        assert resolve_config(cfg) == cfg


def test_an_argument_of_another_optimiser_is_dropped_with_a_warning_as_opengait_does(tmp_path):
    # OpenGait's gaitpart.yaml carries momentum with solver: Adam; OpenGait drops it with a log line
    from gaitcli.config import load_config

    path = tmp_path / "c.yaml"
    path.write_text("optimizer_cfg: {solver: Adam, lr: 0.0001, momentum: 0.9, weight_decay: 0.0}\n")
    warnings: list[str] = []
    cfg = load_config(path, warn=warnings.append)
    assert "momentum" not in cfg.to_dict()["optimizer_cfg"]
    assert any("ignoring optimizer_cfg.momentum" in w for w in warnings)
    # a key no optimiser takes is still a typo, and an error
    path.write_text("optimizer_cfg: {solver: Adam, momentumm: 0.9}\n")
    with pytest.raises(ConfigError, match="momentumm"):
        load_config(path)


def test_an_opengait_neck_class_count_is_the_resolved_class_num(tmp_path):
    # DeepGaitV2_gait3d.yaml gives 3000 classes only as SeparateBNNecks.class_num
    path = tmp_path / "c.yaml"
    path.write_text("model_cfg: {model: DeepGaitV2, SeparateBNNecks: {class_num: 3000}}\n")
    assert load_config(path).to_dict()["model_cfg"]["class_num"] == 3000
    path.write_text("model_cfg: {model: GaitGL}\n")
    assert load_config(path).to_dict()["model_cfg"]["class_num"] == 74
