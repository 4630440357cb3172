"""Set up and run ``train-atom``: run folder, inputs, model construction, resume, evaluation; and
reload a finished run to decode latents (``sample-structures``)."""

from __future__ import annotations

import logging
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch

from cryodyna.config import load_config
from cryodyna.config.schema import BeadModelConfig, TrainAtomConfig, TrainCGConfig
from cryodyna.errors import CryodynaError
from cryodyna.io.read import read_particles
from cryodyna.io.structure import read_structure
from cryodyna.models.decoder import BlockGraphDecoder
from cryodyna.models.deformation import DeformationModel
from cryodyna.models.encoder import ImageEncoder
from cryodyna.structure.graph import NodeGraph, build_bead_graph, build_residue_graph
from cryodyna.structure.secondary import secondary_structure
from cryodyna.train import distributed
from cryodyna.train.checkpoint import seed_everything
from cryodyna.train.image_model import ImageModel
from cryodyna.train.preflight import check_model_in_box, check_particle_count, check_unique_images
from cryodyna.train.bead_task import BeadTask
from cryodyna.train.cg_prep import CG_MODEL, forcefield_of, load_cg, prepare_cg
from cryodyna.train.residue_task import ResidueTask
from cryodyna.train.session import (last_checkpoint, load_images, load_weights, opened_run, read_run,
                                     secondary_structure_file, write_run_files)
from cryodyna.train.loop import resolve_device
from cryodyna.train.trainer import DeformationTrainer

log = logging.getLogger("cryodyna")


def default_lowpass(apix: float) -> float:
    """Low-pass resolution (Å) when none is configured: 2.5 px, but not finer than 6 Å, which a
    model of 2 Å residue Gaussians cannot describe anyway."""
    return max(2.5 * apix, 6.0)


def residue_graph(structure, cfg: TrainAtomConfig, source=None, ss: np.ndarray | None = None) -> NodeGraph:
    """The residue graph of ``structure`` with the configured parameters (``ss``: its three-state
    secondary structure, computed when not given)."""
    m, loss = cfg.model, cfg.loss
    return build_residue_graph(
        structure, sigma=m.gaussian_sigma, knn=m.knn, min_block_length=m.min_block_length,
        intra_chain_cutoff=loss.intra_chain_cutoff, inter_chain_cutoff=loss.inter_chain_cutoff,
        nucleic_cutoff=loss.nucleic_cutoff, clash_distance=loss.clash_distance, source=source, ss=ss,
    )


def run_secondary_structure(structure, run_dir: Path) -> np.ndarray:
    """The three-state secondary structure the run's graph is built on: computed once (rank 0) and
    kept in ``RUN/inputs/secondary_structure.txt``, so that the graph of a saved run never changes."""
    path = secondary_structure_file(run_dir)
    if distributed.is_main() and not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(secondary_structure(structure)) + "\n")
    distributed.barrier()
    letters = path.read_text().strip()
    if len(letters) != structure.n_residues:
        raise CryodynaError(f"{path}: {len(letters)} residues, the model has {structure.n_residues}; use --restart")
    return np.array(list(letters), dtype=object)


def build_model(graph: NodeGraph, cfg: TrainAtomConfig | TrainCGConfig, d: int) -> DeformationModel:
    """Encoder + block-graph decoder for ``graph`` and images of side ``d``."""
    m = cfg.model
    layers = m.attention_layers if m.encoder == "cross-attention" else 0
    encoder = ImageEncoder(d * d, m.encoder_hidden, m.z_dim, layers, m.attention_heads)
    t = graph.tensors()
    decoder = BlockGraphDecoder(t, m.z_dim, m.latent_dim, bead_features=m.bead_features if isinstance(m, BeadModelConfig) else 0)
    if m.reference_init:  # a random output layer, to be trained towards zero by the init stage
        decoder.head[-1].reset_parameters()
    return DeformationModel(encoder, decoder, t["coords"], m.latent_noise)


class _Stage:
    """What differs between train-atom and train-cg: the node graph and the task built on it."""

    def __init__(self, kind: str, cfg):
        self.kind, self.cfg = kind, cfg

    def graph(self, structure, run_dir: Path, source) -> NodeGraph:
        if self.kind == "atom":
            return residue_graph(structure, self.cfg, source, run_secondary_structure(structure, run_dir))
        cached = run_dir / "inputs" / CG_MODEL
        settings = run_dir / "inputs" / "martini.json"
        wanted = self.cfg.martini.model_dump_json()
        fresh = cached.is_file() and settings.is_file() and settings.read_text() == wanted
        if distributed.is_main() and not fresh:  # rank 0 maps and minimises once per martini settings
            prepare_cg(structure, self.cfg.martini, run_dir / "inputs", source)
            settings.write_text(wanted)
        distributed.barrier()
        self.cg = load_cg(cached)
        return bead_graph(structure, self.cg, self.cfg)

    def task(self, graph: NodeGraph, device):
        if self.kind == "atom":
            return ResidueTask(graph, self.cfg.loss, device)
        return BeadTask(graph, forcefield_of(self.cg, self.cfg.martini), self.cfg.loss, device)


def bead_graph(structure, cg, cfg: TrainCGConfig) -> NodeGraph:
    """The bead graph of a CG model with the configured parameters."""
    m, loss = cfg.model, cfg.loss
    return build_bead_graph(structure, cg, knn=m.knn, min_block_length=m.min_block_length,
                            intra_chain_cutoff=loss.intra_chain_cutoff, inter_chain_cutoff=loss.inter_chain_cutoff,
                            nucleic_cutoff=loss.nucleic_cutoff, elastic_scope=loss.elastic_scope,
                            protein_nucleic_cutoff=loss.protein_nucleic_cutoff)


def train_atom(particles: Path, model_path: Path, run_dir: Path, cfg: TrainAtomConfig, **options) -> Path | None:
    """Run (or resume) residue-level training; returns the last evaluation folder.  Options as
    :func:`train_deformation`."""
    return train_deformation(_Stage("atom", cfg), particles, model_path, run_dir, **options)


def train_cg(particles: Path, model_path: Path, run_dir: Path, cfg: TrainCGConfig, **options) -> Path | None:
    """Run (or resume) bead-level (MARTINI) training; returns the last evaluation folder.  The CG
    reference (mapped and minimised) is kept in ``RUN/inputs/``."""
    return train_deformation(_Stage("cg", cfg), particles, model_path, run_dir, **options)


def train_deformation(stage: _Stage, particles: Path, model_path: Path, run_dir: Path, eval_only: bool = False,
                      resume: Path | None = None, restart: bool = False, time_limit_minutes: float | None = None,
                      poses: Path | None = None, ctf: Path | None = None, subset: np.ndarray | None = None,
                      cache_dir: Path | None = None) -> Path | None:
    """Train the deformation model of ``stage``.  Re-running with an existing ``run_dir`` resumes from
    ``checkpoints/last.pt`` unless ``restart``; ``eval_only`` writes one evaluation and stops;
    ``time_limit_minutes`` ends training early (then evaluates); ``poses``/``ctf`` are cryoDRGN
    pickles when ``particles`` is an image stack; ``subset``: train on these particles only (a
    half-set; latents are still written for all); ``cache_dir``: where the image cache lives."""
    cfg = stage.cfg
    run_dir = Path(run_dir)
    distributed.setup()
    main = distributed.is_main()
    model_copy = run_dir / "inputs" / f"model{Path(model_path).suffix.lower() or '.pdb'}"
    with opened_run(run_dir, cfg, f"train-{stage.kind}", restart) as changes:
        if main:
            _copy_model(Path(model_path), model_copy, last_checkpoint(run_dir).is_file())
        distributed.barrier()
        seed_everything(cfg.optim.seed)
        structure = read_structure(model_copy)
        graph = stage.graph(structure, run_dir, model_path)
        table = read_particles(particles, datadir=cfg.data.datadir, apix=cfg.data.apix, poses=poses, ctf=ctf)
        check_unique_images(table)
        check_particle_count(table)
        if np.isfinite(table.pixel_size).all() and (table.box > 0).all():
            check_model_in_box(graph.coords, float(np.min(table.box * table.pixel_size)), model_path)
        data = load_images(table, cfg.data, run_dir, cache_dir=cache_dir)
        lowpass = cfg.data.lowpass or default_lowpass(data.apix)
        write_run_files(run_dir, cfg, resolve_device(cfg.optim.device), {
            "task": stage.kind, "particles": str(Path(particles).resolve()), "model": str(model_copy.resolve()),
            "box": data.d, "apix": data.apix, "lowpass": lowpass, "n_particles": len(data), "n_nodes": graph.n_nodes,
            "n_blocks": graph.n_blocks, **({} if subset is None else {"n_trained_on": int(len(subset))}),
            **{k: str(Path(v).resolve()) for k, v in (("poses", poses), ("ctf", ctf)) if v is not None}}, changes)
        device = resolve_device(cfg.optim.device)
        model = build_model(graph, cfg, data.d)
        image_model = ImageModel(data.d, data.apix, torch.as_tensor(graph.amplitudes), torch.as_tensor(graph.sigmas),
                                 lowpass, cfg.data.lowpass_soft_width, cfg.data.loss_mask_radius, cfg.loss.legacy_correlation)
        trainer = DeformationTrainer(stage.task(graph, device), model, image_model, data, cfg.optim, cfg.analysis, run_dir,
                                     image_weight=cfg.loss.image_weight, context_dropout=cfg.model.context_dropout, table=table,
                                     subset=subset)
    if not trainer.resume_or_start(resume) and cfg.model.reference_init and not eval_only:
        trainer.reference_init()
    if main:
        _check_contrast(trainer)
    return trainer.run(eval_only, time_limit_minutes)


def _copy_model(model_path: Path, copy: Path, resumed: bool) -> None:
    """Keep a copy of the reference model in the run folder; a resumed run must use the same one."""
    if model_path.is_dir():
        raise CryodynaError(f"{model_path}: is a folder; MODEL must be a PDB or mmCIF file")
    if model_path.suffix.lower() in {".star", ".cs", ".mrcs", ".mrc"}:
        raise CryodynaError(f"{model_path}: is a particle or image file, not an atomic model: the order is PARTICLES MODEL")
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
    pred = trainer.image_model.predict(ref, batch["rotations"], batch["shifts"], batch["ctf"])
    rho = 1 - trainer.image_model.loss(pred, trainer.image_model.target(batch["images"]))
    log.info("mean correlation of reference projections with the data: %.4f", float(rho))
    if rho < 0:
        warnings.warn(f"reference projections anti-correlate with the images (mean correlation {float(rho):.3f}): "
                      "the data may have dark protein; set data.invert_contrast=true", stacklevel=2)


def load_run(run_dir: Path, checkpoint: Path | None = None, device: str = "cpu"):
    """Rebuild the model and task of a ``train-atom`` or ``train-cg`` run and load its weights
    (``checkpoints/last.pt`` by default).  Returns (model in eval mode, task)."""
    info, cfg = read_run(run_dir, ("atom", "cg"))
    stage = _Stage(info["task"], cfg)
    graph = stage.graph(read_structure(info["model"]), Path(run_dir), info["model"])
    model = build_model(graph, cfg, int(info["box"]))
    load_weights(model, run_dir, checkpoint)
    dev = resolve_device(device)
    return model.to(dev).eval(), stage.task(graph, dev)


def load_latents(path: Path) -> np.ndarray:
    """Latent rows from ``.npy`` (2-D) or a whitespace-separated text file."""
    path = Path(path)
    if not path.is_file():
        raise CryodynaError(f"{path}: latent file not found")
    z = np.load(path) if path.suffix == ".npy" else np.loadtxt(path, ndmin=2)
    z = np.asarray(z, dtype=np.float32)
    if z.ndim == 1:
        z = z[None]
    if z.ndim != 2:
        raise CryodynaError(f"{path}: expected a 2-D array of latents (K, z_dim), found shape {z.shape}")
    return z


def resolved_config(config: Path | None, overrides: list[str], epochs: int | None, kind: str = "train-atom"):
    """The config of command ``kind`` from a file and ``--set`` overrides (``--epochs`` is a shortcut)."""
    overrides = list(overrides) + ([f"optim.epochs={epochs}"] if epochs is not None else [])
    return load_config(kind, config, overrides)
