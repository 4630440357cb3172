"""Assembly of what training and analysis run on: node graphs, deformation models (encoders are
looked up in :data:`cryodyna.assembly.model.ENCODERS`), prior energies (looked up in
:data:`cryodyna.assembly.priors.PRIORS`), the MARTINI preparation, and reloading a saved run."""
