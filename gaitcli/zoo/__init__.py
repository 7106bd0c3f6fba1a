"""``gait zoo``: OpenGait's released checkpoints, fetched, checked, converted and scored
(docs/zoo.md). Layer 5, beside ``deploy``: it uses :mod:`gaitcli.convert` (L2) and
:mod:`gaitcli.evaluation` (L3).

* :mod:`.catalogue` — the packaged ``catalogue.yaml`` (or a copy) as typed
  :class:`~.catalogue.ZooEntry` records: ``load_catalogue(path=None)``.
* :mod:`.download` — resumable, checksummed, atomic HTTP downloads with ``urllib``:
  ``download(url, target, sha256=None, timeout=30, console=None)``.
* :mod:`.archive` — one checkpoint out of a release zip: ``extract_member(archive, pattern, dest)``.
* :mod:`.get` — download, checks and safe conversion: ``get_checkpoint(entry, GetOptions(...))``.
* :mod:`.verify` — evaluate and compare: ``verify_checkpoint(entry, data, out=None, ...)``.
* :mod:`.render` — the terminal output of the three commands.

The package itself imports nothing, so that ``gait zoo list`` does not load torch.
"""
