"""Benchmarks and comparison tools that print figures (BENCHMARKS.md); never imported by the
engine (model/), the components or the pipeline. Run as `python -m bench.<tool>`."""
