"""Atomic checkpoint files and RNG state capture."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

from cryodyna.errors import CryodynaError
from cryodyna.runs.layout import RunFolder


def save_atomic(obj, path: Path) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename over ``path``: a crash
    never leaves a half-written checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def link_atomic(link: Path, target: str) -> bool:
    """Point the symbolic link ``link`` at ``target`` (relative to its folder), replacing it in one
    rename; False where the file system has no symbolic links."""
    tmp = link.with_name(f".{link.name}.tmp{os.getpid()}")
    try:
        tmp.unlink(missing_ok=True)
        os.symlink(target, tmp, target_is_directory=True)
        os.replace(tmp, link)
    except OSError:
        tmp.unlink(missing_ok=True)
        return False
    return True


def read_checkpoint(path: Path, map_location="cpu") -> dict:
    """A checkpoint written by :func:`save_atomic`; a truncated or corrupt file is a one-line
    error naming it, with the evaluation checkpoints of its run that could replace it."""
    path = Path(path)
    if not path.is_file():
        raise CryodynaError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # torch raises assorted errors for damaged zip archives
        others = [p for p in RunFolder(path.parent.parent).evaluation_checkpoints() if p != path]
        hint = (f"resume from the newest evaluation instead (--resume {others[-1]}), or " if others else "") + \
            "delete it and add --restart to start over"
        raise CryodynaError(f"{path}: cannot read this checkpoint, it is truncated or corrupt "
                            f"({type(exc).__name__}); {hint}") from None


def load_model_state(model: torch.nn.Module, state: dict, path: Path) -> None:
    """Load the weights ``state`` (read from ``path``) into ``model``; weights of another shape (a
    graph built differently, e.g. by an older cryodyna) are a one-line error."""
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        if "size mismatch" not in str(exc):
            raise
        raise CryodynaError(f"{path}: its weights do not fit the model built for this run (the node graph differs: "
                            "another model, settings or cryodyna version built it); train again with --restart "
                            "or a new -o") from None


def rng_state() -> dict:
    """Python, numpy and torch RNG states."""
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` captured."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
