"""TFDV statistics of a corpus's documents, computed inside TokenizeText's Beam pipeline.

Each document read for tokenizing becomes one row of small features, which TFDV's own
GenerateStatistics describes per split (count, mean, quantiles, histograms, zeros):

  num_characters      its length in characters (after the BOM/CRLF policy)
  num_tokens          its length in tokens (GPT-2 BPE with its end-of-text token, or characters)
  empty               1 when it has no characters (it is skipped, not tokenized)
  whitespace_only     1 when it has characters but only whitespace
  replaced_sequences  invalid UTF-8 sequences replaced by U+FFFD
  control_characters  control characters (NUL included) it holds
  not_text            1 when the text policy refuses it (it is tokenized only with accept_invalid_text)

Beside them, two distributions counted exactly over every character and token (cheap numpy
bincounts while the text passes; a TFDV top-k over one value per character would cost more than
the tokenization) are added to TFDV's output as string features of the same form as TFDV's own
categorical statistics (unique, top_values, rank_histogram), which TFDV's schema inference,
validation and drift/skew comparators read:

  char    every character and its frequency
  token   every GPT-2 token and its frequency, labelled `id 'text'` (GPT-2 BPE corpora only)

A document cut into a train head and a val tail (split head_tail) is a row in each split; what the
text policy found in it is counted on its first part's row. Imports nothing heavy (no TensorFlow):
Beam workers import it.
"""

from __future__ import annotations

from typing import Callable, Dict, Iterable, Iterator, List, Optional

import numpy as np

NUM_CHARACTERS, NUM_TOKENS, EMPTY, WHITESPACE_ONLY = "num_characters", "num_tokens", "empty", "whitespace_only"
REPLACED, CONTROL, NOT_TEXT = "replaced_sequences", "control_characters", "not_text"
DOCUMENT_FEATURES = (NUM_CHARACTERS, NUM_TOKENS, EMPTY, WHITESPACE_ONLY, REPLACED, CONTROL, NOT_TEXT)
CHAR, TOKEN = "char", "token"  # the distributions
SPLIT_METADATA = b"split"  # the split of a record batch of rows, in its Arrow schema's metadata
STATS_FILE_NAME = "FeatureStats.pb"  # TFX's ExampleStatistics layout: Split-<name>/FeatureStats.pb
TOP_TOKENS = 100  # tokens listed in top_values (every token is in the rank histogram)
ROWS_PER_BATCH = 1024
DENSE_LIMIT = 1 << 16  # values from here on are counted sorted, not in a dense array per piece
PENDING_LIMIT = 1 << 16  # values kept as they come before they are counted into a dense array


class Counts:
    """Exact counts of small non-negative integers (code points, token ids). Values are kept as they
    come until there are PENDING_LIMIT of them, then counted into a dense array that grows to the
    largest one seen: a work item of a few short documents (a folder of small files) sorts its few
    thousand token ids once instead of filling and scanning a 50,257-long array."""

    def __init__(self):
        self.array = np.zeros([0], np.int64)
        self._pending, self._num_pending = [], 0

    def _grow(self, size: int) -> None:
        if size > len(self.array):
            self.array = np.concatenate([self.array, np.zeros([size - len(self.array)], np.int64)])

    def add(self, values: np.ndarray) -> None:
        if len(values):
            self._pending.append(values)
            self._num_pending += len(values)
            if self._num_pending >= PENDING_LIMIT:
                self._count_pending()

    def _count_pending(self) -> None:
        if not self._pending:
            return
        values = np.concatenate(self._pending)
        self._pending, self._num_pending = [], 0
        large = values >= DENSE_LIMIT  # an emoji among them: sorted apart, the rest still bincounted
        if large.any():
            self.add_sparse(np.unique(values[large], return_counts=True))
            values = values[~large]
        if len(values):
            counts = np.bincount(values)
            self._grow(len(counts))
            self.array[:len(counts)] += counts

    def add_text(self, text: str) -> None:
        self.add(np.frombuffer(text.encode("utf-32-le", "surrogatepass"), np.uint32))

    def sparse(self) -> tuple:
        """(values, counts) of the values seen, ascending, as two int64 arrays: what a work item
        passes on."""
        if not len(self.array) and self._pending:  # only a few values: sorted, never made dense
            values, counts = np.unique(np.concatenate(self._pending), return_counts=True)
            return values.astype(np.int64), counts.astype(np.int64)
        self._count_pending()
        seen = np.flatnonzero(self.array)
        return seen, self.array[seen]

    def add_sparse(self, sparse: tuple) -> None:
        values, counts = sparse
        if len(values):
            self._grow(int(values[-1]) + 1)
            self.array[values] += counts

    def to_dict(self) -> Dict[int, int]:
        return dict(zip(*(a.tolist() for a in self.sparse())))


class DocumentStats:
    """One document's row, filled as its text and tokens pass (`watch`, `tokens`), and the work
    item's per-split character and token counts it adds to."""

    def __init__(self, chars: Counts, tokens: Optional[Counts]):
        self._chars, self._tokens = chars, tokens
        self.num_characters = 0
        self.whitespace_only = True

    def watch(self, blocks: Iterable[str]) -> Iterator[str]:
        """The document's text blocks, passed on unchanged, counted on the way."""
        for block in blocks:
            self.num_characters += len(block)
            self.whitespace_only = self.whitespace_only and (not block or block.isspace())
            self._chars.add_text(block)
            yield block

    def tokens(self, ids) -> None:
        if self._tokens is not None:
            self._tokens.add(np.asarray(ids, np.int64))

    def row(self, num_tokens: int, check: Optional[dict]) -> Dict[str, int]:
        """The document's features; `check`: what the text policy counted in it (None: nothing to
        count here, as for the second part of a document cut in two)."""
        check = check or {}
        return {NUM_CHARACTERS: self.num_characters, NUM_TOKENS: num_tokens, EMPTY: int(self.num_characters == 0),
                WHITESPACE_ONLY: int(self.num_characters > 0 and self.whitespace_only),
                REPLACED: check.get(REPLACED, 0), CONTROL: check.get(CONTROL, 0), NOT_TEXT: check.get(NOT_TEXT, 0)}


def check_features(check) -> dict:
    """A TextCheck's findings as the row features."""
    return {REPLACED: check.replaced_sequences, CONTROL: check.control_characters, NOT_TEXT: int(bool(check.problem))}


def record_batch(rows: List[Dict[str, int]], split: str):
    """Rows of one split as the Arrow RecordBatch TFDV takes (each feature a list of one int)."""
    import pyarrow as pa

    columns = [pa.array([[row[name]] for row in rows], pa.list_(pa.int64())) for name in DOCUMENT_FEATURES]
    schema = pa.schema([pa.field(name, pa.list_(pa.int64())) for name in DOCUMENT_FEATURES],
                       metadata={SPLIT_METADATA: split.encode()})
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def slice_by_split(batch):
    """TFDV slice function: a batch's rows belong to the split its metadata names."""
    yield batch.schema.metadata[SPLIT_METADATA].decode(), batch


def stats_options():
    """TFDV's options: the default generators over the document rows, sliced by split."""
    import tensorflow_data_validation as tfdv

    return tfdv.StatsOptions(experimental_slice_functions=[slice_by_split])


def distribution_feature(name: str, counts: Dict[str, int], num_examples: int, num_non_missing: int,
                         max_num_values: int, top: Optional[int] = None):
    """A categorical feature's statistics as TFDV writes them (string_stats with common_stats,
    unique, top_values and the rank histogram that its comparators read) from exact counts."""
    from tensorflow_metadata.proto.v0 import statistics_pb2

    feature = statistics_pb2.FeatureNameStatistics(type=statistics_pb2.FeatureNameStatistics.STRING)
    feature.path.step.append(name)
    stats = feature.string_stats
    total = sum(counts.values())
    common = stats.common_stats
    common.num_non_missing = num_non_missing
    common.num_missing = num_examples - num_non_missing
    common.min_num_values = 1 if num_non_missing else 0
    common.max_num_values = max_num_values
    common.avg_num_values = total / num_non_missing if num_non_missing else 0.0
    common.tot_num_values = total
    stats.unique = len(counts)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    if total:
        stats.avg_length = sum(len(label.encode()) * count for label, count in ranked) / total
    for label, count in ranked[:top]:
        stats.top_values.add(value=label, frequency=count)
    for rank, (label, count) in enumerate(ranked):
        stats.rank_histogram.buckets.add(low_rank=rank, high_rank=rank, label=label, sample_count=count)
    return feature


def token_label(decode: Callable[[int], bytes]) -> Callable[[int], str]:
    """GPT-2 token ids labelled with their text, `262 ' the'` (a token that is part of a character
    shows its bytes replaced: the id tells them apart)."""
    return lambda token: f"{token} {decode(token).decode('utf-8', 'replace')!r}"


def split_statistics(generated, merged: dict, split: str, token_labels: Optional[Callable[[int], str]]):
    """The split's DatasetFeatureStatisticsList: TFDV's slice of the split (its document rows) with
    the `char` (and `token`) distributions of merged counts (MergeStats's output) added."""
    from tensorflow_metadata.proto.v0 import statistics_pb2

    result = statistics_pb2.DatasetFeatureStatisticsList()
    dataset = result.datasets.add()
    for candidate in generated.datasets:
        if candidate.name == split:
            dataset.CopyFrom(candidate)
    dataset.name = split
    maxima = {f.path.step[0]: int(f.num_stats.max) for f in dataset.features if f.path.step}
    present = merged[f"num_documents_{split}"]  # the documents with text
    chars = {chr(code): count for code, count in merged["distributions"][f"{CHAR}_{split}"].items()}
    dataset.features.append(distribution_feature(CHAR, chars, dataset.num_examples, present,
                                                 maxima.get(NUM_CHARACTERS, 0)))
    if token_labels is not None:
        tokens = {token_labels(token): count for token, count in merged["distributions"][f"{TOKEN}_{split}"].items()}
        dataset.features.append(distribution_feature(TOKEN, tokens, dataset.num_examples, present,
                                                     maxima.get(NUM_TOKENS, 0), top=TOP_TOKENS))
    return result
