"""TokenizeText's executor on Beam's DirectRunner, on real files: exact Shakespeare counts, document
corpora from text files and `datasets` files, determinism across runners, and bad input."""

import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
from tfx.dsl.components.base import base_beam_executor
from tfx.types import artifact_utils, standard_artifacts

from components.tokenize_text import beam_ops, sources
from components.tokenize_text.executor import Executor
from components.tokenize_text.settings import TokenizeTextSettings
from components.tokenize_text.sources.base import NotText
from core import shards
from core.errors import DiskFull, MissingFile, UsageError, UserError
from model.tokenizer import GPT2Tokenizer

EOT = GPT2Tokenizer.eot_token
MULTI_PROCESS = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]


@pytest.fixture(scope="module")
def bpe(bpe_dir):
    return GPT2Tokenizer(bpe_dir)


def run_executor(out_dir, beam_args=(), statistics=False, input_fingerprint=None, **props):
    """The executor's Examples artifact; with statistics, (examples, its ExampleStatistics artifact)."""
    examples = standard_artifacts.Examples()
    examples.uri = str(out_dir)
    os.makedirs(examples.uri, exist_ok=True)
    outputs = {"examples": [examples]}
    if statistics:
        outputs["statistics"] = [standard_artifacts.ExampleStatistics()]
        outputs["statistics"][0].uri = f"{out_dir}_statistics"
    context = base_beam_executor.BaseBeamExecutor.Context(
        beam_pipeline_args=list(beam_args), tmp_dir=os.path.join(str(out_dir), ".tmp"))
    settings = TokenizeTextSettings(**{"tokenizer": "gpt2", **props}).to_json()
    Executor(context).Do({}, outputs, {"settings": settings, "input_fingerprint": input_fingerprint})
    return (examples, outputs["statistics"][0]) if statistics else examples


def prop(examples, key):
    return examples.get_custom_property(key)


def chunks_by_doc(examples, split):
    """{doc: tokens} from the split's shards, each document's chunks joined in pos order."""
    chunks = [(int(c[shards.DOC]), int(c[shards.POS]), c[shards.TOKENS].numpy())
              for c in shards.chunk_dataset(shards.split_dir(examples.uri, split))]
    docs = {}
    for doc, pos, tokens in sorted(chunks, key=lambda c: c[:2]):
        docs.setdefault(doc, []).append((pos, tokens))
    for doc, parts in docs.items():
        assert [p for p, _ in parts] == list(range(len(parts))), "positions are consecutive"
        docs[doc] = np.concatenate([t for _, t in parts]).tolist()
    return docs


def read_text_stream(examples, split):
    spec = {"text": tf.io.FixedLenFeature([], tf.string), shards.DOC: tf.io.FixedLenFeature([], tf.int64),
            shards.POS: tf.io.FixedLenFeature([], tf.int64)}
    files = shards.shard_files(shards.split_dir(examples.uri, split))
    records = [tf.io.parse_single_example(r, spec)
               for r in tf.data.TFRecordDataset(files, compression_type=shards.COMPRESSION)]
    records.sort(key=lambda r: (int(r[shards.DOC]), int(r[shards.POS])))
    return "".join(r["text"].numpy().decode("utf-8") for r in records)


def test_shakespeare_gpt2_gives_nanogpt_counts_and_tiktoken_tokens(tmp_path, shared_data, bpe_dir, bpe,
                                                                     shakespeare_text):
    examples = run_executor(tmp_path, input_pattern=os.path.join(shared_data, "tinyshakespeare.txt"),
                            tokenizer="gpt2", bpe_dir=bpe_dir)
    assert artifact_utils.decode_split_names(examples.split_names) == ["train", "val"]
    assert prop(examples, "num_tokens_train") == 301_966
    assert prop(examples, "num_tokens_val") == 36_059
    cut = int(len(shakespeare_text) * 0.9)
    # No end-of-text token for a single text file, as nanoGPT's shakespeare/prepare.py.
    assert shards.read_token_stream(shards.split_dir(examples.uri, "train")).tolist() == \
        bpe.encode(shakespeare_text[:cut])
    assert shards.read_token_stream(shards.split_dir(examples.uri, "val")).tolist() == \
        bpe.encode(shakespeare_text[cut:])
    assert (prop(examples, "tokenizer"), prop(examples, "vocab_size"), prop(examples, "eot_token")) == \
        ("gpt2", 50257, EOT)
    assert (prop(examples, "split_method"), prop(examples, "append_eot")) == ("head_tail", 0)
    assert [prop(examples, f"num_documents{s}") for s in ("", "_train", "_val")] == [1, 1, 1]
    assert prop(examples, "num_records_train") == -(-301_966 // shards.DEFAULT_CHUNK_SIZE)
    assert not [n for n in os.listdir(examples.uri) if n.startswith("_staging")]


def test_a_single_100_mb_document_goes_through_exactly(tmp_path, bpe_dir, bpe, shakespeare_text):
    """A 100 MB text file: one document per split that the workers encode piece by piece (its peak
    memory is BENCHMARKS.md's, measured by bench/bench_tokenize.py --huge_document_mb 100)."""
    copies = -(-100_000_000 // (len(shakespeare_text) + 8))
    text = "".join(f"{shakespeare_text}\n{i}\n" for i in range(copies))
    path = tmp_path / "huge.txt"
    path.write_text(text, encoding="utf-8")
    examples = run_executor(tmp_path / "out", input_pattern=str(path), tokenizer="gpt2", bpe_dir=bpe_dir)
    cut = int(len(text) * 0.9)
    for split, part in (("train", text[:cut]), ("val", text[cut:])):
        expected = bpe.encoding.encode_to_numpy(part)
        assert prop(examples, f"num_tokens_{split}") == len(expected)
        assert np.array_equal(shards.read_token_stream(shards.split_dir(examples.uri, split)), expected)


def test_shakespeare_characters_give_nanogpt_counts(tmp_path, shared_data, shakespeare_text):
    examples = run_executor(tmp_path, input_pattern=os.path.join(shared_data, "tinyshakespeare.txt"),
                            tokenizer="char", chunk_size=4096)
    assert prop(examples, "num_tokens_train") == 1_003_854
    assert prop(examples, "num_tokens_val") == 111_540
    assert prop(examples, "vocab_size") == 65
    assert prop(examples, "record_feature") == "text"
    assert read_text_stream(examples, "train") + read_text_stream(examples, "val") == shakespeare_text


@pytest.fixture(scope="module")
def text_corpus(tmp_path_factory, shakespeare_text):
    """A directory of documents: paragraphs, one empty file, one with invalid UTF-8, and one 2 MB
    document that must go through in many pieces."""
    corpus = tmp_path_factory.mktemp("corpus")
    paragraphs = [p for p in shakespeare_text.split("\n\n") if p][:40]
    texts = {f"doc{i:03d}.txt": p.encode() for i, p in enumerate(paragraphs)}
    texts["doc005.txt"] = b""
    texts["doc007.txt"] = "caf\u00e9 ".encode() + b"\xc3\x28 bad\xff bytes"
    texts["doc009.txt"] = (shakespeare_text * 2).encode()
    for name, data in texts.items():
        (corpus / name).write_bytes(data)
    return corpus, [texts[n] for n in sorted(texts)]


def test_document_corpus_is_hash_split_with_eot_and_pieces_exact(tmp_path, text_corpus, bpe_dir, bpe):
    corpus, raw = text_corpus
    props = dict(input_pattern=str(corpus / "*.txt"), tokenizer="gpt2", bpe_dir=bpe_dir, val_fraction=0.2,
                 split_method="hash", split_seed=7, chunk_size=1000, max_piece_chars=4096,
                 accept_invalid_text=True)  # doc007.txt: 2 invalid sequences in 19 bytes, refused by default
    examples = run_executor(tmp_path / "a", **props)

    expected = {sources.TRAIN: {}, sources.VAL: {}}
    for doc, data in enumerate(raw):
        if data:
            text = data.decode("utf-8", errors="replace")
            expected[sources.hashed_split(doc, 0.2, 7)][doc] = bpe.encode(text) + [EOT]
    assert expected[sources.VAL] and expected[sources.TRAIN]
    for split in sources.SPLITS:
        assert chunks_by_doc(examples, split) == expected[split]
        assert prop(examples, f"num_tokens_{split}") == sum(map(len, expected[split].values()))
        assert prop(examples, f"num_documents_{split}") == len(expected[split])
    assert prop(examples, "num_documents") == len(raw) - 1
    assert (prop(examples, "num_skipped_documents"), prop(examples, "skipped_empty")) == (1, 1)
    assert prop(examples, "invalid_utf8_documents") == 1
    assert (prop(examples, "split_method"), prop(examples, "append_eot")) == ("hash", 1)
    with open(os.path.join(examples.uri, beam_ops.STATS_FILE)) as f:
        assert json.load(f)["num_tokens_val"] == prop(examples, "num_tokens_val")

    # Another runner mode (two worker processes) and shard count: the same documents in each split.
    again = run_executor(tmp_path / "b", beam_args=MULTI_PROCESS, num_shards=3, **props)
    for split in sources.SPLITS:
        assert len(shards.shard_files(shards.split_dir(again.uri, split))) == 3
        assert chunks_by_doc(again, split) == expected[split]


def _write_dataset(path, texts):
    import datasets

    ds = datasets.Dataset.from_dict({"text": texts, "id": list(range(len(texts)))})
    if path.endswith(".parquet"):
        ds.to_parquet(path)
    else:
        ds.to_json(path, lines=True)
    return path


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))


def _dataset_expected(bpe, texts, val_fraction, seed, index=lambda row: row):
    expected = {sources.TRAIN: {}, sources.VAL: {}}
    for row, text in enumerate(texts):
        if text:
            doc = index(row)
            expected[sources.hashed_split(doc, val_fraction, seed)][doc] = bpe.encode(text) + [EOT]
    return expected


def test_local_parquet_dataset(tmp_path, hf_cache, shakespeare_text, bpe_dir, bpe, capfd):
    texts = [p for p in shakespeare_text.split("\n\n")][:60]
    texts[3], texts[4] = None, ""
    path = _write_dataset(str(tmp_path / "corpus.parquet"), texts)
    examples = run_executor(tmp_path / "out", dataset_name=path, tokenizer="gpt2", bpe_dir=bpe_dir,
                            val_fraction=0.25, split_method="hash", chunk_size=64)
    expected = _dataset_expected(bpe, texts, 0.25, 0)
    for split in sources.SPLITS:
        assert chunks_by_doc(examples, split) == expected[split]
    assert prop(examples, "skipped_missing_text") == 1 and prop(examples, "skipped_empty") == 1
    assert prop(examples, "num_documents") == 58
    assert capfd.readouterr().out.rstrip().endswith("2 documents skipped (1 without text, 1 empty)")


def test_local_json_dataset_streamed(tmp_path, hf_cache, shakespeare_text, bpe_dir, bpe):
    texts = [p for p in shakespeare_text.split("\n\n")][100:150]
    path = _write_dataset(str(tmp_path / "corpus.jsonl"), texts)
    examples = run_executor(tmp_path / "out", dataset_name=path, tokenizer="gpt2", bpe_dir=bpe_dir,
                            val_fraction=0.25, streaming=True)
    # One data file, so one stream shard: documents are numbered shard * 2**40 + row.
    expected = _dataset_expected(bpe, texts, 0.25, 0, index=lambda row: 0 * sources.STREAM_SHARD_STRIDE + row)
    for split in sources.SPLITS:
        assert chunks_by_doc(examples, split) == expected[split]


def _assert_fails_cleanly(out_dir, error, match, **props):
    with pytest.raises(error, match=match):
        run_executor(out_dir, **props)
    assert not [n for n in os.listdir(out_dir) if n.startswith(("Split-", "_staging"))]


def test_a_named_pipe_in_the_folder_is_refused_and_a_link_to_nothing_said(tmp_path, hf_cache, caplog):
    """A FIFO among the files hung the run for ever (its read waits for a writer); a symbolic link to
    nothing was left out without a word."""
    import logging

    caplog.set_level(logging.INFO, logger="absl")
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "a.txt").write_text("the text of a\n" * 20)
    (folder / "gone.txt").symlink_to(tmp_path / "nowhere.txt")
    examples = run_executor(tmp_path / "out", input_pattern=str(folder), tokenizer="char")
    assert prop(examples, "num_documents") == 1
    assert f"(1 file, 1 symbolic link(s) to nothing left out ({folder}/gone.txt)); " in caplog.text
    (folder / "loop1.txt").symlink_to(folder / "loop2.txt")  # a loop: no file, no folder (was a traceback)
    (folder / "loop2.txt").symlink_to(folder / "loop1.txt")
    examples = run_executor(tmp_path / "loop", input_pattern=str(folder), tokenizer="char")
    assert prop(examples, "num_documents") == 1
    assert f"(1 file, 3 symbolic link(s) to nothing left out ({folder}/gone.txt, ...)); " in caplog.text
    os.mkfifo(folder / "pipe.txt")
    _assert_fails_cleanly(tmp_path / "fifo", UsageError, rf"^input {folder}/pipe.txt is a named pipe \(FIFO\), not "
                          rf"a regular file: leave it out$", input_pattern=str(folder), tokenizer="char")
    os.remove(folder / "pipe.txt")
    (folder / "mem.txt").symlink_to("/proc/self/mem")  # listed, unreadable (as a file without read permission)
    _assert_fails_cleanly(tmp_path / "unreadable", UserError, rf"^cannot read {folder}/mem.txt of the corpus: ",
                          input_pattern=str(folder), tokenizer="char")


def test_missing_inputs_are_named(tmp_path, hf_cache):
    missing = str(tmp_path / "no_such.txt")
    _assert_fails_cleanly(tmp_path / "a", MissingFile, "no_such.txt", input_pattern=missing, tokenizer="gpt2")
    pattern = str(tmp_path / "nothing" / "*.txt")
    _assert_fails_cleanly(tmp_path / "b", MissingFile, r"nothing/\*\.txt", input_pattern=pattern,
                          tokenizer="char")
    (tmp_path / "deeper" / "books").mkdir(parents=True)  # files in its subfolders alone: the glob that reads them
    (tmp_path / "deeper" / ".notes").write_text("a note")
    (tmp_path / "deeper" / "books" / "a.txt").write_text("a book")
    _assert_fails_cleanly(tmp_path / "b2", MissingFile, rf"matches no files: 1 subfolder\(s\): --data='{tmp_path}/"
                          rf"deeper/\*\*' reads the files in them; 1 hidden file\(s\) \(a name starting with '\.'\): "
                          rf"--data='{tmp_path}/deeper/\.\*' names them$", input_pattern=str(tmp_path / "deeper"),
                          tokenizer="char")
    _assert_fails_cleanly(tmp_path / "c", FileNotFoundError, "no_such_dataset", tokenizer="gpt2",
                          dataset_name=str(tmp_path / "no_such_dataset"))
    # a path of a file system that cannot be listed from here (no such bucket, no credentials or network)
    _assert_fails_cleanly(tmp_path / "d", MissingFile, r"^input_pattern 'ram://nowhere/x\.txt': not found, or not "
                          r"listed from here \(", input_pattern="ram://nowhere/x.txt", tokenizer="char")


def test_empty_corpora_fail_naming_the_input(tmp_path, hf_cache, bpe_dir):
    (tmp_path / "empty").mkdir()
    for name in ("a.txt", "b.txt"):
        (tmp_path / "empty" / name).write_bytes(b"")
    _assert_fails_cleanly(tmp_path / "a", UsageError, "empty/.*empty", input_pattern=str(tmp_path / "empty" / "*"),
                          tokenizer="gpt2", bpe_dir=bpe_dir)
    # Empty documents only come to light while tokenizing: the pipeline runs, then the output is dropped.
    path = _write_dataset(str(tmp_path / "blank.parquet"), ["", None, ""])
    _assert_fails_cleanly(tmp_path / "b", UsageError, "blank.parquet.*no non-empty documents.*2 empty",
                          dataset_name=path, tokenizer="gpt2", bpe_dir=bpe_dir)
    # Too few documents for the default 0.0005 hold-out of a hash split: val would be empty.
    few = _write_dataset(str(tmp_path / "few.parquet"), ["one", "two", "three"])
    _assert_fails_cleanly(tmp_path / "c", UsageError, r"few.parquet.*val split is empty \(3 documents\): "
                          r"--split_method=head_tail splits each document, or set a larger --val_fraction$",
                          dataset_name=few, tokenizer="gpt2", bpe_dir=bpe_dir, split_method="hash")


def test_small_corpora_split_each_document_so_val_is_never_empty(tmp_path, hf_cache):
    """split_method auto: a few files, or a few rows, are each split 90/10 by characters (a hash of
    so few documents would leave val empty); a folder names its files."""
    folder = tmp_path / "folder"
    folder.mkdir()
    texts = ["abcdefghij" * 3, "klmnopqrst" * 2, "uv"]
    for i, text in enumerate(texts):
        (folder / f"{i}.txt").write_text(text)
    examples = run_executor(tmp_path / "files", input_pattern=str(folder), tokenizer="char")
    assert (prop(examples, "split_method"), prop(examples, "val_fraction")) == ("head_tail", 0.1)
    cuts = [int(len(t) * 0.9) for t in texts]
    assert read_text_stream(examples, "train") == "".join(t[:c] for t, c in zip(texts, cuts))
    assert read_text_stream(examples, "val") == "".join(t[c:] for t, c in zip(texts, cuts))
    # each file has a part in each split, and is one document
    assert [prop(examples, f"num_documents{s}") for s in ("", "_train", "_val")] == [3, 3, 3]

    few = _write_dataset(str(tmp_path / "few.parquet"), texts)
    examples = run_executor(tmp_path / "rows", dataset_name=few, tokenizer="char", val_fraction=0.5)
    assert prop(examples, "split_method") == "head_tail"
    assert read_text_stream(examples, "val") == "".join(t[int(len(t) * 0.5):] for t in texts)
    assert [prop(examples, f"num_documents{s}") for s in ("", "_train", "_val")] == [3, 3, 3]


def test_a_folder_is_its_own_files_and_the_log_names_its_subfolders(tmp_path, hf_cache, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="absl")
    for path in ("corpus/top.txt", "corpus/books/a.txt", "corpus/plays/b.txt", "corpus/.git/HEAD"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(f"the text of {path}\n" * 20)
    (tmp_path / "corpus" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1" + bytes(range(256)))  # macOS's, binary
    folder = str(tmp_path / "corpus")
    examples = run_executor(tmp_path / "out", input_pattern=folder, tokenizer="char")
    assert prop(examples, "num_documents") == 1  # top.txt
    assert f"TokenizeText: {folder} (1 file, 1 hidden file(s) left out (names starting with '.'); its 2 " \
           f"subfolder(s) not read: --data='{folder}/**' reads the files in them too); " in caplog.text
    # hidden files and folders are left out below the glob too (.git/HEAD, .DS_Store), as a shell's glob leaves them
    examples = run_executor(tmp_path / "all", input_pattern=f"{folder}/**", tokenizer="char")
    assert prop(examples, "num_documents") == 3
    assert "2 hidden file(s) left out" in caplog.text
    # named, a hidden file is read (and refused here: it is not text)
    _assert_fails_cleanly(tmp_path / "named", NotText, ".DS_Store is not UTF-8 text",
                          input_pattern=f"{folder}/.DS_Store", tokenizer="char")


def test_gzip_and_bzip2_files_are_read_decompressed(tmp_path, hf_cache):
    import bz2
    import gzip

    texts = ["".join(f"line {i} of {name}\n" for i in range(400)) for name in ("one", "two")]
    (tmp_path / "plain").mkdir()
    (tmp_path / "packed").mkdir()
    for name, text, compress in (("a.txt", texts[0], gzip.compress), ("b.txt", texts[1], bz2.compress)):
        (tmp_path / "plain" / name).write_text(text)
        (tmp_path / "packed" / f"{name}.{'gz' if compress is gzip.compress else 'bz2'}").write_bytes(
            compress(text.encode()))
    plain = run_executor(tmp_path / "out_plain", input_pattern=str(tmp_path / "plain"), tokenizer="char")
    packed = run_executor(tmp_path / "out_packed", input_pattern=str(tmp_path / "packed"), tokenizer="char")
    assert prop(packed, "num_documents") == 2
    for split in ("train", "val"):
        assert read_text_stream(packed, split) == read_text_stream(plain, split)


def test_progress_is_logged_while_tokenizing(caplog):
    import logging

    caplog.set_level(logging.INFO, logger="absl")
    progress = beam_ops.Progress(every=0.0)
    progress.add(100)
    progress.add(50)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("TokenizeText: 1 document, 100 tokens so far (") and "tokens/s)" in lines[0]
    assert lines[1].startswith("TokenizeText: 2 documents, 150 tokens so far")
    quiet = beam_ops.Progress()  # at most every PROGRESS_SECONDS
    quiet.add(5)
    assert len(caplog.records) == 2


def test_missing_text_column_is_named(tmp_path, hf_cache):
    path = _write_dataset(str(tmp_path / "corpus.parquet"), ["some text"])
    _assert_fails_cleanly(tmp_path / "out", ValueError, "no column 'body'", dataset_name=path,
                          text_column="body", tokenizer="gpt2")


# streaming (the OpenWebText preset's): read from disk all the same
@pytest.mark.parametrize("streaming", [False, True])
def test_dataset_saved_to_disk_with_characters(tmp_path, hf_cache, streaming):
    import datasets

    texts = ["first document\n", "", "second, with é\n", "third"] * 5
    datasets.Dataset.from_dict({"body": texts}).save_to_disk(str(tmp_path / "saved"))
    examples = run_executor(tmp_path / "out", dataset_name=str(tmp_path / "saved"), text_column="body",
                            tokenizer="char", val_fraction=0.3, split_method="hash", chunk_size=4, streaming=streaming)
    kept = sorted({t: i for i, t in reversed(list(enumerate(texts))) if t}.values())  # the first of each text
    assert prop(examples, "num_tokens_train") + prop(examples, "num_tokens_val") == sum(len(texts[i]) for i in kept)
    assert prop(examples, "duplicate_documents") == 12  # empty ones are skipped, not duplicates
    assert prop(examples, "skipped_empty") == 5 and prop(examples, "append_eot") == 0
    assert prop(examples, "vocab_size") == len(set("".join(texts)))
    val_text = "".join(texts[i] for i in kept if sources.hashed_split(i, 0.3, 0) == sources.VAL)
    assert read_text_stream(examples, "val") == val_text


def _split_files(out_dir):
    """{Split-x/name: bytes} of an output's shards."""
    return {os.path.join(split, name): open(os.path.join(out_dir, split, name), "rb").read()
            for split in sorted(os.listdir(out_dir)) if split.startswith("Split-")
            for name in sorted(os.listdir(os.path.join(out_dir, split)))}


@pytest.mark.parametrize("num_shards", [0, 1])  # the bundles' own shard files; Beam's sink
def test_a_full_disk_while_writing_shards_is_one_line_and_the_rerun_completes(tmp_path, small_disk,
                                                                             shakespeare_text, num_shards):
    """The shards (~90 KB of GZIP'd text records) no longer fit in what a filler file leaves free."""
    text = tmp_path / "input.txt"
    text.write_text(shakespeare_text[:200_000], encoding="utf-8")
    # one text: its head and tail are one work item each, so either way each split is one file
    settings = dict(input_pattern=str(text), tokenizer="char", num_shards=num_shards)
    expected = _split_files(run_executor(tmp_path / "uninterrupted", **settings).uri)
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (1024 * 1024 - 40 * 1024))
    out_dir = small_disk / "examples"
    with pytest.raises(DiskFull) as failure:
        run_executor(out_dir, **settings)
    assert str(failure.value) == (f"no space left on the device writing the shards of {out_dir}: "
                                  f"free space, then run again")
    assert not [n for n in os.listdir(out_dir) if n.startswith(("Split-", "_staging"))]
    filler.unlink()
    assert shutil.disk_usage(small_disk).used == 0  # no file of the failed run kept open, holding space
    assert _split_files(run_executor(out_dir, **settings).uri) == expected


def test_nanogpts_training_command_trains_on_bpe_examples_and_names_character_records(tmp_path, bpe_dir,
                                                                                       shakespeare_text):
    """`python -m training.train --data_dir=` an Examples artifact: TokenizeText's GPT-2 BPE ids train,
    and the run records their tokenizer (so that it samples); its character records, text that
    Transform maps to ids, are named as such."""
    from core.errors import UsageError
    from training.config import make_config
    from training.train import Trainer

    path = tmp_path / "small.txt"
    path.write_text(shakespeare_text[:20000], encoding="utf-8")
    bpe = run_executor(tmp_path / "bpe", input_pattern=str(path), tokenizer="gpt2", bpe_dir=bpe_dir)
    tiny = dict(n_layer=1, n_head=2, n_embd=16, block_size=16, batch_size=2, gradient_accumulation_steps=1,
                max_iters=1, eval_interval=1, eval_iters=1, tensorboard=False)
    Trainer(make_config(**tiny, data_dir=bpe.uri, out_dir=str(tmp_path / "run")), log=lambda *_: None).run()
    with open(tmp_path / "run" / "tokenizer.json") as f:
        assert json.load(f) == {"kind": "gpt2"}
    chars = run_executor(tmp_path / "char", input_pattern=str(path), tokenizer="char")
    with pytest.raises(UsageError, match=rf"^the train split in {chars.uri} holds no token ids \(character records: "
                                         rf"text, which the pipeline's Transform maps to ids, its "
                                         rf"transformed_examples\)$"):
        Trainer(make_config(**tiny, data_dir=chars.uri, out_dir=str(tmp_path / "run2")), log=lambda *_: None)
