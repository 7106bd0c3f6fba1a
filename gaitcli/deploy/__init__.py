"""Using a trained model on new walks: ``gait embed``, ``gait identify``, ``gait export``
(docs/deploy.md). Built on the extraction and distances of :mod:`gaitcli.evaluation`."""
