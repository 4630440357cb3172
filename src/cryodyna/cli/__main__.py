"""``python -m cryodyna.cli`` (what torchrun starts)."""

from cryodyna.cli import main

main()
