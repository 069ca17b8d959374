"""The token stream of a split: read in corpus order from out-of-order shards, held in memory or,
past a size, memory-mapped from a file of the user's private token cache, and sampled the same way
either way."""

import json
import os
import shutil
import time

import numpy as np
import pytest

from core.errors import DiskFull
from training import data
from core import shards
from training.data import TokenStream, load_split


@pytest.fixture
def split_dir(tmp_path):
    """A split of three documents spread round-robin over three shards, so that file order is not
    corpus order."""
    rng = np.random.default_rng(0)
    docs = [rng.integers(0, 50257, n) for n in (5000, 1, 2500)]
    shards.write_split(shards.split_dir(str(tmp_path), "train"), docs, num_shards=3, chunk_size=700)
    return str(tmp_path), np.concatenate(docs)


def test_split_in_memory_is_the_corpus_in_order(split_dir):
    data_dir, expected = split_dir
    tokens = load_split(data_dir, "train")
    assert not isinstance(tokens, np.memmap) and tokens.dtype == np.uint16
    np.testing.assert_array_equal(tokens, expected)


def _cached(cache):
    return sorted(name for name in os.listdir(cache) if name.endswith(".bin"))


def test_large_split_is_cached_once_by_content_in_a_private_directory_and_memory_mapped(split_dir, tmp_path,
                                                                                       monkeypatch):
    data_dir, expected = split_dir
    cache = tmp_path / "cache"
    monkeypatch.setenv(data.TOKEN_CACHE_ENV, str(cache))
    lines = []
    tokens = load_split(data_dir, "train", in_memory_max_tokens=1000, log=lines.append)
    assert isinstance(tokens, np.memmap) and tokens.dtype == np.uint16
    np.testing.assert_array_equal(tokens, expected)
    assert os.stat(cache).st_mode & 0o777 == 0o700  # made private: no other user reads it or puts a file there
    (cached,) = _cached(cache)  # one file, no temporary left behind
    assert lines == [f"token cache: the train split of {data_dir} (15.0 kB) cached in {cache / cached}; the cache now "
                     f"holds 15.1 kB (remove {cache} to free it)"]
    mtime = os.path.getmtime(cache / cached)
    again = load_split(data_dir, "train", in_memory_max_tokens=1000, log=lines.append)
    assert again.filename == tokens.filename and os.path.getmtime(cache / cached) == mtime and len(lines) == 1
    # The same data elsewhere (a copy of the shards) reads the same file: it is named by the shards' content.
    copy = tmp_path / "copy"
    shutil.copytree(shards.split_dir(data_dir, "train"), shards.split_dir(str(copy), "train"))
    assert load_split(str(copy), "train", in_memory_max_tokens=1000).filename == tokens.filename
    # Other data under the same path gets another cache file, not the stale one.
    shards.write_split(shards.split_dir(data_dir, "train"), [expected[:4000]], num_shards=3, chunk_size=700)
    np.testing.assert_array_equal(load_split(data_dir, "train", in_memory_max_tokens=1000), expected[:4000])
    assert len(_cached(cache)) == 2


def test_a_cache_too_large_for_its_disk_is_one_line_and_leaves_nothing(split_dir, tmpfs, monkeypatch):
    """A memory map written past a full disk ends the process with a SIGBUS and not a word (a pod with a
    small disk): the space is checked, and taken, before the file is written."""
    data_dir, expected = split_dir
    disk = tmpfs("12K")  # the split's 7,501 uint16 tokens need 15,002 bytes
    cache = disk / "cache"
    monkeypatch.setenv(data.TOKEN_CACHE_ENV, str(cache))
    with pytest.raises(DiskFull, match=rf"^the token cache needs 15.0 kB for the train split of {data_dir}, and "
                                       rf"{cache} has [0-9.]+ kB free: free space there, or set "
                                       rf"NANOGPT_TFX_TOKEN_CACHE to a directory on a larger disk$"):
        load_split(data_dir, "train", in_memory_max_tokens=1000)
    assert [n for n in os.listdir(cache) if n.endswith(".tmp") or n.endswith(".bin")] == []
    # the space gone between the check and the file (another writer, a quota): the same line, from the disk
    plenty = shutil.disk_usage(disk)._replace(free=1 << 40)
    monkeypatch.setattr(data.shutil, "disk_usage", lambda path: plenty)
    with pytest.raises(DiskFull, match=r"^the token cache needs 15.0 kB for the train split of .* set "
                                       r"NANOGPT_TFX_TOKEN_CACHE to a directory on a larger disk$"):
        load_split(data_dir, "train", in_memory_max_tokens=1000)
    assert [n for n in os.listdir(cache) if n.endswith(".tmp") or n.endswith(".bin")] == []


def test_a_killed_builds_file_is_removed_and_a_live_ones_kept(split_dir, tmp_path, monkeypatch):
    """A cache file being written is a temporary one, locked while its build lives: a build killed
    (a preempted pod on a disk that outlives it) leaves one as large as the split, which the next run
    removes; another process's build going on keeps its own."""
    import fcntl

    data_dir, expected = split_dir
    cache = tmp_path / "cache"
    monkeypatch.setenv(data.TOKEN_CACHE_ENV, str(cache))
    cache.mkdir(mode=0o700)
    killed, live = cache / ".a-7501.uint16.bin.1.tmp", cache / ".b-7501.uint16.bin.2.tmp"
    just_made = cache / ".c-7501.uint16.bin.3.tmp"  # made this moment, its lock not yet taken: left
    for path in (killed, live, just_made):
        path.write_bytes(b"\0" * 15002)
    for path in (killed, live):
        os.utime(path, (time.time() - 3600, time.time() - 3600))
    held = os.open(live, os.O_RDONLY)
    try:
        fcntl.flock(held, fcntl.LOCK_EX)  # as a build in another process holds it
        np.testing.assert_array_equal(load_split(data_dir, "train", in_memory_max_tokens=1000), expected)
        assert not killed.exists() and live.exists() and just_made.exists()
    finally:
        os.close(held)


def test_a_restart_opens_the_cached_split_with_no_pass_over_its_shards(split_dir, tmp_path, monkeypatch):
    """OpenWebText's train split is a pass of minutes over 17 GB of shards, at each start of each worker:
    shards as they were (same sizes and times) are opened from the cache, its largest id read beside it."""
    data_dir, expected = split_dir
    cache = tmp_path / "cache"
    monkeypatch.setenv(data.TOKEN_CACHE_ENV, str(cache))
    first = load_split(data_dir, "train", in_memory_max_tokens=1000)
    assert data.largest_token_id(first) == expected.max()
    # The shards' bytes replaced in place, sizes and times kept: a pass over them would fail; none is made.
    for path in shards.shard_files(shards.split_dir(data_dir, "train")):
        stat = os.stat(path)
        with open(path, "r+b") as f:
            f.write(b"\0" * stat.st_size)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    again = load_split(data_dir, "train", in_memory_max_tokens=1000)
    assert again.filename == first.filename
    np.testing.assert_array_equal(again, expected)
    # The largest id is what the index found, kept beside the cache file (the ids are not read again).
    (summary,) = [name for name in os.listdir(cache) if name.endswith(".json") and name != data.CACHE_INDEX]
    (cache / summary).write_text(json.dumps({"num_tokens": len(expected), "max_token": 7}))
    assert data.largest_token_id(again) == 7
    # A damaged summary is not taken: the ids are read.
    (cache / summary).write_text("{")
    assert data.largest_token_id(again) == expected.max()
    # Nor is a file of that name outside the private cache (beside a user's nanoGPT train.bin).
    expected.astype(np.uint16).tofile(tmp_path / "train.bin")
    (tmp_path / "train.json").write_text(json.dumps({"num_tokens": len(expected), "max_token": 7}))
    assert data.largest_token_id(np.memmap(tmp_path / "train.bin", np.uint16, mode="r")) == expected.max()


def test_a_token_cache_that_others_may_write_to_is_refused(split_dir, tmp_path, monkeypatch):
    data_dir, _ = split_dir
    shared = tmp_path / "shared"
    os.makedirs(shared)
    os.chmod(shared, 0o777)  # as a fixed name in /tmp that another user made first
    monkeypatch.setenv(data.TOKEN_CACHE_ENV, str(shared))
    with pytest.raises(data.TokenCacheNotPrivate, match=rf"^the token cache {shared} is writable by others \(mode "
                                                        rf"777\): a run must not read tokens another user could put "
                                                        rf"there; "):
        load_split(data_dir, "train", in_memory_max_tokens=1000)
    assert os.listdir(shared) == []
    # a split held in memory does not need the cache: it loads, whatever the cache is (shared, or damaged)
    expected = shards.read_token_stream(f"{data_dir}/Split-train")
    np.testing.assert_array_equal(load_split(data_dir, "train"), expected)
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    (private / data.CACHE_INDEX).write_text("[")
    monkeypatch.setenv(data.TOKEN_CACHE_ENV, str(private))
    np.testing.assert_array_equal(load_split(data_dir, "train"), expected)
    monkeypatch.delenv(data.TOKEN_CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data.token_cache_dir() == str(tmp_path / "xdg" / "nanogpt-tfx" / "tokens")


def test_memory_mapped_split_gives_the_same_batches(split_dir, tmp_path, monkeypatch):
    data_dir, _ = split_dir
    monkeypatch.setenv(data.TOKEN_CACHE_ENV, str(tmp_path / "cache"))
    in_memory = TokenStream(load_split(data_dir, "train"), block_size=64, name="train")
    mapped = TokenStream(load_split(data_dir, "train", in_memory_max_tokens=1000), block_size=64, name="train")
    batches = [iter(s.train_dataset(batch_size=4, accumulation_steps=2, seed=7, start_step=3))
               for s in (in_memory, mapped)]
    for _ in range(3):
        (xa, ya), (xb, yb) = next(batches[0]), next(batches[1])
        assert xb.shape == (2, 4, 64)
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    for a, b in zip(in_memory.eval_batch((1, 2), 5), mapped.eval_batch((1, 2), 5)):
        np.testing.assert_array_equal(a, b)
    # windows at given offsets (nanoGPT's draws), read by TensorFlow or by numpy, in memory or mapped
    offsets = np.array([[0, 17, 7400], [3, 3, 9]])
    x, y = in_memory.windows(offsets)
    assert x.shape == (2, 3, 64) and x.dtype == np.int32
    for stream in (in_memory, mapped):
        for a, b in zip((x, y), stream.windows_array(offsets)):
            assert b.dtype == np.int32
            np.testing.assert_array_equal(a, b)


def test_nanogpts_prepared_data_is_read_as_its_get_batch_reads_it(tmp_path):
    """train.bin of uint16 ids (data/*/prepare.py): in memory, or past a size memory-mapped in place."""
    ids = np.random.default_rng(0).integers(0, 50257, 3000).astype(np.uint16)
    ids.tofile(tmp_path / "train.bin")
    in_memory = load_split(str(tmp_path), "train")
    assert not isinstance(in_memory, np.memmap) and in_memory.dtype == np.uint16
    np.testing.assert_array_equal(in_memory, ids)
    mapped = load_split(str(tmp_path), "train", in_memory_max_tokens=1000)
    assert isinstance(mapped, np.memmap) and mapped.filename == str(tmp_path / "train.bin")
    np.testing.assert_array_equal(mapped, ids)
    assert data.nanogpt_tokenizer(str(tmp_path)) is None  # no meta.pkl: the Trainer takes GPT-2 BPE, as nanoGPT
    with pytest.raises(FileNotFoundError, match=rf"^no val split in {tmp_path} \(expected {tmp_path}/Split-val, or "
                                                rf"nanoGPT's val.bin\)$"):
        load_split(str(tmp_path), "val")
    (tmp_path / "val.bin").write_bytes(b"\x01\x00\x02")
    with pytest.raises(data.UsageError, match=rf"^{tmp_path}/val.bin is not nanoGPT's prepared data: 3 bytes, not a "
                                              rf"whole number of uint16 token ids$"):
        load_split(str(tmp_path), "val")


class _Code:
    def __reduce__(self):
        return (os.remove, ("never",))


@pytest.mark.parametrize("meta, problem", [
    ({"vocab_size": 2, "itos": {0: "a", 1: _Code()}}, r"UnpicklingError: it names posix.remove"),
    ({"vocab_size": 2, "stoi": {"a": 0, "b": 1}}, r"KeyError: 'itos'"),
    ({"vocab_size": 2, "itos": {0: "a", 1: "bc"}}, r"ValueError: its itos is not a table of distinct characters"),
])
def test_a_meta_pkl_that_is_not_a_character_vocabulary_is_one_line_and_runs_nothing(tmp_path, meta, problem):
    import pickle

    np.zeros(10, np.uint16).tofile(tmp_path / "train.bin")
    with open(tmp_path / "meta.pkl", "wb") as f:
        pickle.dump(meta, f)
    with pytest.raises(data.UsageError, match=rf"^{tmp_path}/meta.pkl is not nanoGPT's character vocabulary "
                                              rf"\({problem}\): "):
        data.nanogpt_tokenizer(str(tmp_path))


def test_records_are_placed_by_document_and_position_however_large(tmp_path):
    """A position past 2^24 (a one-document corpus in small chunks) keeps its place: the key gives the
    position as many bits as the largest needs; the shards' files hold the records out of order."""
    import tensorflow as tf

    directory = shards.split_dir(str(tmp_path), "train")
    os.makedirs(directory)
    records = [(1, 0, [7, 8]), (0, 2 ** 30, [5, 6]), (0, 0, [1, 2]), (0, 2 ** 24 + 1, [3, 4])]
    options = tf.io.TFRecordOptions(compression_type=shards.COMPRESSION)
    for i, part in enumerate((records[:2], records[2:])):
        with tf.io.TFRecordWriter(os.path.join(directory, f"tokens-{i}.gz"), options) as writer:
            for doc, pos, tokens in part:
                writer.write(shards.serialize_chunk(doc, pos, np.array(tokens)))
    np.testing.assert_array_equal(load_split(str(tmp_path), "train"), [1, 2, 3, 4, 5, 6, 7, 8])


def test_a_token_cache_that_is_a_file_or_on_a_full_disk_is_one_line(split_dir, tmp_path, tmpfs, monkeypatch):
    from core.errors import UsageError

    data_dir, _ = split_dir
    (tmp_path / "afile").write_text("the user's\n")
    monkeypatch.setenv(data.TOKEN_CACHE_ENV, str(tmp_path / "afile"))
    with pytest.raises(UsageError, match=rf"^the token cache {tmp_path}/afile is a file, not a directory: set "
                                         rf"NANOGPT_TFX_TOKEN_CACHE to a directory$"):
        load_split(data_dir, "train", in_memory_max_tokens=1000)
    assert (tmp_path / "afile").read_text() == "the user's\n"
    disk = tmpfs("8K")  # full before the cache's index is written beside the file
    (disk / "filler").write_bytes(b"\0" * 8192)
    monkeypatch.setenv(data.TOKEN_CACHE_ENV, str(disk / "cache"))
    with pytest.raises(DiskFull, match=rf"^no space left on the device writing the token cache's {disk}/cache/"
                                       rf"index.json: free space, then run again$"):
        load_split(data_dir, "train", in_memory_max_tokens=1000)
