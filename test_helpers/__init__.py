"""Helpers the tests share (not shipped: pyproject.toml packages the project's own packages only)."""
