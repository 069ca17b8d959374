"""Damage a file as a failing disk or a stray write does, or fill the disk, for the tests of what readers
and writers make of it."""

import os


def flip_bytes_in_place(path, count: int = 8) -> None:
    """Invert `count` bytes in the middle of the file; its size stays the same."""
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.seek(size // 2)
        middle = f.read(count)
        f.seek(size // 2)
        f.write(bytes(b ^ 0xFF for b in middle))
    assert os.path.getsize(path) == size


class FillDiskAfter:
    """stdout that fills the disk (a filler file) as the line starting with `marker` is printed."""

    def __init__(self, stdout, marker, filler):
        self._stdout, self._marker, self._filler, self.filled = stdout, marker, filler, False

    def write(self, text):
        if text.startswith(self._marker) and not self.filled:
            with open(self._filler, "wb", buffering=0) as f:
                try:
                    while True:
                        f.write(b"\0" * 4096)
                except OSError:  # ENOSPC: the disk is full
                    self.filled = True
        return self._stdout.write(text)

    def flush(self):
        self._stdout.flush()
