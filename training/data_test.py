"""The token stream of a split: read in corpus order from out-of-order shards, held in memory or,
past a size, memory-mapped from a local cache file, and sampled the same way either way."""

import os

import numpy as np
import pytest

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


def test_large_split_is_cached_once_and_memory_mapped(split_dir, tmp_path, monkeypatch):
    data_dir, expected = split_dir
    cache = tmp_path / "cache"
    monkeypatch.setenv(data.TOKEN_CACHE_ENV, str(cache))
    tokens = load_split(data_dir, "train", in_memory_max_tokens=1000)
    assert isinstance(tokens, np.memmap) and tokens.dtype == np.uint16
    np.testing.assert_array_equal(tokens, expected)
    (cached,) = os.listdir(cache)  # one file, no temporary left behind
    mtime = os.path.getmtime(cache / cached)
    again = load_split(data_dir, "train", in_memory_max_tokens=1000)
    assert again.filename == tokens.filename and os.path.getmtime(cache / cached) == mtime
    # Other data under the same path gets another cache file, not the stale one.
    shards.write_split(shards.split_dir(data_dir, "train"), [expected[:4000]], num_shards=3, chunk_size=700)
    np.testing.assert_array_equal(load_split(data_dir, "train", in_memory_max_tokens=1000), expected[:4000])
    assert len(os.listdir(cache)) == 2


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
