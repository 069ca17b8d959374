"""Where TokenizeText's documents come from: the sources of corpora, each named by a setting of
TokenizeTextSettings (exactly one is given), each planning the work in the executor and reading an
item's documents in a Beam worker.

To add one: a file here defining a Source (sources/base.py), its entry in SOURCES below, and the
setting that names it (a `setting` field of components/tokenize_text/settings.py).
"""

from __future__ import annotations

from typing import Iterator, List, Optional

from components.tokenize_text.settings import AUTO, HASH, HEAD_TAIL  # noqa: F401  (the split methods)
from components.tokenize_text.sources.base import (  # noqa: F401  (what the sources' users take from here)
    DEFAULT_HASH_VAL_FRACTION, DEFAULT_HEAD_TAIL_VAL_FRACTION, MIN_HASHED_VAL_DOCUMENTS, Document, NotText, Source,
    choose_split, describe_split, fingerprint, hashed_split, head_tail_cut)
from components.tokenize_text.sources.hf_dataset import (  # noqa: F401
    DATASET_BUILDERS, STREAM_SHARD_STRIDE, DatasetNotLoaded, HuggingFaceDataset, RemoteCodeRefused, load_hf_dataset,
    plan_dataset)
from components.tokenize_text.sources.text_files import (  # noqa: F401
    TextFiles, local_text_files, match_text_files, not_text, plan_text_files, read_blocks, why_no_files)
from core.shards import SPLITS, TRAIN, VAL  # noqa: F401  (the sources' users take them from here)

SOURCES = (TextFiles(), HuggingFaceDataset())
SETTINGS = tuple(source.setting for source in SOURCES)  # the settings that name a corpus


def source_of(cfg: dict) -> Source:
    """The source of the corpus that cfg names (TokenizeTextSettings checks that exactly one is named)."""
    return next(source for source in SOURCES if cfg.get(source.setting))


FINGERPRINT_KEY = "input_fingerprint"  # TokenizeText's parameter, recorded on its Examples


def input_fingerprint(cfg: dict) -> Optional[str]:
    """A digest of the corpus' files as they are now (local ones' bytes, remote ones' sizes and update
    times: base.fingerprint), None for a hub dataset. TokenizeText takes it as a parameter, so that a rerun after its data
    changed in place does not take the last run's shards from the cache (in a compiled spec, the
    task orchestration/kubeflow/data_fingerprint.py takes it where and when the spec runs)."""
    return fingerprint(source_of(cfg).files(cfg))


def _reader(item: dict) -> Source:
    for source in SOURCES:
        if item["kind"] in source.kinds:
            return source
    raise ValueError(f"unknown work item {item!r}")


def plan(cfg: dict, log=print):
    """(work items, facts) of the corpus cfg names; raises, naming the input, when it is missing or empty."""
    return source_of(cfg).plan(cfg, log)


def open_for_worker(cfg: dict):
    """What a Beam worker loads once to read the corpus's items (a dataset), or None."""
    return source_of(cfg).open(cfg)


def iter_documents(item: dict, cfg: dict, opened=None) -> Iterator[Document]:
    """The documents of one work item; `opened`: the worker's open_for_worker(cfg)."""
    return _reader(item).documents(item, cfg, opened)


def document_name(item: dict, index: int, cfg: dict) -> str:
    """How a message names a document: its file, or its row of the dataset."""
    return _reader(item).name(item, index, cfg)


def whole_document_items(items: List[dict]) -> List[dict]:
    """Work items that read each document once and whole (a file cut into a head and a tail is one
    document): what the pass that finds duplicates reads, with iter_whole_documents."""
    return [whole for whole in (_reader(item).whole(item) for item in items) if whole is not None]


def iter_whole_documents(item: dict, cfg: dict, opened=None) -> Iterator[Document]:
    return iter_documents(item, {**cfg, "split_method": HASH}, opened)


def num_documents(info: dict) -> Optional[int]:
    """How many documents the plan found (None: a stream, of unknown length)."""
    return info.get("num_files", info.get("num_rows"))
