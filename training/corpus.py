"""Where the text corpora that need no Hugging Face dataset come from.

Tiny Shakespeare is downloaded the way nanoGPT's data/shakespeare*/prepare.py downloads it, unless
a local copy is given (a path, or the environment variable NANOGPT_TFX_SHAKESPEARE): machines
without internet access use that.
"""

from __future__ import annotations

import os
import urllib.request
from typing import Optional

from core import files
from core.errors import MissingFile

SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
SHAKESPEARE_ENV = "NANOGPT_TFX_SHAKESPEARE"


def tiny_shakespeare(path: Optional[str] = None) -> str:
    """A local path to Tiny Shakespeare: `path`, $NANOGPT_TFX_SHAKESPEARE, or a cached download."""
    path = path or os.environ.get(SHAKESPEARE_ENV)
    if path:
        if not os.path.isfile(path):
            raise MissingFile(f"Tiny Shakespeare: {path} does not exist")
        return path
    cached = os.path.join(files.user_cache_dir(), "tinyshakespeare.txt")
    if not os.path.isfile(cached):
        os.makedirs(files.user_cache_dir(), exist_ok=True)
        try:
            with urllib.request.urlopen(SHAKESPEARE_URL, timeout=60) as response:
                data = response.read()
        except OSError as e:
            raise OSError(f"could not download Tiny Shakespeare from {SHAKESPEARE_URL} ({e}); "
                          f"offline, name a local copy with --data=PATH (or set {SHAKESPEARE_ENV}=PATH)") from e
        files.write_file(cached, data)
    return cached


NANOGPT_VAL_FRACTION = 0.1  # nanoGPT's shakespeare prepare scripts: the last 10% of the text is val


def head_tail_cut(num_chars: int, val_fraction: float = NANOGPT_VAL_FRACTION) -> int:
    """Where a text's train head ends and its val tail begins (nanoGPT: data[:int(n*0.9)])."""
    return int(num_chars * (1 - val_fraction))


def split_train_val(text: str) -> tuple:
    """nanoGPT's shakespeare prepare.py split: the first 90% of the text is train, the rest val."""
    cut = head_tail_cut(len(text))
    return text[:cut], text[cut:]
