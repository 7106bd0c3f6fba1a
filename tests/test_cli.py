"""The command line as a whole: help, version, module entry point, unfinished commands."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from gaitcli import __version__
from gaitcli.cli import app

COMMANDS = ["synth", "prepare", "inspect", "config", "train", "eval", "lr-plot", "convert", "demo"]


def test_help_lists_every_command():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in COMMANDS:
        assert command in result.output


def test_version():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_python_dash_m_entry_point():
    version = [sys.executable, "-m", "gaitcli", "--version"]
    done = subprocess.run(version, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and __version__ in done.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    result = CliRunner().invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
