"""Particle images as tensors for training: lazy reading, Fourier-crop downsampling, masking."""
