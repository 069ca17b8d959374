"""A command's temporary files in one directory of its own, removed when the command ends.

The libraries a run uses write to the temporary directory and do not always remove what they wrote:
TensorFlow's autograph writes a source file for each function it converts and removes it at exit,
which a process that ends by os._exit (the training process, the infra check) never reaches;
Beam's job directories stay behind, empty. A run sets TMPDIR to a new directory under the
temporary directory for itself and every process it starts, and removes that directory at its end,
Ctrl-C included (a killed run leaves it: the name says whose it is).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import Iterator

PREFIX = "nanogpt-tfx-"
TIKTOKEN_CACHE_ENV = "TIKTOKEN_CACHE_DIR"


@contextlib.contextmanager
def own_temp_dir() -> Iterator[str]:
    """TMPDIR (and Python's tempfile) pointing to a new directory for the duration, then removed."""
    parent = tempfile.gettempdir()
    directory = tempfile.mkdtemp(prefix=PREFIX, dir=parent)
    saved = {name: os.environ.get(name) for name in ("TMPDIR", TIKTOKEN_CACHE_ENV)}
    if TIKTOKEN_CACHE_ENV not in os.environ and "DATA_GYM_CACHE_DIR" not in os.environ:
        # tiktoken caches the files it downloads in the temporary directory: kept where they were
        os.environ[TIKTOKEN_CACHE_ENV] = os.path.join(parent, "data-gym-cache")
    os.environ["TMPDIR"] = directory
    saved_tempdir, tempfile.tempdir = tempfile.tempdir, directory
    try:
        yield directory
    finally:
        tempfile.tempdir = saved_tempdir
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        shutil.rmtree(directory, ignore_errors=True)
