"""Maintenance scripts: run from the repository root as modules, e.g. `python3 -m scripts.make_sample_pcaps`."""
