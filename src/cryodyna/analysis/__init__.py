"""Latent-space analysis, structure sampling and figures."""
