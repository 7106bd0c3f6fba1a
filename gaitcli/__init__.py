"""gaitcli: silhouette-based gait recognition (MetaGait / GaitGL) from the command line.

The package is split by job: ``gaitcli.data`` (pretreatment, inspection, datasets,
safe pickle I/O), ``gaitcli.synth``, ``gaitcli.models``, ``gaitcli.training``, ``gaitcli.evaluation``, and
``gaitcli.config`` which every command uses to read OpenGait-shaped YAML.
"""

__version__ = "0.1.0"
