"""Text files as a corpus (--data, the setting input_pattern): a file, a folder or a glob, local or
anything Beam's FileSystems reads (gs://, ...); each file is a document. One item per file; a file
split 90/10 (head_tail) becomes two items, its head and its tail, read by character offset."""

from __future__ import annotations

import collections
import glob
import os
import re
import shlex
import threading
import warnings
from typing import Any, Iterator, List, Optional

from absl import logging

from components.tokenize_text.encoding import TEXT_CHECK_BYTES, Utf8Decoder, text_file_problem
from components.tokenize_text.settings import HASH
from components.tokenize_text.sources.base import (Document, NotText, Source, choose_split, hashed_split,
                                                   head_tail_cut)
from components.tokenize_text.statistics import check_features
from core.errors import MissingFile, UsageError, UserError
from core.files import is_local
from core.shards import TRAIN, VAL

READ_BLOCK_BYTES = 1 << 20
NO_CREDENTIALS = ("no usable Google Cloud credentials here, so gs:// is read anonymously (public buckets only; "
                  "`gcloud auth application-default login` gives it yours)")
_credentials_found: Optional[bool] = None  # looked up once a process
_credentials_lock = threading.Lock()  # the DirectRunner's worker threads may ask at once


def _filesystems():
    from apache_beam.io.filesystems import FileSystems  # local, gs://, hdfs:// ... alike

    return FileSystems


def gcs_credentials_found() -> bool:
    """Whether Google Cloud's default credentials are found here (google.auth.default(), once a process).

    Beam looks them up itself the first time it touches gs://, and without them retries the lookup four
    times (~26 s, a traceback each in the log) before it reads anonymously. Looked up once here instead:
    without them, one line says what it means and Beam is handed the answer (its credentials: none)."""
    global _credentials_found
    with _credentials_lock:
        if _credentials_found is None:
            import google.auth
            from google.auth.exceptions import DefaultCredentialsError

            try:
                google.auth.default()
                found = True
            except DefaultCredentialsError as e:  # none, or a key file that is not one: Beam goes on anonymously
                found = False
                logging.warning("%s: %s", NO_CREDENTIALS, str(e).split(". ")[0])
                _beam_without_credentials()
            _credentials_found = found
        return _credentials_found


def _beam_without_credentials() -> None:
    """Beam's own record of its credentials lookup filled as Beam fills it when the lookup fails (none),
    so that it does not look them up again; a Beam without that record is left alone, to look them up itself."""
    from apache_beam.internal.gcp import auth

    cache = getattr(auth, "_Credentials", None)
    beam_lock = getattr(cache, "_credentials_lock", None)
    if beam_lock is None or not hasattr(cache, "_credentials_init"):
        return
    with beam_lock:
        if not cache._credentials_init:
            cache._credentials, cache._credentials_init = None, True


def match_text_files(pattern: str) -> List[Any]:
    """The files (Beam FileMetadata, sorted by path) that a path or glob names, hidden ones left out
    (`hidden_files`); MissingFile naming the pattern when there are none."""
    return _matched(pattern)[0]


def hidden_files(pattern: str, paths: List[str]) -> List[str]:
    """The paths a folder or glob matched that are hidden below its fixed part (a name that starts with
    ".": macOS's .DS_Store, an editor's swap file, .git/ under DIR/**), left out as a shell's glob leaves
    them out; none when the pattern's own wildcard part names a hidden one (DIR/.*, DIR/**/.notes), or
    it is a file's own path."""
    return list(filter(_hidden_rule(pattern), paths))


def _hidden_rule(pattern: str):
    """hidden_files' test of one path, worked out once for the pattern."""
    fixed = _fixed_folder(pattern)
    if "/." in "/" + pattern[len(fixed):]:
        return lambda path: False
    return lambda path: path.startswith(fixed) and any(part.startswith(".") for part in path[len(fixed):].split("/"))


def _fixed_folder(pattern: str) -> str:
    """The folder (ending in /) of a pattern's part before its first wildcard: a folder's own path."""
    fixed = re.split(r"[*?\[]", pattern, maxsplit=1)[0]
    if fixed == pattern and is_local(pattern) and os.path.isdir(pattern):
        fixed = pattern.rstrip("/") + "/"  # a folder: DIR/*
    return fixed[:fixed.rfind("/") + 1]


def glob_regex(pattern: str) -> "re.Pattern":
    """A glob as Beam's FileSystems.match reads it: * and ? within one folder, ** across folders
    (DIR/**/*.txt needs a subfolder; DIR/**.txt does not), [...] one character of a class."""
    out, i = [], 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[" and "]" in pattern[i + 2:]:
            end = pattern.index("]", i + 2)
            inside = pattern[i + 1:end]
            inside = ("^" + inside[1:] if inside.startswith("!") else inside).replace("\\", "\\\\").replace("[", "\\[")
            out.append("[" + inside + "]")
            i = end + 1
            continue
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile("".join(out))


def local_text_files(pattern: str) -> Iterator[str]:
    """The files a local path, folder or glob names, as match_text_files finds them (Beam's rule,
    hidden ones left out), found one at a time without Beam: for a check before the pipeline runs."""
    if os.path.isfile(pattern):
        yield pattern
        return
    # a folder is its files, "[draft]/" too
    pattern = glob.escape(os.path.abspath(pattern)) + "/*" if os.path.isdir(pattern) else os.path.abspath(pattern)
    root = _fixed_folder(pattern)
    wanted, hidden = glob_regex(pattern), _hidden_rule(pattern)
    depth = None if "**" in pattern else pattern[len(root):].count("/")  # how deep a * pattern reaches
    for folder, subfolders, names in os.walk(root):
        below = os.path.relpath(folder, root)
        if depth is not None and (0 if below == "." else below.count("/") + 1) >= depth:
            subfolders.clear()  # its files are as deep as the pattern reaches
        for name in names:
            path = os.path.join(folder, name)
            if wanted.fullmatch(path) and not hidden(path):
                yield path


def why_no_files(pattern: str) -> str:
    """What a local folder that names no files holds instead, in words ("" for anything else): its
    subfolders, with the glob that reads them, and hidden files, with the glob that names them."""
    if not is_local(pattern) or not os.path.isdir(pattern):
        return ""
    subfolders = _subfolders(pattern)
    hidden = sum(e.name.startswith(".") and not _is_dir(e) for e in os.scandir(pattern))
    return "; ".join(([f"{subfolders} subfolder(s): {read_subfolders(pattern)}"] if subfolders else []) + (
        [f"{hidden} hidden file(s) (a name starting with '.'): --data='{pattern.rstrip('/')}/.*' names them"]
        if hidden else []))


def read_subfolders(folder: str) -> str:
    return f"--data='{folder.rstrip('/')}/**' reads the files in them"


def _matched(pattern: str) -> (List[Any], int):
    """(match_text_files(pattern), how many hidden files it left out)."""
    filesystems = _filesystems()
    anonymous = pattern.startswith("gs://") and not gcs_credentials_found()
    original = pattern
    if is_local(pattern) and os.path.exists(pattern):  # a path that exists is itself, "[draft].txt" too
        pattern = glob.escape(pattern)
    if pattern.endswith("/") or (is_local(original) and os.path.isdir(original)):
        pattern = filesystems.join(pattern, "*")  # a folder: the files in it
    try:
        with warnings.catch_warnings():  # Python's re on the regex Beam makes of an escaped "[[]"
            warnings.filterwarnings("ignore", "Possible nested set", FutureWarning)
            metadata = filesystems.match([pattern])[0].metadata_list
    except Exception as e:  # Beam raises BeamIOError for a missing non-glob path, or one it cannot list
        what = "no such file" if is_local(pattern) else "not found, or not listed from here"
        raise MissingFile(f"input_pattern {pattern!r}: {what} ({e}){'; ' + NO_CREDENTIALS if anonymous else ''}"
                          ) from None
    files = sorted((m for m in metadata if not os.path.isdir(m.path)), key=lambda m: m.path)
    hidden = set(hidden_files(original, [m.path for m in files]))
    files = [m for m in files if m.path not in hidden]
    for m in files if is_local(original) else ():
        kind = _special_file(m.path)
        if kind:  # reading it would wait for a writer, or read without end
            glob_without = _glob_without(m.path, files) if len(files) > 1 else ""
            raise UsageError(f"input {m.path} is {kind}, not a regular file: leave it out"
                             + (f" (e.g. --data='{glob_without}')" if glob_without else ""))
    if not files:
        why = why_no_files(original) or (f"{len(hidden)} hidden file(s) (a name starting with '.') left out"
                                         if hidden else "")
        raise MissingFile(f"input_pattern {original!r} matches no files" + (f": {why}" if why else ""))
    return files, len(hidden)


def _special_file(path: str) -> Optional[str]:
    """What a local path is when it is not a regular file's (a named pipe, a socket, a device), else None."""
    import stat

    mode = os.stat(path).st_mode
    for test, kind in ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return kind
    return None


def broken_links(pattern: str) -> List[str]:
    """The symbolic links a local path, folder or glob names whose target is gone (Beam's match leaves
    them out), so that a run can say it read without them."""
    if not is_local(pattern):
        return []
    return sorted(path for path in local_text_files(pattern) if os.path.islink(path) and not os.path.exists(path))


def _subfolders(pattern: str) -> int:
    """The folders directly in `pattern` when it names a local folder (0 otherwise)."""
    if not is_local(pattern) or not os.path.isdir(pattern):
        return 0
    return sum(1 for entry in os.scandir(pattern) if _is_dir(entry) and not entry.name.startswith("."))


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:  # a symbolic link in a loop: no folder (broken_links names it)
        return False


def not_text(name: str, problem: str, refused: int = 1, glob: str = "") -> NotText:
    """The error that refuses a document the text policy refuses (encoding.TextCheck), naming it
    (glob: a --data that would leave it out, for a file among others)."""
    more = f" ({refused - 1} more documents refused)" if refused > 1 else ""
    leave_out = f", leave it out (e.g. --data='{glob}')" if glob else ""
    return NotText(f"{name} is not UTF-8 text: {problem}{more}; convert it to UTF-8 (e.g. iconv -t UTF-8){leave_out}, "
                   f"or set accept_invalid_text=True to tokenize it anyway with invalid bytes replaced")


# what nanoGPT's data/*/prepare.py writes: token ids, which training.train's --data_dir reads
NANOGPT_PREPARED = ("train.bin", "val.bin", "meta.pkl")


def check_text_files(files: List[Any]) -> None:
    """Refuse, naming it, the first file whose first bytes are not UTF-8 text (encoding.text_file_problem):
    before any work; the whole of each document is checked as it is read."""
    for m in files:
        problem = _head_problem(m.path)
        if problem:
            folder, listed = os.path.dirname(m.path), {o.path for o in files}
            if os.path.basename(m.path) in NANOGPT_PREPARED and any(
                    os.path.join(folder, name) in listed for name in NANOGPT_PREPARED[:2]):
                raise NotText(f"{folder} holds nanoGPT's prepared data ({', '.join(NANOGPT_PREPARED)}: token ids, not "
                              f"text): `python -m training.train --data_dir={shlex.quote(folder)}` trains on it; "
                              f"--data reads text")
            raise not_text(m.path, problem, glob=_glob_without(m.path, files))


def _head_problem(path: str) -> Optional[str]:
    try:
        with _filesystems().open(path) as f:
            return text_file_problem(f.read(TEXT_CHECK_BYTES))
    except OSError as e:  # unreadable (its permissions), where the listing found it
        raise UserError(f"cannot read {path} of the corpus: {e.strerror or e}") from None


def _glob_without(path: str, files: List[Any], looked_at: int = 20) -> str:
    """A glob of the most common extension of the other files in path's folder, when path's own
    extension is another one and the first `looked_at` of those files are text ("": none; a glob of a
    rarer extension would leave out most of the corpus)."""
    folder, extension = os.path.split(path)[0], os.path.splitext(path)[1]
    others = collections.Counter(os.path.splitext(m.path)[1] for m in files
                                 if os.path.dirname(m.path) == folder and m.path != path)
    common = others.most_common(1)
    if not common or common[0][0] in ("", extension):
        return ""
    suggested = f"{folder}/*{common[0][0]}"
    matching = [m.path for m in files if os.path.dirname(m.path) == folder and m.path.endswith(common[0][0])
                and not (is_local(m.path) and _special_file(m.path))]  # (a named pipe's read would wait)
    return "" if any(_head_problem(p) for p in matching[:looked_at]) else suggested


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


def plan_text_files(pattern: str, split_method: str, val_fraction: Optional[float], seed: int,
                    accept_invalid_text: bool = False, keep_crlf: bool = False) -> (List[dict], dict):
    files, hidden = _matched(pattern)
    if not accept_invalid_text:
        check_text_files(files)
    if all(m.size_in_bytes == 0 for m in files):
        raise UsageError(f"input_pattern {pattern!r}: the corpus is empty "
                         f"({len(files)} file(s), all of 0 bytes)")
    split_method, fraction = choose_split(split_method, len(files), val_fraction)
    info = {"source": pattern, "num_files": len(files), "split_method": split_method, "val_fraction": fraction}
    subfolders = _subfolders(pattern)
    notes = [f"{hidden} hidden file(s) left out (names starting with '.')"] if hidden else []
    broken = broken_links(pattern)
    if broken:
        more = ", ..." if len(broken) > 1 else ""
        notes.append(f"{len(broken)} symbolic link(s) to nothing left out ({broken[0]}{more})")
    if subfolders:  # a folder is its own files: said, so that a corpus in subfolders is not read in part unawares
        notes.append(f"its {subfolders} subfolder(s) not read: {read_subfolders(pattern)} too")
    if notes:
        info["note"] = "; ".join(notes)
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


class TextFiles(Source):
    setting = "input_pattern"
    kinds = ("file",)

    def plan(self, cfg: dict, log=print):
        return plan_text_files(cfg["input_pattern"], cfg["split_method"], cfg["val_fraction"], cfg["split_seed"],
                               cfg["accept_invalid_text"], cfg["keep_crlf"])

    def documents(self, item: dict, cfg: dict, opened) -> Iterator[Document]:
        decoder = Utf8Decoder(cfg.get("keep_crlf", False))
        yield Document(item["doc"], item["split"], read_blocks(item["path"], decoder, item["start"], item["end"]),
                       decoder)

    def name(self, item: dict, index: int, cfg: dict) -> str:
        return item["path"]

    def whole(self, item: dict) -> Optional[dict]:
        return {**item, "end": None, "check": None} if item["start"] == 0 else None

    def files(self, cfg: dict):
        # listed where the corpus is read (gs:// too: its objects' sizes and update times)
        return [(m.path, m.size_in_bytes, m.last_updated_in_seconds) for m in match_text_files(cfg["input_pattern"])]
