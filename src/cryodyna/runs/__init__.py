"""The run folder: the one place that knows its layout (:mod:`cryodyna.runs.layout`) and reads a
finished or running run without side effects (:mod:`cryodyna.runs.read`)."""
