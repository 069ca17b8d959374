"""Damage a file as a failing disk or a stray write does, for the tests of what readers make of it."""

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
