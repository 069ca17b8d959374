"""The training input pipeline: random (x, y) windows from a split's token stream, like nanoGPT's
get_batch, as a tf.data pipeline sharded across replicas.

A split is read from its token shards (core/shards.py) as the one token stream it is, in corpus
order (uint16 where the vocabulary allows, as nanoGPT's .bin files). A split of up to
IN_MEMORY_MAX_TOKENS is held in memory; a larger one (OpenWebText's train split: 9B tokens) is
written once to a local cache file and read through a memory map, as nanoGPT reads train.bin. The
cache is a directory of the user's own, private (0700: no other user can read it, or put a file
there for a run to read), $NANOGPT_TFX_TOKEN_CACHE or ~/.cache/nanogpt-tfx/tokens; a file there is
named by the SHA-256 of the shards it holds (the same data in another place shares it; changed data
never reads a stale one), and each run that adds one prints the cache's size and how to clear it.
Beside it, its length and largest token id: a restart (a preempted worker) opens it with no pass over
the shards, and checks the ids against the model's vocabulary without reading it.
Every micro-batch is a pure function of (seed, micro-batch index): micro-batch m of optimizer step
s has index s * gradient_accumulation_steps + m, and replica g of R takes micro-batches
g * (A / R) ... (g + 1) * (A / R) - 1. So replicas and workers never read the same batch, a run on
R replicas sees exactly the batches of a run on one, and resuming at step s needs only s.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import errno
import fcntl
import hashlib
import os
import shutil
import time
from typing import Optional

import numpy as np
import tensorflow as tf

from core import files, shards
from core.console import in_bytes
from core.errors import DiskFull, MissingFile, UsageError, UserError, writing
from core.shards import TRAIN, VAL
from model.tokenizer import get_tokenizer
from training.corpus import split_train_val

IN_MEMORY_MAX_TOKENS = 1 << 28  # 512 MB as uint16
TOKEN_CACHE_ENV = "NANOGPT_TFX_TOKEN_CACHE"  # where large splits are cached
CACHE_INDEX = "index.json"  # the shards' sizes and times -> their content's key, so that they are hashed once


class TokenCacheNotPrivate(UserError):
    pass


def load_split(data_dir: str, split: str, in_memory_max_tokens: int = IN_MEMORY_MAX_TOKENS,
               log=print) -> np.ndarray:
    """The split's whole token stream in corpus order, as uint16 or int32: an array in memory, or
    past in_memory_max_tokens a read-only np.memmap of a file of the token cache (built on first use)."""
    directory = shards.split_dir(data_dir, split)
    if not tf.io.gfile.isdir(directory):
        if tf.io.gfile.exists(os.path.join(data_dir, nanogpt_bin(split))):
            return load_nanogpt_bin(os.path.join(data_dir, nanogpt_bin(split)), in_memory_max_tokens)
        raise MissingFile(f"no {split} split in {data_dir} (expected {directory}, or nanoGPT's {nanogpt_bin(split)})")
    cached = _cached_split(shards.shard_files(directory))
    if cached is not None and len(cached) > in_memory_max_tokens:  # a restart reads no shard (OpenWebText's: minutes)
        return cached
    index = shards.RecordIndex(directory)
    if index.num_tokens == 0:
        records = " (character records: text, which the pipeline's Transform maps to ids, its transformed_examples)" \
            if tf.io.gfile.exists(os.path.join(data_dir, shards.STATS_FILE)) else ""
        raise UsageError(f"the {split} split in {data_dir} holds no token ids{records}")
    dtype = np.dtype(np.uint16 if index.max_token < 2 ** 16 else np.int32)
    if index.num_tokens <= in_memory_max_tokens:
        return index.fill(np.empty([index.num_tokens], dtype))
    cache_dir = token_cache_dir()
    path = os.path.join(cache_dir, f"{_content_key(cache_dir, index.files)[:32]}-{index.num_tokens}.{dtype.name}.bin")
    if not _whole(path, index.num_tokens * dtype.itemsize):
        # one build of a file at a time (the workers of a machine share its cache): the others wait, then read it
        with files.exclusive_lock(path + ".lock", busy=None):
            if not _whole(path, index.num_tokens * dtype.itemsize):
                _make_cache_file(path, index, dtype, f"the {split} split of {data_dir}")
                log(f"token cache: the {split} split of {data_dir} ({in_bytes(os.path.getsize(path))}) cached in "
                    f"{path}; the cache now holds {in_bytes(_total_size(cache_dir))} (remove {cache_dir} to free it)")
    with writing(f"the token cache's {_summary_path(path)}"):
        files.write_json(_summary_path(path), {"num_tokens": index.num_tokens, "max_token": index.max_token})
    return np.memmap(path, dtype=dtype, mode="r", shape=(index.num_tokens,))


def _whole(path: str, size: int) -> bool:
    return os.path.isfile(path) and os.path.getsize(path) == size


def _total_size(directory: str) -> int:
    total = 0
    for name in os.listdir(directory):
        with contextlib.suppress(FileNotFoundError):  # (another process's file, gone meanwhile)
            total += os.path.getsize(os.path.join(directory, name))
    return total


def _make_cache_file(path: str, index: shards.RecordIndex, dtype: np.dtype, what: str) -> None:
    """The cache file of a split at `path`, written whole or not at all. Its space is taken on the disk
    first: a memory map's write past a full disk is a SIGBUS that ends the process without a word. While
    it is written its temporary file is locked, so that a later run removes it only if this one was
    killed (_sweep_unfinished), not the 18 GB of a build still going on."""
    cache_dir, size = os.path.dirname(path), index.num_tokens * dtype.itemsize

    def too_small() -> DiskFull:
        return DiskFull(f"the token cache needs {in_bytes(size)} for {what}, and {cache_dir} has "
                        f"{in_bytes(shutil.disk_usage(cache_dir).free)} free: free space there, or set "
                        f"{TOKEN_CACHE_ENV} to a directory on a larger disk")

    if shutil.disk_usage(cache_dir).free < size:
        raise too_small()
    with contextlib.ExitStack() as held:  # (the lock let go after the rename)
        with files.atomic_path(path) as tmp, writing(f"the token cache file {path} ({in_bytes(size)})"):
            fd = os.open(tmp, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
            held.callback(os.close, fd)
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                os.posix_fallocate(fd, 0, size)
            except OSError as e:  # (another file took the space since, or a quota)
                if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                    raise
                raise too_small() from None
            stream = index.fill(np.memmap(tmp, dtype=dtype, mode="r+", shape=(index.num_tokens,)))
            stream.flush()
            del stream


def _sweep_unfinished(cache_dir: str) -> None:
    """Remove the temporary files of cache builds that were killed (unlocked: _make_cache_file); not
    those of the small JSON files beside them, written unlocked (files.atomic_path names both)."""
    for name in os.listdir(cache_dir):
        if name.startswith(".") and name.endswith(".tmp") and ".bin." in name:
            path = os.path.join(cache_dir, name)
            with contextlib.suppress(FileNotFoundError):  # a minute old at least: not one made and not yet locked
                if time.time() - os.path.getmtime(path) > 60:
                    files.remove_if_abandoned(path, path)


def _summary_path(cache_file: str) -> str:
    """Beside a cache file, written after it: what its shards' index found, its length and largest id."""
    return os.path.splitext(cache_file)[0] + ".json"


def _read_summary(path: str) -> Optional[dict]:
    try:
        summary = files.read_json(path, default=None)
    except (OSError, ValueError):  # damaged: the shards are indexed again, and it is rewritten
        return None
    whole = isinstance(summary, dict) and all(isinstance(summary.get(k), int) for k in ("num_tokens", "max_token"))
    return summary if whole else None


def _cached_split(paths) -> Optional[np.memmap]:
    """The cache file of these shards, by what their last index found; None when they were never cached
    (or not as they are now: their sizes and times key them), with no read of the shards."""
    cache_dir = _cache_dir_path()
    if not os.path.isdir(cache_dir) or _not_private(os.stat(cache_dir)):  # (refused where a large split needs it)
        return None
    try:
        key = _known_content_key(cache_dir, paths)
    except ValueError:  # a damaged index: remade where a large split needs it
        return None
    for name in sorted(os.listdir(cache_dir)) if key else ():
        summary = _read_summary(os.path.join(cache_dir, name)) \
            if name.startswith(key[:32] + "-") and name.endswith(".json") else None
        if summary:
            dtype = np.dtype(np.uint16 if summary["max_token"] < 2 ** 16 else np.int32)
            path = os.path.join(cache_dir, f"{key[:32]}-{summary['num_tokens']}.{dtype.name}.bin")
            if os.path.isfile(path) and os.path.getsize(path) == summary["num_tokens"] * dtype.itemsize:
                return np.memmap(path, dtype=dtype, mode="r", shape=(summary["num_tokens"],))
    return None


def largest_token_id(tokens: np.ndarray) -> int:
    """The largest id in a split's token stream (-1 if empty): for a cache file, as its shards' index
    found it; otherwise read, in slices (an 18 GB memory map is not copied)."""
    in_cache = isinstance(tokens, np.memmap) and tokens.filename and \
        os.path.dirname(os.path.realpath(tokens.filename)) == os.path.realpath(_cache_dir_path())
    summary = _read_summary(_summary_path(tokens.filename)) if in_cache else None
    if summary and summary["num_tokens"] == len(tokens):
        return summary["max_token"]
    return max((int(tokens[i:i + (1 << 26)].max()) for i in range(0, len(tokens), 1 << 26)), default=-1)


# nanoGPT's prepared data (data/*/prepare.py): each split's token ids as one uint16 array, train.bin and
# val.bin, and for characters meta.pkl, {"vocab_size", "itos", "stoi"}; GPT-2 BPE where there is none.
NANOGPT_META = "meta.pkl"


def nanogpt_bin(split: str) -> str:
    return f"{split}.bin"


def load_nanogpt_bin(path: str, in_memory_max_tokens: int = IN_MEMORY_MAX_TOKENS) -> np.ndarray:
    """A split of nanoGPT's prepared data, as nanoGPT's get_batch reads it: an np.memmap of the
    file past in_memory_max_tokens (a local file), else an array in memory."""
    size = tf.io.gfile.stat(path).length
    if size == 0 or size % 2:
        raise UsageError(f"{path} is not nanoGPT's prepared data: {size:,} bytes, not a whole number of uint16 "
                         f"token ids")
    if size // 2 <= in_memory_max_tokens:
        with tf.io.gfile.GFile(path, "rb") as f:
            return np.frombuffer(f.read(), np.uint16)
    if "://" in path:
        raise UsageError(f"{path}: {size / 1e9:.1f} GB is read through a memory map, from a local disk: copy it there")
    return np.memmap(path, dtype=np.uint16, mode="r")


def nanogpt_tokenizer(data_dir: str) -> Optional[dict]:
    """The tokenizer (its to_json form) of nanoGPT's prepared data in data_dir: characters by its
    meta.pkl, read without running anything in it (only a dict of numbers and strings is taken); None
    where there is none (nanoGPT's data of GPT-2 BPE has none)."""
    import pickle

    path = os.path.join(data_dir, NANOGPT_META)
    if not tf.io.gfile.exists(path):
        return None

    class DataOnly(pickle.Unpickler):
        def find_class(self, module, name):  # what a pickle of plain data never asks for: code
            raise pickle.UnpicklingError(f"it names {module}.{name}")

    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            meta = DataOnly(f).load()
        itos = meta["itos"]
        chars = [itos[i] for i in range(len(itos))]
        if not all(isinstance(c, str) and len(c) == 1 for c in chars) or len(set(chars)) != len(chars):
            raise ValueError("its itos is not a table of distinct characters")
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError) as e:
        raise UsageError(f"{path} is not nanoGPT's character vocabulary ({type(e).__name__}: {e}): "
                         f"{{'vocab_size', 'itos', 'stoi'}} as data/shakespeare_char/prepare.py writes it") from None
    return {"kind": "char", "chars": chars}


def check_token_ids(tokens: np.ndarray, vocab_size: int, where: str) -> None:
    """UsageError when a split holds a token id the model has no embedding for (an out-of-range id is
    an error on a CPU, but a GPU's gather reads zeros for it without a word)."""
    largest = largest_token_id(tokens)
    if largest >= vocab_size:
        raise UsageError(f"{where} holds token id {largest}, past the model's vocab_size={vocab_size}: data of other "
                         f"tokens than the model's")


def token_cache_dir() -> str:
    """The user's token cache, made private (0700) if new; TokenCacheNotPrivate when it is another
    user's, or others may write to it."""
    cache_dir = _cache_dir_path()
    if os.path.exists(cache_dir) and not os.path.isdir(cache_dir):
        raise UsageError(f"the token cache {cache_dir} is a file, not a directory: set {TOKEN_CACHE_ENV} to a "
                         f"directory")
    try:
        os.makedirs(cache_dir, mode=0o700, exist_ok=True)
    except OSError as e:
        raise UsageError(f"the token cache {cache_dir} cannot be made ({e.strerror}): set {TOKEN_CACHE_ENV} to a "
                         f"directory of yours") from None
    status = os.stat(cache_dir)
    if _not_private(status):
        raise TokenCacheNotPrivate(
            f"the token cache {cache_dir} is {'not yours' if status.st_uid != os.getuid() else 'writable by others'} "
            f"(mode {status.st_mode & 0o777:o}): a run must not read tokens another user could put there; make it "
            f"yours with mode 700, or set {TOKEN_CACHE_ENV} to another directory")
    if status.st_mode & 0o077:
        os.chmod(cache_dir, 0o700)
    _sweep_unfinished(cache_dir)
    return cache_dir


def _cache_dir_path() -> str:
    return os.environ.get(TOKEN_CACHE_ENV) or os.path.join(files.user_cache_dir(), "tokens")


def _stat_key(paths) -> str:
    stats = []
    for path in paths:
        stat = tf.io.gfile.stat(path)
        stats.append((path, stat.length, stat.mtime_nsec))
    return hashlib.sha256(repr(stats).encode()).hexdigest()


def _read_index(cache_dir: str):
    """(its path, the cache's index: the shards' sizes and times -> their content's key); ValueError
    when it is damaged."""
    index_path = os.path.join(cache_dir, CACHE_INDEX)
    return index_path, files.read_json(index_path, default={}) if os.path.isfile(index_path) else {}


def _known_content_key(cache_dir: str, paths) -> Optional[str]:
    """_content_key where the shards were hashed as they are now (same sizes and times), else None."""
    _, known = _read_index(cache_dir)
    return known.get(_stat_key(paths)) if isinstance(known, dict) else None


def _not_private(status: os.stat_result) -> bool:
    """Whether a directory is another user's, or others may write to it."""
    return status.st_uid != os.getuid() or bool(status.st_mode & 0o022)


def _content_key(cache_dir: str, paths) -> str:
    """The SHA-256 of the shards' bytes, read once for a given set of shard files (sizes and times)."""
    stat_key = _stat_key(paths)
    index_path, known = _read_index(cache_dir)
    if stat_key not in known:
        threads = min(len(paths), len(os.sched_getaffinity(0)))  # (the cores this process may use)
        with concurrent.futures.ThreadPoolExecutor(max(threads, 1)) as pool:  # (hashlib lets go of the GIL)
            digests = list(pool.map(shards.file_sha256, paths))
        known[stat_key] = hashlib.sha256("".join(digests).encode()).hexdigest()
        with writing(f"the token cache's {index_path}"):
            files.write_json(index_path, known)
    return known[stat_key]


def sample_windows(tokens, seed: tf.Tensor, batch_size: int, block_size: int):
    """x, y of shape (batch_size, block_size) at random offsets; y is x shifted by one token.
    `tokens` is a tf.Tensor, or an np.memmap whose windows numpy reads (nanoGPT's get_batch)."""
    on_disk = isinstance(tokens, np.memmap)
    n = tf.constant(len(tokens), tf.int64) if on_disk else tf.shape(tokens, out_type=tf.int64)[0]
    offsets = tf.random.stateless_uniform([batch_size], seed=seed, minval=0, maxval=n - block_size,
                                          dtype=tf.int64)
    return windows_at(tokens, offsets, block_size)


def windows_at(tokens, offsets, block_size: int):
    """x, y: the windows of block_size tokens starting at `offsets`, and the same one token on."""
    offsets = tf.convert_to_tensor(offsets, tf.int64)
    if isinstance(tokens, np.memmap):
        def read(starts):
            rows = [tokens[i:i + block_size + 1] for i in starts.reshape(-1)]
            return np.stack(rows).astype(np.int32).reshape(starts.shape + (block_size + 1,))

        windows = tf.numpy_function(read, [offsets], tf.int32, stateful=False)
        windows.set_shape(offsets.shape.concatenate([block_size + 1]))
    else:
        windows = tf.gather(tokens, offsets[..., None] + tf.range(block_size + 1, dtype=tf.int64))
        windows = tf.cast(windows, tf.int32)
    return windows[..., :-1], windows[..., 1:]


def check_length(num_tokens: int, block_size: int, name: str) -> None:
    """A split too short for one window of block_size + 1 tokens: the user's data, in one line."""
    if num_tokens <= block_size:
        larger_share = ", a larger --val_fraction" if name == VAL else ""
        raise UsageError(f"the {name} split has {num_tokens} tokens: block_size={block_size} needs at least "
                         f"{block_size + 1} for one window; give more text{larger_share}, or a smaller --block_size")


class TokenStream:
    """One split (in memory, or memory-mapped from its cache file), ready to be sampled."""

    def __init__(self, tokens: np.ndarray, block_size: int, name: str):
        check_length(len(tokens), block_size, name)
        self.name = name
        self.num_tokens = len(tokens)
        self.block_size = block_size
        self.tokens = tokens if isinstance(tokens, np.memmap) else tf.constant(tokens)
        self._array = None

    def train_dataset(self, *, batch_size: int, accumulation_steps: int, seed: int, start_step: int,
                      input_context: Optional[tf.distribute.InputContext] = None) -> tf.data.Dataset:
        """Per-replica elements (x, y), each of shape (local_accumulation, batch_size, block_size):
        the micro-batches of one optimizer step for one replica."""
        workers = input_context.num_input_pipelines if input_context else 1
        worker = input_context.input_pipeline_id if input_context else 0
        replicas = input_context.num_replicas_in_sync if input_context else 1
        local_replicas = replicas // workers
        if accumulation_steps % replicas:
            raise UsageError(f"gradient_accumulation_steps={accumulation_steps} must be a multiple of "
                             f"the {replicas} replicas it is divided across")
        local_accumulation = accumulation_steps // replicas
        tokens, block_size = self.tokens, self.block_size

        def step_batches(element):
            step, local_replica = element // local_replicas, element % local_replicas
            replica = worker * local_replicas + local_replica
            first = step * accumulation_steps + replica * local_accumulation
            xs, ys = [], []
            for m in range(local_accumulation):
                x, y = sample_windows(tokens, tf.stack([tf.constant(seed, tf.int64), first + m]),
                                      batch_size, block_size)
                xs.append(x)
                ys.append(y)
            return tf.stack(xs), tf.stack(ys)

        dataset = tf.data.Dataset.range(start_step * local_replicas, np.iinfo(np.int64).max)
        return dataset.map(step_batches, num_parallel_calls=tf.data.AUTOTUNE,
                           deterministic=True).prefetch(tf.data.AUTOTUNE)

    def eval_batch(self, seed_pair, batch_size: int):
        return sample_windows(self.tokens, tf.constant(seed_pair, tf.int64), batch_size, self.block_size)

    def windows(self, offsets):
        """x, y at the given window offsets (any shape of offsets: x and y add a block_size axis)."""
        return windows_at(self.tokens, offsets, self.block_size)

    def array(self) -> np.ndarray:
        """The split's tokens in numpy: the memory map, or the tensor's own buffer (a CPU tensor's numpy()
        does not copy it)."""
        if self._array is None:
            self._array = self.tokens if isinstance(self.tokens, np.memmap) else self.tokens.numpy()
        return self._array

    def windows_array(self, offsets: np.ndarray):
        """windows() in numpy, as nanoGPT's get_batch reads them: for batches drawn in Python, with no
        tf.data thread to wake (and take the GIL) at each step."""
        rows = self.array()[offsets[..., None] + np.arange(self.block_size + 1)].astype(np.int32)
        return rows[..., :-1], rows[..., 1:]


def prepare_text_file(cfg, data_dir: str) -> dict:
    """Tokenize a text file in process into token shards, nanoGPT's shakespeare prepare.py way:
    the first 90% of the text is train, the rest val. Returns the tokenizer's description."""
    import gzip

    opener = gzip.open if cfg.text_file.endswith(".gz") else open  # (as runner.py's --data reads a .gz file)
    try:
        with opener(cfg.text_file, "rt", encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise UsageError(f"text file {cfg.text_file} is not UTF-8 text (byte {e.start}: {e.reason}): convert it to "
                         f"UTF-8 (e.g. iconv -t UTF-8)") from None
    except (gzip.BadGzipFile, EOFError) as e:
        raise UsageError(f"text file {cfg.text_file} is not whole GZIP data ({e}), which its name .gz says") from None
    if not text:
        raise UsageError(f"text file {cfg.text_file} is empty")
    tokenizer = get_tokenizer(cfg.tokenizer, text=text, bpe_dir=cfg.bpe_dir or None)
    for split, part in zip((TRAIN, VAL), split_train_val(text)):
        shards.write_split(shards.split_dir(data_dir, split), [tokenizer.encode(part)])
    return tokenizer.to_json()
