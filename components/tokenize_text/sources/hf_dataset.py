"""A Hugging Face dataset as a corpus (--dataset_name): a hub name (with its config, split and
revision, streamed or downloaded), a dataset saved with save_to_disk, or a local .jsonl/.json/.parquet/
.csv/.arrow/.txt file; each row's text_column is a document. A map-style dataset: one item per range
of rows, read from the memory-mapped Arrow cache; a streamed one: one item per data file (shard). A
dataset saved with save_to_disk is read from its files, memory-mapped, whatever --streaming says (the
OpenWebText preset streams)."""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Iterator, List, Optional

from components.tokenize_text.encoding import Utf8Decoder, decode_text
from components.tokenize_text.sources.base import Document, Source, choose_split, hashed_split, split_text
from core.errors import UsageError, UserError

ROWS_PER_ITEM = 2000
ROWS_PER_READ = 256
# Rows of a streamed dataset get the document index shard * 2**40 + row: corpus order, unique.
STREAM_SHARD_STRIDE = 1 << 40

# Local files that `datasets` loads with a packaged builder, by extension.
DATASET_BUILDERS = {".parquet": "parquet", ".json": "json", ".jsonl": "json", ".arrow": "arrow",
                    ".txt": "text", ".csv": "csv"}


class DatasetNotLoaded(UserError, FileNotFoundError):
    pass


class RemoteCodeRefused(UserError):
    pass


def load_hf_dataset(cfg: dict):
    """The dataset that cfg names: a local file by extension, a directory saved by save_to_disk, a
    local dataset directory, or a hub name (with config, split, revision and optional streaming).
    A dataset's own loading script runs only with trust_remote_code (RemoteCodeRefused otherwise)."""
    import datasets
    from datasets.exceptions import DatasetGenerationError

    name, split, streaming = cfg["dataset_name"], cfg["dataset_split"], cfg["streaming"]
    trusted = bool(cfg.get("trust_remote_code"))
    refused = RemoteCodeRefused(
        f"dataset_name={name!r} loads itself with a script of its own, which runs only when you allow it: read it, "
        f"then set --trust_remote_code=True (and pin it with --dataset_revision)")
    if not trusted and os.path.isfile(os.path.join(name, os.path.basename(name.rstrip("/")) + ".py")):
        raise refused  # datasets itself runs a script it once ran (by its content) without asking again
    try:
        with _errors_left_to_the_raise():
            return _load(datasets, name, cfg, split, streaming, trusted)
    except Exception as e:  # datasets raises DatasetNotFoundError, FileNotFoundError, ValueError...
        if "trust_remote_code" in str(e) and not trusted:
            raise refused from None
        # a file that does not parse: datasets' DatasetGenerationError says only that, its cause says where
        reason = (e.__cause__ or e) if isinstance(e, DatasetGenerationError) else e
        where = "" if os.path.isfile(name) else (f" (config={cfg.get('dataset_config')!r}, split={split!r}, "
                                                 f"revision={cfg.get('dataset_revision')!r})")
        raise DatasetNotLoaded(f"cannot load dataset_name={name!r}{where}: "
                               f"{type(reason).__name__}: {' '.join(str(reason).split())}") from e


def _load(datasets, name: str, cfg: dict, split: str, streaming: bool, trusted: bool):
    if os.path.isfile(name):
        builder = DATASET_BUILDERS.get(os.path.splitext(name)[1].lower())
        if builder is None:
            raise UsageError(f"unknown dataset file type (known: {sorted(DATASET_BUILDERS)})")
        return datasets.load_dataset(builder, data_files={split: name}, split=split, streaming=streaming)
    if os.path.isfile(os.path.join(name, "dataset_info.json")):  # memory-mapped: streaming or not
        ds = datasets.load_from_disk(name)
        return ds[split] if isinstance(ds, datasets.DatasetDict) else ds
    return datasets.load_dataset(name, cfg.get("dataset_config"), split=split, streaming=streaming,
                                 revision=cfg.get("dataset_revision") or None, trust_remote_code=trusted)


@contextlib.contextmanager
def _errors_left_to_the_raise():
    """datasets logs a failed load's error (twice: through its own handler and the root logger's)
    before it raises it, which load_hf_dataset reports in one line: those records are dropped."""

    class Drop(logging.Filter):
        def filter(self, record):
            return not (record.levelno >= logging.ERROR and record.name.startswith("datasets"))

    drop = Drop()
    handlers = logging.getLogger("datasets").handlers + logging.getLogger().handlers
    for handler in handlers:
        handler.addFilter(drop)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(drop)


def plan_dataset(cfg: dict, split_method: str, val_fraction: Optional[float], log=print) -> (List[dict], dict):
    if cfg.get("trust_remote_code"):
        log(f"TokenizeText: trust_remote_code=True: dataset_name={cfg['dataset_name']!r} may run a loading script "
            f"of its own (revision {cfg.get('dataset_revision') or 'not pinned: the latest'})")
    import datasets

    ds = load_hf_dataset(cfg)
    columns = ds.column_names
    if columns is not None and cfg["text_column"] not in columns:
        raise UsageError(f"dataset_name={cfg['dataset_name']!r} has no column {cfg['text_column']!r} "
                         f"(columns: {columns})")
    if isinstance(ds, datasets.IterableDataset):  # streamed, of unknown length: by hash, unless asked otherwise
        split_method, fraction = choose_split(split_method, None, val_fraction)
        info = {"source": cfg["dataset_name"], "split_method": split_method, "val_fraction": fraction}
        shards = ds.n_shards
        return [{"kind": "stream", "shard": i, "num_shards": shards} for i in range(shards)], info
    rows = len(ds)
    if rows == 0:
        raise UsageError(f"dataset_name={cfg['dataset_name']!r} (split {cfg['dataset_split']!r}) is empty")
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
        yield from split_text(decode_text(value, decoder), index, cfg, decoder)  # a string cell is checked as it is


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


class HuggingFaceDataset(Source):
    setting = "dataset_name"
    kinds = ("rows", "stream")

    def plan(self, cfg: dict, log=print):
        return plan_dataset(cfg, cfg["split_method"], cfg["val_fraction"], log=log)

    def open(self, cfg: dict):
        return load_hf_dataset(cfg)

    def documents(self, item: dict, cfg: dict, opened) -> Iterator[Document]:
        if item["kind"] == "rows":
            return _dataset_documents(_row_texts(opened, cfg["text_column"], item["start"], item["end"]), cfg)
        return _dataset_documents(_stream_texts(opened, cfg["text_column"], item["shard"], item["num_shards"]), cfg)

    def files(self, cfg: dict):
        """A local file's or directory's files (a hub dataset's are the hub's: pin --dataset_revision)."""
        name = cfg["dataset_name"]
        if os.path.isfile(name):
            paths = [os.path.abspath(name)]
        elif os.path.isdir(name):
            paths = sorted(os.path.join(root, f) for root, _, names in os.walk(os.path.abspath(name)) for f in names)
        else:
            return None
        return [(path, status.st_size, status.st_mtime) for path, status in ((p, os.stat(p)) for p in paths)]

    def name(self, item: dict, index: int, cfg: dict) -> str:
        if item["kind"] == "stream":
            return (f"row {index % STREAM_SHARD_STRIDE} (from 0) of shard {item['shard']} of "
                    f"dataset_name={cfg['dataset_name']!r}")
        return f"row {index} (from 0) of dataset_name={cfg['dataset_name']!r}"
