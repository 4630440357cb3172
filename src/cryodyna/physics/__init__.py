"""Differentiable structural and force-field energies on batched coordinates (B, N, 3) in Å."""
