"""Training: one deformation trainer for residue and bead level, checkpoints, metrics."""
