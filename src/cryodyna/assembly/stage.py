"""What differs between ``train-atom`` and ``train-cg``: the nodes (residues or MARTINI beads),
their graph and their priors; preparing a run's inputs once, and rebuilding them read-only."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cryodyna import distributed
from cryodyna.assembly.cg_prep import forcefield_of, load_cg, prepare_cg
from cryodyna.assembly.model import bead_graph, build_image_model, build_model, residue_graph, write_node_models
from cryodyna.assembly.priors import PriorSet, build_priors
from cryodyna.config.schema import TrainAtomConfig, TrainCGConfig
from cryodyna.errors import CryodynaError
from cryodyna.imaging.image_model import ImageModel
from cryodyna.io.structure import Structure, read_structure
from cryodyna.models.deformation import DeformationModel
from cryodyna.physics.forcefield import MartiniForceField
from cryodyna.runs.layout import RunFolder
from cryodyna.runs.read import load_weights, read_run
from cryodyna.structure.graph import NodeGraph
from cryodyna.structure.secondary import secondary_structure


class Stage:
    """The residue (``kind="atom"``) or bead (``kind="cg"``) level of a run with config ``cfg``."""

    def __init__(self, kind: str, cfg: TrainAtomConfig | TrainCGConfig):
        self.kind, self.cfg = kind, cfg
        self.cg = None

    def prepare_inputs(self, structure: Structure, run: RunFolder, source) -> None:
        """Rank 0 writes what the graph is built on into ``RUN/inputs`` when it is missing or stale:
        the secondary structure (so a saved run's graph never changes) and, at bead level, the
        mapped and minimised MARTINI model for the current ``martini`` settings."""
        if distributed.is_main():
            run.inputs.mkdir(parents=True, exist_ok=True)
            if not run.secondary_structure.is_file():
                run.secondary_structure.write_text("".join(secondary_structure(structure)) + "\n")
            if self.kind == "cg" and not self._cg_is_current(run):
                prepare_cg(structure, self.cfg.martini, run.inputs, source)
                run.martini_settings.write_text(self.cfg.martini.model_dump_json())
        distributed.barrier()

    def _cg_is_current(self, run: RunFolder) -> bool:
        settings = run.martini_settings
        return run.cg_model.is_file() and settings.is_file() and settings.read_text() == self.cfg.martini.model_dump_json()

    def graph(self, structure: Structure, run: RunFolder, source) -> NodeGraph:
        """The node graph from the run's prepared inputs (read only)."""
        if self.kind == "atom":
            return residue_graph(structure, self.cfg, source, self._secondary_structure(structure, run))
        if not self._cg_is_current(run):
            raise CryodynaError(f"{run.root}: the MARTINI model of this run ({run.cg_model}) is missing or was made with "
                                "other martini settings; run the same train-cg command again to prepare it")
        self.cg = load_cg(run.cg_model)
        return bead_graph(structure, self.cg, self.cfg)

    @staticmethod
    def _secondary_structure(structure: Structure, run: RunFolder) -> np.ndarray:
        """The run's recorded secondary structure, or (a run from before it was recorded) computed now."""
        if not run.secondary_structure.is_file():
            return np.array(secondary_structure(structure), dtype=object)
        letters = run.secondary_structure.read_text().strip()
        if len(letters) != structure.n_residues:
            raise CryodynaError(f"{run.secondary_structure}: {len(letters)} residues, the model has {structure.n_residues}; "
                                "use --restart")
        return np.array(list(letters), dtype=object)

    def forcefield(self) -> MartiniForceField | None:
        """The MARTINI force field of the beads (None at residue level; after :meth:`graph`)."""
        return None if self.kind == "atom" else forcefield_of(self.cg, self.cfg.martini)

    def priors(self, graph: NodeGraph, device) -> PriorSet:
        """The configured priors of ``graph`` on ``device``."""
        return build_priors(graph, self.cfg.loss, self.forcefield(), device)


@dataclass
class LoadedRun:
    """A trained ``train-atom``/``train-cg`` run rebuilt from its folder: model (eval mode), node
    graph, MARTINI force field (bead level), run facts and config."""

    model: DeformationModel
    graph: NodeGraph
    forcefield: MartiniForceField | None
    info: dict
    cfg: TrainAtomConfig | TrainCGConfig

    def image_model(self) -> ImageModel:
        """The image model the run trained with (its box, pixel size and low-pass, from ``run.json``)."""
        return build_image_model(self.graph, self.cfg, int(self.info["box"]), float(self.info["apix"]), float(self.info["lowpass"]))

    def write_models(self, path: Path, coords: np.ndarray, bfactors: np.ndarray | None = None) -> None:
        """Node models (K, N, 3) as a multi-model PDB/mmCIF (see :func:`write_node_models`)."""
        write_node_models(self.graph, path, coords, bfactors)


def load_run(run_dir: Path, checkpoint: Path | None = None, device: str = "cpu") -> LoadedRun:
    """Rebuild the model of a ``train-atom`` or ``train-cg`` run and load its weights
    (``checkpoints/last.pt`` by default), without writing anything."""
    info, cfg = read_run(run_dir, ("atom", "cg"))
    stage = Stage(info["task"], cfg)
    graph = stage.graph(read_structure(info["model"]), RunFolder(run_dir), info["model"])
    model = build_model(graph, cfg, int(info["box"]))
    load_weights(model, run_dir, checkpoint)
    dev = distributed.resolve_device(device)
    return LoadedRun(model.to(dev).eval(), graph, stage.forcefield(), info, cfg)
