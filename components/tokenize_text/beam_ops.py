"""The tokenization Beam pipeline: work items -> tokenized shard records per split + counts (+ TFDV
statistics of the documents).

    [Create(whole documents) -> ParDo(HashDocuments) -> GroupByKey(text hash) -> later copies]  (dedup)
                                                                                   | side input
    Create(work items, reshuffled) -> ParDo(TokenizeDocuments) -> counts, shard files -> CombineGlobally -> JSON
                                                                 -> document rows -> TFDV -> FeatureStats.pb

Documents stream through the workers piece by piece, and each bundle writes its records into one
shard file per split, which it names in its counts: the executor publishes the files of the bundles
that completed (a retried bundle's first files are left out). With num_shards set, the records go
through Beam's file sink instead, which shuffles them into that many files. The global steps are the
combine of small count dictionaries, the group of document hashes (a duplicate is a document whose
normalized text equals that of a document earlier in the corpus: only the first is tokenized, so no
text is in both splits) and TFDV's combine of the document rows.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import time
import uuid
from typing import Dict, List, Optional

import apache_beam as beam
from absl import logging
from apache_beam import coders
from apache_beam.io import filebasedsink
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.transforms.window import GlobalWindows
from isal import igzip

from components.tokenize_text import encoding, sources, statistics
from core import shards
from core.console import counted

GPT2, CHAR = "gpt2", "char"
STATS_FILE = shards.STATS_FILE
STATISTICS_DIR = "statistics"  # beside the splits in the staging directory, until published
SHARD_PREFIX = "tokens"
# ISA-L's level (0-3) of the shards' GZIP: its level 2 makes token shards as small as zlib's level 1
# with a sixth of its CPU (0.08 s against 0.48 s for 50 MB of text's records), and zlib's level 1
# took 2.5 times less than Beam's fixed default, level 6, for files ~5% larger (BENCHMARKS.md).
GZIP_LEVEL = 2
BUNDLE_DIR = "_bundles"  # the shard files the bundles wrote, until the executor names them
SHARDS = "shards"  # in the counts: [split, path] of each shard file a bundle wrote
SHARDS_FILE = "bundle_shards.json"  # SHARDS of the merged counts, beside STATS_FILE in the staging directory
# Counters that every run reports, so that properties exist (as 0) even when nothing happened.
COUNTERS = ("num_documents", "num_documents_train", "num_documents_val", "num_tokens_train",
            "num_tokens_val", "num_records_train", "num_records_val", "num_skipped_documents",
            "skipped_empty", "skipped_missing_text", "duplicate_documents", "invalid_utf8_documents",
            "bom_dropped_documents", "crlf_normalized_lines", "refused_documents")
# The first document the text policy refused, [index, name, problem] (None: none), and the
# per-split character and token counts, beside the COUNTERS in each item's counts.
REFUSED, DISTRIBUTIONS = "first_refused", "distributions"


def _part_of_a_file(item: dict) -> bool:
    return item["kind"] == "file" and (item["start"] > 0 or item["end"] is not None)


PROGRESS_SECONDS = 10.0  # a worker's progress line at most this often


class Progress:
    """Documents and tokens a worker has tokenized so far, logged at most every PROGRESS_SECONDS
    (an OpenWebText tokenization takes hours)."""

    def __init__(self, every: float = PROGRESS_SECONDS):
        self.documents = self.tokens = 0
        self.every = every
        self.started = self.last = time.time()

    def add(self, tokens: int) -> None:
        self.documents += 1
        self.tokens += tokens
        now = time.time()
        if now - self.last >= self.every:
            self.last = now
            logging.info("TokenizeText: %s, %s tokens so far (%s tokens/s)", counted(self.documents, "document"),
                         f"{self.tokens:,}", f"{self.tokens / max(now - self.started, 1e-9):,.0f}")


class _ReadsDocuments(beam.DoFn):
    """A DoFn that reads the documents of work items (loading the dataset once per worker)."""

    def __init__(self, cfg: Dict):
        self._cfg = cfg
        self._dataset = None

    def setup(self):
        # Once per worker, not per element: loading a dataset takes seconds.
        self._dataset = sources.open_for_worker(self._cfg)


class HashDocuments(_ReadsDocuments):
    """(hash of the normalized text, document index) of every document with text, read whole."""

    def process(self, item):
        for doc in sources.iter_whole_documents(item, self._cfg, self._dataset):
            if doc.blocks is None:
                continue
            digest, empty = hashlib.blake2b(digest_size=16), True
            for block in doc.blocks:
                digest.update(block.encode("utf-8", "surrogatepass"))
                empty = empty and not block
            if not empty:  # empty documents are skipped anyway, not duplicates
                yield digest.digest(), doc.index


def later_copies(keyed) -> List[tuple]:
    """(index, True) of each document after the first with the same text."""
    _, indices = keyed
    return [(index, True) for index in sorted(indices)[1:]]


class TokenizeDocuments(_ReadsDocuments):
    """Reads the documents of work items and emits serialized records tagged by split, plus one
    dictionary of counts per work item on the 'stats' output and, when statistics are on, each
    document's row of features on 'rows_<split>'. Documents in `duplicates` (a side input: index ->
    True) are skipped and counted."""

    def __init__(self, cfg: Dict, statistics_on: bool, shard_dir: Optional[str] = None):
        super().__init__(cfg)
        self._statistics = statistics_on
        self._shard_dir = shard_dir  # None: the records are the split outputs, for Beam's file sink
        self._shards = {}  # split -> (path, open _GzipFile) of this bundle's shard file
        self._tokenizer = None
        self._progress = None

    def setup(self):
        super().setup()
        if self._cfg["tokenizer"] == GPT2:  # once per process: ~0.4 s from the BPE files
            self._tokenizer = gpt2_tokenizer(self._cfg.get("bpe_dir"))
            self._tokenizer.fast_encoder()  # built here, not in the first document's time

    def process(self, item, duplicates=None):
        self._progress = self._progress or Progress()
        stats = _no_counts()
        # every character is counted for statistics, and for the character vocabulary's size
        counts = {split: (statistics.Counts(), statistics.Counts() if self._cfg["tokenizer"] == GPT2 else None)
                  for split in sources.SPLITS} if self._statistics or self._cfg["tokenizer"] == CHAR else None
        dropped, counted = set(), set()
        for doc in sources.iter_documents(item, self._cfg, self._dataset):
            if duplicates and doc.index in duplicates:
                # counted once: by the item that holds the document's start, and once per row
                if (item["kind"] != "file" or item["start"] == 0) and doc.index not in dropped:
                    stats["duplicate_documents"] += 1
                dropped.add(doc.index)
                continue
            if doc.blocks is None:
                stats["num_skipped_documents"] += 1
                stats["skipped_missing_text"] += 1
                continue
            document = statistics.DocumentStats(*counts[doc.split]) if counts else None
            counter = _DocCounter()
            records = self._bpe_records if self._cfg["tokenizer"] == GPT2 else self._char_records
            for record in records(doc, counter, document):
                counter.records += 1
                if self._shard_dir is None:
                    yield beam.pvalue.TaggedOutput(doc.split, record)
                else:
                    self._write(doc.split, record)
            check = self._check(item, doc, stats)
            if self._statistics:
                yield beam.pvalue.TaggedOutput(f"rows_{doc.split}", document.row(counter.tokens, check))
            if counter.tokens == 0:
                stats["num_skipped_documents"] += 1
                stats["skipped_empty"] += 1
                continue
            # a document cut into a train head and a val tail (split head_tail) has a part in each
            # split, but is one document: counted by the item that holds its start
            if (item["kind"] != "file" or item["start"] == 0) and doc.index not in counted:
                counted.add(doc.index)
                stats["num_documents"] += 1
            stats[f"num_documents_{doc.split}"] += 1
            stats[f"num_tokens_{doc.split}"] += counter.tokens
            stats[f"num_records_{doc.split}"] += counter.records
            self._progress.add(counter.tokens)
        stats[DISTRIBUTIONS] = {f"{name}_{split}": c.sparse() for split, pair in (counts or {}).items()
                                for name, c in zip((statistics.CHAR, statistics.TOKEN), pair) if c is not None}
        yield beam.pvalue.TaggedOutput("stats", stats)

    def _write(self, split: str, record: bytes) -> None:
        """Writes a record into the bundle's shard file of its split (Beam's sink would add four
        stages per split, ~0.2 s each run on the DirectRunner)."""
        from apache_beam.io.filesystems import FileSystems

        try:
            if split not in self._shards:
                path = FileSystems.join(self._shard_dir, f"{uuid.uuid4().hex}-{split}.gz")
                raw = FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED)
                self._shards[split] = path, _GzipFile(raw)
            self._shards[split][1].write(encoding.tfrecord(record))
        except OSError:
            # a failed bundle's files are closed here, so that their space (deleted with the staging
            # directory) is freed now, not when the process ends
            with contextlib.suppress(OSError):
                self._close_shards()
            raise

    def _close_shards(self) -> None:
        """Closes the bundle's shard files, every one even when one fails (its error is raised)."""
        opened, self._shards, error = self._shards, {}, None
        for _, shard in opened.values():
            try:
                shard.close()
            except OSError as e:
                error = error or e
        if error is not None:
            raise error

    def start_bundle(self):
        with contextlib.suppress(OSError):  # files a failed bundle of this instance left open: not its
            self._close_shards()

    def finish_bundle(self):
        written = [[split, path] for split, (path, _) in self._shards.items()]
        self._close_shards()  # a file that cannot be completed fails the bundle: it is not listed
        if written:  # the files count only once the bundle completed: named with its counts
            yield beam.pvalue.TaggedOutput("stats", GlobalWindows.windowed_value({**_no_counts(), SHARDS: written}))

    def _check(self, item: dict, doc: sources.Document, stats: dict) -> Optional[dict]:
        """What decoding and the text policy found in the document, added to the counts; its
        features for the row (None for a document's second part: counted on its first)."""
        if _part_of_a_file(item):  # a file's parts: counted in the plan, which read it whole
            return item["check"]
        if doc.decoder is None:
            return None
        for key, count in doc.decoder.counts().items():
            stats[key] += count
        problem = doc.decoder.check.problem
        if problem and (stats[REFUSED] is None or doc.index < stats[REFUSED][0]):
            stats[REFUSED] = [doc.index, sources.document_name(item, doc.index, self._cfg), problem]
        return statistics.check_features(doc.decoder.check)

    def _bpe_records(self, doc: sources.Document, counter: "_DocCounter", document):
        # Records leave as soon as they are full, so a huge document never sits in memory. An empty
        # document yields nothing: no tokens, so no lone end-of-text token either.
        chunker = encoding.TokenChunker(self._cfg["chunk_size"])
        blocks = document.watch(doc.blocks) if document else doc.blocks
        for piece in encoding.bpe_pieces(blocks, self._cfg["max_piece_chars"]):
            tokens = self._tokenizer.encode_to_numpy(piece)  # no Python int per token
            if document:
                document.tokens(tokens)
            for pos, chunk in chunker.add(tokens):
                yield encoding.token_record(doc.index, pos, chunk)
        if chunker.num_tokens and self._cfg["append_eot"]:
            if document:
                document.tokens([self._tokenizer.eot_token])
            for pos, chunk in chunker.add([self._tokenizer.eot_token]):
                yield encoding.token_record(doc.index, pos, chunk)
        for pos, chunk in chunker.finish():
            yield encoding.token_record(doc.index, pos, chunk)
        counter.tokens = chunker.num_tokens

    def _char_records(self, doc: sources.Document, counter: "_DocCounter", document):
        for pos, piece in enumerate(encoding.char_pieces(document.watch(doc.blocks), self._cfg["chunk_size"])):
            counter.tokens += len(piece)
            yield encoding.text_record(doc.index, pos, piece)


def _no_counts() -> dict:
    """What a work item's or a bundle's counts start from."""
    return {**dict.fromkeys(COUNTERS, 0), REFUSED: None, DISTRIBUTIONS: {}, SHARDS: []}


class _DocCounter:
    def __init__(self):
        self.tokens = 0
        self.records = 0


@functools.lru_cache(maxsize=None)
def gpt2_tokenizer(bpe_dir):
    """One GPT-2 tokenizer per process, shared by its threads: building it from the BPE files takes
    ~0.4 s, which the executor (checking the files before Beam starts) and the DirectRunner's worker
    threads in its process pay once between them."""
    from model.tokenizer import GPT2Tokenizer

    return GPT2Tokenizer(bpe_dir)


class MergeStats(beam.CombineFn):
    """Sums the per-item counts and character and token distributions; keeps the first document the
    text policy refused. Its output: the counts, `chars` (every character seen: the character path's
    vocabulary), REFUSED and DISTRIBUTIONS ({"char_train": {code point: count}, ...})."""

    def create_accumulator(self):
        return dict.fromkeys(COUNTERS, 0), [None], {}, []

    def add_input(self, acc, stats):
        counts, refused, distributions, written = acc
        for key in COUNTERS:
            counts[key] += stats[key]
        self._first_refused(refused, stats[REFUSED])
        for key, sparse in stats[DISTRIBUTIONS].items():
            distributions.setdefault(key, statistics.Counts()).add_sparse(sparse)
        written += stats[SHARDS]
        return acc

    def merge_accumulators(self, accs):
        accs = iter(accs)
        counts, refused, distributions, written = first = next(accs)
        for other_counts, other_refused, other_distributions, other_written in accs:
            for key in COUNTERS:
                counts[key] += other_counts[key]
            self._first_refused(refused, other_refused[0])
            for key, other in other_distributions.items():
                distributions.setdefault(key, statistics.Counts()).add_sparse(other.sparse())
            written += other_written
        return first

    @staticmethod
    def _first_refused(refused: list, other: Optional[list]) -> None:
        if other is not None and (refused[0] is None or other[0] < refused[0][0]):
            refused[0] = other

    def extract_output(self, acc):
        counts, (refused,), distributions, written = acc
        distributions = {key: c.to_dict() for key, c in distributions.items()}
        chars = set()
        for key, distribution in distributions.items():
            if key.startswith(statistics.CHAR + "_"):
                chars.update(map(chr, distribution))
        return {**counts, "chars": "".join(sorted(chars)), REFUSED: refused, DISTRIBUTIONS: distributions,
                SHARDS: written}


class GzipTFRecordSink(filebasedsink.FileBasedSink):
    """Beam's TFRecord sink (temporary files, then finalized into shard names) with GZIP at
    GZIP_LEVEL: Beam's own WriteToTFRecord cannot set the level. Used when num_shards is set."""

    def __init__(self, file_path_prefix: str, num_shards: int):
        super().__init__(file_path_prefix, coder=coders.BytesCoder(), file_name_suffix=".gz", num_shards=num_shards,
                         compression_type=CompressionTypes.UNCOMPRESSED)  # open() compresses

    def open(self, temp_path):
        return _GzipFile(super().open(temp_path))

    def write_encoded_record(self, file_handle, encoded_value):
        try:
            file_handle.write(encoding.tfrecord(encoded_value))
        except OSError:
            # Beam keeps a failed bundle's file open: closed here, the space of the file (deleted
            # with the staging directory) is freed now, not when the process ends.
            with contextlib.suppress(OSError):
                file_handle.close()
            raise


class _GzipFile(igzip.IGzipFile):
    """A GZIP stream (ISA-L's deflate) over a Beam file handle; closing it closes the handle too."""

    def __init__(self, raw):
        super().__init__(fileobj=raw, mode="wb", compresslevel=GZIP_LEVEL, filename="", mtime=0)
        self._raw = raw

    def close(self):
        try:
            super().close()
        finally:
            if not self._raw.closed:
                self._raw.close()


class _Create(beam.PTransform):
    """beam.Create of the work items, reshuffled (spread over the workers). Beam's Create infers the
    type of its elements one by one, twice: 2.5 s for 9,000 items (one a file) made of dicts. Created
    as their indices instead (ints: 10 ms), then looked up in the list, which travels with the Map."""

    def __init__(self, items: List[dict]):
        super().__init__()
        self._items = list(items)

    def expand(self, pbegin):
        return (pbegin
                | "Indices" >> beam.Create(range(len(self._items)), reshuffle=True)
                | "Items" >> beam.Map(self._items.__getitem__))


def build_pipeline(pipeline: beam.Pipeline, items: List[dict], cfg: Dict, output_dir: str, dedup: bool = False,
                   statistics_on: bool = False) -> None:
    """Adds the tokenization to `pipeline`: shards under output_dir/Split-<split>/, counts in
    output_dir/STATS_FILE; with dedup, only the first of documents of the same text is tokenized;
    with statistics_on, TFDV statistics in output_dir/STATISTICS_DIR/Split-<split>/FeatureStats.pb."""
    side_inputs = {}
    if dedup:
        later = (pipeline
                 | "WholeDocuments" >> _Create(sources.whole_document_items(items))
                 | "HashDocuments" >> beam.ParDo(HashDocuments(cfg))
                 | "GroupByText" >> beam.GroupByKey()
                 | "LaterCopies" >> beam.FlatMap(later_copies))
        side_inputs["duplicates"] = beam.pvalue.AsDict(later)
    rows = [f"rows_{split}" for split in sources.SPLITS] if statistics_on else []
    shard_dir = None if cfg["num_shards"] else os.path.join(output_dir, BUNDLE_DIR)
    outputs = (pipeline
               | "WorkItems" >> _Create(items)
               | "Tokenize" >> beam.ParDo(TokenizeDocuments(cfg, statistics_on, shard_dir), **side_inputs).with_outputs(
                   "stats", *sources.SPLITS, *rows))
    for split in sources.SPLITS if cfg["num_shards"] else ():
        _ = (outputs[split]
             | f"Write{split.capitalize()}" >> beam.io.Write(GzipTFRecordSink(
                 os.path.join(shards.split_dir(output_dir, split), SHARD_PREFIX), cfg["num_shards"])))
    merged = outputs["stats"] | "MergeStats" >> beam.CombineGlobally(MergeStats())
    _ = merged | "WriteStats" >> beam.Map(_write_counts, os.path.join(output_dir, STATS_FILE))
    if statistics_on:
        import tensorflow_data_validation as tfdv

        batches = [outputs[f"rows_{split}"]
                   | f"Batch{split.capitalize()}" >> beam.BatchElements(max_batch_size=statistics.ROWS_PER_BATCH)
                   | f"Rows{split.capitalize()}" >> beam.Map(statistics.record_batch, split)
                   for split in sources.SPLITS]
        _ = (tuple(batches)
             | "Documents" >> beam.Flatten()
             | "GenerateStatistics" >> tfdv.GenerateStatistics(statistics.stats_options())
             | "WriteStatistics" >> beam.Map(_write_statistics, beam.pvalue.AsSingleton(merged),
                                             os.path.join(output_dir, STATISTICS_DIR), cfg))


def _write_counts(merged: dict, path: str) -> None:
    _write_file(json.dumps({k: v for k, v in merged.items() if k not in (DISTRIBUTIONS, SHARDS)}, ensure_ascii=True),
                path)
    _write_file(json.dumps(merged[SHARDS]), os.path.join(os.path.dirname(path), SHARDS_FILE))


def name_shards(output_dir: str) -> None:
    """Moves the shard files that the completed bundles wrote (SHARDS_FILE) into output_dir's
    Split-<split>/ under the names Beam's sink gives (tokens-00000-of-00002.gz); a file that a
    failed attempt of a bundle left is not among them."""
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(os.path.join(output_dir, SHARDS_FILE), compression_type=CompressionTypes.UNCOMPRESSED) as f:
        written = json.loads(f.read())
    if not written:  # num_shards set: Beam's sink wrote and named them
        return
    for split in sources.SPLITS:
        paths = sorted(p for s, p in written if s == split)
        directory = shards.split_dir(output_dir, split)
        FileSystems.mkdirs(directory)
        FileSystems.rename(paths, [os.path.join(directory, f"{SHARD_PREFIX}-{i:05d}-of-{len(paths):05d}.gz")
                                   for i in range(len(paths))])


def _write_statistics(generated, merged: dict, directory: str, cfg: Dict) -> None:
    """Each split's statistics (TFDV's with the distributions added) where TFX's ExampleStatistics
    keeps them."""
    from apache_beam.io.filesystems import FileSystems

    labels = statistics.token_label(gpt2_tokenizer(cfg.get("bpe_dir")).encoding.decode_single_token_bytes) \
        if cfg["tokenizer"] == GPT2 else None
    for split in sources.SPLITS:
        result = statistics.split_statistics(generated, merged, split, labels)
        path = os.path.join(shards.split_dir(directory, split), statistics.STATS_FILE_NAME)
        with FileSystems.create(path) as f:
            f.write(result.SerializeToString())


def _write_file(text: str, path: str) -> None:
    """A merged element, written whole (a retry writes the same bytes again): lighter than
    a WriteToText, which adds a write-and-finalize stage of its own."""
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.create(path) as f:
        f.write(text.encode("utf-8"))
