"""The data layer: safe pkl I/O and header reading, the one sequence walker, what a valid
sequence is, pretreatment (``gait prepare``), inspection (``gait inspect``), and the training /
evaluation pipeline (partition, dataset, samplers, collation). Synthetic data lives in
:mod:`gaitcli.synth`."""
