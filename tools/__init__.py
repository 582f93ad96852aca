"""Maintainer tools, run from a source checkout (not installed): the PyTorch copy of the official
architecture that tests and benchmarks compare against, the model-card writer and the converter's
benchmark. `python -m tools.card ...`, `python -m tools.convert_bench ...` from the repository root."""
