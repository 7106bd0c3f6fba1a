"""What every module of the command line shares: the two consoles, how a parameter of the layers
below is spelt as a flag, the one-line error handling and JSON output.

:mod:`gaitcli.cli`, :mod:`gaitcli.cli_zoo` and :mod:`gaitcli.cli_compare` import it; it imports
none of them (cli.py imports the other two).
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from gaitcli.errors import GaitError, options_rendered_by, render

if TYPE_CHECKING:
    from gaitcli.evaluation.precision import Precision

__all__ = ["FLAGS", "PrecisionOption", "chosen_precision", "console", "flag", "handle_errors", "out_console",
           "precision_note", "warn", "write_json"]

console = Console(stderr=True)
out_console = Console()

# The one place that knows how options are spelt here: messages from the layers below name a
# parameter (gaitcli.errors.option); the flag is "--" + its name with dashes, except these.
FLAGS = {"set_": "--set", "overrides": "--set", "json_out": "--json", "json": "--json", "csv_out": "--csv",
         "map_": "--map", "input_dir": "IN", "output_dir": "OUT", "config_path": "--config",
         "names": "--name", "track_type": "--type", "track_view": "--view"}

F = TypeVar("F", bound=Callable[..., Any])


def flag(name: str, value: str | None) -> str:
    """The flag of the parameter ``name`` (with its value when given)."""
    spelt = FLAGS.get(name, "--" + name.replace("_", "-"))
    return spelt if value is None else f"{spelt} {value}"


def handle_errors(func: F, interrupted: str = "[yellow]interrupted[/]") -> F:
    """Turn :class:`GaitError` into one red line on stderr and its exit code, Ctrl-C into
    ``interrupted`` and exit code 130; while the command runs, messages name its flags."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with options_rendered_by(flag):
            try:
                return func(*args, **kwargs)
            except GaitError as exc:
                console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
                raise typer.Exit(exc.exit_code) from None
            except KeyboardInterrupt:
                console.print(interrupted)
                raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def warn(message: str) -> None:
    """A warning line on stderr, wrapped by the terminal only where it must."""
    console.print(f"[yellow]warning:[/] {escape(render(message))}", highlight=False, soft_wrap=True)


def write_json(target: str, payload: object) -> None:
    """Write ``payload`` as JSON to ``target`` (``-`` is stdout), atomically for files."""
    from gaitcli.fileio import atomic_write_bytes

    text = json.dumps(payload, indent=2, sort_keys=False) + "\n"
    if target == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        atomic_write_bytes(target, text.encode())


PrecisionOption = Annotated[str | None, typer.Option(
    metavar="fp32|bf16|auto",
    help="Extraction arithmetic: auto (default) is bf16 autocast on a CPU with AVX-512-BF16 or AMX and "
         "fp32 elsewhere (docs/eval.md, Precision).")]


def chosen_precision(precision: str | None, device: str | None) -> Precision:
    """``--precision`` resolved for the device (a bad value is one line, before any work)."""
    from gaitcli.evaluation.precision import resolve_precision
    from gaitcli.runtime.distributed import resolve_devices

    device_type, _ = resolve_devices(device, None, None)
    return resolve_precision(precision, device_type)


def precision_note(chosen: Precision) -> None:
    """The note saying what extraction runs in and why (once every input has been checked)."""
    console.print(f"[cyan]note:[/] extraction in {escape(chosen.describe())}", highlight=False,
                  soft_wrap=True)
