"""report.html renders in headless Chromium (Debian's chromium): plots, the 3-D viewer, no
JavaScript errors; a screenshot is saved.  Skipped when no browser is installed."""

import re
import shutil
import subprocess
import warnings

import numpy as np
import pytest

from conftest import TINY_TRAIN_SETTINGS
from cryodyna.config import resolved_config
from cryodyna.pipelines.training import train_atom

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def render(page, tmp_path, width=1400):
    """(DOM after the page's scripts ran, browser console lines) and a screenshot in tmp_path, in a
    window ``width`` px wide."""
    if BROWSER is None:
        pytest.skip("no chromium in PATH (apt install chromium)")
    flags = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--enable-unsafe-swiftshader",
             "--virtual-time-budget=8000", "--enable-logging=stderr", "--v=0", f"--window-size={width},2400"]
    dom = subprocess.run(flags + ["--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    shot = tmp_path / "report.png"
    subprocess.run(flags + [f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 10_000
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line]
    return dom.stdout, console


def assert_clean(dom, console):
    """No script errors, nothing wider than the window, every plot within its box; the number of
    plots drawn."""
    status = re.search(r'<div id="js-status"[^>]*>', dom).group(0)
    assert 'data-done="true"' in status, status
    assert "data-js-errors" not in dom.split("<head>")[0], "uncaught JavaScript error"
    assert not [c for c in console if "Uncaught" in c or "Error:" in c], console
    assert 'data-overflow-px="0"' in status and 'data-wide-plots=""' in status, status
    return int(re.search(r'data-rendered="(\d+)"', status).group(1))


def plot_dom(dom, div_id):
    """The DOM of one plot (up to the next plot or the end)."""
    start = dom.index(f'id="{div_id}"')
    end = dom.find('<div class="plot js-plotly-plot"', start)
    return dom[start: end if end > 0 else len(dom)]


def test_deformation_report_renders(tiny_adk, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train_atom(tiny_adk / "particles.star", tiny_adk / "reference.pdb", tmp_path / "run",
                   resolved_config(None, TINY_TRAIN_SETTINGS + ["optim.eval_every=1"], 2))
    page = tmp_path / "run" / "report.html"
    text = page.read_text()
    assert not re.search(r"<script[^>]+src=|<link[^>]+href=", text)  # self-contained: nothing fetched
    dom, console = render(page, tmp_path)
    assert assert_clean(dom, console) >= 5  # latent space, 3-D viewer, RMSF, two loss panels
    assert dom.count("js-plotly-plot") >= 5
    assert "gl-container" in dom  # the WebGL scene of the 3-D viewer
    assert "motion along PCA-1" in dom and "holdout image loss" in dom
    assert 'href="epoch-0002_step-0000010/z.npy"' in dom  # links to every file, grouped per folder
    folders = re.findall(r"<summary>([^<]+)/ \(\d+ files\)</summary>", dom)
    assert folders[:2] == ["epoch-0002_step-0000010", "epoch-0001_step-0000005"], folders  # newest first
    losses = plot_dom(dom, "train-losses")
    assert 'class="legend"' in losses and ">image<" in losses  # legend names every loss term
    assert "µ" not in losses and re.search("10\u200b?<tspan", losses)  # powers of ten, not SI prefixes
    assert "cryodyna cluster" in dom


@pytest.mark.slow
def test_report_layout_holds_long_paths_narrow_windows_and_outliers(tiny_adk, tmp_path, monkeypatch):
    from cryodyna.analysis import run_report
    from cryodyna.analysis.run_report import write_report
    from cryodyna.runs.read import newest_evaluation

    run = tmp_path / ("a-long-folder-name-without-spaces-" * 4) / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train_atom(tiny_adk / "particles.star", tiny_adk / "reference.pdb", run, resolved_config(None, TINY_TRAIN_SETTINGS, 1))
    z_path = newest_evaluation(run) / "z.npy"
    z = np.load(z_path)
    z[0] = 1000.0  # one particle far from the rest
    np.save(z_path, z)
    page = write_report(run)
    for width in (1400, 900):
        dom, console = render(page, tmp_path, width)
        assert assert_clean(dom, console) >= 5, width
        assert "1 outlying particles beyond the axes" in plot_dom(dom, "latent")
    monkeypatch.setattr(run_report, "MAX_POINTS", 60)  # a large data set: the latent plots show a subset
    dom, console = render(write_report(run), tmp_path)
    assert assert_clean(dom, console) >= 5
    shown = int(re.search(r"Showing a random (\d+) of 200 particles", dom).group(1))
    assert 60 <= shown <= 63  # the subset and the k-means centres


def test_halfset_agreement_is_shown_in_each_half(halfset_run, tmp_path):
    dom, console = render(halfset_run / "half-1" / "report.html", tmp_path)
    assert assert_clean(dom, console) >= 6  # the deformation plots and the agreement per node
    assert "Half-set agreement" in dom and "RMS disagreement / RMS motion" in dom and 'id="halfset-plot"' in dom


def test_density_report_shows_map_slices(tiny_adk, tmp_path):
    from cryodyna.config import load_config
    from cryodyna.pipelines.training import train_density

    u = np.load(tiny_adk / "ground_truth.npz")["path_coordinate"]
    np.save(tmp_path / "z.npy", u[:, None].astype(np.float32))
    cfg = load_config("train-density", None, ["model.hidden=32", "model.layers=1", "optim.epochs=1", "optim.eval_every=1",
                                              "analysis.kmeans=2", "analysis.pc_frames=2", "analysis.pcs=1"])
    train_density(tiny_adk / "particles.star", tmp_path / "z.npy", tmp_path / "density", cfg)
    dom, console = render(tmp_path / "density" / "report.html", tmp_path)
    assert assert_clean(dom, console) >= 2  # map slices and losses
    assert "Maps (central slices)" in dom and "vol_kmeans_000.mrc" in dom


def test_packed_coordinates_round_trip():
    """The page's int16 coordinates decode (as run_report.js does) to within half a step, also for a
    model wider than the int16 range at the default step."""
    import base64

    import numpy as np

    from cryodyna.analysis.run_report import COORD_STEP, _packed

    rng = np.random.default_rng(0)
    for spread in (50.0, 2000.0):
        coords = rng.uniform(-spread, spread, size=(3, 40, 3)) + 7.0
        p = _packed(coords)
        q = np.frombuffer(base64.b64decode(p["int16"]), "<i2").reshape(p["shape"])
        back = np.asarray(p["origin"]) + p["step"] * q
        assert np.abs(back - coords).max() <= p["step"] / 2 + 1e-9
        assert p["step"] == COORD_STEP if spread == 50.0 else p["step"] > COORD_STEP
