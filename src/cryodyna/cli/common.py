"""The ``cryodyna`` application object, its consoles and the options the commands share."""

from __future__ import annotations

import os

import torch
import typer
from rich.console import Console

from cryodyna import __version__
from cryodyna.threads import choose_threads

app = typer.Typer(
    help="cryodyna: conformational dynamics from cryo-EM particle images with physics-aware priors.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help text is plain: brackets such as "cryodyna[relax]" or "[Å]" stay as written
)
config_app = typer.Typer(help="Show configuration defaults.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(config_app, name="config", help="Show the default configuration of a command as YAML.")


# Help shows conventional placeholders (PATH, TEXT, INTEGER, NUMBER; arguments as PARTICLES MODEL)
# instead of Python type names such as <list[Path]> and {particles}, which recent typer versions print.
PLACEHOLDERS = {"str": "TEXT", "int": "INTEGER", "float": "NUMBER", "path": "PATH", "Path": "PATH", "bool": ""}


def _placeholder(param, ctx) -> str:
    label = _TYPER_DISPLAY_TYPE(param, ctx).strip("<>")
    label = label.removeprefix("list[").removesuffix("]")
    return PLACEHOLDERS.get(label, label.upper())


def _argument_name(param) -> str:
    return (param.metavar or param.name).upper() + ("..." if param.nargs != 1 else "")


def _usage_name(param) -> str:
    return _argument_name(param) if param.required else f"[{_argument_name(param)}]"


_TYPER_DISPLAY_TYPE = getattr(getattr(typer.core, "_TyperParameter", None), "display_type", None)
if _TYPER_DISPLAY_TYPE is not None:  # typer >= 0.20; older versions print click's placeholders already
    typer.core._TyperParameter.display_type = _placeholder
    typer.core.TyperArgument._usage_display_name = _usage_name
    typer.core.TyperArgument._rich_display_name = _argument_name
console = Console(quiet=os.environ.get("RANK", "0") != "0")  # under torchrun only rank 0 reports
err_console = Console(stderr=True, soft_wrap=True)

# options shared by the training commands (typer option objects can be reused)
PARTICLES_ARG = typer.Argument(..., help="Particles: RELION .star, cryoSPARC .cs, or an .mrcs stack with --poses/--ctf.")
RUN_OUT = typer.Option(..., "-o", "--out", help="Run folder (re-running resumes from its last checkpoint).")
CONFIG_OPT = typer.Option(None, "--config", help="YAML config (see `cryodyna config show COMMAND`).")
SET_OPT = typer.Option([], "--set", help="Override a config field, e.g. --set optim.lr=3e-4 (repeatable).")
EPOCHS_OPT = typer.Option(None, help="Shortcut for --set optim.epochs=N.")
KEEP_OPT = typer.Option(None, "--keep-checkpoints", metavar="N|all",
                        help="Evaluation folders that keep their ckpt.pt: the newest N (default 2) plus the one with the best held-out loss, or all (shortcut for --set optim.keep_checkpoints=...).")
EVAL_ONLY_OPT = typer.Option(False, "--eval-only", help="Run one evaluation with the current (or resumed) weights.")
RESUME_OPT = typer.Option(None, "--resume", help="Resume from this checkpoint instead of RUN/checkpoints/last.pt.")
RESTART_OPT = typer.Option(False, "--restart", help="Ignore an existing checkpoint in the run folder.")
TIME_LIMIT_OPT = typer.Option(None, "--time-limit", help="Stop training after this many minutes and evaluate.")
POSES_OPT = typer.Option(None, help="cryoDRGN poses.pkl when PARTICLES is an image stack.")
CTF_OPT = typer.Option(None, help="cryoDRGN ctf.pkl when PARTICLES is an image stack.")


def with_keep(settings: list[str], keep: str | None) -> list[str]:
    """``--set`` overrides plus ``--keep-checkpoints``."""
    return list(settings) + ([f"optim.keep_checkpoints={keep}"] if keep is not None else [])


def _version(value: bool) -> None:
    if value:
        console.print(f"cryodyna {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """cryodyna: conformational dynamics from cryo-EM particle images with physics-aware priors."""
    torch.set_num_threads(choose_threads().threads)  # one per free core: threads on busy cores slow every command
