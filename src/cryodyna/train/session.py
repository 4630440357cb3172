"""Run-folder plumbing shared by every training command: folder checks, log file, resume/restart,
the image cache filled once by rank 0, and the files that make a run transparent (``config.yaml``,
``command.txt``, ``environment.txt``, ``run.json``)."""

from __future__ import annotations

import contextlib
import json
import logging
import platform
import shutil
import sys
import time
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch
from pydantic import BaseModel

from cryodyna.config import dump_yaml
from cryodyna.config.load import load_run_config
from cryodyna.config.schema import ImageDataConfig
from cryodyna.errors import CryodynaError
from cryodyna.io.outputs import check_output_folder
from cryodyna.io.particles import ParticleTable
from cryodyna.progress import progress_bar
from cryodyna import distributed
from cryodyna.data.particles import PreparedParticles, prepare_particles
from cryodyna.runs.layout import RunFolder
from cryodyna.runs.lock import run_lock

log = logging.getLogger("cryodyna")

RUN_MIN_FREE = 200 * 2**20  # bytes a run folder needs at least (checkpoints, evaluations)


def start_run(run_dir: Path, restart: bool) -> None:
    """Rank 0 checks and creates ``run_dir``, opens ``log.txt`` and, with ``restart``, forgets the
    previous checkpoint and metrics; the other processes wait for it."""
    if distributed.is_main():
        run = RunFolder(run_dir)
        check_output_folder(run_dir, RUN_MIN_FREE)
        run_dir.mkdir(parents=True, exist_ok=True)
        _log_to(run.log)
        if restart:
            for p in [run.last_checkpoint, run.metrics, run.secondary_structure]:
                p.unlink(missing_ok=True)
    distributed.barrier()


STRUCTURAL = ("model.", "martini.", "data.box")


def _flat(values: dict, prefix: str = "") -> dict[str, object]:
    out = {}
    for k, v in values.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def changed_settings(run_dir: Path, cfg: BaseModel, kind: str, restart: bool) -> dict[str, tuple[object, object]]:
    """Settings of ``cfg`` that differ from those ``run_dir`` was trained with ({key: (old, new)};
    empty for a new run or with ``restart``).  A changed structural setting (``model.*``,
    ``martini.*``, ``data.box``: they change the networks or the nodes) raises a one-line error
    before anything is written."""
    run = RunFolder(run_dir)
    record = run.config
    if restart or not record.is_file() or not run.last_checkpoint.is_file():
        return {}
    old, new = _flat(load_run_config(kind, record).model_dump()), _flat(cfg.model_dump())
    changed = {k: (old.get(k), v) for k, v in new.items() if old.get(k) != v}
    structural = [k for k in changed if k.startswith(STRUCTURAL)]
    if structural:
        what = "; ".join(f"{k} was {changed[k][0]!r}, now {changed[k][1]!r}" for k in structural)
        raise CryodynaError(f"{run_dir}: this run was trained with other structural settings ({what}); add --restart to "
                            "start over in this folder, or choose a new -o")
    return changed


@contextlib.contextmanager
def opened_run(run_dir: Path, cfg: BaseModel, kind: str, restart: bool,
               hold: contextlib.ExitStack) -> Iterator[dict[str, tuple[object, object]]]:
    """Take the run folder's lock (rank 0, kept on ``hold`` until the caller's stack closes, so for
    the whole command), check its record (:func:`changed_settings`), then open it
    (:func:`start_run`); yields the changed settings.  When the body fails (bad input, say), a
    folder this call created is removed again, so a failed start leaves nothing behind."""
    run_dir = Path(run_dir)
    created = not run_dir.exists()
    if distributed.is_main():
        check_output_folder(run_dir, RUN_MIN_FREE)
        run_dir.mkdir(parents=True, exist_ok=True)
        hold.enter_context(run_lock(run_dir))  # a second writer is refused before anything changes
    try:
        changes = changed_settings(run_dir, cfg, kind, restart)
        start_run(run_dir, restart)
        yield changes
    except BaseException:
        if created and distributed.is_main():
            _close_log()
            shutil.rmtree(run_dir, ignore_errors=True)
        raise


def _close_log() -> None:
    for h in list(log.handlers):
        if isinstance(h, logging.FileHandler):
            h.close()
            log.removeHandler(h)


def _log_to(path: Path) -> None:
    log.setLevel(logging.INFO)
    _close_log()
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)


def load_images(table: ParticleTable, data: ImageDataConfig, run_dir: Path, largest_default_box: int = 128,
                cache_dir: Path | None = None) -> PreparedParticles:
    """Downsampled, masked images of ``table`` (see :func:`prepare_particles`); with
    ``data.cache_images`` rank 0 fills ``images.npy`` in ``cache_dir`` (default ``RUN/cache``)
    first and the others reuse it."""
    cache = RunFolder(run_dir).image_cache(cache_dir) if data.cache_images else None
    main = distributed.is_main()
    prepared = None
    for first in (True, False):
        if main == first:
            with progress_bar("loading images", len(table), enabled=main) as update:
                prepared = prepare_particles(table, data.box, data.mask_radius, data.invert_contrast, update, cache,
                                             largest_default_box)
        distributed.barrier()
    return prepared


def write_run_files(run_dir: Path, cfg: BaseModel, device: torch.device, info: dict,
                    changes: dict[str, tuple[object, object]] | None = None) -> None:
    """Rank 0 writes the record of a new run (resolved ``config.yaml``, ``command.txt``,
    ``run.json``) and ``environment.txt``; a resumed run keeps its record and appends the command
    and the changed settings to ``history.txt``."""
    if not distributed.is_main():
        return
    run = RunFolder(run_dir)
    command = " ".join(sys.argv)
    resumed = run.config.is_file() and run.last_checkpoint.is_file() and changes is not None
    run.environment.write_text(environment_report(device))
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    if resumed:
        changed = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changes.items()) or "no setting changed"
        line = f"{stamp} resumed: {command}\n    {changed}\n"
    else:
        run.config.write_text(dump_yaml(cfg))
        run.command.write_text(command + "\n")
        run.info.write_text(json.dumps({**info, "processes": distributed.world_size()}, indent=2))
        line = f"{stamp} started: {command}\n"
    with open(run.history, "a") as fh:
        fh.write(line)


def environment_report(device: torch.device) -> str:
    """Versions of Python and the key packages, and the device used (for ``environment.txt``)."""
    lines = [f"python {platform.python_version()} ({platform.platform()})", f"device {device}"]
    if device.type == "cuda":
        lines.append(f"gpu {torch.cuda.get_device_name(device)}")
    for pkg in ("cryodyna", "torch", "numpy", "scipy", "gemmi", "mrcfile", "starfile", "mdtraj", "vermouth", "scikit-learn"):
        try:
            lines.append(f"{pkg} {version(pkg)}")
        except PackageNotFoundError:
            lines.append(f"{pkg} not installed")
    return "\n".join(lines) + "\n"
