"""Each malformed input gives one clear cryodyna error (or warning) naming the file and the problem."""

import pickle
import warnings

import mrcfile
import numpy as np
import pytest

from cryodyna.data.dataset import ParticleDataset
from cryodyna.errors import InputError
from cryodyna.io.read import read_particles
from cryodyna.io.structure import read_structure
from cryodyna.structure.nodes import residue_nodes
from cryodyna.data.particles import prepare_particles
from cryodyna.train.preflight import check_model_in_box, check_unique_images
from conftest import PEPTIDE_PDB, write_stack

STAR = """data_optics
loop_
_rlnOpticsGroup
_rlnVoltage
_rlnSphericalAberration
_rlnAmplitudeContrast
_rlnImagePixelSize
_rlnImageSize
1 300 2.7 0.1 1.5 16

data_particles
loop_
_rlnImageName
_rlnAngleRot
_rlnAngleTilt
_rlnAnglePsi
_rlnOriginXAngst
_rlnOriginYAngst
_rlnDefocusU
_rlnDefocusV
_rlnDefocusAngle
_rlnOpticsGroup
1@stack.mrcs 10 20 30 1.0 -1.0 15000 14000 10 1
2@stack.mrcs 40 50 60 0.0 2.0 16000 15000 20 1
"""


def load_all(path):
    """Read the particles and every image (what training does before it starts)."""
    ds = ParticleDataset(read_particles(path))
    for i in range(len(ds)):
        ds.image(i)
    return ds


def star_case(text_edit=None, stack_edit=None):
    def run(tmp):
        write_stack(tmp / "stack.mrcs", 2, 16)
        if stack_edit:
            stack_edit(tmp / "stack.mrcs")
        (tmp / "p.star").write_text(text_edit(STAR) if text_edit else STAR)
        return load_all(tmp / "p.star")
    return run


def truncate(p):
    data = p.read_bytes()
    p.write_bytes(data[:-200])


def complex_stack(p):
    with mrcfile.new(p, overwrite=True) as m:
        m.set_data(np.zeros((2, 16, 16), np.complex64))


def nan_stack(p):
    a = np.zeros((2, 16, 16), np.float32)
    a[1, 2, 2] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with mrcfile.new(p, overwrite=True) as m:
            m.set_data(a)


def rect_stack(p):
    with mrcfile.new(p, overwrite=True) as m:
        m.set_data(np.zeros((2, 16, 12), np.float32))


def cs_case(make):
    def run(tmp):
        np.save(tmp / "p.npy", make())
        (tmp / "p.npy").rename(tmp / "p.cs")
        return read_particles(tmp / "p.cs")
    return run


def stack_for_star(tmp):
    star_case()(tmp)
    return read_particles(tmp / "stack.mrcs")


def model_as_particles(tmp):
    (tmp / "model.pdb").write_text(PEPTIDE_PDB)
    return read_particles(tmp / "model.pdb")


def too_few(tmp):
    from cryodyna.train.preflight import check_particle_count

    write_stack(tmp / "stack.mrcs", 2, 16)
    (tmp / "p.star").write_text(STAR)
    return check_particle_count(read_particles(tmp / "p.star"))


def model_as_map(tmp):
    from cryodyna.io.mrc import read_volume

    (tmp / "model.pdb").write_text(PEPTIDE_PDB)
    return read_volume(tmp / "model.pdb")


def text_as_map(tmp):
    from cryodyna.io.mrc import read_volume

    (tmp / "map.mrc").write_text(PEPTIDE_PDB * 20)
    return read_volume(tmp / "map.mrc")


def stack_elsewhere(tmp):
    (tmp / "p.star").write_text(STAR)  # no stack.mrcs beside it
    return load_all(tmp / "p.star")


def pkl_case(tmp):
    write_stack(tmp / "s.mrcs", 2, 8)
    pickle.dump(np.zeros((2, 5)), open(tmp / "ctf.pkl", "wb"))
    return read_particles(tmp / "s.mrcs", ctf=tmp / "ctf.pkl")


def pdb_case(text, then=None):
    def run(tmp):
        (tmp / "m.pdb").write_text(text)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            s = read_structure(tmp / "m.pdb")
        return then(s, tmp / "m.pdb") if then else s
    return run


def no_poses(tmp):
    write_stack(tmp / "stack.mrcs", 2, 16)
    text = STAR.replace("_rlnAngleRot\n_rlnAngleTilt\n_rlnAnglePsi\n", "").replace(" 10 20 30 ", " ").replace(" 40 50 60 ", " ")
    (tmp / "p.star").write_text(text)
    return prepare_particles(read_particles(tmp / "p.star"), None, 1.0, False)


def duplicates(tmp):
    write_stack(tmp / "stack.mrcs", 2, 16)
    (tmp / "p.star").write_text(STAR.replace("2@stack.mrcs", "1@stack.mrcs"))
    return check_unique_images(read_particles(tmp / "p.star"))


HUGE = PEPTIDE_PDB.replace("   0.000   0.000   0.000  1.00", "9000.000   0.000   0.000  1.00", 1)

CASES = {
    "empty STAR": (star_case(lambda s: ""), "no data block"),
    "STAR without rows": (star_case(lambda s: s.split("1@stack")[0]), "particles block has no rows"),
    "missing image column": (star_case(lambda s: s.replace("_rlnImageName", "_rlnImageNom")), "missing column rlnImageName in the particles block"),
    "missing defocus": (star_case(lambda s: s.replace("_rlnDefocusU\n", "_rlnDefocusX\n")), "missing column rlnDefocusU"),
    "non-numeric defocus": (star_case(lambda s: s.replace("16000", "16k")), "row 2, column rlnDefocusU: value '16k'"),
    "NaN angle": (star_case(lambda s: s.replace(" 40 50 ", " nan 50 ")), "row 2, column rlnAngleRot"),
    "image name without @": (star_case(lambda s: s.replace("2@stack.mrcs", "stack.mrcs")), "expected 'INDEX@STACK'"),
    "zero image index": (star_case(lambda s: s.replace("1@stack", "0@stack")), "index must be an integer >= 1"),
    "undefined optics group": (star_case(lambda s: s.replace("20 1\n", "20 2\n")), "optics group 2, which the optics block does not define"),
    "incomplete poses": (star_case(lambda s: s.replace("_rlnAnglePsi", "_rlnAnglePhi")), "pose columns incomplete"),
    "missing stack": (star_case(lambda s: s.replace("@stack.mrcs", "@gone.mrcs")), "row 1: image stack .*gone.mrcs: file not found"),
    "index beyond stack": (star_case(lambda s: s.replace("2@stack", "3@stack")), "row 2: image 3 requested .* which holds 2 images"),
    "wrong box": (star_case(lambda s: s.replace("1.5 16", "1.5 32")), "gives a box of 32 px but .* holds 16 px images; set rlnImageSize in the particle file to 16"),
    "truncated stack": (star_case(stack_edit=truncate), "truncated or corrupt MRC"),
    "complex stack (wrong dtype)": (star_case(stack_edit=complex_stack), "complex-valued MRC data"),
    "NaN pixels": (star_case(stack_edit=nan_stack), r"image 2 \(row 2\) contains NaN"),
    "non-square images": (star_case(stack_edit=rect_stack), "expected square images"),
    "duplicate particles": (duplicates, "row 1 and row 2 reference the same image"),
    "no poses": (no_poses, "has no poses"),
    "cs missing fields": (cs_case(lambda: np.zeros(3, dtype=[("uid", "u8"), ("blob/path", "S10")])), r"missing field\(s\) blob/idx"),
    "cs not a table": (cs_case(lambda: np.zeros((3, 3))), "not a cryoSPARC .cs file"),
    "ctf pickle wrong shape": (pkl_case, r"expected an \(N, 9\) CTF array"),
    "PDB with only HETATM": (pdb_case("HETATM    1  C1  LIG A   1       0.000   0.000   0.000  1.00  0.00           C\nEND\n"), "no standard amino-acid"),
    "residue without CA": (pdb_case(PEPTIDE_PDB.replace(" CA  SER", " CB  SER"), lambda s, p: residue_nodes(s, p)), "residue SER A2A has no CA atom"),
    "model outside the box": (pdb_case(HUGE, lambda s, p: check_model_in_box(residue_nodes(s).coords, 64.0, p)), "lie outside the 64.0 Å box.*`cryodyna center-origin MODEL MAP -o DIR`"),
    "not a structure file": (pdb_case("this is not a PDB file\n"), "no atoms found"),
    "pixel size 0": (star_case(lambda s: s.replace("0.1 1.5 16", "0.1 0 16")), r"row 1: pixel size \(Å/px\) is 0, expected > 0"),
    "negative voltage": (star_case(lambda s: s.replace("1 300 2.7", "1 -300 2.7")), r"row 1: voltage \(kV\) is -300, expected in \(0, 1000\]"),
    "stack instead of STAR": (stack_for_star, r"did you mean the STAR file beside it \(.*p.star\)"),
    "model as particles": (model_as_particles, "is an atomic model, not a particle file: the order is PARTICLES MODEL"),
    "too few particles": (too_few, "has 2 particle.s.; training needs at least 10"),
    "model given as a map": (model_as_map, "is a pdb file, not an MRC map or stack"),
    "text file named .mrc": (text_as_map, "not an MRC file: its header holds mode"),
    "stack not beside the STAR": (stack_elsewhere, r"image stack .*stack.mrcs: file not found; if the stacks are in another folder, pass --set data.datadir"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_malformed_input(name, tmp_path):
    run, message = CASES[name]
    with pytest.raises(InputError, match=message) as exc:
        run(tmp_path)
    assert str(tmp_path) in str(exc.value)  # the message names the file
    assert "\n" not in str(exc.value)


def test_handled_with_warnings(tmp_path):
    text = PEPTIDE_PDB.replace(" A   1 ", "     1 ").replace(" A   2", "     2")  # blank chain ids
    (tmp_path / "m.pdb").write_text("MODEL        1\n" + text.replace("END\n", "ENDMDL\nMODEL        2\n" + text.replace("END\n", "ENDMDL\nEND\n")))
    with pytest.warns(UserWarning) as record:
        s = read_structure(tmp_path / "m.pdb")
    messages = " ".join(str(w.message) for w in record)
    assert "2 models found; using the first" in messages
    assert "dropped 2 non-polymer or non-standard residue(s): HOH" in messages
    assert "blank chain ids filled from segment ids" in messages
    assert s.ins_code.tolist().count("A") == 1  # insertion code kept
    assert (s.atom_name == "CA").sum() == 3  # altloc B of ALA 2 dropped


def test_info_flags_a_missing_stack_and_a_box_that_differs_from_the_stack(tmp_path):
    from cryodyna.analysis.summary import describe

    (tmp_path / "p.star").write_text(STAR)
    rows = dict(describe(tmp_path / "p.star"))
    assert str(tmp_path / "stack.mrcs") in rows["missing stack"] and "--datadir" in rows["missing stack"]
    write_stack(tmp_path / "stack.mrcs", 2, 16)
    assert "missing stack" not in dict(describe(tmp_path / "p.star")) and "problem" not in dict(describe(tmp_path / "p.star"))
    (tmp_path / "p.star").write_text(STAR.replace("1.5 16", "1.5 32"))
    assert "set rlnImageSize in the particle file to 16" in dict(describe(tmp_path / "p.star"))["problem"]
