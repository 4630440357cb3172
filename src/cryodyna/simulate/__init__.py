"""Synthetic particle datasets with ground truth (``cryodyna simulate``, ``cryodyna example``)."""
