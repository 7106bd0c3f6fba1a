"""``gait zoo``: the sub-commands list / get / verify (argument parsing only, like :mod:`gaitcli.cli`;
the work is in :mod:`gaitcli.zoo`, docs/zoo.md).

cli.py registers :data:`zoo_app` (``app.add_typer(zoo_app, name="zoo")``). The consoles, the
one-line error handling and JSON output are :mod:`gaitcli.cli_common`'s, as for every command.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated

import typer

from gaitcli.cli_common import console, handle_errors, out_console, warn, write_json

__all__ = ["zoo_app"]

zoo_app = typer.Typer(
    name="zoo",
    help="OpenGait's released checkpoints: list them, get one (download, check, convert), verify it.",
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

_handle_errors = functools.partial(
    handle_errors, interrupted="[yellow]interrupted[/]: run the same command again to resume a download")


CatalogueOpt = Annotated[Path | None, typer.Option(
    metavar="FILE", help="A zoo catalogue YAML to use instead of the packaged one (also: "
    "GAIT_ZOO_CATALOGUE).")]
JsonOpt = Annotated[str | None, typer.Option(
    metavar="FILE", help="Also write the result as JSON ('-' = stdout).")]
OutOpt = Annotated[Path | None, typer.Option(
    metavar="DIR", help="The zoo folder (default: GAIT_ZOO_DIR, else ~/.cache/gaitcli/zoo).")]


@zoo_app.callback(invoke_without_command=True)
@_handle_errors
def _zoo(ctx: typer.Context, catalogue: CatalogueOpt = None) -> None:
    """OpenGait's released checkpoints (docs/zoo.md). Without a sub-command: the list."""
    if ctx.invoked_subcommand is None:
        _list(catalogue, None)


def _list(catalogue: Path | None, json: str | None) -> None:
    from gaitcli.zoo.catalogue import load_catalogue
    from gaitcli.zoo.render import render_list

    found = load_catalogue(catalogue)
    render_list(found, console if json == "-" else out_console)
    if json:
        write_json(json, {"catalogue": str(found.path), "opengait_commit": found.opengait_commit,
                           "entries": [e.to_json() for e in found.entries]})


@zoo_app.command(name="list")
@_handle_errors
def list_entries(catalogue: CatalogueOpt = None, json: JsonOpt = None) -> None:
    """The catalogue: name, model, data set, published rank-1, pinned SHA-256, address source."""
    _list(catalogue, json)



@zoo_app.command()
@_handle_errors
def get(
    name: Annotated[str, typer.Argument(metavar="NAME", help="A catalogue entry (gait zoo list).")],
    out: OutOpt = None,
    sha256: Annotated[str | None, typer.Option(
        metavar="HEX", help="Pin the SHA-256 you checked against the publisher's, for an entry the catalogue "
        "does not pin yet.")] = None,
    url: Annotated[str | None, typer.Option(
        metavar="URL", help="Download the same file from this address instead (a mirror).")] = None,
    config: Annotated[Path | None, typer.Option(
        metavar="FILE", help="Convert with this config instead of the entry's OpenGait config.")] = None,
    timeout: Annotated[float, typer.Option(
        min=1.0, metavar="SECONDS", help="Give up when the server is silent this long.")] = 30.0,
    overwrite: Annotated[bool, typer.Option(help="Convert again even if the checkpoint is there.")] = False,
    catalogue: CatalogueOpt = None,
    json: JsonOpt = None,
) -> None:
    """Download a checkpoint (resuming a partial one), check its SHA-256, convert it to safetensors."""
    from gaitcli.zoo.catalogue import load_catalogue
    from gaitcli.zoo.get import GetOptions, get_checkpoint
    from gaitcli.zoo.render import render_get

    entry = load_catalogue(catalogue).get(name)
    options = GetOptions(out=out, sha256=sha256, url=url, config=config, timeout=timeout, overwrite=overwrite)
    result = get_checkpoint(entry, options, console=console, warn=warn)
    render_get(result, console if json == "-" else out_console)
    if json:
        write_json(json, result.to_json())


@zoo_app.command()
@_handle_errors
def verify(
    name: Annotated[str, typer.Argument(metavar="NAME", help="A catalogue entry already fetched with get.")],
    data: Annotated[Path, typer.Option(metavar="DIR", help="The prepared test data (id/type/view/*.pkl).")],
    out: OutOpt = None,
    partition: Annotated[Path | None, typer.Option(
        metavar="FILE", help="Partition JSON (default: the config's, else the packaged one).")] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda or auto (default: cuda if present).")] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Sequences per inference batch.")] = None,
    catalogue: CatalogueOpt = None,
    json: JsonOpt = None,
) -> None:
    """Evaluate a fetched checkpoint as gait eval does and print its numbers beside the published ones."""
    from gaitcli.zoo.catalogue import load_catalogue
    from gaitcli.zoo.render import render_verify
    from gaitcli.zoo.verify import verify_checkpoint

    entry = load_catalogue(catalogue).get(name)
    result = verify_checkpoint(entry, data, out=out, partition=partition, device=device,
                               batch_size=batch_size, console=console, warn=warn)
    render_verify(result, console if json == "-" else out_console)
    if json:
        write_json(json, result.to_json())
