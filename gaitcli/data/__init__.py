"""The data core: synthetic data, pretreatment, inspection, safe pickle I/O, datasets."""
