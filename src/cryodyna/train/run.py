"""Set up and run ``train-atom`` / ``train-cg``: run folder, inputs, model, priors, resume."""

from __future__ import annotations

import contextlib
import logging
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch

from cryodyna import distributed
from cryodyna.assembly.model import build_image_model, build_model
from cryodyna.assembly.stage import Stage
from cryodyna.config.schema import TrainAtomConfig, TrainCGConfig
from cryodyna.errors import CryodynaError
from cryodyna.imaging.filters import default_lowpass
from cryodyna.io.read import read_particles
from cryodyna.io.structure import read_structure
from cryodyna.runs.checkpoint import seed_everything
from cryodyna.runs.layout import RunFolder
from cryodyna.train.preflight import check_model_in_box, check_particle_count, check_unique_images
from cryodyna.train.session import load_images, opened_run, write_run_files
from cryodyna.train.trainer import DeformationTrainer

log = logging.getLogger("cryodyna")


def train_atom(particles: Path, model_path: Path, run_dir: Path, cfg: TrainAtomConfig, **options) -> Path | None:
    """Run (or resume) residue-level training; returns the last evaluation folder.  Options as
    :func:`train_deformation`."""
    return train_deformation(Stage("atom", cfg), particles, model_path, run_dir, **options)


def train_cg(particles: Path, model_path: Path, run_dir: Path, cfg: TrainCGConfig, **options) -> Path | None:
    """Run (or resume) bead-level (MARTINI) training; returns the last evaluation folder.  The CG
    reference (mapped and minimised) is kept in ``RUN/inputs/``."""
    return train_deformation(Stage("cg", cfg), particles, model_path, run_dir, **options)


def train_deformation(stage: Stage, particles: Path, model_path: Path, run_dir: Path, eval_only: bool = False,
                      resume: Path | None = None, restart: bool = False, time_limit_minutes: float | None = None,
                      poses: Path | None = None, ctf: Path | None = None, subset: np.ndarray | None = None,
                      cache_dir: Path | None = None, hooks=()) -> Path | None:
    """Train the deformation model of ``stage``.  Re-running with an existing ``run_dir`` resumes from
    ``checkpoints/last.pt`` unless ``restart``; ``eval_only`` writes one evaluation and stops;
    ``time_limit_minutes`` ends training early (then evaluates); ``poses``/``ctf`` are cryoDRGN
    pickles when ``particles`` is an image stack; ``subset``: train on these particles only (a
    half-set; latents are still written for all); ``cache_dir``: where the image cache lives;
    ``hooks``: evaluation outputs (:class:`~cryodyna.train.loop.EvaluationHook`)."""
    cfg = stage.cfg
    run_dir = Path(run_dir)
    distributed.setup()
    main = distributed.is_main()
    run = RunFolder(run_dir)
    model_copy = run.model_copy(model_path)
    with contextlib.ExitStack() as hold:  # the run folder's lock, held until the command ends
        with opened_run(run_dir, cfg, f"train-{stage.kind}", restart, hold) as changes:
            if main:
                _copy_model(Path(model_path), model_copy, run.last_checkpoint.is_file())
            distributed.barrier()
            seed_everything(cfg.optim.seed)
            structure = read_structure(model_path)  # the user's file (the copy is identical): errors name it
            stage.prepare_inputs(structure, run, model_path)
            graph = stage.graph(structure, run, model_path)
            table = read_particles(particles, datadir=cfg.data.datadir, apix=cfg.data.apix, poses=poses, ctf=ctf)
            check_unique_images(table)
            if subset is None and 0 < cfg.optim.train_particles < len(table):
                subset = np.sort(np.random.default_rng(cfg.optim.seed).choice(len(table), cfg.optim.train_particles, replace=False))
            check_particle_count(table)
            if np.isfinite(table.pixel_size).all() and (table.box > 0).all():
                check_model_in_box(graph.coords, float(np.min(table.box * table.pixel_size)), model_path)
            data = load_images(table, cfg.data, run_dir, cache_dir=cache_dir)
            lowpass = cfg.data.lowpass or default_lowpass(data.apix)
            write_run_files(run_dir, cfg, distributed.resolve_device(cfg.optim.device), {
                "task": stage.kind, "particles": str(Path(particles).resolve()), "model": str(model_copy.resolve()),
                "box": data.d, "apix": data.apix, "lowpass": lowpass, "n_particles": len(data), "n_nodes": graph.n_nodes,
                "n_blocks": graph.n_blocks, **({} if subset is None else {"n_trained_on": int(len(subset))}),
                **{k: str(Path(v).resolve()) for k, v in (("poses", poses), ("ctf", ctf)) if v is not None}}, changes)
            device = distributed.resolve_device(cfg.optim.device)
            model = build_model(graph, cfg, data.d)
            image_model = build_image_model(graph, cfg, data.d, data.apix, lowpass)
            trainer = DeformationTrainer(stage.priors(graph, device), graph, model, image_model, data, cfg.optim, run_dir,
                                         image_weight=cfg.loss.image_weight, context_dropout=cfg.model.context_dropout, table=table,
                                         subset=subset, hooks=hooks, encoder_input=cfg.model.encoder_input)
        if not trainer.resume_or_start(resume) and cfg.model.reference_init and not eval_only:
            trainer.reference_init()
        if main:
            _check_contrast(trainer)
        return trainer.run(eval_only, time_limit_minutes)


def _copy_model(model_path: Path, copy: Path, resumed: bool) -> None:
    """Keep a copy of the reference model in the run folder; a resumed run must use the same one."""
    if model_path.is_dir():
        raise CryodynaError(f"{model_path}: is a folder; MODEL must be a PDB or mmCIF file")
    if model_path.suffix.lower() in {".star", ".cs"}:
        raise CryodynaError(f"{model_path}: is a particle file, not an atomic model: the order is PARTICLES MODEL")
    if model_path.suffix.lower() in {".mrcs", ".mrc", ".map"}:
        raise CryodynaError(f"{model_path}: is a map or image stack, not an atomic model: give the PDB/mmCIF model docked "
                            "in the consensus map (`cryodyna center-origin MODEL MAP -o DIR` puts both in cryodyna's frame)")
    if not model_path.is_file():
        raise CryodynaError(f"{model_path}: model file not found")
    if resumed and copy.is_file():
        if copy.read_bytes() != model_path.read_bytes():
            raise CryodynaError(f"{model_path}: differs from the model this run was trained with ({copy}); add --restart "
                                "to start over in this folder, or choose a new -o")
        return
    copy.parent.mkdir(exist_ok=True)
    if model_path.resolve() != copy.resolve():
        shutil.copyfile(model_path, copy)


@torch.no_grad()
def _check_contrast(trainer: DeformationTrainer) -> None:
    """Warn when reference projections anti-correlate with the data (inverted contrast)."""
    idx = torch.arange(min(256, len(trainer.data)))
    batch = trainer.batch(idx)
    ref = trainer.model.reference.expand(len(idx), -1, -1)
    pred = trainer.image_model.predict(ref, batch["poses"], batch["ctf"])
    rho = 1 - trainer.image_model.loss(pred, trainer.image_model.target(batch["images"]))
    log.info("mean correlation of reference projections with the data: %.4f", float(rho))
    if rho < 0:
        warnings.warn(f"reference projections anti-correlate with the images (mean correlation {float(rho):.3f}): "
                      "the data may have dark protein; set data.invert_contrast=true", stacklevel=2)


