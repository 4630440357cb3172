"""ChimeraX command scripts (.cxc) that play a run's trajectories as a movie."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cryodyna.io.mrc import read_volume
from cryodyna.io.structure import model_count
from cryodyna.runs.layout import RunFolder, trajectory_files
from cryodyna.runs.read import latest_evaluation


def map_level(path: Path) -> float:
    """Surface level of a map from its statistics: mean + 2.5 standard deviations, which encloses
    the molecule in maps of any scale."""
    data = np.asarray(read_volume(path)[0], dtype=np.float64)
    return float(data.mean() + 2.5 * data.std())


def chimerax_script(eval_dir: Path, script: Path, movie: str = "movie.mp4") -> str:
    """Commands for a script written to ``script``: every ``pca-K.pdb`` (or ``.cif``) trajectory of ``eval_dir``
    as coordinate sets coloured by B-factor (RMSF when written by ``cryodyna analyze``) and every
    ``vol_pca_K_*.mrc`` series as a volume series (surface level from the map statistics), played
    one principal component after the other into ``movie``.  Paths are relative to the script's
    folder (ChimeraX runs a script from there), so the folder can be moved as a whole."""
    base = Path(script).resolve().parent

    def rel(p: Path) -> str:
        return f'"{os.path.relpath(Path(p).resolve(), base)}"'

    eval_dir = Path(eval_dir)
    lines = ["# cryodyna trajectory movie; in ChimeraX: open " + Path(script).name, "set bgColor white",
             "graphics silhouettes true"]
    trajectories = trajectory_files(eval_dir)
    series = []
    for k in sorted({int(p.name.split("_")[2]) for p in eval_dir.glob("vol_pca_*_*.mrc")}):
        series.append(sorted(eval_dir.glob(f"vol_pca_{k}_*.mrc")))
    model = 0
    for path in trajectories:
        model += 1
        lines += [f"open {rel(path)} coordsets true", f"style #{model} sphere", f"size #{model} atomRadius 1.9",
                  f"color bfactor #{model} palette bluered", f"hide #{model} models"]
    for maps in series:
        model += 1
        lines += [f"open {' '.join(rel(p) for p in maps)} vseries true",
                  f"volume #{model} style surface level {map_level(maps[0]):.4g} transparency 0.5", f"hide #{model} models"]
    lines += ["view", "movie record size 800,800"]
    for m, path in enumerate(trajectories, start=1):
        frames = model_count(path)
        lines += [f"show #{m} models", f"2dlabels text 'PC {path.stem.split('-')[1]}' xpos 0.03 ypos 0.92 size 20",
                  f"coordset #{m} 1,{frames} holdSteadyAtoms false", "wait", f"coordset #{m} {frames},1", "wait",
                  f"hide #{m} models", "2dlabels delete"]
    for m, maps in enumerate(series, start=len(trajectories) + 1):
        lines += [f"show #{m} models", f"vseries play #{m} loop false", f"wait {len(maps)}", f"hide #{m} models"]
    lines += [f'movie encode "{movie}" framerate 10']
    return "\n".join(lines) + "\n"


def trajectory_folder(run: Path) -> Path:
    """The folder whose trajectories a script plays: ``run`` itself when it holds ``pca-*.pdb``, else
    the analysis of the latest evaluation (RMSF-coloured) when ``cryodyna analyze`` made one, else
    the latest evaluation."""
    if trajectory_files(run):
        return Path(run)
    latest = latest_evaluation(run)
    analysed = RunFolder(run).analysis / latest.name
    return analysed if analysed.is_dir() else latest
