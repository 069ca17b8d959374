"""The tokenization Beam pipeline: work items -> tokenized shard records per split + counts.

    Create(work items, reshuffled) -> ParDo(TokenizeDocuments) -> train records -> WriteToTFRecord
                                                                 -> val records   -> WriteToTFRecord
                                                                 -> counts -> CombineGlobally -> JSON

Documents stream through the workers piece by piece; the only global step is the combine of small
count dictionaries.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import json
import os
import time
from typing import Dict, List

import apache_beam as beam
from absl import logging
from apache_beam import coders
from apache_beam.io import filebasedsink
from apache_beam.io.filesystem import CompressionTypes

from components.tokenize_text import encoding, sources
from core import shards

GPT2, CHAR = "gpt2", "char"
STATS_FILE = shards.STATS_FILE
SHARD_PREFIX = "tokens"
# zlib level of the shards' GZIP: level 1 takes 2.5 times less CPU than Beam's fixed default (6)
# for token shards only ~5% larger (BENCHMARKS.md).
GZIP_LEVEL = 1
# Counters that every run reports, so that properties exist (as 0) even when nothing happened.
COUNTERS = ("num_documents", "num_documents_train", "num_documents_val", "num_tokens_train",
            "num_tokens_val", "num_records_train", "num_records_val", "num_skipped_documents",
            "skipped_empty", "skipped_missing_text", "invalid_utf8_documents", "bom_dropped_documents",
            "crlf_normalized_lines")


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
            logging.info("TokenizeText: %s documents, %s tokens so far (%s tokens/s)", f"{self.documents:,}",
                         f"{self.tokens:,}", f"{self.tokens / max(now - self.started, 1e-9):,.0f}")


class TokenizeDocuments(beam.DoFn):
    """Reads the documents of work items and emits serialized records tagged by split, plus one
    dictionary of counts per work item on the 'stats' output."""

    def __init__(self, cfg: Dict):
        self._cfg = cfg
        self._encoding = None
        self._dataset = None
        self._progress = None

    def setup(self):
        # Once per worker, not per element: building the BPE ranks takes a third of a second,
        # loading a dataset more.
        if self._cfg["tokenizer"] == GPT2:
            self._encoding = _gpt2_encoding(self._cfg.get("bpe_dir"))
        if self._cfg.get("dataset_name"):
            self._dataset = sources.load_hf_dataset(self._cfg)

    def process(self, item):
        self._progress = self._progress or Progress()
        stats = dict.fromkeys(COUNTERS, 0)
        chars = set()
        for doc in sources.iter_documents(item, self._cfg, self._dataset):
            if doc.blocks is None:
                stats["num_skipped_documents"] += 1
                stats["skipped_missing_text"] += 1
                continue
            counter = _DocCounter()
            records = self._bpe_records if self._cfg["tokenizer"] == GPT2 else self._char_records
            for record in records(doc, counter, chars):
                counter.records += 1
                yield beam.pvalue.TaggedOutput(doc.split, record)
            if doc.decoder is not None and not _part_of_a_file(item):  # a file's parts: counted in the plan
                for key, count in doc.decoder.counts().items():
                    stats[key] += count
            if counter.tokens == 0:
                stats["num_skipped_documents"] += 1
                stats["skipped_empty"] += 1
                continue
            stats["num_documents"] += 1
            stats[f"num_documents_{doc.split}"] += 1
            stats[f"num_tokens_{doc.split}"] += counter.tokens
            stats[f"num_records_{doc.split}"] += counter.records
            self._progress.add(counter.tokens)
        stats["chars"] = "".join(sorted(chars))
        yield beam.pvalue.TaggedOutput("stats", stats)

    def _bpe_records(self, doc: sources.Document, counter: "_DocCounter", chars: set):
        # Records leave as soon as they are full, so a huge document never sits in memory. An empty
        # document yields nothing: no tokens, so no lone end-of-text token either.
        chunker = encoding.TokenChunker(self._cfg["chunk_size"])
        for piece in encoding.bpe_pieces(doc.blocks, self._cfg["max_piece_chars"]):
            # encode_ordinary's tokens straight into a numpy buffer: no Python list of ints.
            tokens = self._encoding.encode_to_numpy(piece, allowed_special=set(), disallowed_special=())
            for pos, chunk in chunker.add(tokens):
                yield encoding.token_record(doc.index, pos, chunk)
        if chunker.num_tokens and self._cfg["append_eot"]:
            for pos, chunk in chunker.add([self._encoding.eot_token]):
                yield encoding.token_record(doc.index, pos, chunk)
        for pos, chunk in chunker.finish():
            yield encoding.token_record(doc.index, pos, chunk)
        counter.tokens = chunker.num_tokens

    def _char_records(self, doc: sources.Document, counter: "_DocCounter", chars: set):
        for pos, piece in enumerate(encoding.char_pieces(doc.blocks, self._cfg["chunk_size"])):
            chars.update(piece)
            counter.tokens += len(piece)
            yield encoding.text_record(doc.index, pos, piece)


class _DocCounter:
    def __init__(self):
        self.tokens = 0
        self.records = 0


@functools.lru_cache(maxsize=None)
def _gpt2_encoding(bpe_dir):
    """One tiktoken encoding per worker process, shared by its threads (tiktoken is thread-safe)."""
    from model.tokenizer import GPT2Tokenizer

    return GPT2Tokenizer(bpe_dir).encoding


class MergeStats(beam.CombineFn):
    """Sums the per-item counts; unions the characters seen (the character path's vocabulary)."""

    def create_accumulator(self):
        return dict.fromkeys(COUNTERS, 0), set()

    def add_input(self, acc, stats):
        counts, chars = acc
        for key in COUNTERS:
            counts[key] += stats[key]
        chars.update(stats["chars"])
        return counts, chars

    def merge_accumulators(self, accs):
        counts, chars = self.create_accumulator()
        for other_counts, other_chars in accs:
            for key in COUNTERS:
                counts[key] += other_counts[key]
            chars |= other_chars
        return counts, chars

    def extract_output(self, acc):
        counts, chars = acc
        return json.dumps({**counts, "chars": "".join(sorted(chars))}, ensure_ascii=True)


class GzipTFRecordSink(filebasedsink.FileBasedSink):
    """Beam's TFRecord sink (temporary files, then finalized into shard names) with GZIP at
    GZIP_LEVEL: Beam's own WriteToTFRecord cannot set the level."""

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


class _GzipFile(gzip.GzipFile):
    """A GZIP stream over a Beam file handle; closing it closes the handle too."""

    def __init__(self, raw):
        super().__init__(fileobj=raw, mode="wb", compresslevel=GZIP_LEVEL, filename="", mtime=0)
        self._raw = raw

    def close(self):
        try:
            super().close()
        finally:
            if not self._raw.closed:
                self._raw.close()


def build_pipeline(pipeline: beam.Pipeline, items: List[dict], cfg: Dict, output_dir: str) -> None:
    """Adds the tokenization to `pipeline`: shards under output_dir/Split-<split>/, counts in
    output_dir/STATS_FILE."""
    outputs = (pipeline
               # Create reshuffles its elements (reshuffle=True), spreading the items over workers.
               | "WorkItems" >> beam.Create(items, reshuffle=True)
               | "Tokenize" >> beam.ParDo(TokenizeDocuments(cfg)).with_outputs("stats", *sources.SPLITS))
    for split in sources.SPLITS:
        _ = (outputs[split]
             | f"Write{split.capitalize()}" >> beam.io.Write(GzipTFRecordSink(
                 os.path.join(shards.split_dir(output_dir, split), SHARD_PREFIX), cfg["num_shards"])))
    _ = (outputs["stats"]
         | "MergeStats" >> beam.CombineGlobally(MergeStats())
         | "WriteStats" >> beam.Map(_write_file, os.path.join(output_dir, STATS_FILE)))


def _write_file(text: str, path: str) -> None:
    """The one merged element, written whole (a retry writes the same bytes again): lighter than
    a WriteToText, which adds a write-and-finalize stage of its own."""
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.create(path) as f:
        f.write(text.encode("utf-8"))
