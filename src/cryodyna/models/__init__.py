"""Neural networks: image encoders, the hierarchical block-graph decoder, the volume network."""
