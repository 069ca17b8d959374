"""Corpus sources for the tokenization component: planning the work (in the executor) and reading
documents (in Beam workers).

A plan is a list of small JSON-able work items; each worker reads its items' documents itself, so no
process ever holds more than the documents it is tokenizing:

- text files: one item per file (a document); a single file split 90/10 becomes two items, the head
  and the tail, read by character offset;
- a map-style Hugging Face dataset (local parquet/json/arrow/text, or a downloaded hub dataset):
  one item per range of rows, read from the memory-mapped Arrow cache;
- a streamed Hugging Face dataset: one item per data file (shard) of the stream.
"""

from __future__ import annotations

import collections
import hashlib
import os
from typing import Any, Iterator, List, NamedTuple, Optional

from components.tokenize_text.encoding import TEXT_CHECK_BYTES, Utf8Decoder, decode_text, text_file_problem
from components.tokenize_text.statistics import check_features
from components.tokenize_text.settings import AUTO, HASH, HEAD_TAIL  # noqa: F401  (the split methods)
from core.errors import UserError
from core.shards import SPLITS, TRAIN, VAL  # noqa: F401  (this module's callers use all three)
DEFAULT_HASH_VAL_FRACTION = 0.0005  # nanoGPT's OpenWebText hold-out
DEFAULT_HEAD_TAIL_VAL_FRACTION = 0.1  # nanoGPT's shakespeare prepare scripts: last 10% is val
READ_BLOCK_BYTES = 1 << 20
MIN_HASHED_VAL_DOCUMENTS = 20  # split_method auto hashes documents only when val can expect this many
ROWS_PER_ITEM = 2000
ROWS_PER_READ = 256
# Rows of a streamed dataset get the document index shard * 2**40 + row: corpus order, unique.
STREAM_SHARD_STRIDE = 1 << 40

# Local files that `datasets` loads with a packaged builder, by extension.
DATASET_BUILDERS = {".parquet": "parquet", ".json": "json", ".jsonl": "json", ".arrow": "arrow",
                     ".txt": "text", ".csv": "csv"}


class NotText(UserError, ValueError):
    pass


class Document(NamedTuple):
    index: int  # position in the corpus: the shards' `doc`
    split: str
    blocks: Iterator[str]  # the text, in order, in blocks of any size
    decoder: Optional[Utf8Decoder]  # tells, once blocks are read, whether bytes were replaced


def hashed_split(doc_index: int, val_fraction: float, seed: int) -> str:
    """The split of a document of a corpus: a keyed hash of its index, so the same on every run and
    every runner (Python's hash() is salted per process, so it would not be)."""
    digest = hashlib.blake2b(f"{seed}:{doc_index}".encode(), digest_size=8).digest()
    return VAL if int.from_bytes(digest, "big") / 2.0 ** 64 < val_fraction else TRAIN


# --- text files ------------------------------------------------------------------------------------

def _filesystems():
    from apache_beam.io.filesystems import FileSystems  # local, gs://, hdfs:// ... alike

    return FileSystems


def match_text_files(pattern: str) -> List[Any]:
    """The files (Beam FileMetadata, sorted by path) that a path or glob names; FileNotFoundError
    naming the pattern when there are none."""
    filesystems = _filesystems()
    if pattern.endswith("/") or ("://" not in pattern and os.path.isdir(pattern)):
        pattern = filesystems.join(pattern, "*")  # a folder: the files in it
    try:
        metadata = filesystems.match([pattern])[0].metadata_list
    except Exception as e:  # Beam raises BeamIOError for a missing non-glob path
        raise FileNotFoundError(f"input_pattern {pattern!r}: no such file ({e})") from None
    files = sorted((m for m in metadata if not os.path.isdir(m.path)), key=lambda m: m.path)
    if not files:
        raise FileNotFoundError(f"input_pattern {pattern!r} matches no files")
    return files


def not_text(name: str, problem: str, refused: int = 1) -> NotText:
    """The error that refuses a document the text policy refuses (encoding.TextCheck), naming it."""
    more = f" ({refused - 1} more documents refused)" if refused > 1 else ""
    return NotText(f"{name} is not UTF-8 text: {problem}{more}; convert it to UTF-8 (e.g. iconv -t UTF-8), or set "
                   f"accept_invalid_text=True to tokenize it anyway with invalid bytes replaced")


def check_text_files(files: List[Any]) -> None:
    """Refuse, naming it, the first file whose first bytes are not UTF-8 text (encoding.text_file_problem):
    before any work; the whole of each document is checked as it is read."""
    for m in files:
        with _filesystems().open(m.path) as f:
            problem = text_file_problem(f.read(TEXT_CHECK_BYTES))
        if problem:
            raise not_text(m.path, problem)


def read_blocks(path: str, decoder: Utf8Decoder, start: int = 0, end: Optional[int] = None
                ) -> Iterator[str]:
    """The characters [start, end) of a text file, decoded in blocks under the UTF-8 policy."""
    offset = 0
    with _filesystems().open(path) as f:
        while end is None or offset < end:
            raw = f.read(READ_BLOCK_BYTES)
            text = decoder.decode(raw, final=not raw)
            lo, hi = max(start - offset, 0), len(text) if end is None else min(end - offset, len(text))
            offset += len(text)
            if lo < hi:
                yield text[lo:hi]
            if not raw:
                break


def count_chars(path: str, keep_crlf: bool = False) -> (int, Utf8Decoder):
    """The length in characters of a text file, in one streaming pass (nanoGPT's n = len(data)),
    and its decoder, which tells what decoding replaced or normalised and what the text policy found."""
    decoder = Utf8Decoder(keep_crlf)
    return sum(len(block) for block in read_blocks(path, decoder)), decoder


def choose_split(split_method: str, num_documents: Optional[int], val_fraction: Optional[float]):
    """(split method, val fraction). auto: whole documents by hash when the val split can expect at
    least MIN_HASHED_VAL_DOCUMENTS of them (an OpenWebText), else each document's tail (one file:
    nanoGPT's 90/10), so that any corpus with text in it gets a non-empty val split."""
    if split_method == AUTO:
        expected = None if num_documents is None else \
            num_documents * (DEFAULT_HASH_VAL_FRACTION if val_fraction is None else val_fraction)
        split_method = HASH if expected is None or expected >= MIN_HASHED_VAL_DOCUMENTS else HEAD_TAIL
    if split_method not in (HEAD_TAIL, HASH):
        raise ValueError(f"unknown split_method {split_method!r}: use {AUTO!r}, {HEAD_TAIL!r} or {HASH!r}")
    default = DEFAULT_HASH_VAL_FRACTION if split_method == HASH else DEFAULT_HEAD_TAIL_VAL_FRACTION
    return split_method, default if val_fraction is None else val_fraction


def head_tail_cut(num_chars: int, val_fraction: float) -> int:
    """Where a document's train head ends and its val tail begins (nanoGPT: data[:int(n*0.9)])."""
    return int(num_chars * (1 - val_fraction))


def describe_split(info: dict) -> str:
    """What the split did, in words, for the run's log."""
    if info["split_method"] == HEAD_TAIL:
        return (f"split head_tail: the last {info['val_fraction']:g} of each document's characters is val "
                f"(nanoGPT's split of one text)")
    return (f"split hash: each document goes to val with probability {info['val_fraction']:g} "
            f"(a keyed hash of its index)")


def plan_text_files(pattern: str, split_method: str, val_fraction: Optional[float], seed: int,
                    accept_invalid_text: bool = False, keep_crlf: bool = False) -> (List[dict], dict):
    files = match_text_files(pattern)
    if not accept_invalid_text:
        check_text_files(files)
    if all(m.size_in_bytes == 0 for m in files):
        raise ValueError(f"input_pattern {pattern!r}: the corpus is empty "
                         f"({len(files)} file(s), all of 0 bytes)")
    split_method, fraction = choose_split(split_method, len(files), val_fraction)
    info = {"source": pattern, "num_files": len(files), "split_method": split_method, "val_fraction": fraction}
    if split_method == HASH:
        items = [{"kind": "file", "path": m.path, "doc": i, "split": hashed_split(i, fraction, seed),
                  "start": 0, "end": None} for i, m in enumerate(files)]
        return items, info
    items, info["text_counts"] = [], collections.Counter()
    for i, m in enumerate(files):
        # a file's head and tail each decode it from its start: what decoding changed, and what the
        # text policy finds in the whole file, is counted here, once (on the first part's row)
        n, decoder = count_chars(m.path, keep_crlf)
        if decoder.check.problem and not accept_invalid_text:
            raise not_text(m.path, decoder.check.problem)
        info["text_counts"].update(decoder.counts())
        cut = head_tail_cut(n, fraction)
        parts = ([(TRAIN, 0, cut)] if cut > 0 or n == 0 else []) + ([(VAL, cut, n)] if n > cut else [])
        for k, (split, start, end) in enumerate(parts):  # (an empty file is counted as a skipped document)
            items.append({"kind": "file", "path": m.path, "doc": i, "split": split, "start": start, "end": end,
                          "check": check_features(decoder.check) if k == 0 else None})
    return items, info


# --- Hugging Face datasets -------------------------------------------------------------------------

class DatasetNotLoaded(UserError, FileNotFoundError):
    pass


class RemoteCodeRefused(UserError):
    pass


def load_hf_dataset(cfg: dict):
    """The dataset that cfg names: a local file by extension, a directory saved by save_to_disk, a
    local dataset directory, or a hub name (with config, split, revision and optional streaming).
    A dataset's own loading script runs only with trust_remote_code (RemoteCodeRefused otherwise)."""
    import datasets

    name, split, streaming = cfg["dataset_name"], cfg["dataset_split"], cfg["streaming"]
    trusted = bool(cfg.get("trust_remote_code"))
    refused = RemoteCodeRefused(
        f"dataset_name={name!r} loads itself with a script of its own, which runs only when you allow it: read it, "
        f"then set --trust_remote_code=True (and pin it with --dataset_revision)")
    if not trusted and os.path.isfile(os.path.join(name, os.path.basename(name.rstrip("/")) + ".py")):
        raise refused  # datasets itself runs a script it once ran (by its content) without asking again
    try:
        if os.path.isfile(name):
            builder = DATASET_BUILDERS.get(os.path.splitext(name)[1].lower())
            if builder is None:
                raise ValueError(f"unknown dataset file type (known: {sorted(DATASET_BUILDERS)})")
            return datasets.load_dataset(builder, data_files={split: name}, split=split, streaming=streaming)
        if os.path.isfile(os.path.join(name, "dataset_info.json")) and not streaming:
            ds = datasets.load_from_disk(name)
            return ds[split] if isinstance(ds, datasets.DatasetDict) else ds
        return datasets.load_dataset(name, cfg.get("dataset_config"), split=split, streaming=streaming,
                                     revision=cfg.get("dataset_revision") or None, trust_remote_code=trusted)
    except Exception as e:  # datasets raises DatasetNotFoundError, FileNotFoundError, ValueError...
        if "trust_remote_code" in str(e) and not trusted:
            raise refused from None
        raise DatasetNotLoaded(f"cannot load dataset_name={name!r} (config={cfg.get('dataset_config')!r}, "
                               f"split={split!r}, revision={cfg.get('dataset_revision')!r}): "
                               f"{type(e).__name__}: {' '.join(str(e).split())}") from e


def plan_dataset(cfg: dict, split_method: str, val_fraction: Optional[float], log=print) -> (List[dict], dict):
    if cfg.get("trust_remote_code"):
        log(f"TokenizeText: trust_remote_code=True: dataset_name={cfg['dataset_name']!r} may run a loading script "
            f"of its own (revision {cfg.get('dataset_revision') or 'not pinned: the latest'})")
    ds = load_hf_dataset(cfg)
    columns = ds.column_names
    if columns is not None and cfg["text_column"] not in columns:
        raise ValueError(f"dataset_name={cfg['dataset_name']!r} has no column {cfg['text_column']!r} "
                         f"(columns: {columns})")
    if cfg["streaming"]:  # of unknown length: by hash, unless asked otherwise
        split_method, fraction = choose_split(split_method, None, val_fraction)
        info = {"source": cfg["dataset_name"], "split_method": split_method, "val_fraction": fraction}
        shards = ds.n_shards
        return [{"kind": "stream", "shard": i, "num_shards": shards} for i in range(shards)], info
    rows = len(ds)
    if rows == 0:
        raise ValueError(f"dataset_name={cfg['dataset_name']!r} (split {cfg['dataset_split']!r}) is empty")
    split_method, fraction = choose_split(split_method, rows, val_fraction)
    info = {"source": cfg["dataset_name"], "split_method": split_method, "val_fraction": fraction, "num_rows": rows}
    return [{"kind": "rows", "start": s, "end": min(s + ROWS_PER_ITEM, rows)}
            for s in range(0, rows, ROWS_PER_ITEM)], info


def _dataset_documents(texts: Iterator[tuple], cfg: dict) -> Iterator[Document]:
    for index, value in texts:
        if value is None:  # a missing cell: counted by the caller as a skipped document
            yield Document(index, hashed_split(index, cfg["val_fraction"], cfg["split_seed"]), None, None)
            continue
        decoder = Utf8Decoder()
        text = decode_text(value, decoder)  # a string cell is checked as it is, not normalised
        if cfg["split_method"] != HEAD_TAIL:
            yield Document(index, hashed_split(index, cfg["val_fraction"], cfg["split_seed"]), iter([text]), decoder)
            continue
        cut = head_tail_cut(len(text), cfg["val_fraction"])
        if cut > 0 or not text:
            yield Document(index, TRAIN, iter([text[:cut]]), decoder)
        if len(text) > cut:
            yield Document(index, VAL, iter([text[cut:]]), None if cut > 0 else decoder)


def _row_texts(ds, column: str, start: int, end: int) -> Iterator[tuple]:
    ds = ds.select_columns([column])
    for lo in range(start, end, ROWS_PER_READ):
        batch = ds[lo:min(lo + ROWS_PER_READ, end)][column]
        yield from zip(range(lo, lo + len(batch)), batch)


def _stream_texts(ds, column: str, shard: int, num_shards: int) -> Iterator[tuple]:
    from datasets.distributed import split_dataset_by_node

    # With world_size == n_shards every node reads exactly one of the stream's files.
    part = split_dataset_by_node(ds, rank=shard, world_size=num_shards)
    for row, example in enumerate(part):
        yield shard * STREAM_SHARD_STRIDE + row, example.get(column)


# --- reading a work item ---------------------------------------------------------------------------

def iter_documents(item: dict, cfg: dict, dataset=None) -> Iterator[Document]:
    """The documents of one work item. `dataset` is the worker's already loaded HF dataset."""
    if item["kind"] == "file":
        decoder = Utf8Decoder(cfg.get("keep_crlf", False))
        yield Document(item["doc"], item["split"],
                       read_blocks(item["path"], decoder, item["start"], item["end"]), decoder)
    elif item["kind"] == "rows":
        yield from _dataset_documents(_row_texts(dataset, cfg["text_column"], item["start"], item["end"]), cfg)
    elif item["kind"] == "stream":
        yield from _dataset_documents(
            _stream_texts(dataset, cfg["text_column"], item["shard"], item["num_shards"]), cfg)
    else:
        raise ValueError(f"unknown work item {item!r}")


def document_name(item: dict, index: int, cfg: dict) -> str:
    """How a message names a document: its file, or its row of the dataset."""
    if item["kind"] == "file":
        return item["path"]
    if item["kind"] == "stream":
        return f"row {index % STREAM_SHARD_STRIDE} of shard {item['shard']} of dataset_name={cfg['dataset_name']!r}"
    return f"row {index} of dataset_name={cfg['dataset_name']!r}"


def whole_document_items(items: List[dict]) -> List[dict]:
    """Work items that read each document once and whole (a file cut into a head and a tail is one
    document): what the pass that finds duplicates reads, with iter_whole_documents."""
    return [{**item, "end": None, "check": None} if item["kind"] == "file" else item
            for item in items if item["kind"] != "file" or item["start"] == 0]


def iter_whole_documents(item: dict, cfg: dict, dataset=None) -> Iterator[Document]:
    return iter_documents(item, {**cfg, "split_method": HASH}, dataset)


def num_documents(info: dict) -> Optional[int]:
    """How many documents the plan found (None: a stream, of unknown length)."""
    return info.get("num_files", info.get("num_rows"))
