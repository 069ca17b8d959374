"""Helpers the tests share (not shipped: pyproject.toml packages model, components and pipeline only)."""
