"""MkDocs hook: fill the reference pages from the code (``cryodyna.reference``), so the command and
configuration reference is generated, never hand-copied."""

from cryodyna.reference import cli_reference_markdown, config_reference_markdown

MARKERS = {"<!-- cli-reference -->": cli_reference_markdown, "<!-- config-reference -->": config_reference_markdown}


def on_page_markdown(markdown, page, config, files):
    for marker, generate in MARKERS.items():
        if marker in markdown:
            markdown = markdown.replace(marker, generate())
    return markdown
