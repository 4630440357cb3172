"""STAR / cryoDRGN writers and readers on synthetic files; malformed inputs give clear errors."""

from pathlib import Path

import numpy as np
import pytest

from cryodyna.data.dataset import ParticleDataset, check_images
from cryodyna.errors import InputError
from cryodyna.imaging.rotations import random_rotations
from cryodyna.io.cryodrgn import write_cryodrgn
from cryodyna.io.particles import ParticleTable
from cryodyna.io.read import read_particles
from cryodyna.io.star import write_star
from conftest import write_stack


def make_table(stack: Path, n: int, d: int, apix=(1.5, 2.0)) -> ParticleTable:
    rng = np.random.default_rng(0)
    group = np.where(np.arange(n) < n // 2, 1, 2)
    pixel = np.where(group == 1, apix[0], apix[1])
    return ParticleTable(
        image_file=np.full(n, str(stack), dtype=object), image_index=np.arange(n),
        rotations=random_rotations(n, rng), shifts=rng.uniform(-5, 5, (n, 2)),
        defocus_u=rng.uniform(1e4, 2e4, n), defocus_v=rng.uniform(1e4, 2e4, n), astig_angle=rng.uniform(-1.5, 1.5, n),
        voltage=np.where(group == 1, 300.0, 200.0), cs=np.full(n, 2.7), amp_contrast=np.full(n, 0.1),
        phase_shift=rng.uniform(0, 1, n), pixel_size=pixel, box=np.full(n, d), optics_group=group,
    )


def assert_tables_equal(a: ParticleTable, b: ParticleTable, atol=1e-5):
    np.testing.assert_allclose(b.rotations, a.rotations, atol=atol)
    for name in ("shifts", "defocus_u", "defocus_v", "astig_angle", "voltage", "cs", "amp_contrast", "phase_shift", "pixel_size"):
        np.testing.assert_allclose(getattr(b, name), getattr(a, name), atol=atol, err_msg=name)
    np.testing.assert_array_equal(b.box, a.box)
    np.testing.assert_array_equal(b.image_index, a.image_index)
    assert [Path(f).resolve() for f in b.image_file] == [Path(f).resolve() for f in a.image_file]


def test_star_round_trip_with_two_optics_groups(tmp_path):
    stack = tmp_path / "stack.mrcs"
    write_stack(stack, 10, 16)
    table = make_table(stack, 10, 16)
    write_star(tmp_path / "out.star", table)
    back = read_particles(tmp_path / "out.star")
    assert_tables_equal(table, back)
    assert len(back.optics_summary()) == 2
    assert "stack.mrcs" in (tmp_path / "out.star").read_text() and str(tmp_path) not in (tmp_path / "out.star").read_text()


def test_half_sets_round_trip_and_bad_values_are_named(tmp_path):
    stack = tmp_path / "stack.mrcs"
    write_stack(stack, 10, 16)
    table = make_table(stack, 10, 16)
    table.random_subset = np.array([1, 2] * 5)
    write_star(tmp_path / "halves.star", table)
    np.testing.assert_array_equal(read_particles(tmp_path / "halves.star").random_subset, table.random_subset)
    import starfile

    blocks = starfile.read(tmp_path / "halves.star")
    blocks["particles"].loc[9, "rlnRandomSubset"] = 3
    starfile.write(blocks, tmp_path / "bad.star")
    with pytest.raises(InputError, match="row 10: rlnRandomSubset is 3; expected 1 or 2"):
        read_particles(tmp_path / "bad.star")


def test_subset_export_and_cryodrgn_round_trip(tmp_path):
    stack = tmp_path / "stack.mrcs"
    write_stack(stack, 10, 16)
    table = make_table(stack, 10, 16, apix=(1.5, 1.5))
    table.voltage[:] = 300
    sub = table.subset(np.array([7, 2, 5]))
    write_star(tmp_path / "sub.star", sub)
    assert_tables_equal(sub, read_particles(tmp_path / "sub.star"))
    write_cryodrgn(tmp_path / "poses.pkl", tmp_path / "ctf.pkl", table)
    back = read_particles(stack, poses=tmp_path / "poses.pkl", ctf=tmp_path / "ctf.pkl")
    assert_tables_equal(table, back, atol=2e-3)  # the pickles are float32


LEGACY = """data_
loop_
_rlnImageName
_rlnDefocusU
_rlnDefocusV
_rlnDefocusAngle
_rlnVoltage
_rlnSphericalAberration
_rlnAmplitudeContrast
_rlnAngleRot
_rlnAngleTilt
_rlnAnglePsi
_rlnOriginX
_rlnOriginY
_rlnDetectorPixelSize
_rlnMagnification
1@stack.mrcs 15000 14000 10 300 2.7 0.1 10 20 30 2.0 -1.0 5.0 25000
2@stack.mrcs 16000 15000 20 300 2.7 0.1 40 50 60 -3.0 0.5 5.0 25000
"""


def test_relion30_legacy_pixel_origins(tmp_path):
    write_stack(tmp_path / "stack.mrcs", 2, 16)
    (tmp_path / "p.star").write_text(LEGACY)
    t = read_particles(tmp_path / "p.star")
    np.testing.assert_allclose(t.pixel_size, 2.0)  # 5 um / 25000 x 1e4
    np.testing.assert_allclose(t.shifts, [[4.0, -2.0], [-6.0, 1.0]])
    np.testing.assert_array_equal(t.box, 16)  # from the stack header
    assert ParticleDataset(t)[1]["poses"].origins[0].tolist() == [-3.0, 0.5]


def test_datadir_resolves_moved_stacks(tmp_path):
    (tmp_path / "meta").mkdir()
    (tmp_path / "data").mkdir()
    write_stack(tmp_path / "data" / "stack.mrcs", 2, 16)
    (tmp_path / "meta" / "p.star").write_text(LEGACY.replace("@stack.mrcs", "@Extract/job1/stack.mrcs"))
    with pytest.raises(InputError, match="row 1.*file not found"):
        check_images(read_particles(tmp_path / "meta" / "p.star"))
    t = read_particles(tmp_path / "meta" / "p.star", datadir=tmp_path / "data")
    check_images(t)


@pytest.mark.parametrize(
    "edit,match",
    [
        (lambda s: s.replace("_rlnDefocusU\n", "_rlnDefocusX\n"), "missing column rlnDefocusU"),
        (lambda s: s.replace("16000", "abc"), "row 2, column rlnDefocusU: value 'abc'"),
        (lambda s: s.replace("2@stack", "0@stack"), "row 2, rlnImageName.*integer >= 1"),
        (lambda s: s.replace("2@stack.mrcs", "stack.mrcs"), "row 2, rlnImageName.*INDEX@STACK"),
        (lambda s: s.replace("_rlnAnglePsi\n", "_rlnAngleFoo\n"), "pose columns incomplete"),
        (lambda s: "", "no data block"),
        (lambda s: s.split("1@stack")[0], "no rows"),
    ],
)
def test_malformed_star(tmp_path, edit, match):
    write_stack(tmp_path / "stack.mrcs", 2, 16)
    p = tmp_path / "p.star"
    p.write_text(edit(LEGACY))
    with pytest.raises(InputError, match=match) as exc:
        read_particles(p)
    assert str(p) in str(exc.value)


def test_missing_stack_and_out_of_range_index(tmp_path):
    (tmp_path / "p.star").write_text(LEGACY)
    t = read_particles(tmp_path / "p.star", box=16)
    with pytest.raises(InputError, match=r"p.star: row 1: image stack .*stack.mrcs: file not found"):
        ParticleDataset(t)
    write_stack(tmp_path / "stack.mrcs", 1, 16)
    with pytest.raises(InputError, match=r"row 2: image 2 requested from .*stack.mrcs, which holds 1 images"):
        ParticleDataset(read_particles(tmp_path / "p.star"))


def test_wrong_box_is_reported(tmp_path):
    write_stack(tmp_path / "stack.mrcs", 2, 16)
    (tmp_path / "p.star").write_text(LEGACY)
    with pytest.raises(InputError, match=r"row 1: .*32 px.*16 px"):
        ParticleDataset(read_particles(tmp_path / "p.star", box=32))


def test_truncated_stack_and_nan_pixels(tmp_path):
    stack = tmp_path / "stack.mrcs"
    write_stack(stack, 2, 16)
    data = stack.read_bytes()
    (tmp_path / "p.star").write_text(LEGACY)
    stack.write_bytes(data[: len(data) - 100])
    with pytest.raises(InputError, match="truncated or corrupt"):
        ParticleDataset(read_particles(tmp_path / "p.star", box=16))
    import mrcfile

    images = np.ones((2, 16, 16), np.float32)
    images[1, 3, 3] = np.nan
    with mrcfile.new(stack, overwrite=True) as m:
        m.set_data(images)
    ds = ParticleDataset(read_particles(tmp_path / "p.star"))
    ds.image(0)
    with pytest.raises(InputError, match=r"image 2 \(row 2\) contains NaN"):
        ds.image(1)


def test_bad_pickles_and_unknown_suffix(tmp_path):
    import pickle

    stack = tmp_path / "s.mrcs"
    write_stack(stack, 3, 8)
    pickle.dump(np.zeros((3, 8)), open(tmp_path / "ctf.pkl", "wb"))
    with pytest.raises(InputError, match=r"ctf.pkl: expected an \(N, 9\) CTF array"):
        read_particles(stack, ctf=tmp_path / "ctf.pkl")
    pickle.dump(np.zeros((2, 9)), open(tmp_path / "ctf.pkl", "wb"))
    with pytest.raises(InputError, match="has 2 rows but the stack"):
        read_particles(stack, ctf=tmp_path / "ctf.pkl")
    with pytest.raises(InputError, match="needs its CTF"):
        read_particles(stack)
    with pytest.raises(InputError, match="unknown particle file type"):
        read_particles(tmp_path / "x.txt")


def test_dataset_downsamples_and_masks(tmp_path):
    stack = tmp_path / "stack.mrcs"
    write_stack(stack, 4, 32)
    table = make_table(stack, 4, 32, apix=(1.0, 1.0))
    ds = ParticleDataset(table, box=16, mask_radius=1.0)
    item = ds[2]
    assert item["images"].shape == (1, 16, 16) and item["images"][0, 0, 0] == 0
    assert item["apix"].item() == pytest.approx(2.0)
    np.testing.assert_allclose(item["poses"].origins[0].numpy(), table.shifts[2] / 2.0, rtol=1e-6)
    np.testing.assert_allclose(item["poses"].rotations[0].numpy(), table.rotations[2], atol=1e-6)
