"""A damaged token shard (fault injection: truncated, or bytes flipped) is named with the
directory to make again, whoever reads it (the training input, the evaluator's windows)."""

import gzip
import json
import os
import pickle

import pytest

from core import shards
from training.data import load_split
from core.errors import UserError


@pytest.fixture
def split(tmp_path):
    directory = shards.split_dir(str(tmp_path / "examples"), "train")
    shards.write_split(directory, [list(range(5000)), list(range(3000))], num_shards=2, chunk_size=100)
    return directory


def test_a_truncated_shard_is_named(split):
    path = shards.shard_files(split)[1]
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    with pytest.raises(shards.DamagedShard) as info:
        load_split(os.path.dirname(split), "train")
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"token shard {path} is damaged (")
    assert "--enable_cache=False" in message and os.path.dirname(split) in message
    # what runner.py sets aside and makes again, also when the reader ran in another process
    assert info.value.examples == os.path.dirname(split)
    assert str(pickle.loads(pickle.dumps(info.value))) == message


def test_a_corrupted_record_is_named(split):
    path = shards.shard_files(split)[0]
    with gzip.open(path, "rb") as f:
        records = bytearray(f.read())
    records[len(records) // 2] ^= 0xFF  # a flipped byte: TFRecord's CRC no longer matches
    with gzip.open(path, "wb") as f:
        f.write(bytes(records))
    with pytest.raises(shards.DamagedShard, match=f"token shard {path} is damaged"):
        shards.read_token_stream(split)


def test_a_missing_shard_file_is_told_by_the_recorded_record_count(split):
    examples = os.path.dirname(split)
    with open(os.path.join(examples, shards.STATS_FILE), "w") as f:
        json.dump({"num_records_train": 80}, f)  # 5000 + 3000 tokens in chunks of 100, as TokenizeText records
    assert shards.RecordIndex(split).num_records == 80
    os.remove(shards.shard_files(split)[1])
    with pytest.raises(UserError, match=rf"hold 40 records, .*{shards.STATS_FILE} says num_records_train=80"):
        load_split(examples, "train")


def test_a_record_held_twice_is_named(split):
    """A shard file copied beside itself (no count recorded to tell it by): its records twice would
    leave holes in the stream where they were placed once."""
    import shutil

    shutil.copy(shards.shard_files(split)[0], os.path.join(split, "tokens-copy.gz"))
    with pytest.raises(shards.DamagedShard, match=f"^the token shards in {split} hold a record twice"):
        load_split(os.path.dirname(split), "train")


def test_a_read_error_not_found_again_is_said_as_a_passing_one(split):
    """The parallel read failed (a network file system's hiccup, say), and each file then reads whole
    alone: no shard is named damaged (remaking it would be the wrong advice)."""
    import tensorflow as tf

    error = shards.RecordIndex(split)._damaged(tf.errors.DataLossError(None, None, "connection reset\nby peer"))
    assert not isinstance(error, shards.DamagedShard) and isinstance(error, UserError)
    assert str(error) == (f"reading the token shards in {split} failed (connection reset by peer), and reading them "
                          f"again did not: run again")
