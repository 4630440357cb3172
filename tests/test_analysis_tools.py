"""analyze, cluster, chimerax and map helpers on a tiny trained run."""

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cryodyna.cli import app
from cryodyna.errors import CryodynaError
from cryodyna.io.mrc import read_volume, write_volume
from cryodyna.io.read import read_particles
from cryodyna.io.structure import read_models, read_structure
from cryodyna.config import resolved_config
from cryodyna.pipelines.training import train_atom
from conftest import TINY_TRAIN_SETTINGS

runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tiny_adk, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        folder = train_atom(tiny_adk / "particles.star", tiny_adk / "reference.pdb", run_dir,
                            resolved_config(None, TINY_TRAIN_SETTINGS, 2))
    return run_dir, folder


def invoke(*args):
    r = runner.invoke(app, [str(a) for a in args])
    assert r.exit_code == 0, r.output
    return r.output


def test_analyze_writes_rmsf_structures_plots_and_index(trained):
    run_dir, folder = trained
    invoke("analyze", run_dir, "--k", 4, "--pcs", 2)
    out = run_dir / "analysis" / folder.name
    for name in ("kmeans.pdb", "pca-1.pdb", "pca-2.pdb", "pca-1.png", "z_pca.png", "pc_histograms.png", "losses.png", "rmsf.csv"):
        assert (out / name).is_file(), name
    assert len(read_models(out / "kmeans.pdb")) == 4
    frames = np.stack([m.coords for m in read_models(out / "pca-1.pdb")])
    expected = np.sqrt(((frames - frames.mean(0)) ** 2).sum(-1).mean(0))
    table = pd.read_csv(out / "rmsf.csv", dtype={"residue": str})
    np.testing.assert_allclose(table[table.pc == 1].rmsf_a, expected, atol=2e-3)
    first = table[table.pc == 1].iloc[0]
    assert (first.chain, first.residue, first.res_name, first.atom) == ("A", "1", "MET", "CA")  # labelled by chain and residue
    import gemmi

    b = [cra.atom.b_iso for cra in gemmi.read_structure(str(out / "pca-1.pdb"))[0].all()]
    np.testing.assert_allclose(b, expected, atol=0.01)  # B-factor column = RMSF
    page = (run_dir / "index.html").read_text()
    assert "z_pca.png" in page and "pca-1.pdb" in page and "z_distribution.png" in page


def test_cluster_subsets(trained, tiny_adk, tmp_path):
    run_dir, folder = trained
    invoke("cluster", run_dir, "--k", 3, "-o", tmp_path / "k")
    tables = [read_particles(p) for p in sorted((tmp_path / "k").glob("cluster_*.star"))]
    assert sum(len(t) for t in tables) == 200
    indices = [pickle.load(open(p, "rb")) for p in sorted((tmp_path / "k").glob("cluster_*.pkl"))]
    assert sorted(np.concatenate(indices).tolist()) == list(range(200))
    for t, idx in zip(tables, indices):
        np.testing.assert_array_equal(t.image_index, idx)  # stack index i = particle i in the simulated set
    z = np.load(folder / "z.npy")
    invoke("cluster", run_dir, "--pc", 1, "--range", "-1e9,1e9", "-o", tmp_path / "pc")
    assert len(read_particles(tmp_path / "pc" / "pc1_range_000.star")) == 200
    box = ",".join(f"{lo}:{hi}" for lo, hi in zip(np.median(z, 0), z.max(0) + 1))
    invoke("cluster", run_dir, "--zbox", box, "-o", tmp_path / "box")
    expected = int(((z >= np.median(z, 0)) & (z <= z.max(0) + 1)).all(1).sum())
    assert len(pickle.load(open(tmp_path / "box" / "zbox_000.pkl", "rb"))) == expected
    with pytest.warns(UserWarning, match="use --zbox"):
        invoke("cluster", run_dir, "--box", box, "-o", tmp_path / "old")  # the deprecated name still works
    assert len(pickle.load(open(tmp_path / "old" / "zbox_000.pkl", "rb"))) == expected
    r = runner.invoke(app, ["cluster", str(run_dir), "--k", "2", "--pc", "1", "-o", str(tmp_path / "x")])
    assert r.exit_code != 0
    (tmp_path / "sel.txt").write_text("7\n0\n5\n")
    invoke("cluster", run_dir, "--indices", tmp_path / "sel.txt", "-o", tmp_path / "sel")
    np.testing.assert_array_equal(read_particles(tmp_path / "sel" / "selection_000.star").image_index, [0, 5, 7])
    (tmp_path / "bad.txt").write_text("3\n200\n")
    for args, message in [(["--indices", str(tmp_path / "bad.txt")], "index 200 is outside 0..199"),
                          (["--k", "5000"], "choose 2 to 20 clusters for 200 particles"),
                          (["--pc", "1", "--range", "5,-5"], "LOW must be below HIGH"),
                          (["--pc", "1", "--range", "a,b"], "expected two numbers"),
                          (["--pc", "1", "--range", "1e8,1e9"], "holds no particle")]:
        r = runner.invoke(app, ["cluster", str(run_dir), *args, "-o", str(tmp_path / "bad")])
        assert isinstance(r.exception, CryodynaError) and message in str(r.exception), (args, r.output)
        assert not (tmp_path / "bad").exists()


def test_user_mistakes_get_one_line_with_the_fix(trained, tiny_adk, tmp_path):
    run_dir, folder = trained
    settings = [x for s in TINY_TRAIN_SETTINGS for x in ("--set", s)]
    r = runner.invoke(app, ["train-atom", str(tiny_adk / "reference.pdb"), str(tiny_adk / "particles.star"),
                            "-o", str(tmp_path / "swapped"), *settings])
    assert isinstance(r.exception, CryodynaError) and "the order is PARTICLES MODEL" in str(r.exception)
    assert not (tmp_path / "swapped").exists()
    (tmp_path / "map.mrc").write_bytes(b"")
    r = runner.invoke(app, ["train-atom", str(tiny_adk / "particles.star"), str(tmp_path / "map.mrc"), "-o", str(tmp_path / "m")])
    assert isinstance(r.exception, CryodynaError) and "not an atomic model" in str(r.exception)
    assert "the order is" not in str(r.exception) and "cryodyna center-origin" in str(r.exception)
    r = runner.invoke(app, ["analyze", str(tmp_path / "nowhere")])
    assert isinstance(r.exception, CryodynaError) and "no such run folder" in str(r.exception)
    r = runner.invoke(app, ["sample-structures", str(run_dir), "--z", str(folder / "z.npy"), "--allatom", "-o", str(tmp_path / "a.pdb")])
    assert isinstance(r.exception, CryodynaError) and "all-atom models need the bead level" in str(r.exception)
    import shutil

    damaged = tmp_path / "damaged"
    shutil.copytree(run_dir, damaged)
    ckpt = damaged / "checkpoints" / "last.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:5000])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(CryodynaError, match=r"last.pt: cannot read this checkpoint, it is truncated or corrupt.*--resume .*epoch-0002.*ckpt.pt"):
            train_atom(tiny_adk / "particles.star", tiny_adk / "reference.pdb", damaged, resolved_config(None, TINY_TRAIN_SETTINGS, 3))


def test_chimerax_script(trained, tmp_path):
    run_dir, folder = trained
    import os

    (tmp_path / "movies").mkdir()
    for k in (1, 2):  # a map series beside the trajectories, scaled by 1000 (its level must follow)
        for i in range(3):
            write_volume(folder / f"vol_pca_{k}_{i:03d}.mrc", 1000 * np.random.default_rng(i).random((8, 8, 8)).astype(np.float32), 4.0)
    invoke("chimerax", folder, "-o", tmp_path / "movies" / "m.cxc")
    text = (tmp_path / "movies" / "m.cxc").read_text()
    relative = os.path.relpath(folder / "pca-1.pdb", tmp_path / "movies")
    assert f'open "{relative}" coordsets true' in text and str(tmp_path) not in text  # paths relative to the script
    assert "close session" not in text
    for k in (1, 2, 3):  # every PC is played
        assert f"coordset #{k} 1,10" in text and f"'PC {k}'" in text
    level = float(text.split("level ")[1].split()[0])
    assert 500 < level < 1500  # from the map's statistics, not a fixed 0.5
    assert "vseries play #5" in text and 'movie encode "movie.mp4"' in text
    for f in folder.glob("vol_pca_*.mrc"):
        f.unlink()


def test_pdb2mrc_mrc_info_center_origin_split(trained, tiny_adk, tmp_path):
    run_dir, folder = trained
    invoke("pdb2mrc", tiny_adk / "reference.pdb", "--box", 32, "--apix", 4.0, "-o", tmp_path / "ref.mrc")
    vol, voxel, origin = read_volume(tmp_path / "ref.mrc")
    assert vol.shape == (32, 32, 32) and voxel == pytest.approx(4.0) and origin == pytest.approx((-64.0,) * 3)
    assert "values (min / max / mean / std)" in invoke("mrc-info", tmp_path / "ref.mrc")
    # a map whose header origin is not zero: after centring, every atom keeps its voxel
    write_volume(tmp_path / "off.mrc", vol, 4.0, origin=(10.0, -20.0, 30.0))
    invoke("center-origin", tiny_adk / "reference.pdb", tmp_path / "off.mrc", "-o", tmp_path / "c")
    before = read_structure(tiny_adk / "reference.pdb").coords
    after = read_structure(tmp_path / "c" / "reference_centered.pdb").coords
    _, _, new_origin = read_volume(tmp_path / "c" / "off_centered.mrc")
    assert new_origin == pytest.approx((-64.0,) * 3)
    np.testing.assert_allclose((after - new_origin) / 4.0, (before - np.array([10.0, -20.0, 30.0])) / 4.0, atol=1e-3)
    invoke("split-models", folder / "pca-1.pdb", "-o", tmp_path / "split")
    assert len(list((tmp_path / "split").glob("*.pdb"))) == 10


def test_traverse_stays_in_populated_regions(trained, tmp_path):
    from cryodyna.analysis.traverse import latent_path

    rng = np.random.default_rng(0)
    angle = rng.uniform(0, np.pi, 2000)
    z = np.stack([np.cos(angle), np.sin(angle)], 1) + rng.normal(0, 0.03, (2000, 2))  # a half circle
    start, end = np.array([1.0, 0.0]), np.array([-1.0, 0.0])
    path, visited = latent_path(z, start, end, frames=12)
    assert path.shape == (12, 2) and np.allclose(path[0], start) and np.allclose(path[-1], end)
    radius = np.linalg.norm(path, axis=1)
    assert np.all(np.abs(radius - 1) < 0.15)  # along the arc, not through the empty centre
    straight = np.linspace(start, end, 12)
    assert np.linalg.norm(straight, axis=1).min() < 0.1  # (what a straight line would do)
    run_dir, folder = trained
    invoke("traverse", run_dir, "--from", 0, "--to", 150, "--frames", 5, "-o", tmp_path / "path.pdb")
    assert len(read_models(tmp_path / "path.pdb")) == 5
    assert np.loadtxt(tmp_path / "path.pdb.z.txt").shape == (5, 4)
    r = runner.invoke(app, ["traverse", str(run_dir), "--from", "0", "--to", "1,2", "-o", str(tmp_path / "bad.pdb")])
    assert isinstance(r.exception, CryodynaError) and "a latent needs 4 values" in str(r.exception)


def test_trajectory_figure_draws_one_line_per_frame_whatever_the_breaks(tmp_path, monkeypatch):
    """Traces with many chain breaks (a ribosome's RNA: C1' atoms ~6 Å apart, many chains) are one
    line per frame with gaps, not one artist per segment (which took minutes at 14,000 nodes)."""
    from matplotlib.figure import Figure

    from cryodyna.analysis.figures import trajectory_figure

    drawn = []
    monkeypatch.setattr(Figure, "savefig", lambda fig, *a, **k: drawn.append(fig))
    steps = np.where(np.arange(600) % 3 == 0, 12.0, 6.0)  # nucleotide steps joined, a break every third node
    trace = np.stack([np.cumsum(steps), np.zeros(600), np.zeros(600)], 1)
    trajectory_figure(tmp_path / "t.png", np.stack([trace + k for k in range(4)]))
    lines = drawn[0].axes[0].lines
    assert len(lines) == 4
    x = np.asarray(lines[0].get_data_3d()[0])
    assert np.isnan(x).sum() == 199  # the breaks > 8 Å (the first step is no break), none of the 6 Å steps
