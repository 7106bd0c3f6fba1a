"""Process-level infrastructure: launching ranks, rank results, the run lock, the worker pool."""
