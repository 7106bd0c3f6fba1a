"""Command-line flag names live in cli.py only (issue 19): the layers below name an option by
its parameter (gaitcli.errors.option) and cli.py spells it as a flag when it prints."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import typer

from gaitcli.cli import app
from gaitcli.errors import GaitError, option, options_rendered_by, render

PACKAGE = Path(__file__).resolve().parents[1] / "gaitcli"


def _flags() -> set[str]:
    group = typer.main.get_command(app)
    flags: set[str] = set()
    for command in group.commands.values():  # type: ignore[attr-defined]
        for param in command.params:
            flags.update(o for o in [*param.opts, *param.secondary_opts] if o.startswith("--"))
    return flags


def _strings(tree: ast.AST) -> list[tuple[int, str]]:
    # documentation (module, class, function and attribute docstrings) may show the command line
    docstrings = {id(node.value) for node in ast.walk(tree)
                  if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings]


def test_no_module_below_the_cli_spells_a_flag():
    flags = _flags()
    assert "--overwrite" in flags and "--set" in flags  # the scan sees the real flags
    pattern = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        # the command line: it spells its flags
        if path.name in ("cli.py", "cli_common.py", "cli_video.py", "cli_compare.py"):
            continue
        for line, text in _strings(ast.parse(path.read_text(), str(path))):
            found += [f"{path.relative_to(PACKAGE)}:{line}: {flag}" for flag in pattern.findall(text)
                      if flag in flags]
    assert not found, "\n".join(found)


def test_an_option_reads_as_a_keyword_from_python_and_as_a_flag_from_the_shell(tmp_path):
    from typer.testing import CliRunner

    from gaitcli import cli_common

    error = GaitError(f"{option('batch_size', 0)}: must be at least 1; or drop {option('overwrite')}")
    assert str(error) == "batch_size=0: must be at least 1; or drop overwrite"  # the Python API
    with options_rendered_by(cli_common.flag):
        assert str(error) == "--batch-size 0: must be at least 1; or drop --overwrite"
        assert render(f"{option('set_', 'a.b=1')}") == "--set a.b=1"
    assert str(error).startswith("batch_size=0")  # only while a command runs
    # through the command line: the message names the flag the user typed
    out = tmp_path / "out.safetensors"
    out.write_bytes(b"x")
    result = CliRunner().invoke(app, ["convert", str(tmp_path / "nope.pt"), str(out)])
    assert result.exit_code == 2 and "error:" in result.output
    result = CliRunner().invoke(app, ["train", "-c", "demo", "--device", "cuda"])
    if "CUDA device" in result.output:
        assert "--device cuda" in result.output and "--device cpu" in result.output
