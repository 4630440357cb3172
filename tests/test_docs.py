"""The user guide builds with ``mkdocs build --strict`` and its reference covers every command and
every configuration field."""

import html
import re
import subprocess
import sys
from pathlib import Path

from cryodyna.config.load import CONFIGS
from cryodyna.reference import command_names, config_fields

ROOT = Path(__file__).resolve().parents[1]


def test_docs_build_strict_and_reference_is_complete(tmp_path):
    site = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"), "-d", str(site)],
                       capture_output=True, text=True, check=False, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr

    def text(page: str) -> str:
        return html.unescape(re.sub(r"<[^>]+>", "", (site / page / "index.html").read_text()))

    commands = text("reference/commands")
    names = command_names()
    assert len(names) >= 15
    for name in names:
        assert name in commands, f"command {name} missing from the reference"
    config = text("reference/configuration")
    for kind, model in CONFIGS.items():
        assert f"cryodyna config show {kind}" in config
        for key, _, _, _ in config_fields(model):
            assert key in config, f"config field {kind}:{key} missing from the reference"
    for page in ("tutorial", "preparing-data", "concepts", "troubleshooting", "reference/run-folders"):
        assert (site / page / "index.html").is_file()
    images = re.findall(r'src="([^"]+\.png)"', (site / "tutorial" / "index.html").read_text())
    assert len(images) >= 4 and all((site / "tutorial" / src).resolve().is_file() for src in images)


def test_committed_reference_pages_are_current():
    from cryodyna.reference import MARKER, PAGES, regenerated

    for page, generate in PAGES.items():
        text = (ROOT / "docs" / page).read_text()
        assert MARKER in text and len(text.split(MARKER, 1)[1]) > 2000, page  # readable without building the site
        assert text == regenerated(text, generate), f"docs/{page} is out of date: run python -m cryodyna.reference"
