"""Markdown reference of every command and configuration field, generated from the CLI and the typed
configs, so the reference never drifts from the code.

``docs/reference/commands.md`` and ``configuration.md`` hold it below :data:`MARKER` (readable
without building the site); ``python -m cryodyna.reference`` rewrites them from the code, the
documentation build regenerates them, and a test fails when the committed text is out of date."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from pydantic import BaseModel

from cryodyna.config.load import CONFIGS


def _commands(group, prefix: str = "cryodyna"):
    """(full name, command object) for every leaf command of a typer/click group, in the order of
    ``--help``."""
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):
            yield from _commands(cmd, f"{prefix} {name}")
        else:
            yield f"{prefix} {name}", cmd


def command_names() -> list[str]:
    """Full names of all commands, e.g. ``cryodyna config show``."""
    from cryodyna.cli import app

    return [name for name, _ in _commands(typer.main.get_command(app))]


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def cli_reference_markdown() -> str:
    """One section per command: usage, description and a table of arguments and options."""
    from cryodyna.cli import app

    out = []
    for name, cmd in _commands(typer.main.get_command(app)):
        arguments = [p for p in cmd.params if p.param_type_name == "argument"]
        usage = " ".join(["[OPTIONS]"] + [(p.metavar or p.name.upper()) + ("..." if p.nargs == -1 else "") for p in arguments])
        out += [f"## `{name}`", "", f"```\n{name} {usage}\n```", "", (cmd.help or "").strip().replace("\b\n", ""), ""]
        rows = []
        for p in cmd.params:
            if p.name == "help" or getattr(p, "hidden", False):
                continue
            if p.param_type_name == "argument":
                label, kind = p.metavar or p.name.upper(), "argument"
            else:
                label, kind = ", ".join(p.opts + p.secondary_opts), "option"
            default = "" if p.required or p.default in (None, [], ()) or callable(p.default) else f"`{p.default}`"
            rows.append(f"| `{label}` | {kind}{' (required)' if p.required else ''} | {default} | {_cell(getattr(p, 'help', '') or '')} |")
        if rows:
            out += ["| name | kind | default | description |", "|---|---|---|---|", *rows, ""]
    return "\n".join(out)


def config_fields(model: type[BaseModel], prefix: str = "") -> list[tuple[str, object, str, str]]:
    """(dotted key, default, type, description) of every leaf field of a config schema."""
    rows = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            rows += config_fields(annotation, f"{prefix}{name}.")
        else:
            kind = getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")
            rows.append((f"{prefix}{name}", field.default, kind, field.description or ""))
    return rows


def config_reference_markdown() -> str:
    """One table per configurable command: key, type, default, description (units in brackets)."""
    out = []
    for command, model in CONFIGS.items():
        out += [f"## `{command}`", "", (model.__doc__ or "").strip(), "",
                f"Show as YAML: `cryodyna config show {command}`; override with `--set key=value`.", "",
                "| key | type | default | description |", "|---|---|---|---|"]
        out += [f"| `{key}` | {_cell(kind)} | `{default}` | {_cell(desc)} |" for key, default, kind, desc in config_fields(model)]
        out.append("")
    return "\n".join(out)


MARKER = "<!-- generated from the code below this line by `python -m cryodyna.reference`; do not edit -->"
PAGES = {"reference/commands.md": cli_reference_markdown, "reference/configuration.md": config_reference_markdown}


def regenerated(markdown: str, generate) -> str:
    """``markdown`` up to :data:`MARKER`, followed by freshly generated text."""
    head = markdown.split(MARKER, 1)[0]
    return f"{head}{MARKER}\n\n{generate()}\n"


def main(docs: Path) -> None:
    """Rewrite the generated part of every reference page under ``docs``."""
    for page, generate in PAGES.items():
        path = docs / page
        path.write_text(regenerated(path.read_text(), generate))
        print(f"wrote {path}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs"))
