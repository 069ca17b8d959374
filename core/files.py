"""Files written whole or not at all, and JSON files read back: the one home of both mechanisms.

A reader never sees a half-written file under its final name: on a local disk a file is written
under a temporary name beside its final one and renamed into place (a rename within a directory
is atomic); elsewhere (gs://, where an object appears only once fully uploaded) it is written to a
local temporary file and copied there. Paths go through tf.io.gfile, imported only when a path is
not local, so that the tools which write local files start without TensorFlow.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import uuid
from typing import Iterator, Optional, Union

_MISSING = object()


def user_cache_dir() -> str:
    """This project's directory of the user's caches ($XDG_CACHE_HOME or ~/.cache, then nanogpt-tfx):
    Tiny Shakespeare's download, the corpus digests, the token cache (each its own place in it)."""
    return os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "nanogpt-tfx")


def is_local(path: str) -> bool:
    return "://" not in path  # gs://, ram://, ... go through tf.io.gfile


def is_directory(path: str) -> bool:
    """Whether `path` is a directory (local, or through tf.io.gfile)."""
    return os.path.isdir(path) if is_local(path) else _gfile().isdir(path)


def check_writable_directory(path: str, named: str) -> None:
    """SettingError, beginning with `named`, unless `path` (local) is a directory, or one that can be
    made, where this user can write."""
    from core.settings import SettingError

    if not is_local(path):
        return
    existing = os.path.abspath(path)
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise SettingError(f"{named}: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise SettingError(f"{named}: this user cannot write in {existing}")


def _gfile():
    import tensorflow as tf

    return tf.io.gfile


@contextlib.contextmanager
def atomic_path(path: str, keep_extension: bool = False) -> Iterator[str]:
    """A local temporary path (not yet created) to write; on success it becomes `path` (renamed into place on a local
    disk, copied elsewhere), on failure it is removed and `path` is left as it was. keep_extension: the
    temporary path ends as `path` does (for a writer that takes the format from the name)."""
    directory, name = os.path.split(path)
    local = is_local(path)
    if local:
        os.makedirs(directory or ".", exist_ok=True)
    # not yet created: the writer creates it, with the permissions it gives any new file
    extension = os.path.splitext(name)[1] if keep_extension else ""
    tmp = os.path.join(directory if local else tempfile.gettempdir(), f".{name}.{uuid.uuid4().hex}.tmp{extension}")
    try:
        yield tmp
        if local:
            os.replace(tmp, path)
        else:
            _gfile().copy(tmp, path, overwrite=True)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_file(path: str, content: Union[str, bytes]) -> None:
    """`content` (text as UTF-8, or bytes) at `path`, written whole or not at all."""
    with atomic_path(path) as tmp:
        if isinstance(content, bytes):
            with open(tmp, "wb") as f:
                f.write(content)
        else:
            with open(tmp, "w", encoding="utf-8", newline="") as f:
                f.write(content)


def write_json(path: str, data, **dump_options) -> None:
    """`data` as JSON at `path`, written whole or not at all; indented, keys sorted, unless
    json.dumps's options say otherwise."""
    write_file(path, json.dumps(data, **{"indent": 2, "sort_keys": True, **dump_options}))


def read_text(path: str, default=_MISSING) -> str:
    """The text (UTF-8) of the file at `path` (local or through tf.io.gfile). A missing file gives
    `default` when one is given, else FileNotFoundError."""
    if is_local(path):
        exists, opener = os.path.isfile(path), lambda: open(path, encoding="utf-8")
    else:
        gfile = _gfile()
        exists, opener = gfile.exists(path), lambda: gfile.GFile(path)
    if not exists:
        if default is not _MISSING:
            return default
        raise FileNotFoundError(f"{path} does not exist")
    with opener() as f:
        return f.read()


def read_json(path: str, default=_MISSING):
    """The JSON value in the file at `path` (local or through tf.io.gfile). A missing file gives
    `default` when one is given, else FileNotFoundError; a damaged one a ValueError naming it."""
    content = read_text(path, default if default is _MISSING else None)  # missing: FileNotFoundError, or None
    if content is None:
        return default
    try:
        return json.loads(content)
    except ValueError as e:
        raise ValueError(f"{path} is not valid JSON ({e})") from None


@contextlib.contextmanager
def atomic_directory(path: str) -> Iterator[str]:
    """A directory to write whose contents become `path` on success. On a local disk a temporary
    sibling renamed at the end, so that no half-written directory is ever at `path`. Elsewhere
    (gs://) `path` itself: renaming a directory there copies it file by file, atomic no more
    (ram:// does not even move the files), so the writer must write its marker file last."""
    gfile = _gfile()
    tmp = path.rstrip("/") + ".tmp" if is_local(path) else path
    if gfile.exists(tmp):
        gfile.rmtree(tmp)
    try:
        yield tmp
    except BaseException:
        if tmp != path and gfile.exists(tmp):
            gfile.rmtree(tmp)
        raise
    if tmp != path:
        if gfile.exists(path):
            gfile.rmtree(path)
        gfile.rename(tmp, path)


def remove_tree_within(path: str, root: str) -> bool:
    """Remove the local directory `path` when it lies inside `root` and nothing on the way from root
    down to it is a symbolic link: what a link points to is never touched (the root itself may be
    one: where the user put it). Links inside `path` are removed, not followed. Whether it was."""
    relative = os.path.relpath(os.path.abspath(path), os.path.abspath(root))
    if relative == "." or relative == os.pardir or relative.startswith(os.pardir + os.sep):
        return False
    current = os.path.abspath(root)
    for part in relative.split(os.sep):
        current = os.path.join(current, part)
        if os.path.islink(current):
            return False
    if not os.path.isdir(path):
        return False
    import shutil

    shutil.rmtree(path)
    return True


def remove_if_abandoned(lock_file: str, target: str) -> bool:
    """Remove `target` (a file, or a directory and all in it) when no process holds a flock on lock_file:
    the process that made it holds one while it works (released by the kernel however it ends), so an
    unheld lock is a process killed before it could clean up. Whether it was removed."""
    import fcntl
    import shutil

    try:  # (writable: NFS locks a flock as a POSIX lock, which an exclusive one needs)
        fd = os.open(lock_file, os.O_RDWR | os.O_CLOEXEC)
    except OSError:  # none (yet), or not this user's: not known to be abandoned
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # held (its process lives), or locks not to be had here: left
        return False
    else:
        if os.path.isdir(target) and not os.path.islink(target):
            shutil.rmtree(target, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):  # (another process's sweep was first)
                os.remove(target)
        return True
    finally:
        os.close(fd)


@contextlib.contextmanager
def exclusive_lock(path: str, busy: Optional[Exception]) -> Iterator[None]:
    """Hold an exclusive lock on the local file `path` (made if need be) for the block; `busy` is
    raised at once when another process holds it (None: wait for it to let go)."""
    import fcntl

    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | (0 if busy is None else fcntl.LOCK_NB))
        except BlockingIOError:
            raise busy from None
        yield
