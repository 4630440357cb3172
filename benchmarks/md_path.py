"""A molecular-dynamics path for a second protein: steered all-atom Langevin dynamics in OpenMM.

The progesterone-receptor ligand-binding-domain dimer (1A28 from MDAnalysisTests, 2 x 250
residues; ligand and waters removed, hydrogens added by PDBFixer) is minimised, equilibrated at
300 K with its CA atoms restrained, then pulled: the CA restraint centres move in ``frames`` steps
along a curved path in the space of the two lowest elastic-network modes of the CA trace
(``m1 t + 0.5 m2 sin(pi t)``, scaled to ``amplitude`` Å RMS at the end), with ``steps_per_frame``
steps of 2 fs dynamics after each move.  Everything but the CA positions is free (side chains,
loops, the inter-subunit contacts rearrange as they do in MD), and the CA atoms themselves
fluctuate thermally about their moving centres (restraint 10 kJ/mol/Å^2: about 0.5 Å RMS per
coordinate).  Amber14 with a 1 nm reaction-field cut-off (implicit GB solvent is ~50x slower on a
CPU), HBonds constrained.  The heavy atoms of every frame are returned, superposed on the first by
their CA atoms and centred at its atom centroid.  About 3 minutes on one core; the frames are
cached as a multi-model PDB.

Usage (normally called from ``accuracy_sets.py``):
    python benchmarks/md_path.py OUT.pdb [--frames 21] [--amplitude 6]
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import io
import tempfile
from pathlib import Path

import numpy as np

from cryodyna.io.structure import Structure, read_models, read_structure, write_structure
from cryodyna.simulate.landscape import anm_modes
from cryodyna.structure.align import kabsch

RESTRAINT = 1000.0  # kJ/mol/nm^2 on each CA atom (10 kJ/mol/Å^2)


def source_pdb() -> str:
    """Text of 1A28 from the installed MDAnalysisTests package."""
    spec = importlib.util.find_spec("MDAnalysisTests")
    return gzip.open(Path(next(iter(spec.submodule_search_locations))) / "data" / "1a28.pdb.gz", "rt").read()


def steered_path(frames: int = 21, amplitude: float = 6.0, steps_per_frame: int = 500, seed: int = 0) -> list[Structure]:
    """Heavy-atom frames of the steered path (module docstring)."""
    import openmm
    import openmm.app as app
    import openmm.unit as unit
    import pdbfixer

    fixer = pdbfixer.PDBFixer(pdbfile=io.StringIO(source_pdb()))
    fixer.removeHeterogens(keepWater=False)
    fixer.findMissingResidues()
    fixer.missingResidues = {}
    fixer.findMissingAtoms()
    fixer.addMissingAtoms()
    fixer.addMissingHydrogens(7.0)
    topology = fixer.topology
    system = app.ForceField("amber14-all.xml").createSystem(topology, nonbondedMethod=app.CutoffNonPeriodic,
                                                           nonbondedCutoff=1.0 * unit.nanometer, constraints=app.HBonds)
    ca = np.array([a.index for a in topology.atoms() if a.name == "CA"])
    pull = openmm.CustomExternalForce("0.5*k*((x-x0)^2+(y-y0)^2+(z-z0)^2)")
    pull.addGlobalParameter("k", RESTRAINT)
    for name in ("x0", "y0", "z0"):
        pull.addPerParticleParameter(name)
    start = np.array(fixer.positions.value_in_unit(unit.nanometer))
    for i in ca:
        pull.addParticle(int(i), start[i].tolist())
    system.addForce(pull)
    integrator = openmm.LangevinMiddleIntegrator(300 * unit.kelvin, 1 / unit.picosecond, 0.002 * unit.picoseconds)
    integrator.setRandomNumberSeed(seed + 1)
    sim = app.Simulation(topology, system, integrator, openmm.Platform.getPlatformByName("CPU"), {"Threads": "1"})
    sim.context.setPositions(fixer.positions)
    sim.minimizeEnergy(maxIterations=200)
    sim.context.setVelocitiesToTemperature(300 * unit.kelvin, seed + 1)
    sim.step(2 * steps_per_frame)
    centres = sim.context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.nanometer)[ca]
    modes = anm_modes(centres * 10.0, 2)  # (2, n_ca, 3), unit vectors over all coordinates
    u = np.linspace(0.0, 1.0, frames)
    heavy = np.array([a.index for a in topology.atoms() if a.element is not None and a.element.symbol != "H"])
    coords = []
    for t in u:
        motion = amplitude * (modes[0] * t + 0.5 * modes[1] * np.sin(np.pi * t))  # modes: 1 Å RMS each
        target = centres + motion / 10.0
        for j, i in enumerate(ca):
            pull.setParticleParameters(j, int(i), target[j].tolist())
        pull.updateParametersInContext(sim.context)
        sim.step(steps_per_frame)
        coords.append(sim.context.getState(getPositions=True).getPositions(asNumpy=True).value_in_unit(unit.angstrom)[heavy])
    with tempfile.TemporaryDirectory() as tmp:
        modeller = app.Modeller(topology, fixer.positions)
        modeller.delete([a for a in topology.atoms() if a.element is None or a.element.symbol == "H"])
        with open(f"{tmp}/template.pdb", "w") as f:
            app.PDBFile.writeFile(modeller.topology, modeller.positions, f)
        template = read_structure(Path(f"{tmp}/template.pdb"))
    first = np.asarray(coords[0])
    mask = template.atom_name == "CA"
    origin = first.mean(0)
    out = []
    for x in coords:
        r, shift = kabsch(x[mask], first[mask])
        out.append(template.with_coords((x @ r.T + shift - origin).astype(np.float32)))
    return out


def cached_path(path: Path, **kwargs) -> list[Structure]:
    """The frames in ``path`` (a multi-model PDB), computed and written first when absent."""
    path = Path(path)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        frames = steered_path(**kwargs)
        write_structure(path, frames[0], models=np.stack([f.coords for f in frames]))
    return read_models(path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("--frames", type=int, default=21)
    p.add_argument("--amplitude", type=float, default=6.0)
    args = p.parse_args()
    frames = cached_path(args.out, frames=args.frames, amplitude=args.amplitude)
    ca = [f.coords[f.atom_name == "CA"] for f in frames]
    step = [np.sqrt(((b - a) ** 2).sum(1).mean()) for a, b in zip(ca, ca[1:])]
    end = np.sqrt(((ca[-1] - ca[0]) ** 2).sum(1).mean())
    chord = (ca[-1] - ca[0]).ravel()
    off = [np.sqrt(((d - (d @ chord) / (chord @ chord) * chord) ** 2).reshape(-1, 3).sum(1).mean())
           for d in (x.ravel() - ca[0].ravel() for x in ca)]
    print(f"{len(frames)} frames, {len(ca[0])} residues: CA RMSD first -> last {end:.2f} Å, "
          f"between consecutive frames {np.mean(step):.2f} Å (mean), largest distance from the straight line "
          f"first -> last {max(off):.2f} Å (CA RMS, frame {int(np.argmax(off))})")


if __name__ == "__main__":
    main()
