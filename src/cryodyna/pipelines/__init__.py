"""Whole commands: training with its evaluation outputs and report, half-set training and
comparison, the corrected reconstruction of a run.  They compose ``train`` and ``analysis``."""
