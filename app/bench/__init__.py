"""Benchmarks: each module exposes run(settings, ...) -> dict, printed as one JSON line by `sfmlops bench`."""
