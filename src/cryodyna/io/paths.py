"""Resolution of image-stack paths written inside particle files."""

from __future__ import annotations

import os
from pathlib import Path


def resolve_stack_path(name: str, table_dir: Path, datadir: Path | None = None) -> str:
    """Absolute path of the stack ``name`` referenced by a particle file in ``table_dir``.

    Absolute names are kept.  Relative names are looked up under ``datadir`` (if given) and then
    the particle file's folder, first as written and then by file name alone (the usual fix when
    a project was moved); the first existing candidate wins, otherwise the first candidate is
    returned so that the eventual error names a sensible path.
    """
    p = Path(name)
    if p.is_absolute():
        return str(p)
    roots = ([datadir] if datadir is not None else []) + [table_dir]
    candidates = [root / p for root in roots] + [root / p.name for root in roots]
    for c in candidates:
        if c.is_file():
            return str(c.resolve())
    return str(Path(os.path.abspath(candidates[0])))
