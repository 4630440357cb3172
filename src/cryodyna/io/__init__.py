"""Readers and writers for particle tables (RELION STAR, cryoSPARC .cs, cryoDRGN pickles), image
stacks and volumes (MRC/MRCS) and atomic models (PDB/mmCIF)."""
