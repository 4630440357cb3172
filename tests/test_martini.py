"""Bead level: topology reader, MARTINI energies (hand values, gradcheck), neighbour lists,
martinize2 mapping, cg-prep, train-cg and back-mapping."""

import math
import warnings

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cryodyna.analysis.backmap import backmap, geometry_report
from cryodyna.cli import app
from cryodyna.config import load_config
from cryodyna.errors import InputError
from cryodyna.io.itp import read_itp
from cryodyna.io.structure import read_models, read_structure
from cryodyna.physics.energy import angle_energy, bond_energy, dihedral_angle, improper_energy, pair_energy, proper_energy
from cryodyna.physics.forcefield import MartiniForceField
from cryodyna.physics.nonbonded import neighbour_pairs, read_lj_table
from cryodyna.structure.martini import martinize
from cryodyna.assembly.stage import load_run
from cryodyna.pipelines.training import train_cg

ITP = """\
[ moleculetype ]
test 1
[ atoms ]
  1 Q5   1 MET BB   1  1.0
  2 SC2  1 MET SC1  2  0.0
  3 TC3  2 ALA BB   3  0.0
  4 P2   3 GLY BB   4 -1.0
[ bonds ]
  1 2 1 0.40 5000 ; BB-SC
#ifdef FLEXIBLE
  2 3 1 0.30 1000000
#endif
[ constraints ]
#ifndef FLEXIBLE
  2 3 1 0.30
#endif
[ angles ]
  1 2 3 10 120 20
  2 3 4 2 100 25
[ dihedrals ]
  1 2 3 4 1 -120 400 1
  1 2 3 4 9 30 5 2
[ exclusions ]
  1 4
[ dihedrals ]
  4 3 2 1 2 180.0 50.0
"""


def test_itp_reader_units_conditionals_and_terms(tmp_path):
    (tmp_path / "m.itp").write_text(ITP)
    t = read_itp(tmp_path / "m.itp")
    assert list(t.names) == ["BB", "SC1", "BB", "BB"] and list(t.types) == ["Q5", "SC2", "TC3", "P2"]
    np.testing.assert_array_equal(t.bonds, [[0, 1]])  # the FLEXIBLE bond is skipped
    assert t.bond_b0[0] == pytest.approx(4.0) and t.bond_k[0] == pytest.approx(50.0)  # Å, kJ mol^-1 Å^-2
    np.testing.assert_array_equal(t.constraints, [[1, 2]])
    assert t.constraint_b0[0] == pytest.approx(3.0)
    np.testing.assert_array_equal(t.angle_func, [10, 2])
    assert t.angle_theta0[0] == pytest.approx(2 * math.pi / 3)
    assert len(t.propers) == 2 and list(t.proper_mult) == [1, 2] and len(t.impropers) == 1
    assert t.improper_xi0[0] == pytest.approx(math.pi) and t.improper_k[0] == 50.0
    np.testing.assert_array_equal(t.excluded_pairs(), [[0, 1], [0, 3], [1, 2]])
    (tmp_path / "bad.itp").write_text("[ atoms ]\n 1 Q5 1 MET BB 1 1.0\n[ angles ]\n 1 2 3 5 120 20\n")
    with pytest.raises(InputError, match="line 4: angle function type 5 is not supported"):
        read_itp(tmp_path / "bad.itp")


def test_lj_table_reader(tmp_path):
    (tmp_path / "ff.itp").write_text("[ atomtypes ]\nP2 72.0 0.000 A 0.0 0.0\nTC3 36.0 0.000 A 0.0 0.0\n"
                                     "[ nonbond_params ]\nP2 P2 1 0.470 4.50\nP2 TC3 1 0.410 2.70\nTC3 TC3 1 0.340 2.00\n")
    table = read_lj_table(tmp_path / "ff.itp")
    i = table.index(["TC3", "P2"])
    assert table.sigma[i[0], i[1]] == pytest.approx(4.1) and table.epsilon[i[1], i[1]] == pytest.approx(4.5)


def gromacs_dihedral(p: np.ndarray) -> float:
    """GROMACS's definition: phi = sign(r_ij . n) * angle(m, n), m = r_ij x r_kj, n = r_kj x r_kl."""
    rij, rkj, rkl = p[0] - p[1], p[2] - p[1], p[2] - p[3]
    m, n = np.cross(rij, rkj), np.cross(rkj, rkl)
    return float(np.sign(rij @ n) * np.arccos(m @ n / np.linalg.norm(m) / np.linalg.norm(n)))


def test_energies_equal_hand_values():
    t = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    pair = torch.tensor([[0, 1]])
    x = t([[[0.0, 0, 0], [5.0, 0, 0]]])
    assert float(bond_energy(x, pair, t([4.0]), t([10.0]))) == pytest.approx(5.0)
    right = t([[[1.0, 0, 0], [0, 0, 0], [0, 1.0, 0]]])  # 90 degrees
    tri = torch.tensor([[0, 1, 2]] * 3)
    e = angle_energy(right, tri, torch.tensor([1, 2, 10]), t([2 * math.pi / 3] * 3), t([25.0] * 3))[0]
    np.testing.assert_allclose(e.numpy(), [12.5 * (math.pi / 6) ** 2, 12.5 * 0.25, 12.5 * 0.25])
    rng = np.random.default_rng(0)
    quad = torch.tensor([[0, 1, 2, 3]])
    for _ in range(5):
        p = rng.standard_normal((4, 3))
        phi = gromacs_dihedral(p)
        assert float(dihedral_angle(t(p[None]), quad)) == pytest.approx(phi, abs=1e-7)
        assert float(proper_energy(t(p[None]), quad, t([0.3]), t([5.0]), t([2.0]))) == pytest.approx(5 * (1 + math.cos(2 * phi - 0.3)))
        wrapped = (phi - 3.0 + math.pi) % (2 * math.pi) - math.pi
        assert float(improper_energy(t(p[None]), quad, t([3.0]), t([10.0]))) == pytest.approx(5 * wrapped**2)
    sigma, eps = t([4.7]), t([3.0])
    r_min = 2 ** (1 / 6) * 4.7
    for r, lj, wca, morse in [(4.7, 0.0, 3.0, None), (r_min, -3.0, 0.0, -3.0), (9.0, None, 0.0, None)]:
        x = t([[[0.0, 0, 0], [r, 0, 0]]])
        if lj is not None:
            assert float(pair_energy(x, pair, sigma, eps, "lj")) == pytest.approx(lj, abs=1e-9)
        assert float(pair_energy(x, pair, sigma, eps, "wca")) == pytest.approx(wca, abs=1e-9)
        if morse is not None:
            assert float(pair_energy(x, pair, sigma, eps, "morse")) == pytest.approx(morse)
    lj = lambda r: 4 * 3.0 * ((4.7 / r) ** 12 - (4.7 / r) ** 6)  # noqa: E731
    for r, shifted in [(8.0, lj(8.0) - lj(11.0)), (12.0, 0.0)]:  # potential shift at the 11 Å cut-off
        x = t([[[0.0, 0, 0], [r, 0, 0]]])
        assert float(pair_energy(x, pair, sigma, eps, "lj", cutoff=11.0)) == pytest.approx(shifted, abs=1e-12)


def test_energy_gradients_pass_gradcheck():
    rng = np.random.default_rng(1)
    x = torch.tensor(rng.standard_normal((2, 6, 3)) * 3, dtype=torch.float64, requires_grad=True)
    d = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    pairs, tri, quad = torch.tensor([[0, 1], [2, 4]]), torch.tensor([[0, 1, 2], [3, 4, 5], [1, 2, 3]]), torch.tensor([[0, 1, 2, 3], [2, 3, 4, 5]])
    checks = [
        lambda y: bond_energy(y, pairs, d([3.0, 4.0]), d([10.0, 5.0])),
        lambda y: angle_energy(y, tri, torch.tensor([1, 2, 10]), d([2.0, 1.8, 2.2]), d([25.0, 20.0, 30.0])),
        lambda y: proper_energy(y, quad, d([0.5, -2.0]), d([4.0, 2.0]), d([1.0, 3.0])),
        lambda y: improper_energy(y, quad, d([0.1, 3.0]), d([50.0, 20.0])),
        lambda y: pair_energy(y, pairs, d([4.7, 4.1]), d([3.0, 2.0]), "lj"),
        lambda y: pair_energy(y, pairs, d([8.0, 9.0]), d([3.0, 2.0]), "wca"),
        lambda y: pair_energy(y, pairs, d([4.7, 4.1]), d([3.0, 2.0]), "morse"),
    ]
    for f in checks:
        assert torch.autograd.gradcheck(f, (x,))


def test_neighbour_list_matches_brute_force():
    rng = np.random.default_rng(2)
    x = rng.uniform(0, 20, (60, 3))
    excluded = np.array([[0, 1], [5, 3]])
    got = {tuple(p) for p in neighbour_pairs(x, 5.0, excluded)}
    d = np.linalg.norm(x[:, None] - x[None], axis=-1)
    want = {(i, j) for i in range(60) for j in range(i + 1, 60) if d[i, j] < 5.0} - {(0, 1), (3, 5)}
    assert got == want
    batch = np.stack([x, rng.uniform(0, 20, (60, 3))])  # a batch: the union over its structures
    got = neighbour_pairs(batch, 5.0, excluded)
    d = np.linalg.norm(batch[:, :, None] - batch[:, None], axis=-1).min(0)
    want |= {(i, j) for i in range(60) for j in range(i + 1, 60) if d[i, j] < 5.0} - {(0, 1), (3, 5)}
    assert {tuple(p) for p in got} == want and len(got) == len(want) and got.dtype == np.int64


@pytest.fixture(scope="module")
def adk_cg(tmp_path_factory):
    """The AdK closed state mapped to Martini 3 (martinize2) and minimised (cg-prep)."""
    out = tmp_path_factory.mktemp("cg")
    from cryodyna.simulate.adk import write_adk_models

    ref, _, _ = write_adk_models(out)
    runner = CliRunner()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = runner.invoke(app, ["cg-prep", str(ref), "-o", str(out / "prep"), "--steps", "200"])
    assert r.exit_code == 0, r.output
    return out, r.output


@pytest.mark.slow
def test_cg_prep_maps_and_minimises_adk(adk_cg):
    out, output = adk_cg
    import json
    import pickle

    report = json.loads((out / "prep" / "energies.json").read_text())
    assert report["beads"] == 476 and report["residues"] == 214  # 214-residue AdK -> 476 Martini 3 beads
    assert report["energy_after_kj_mol"]["total"] < 0.2 * report["energy_before_kj_mol"]["total"]
    assert report["rmsd_minimised_to_mapped_A"] < 2.0
    for name in ("cg.pdb", "cg_min.pdb", "molecule_0.itp", "cg_model.pkl"):
        assert (out / "prep" / name).is_file()
    beads = read_models(out / "prep" / "cg_min.pdb")[0]
    assert beads.n_atoms == 476 and set(beads.atom_name) >= {"BB", "SC1", "SC2"}
    with open(out / "prep" / "cg_model.pkl", "rb") as fh:
        cg = pickle.load(fh)
    structure = read_structure(out / "reference.pdb")
    assert cg.electrons.sum() == structure.atomic_number[structure.atomic_number > 1].sum()
    assert "476 beads for 214 residues" in output.replace("\n", " ")
    # back-mapping the mapped beads returns the all-atom reference; a rigid motion moves every atom with it
    np.testing.assert_allclose(backmap(structure, cg, cg.mapped[None])[0], structure.coords, atol=1e-6)
    rot = np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])
    moved = backmap(structure, cg, (cg.mapped @ rot.T + 3.0)[None])[0]
    np.testing.assert_allclose(moved, structure.coords @ rot.T + 3.0, atol=1e-6)
    report = geometry_report(structure, moved[None])
    assert report.bond_rms_dev < 1e-6 and report.clash_fraction == 0


@pytest.mark.slow
def test_martinize_errors_are_clear(adk_cg, tmp_path):
    out, _ = adk_cg
    s = read_structure(out / "reference.pdb")
    leu = int(np.flatnonzero(s.res_name == "LEU")[0])
    keep = ~((s.residue == leu) & np.isin(s.atom_name, ["CB", "CG", "CD1", "CD2"]))
    with pytest.raises(InputError, match=r"LEU .*bead SC1 has none of its atoms.*pdbfixer"):
        martinize(s.select_atoms(np.flatnonzero(keep)))


DNA_BEADS = {"DG": 7, "DA": 7, "DC": 6}  # Martini-DNA beads per nucleotide (one fewer at the 5' end)


@pytest.mark.slow
def test_cg_prep_protein_dna(tmp_path):
    from conftest import write_protein_nucleic_model

    model = write_protein_nucleic_model(tmp_path / "complex.pdb")
    structure = read_structure(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        protein_only = martinize(structure.select_atoms(np.flatnonzero(structure.res_kind[structure.residue] == "protein")))
        r = CliRunner().invoke(app, ["cg-prep", str(model), "-o", str(tmp_path / "prep"), "--steps", "300"])
    assert r.exit_code == 0, r.output
    import pickle

    with open(tmp_path / "prep" / "cg_model.pkl", "rb") as fh:
        cg = pickle.load(fh)
    nucleic = structure.res_kind[cg.residue] == "nucleic"
    dna_res = [str(n) for n in structure.res_name[structure.res_kind == "nucleic"]]  # DG DG DA DC DC
    assert nucleic.sum() == sum(DNA_BEADS[n] for n in dna_res) - 1
    assert (~nucleic).sum() == protein_only.n_beads and not nucleic[: protein_only.n_beads].any()
    names = cg.topology.names[nucleic].tolist()
    assert names[:6] == ["BB2", "BB3", "SC1", "SC2", "SC3", "SC4"] and names[6:10] == ["BB1", "BB2", "BB3", "SC1"]
    for name in ("molecule_0.itp", "nucleic_0.itp", "cg.pdb", "cg_min.pdb"):
        assert (tmp_path / "prep" / name).is_file()
    beads = read_models(tmp_path / "prep" / "cg_min.pdb")[0]
    assert set(beads.res_name[beads.residue[beads.chain_id[beads.residue] == "B"]]) == {"DG", "DA", "DC"}
    assert cg.electrons.sum() == structure.atomic_number[structure.atomic_number > 1].sum()
    # the mapping agrees with the independent Martini-DNA bond lengths; minimisation makes them exact
    t = cg.topology
    pairs, b0 = np.concatenate([t.bonds, t.constraints]), np.concatenate([t.bond_b0, t.constraint_b0])
    dna_pairs = nucleic[pairs[:, 0]]
    for coords, tolerance in ((cg.mapped, 0.2), (cg.coords, 0.08)):
        dev = np.linalg.norm(coords[pairs[:, 0]] - coords[pairs[:, 1]], axis=1) - b0
        assert np.sqrt((dev[dna_pairs] ** 2).mean()) < tolerance
    report = __import__("json").loads((tmp_path / "prep" / "energies.json").read_text())
    assert report["energy_after_kj_mol"]["total"] < 0.5 * report["energy_before_kj_mol"]["total"]
    # nucleotides hang on their sugar bead; back-mapping the mapped beads returns the reference
    residues, backbone = cg.backbone_beads()
    assert (cg.topology.names[backbone[structure.res_kind[residues] == "nucleic"]] == "BB3").all()
    np.testing.assert_allclose(backmap(structure, cg, cg.mapped[None])[0], structure.coords, atol=1e-6)


@pytest.mark.slow
def test_nucleic_strands_rna_and_errors(tmp_path):
    from conftest import write_protein_nucleic_model

    from cryodyna.structure.martini_nucleic import map_fragment, martinize_nucleic, nucleic_fragments

    rna = read_structure(write_protein_nucleic_model(tmp_path / "rna.pdb", rna=True, n_nucleotides=3))
    strand = nucleic_fragments(rna)
    assert len(strand) == 1 and len(strand[0]) == 3
    with pytest.warns(UserWarning, match="RNA residues get the Martini DNA parameters"):
        beads = martinize_nucleic(rna, strand[0], "rna")
    assert beads.topology.n_beads == 6 + 7 + 7  # G(5' end) G A
    # ribose O2' joins the sugar bead BB3
    first = strand[0][0]
    atoms = {str(n): a for n, a in zip(rna.atom_name, range(rna.n_atoms)) if rna.residue[a] == first}
    group = [atoms[n] for n in ("C3'", "C2'", "C1'", "O2'")]
    mass = np.array([12.011, 12.011, 12.011, 15.999])
    np.testing.assert_allclose(beads.coords[1], mass @ rna.coords[group] / mass.sum(), atol=1e-9)
    # a chain break (O3'-P > 2 Å) splits the strand; a lone nucleotide and a missing base are clear errors
    broken = rna.with_coords(np.where((rna.residue == strand[0][2])[:, None], rna.coords + 8.0, rna.coords))
    assert [len(f) for f in nucleic_fragments(broken)] == [2, 1]
    with pytest.raises(InputError, match=r"not bonded to another nucleotide"):
        martinize(broken)
    keep = ~((rna.residue == strand[0][1]) & np.isin(rna.atom_name, ["N9", "C4"]))
    with pytest.raises(InputError, match=r"G B2: bead SC1 has none of its atoms \(N9, C4\).*pdbfixer"):
        map_fragment(rna.select_atoms(np.flatnonzero(keep)), strand[0])


def test_forcefield_neighbours_cover_every_structure_of_a_batch(adk_cg):
    out, _ = adk_cg
    import pickle

    with open(out / "prep" / "cg_model.pkl", "rb") as fh:
        cg = pickle.load(fh)
    ff = MartiniForceField(cg.topology, cg.sizes, "lj")
    x = torch.as_tensor(cg.coords, dtype=torch.float32) + torch.randn(4, cg.n_beads, 3, generator=torch.Generator().manual_seed(0))
    got = {tuple(p) for p in ff.neighbours(x).tolist()}
    want = {tuple(p) for p in neighbour_pairs(x.numpy(), ff.cutoff, cg.topology.excluded_pairs())}
    assert want <= got


def test_bead_priors_of_a_batch_are_the_mean_of_its_structures(adk_cg):
    """Each structure's energies are its own: pairs beyond the cut-off score 0 (LJ potential-shifted)
    and the non-bonded sum is normalised by a fixed pair count, not by the batch's neighbour list."""
    import pickle

    from cryodyna.assembly.cg_prep import forcefield_of
    from cryodyna.assembly.model import bead_graph
    from cryodyna.assembly.priors import Martini, build_priors

    out, _ = adk_cg
    with open(out / "prep" / "cg_model.pkl", "rb") as fh:
        cg = pickle.load(fh)
    structure = read_structure(out / "reference.pdb")
    for form in ("wca", "lj"):
        cfg = load_config("train-cg", None, [f"martini.nonbonded={form}", "martini.lj_table=false"])
        priors = build_priors(bead_graph(structure, cg, cfg), cfg.loss, forcefield_of(cg, cfg.martini))
        verlet = next(p for p in priors.priors if isinstance(p, Martini)).verlet
        ref = torch.as_tensor(cg.coords, dtype=torch.float32)
        squeezed = ref.mean(0) + 0.85 * (ref - ref.mean(0))  # overlapping beads: non-zero WCA energy
        shifted = ref + torch.tensor([0.0, 0.0, 40.0]) * (torch.arange(cg.n_beads) > cg.n_beads // 2)[:, None]
        single = []
        for x in (squeezed, shifted):
            verlet.refresh(x[None], 0)
            single.append(priors(x[None])["nonbonded"][1])
        verlet.refresh(torch.stack([squeezed, shifted]), 0)
        both = priors(torch.stack([squeezed, shifted]))["nonbonded"][1]
        assert float(single[0]) > 0
        assert float(both) == pytest.approx(float(sum(single)) / 2, rel=1e-5)


@pytest.mark.slow
def test_train_cg_outputs_and_backmap(tiny_adk, tmp_path):
    from conftest import TINY_TRAIN_SETTINGS

    cfg = load_config("train-cg", None, TINY_TRAIN_SETTINGS + ["optim.epochs=2", "martini.minimize_steps=50",
                                                               "optim.refine_poses=true", "optim.pose_warmup_epochs=1"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        folder = train_cg(tiny_adk / "particles.star", tiny_adk / "reference.pdb", tmp_path / "run", cfg)
    import pandas as pd

    metrics = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert {"image", "elastic", "bond", "angle", "proper", "improper", "nonbonded"} <= set(metrics.name)
    assert (folder / "particles_refined.star").is_file()
    assert torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=False)["poses"]["visits"].max() == 1  # epoch 2 refined
    assert "pose_error_spread_deg" in set(metrics.name)
    models = read_models(folder / "pca-1.pdb")
    assert models[0].n_atoms == 476 and "SC1" in set(models[0].atom_name)
    loaded = load_run(tmp_path / "run")
    model = loaded.model
    assert loaded.info["task"] == "cg" and model.reference.shape == (476, 3)
    r = CliRunner().invoke(app, ["backmap", str(folder / "pca-1.pdb"), "-o", str(tmp_path / "aa.pdb")])
    assert r.exit_code == 0, r.output
    aa = read_models(tmp_path / "aa.pdb")
    assert len(aa) == len(models) and aa[0].n_atoms == read_structure(tiny_adk / "reference.pdb").n_atoms
    assert "bond lengths" in r.output
    # all-atom models for any latents: the same as back-mapping the decoded bead models one by one
    z = np.load(folder / "z.npy")[:40]
    np.save(tmp_path / "z40.npy", z)
    r = CliRunner().invoke(app, ["sample-structures", str(tmp_path / "run"), "--z", str(tmp_path / "z40.npy"), "--allatom",
                                 "--npy", str(tmp_path / "aa40.npy")])
    assert r.exit_code == 0, r.output
    assert "back-mapped 40 models" in r.output and "atoms in clashes" in r.output
    allatom = np.load(tmp_path / "aa40.npy")
    reference = read_structure(tiny_adk / "reference.pdb")
    from cryodyna.analysis.backmap import run_backmapping
    from cryodyna.models.sampling import decode_latents

    beads = decode_latents(model, z[[3, 17]])
    one_by_one = np.stack([backmap(*run_backmapping(tmp_path / "run"), b[None])[0] for b in beads])
    assert allatom.shape == (40, reference.n_atoms, 3)
    np.testing.assert_allclose(allatom[[3, 17]], one_by_one, atol=1e-3)
    r = CliRunner().invoke(app, ["sample-structures", str(tmp_path / "run"), "--z", str(tmp_path / "z40.npy"), "--allatom",
                                 "-o", str(tmp_path / "aa40.pdb")])
    assert r.exit_code == 0 and len(read_models(tmp_path / "aa40.pdb")) == 40


@pytest.mark.slow
def test_train_cg_on_a_protein_dna_complex(tmp_path):
    from conftest import TINY_TRAIN_SETTINGS, write_protein_nucleic_model

    from cryodyna.simulate.simulator import SimulationSpec, simulate

    model = write_protein_nucleic_model(tmp_path / "complex.pdb")
    structure = read_structure(model)
    simulate([structure, structure], SimulationSpec(n_particles=64, box=32, apix=3.0, snr=1.0, density="residue", seed=0),
             tmp_path)
    cfg = load_config("train-cg", None, TINY_TRAIN_SETTINGS + ["optim.epochs=1", "martini.minimize_steps=50",
                                                               "loss.protein_nucleic_cutoff=20"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        folder = train_cg(tmp_path / "particles.star", model, tmp_path / "run", cfg)
    graph = load_run(tmp_path / "run").graph  # the protein-nucleotide restraint: mixed pairs within the cut-off only
    pairs, nucleic = graph.protein_nucleic, structure.res_kind[graph.template.residue] == "nucleic"
    ref = np.linalg.norm(graph.coords[pairs[:, 0]] - graph.coords[pairs[:, 1]], axis=1)
    assert len(pairs) > 10 and (nucleic[pairs[:, 0]] != nucleic[pairs[:, 1]]).all() and ref.max() <= 20
    assert "protein_nucleic" in set(__import__("pandas").read_csv(tmp_path / "run" / "metrics.csv").name)
    models = read_models(folder / "pca-1.pdb")
    chain_b = models[0].res_name[models[0].residue][models[0].chain_id[models[0].residue] == "B"]
    assert set(chain_b) == {"DG", "DA", "DC"} and np.isfinite(np.stack([m.coords for m in models])).all()
    beads = models[0].atom_name[models[0].chain_id[models[0].residue] == "B"]
    assert {"BB1", "BB2", "BB3", "SC4"} <= set(beads)
    r = CliRunner().invoke(app, ["backmap", str(folder / "pca-1.pdb"), "-o", str(tmp_path / "aa.pdb"), "--relax",
                                 "--relax-iterations", "100"])
    assert r.exit_code == 0, r.output
    assert "relaxed: bond lengths" in r.output.replace("\n", " ")
    relaxed = read_models(tmp_path / "aa.pdb")
    assert len(relaxed) == len(models) and relaxed[0].n_atoms == structure.n_atoms


def test_relax_repairs_back_mapping_distortions():
    from scipy.spatial.transform import Rotation

    from cryodyna.analysis.relax import relax
    from cryodyna.simulate.adk import adk_states

    closed, _ = adk_states()
    s = closed.select_atoms(np.flatnonzero((closed.residue < 40) & (closed.atomic_number > 1)))
    rng = np.random.default_rng(0)
    x = s.coords.copy()
    for r in range(s.n_residues):  # each residue rigidly displaced, as per-residue back-mapping does
        m = s.residue == r
        centre = x[m].mean(0)
        x[m] = Rotation.from_rotvec(rng.normal(0, 0.08, 3)).apply(x[m] - centre) + centre + rng.normal(0, 0.4, 3)
    before = geometry_report(s, x[None])
    y = relax(s, x[None], restraint_k=1000.0, max_iterations=300)
    after = geometry_report(s, y)
    assert after.bond_rms_dev < 0.3 * before.bond_rms_dev and after.clash_fraction < 0.5 * before.clash_fraction
    assert np.sqrt(((y[0] - x) ** 2).sum(1).mean()) < 1.0  # the conformation is kept


def test_martini3_nonbonded_parameters_by_default(adk_cg, monkeypatch):
    """The Martini 3 LJ table drives the non-bonded energy; without it, an error names the fix
    unless the size-based fallback is asked for; Martini 2.2 says it runs with the fallback."""
    import pickle

    from cryodyna.errors import CryodynaError
    from cryodyna.physics import nonbonded
    from cryodyna.assembly import cg_prep

    out, output = adk_cg
    with open(out / "prep" / "cg_model.pkl", "rb") as fh:
        cg = pickle.load(fh)
    cfg = load_config("train-cg", None, []).martini
    ff = cg_prep.forcefield_of(cg, cfg)
    assert ff.pair_parameters.source.startswith("Martini 3 Lennard-Jones table") and "lacks" not in ff.pair_parameters.source
    table = read_lj_table(nonbonded.find_martini3_table(), set(cg.topology.types))
    i, j = (int(np.flatnonzero(cg.topology.types == t)[0]) for t in ("P2", "SC2"))  # backbone P2, a side-chain SC2
    sigma, eps = ff.pair_parameters(torch.tensor([[i, j]]))
    a, b = table.index(["P2", "SC2"])
    assert float(sigma) == pytest.approx(table.sigma[a, b]) and float(eps) == pytest.approx(table.epsilon[a, b])
    assert "Martini 3 Lennard-Jones table" in " ".join(output.split())  # cg-prep reports it
    fallback = cg_prep.forcefield_of(cg, cfg.model_copy(update={"lj_table": False})).pair_parameters
    assert fallback.source.startswith("size-based")
    assert float(fallback(torch.tensor([[i, j]]))[0]) == pytest.approx(0.5 * (cg.sizes[i] + cg.sizes[j]))
    m22 = cg_prep.forcefield_of(cg, cfg.model_copy(update={"force_field": "martini22"})).pair_parameters
    assert "Martini 2.2 runs with its bonded terms and this fallback" in m22.source
    monkeypatch.setattr(cg_prep, "find_martini3_table", lambda: None)
    with pytest.raises(CryodynaError, match="pip install --no-deps martini-shaker.*martini.lj_table=false"):
        cg_prep.forcefield_of(cg, cfg)
    types = np.array(["P2", "P2", "Q1", "TX9"])  # TX9 is no Martini 3 type: pairs with it use the sizes
    mixed = nonbonded.PairParameters(types, np.array([4.7, 4.7, 4.7, 3.2]), nonbonded.find_martini3_table())
    assert "size-based WCA for pairs with the 1 bead type(s) it lacks (TX9)" in mixed.source
    s, e = mixed(torch.tensor([[0, 1], [0, 3]]))
    assert float(s[1]) == pytest.approx(0.5 * (4.7 + 3.2)) and float(e[1]) == nonbonded.FALLBACK_EPSILON
    p = table.index(["P2"])[0]
    assert float(s[0]) == pytest.approx(table.sigma[p, p])


def test_dssp_classes_for_martinize(adk_cg):
    """Eight DSSP classes (mdtraj's DSSP), checked against reference DSSP assignments shipped with
    MDAnalysisTests (three-state) and used by martinize2 (turns and bends get their own beads)."""
    import gzip
    import importlib.util
    from pathlib import Path

    from cryodyna.structure.secondary import dssp, secondary_structure

    out, _ = adk_cg
    closed = read_structure(out / "reference.pdb")
    classes = dssp(closed)
    assert set(classes) >= {"H", "G", "E", "T", "S", "B", "C"} and len(classes) == 214
    root = Path(importlib.util.find_spec("MDAnalysisTests").submodule_search_locations[0]) / "data" / "dssp"
    agreement = []
    for name in ("1ahsA", "1bvyF", "1eteA", "1h4aX"):
        with gzip.open(root / f"{name}.pdb.gz", "rt") as fh:
            (out / f"{name}.pdb").write_text(fh.read())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            s = read_structure(out / f"{name}.pdb")
            ours = "".join(secondary_structure(s)[s.res_kind == "protein"])
        reference = (root / f"{name}.pdb.dssp").read_text().split()[0].replace("-", "C")
        assert len(reference) == len(ours), name
        agreement.append(np.mean([a == b for a, b in zip(ours, reference)]))
    assert min(agreement) > 0.9, agreement
    import pickle

    with open(out / "prep" / "cg_model.pkl", "rb") as fh:
        cg = pickle.load(fh)
    assert cg.ss == "".join(classes)


@pytest.mark.slow
def test_insertion_codes_stay_distinct_and_electrons_follow_the_mapping(adk_cg):
    from dataclasses import replace

    out, _ = adk_cg
    closed = read_structure(out / "reference.pdb")
    seq, ins = closed.res_seq.copy(), closed.ins_code.copy()
    seq[52:] -= 1
    ins[52] = "A"  # residues 52 and 52A, as in antibody numbering
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cg = martinize(replace(closed, res_seq=seq, ins_code=ins))
    per_residue = np.bincount(cg.residue, minlength=214)
    assert (per_residue > 0).all() and per_residue[51] == per_residue[52] == 2  # ILE 52 and MET 52A: BB + SC1 each
    met = int(np.flatnonzero((cg.residue == 52) & (cg.topology.names == "SC1"))[0])
    assert cg.electrons[met] == 6 + 6 + 16 + 6  # CB, CG, SD, CE of Met, from the mapping file
    phe = int(np.flatnonzero(closed.res_name == "PHE")[0])
    ring = cg.electrons[(cg.residue == phe) & np.isin(cg.topology.names, ["SC1", "SC2", "SC3"])]
    # SC1 = CB + CG + 1/3 CD1 + 1/3 CD2; SC2 = 2/3 CD1 + CE1 + 1/2 CZ; SC3 = 1/2 CZ + 2/3 CD2 + CE2 (Martini 3 Phe map)
    np.testing.assert_allclose(ring, [16, 13, 13])


def test_martinize_input_of_more_than_99999_atoms_is_readable(tmp_path):
    """Models of more than 99,999 heavy atoms (a 16,716-residue chaperonin) reach martinize2 with
    5-digit atom serials: gemmi's hybrid-36 serials ('A0000') made its PDB reader fail."""
    import dataclasses

    from vermouth.pdb.pdb import read_pdb

    from cryodyna.io.structure import PDB_CHAIN_IDS
    from cryodyna.simulate.adk import adk_states
    from cryodyna.structure.martini import _write_input

    closed = adk_states()[0]
    copies = 100_000 // int((closed.atomic_number > 1).sum()) + 1
    fields = {k: np.concatenate([v] * copies) for k, v in vars(closed).items()}
    fields["residue"] = np.concatenate([closed.residue + c * closed.n_residues for c in range(copies)])
    fields["coords"] = np.concatenate([closed.coords + 60.0 * c for c in range(copies)])
    fields["chain_id"] = np.repeat([PDB_CHAIN_IDS[c] for c in range(copies)], closed.n_residues).astype(object)
    big = dataclasses.replace(closed, **fields)
    _write_input(big, tmp_path / "aa.pdb")
    molecules = read_pdb(str(tmp_path / "aa.pdb"))
    assert sum(len(m) for m in molecules) == int((big.atomic_number > 1).sum()) > 99_999


def test_martinize_output_residues_are_read_in_file_order(tmp_path):
    """martinize2 numbers each molecule of a chain from 1 (two molecules of chain A both start with
    'SER 1') and writes chains it bonds together out of input order (chain C before B): every bead
    still finds its residue (gemmi merged the two 'SER 1', and train-cg on the 16,716-residue 4V8R
    stopped with 'martinize2 wrote beads for 16376 residues')."""
    import dataclasses

    from cryodyna.simulate.adk import adk_states
    from cryodyna.structure.martini import _bead_residues, _read_pdb_residues

    def atom(name, res, chain, seq, x):
        return f"ATOM  {1:5d} {name:<4} {res} {chain}{seq:4d}    {x:8.3f}{0.0:8.3f}{0.0:8.3f}  1.00  0.00\n"

    (tmp_path / "aa.pdb").write_text(
        atom("CA", "SER", "A", 5, 0.0) + atom("CA", "GLY", "A", 6, 4.0) + atom("CA", "SER", "A", 30, 40.0) + atom("CA", "ALA", "A", 31, 44.0)
        + atom("CA", "LYS", "B", 1, 80.0) + atom("CA", "LEU", "C", 1, 90.0) + "END\n")
    (tmp_path / "cg.pdb").write_text(
        atom("BB", "SER", "A", 1, 0.0) + atom("SC1", "SER", "A", 1, 1.0) + atom("BB", "GLY", "A", 2, 4.0) + "TER\n"
        + atom("BB", "SER", "A", 1, 40.0) + atom("SC1", "SER", "A", 1, 41.0) + atom("BB", "ALA", "A", 2, 44.0) + "TER\n"
        + atom("BB", "LEU", "C", 1, 90.0) + "TER\n" + atom("BB", "LYS", "B", 1, 80.0) + "END\n")
    beads = _read_pdb_residues(tmp_path / "cg.pdb")
    np.testing.assert_allclose(beads.coords[:, 0], [0, 1, 4, 40, 41, 44, 90, 80])
    assert beads.residue.tolist() == [0, 0, 1, 2, 2, 3, 4, 5]
    closed = adk_states()[0]
    six = dataclasses.replace(closed, res_kind=np.array(["protein"] * 6 + ["water"] * (closed.n_residues - 6), dtype=object))
    residue = _bead_residues(six, _read_pdb_residues(tmp_path / "aa.pdb"), beads, "model.pdb")
    assert residue.tolist() == [0, 0, 1, 2, 2, 3, 5, 4]
    beads.name[2] = "GLY"  # the second molecule of chain A: SER in the input
    with pytest.raises(InputError, match="chain A"):
        _bead_residues(six, _read_pdb_residues(tmp_path / "aa.pdb"), beads, "model.pdb")


@pytest.mark.slow
def test_bead_position_weights_reproduce_martinize_on_another_conformation():
    from cryodyna.simulate.adk import adk_states
    from cryodyna.structure.martini import bead_position_weights

    closed, opened = adk_states()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cg_closed, cg_open = martinize(closed), martinize(opened)
    weights = bead_position_weights(closed, cg_closed)
    np.testing.assert_allclose(weights.sum(1), 1.0)
    assert weights.nnz < 4 * closed.n_atoms  # sparse: a few beads per atom
    for structure, cg in ((closed, cg_closed), (opened, cg_open)):
        error = np.linalg.norm(weights @ structure.coords - cg.mapped, axis=1)
        assert np.median(error) < 0.01 and np.sqrt((error**2).mean()) < 0.1  # terminal beads differ most (< 0.9 Å)
    moved = np.linalg.norm(cg_open.mapped - cg_closed.mapped, axis=1)
    assert np.sqrt((moved**2).mean()) > 3.0  # the two states are far apart: the weights follow the motion


def test_bead_gaussian_width_comes_from_the_config(adk_cg):
    import pickle

    from cryodyna.assembly.model import bead_graph

    out, _ = adk_cg
    with open(out / "prep" / "cg_model.pkl", "rb") as fh:
        cg = pickle.load(fh)
    structure = read_structure(out / "reference.pdb")
    assert np.all(bead_graph(structure, cg, load_config("train-cg")).sigmas == 1.75)
    assert np.all(bead_graph(structure, cg, load_config("train-cg", None, ["model.gaussian_sigma=1.2"])).sigmas == 1.2)


def test_backbone_restraint_holds_the_mapped_backbone_while_side_chains_relax(adk_cg):
    """martini.backbone_restraint_k restrains the BB beads alone: with its default of 1000 kJ mol^-1 Å^-2
    they stay within 0.15 Å RMS of the mapped positions while the energy still falls, where the uniform
    restraint of 10 (backbone_restraint_k=null) moves them ~0.5 Å."""
    import pickle

    from cryodyna.assembly.cg_prep import forcefield_of, restraint_constants
    from cryodyna.physics.minimize import minimize

    out, _ = adk_cg
    with open(out / "prep" / "cg_model.pkl", "rb") as fh:
        cg = pickle.load(fh)
    mapped = torch.as_tensor(cg.mapped, dtype=torch.float32)
    backbone = torch.zeros(cg.n_beads, dtype=torch.bool)
    backbone[torch.as_tensor(cg.backbone_beads()[1])] = True
    assert set(cg.topology.names[backbone.numpy()]) == {"BB"} and int(backbone.sum()) == 214
    shifts = {}
    for held, sets in ((False, ["martini.backbone_restraint_k=null"]), (True, [])):
        cfg = load_config("train-cg", None, sets).martini
        k = restraint_constants(cg, cfg)
        assert torch.all(k[~backbone] == 10) and torch.all(k[backbone] == (1000 if held else 10))
        x, before, after = minimize(forcefield_of(cg, cfg), mapped, k, 200)
        assert after["total"] < 0.2 * before["total"]
        shifts[held] = (x - mapped).norm(dim=-1)[backbone].pow(2).mean().sqrt().item()
    assert shifts[True] < 0.15 < 0.3 < shifts[False]
