import warnings

import numpy as np
import pytest

from cryodyna.errors import InputError
from cryodyna.io.structure import read_models, read_structure, write_structure
from cryodyna.simulate.adk import adk_source_files
from cryodyna.structure.align import kabsch, rmsd
from cryodyna.structure.nodes import residue_nodes
from conftest import fixture_file


def test_peptide_cleanup_and_warnings(peptide_pdb):
    with pytest.warns(UserWarning, match=r"dropped 2 non-polymer.*HOH A101, MG A102"):
        s = read_structure(peptide_pdb)
    assert s.chains == ["A", "B"]
    assert s.res_name.tolist() == ["GLY", "ALA", "SER", "DA"]
    assert s.res_seq.tolist() == [1, 2, 2, 1] and s.ins_code.tolist() == ["", "", "A", ""]
    ca_ala = s.coords[(s.residue == 1) & (s.atom_name == "CA")]
    np.testing.assert_allclose(ca_ala, [[3.8, 0.0, 0.0]])  # first altloc kept, only one CA
    assert s.element[s.atom_name == "CA"].tolist() == ["C", "C", "C"]  # carbon, never calcium


def test_residue_nodes_and_electrons(peptide_pdb):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nodes = residue_nodes(read_structure(peptide_pdb))
    np.testing.assert_allclose(nodes.coords, [[0, 0, 0], [3.8, 0, 0], [7.6, 0, 0], [11, 0, 0]])
    # GLY N C C O = 7+6+6+8; ALA N CA CB C O = 7+6+6+6+8; SER N CA H = 7+6+1; DA P C1' N9 = 15+6+7
    np.testing.assert_allclose(nodes.electrons, [27, 33, 14, 28])
    assert nodes.template.atom_name.tolist() == ["CA", "CA", "CA", "C1'"]


def test_missing_node_atom_is_a_clear_error(tmp_path, peptide_pdb):
    text = peptide_pdb.read_text().replace(" CA  SER", " CB  SER")
    bad = tmp_path / "bad.pdb"
    bad.write_text(text)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = read_structure(bad)
    with pytest.raises(InputError, match=r"bad.pdb: residue SER A2A has no CA atom"):
        residue_nodes(s, bad)


def test_multi_model_write_read_pdb_and_cif(tmp_path, peptide_pdb):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = read_structure(peptide_pdb)
    models = np.stack([s.coords, s.coords + 1.5, s.coords - 2.0])
    for name in ("m.pdb", "m.cif"):
        write_structure(tmp_path / name, s, models)
        back = read_models(tmp_path / name)
        assert len(back) == 3
        for k, b in enumerate(back):
            np.testing.assert_allclose(b.coords, models[k], atol=1e-3)
            assert b.res_name.tolist() == s.res_name.tolist()
            assert b.res_seq.tolist() == s.res_seq.tolist()
            assert b.ins_code.tolist() == s.ins_code.tolist()
            assert b.chain_id.tolist() == s.chain_id.tolist()
            assert b.atom_name.tolist() == s.atom_name.tolist()
    with pytest.warns(UserWarning, match="3 models found; using the first"):
        first = read_structure(tmp_path / "m.pdb")
    np.testing.assert_allclose(first.coords, models[0], atol=1e-3)


def test_long_chain_names_in_pdb_files(tmp_path, peptide_pdb):
    """mmCIF chain names longer than one character (large complexes) become A, B, ... in a PDB file,
    the full name in the segment id column; more chains than one character can name: a clear error
    for a .pdb name, and the commands write mmCIF for them."""
    import dataclasses

    from cryodyna.errors import CryodynaError
    from cryodyna.io.structure import structure_suffix

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = read_structure(peptide_pdb)
    half = s.n_residues // 2
    two = dataclasses.replace(s, chain_id=np.array(["AA"] * half + ["B7"] * (s.n_residues - half), dtype=object))
    write_structure(tmp_path / "two.pdb", two)
    back = read_structure(tmp_path / "two.pdb")
    assert back.chain_id.tolist() == ["A"] * half + ["B"] * (s.n_residues - half)
    np.testing.assert_allclose(back.coords, s.coords, atol=1e-3)
    segments = {line[72:76].strip() for line in (tmp_path / "two.pdb").read_text().splitlines() if line.startswith("ATOM")}
    assert segments == {"AA", "B7"}
    copies = 63
    fields = {k: np.concatenate([v] * copies) for k, v in vars(s).items()}
    fields["residue"] = np.concatenate([s.residue + c * s.n_residues for c in range(copies)])
    fields["chain_id"] = np.repeat([f"C{c}" for c in range(copies)], s.n_residues).astype(object)
    many = type(s)(**fields)
    with pytest.raises(CryodynaError, match="63 chains do not fit the PDB format.*write mmCIF"):
        write_structure(tmp_path / "many.pdb", many)
    assert structure_suffix(many) == ".cif" and structure_suffix(two) == ".pdb"  # what the commands write
    write_structure(tmp_path / "many.cif", many)
    assert list(dict.fromkeys(read_structure(tmp_path / "many.cif").chain_id)) == [f"C{c}" for c in range(copies)]


def test_only_hetatm_and_garbage(tmp_path):
    p = tmp_path / "lig.pdb"
    p.write_text("HETATM    1  O   HOH A 101      20.000  20.000  20.000  1.00  0.00           O\nEND\n")
    with pytest.raises(InputError, match="no standard amino-acid or nucleotide residue"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            read_structure(p)
    with pytest.raises(InputError, match="file not found"):
        read_structure(tmp_path / "none.pdb")


def test_adk_models_from_mdanalysistests():
    closed_path, open_path = adk_source_files()
    with pytest.warns(UserWarning, match="blank chain ids filled from segment ids"):
        closed = read_structure(closed_path)
    assert closed.n_residues == 214 and closed.chains == ["A"]
    assert (closed.atomic_number[closed.element == "H"] == 1).all()


def test_fixture_model_reads(fixtures):
    s = read_structure(fixture_file("cryodyna", "1akeA_50.pdb"))
    assert s.n_residues == 214 and len(residue_nodes(s)) == 214


def test_kabsch_recovers_rotation():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 3))
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.linalg.det(q))
    y = x @ q.T + [1.0, -2.0, 3.0]
    r, t = kabsch(x, y)
    np.testing.assert_allclose(x @ r.T + t, y, atol=1e-10)
    assert rmsd(x, y, superpose=True) == pytest.approx(0.0, abs=1e-9)
    assert rmsd(x, y) > 1
