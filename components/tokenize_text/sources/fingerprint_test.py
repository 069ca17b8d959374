"""sources.input_fingerprint: what TokenizeText's cache key holds of its corpus, the same while the
corpus' files are (their bytes: a file touched or copied over with the same is the same), another
when one is edited, added, removed or renamed; None for a hub dataset.
The Examples artifact records it. (Remote files, gs://, are listed through the Beam file systems that
read them, which have no stand-in here.)"""

import json
import os

import datasets

from components.tokenize_text import sources
from components.tokenize_text.executor_test import run_executor

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n" * 40


def _edited(path, text):
    """path rewritten with text, its modification time moved on (a file system's clock may be coarse)."""
    status = os.stat(path)
    path.write_text(text, encoding="utf-8")
    os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns + 1_000_000_000))


def test_text_files_fingerprint_changes_with_their_files_only(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # where the files' digests are kept
    folder = tmp_path / "texts"
    folder.mkdir()
    for name in ("a.txt", "b.txt"):
        (folder / name).write_text(TEXT, encoding="utf-8")
    cfg = {"input_pattern": str(folder)}
    seen = {sources.input_fingerprint(cfg)}
    assert sources.input_fingerprint(cfg) in seen  # unchanged
    _edited(folder / "a.txt", TEXT)  # the same bytes written again (a `touch`, a copy, a checkout): unchanged
    assert sources.input_fingerprint(cfg) in seen
    digests = tmp_path / "cache" / "nanogpt-tfx" / "corpus_digests.json"
    assert len(json.loads(digests.read_text())) == 2  # (the files as listed before and after)
    digests.write_text("[1, 2]")  # damaged: made anew, the same digest
    assert sources.input_fingerprint(cfg) in seen
    _edited(folder / "a.txt", TEXT.upper())  # the same size, another time
    seen.add(sources.input_fingerprint(cfg))
    (folder / "c.txt").write_text(TEXT, encoding="utf-8")
    seen.add(sources.input_fingerprint(cfg))
    os.rename(folder / "c.txt", folder / "d.txt")
    seen.add(sources.input_fingerprint(cfg))
    os.remove(folder / "b.txt")
    seen.add(sources.input_fingerprint(cfg))
    assert len(seen) == 5 and None not in seen
    (folder / "sub").mkdir()  # a subfolder is not read (without DIR/**), so not fingerprinted
    (folder / "sub" / "e.txt").write_text(TEXT, encoding="utf-8")
    assert sources.input_fingerprint(cfg) in seen


def test_a_dataset_fingerprint_is_its_local_files(tmp_path):
    rows = tmp_path / "corpus.jsonl"
    rows.write_text('{"text": "one"}\n', encoding="utf-8")
    saved = tmp_path / "saved"
    datasets.Dataset.from_dict({"text": ["one", "two"]}).save_to_disk(str(saved))
    file_cfg, dir_cfg = {"dataset_name": str(rows)}, {"dataset_name": str(saved)}
    before = sources.input_fingerprint(file_cfg), sources.input_fingerprint(dir_cfg)
    assert None not in before and before == (sources.input_fingerprint(file_cfg), sources.input_fingerprint(dir_cfg))
    _edited(rows, '{"text": "one"}\n{"text": "two"}\n')
    datasets.Dataset.from_dict({"text": ["one", "two", "three"]}).save_to_disk(str(saved))
    assert sources.input_fingerprint(file_cfg) != before[0] and sources.input_fingerprint(dir_cfg) != before[1]
    assert sources.input_fingerprint({"dataset_name": "openwebtext"}) is None  # the hub's: --dataset_revision


def test_the_examples_record_the_fingerprint(tmp_path):
    path = tmp_path / "input.txt"
    path.write_text(TEXT, encoding="utf-8")
    fingerprint = sources.input_fingerprint({"input_pattern": str(path)})
    examples = run_executor(tmp_path / "out", input_pattern=str(path), tokenizer="char", input_fingerprint=fingerprint)
    assert examples.get_string_custom_property("input_fingerprint") == fingerprint
