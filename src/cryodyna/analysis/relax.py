"""Restrained all-atom energy minimisation of back-mapped models with OpenMM (optional: ``pip install -e
".[relax]"`` in the cryodyna clone).

Each model is completed by PDBFixer (missing heavy atoms such as a terminal OXT, hydrogens at pH 7),
described by Amber14 (proteins, DNA, RNA) in vacuum without cut-off, and minimised with a harmonic
restraint ``k/2 |x - x0|^2`` holding every heavy atom of the input near its back-mapped position, so
bond lengths, angles and clashes are repaired without changing the conformation.  The input's atoms
come back in their order; atoms PDBFixer added are dropped.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from cryodyna.errors import CryodynaError
from cryodyna.io.structure import Structure, write_structure
from cryodyna.structure.martini_nucleic import canonical_atom_name

FORCE_FIELD = "amber14-all.xml"


def _openmm():
    try:
        import openmm
        import openmm.app
        import pdbfixer
    except ImportError:
        raise CryodynaError('relaxing back-mapped models needs OpenMM and PDBFixer: pip install -e ".[relax]" in the cryodyna clone') from None
    return openmm, openmm.app, pdbfixer


def _fixed_model(structure: Structure, coords: np.ndarray, pdbfixer):
    """PDBFixer model of ``structure`` at ``coords`` (A, 3) Å with missing atoms and hydrogens added."""
    with tempfile.TemporaryDirectory(prefix="cryodyna-relax-") as tmp:
        path = Path(tmp) / "model.pdb"
        write_structure(path, structure.with_coords(coords))
        fixer = pdbfixer.PDBFixer(filename=str(path))
    fixer.findMissingResidues()
    fixer.missingResidues = {}
    fixer.findMissingAtoms()
    fixer.addMissingAtoms()
    fixer.addMissingHydrogens(7.0)
    return fixer


def _input_atoms(structure: Structure, topology) -> tuple[np.ndarray, np.ndarray]:
    """(input atom index, OpenMM atom index) of the atoms of ``structure`` found in ``topology``."""
    residues = list(topology.residues())
    if len(residues) != structure.n_residues:
        raise CryodynaError(f"OpenMM read {len(residues)} residues but the model has {structure.n_residues}")
    lookup = {(r, canonical_atom_name(atom.name)): atom.index for r, res in enumerate(residues) for atom in res.atoms()}
    pairs = [(a, lookup[(int(structure.residue[a]), canonical_atom_name(str(structure.atom_name[a])))])
             for a in range(structure.n_atoms) if (int(structure.residue[a]), canonical_atom_name(str(structure.atom_name[a]))) in lookup]
    ours, theirs = np.array(pairs, dtype=np.int64).reshape(-1, 2).T
    return ours, theirs


def relax(structure: Structure, models: np.ndarray, restraint_k: float = 1000.0, max_iterations: int = 500,
          tolerance: float = 10.0) -> np.ndarray:
    """Minimised copies (K, A, 3) Å of all-atom ``models`` (K, A, 3) Å of ``structure``.

    restraint_k: kJ mol^-1 nm^-2 on each input heavy atom; max_iterations: L-BFGS iterations per model
    (0 = until converged); tolerance: kJ mol^-1 nm^-1 RMS force at which to stop."""
    openmm, app, pdbfixer = _openmm()
    forcefield = app.ForceField(FORCE_FIELD)
    out = np.array(models, dtype=np.float64, copy=True)
    for k, coords in enumerate(out):
        fixer = _fixed_model(structure, coords, pdbfixer)
        try:
            system = forcefield.createSystem(fixer.topology, nonbondedMethod=app.NoCutoff, constraints=None)
        except ValueError as exc:
            raise CryodynaError(f"OpenMM cannot parameterise the model with {FORCE_FIELD}: {exc}") from None
        ours, theirs = _input_atoms(structure, fixer.topology)
        heavy = structure.atomic_number[ours] > 1
        restraint = openmm.CustomExternalForce("0.5*k*((x-x0)^2+(y-y0)^2+(z-z0)^2)")
        restraint.addGlobalParameter("k", restraint_k)
        for name in ("x0", "y0", "z0"):
            restraint.addPerParticleParameter(name)
        for a, i in zip(ours[heavy], theirs[heavy]):
            restraint.addParticle(int(i), (coords[a] / 10.0).tolist())
        system.addForce(restraint)
        integrator = openmm.VerletIntegrator(0.001)
        context = openmm.Context(system, integrator, openmm.Platform.getPlatformByName("CPU"))
        context.setPositions(fixer.positions)
        openmm.LocalEnergyMinimizer.minimize(context, tolerance, max_iterations)
        positions = context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(openmm.unit.angstrom)
        out[k, ours] = np.asarray(positions)[theirs]
    return out

