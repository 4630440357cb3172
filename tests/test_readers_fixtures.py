"""Readers on real files written by RELION, cryoSPARC and cryoDRGN (skipped without ../shared/fixtures)."""

import pickle

import numpy as np
import pytest

from cryodyna.data.dataset import ParticleDataset
from cryodyna.io.read import read_particles
from cryodyna.analysis.summary import describe
from conftest import FIXTURES, fixture_file


def test_relion30_refinement_matches_cryodrgn_parse():
    t = read_particles(fixture_file("cryodrgn", "FinalRefinement-OriginalParticles-PfCRT.star"))
    rot, trans = pickle.load(open(fixture_file("cryodrgn", "pose.star.pkl"), "rb"))
    ctf = pickle.load(open(fixture_file("cryodrgn", "ctf1.pkl"), "rb"))
    np.testing.assert_allclose(t.rotations, rot, atol=1e-6)
    np.testing.assert_allclose(t.pixel_size, 1.035)
    # cryoDRGN: translation = origin (px) / D with D = 300; ours: origin in Å
    np.testing.assert_allclose(t.shifts, trans * 300 * 1.035, atol=1e-4)
    np.testing.assert_allclose(t.defocus_u, ctf[:, 2], rtol=1e-6)
    np.testing.assert_allclose(t.defocus_v, ctf[:, 3], rtol=1e-6)
    np.testing.assert_allclose(np.rad2deg(t.astig_angle), ctf[:, 4], atol=1e-4)
    np.testing.assert_allclose(t.voltage, ctf[:, 5])
    np.testing.assert_allclose(t.cs, ctf[:, 6], rtol=1e-6)
    np.testing.assert_allclose(t.amp_contrast, ctf[:, 7], rtol=1e-6)
    np.testing.assert_allclose(np.rad2deg(t.phase_shift), ctf[:, 8], atol=1e-6)


def test_cryosparc_matches_cryodrgn_parse():
    t = read_particles(fixture_file("cryodrgn", "cryosparc_P12_J24_001_particles.cs"))
    rot, trans = pickle.load(open(fixture_file("cryodrgn", "pose.cs.pkl"), "rb"))
    ctf = pickle.load(open(fixture_file("cryodrgn", "ctf2.pkl"), "rb"))
    assert len(t) == 2019
    np.testing.assert_allclose(t.rotations, rot, atol=1e-5)
    np.testing.assert_allclose(t.shifts, trans * 180 * 2.95, atol=1e-3)
    np.testing.assert_allclose(t.box, ctf[:, 0])
    np.testing.assert_allclose(t.pixel_size, ctf[:, 1], rtol=1e-6)
    np.testing.assert_allclose(t.defocus_u, ctf[:, 2], rtol=1e-6)
    np.testing.assert_allclose(t.defocus_v, ctf[:, 3], rtol=1e-6)
    np.testing.assert_allclose(np.rad2deg(t.astig_angle), ctf[:, 4], atol=1e-4)
    np.testing.assert_allclose(t.voltage, ctf[:, 5])
    np.testing.assert_allclose(t.cs, ctf[:, 6])
    np.testing.assert_allclose(t.amp_contrast, ctf[:, 7], rtol=1e-6)


def test_empiar_10076_star_and_cs_agree():
    star = read_particles(fixture_file("cryodrgn", "empiar_10076_7.star"))
    cs = read_particles(fixture_file("cryodrgn", "empiar_10076_7.cs"))
    assert len(star) == len(cs) == 7
    assert not star.has_poses and not cs.has_poses  # neither file carries alignments
    np.testing.assert_allclose(star.shifts, cs.shifts)
    np.testing.assert_allclose(star.defocus_u, cs.defocus_u, rtol=1e-6)
    np.testing.assert_allclose(star.defocus_v, cs.defocus_v, rtol=1e-6)
    np.testing.assert_allclose(star.astig_angle, cs.astig_angle, atol=1e-6)
    np.testing.assert_allclose(star.voltage, cs.voltage)
    np.testing.assert_allclose(star.cs, cs.cs)
    np.testing.assert_allclose(star.amp_contrast, cs.amp_contrast)
    np.testing.assert_allclose(star.pixel_size, cs.pixel_size, rtol=1e-5)  # 5 um / 38168 x 1e4 = 1.31 A
    np.testing.assert_array_equal(star.image_index, cs.image_index)
    np.testing.assert_array_equal(star.image_file, cs.image_file)
    np.testing.assert_array_equal(star.box, 320)
    a, b = ParticleDataset(star), ParticleDataset(cs)
    np.testing.assert_array_equal(a.image(3).numpy(), b.image(3).numpy())


def test_relion31_optics_and_stack():
    t = read_particles(fixture_file("cryodrgn", "relion31.star"))
    assert (t.pixel_size == 2.806).all() and (t.box == 256).all() and (t.voltage == 300).all()
    assert t.has_poses
    for name in ("relion31.v2.star",):
        t2 = read_particles(fixture_file("cryodrgn", name))
        np.testing.assert_allclose(t2.rotations, t.rotations)
        np.testing.assert_allclose(t2.shifts, t.shifts)


def test_six_optics_groups_keep_per_group_values():
    path = fixture_file("cryodrgn", "relion31.6opticsgroups.star")
    t = read_particles(path)
    import starfile

    raw = starfile.read(path)
    optics = raw["optics"].set_index("rlnOpticsGroup")
    parts = raw["particles"]
    np.testing.assert_allclose(t.pixel_size, optics.loc[parts["rlnOpticsGroup"], "rlnImagePixelSize"].to_numpy())
    np.testing.assert_allclose(t.cs, optics.loc[parts["rlnOpticsGroup"], "rlnSphericalAberration"].to_numpy())
    assert len({g["pixel_size"] for g in t.optics_summary()}) == 2
    assert len(t.optics_summary()) == 6


def test_relion5():
    t = read_particles(fixture_file("cryodrgn", "relion5.star"))
    assert (t.pixel_size == pytest.approx(0.89)) and (t.voltage == 100).all() and (t.box == 448).all()
    assert t.has_poses


def test_toy_projections_with_cryodrgn_pickles():
    stack = fixture_file("cryodrgn", "toy_projections.mrcs")
    t = read_particles(stack, poses=fixture_file("cryodrgn", "toy_rot_trans.pkl"), ctf=fixture_file("cryodrgn", "test_ctf.pkl"))
    rot, trans = pickle.load(open(fixture_file("cryodrgn", "toy_rot_trans.pkl"), "rb"))
    assert len(t) == 1000 and (t.box == 30).all()
    np.testing.assert_allclose(t.rotations, rot, atol=1e-7)
    np.testing.assert_allclose(t.shifts, trans * 30 * 1.0, atol=1e-6)
    ds = ParticleDataset(t)
    assert ds[999]["images"].shape == (1, 30, 30)
    # The legacy single-block STAR of the same stack has no poses and no pixel size.
    legacy = read_particles(fixture_file("cryodrgn", "toy_projections.star"))
    assert not legacy.has_poses and np.isnan(legacy.pixel_size).all() and (legacy.box == 30).all()
    np.testing.assert_allclose(np.rad2deg(legacy.phase_shift), 90)


def test_cryosparc_2d_export_has_ctf_but_no_poses():
    t = read_particles(fixture_file("cryodrgn", "cryosparc_J2_particles_exported.cs"))
    assert len(t) == 22 and not t.has_poses
    assert (t.box == 300).all()


def all_fixture_files():
    if not FIXTURES.is_dir():
        return []
    return sorted(p for p in FIXTURES.rglob("*") if p.is_file() and p.suffix != ".md")


@pytest.mark.parametrize("path", all_fixture_files(), ids=lambda p: p.name)
def test_info_reads_every_fixture(path):
    rows = dict(describe(path))
    assert rows["file"] == str(path)


def test_gold_standard_half_sets_are_read():
    import starfile

    from cryodyna.io.cryosparc import load_cs

    path = fixture_file("cryodrgn", "relion31.6opticsgroups.star")
    np.testing.assert_array_equal(read_particles(path).random_subset, starfile.read(path)["particles"]["rlnRandomSubset"])
    cs = fixture_file("cryodrgn", "cryosparc_P12_J24_001_particles.cs")
    np.testing.assert_array_equal(read_particles(cs).random_subset, load_cs(cs)["alignments3D/split"] + 1)
    assert read_particles(fixture_file("cryodrgn", "empiar_10076_7.star")).random_subset is None
