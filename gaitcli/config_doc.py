"""Render the key reference of ``docs/config.md`` from :mod:`gaitcli.config_schema`.

The page's reference section is generated, so it cannot drift from the code:
``python -m gaitcli.config_doc --write`` refreshes it and a test fails when it is stale. The
``model_cfg`` tables come from the registered models' config dataclasses, one per model.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from gaitcli.config_schema import DEFAULT_LOSSES, FOREIGN_KEYS, LOSS_SCHEMAS, SCHEMA, Key, model_keys
from gaitcli.models.registry import default_model_name, model_entries, model_names

BEGIN = "<!-- BEGIN GENERATED KEY REFERENCE (python -m gaitcli.config_doc --write) -->"
END = "<!-- END GENERATED KEY REFERENCE -->"

_SECTION_INTRO = {
    "data_cfg": "Where the prepared data and the split live.",
    "evaluator_cfg": "How `gait eval` (and `with_test`) extracts features and scores them.",
    "model_cfg": "Which network and its settings. The keys depend on `model`: each registered model declares "
    "its own (docs/models.md), and naming another model than the default starts this section from that "
    "model's defaults. The default model is listed first.",
    "optimizer_cfg": "`solver` names any `torch.optim` class; every other key must be one of its arguments "
    "(checked against its signature).",
    "scheduler_cfg": "`warmup` is WarmupMultiStepLR (docs/lr-plot.md); any other name is a "
    "`torch.optim.lr_scheduler` class, and the other keys must be its arguments (a different scheduler "
    "replaces the default section). Every numeric argument of an optimiser or scheduler is range-checked by "
    "its name (below), and both are built on a dummy parameter when the config is validated.",
    "trainer_cfg": "The training loop.",
}


def _fmt(value: object) -> str:
    if value is None:
        return "null"
    return f"`{json.dumps(value)}`"


def _rows(keys: dict[str, Key], prefix: str) -> list[str]:
    rows = []
    for name, key in keys.items():
        dotted = f"{prefix}.{name}"
        if key.type == "section":
            rows.append(f"| `{dotted}` | section | | {key.doc} |")
            rows.extend(_rows(key.children or {}, dotted))
            continue
        kind = key.type.replace("|", " or ") + (" or null" if key.nullable else "")
        doc = key.doc
        if key.choices:
            doc += " One of: " + ", ".join(f"`{c}`" for c in key.choices) + "."
        if key.range is not None:
            doc += f" Range: {key.range.describe()}."
        rows.append(f"| `{dotted}` | {kind} | {_fmt(key.default)} | {doc} |")
    return rows


def _model_tables() -> list[str]:
    names = [default_model_name()] + [n for n in model_names() if n != default_model_name()]
    entries = model_entries()
    aliases: dict[type, list[str]] = {}
    for name in names:
        aliases.setdefault(entries[name].cls, []).append(name)
    out: list[str] = []
    for name in names:
        same = aliases[entries[name].cls]
        if same[0] != name:  # an alias: listed with the first name of its class
            continue
        also = f" (also `model: {'`, `'.join(same[1:])}`: the same network)" if len(same) > 1 else ""
        out += [f"`model: {name}`{also}", "", "| key | type | default | meaning |",
                "| --- | --- | --- | --- |"]
        out += _rows(model_keys(name), "model_cfg")
        out.append("")
    return out


def _argument_ranges() -> list[str]:
    from gaitcli.config_schema import ARGUMENT_RANGES

    items = ", ".join(f"`{name}` {rng.describe()}" for name, rng in ARGUMENT_RANGES.items())
    return [f"Ranges of optimiser and scheduler arguments, by name: {items}.", ""]


def render_reference() -> str:
    """The generated part of docs/config.md."""
    out = [BEGIN, ""]
    for section, keys in SCHEMA.items():
        out.append(f"### `{section}`")
        out.append("")
        if section == "loss_cfg":
            out.append(
                "A list of losses (a single mapping is accepted too); a user list replaces the default list,"
            )
            out.append("and each entry is completed from the defaults of its `type`. Default list:")
            out.append("")
            out.append("```json")
            out.append(json.dumps(DEFAULT_LOSSES))
            out.append("```")
            out.append("")
            for kind, loss_keys in LOSS_SCHEMAS.items():
                out.append(f"`type: {kind}`")
                out.append("")
                out.append("| key | type | default | meaning |")
                out.append("| --- | --- | --- | --- |")
                out.extend(_rows(loss_keys, "loss_cfg[i]"))
                out.append("")
            continue
        out.append(_SECTION_INTRO.get(section, ""))
        out.append("")
        if section == "model_cfg":
            out.extend(_model_tables())
            continue
        out.append("| key | type | default | meaning |")
        out.append("| --- | --- | --- | --- |")
        out.extend(_rows(keys, section))
        out.append("")
        if section == "scheduler_cfg":
            out.extend(_argument_ranges())
    out.append("### Keys accepted from other tools and ignored (with a warning)")
    out.append("")
    for (section, name), reason in FOREIGN_KEYS.items():
        out.append(f"- `{section}.{name}`: {reason}.")
    out.append("")
    out.append(END)
    return "\n".join(out)


def refresh(page: Path) -> bool:
    """Rewrite the generated section of ``page``; True when it changed."""
    text = page.read_text()
    start, end = text.index(BEGIN), text.index(END) + len(END)
    new = text[:start] + render_reference() + text[end:]
    if new != text:
        page.write_text(new)
        return True
    return False


def main(argv: list[str]) -> int:
    page = Path(__file__).resolve().parent.parent / "docs" / "config.md"
    if "--write" in argv:
        print("updated" if refresh(page) else "up to date", page)
        return 0
    print(render_reference())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
