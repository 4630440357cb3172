"""Layout of a run folder (``train-atom``, ``train-cg``, ``train-density`` write one):

```
RUN/.lock  (while a command writes into the folder)
RUN/config.yaml  run.json  command.txt  environment.txt  history.txt  log.txt  metrics.csv  progress.json
RUN/checkpoints/last.pt
RUN/cache/images.npy (+ .json fingerprint)
RUN/inputs/model.pdb  secondary_structure.txt  cg_model.pkl  martini.json ...
RUN/epoch-NNNN_step-NNNNNNN/  one evaluation: ckpt.pt, z.npy, structures (pred.pdb, pca-K.pdb; .cif for models
                               of more than 62 chains) or maps, figures
RUN/latest -> the newest evaluation folder (a symbolic link, where the file system has them)
RUN/halfsets.json  halfset.npy  half-1/  half-2/   a --halfsets run (two run folders sharing RUN/cache)
RUN/analysis/<evaluation>/  RUN/report.html  RUN/index.html   written by cryodyna analyze and the evaluations
```

Only this module spells these names; everything else asks a :class:`RunFolder`.
"""

from __future__ import annotations

from pathlib import Path

EVALUATION_GLOB = "epoch-*_step-*"
HALVES = ("half-1", "half-2")
CG_MODEL = "cg_model.pkl"
STRUCTURE_SUFFIXES = (".pdb", ".cif")  # .cif when the model's chains do not fit the PDB format


class RunFolder:
    """Paths of the run folder ``root`` (nothing is created or read here)."""

    def __init__(self, root: Path | str):
        self.root = Path(root)

    config = property(lambda self: self.root / "config.yaml")
    info = property(lambda self: self.root / "run.json")
    command = property(lambda self: self.root / "command.txt")
    environment = property(lambda self: self.root / "environment.txt")
    history = property(lambda self: self.root / "history.txt")
    log = property(lambda self: self.root / "log.txt")
    metrics = property(lambda self: self.root / "metrics.csv")
    progress = property(lambda self: self.root / "progress.json")
    checkpoints = property(lambda self: self.root / "checkpoints")
    last_checkpoint = property(lambda self: self.root / "checkpoints" / "last.pt")
    cache = property(lambda self: self.root / "cache")
    inputs = property(lambda self: self.root / "inputs")
    secondary_structure = property(lambda self: self.root / "inputs" / "secondary_structure.txt")
    cg_model = property(lambda self: self.root / "inputs" / CG_MODEL)
    martini_settings = property(lambda self: self.root / "inputs" / "martini.json")
    analysis = property(lambda self: self.root / "analysis")
    lock = property(lambda self: self.root / ".lock")
    latest = property(lambda self: self.root / "latest")
    report = property(lambda self: self.root / "report.html")
    index = property(lambda self: self.root / "index.html")

    halfsets_record = property(lambda self: self.root / "halfsets.json")
    halfset_labels = property(lambda self: self.root / "halfset.npy")
    halves = property(lambda self: [RunFolder(self.root / name) for name in HALVES])
    halfset_agreement = property(lambda self: self.root / "halfset_agreement.csv")
    halfset_particles = property(lambda self: self.root / "halfset_particles.csv")

    def model_copy(self, source: Path | str) -> Path:
        """Where the run keeps its copy of the reference model ``source`` (same suffix)."""
        return self.inputs / f"model{Path(source).suffix.lower() or '.pdb'}"

    def image_cache(self, cache_dir: Path | None = None) -> Path:
        """The image cache file (in ``cache_dir`` when given, e.g. shared by half-sets)."""
        return Path(cache_dir or self.cache) / "images.npy"

    @staticmethod
    def evaluation_name(epoch: int, step: int) -> str:
        """Folder name of the evaluation after ``epoch`` epochs and ``step`` steps (sorts in training order)."""
        return f"epoch-{epoch:04d}_step-{step:07d}"

    def evaluation_tmp(self, epoch: int, step: int) -> Path:
        """Where an evaluation is written before it is renamed into place."""
        return self.root / f".{self.evaluation_name(epoch, step)}.tmp"

    def unfinished_evaluations(self) -> list[Path]:
        """Evaluations a crash left half-written."""
        return sorted(self.root.glob(f".{EVALUATION_GLOB}.tmp"))

    def evaluations(self) -> list[Path]:
        """Finished evaluation folders in training order."""
        return sorted(p for p in self.root.glob(EVALUATION_GLOB) if p.is_dir())

    def evaluation_checkpoints(self) -> list[Path]:
        """The checkpoints kept with evaluations, oldest first."""
        return sorted(p for p in self.root.glob(f"{EVALUATION_GLOB}/{EVALUATION_FILES['checkpoint']}"))


EVALUATION_FILES = {"checkpoint": "ckpt.pt", "latents": "z.npy", "encoder_latents": "z_encoder.npy",
                    "refined_particles": "particles_refined.star",
                    "metrics": "evaluation.json"}


def evaluation_file(folder: Path, kind: str) -> Path:
    """A file of evaluation ``folder``: ``checkpoint``, ``latents``, ``encoder_latents``, ``refined_particles`` or
    ``metrics``."""
    return Path(folder) / EVALUATION_FILES[kind]


def structure_file(folder: Path, stem: str) -> Path:
    """Structure ``stem`` (``pred``, ``kmeans``, ``pca-1`` ...) of an evaluation or analysis
    ``folder``: the ``.pdb`` or ``.cif`` file that exists (the ``.pdb`` name when neither does)."""
    for suffix in STRUCTURE_SUFFIXES:
        if (Path(folder) / f"{stem}{suffix}").is_file():
            return Path(folder) / f"{stem}{suffix}"
    return Path(folder) / f"{stem}{STRUCTURE_SUFFIXES[0]}"


def trajectory_files(folder: Path) -> list[Path]:
    """The principal-component trajectories ``pca-K.pdb`` / ``pca-K.cif`` of ``folder``, by K."""
    paths = [p for suffix in STRUCTURE_SUFFIXES for p in Path(folder).glob(f"pca-*{suffix}") if p.stem[4:].isdigit()]
    return sorted(paths, key=lambda p: int(p.stem[4:]))
