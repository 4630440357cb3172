"""Coarse representations of a model used by the deformation stages (nodes, blocks, pair sets)."""
