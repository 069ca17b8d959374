"""What every source of documents shares: a Document, a Source's duties, and the train/val split
(by a keyed hash of a document's index, or each document's head and tail, as nanoGPT splits one text)."""

from __future__ import annotations

import hashlib
import os
from typing import Iterator, List, NamedTuple, Optional, Tuple

from components.tokenize_text.encoding import Utf8Decoder
from components.tokenize_text.settings import AUTO, HASH, HEAD_TAIL
from core import files as files_module, shards
from core.errors import UsageError, UserError
from core.files import is_local
from core.shards import TRAIN, VAL
from training.corpus import NANOGPT_VAL_FRACTION, head_tail_cut

DEFAULT_HASH_VAL_FRACTION = 0.0005  # nanoGPT's OpenWebText hold-out
DEFAULT_HEAD_TAIL_VAL_FRACTION = NANOGPT_VAL_FRACTION
MIN_HASHED_VAL_DOCUMENTS = 20  # split_method auto hashes documents only when val can expect this many


class NotText(UserError, ValueError):
    pass


class Document(NamedTuple):
    index: int  # position in the corpus: the shards' `doc`
    split: str
    blocks: Iterator[str]  # the text, in order, in blocks of any size
    decoder: Optional[Utf8Decoder]  # tells, once blocks are read, whether bytes were replaced


class Source:
    """A kind of corpus. It is named by one setting of TokenizeTextSettings (`setting`), plans the
    work as small JSON-able items (in the executor), and reads an item's documents (in a Beam worker,
    which never holds more than the documents it is tokenizing)."""
    setting: str  # the TokenizeTextSettings field that names a corpus of this source
    kinds: Tuple[str, ...]  # the kinds of the work items it plans (item["kind"])

    def plan(self, cfg: dict, log=print) -> Tuple[List[dict], dict]:
        """(work items, facts: source, split_method, val_fraction, and the source's own counts)."""
        raise NotImplementedError

    def open(self, cfg: dict):
        """What a worker loads once to read items (a dataset), or None."""
        return None

    def documents(self, item: dict, cfg: dict, opened) -> Iterator[Document]:
        raise NotImplementedError

    def name(self, item: dict, index: int, cfg: dict) -> str:
        """How a message names the document `index` of an item."""
        raise NotImplementedError

    def whole(self, item: dict) -> Optional[dict]:
        """The item that reads its documents once and whole (for the pass that finds duplicates), or
        None when another item does (the tail of a document whose head is an item)."""
        return item

    def files(self, cfg: dict) -> Optional[List[Tuple[str, int, float]]]:
        """(path, bytes, modification time) of every file the corpus is read from, listed as it is read
        (a local disk, gs://); None for a corpus without files of its own (a hub dataset, pinned by its
        revision): what `fingerprint` hashes."""
        return None


def fingerprint(files: Optional[List[Tuple[str, int, float]]]) -> Optional[str]:
    """A digest of the files a corpus is read from, which changes when a file is edited, added, removed
    or renamed; None without files to hash. Local files by their paths and contents, read again only
    when their sizes or modification times moved (a `touch`, or a copy or checkout over the same paths
    that keeps the bytes, keeps the digest: TokenizeText stays cached; the same files at other paths
    are another corpus); remote ones (gs://) by their paths, sizes and update times, as listed."""
    if files is None:
        return None
    files = sorted(files)
    lines = "\n".join(f"{path}\t{size}\t{mtime!r}" for path, size, mtime in files)
    listed = hashlib.sha256(lines.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    if not files or not all(is_local(path) for path, _, _ in files):
        return listed
    path = os.path.join(files_module.user_cache_dir(), DIGESTS_FILE)
    try:
        known = files_module.read_json(path, default={})
    except (OSError, ValueError):  # unreadable or damaged: made anew
        known = {}
    if not isinstance(known, dict) or not all(isinstance(v, str) for v in known.values()):
        known = {}
    if listed not in known:
        contents = "\n".join(f"{name}\t{size}\t{_file_sha256(name)}" for name, size, _ in files)
        known = {**dict(list(known.items())[-(DIGESTS_KEPT - 1):]),
                 listed: hashlib.sha256(contents.encode("utf-8", "surrogateescape")).hexdigest()[:16]}
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            files_module.write_json(path, known, sort_keys=False)  # (in order: the oldest go first)
        except OSError:  # a read-only home: read again next time
            pass
    return known[listed]


# listed fingerprint -> content fingerprint of the local corpora this user ran on, the latest DIGESTS_KEPT
DIGESTS_FILE, DIGESTS_KEPT = "corpus_digests.json", 256


def _file_sha256(path: str) -> str:
    try:
        return shards.file_sha256(path)
    except OSError as e:
        raise UserError(f"cannot read {path} of the corpus: {e.strerror or e}") from None


def hashed_split(doc_index: int, val_fraction: float, seed: int) -> str:
    """The split of a document of a corpus: a keyed hash of its index, so the same on every run and
    every runner (Python's hash() is salted per process, so it would not be)."""
    digest = hashlib.blake2b(f"{seed}:{doc_index}".encode(), digest_size=8).digest()
    return VAL if int.from_bytes(digest, "big") / 2.0 ** 64 < val_fraction else TRAIN


def choose_split(split_method: str, num_documents: Optional[int], val_fraction: Optional[float]):
    """(split method, val fraction). auto: whole documents by hash when the val split can expect at
    least MIN_HASHED_VAL_DOCUMENTS of them (an OpenWebText), else each document's tail (one file:
    nanoGPT's 90/10), so that any corpus with text in it gets a non-empty val split."""
    if split_method == AUTO:
        expected = None if num_documents is None else \
            num_documents * (DEFAULT_HASH_VAL_FRACTION if val_fraction is None else val_fraction)
        split_method = HASH if expected is None or expected >= MIN_HASHED_VAL_DOCUMENTS else HEAD_TAIL
    if split_method not in (HEAD_TAIL, HASH):
        raise UsageError(f"unknown split_method {split_method!r}: use {AUTO!r}, {HEAD_TAIL!r} or {HASH!r}")
    default = DEFAULT_HASH_VAL_FRACTION if split_method == HASH else DEFAULT_HEAD_TAIL_VAL_FRACTION
    return split_method, default if val_fraction is None else val_fraction


def describe_split(info: dict) -> str:
    """What the split did, in words, for the run's log."""
    if info["split_method"] == HEAD_TAIL:
        several = info.get("num_files", 1) > 1
        return (f"split head_tail: the last {info['val_fraction']:g} of each document's characters is val "
                f"(nanoGPT's split of {'its one text, made in each of these files' if several else 'one text'})")
    return (f"split hash: each document goes to val with probability {info['val_fraction']:g} "
            f"(a keyed hash of its index)")


def split_text(text: str, index: int, cfg: dict, decoder) -> Iterator[Document]:
    """The documents of one whole text, by cfg's split: all of it to its hashed split, or its head to
    train and its tail to val (the decoder, which tells what was replaced, goes with the first)."""
    if cfg["split_method"] != HEAD_TAIL:
        yield Document(index, hashed_split(index, cfg["val_fraction"], cfg["split_seed"]), iter([text]), decoder)
        return
    cut = head_tail_cut(len(text), cfg["val_fraction"])
    if cut > 0 or not text:
        yield Document(index, TRAIN, iter([text[:cut]]), decoder)
    if len(text) > cut:
        yield Document(index, VAL, iter([text[cut:]]), None if cut > 0 else decoder)
