"""The token-shard format: the one module that both the tokenization component (writer) and the
training input pipeline (reader) use.

A split is a directory of GZIP-compressed TFRecord files (TFX's layout: `<examples>/Split-<name>/`).
Each record is a `tf.train.Example` holding one chunk of the split's token stream:

- `tokens`: int64 list, at most `chunk_size` consecutive token ids;
- `doc`: int64, the index of the document the chunk comes from (its position in the corpus);
- `pos`: int64, the chunk's position within that document.

Documents are concatenated into one stream as nanoGPT's prepare scripts do (GPT-2 BPE appends
<|endoftext|> to each). Sorting chunks by (doc, pos) restores the stream in order; training only
samples windows from chunks, so the order in which shards hold chunks does not matter to it.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterable, Iterator, List, Sequence, Tuple

import numpy as np

from core import files
from core.errors import UserError

TRAIN, VAL = "train", "val"  # the two splits of every corpus (TFX's split names)
SPLITS = (TRAIN, VAL)
TOKENS, DOC, POS = "tokens", "doc", "pos"
DEFAULT_CHUNK_SIZE = 8192  # tokens per record
FILE_PATTERN = "*.gz"
# Beside the splits, the counts their writer recorded (TokenizeText: num_records_<split>, ...), with
# which a reader tells a split that lost a shard file from a whole one.
STATS_FILE = "tokenize_stats.json"
COMPRESSION = "GZIP"


class DamagedShard(UserError):
    """Token shards that cannot be read whole (truncated, corrupted, not a GZIP TFRecord file, a
    file missing); `examples` is the directory to make again, `problem` what was found."""

    def __init__(self, examples: str, problem: str):
        self.examples, self.problem = examples, problem
        super().__init__(f"{problem}: make the token shards of {examples} again (the pipeline: rerun with "
                         f"--enable_cache=False, which makes its Examples artifact anew instead of reusing this one)")

    def __reduce__(self):  # pickled whole, for a reader in another process (a training subprocess)
        return type(self), (self.examples, self.problem)

    @classmethod
    def unreadable(cls, path: str, error) -> "DamagedShard":
        return cls(os.path.dirname(os.path.dirname(path)),
                   f"token shard {path} is damaged ({' '.join(str(error.message).split())})")


def check_record_count(directory: str, num_records: int) -> None:
    """Refuse a split that holds fewer or more records than its writer recorded (when it did)."""
    import json

    import tensorflow as tf

    examples, split = os.path.dirname(directory.rstrip("/")), os.path.basename(directory.rstrip("/"))
    stats_path = os.path.join(examples, STATS_FILE)
    key = f"num_records_{split[len('Split-'):]}"
    if not tf.io.gfile.exists(stats_path):
        return
    with tf.io.gfile.GFile(stats_path) as f:
        expected = json.load(f).get(key)
    if expected is not None and expected != num_records:
        raise DamagedShard(examples, f"the token shards in {directory} hold {num_records} records, {stats_path} "
                                     f"says {key}={expected}: a shard file is missing or damaged")


# The Examples artifact's custom property holding the size of each shard file as written, with
# which a run tells a cached artifact whose shards were truncated or lost since (shard_changes).
SHARD_BYTES = "shard_bytes"


def _measured(examples_uri: str, measure) -> dict:
    """{path relative to examples_uri: measure(path)} of every shard file of every split."""
    import tensorflow as tf

    paths = tf.io.gfile.glob(os.path.join(examples_uri, "Split-*", FILE_PATTERN))
    return {os.path.relpath(p, examples_uri): measure(p) for p in sorted(paths)}


def _differences(examples_uri: str, recorded: dict, measure, described) -> List[str]:
    """A line for each recorded shard file that is missing or whose measure(path) is no longer the
    one recorded: described(path, now, recorded)."""
    import tensorflow as tf

    differences = []
    for name, expected in sorted(recorded.items()):
        path = os.path.join(examples_uri, name)
        if not tf.io.gfile.exists(path):
            differences.append(f"token shard {path} is missing")
        elif (found := measure(path)) != expected:
            differences.append(described(path, found, expected))
    return differences


def _size(path: str) -> int:
    import tensorflow as tf

    return tf.io.gfile.stat(path).length


def shard_sizes(examples_uri: str) -> dict:
    """{path relative to examples_uri: bytes} of every shard file of every split."""
    return _measured(examples_uri, _size)


def shard_changes(examples_uri: str, recorded: dict) -> List[str]:
    """What differs between the shard files now and their recorded sizes (a stat a file, no read)."""
    return _differences(examples_uri, recorded, _size,
                        lambda path, size, written: f"token shard {path} is {size} bytes, {written} when written")


# The Examples artifact's custom property holding the SHA-256 of each shard file as written, with
# which a run tells a cached artifact whose shards were damaged in place (the same size, other
# bytes: the size check above passes them) once a reader of it has failed (damaged_shards): reading
# every shard before each run would be too dear (OpenWebText's are ~17 GB).
SHARD_SHA256 = "shard_sha256"
_READ_BYTES = 8 << 20


def file_sha256(path: str) -> str:
    """The SHA-256 in hex of a file's bytes: a local file read without TensorFlow (a corpus' fingerprint,
    taken before it loads), another through tf.io.gfile."""
    import hashlib

    if files.is_local(path):
        opened = open(path, "rb")
    else:
        import tensorflow as tf

        opened = tf.io.gfile.GFile(path, "rb")
    digest = hashlib.sha256()
    with opened as f:
        for block in iter(lambda: f.read(_READ_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def shard_digests(examples_uri: str) -> dict:
    """{path relative to examples_uri: SHA-256 in hex} of every shard file of every split (one read
    of each, ~1 GB/s)."""
    return _measured(examples_uri, file_sha256)


def damaged_shards(examples_uri: str, recorded: dict) -> List[str]:
    """What differs between the shard files now and their recorded SHA-256 digests (reads them all)."""
    def described(path, *_):
        return f"token shard {path} is damaged (its bytes are not those written: another SHA-256)"

    return _differences(examples_uri, recorded, file_sha256, described)


def split_dir(examples_uri: str, split: str) -> str:
    """TFX's directory for one split of an Examples artifact."""
    return os.path.join(examples_uri, f"Split-{split}")


def shard_files(directory: str) -> List[str]:
    import tensorflow as tf

    paths = sorted(tf.io.gfile.glob(os.path.join(directory, FILE_PATTERN)))
    if not paths:
        raise FileNotFoundError(f"no token shards ({FILE_PATTERN}) in {directory}")
    return paths


def chunk_document(tokens: Sequence[int], chunk_size: int = DEFAULT_CHUNK_SIZE
                   ) -> Iterator[Tuple[int, np.ndarray]]:
    """(position, chunk) pairs covering one document's tokens."""
    tokens = np.asarray(tokens, dtype=np.int64)
    for pos, start in enumerate(range(0, len(tokens), chunk_size)):
        yield pos, tokens[start:start + chunk_size]


def serialize_chunk(doc: int, pos: int, tokens: np.ndarray) -> bytes:
    import tensorflow as tf

    feature = {
        TOKENS: tf.train.Feature(int64_list=tf.train.Int64List(value=tokens)),
        DOC: tf.train.Feature(int64_list=tf.train.Int64List(value=[doc])),
        POS: tf.train.Feature(int64_list=tf.train.Int64List(value=[pos])),
    }
    # deterministic: the features in one order, so the same tokens make the same bytes (and cache key)
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString(deterministic=True)


def parse_chunks(serialized):
    """tf.data map function: a batch or a single serialized record -> dict of tensors."""
    import tensorflow as tf

    spec = {TOKENS: tf.io.RaggedFeature(tf.int64), DOC: tf.io.FixedLenFeature([], tf.int64),
            POS: tf.io.FixedLenFeature([], tf.int64)}
    return tf.io.parse_example(serialized, spec)


def chunk_dataset(directory: str):
    """A tf.data.Dataset of parsed chunks from every shard in `directory`, in file order."""
    import tensorflow as tf

    return tf.data.TFRecordDataset(shard_files(directory), compression_type=COMPRESSION).map(parse_chunks)


class RecordIndex:
    """Where every record of a split goes in the corpus-ordered token stream, from one pass over
    the shards that keeps no tokens: a split far larger than memory can be indexed. Both passes read
    all the shard files at once, on every core (a fresh machine's pass over OpenWebText's shards is
    minutes), their records in whatever order they come: each is placed by its (doc, pos)."""

    def __init__(self, directory: str, batch_size: int = 256):
        import tensorflow as tf

        self.files, self._directory = shard_files(directory), directory
        self._batch_size = batch_size
        docs, positions, lengths, self.max_token = [], [], [], -1
        for batch in self._batches():
            docs.append(batch[DOC].numpy())
            positions.append(batch[POS].numpy())
            lengths.append(batch[TOKENS].row_lengths().numpy())
            if tf.size(batch[TOKENS].values) > 0:
                self.max_token = max(self.max_token, int(tf.reduce_max(batch[TOKENS].values)))
        docs, positions, lengths = (np.concatenate(a) if a else np.zeros([0], np.int64)
                                    for a in (docs, positions, lengths))
        self.num_records, self.num_tokens = len(lengths), int(lengths.sum())
        check_record_count(directory, self.num_records)
        # a record's place in corpus order as one int64, its document above its position in it: as many
        # bits for the position as the largest needs
        self._pos_bits = int(positions.max(initial=0)).bit_length()
        if docs.size and (docs.min() < 0 or positions.min() < 0 or int(docs.max()).bit_length() + self._pos_bits > 62):
            raise self._not_placeable("a document or position number out of range")
        keys = self._keys_of(docs, positions)
        order = np.argsort(keys, kind="stable")  # corpus order: by document, then by position in it
        self._keys, sorted_lengths = keys[order], lengths[order]
        self._starts = np.cumsum(sorted_lengths) - sorted_lengths
        if np.any(self._keys[1:] == self._keys[:-1]):
            raise self._not_placeable("a record twice (a shard file copied?)")

    def _keys_of(self, docs: np.ndarray, positions: np.ndarray) -> np.ndarray:
        return (docs << self._pos_bits) | positions

    def _not_placeable(self, what: str) -> "DamagedShard":
        return DamagedShard(os.path.dirname(self._directory.rstrip("/")),
                            f"the token shards in {self._directory} hold {what}")

    def _batches(self):
        """The parsed records in batches, from every file at once; a read error names its file."""
        import tensorflow as tf

        auto = tf.data.AUTOTUNE
        if len(self.files) == 1:
            records = self._file_records(self.files[0])
        else:
            # a few files open at a time for each core (OpenWebText's shards are thousands of files)
            records = tf.data.Dataset.from_tensor_slices(self.files).interleave(
                self._file_records, cycle_length=min(len(self.files), 2 * len(os.sched_getaffinity(0))),
                num_parallel_calls=auto, deterministic=False)
        try:
            yield from records.map(parse_chunks, num_parallel_calls=auto, deterministic=False).prefetch(4)
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
            raise self._damaged(e) from None

    def _file_records(self, path):
        """One shard file's serialized records, in batches."""
        import tensorflow as tf

        return tf.data.TFRecordDataset(path, compression_type=COMPRESSION).batch(self._batch_size)

    def _damaged(self, error) -> UserError:
        """The DamagedShard naming the file that the parallel read failed in (read alone, file by file), or
        when each reads whole alone, the error as a passing one."""
        import tensorflow as tf

        for path in self.files:
            try:
                for _ in self._file_records(path).map(parse_chunks):
                    pass
            except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
                return DamagedShard.unreadable(path, e)
        return UserError(f"reading the token shards in {os.path.dirname(self.files[0])} failed "
                         f"({' '.join(str(error.message).split())}), and reading them again did not: run again")

    def fill(self, out: np.ndarray) -> np.ndarray:
        """Writes the stream into `out` (an array or np.memmap of num_tokens), in a second pass."""
        for batch in self._batches():
            keys = self._keys_of(batch[DOC].numpy(), batch[POS].numpy())
            found = np.minimum(np.searchsorted(self._keys, keys), len(self._keys) - 1)
            if not np.array_equal(self._keys[found], keys):
                raise self._not_placeable("records the first pass did not find (changed while they were read?)")
            starts = self._starts[found]
            values, splits = batch[TOKENS].values.numpy(), batch[TOKENS].row_splits.numpy()
            for i, start in enumerate(starts):
                out[start:start + splits[i + 1] - splits[i]] = values[splits[i]:splits[i + 1]]
        return out


def read_token_stream(directory: str) -> np.ndarray:
    """The whole split's token stream in corpus order, in memory as int64 (tests, small splits)."""
    index = RecordIndex(directory)
    return index.fill(np.empty([index.num_tokens], np.int64))


def write_split(directory: str, documents: Iterable[Sequence[int]], num_shards: int = 1,
                chunk_size: int = DEFAULT_CHUNK_SIZE) -> int:
    """Write tokenized documents as a split (in process: for plain training runs and tests; the
    TFX component writes the same records with Beam), in place of the shards a previous call wrote
    there (those of another count removed once the new ones are whole). Returns the number of tokens
    written."""
    import tensorflow as tf

    tf.io.gfile.makedirs(directory)
    options = tf.io.TFRecordOptions(compression_type=COMPRESSION)
    paths = [os.path.join(directory, f"tokens-{i:05d}-of-{num_shards:05d}.gz") for i in range(num_shards)]
    if not files.is_local(directory):  # (TensorFlow's ram:// file system appends to a file copied over)
        for path in paths:
            if tf.io.gfile.exists(path):
                tf.io.gfile.remove(path)
    n_tokens, n_records = 0, 0
    with contextlib.ExitStack() as written:  # each shard renamed into place once all are complete
        writers = [tf.io.TFRecordWriter(written.enter_context(files.atomic_path(p)), options) for p in paths]
        try:
            for doc, tokens in enumerate(documents):
                for pos, chunk in chunk_document(tokens, chunk_size):
                    writers[n_records % num_shards].write(serialize_chunk(doc, pos, chunk))
                    n_records += 1
                    n_tokens += len(chunk)
        finally:
            for w in writers:
                w.close()
    for old in set(tf.io.gfile.glob(os.path.join(directory, FILE_PATTERN))) - set(paths):
        tf.io.gfile.remove(old)
    return n_tokens
