"""A command's temporary files in one directory of its own, removed when the command ends.

The libraries a run uses write to the temporary directory and do not always remove what they wrote:
TensorFlow's autograph writes a source file for each function it converts and removes it at exit,
which a process that ends by os._exit (the training process, the infra check) never reaches;
Beam's job directories stay behind, empty. A run sets TMPDIR to a new directory under the
temporary directory for itself and every process it starts, and removes that directory at its end,
Ctrl-C included. A run killed outright (kill -9, the out-of-memory killer) cannot: the next run
removes such a directory, which it tells from a live run's by the lock the live run holds on the
OWNER file in it (released by the kernel whatever ends the process; a flock is also seen from
another container on the same machine, where the owner's pid would not be).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import stat
import tempfile
from typing import Iterator

from core import files

PREFIX = "nanogpt-tfx-"
OWNER = "OWNER"  # in each run's directory, locked while the run lives
TIKTOKEN_CACHE_ENV = "TIKTOKEN_CACHE_DIR"


def _hold(directory: str) -> int:
    """An open descriptor of directory/OWNER, locked: made under another name and renamed once locked,
    so that no sweep finds it unlocked. Not inherited by the processes the run starts."""
    path = os.path.join(directory, OWNER)
    fd = os.open(path + ".new", os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, f"{os.getpid()}\n".encode())
    os.rename(path + ".new", path)
    return fd


def _sweep(parent: str) -> None:
    """Remove the directories of runs that were killed (their OWNER file unlocked) under parent; a
    directory without one (being made, or of an older version) is left."""
    try:
        names = [n for n in os.listdir(parent) if n.startswith(PREFIX)]
    except OSError:
        return
    for name in names:
        directory = os.path.join(parent, name)
        try:
            status = os.lstat(directory)
        except OSError:
            continue
        if status.st_uid == os.getuid() and stat.S_ISDIR(status.st_mode):  # (a link is no run's)
            files.remove_if_abandoned(os.path.join(directory, OWNER), directory)


@contextlib.contextmanager
def own_temp_dir() -> Iterator[str]:
    """TMPDIR (and Python's tempfile) pointing to a new directory for the duration, then removed."""
    parent = tempfile.gettempdir()
    _sweep(parent)
    directory = tempfile.mkdtemp(prefix=PREFIX, dir=parent)
    owner = _hold(directory)
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
        os.close(owner)
