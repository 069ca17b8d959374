"""What a push makes outside its own PushedModel directory, named there (PUSH_FILE) before it makes
it, so that the run after a push killed with kill -9 removes exactly that (orchestration/recovery.py,
orchestration/kubeflow/records.py). Light: those read it without importing TFX."""

from __future__ import annotations

import os
from typing import List

from core import files

STAGING_PREFIX = ".staging-"
PUSH_FILE = "push.json"  # in the PushedModel directory: what the push makes outside it


def left_by(pushed_model_uri: str) -> List[str]:
    """What the push of this PushedModel directory named before it made it (its staging and version
    directories): what a killed push may have left outside its own directory."""
    named = files.read_json(os.path.join(pushed_model_uri, PUSH_FILE), default=None) or {}
    return [path for path in (named.get("staging"), named.get("destination")) if path]


def staging_path(destination: str) -> str:
    """The staging directory of a push to `destination`, beside it."""
    parent, name = os.path.split(destination.rstrip("/"))
    return os.path.join(parent, f"{STAGING_PREFIX}{name}-{os.getpid()}")
