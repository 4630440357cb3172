"""ChimeraX command scripts (.cxc) that play a run's trajectories as a movie."""

from __future__ import annotations

from pathlib import Path


def chimerax_script(eval_dir: Path, movie: str = "movie.mp4") -> str:
    """Commands that open ``pca-k.pdb`` trajectories as coordinate sets coloured by B-factor (RMSF
    when written by ``cryodyna analyze``), any ``vol_pca_k_*.mrc`` maps as volume series, and record
    a back-and-forth movie of PC1 to ``movie``."""
    eval_dir = Path(eval_dir).resolve()
    lines = ["# cryodyna trajectory movie; open in ChimeraX: open script.cxc", "close session", "set bgColor white",
             "graphics silhouettes true"]
    trajectories = sorted(eval_dir.glob("pca-*.pdb"))
    for model, path in enumerate(trajectories, start=1):
        lines += [f'open "{path}" coordsets true', f"hide #{model} models" if model > 1 else "",
                  f"style #{model} sphere", f"size #{model} atomRadius 1.9", f"color bfactor #{model} palette bluered"]
    maps = sorted(eval_dir.glob("vol_pca_1_*.mrc"))
    if maps:
        first = len(trajectories) + 1
        lines += [f'open {" ".join(f"{chr(34)}{p}{chr(34)}" for p in maps)} vseries true',
                  f"volume #{first} style surface level 0.5 transparency 0.5"]
    lines += ["view", "movie record size 800,800"]
    if trajectories:
        lines += ["coordset #1 1,10 holdSteadyAtoms false", "wait 10", "coordset #1 10,1", "wait 10"]
    if maps:
        lines += [f"vseries play #{len(trajectories) + 1} loop false", "wait 10"]
    lines += [f'movie encode "{movie}" framerate 10']
    return "\n".join(line for line in lines if line) + "\n"
