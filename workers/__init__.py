"""Engines: in-host multiprocessing, the RQ worker node, Redis management."""
