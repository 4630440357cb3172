"""MkDocs hook: regenerate the reference pages from the code (``cryodyna.reference``) at build time,
so the published command and configuration reference is never hand-copied."""

from cryodyna.reference import MARKER, PAGES, regenerated


def on_page_markdown(markdown, page, config, files):
    generate = PAGES.get(page.file.src_uri)
    return regenerated(markdown, generate) if generate is not None and MARKER in markdown else markdown
