"""``cryodyna cg-prep``: map a model to MARTINI beads, write its topology and minimise it in its
force field (the CG reference that ``train-cg`` deforms)."""

from __future__ import annotations

import json
import logging
import pickle
from pathlib import Path

import torch

from cryodyna.config.schema import MartiniConfig
from cryodyna.io.structure import Structure, write_structure
from cryodyna.errors import CryodynaError
from cryodyna.physics.forcefield import MartiniForceField
from cryodyna.physics.nonbonded import TABLE_NAME, find_martini3_table
from cryodyna.physics.minimize import minimize
from cryodyna.structure.martini import CGModel, martinize

log = logging.getLogger("cryodyna")

CG_MODEL = "cg_model.pkl"


def forcefield_of(cg: CGModel, cfg: MartiniConfig) -> MartiniForceField:
    """The MARTINI energy of ``cg`` with the configured non-bonded form and parameters: the Martini 3
    Lennard-Jones table (an error when it is not installed, unless ``martini.lj_table=false`` asks
    for the size-based fallback); Martini 2.2 has no installable non-bonded table and runs with its
    bonded terms and the size-based repulsion, which the energy report says."""
    table = None
    if cfg.force_field == "martini3001" and cfg.lj_table:
        table = find_martini3_table()
        if table is None:
            raise CryodynaError(f"no Martini 3 Lennard-Jones table ({TABLE_NAME}) is installed: pip install --no-deps "
                                "martini-shaker (it ships the file), or --set martini.lj_table=false for a size-based "
                                "WCA repulsion instead")
    ff = MartiniForceField(cg.topology, cg.sizes, cfg.nonbonded, table)
    if cfg.force_field == "martini22":
        ff.pair_parameters.source += ("; Martini 2.2 runs with its bonded terms and this fallback (no installable "
                                      "Martini 2.2 non-bonded table)")
    return ff


def restraint_constants(cg: CGModel, cfg: MartiniConfig) -> torch.Tensor:
    """(N,) kJ mol^-1 Å^-2: each bead's restraint to its mapped position in the minimisation
    (``martini.backbone_restraint_k`` on each residue's backbone bead, :meth:`CGModel.backbone_beads`,
    ``martini.restraint_k`` on the others)."""
    k = torch.full((cg.n_beads,), cfg.restraint_k, dtype=torch.float64)
    if cfg.backbone_restraint_k is not None:
        k[torch.as_tensor(cg.backbone_beads()[1])] = cfg.backbone_restraint_k
    return k


def prepare_cg(structure: Structure, cfg: MartiniConfig, out_dir: Path, source=None) -> tuple[CGModel, dict]:
    """Map ``structure`` with martinize2, minimise it (if ``cfg.minimize``) and write to ``out_dir``:
    ``cg.pdb`` (mapped beads), ``<molecule>.itp`` (topologies), ``cg_min.pdb`` (minimised),
    ``energies.json`` (kJ/mol per term before/after) and ``cg_model.pkl`` (for train-cg).
    Returns the minimised model and the energy report."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cg = martinize(structure, cfg.force_field, source)
    template = cg.template(structure)
    write_structure(out_dir / "cg.pdb", template)
    for name, text in cg.itp.items():
        (out_dir / f"{name}.itp").write_text(text)
    ff = forcefield_of(cg, cfg)
    x = torch.as_tensor(cg.coords, dtype=torch.float32)
    if cfg.minimize:
        xm, before, after = minimize(ff, x, restraint_constants(cg, cfg), cfg.minimize_steps)
    else:
        xm, before = x, ff.totals(x)
        after = before
    shift = float((xm - x).norm(dim=-1).pow(2).mean().sqrt())
    cg = cg.with_coords(xm.double().numpy())
    write_structure(out_dir / "cg_min.pdb", template.with_coords(cg.coords))
    report = {"force_field": cfg.force_field, "beads": cg.n_beads, "residues": int(len(set(cg.residue.tolist()))),
              "nonbonded": ff.pair_parameters.source, "energy_before_kj_mol": before, "energy_after_kj_mol": after,
              "rmsd_minimised_to_mapped_A": shift}
    (out_dir / "energies.json").write_text(json.dumps(report, indent=2))
    with open(out_dir / CG_MODEL, "wb") as fh:
        pickle.dump(cg, fh)
    log.info("CG reference: %d beads, energy %.1f -> %.1f kJ/mol", cg.n_beads, before["total"], after["total"])
    return cg, report


def load_cg(path: Path) -> CGModel:
    """A CG model saved by :func:`prepare_cg`."""
    with open(path, "rb") as fh:
        return pickle.load(fh)
