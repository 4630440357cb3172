"""Image formation: each physical step is its own small module.

``project_gaussians`` (pose + Gaussian specimen -> projection) -> ``ctf`` (contrast transfer)
-> ``shift`` (Fourier phase ramp) -> ``filters`` (mask, low-pass) -> ``loss`` (correlation).
"""
