"""The input-text policy (fault injection: each kind of file that is not UTF-8 text, at its start or
anywhere in it): refused in one line naming the file, the problem and the setting that accepts it; a
UTF-8 byte-order mark dropped; CRLF made LF (or kept); the counts printed at the end of TokenizeText."""

import pytest
from tfx.components.statistics_gen import stats_artifact_utils

from components.tokenize_text import encoding, sources
from components.tokenize_text.executor_test import read_text_stream, run_executor

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n" * 40


@pytest.mark.parametrize("data, problem", [
    (bytes(range(256)) * 8, "NUL bytes"),
    (TEXT.encode("utf-16"), "UTF-16 text"),
    (TEXT.encode("utf-16-le"), "NUL bytes"),
    ("Père Noël à côté d'être élève ".encode("latin-1") * 40, "invalid UTF-8 sequences"),
])
def test_files_that_are_not_utf8_text_are_refused_naming_the_setting(tmp_path, data, problem):
    path = tmp_path / "input.txt"
    path.write_bytes(data)
    with pytest.raises(sources.NotText) as info:
        run_executor(tmp_path / "out", input_pattern=str(path), tokenizer="char")
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path} is not UTF-8 text: ")
    assert problem in message and "accept_invalid_text=True" in message
    assert not list((tmp_path / "out").glob("Split-*"))


def test_a_binary_file_among_text_files_is_refused_with_a_glob_that_leaves_it_out(tmp_path):
    (tmp_path / "corpus").mkdir()
    for name in ("a.txt", "b.txt", "notes.md"):
        (tmp_path / "corpus" / name).write_text(TEXT)
    image = tmp_path / "corpus" / "cover.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(200))
    with pytest.raises(sources.NotText, match=rf"^{image} is not UTF-8 text: it holds NUL bytes .*; convert it to "
                                              rf"UTF-8 \(e.g. iconv -t UTF-8\), leave it out \(e.g. "
                                              rf"--data='{tmp_path}/corpus/\*.txt'\), or set accept_invalid_text"):
        run_executor(tmp_path / "out", input_pattern=str(tmp_path / "corpus"), tokenizer="char")


def test_a_file_of_the_corpus_own_extension_is_refused_without_a_glob_that_would_drop_the_rest(tmp_path):
    (tmp_path / "corpus").mkdir()
    for name in ("a.txt", "b.txt"):
        (tmp_path / "corpus" / name).write_text(TEXT)
    (tmp_path / "corpus" / "scan.bin").write_bytes(bytes(range(1, 256)) * 8)
    latin = tmp_path / "corpus" / "c.txt"
    latin.write_bytes("Père Noël à côté d'être élève ".encode("latin-1") * 40)
    with pytest.raises(sources.NotText) as info:
        run_executor(tmp_path / "out", input_pattern=str(tmp_path / "corpus"), tokenizer="char")
    message = str(info.value)
    assert message.startswith(f"{latin} is not UTF-8 text: ") and "--data=" not in message  # not '*.bin'


def test_no_glob_is_offered_that_would_keep_only_other_binary_files(tmp_path):
    (tmp_path / "corpus").mkdir()
    for name in ("a.dat", "b.dat"):
        (tmp_path / "corpus" / name).write_bytes(bytes(range(256)) * 8)
    (tmp_path / "corpus" / "0.idx").write_bytes(b"\x00" * 64)  # refused first
    with pytest.raises(sources.NotText) as info:
        run_executor(tmp_path / "out", input_pattern=str(tmp_path / "corpus"), tokenizer="char")
    assert "is not UTF-8 text: " in str(info.value) and "--data=" not in str(info.value)  # not '*.dat'


def test_nanogpts_prepared_data_given_as_text_is_named_with_the_command_that_reads_it(tmp_path):
    import pickle

    prepared = tmp_path / "shakespeare_char"
    prepared.mkdir()
    for split in ("train", "val"):
        (prepared / f"{split}.bin").write_bytes(bytes(range(64)) * 8)
    (prepared / "meta.pkl").write_bytes(pickle.dumps({"vocab_size": 2, "itos": {0: "a", 1: "b"}}))
    with pytest.raises(sources.NotText, match=rf"^{prepared} holds nanoGPT's prepared data \(train.bin, val.bin, "
                                              rf"meta.pkl: token ids, not text\): `python -m training.train "
                                              rf"--data_dir={prepared}` trains on it; --data reads text$"):
        run_executor(tmp_path / "out", input_pattern=str(prepared), tokenizer="char")


def test_a_few_invalid_bytes_pass_and_accept_invalid_text_takes_anything(tmp_path, capsys):
    text = TEXT.encode() + b"\xff"  # one bad byte in 2400: well under the 1% a text may have
    assert encoding.text_file_problem(text) is None
    binary = tmp_path / "binary.txt"
    binary.write_bytes(bytes(range(1, 256)) * 4 + TEXT.encode())
    examples = run_executor(tmp_path / "out", input_pattern=str(binary), tokenizer="char", accept_invalid_text=True)
    replaced = examples.get_custom_property("invalid_utf8_documents")
    assert replaced >= 1  # the head and the tail of the file (each read from its start) are documents
    noun = "document" if replaced == 1 else "documents"
    assert f"{replaced} {noun} with invalid UTF-8 replaced by U+FFFD" in capsys.readouterr().out


def test_bom_dropped_crlf_made_lf_and_counts_printed(tmp_path, capsys):
    path = tmp_path / "windows.txt"
    path.write_bytes(b"\xef\xbb\xbf" + TEXT.replace("\n", "\r\n").encode())
    examples = run_executor(tmp_path / "out", input_pattern=str(path), tokenizer="char", chunk_size=64)
    text = "".join(read_text_stream(examples, "train") + read_text_stream(examples, "val"))
    assert text == TEXT
    assert examples.get_custom_property("crlf_normalized_lines") == TEXT.count("\n")
    out = capsys.readouterr().out
    assert "1 byte-order mark dropped" in out and f"{TEXT.count(chr(10))} CRLF line ends made LF" in out
    kept = run_executor(tmp_path / "kept", input_pattern=str(path), tokenizer="char", keep_crlf=True)
    assert "".join(read_text_stream(kept, "train") + read_text_stream(kept, "val")) == TEXT.replace("\n", "\r\n")


def test_crlf_split_between_blocks_and_a_lone_cr():
    decoder = encoding.Utf8Decoder()
    blocks = [b"\xef\xbb", b"\xbfone\r", b"\ntwo\r", b"three\r\n", b""]
    assert "".join(decoder.decode(b, final=not b) for b in blocks) == "one\ntwo\rthree\n"
    assert decoder.bom_dropped and decoder.crlf_normalized == 2


def test_binary_data_past_the_first_64_kib_is_refused_as_the_document_is_read(tmp_path, capsys):
    """NUL bytes deep in a document of a hash-split corpus (whose first 64 KiB pass the check before
    any work): refused by the tokenizing pass itself, naming the file and the byte; accepted, they
    are counted and the statistics show the document."""
    head = (TEXT * 30).encode()  # 72,000 bytes of text first
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "a.txt").write_bytes(head)
    binary = tmp_path / "corpus" / "b.txt"
    binary.write_bytes(head + b"\x00\x01\x02\x03blob\x00" + head)
    props = dict(input_pattern=str(tmp_path / "corpus"), tokenizer="char", split_method="hash", val_fraction=0.5,
                 split_seed=4)  # a.txt in train, b.txt in val
    with pytest.raises(sources.NotText) as info:
        run_executor(tmp_path / "out", **props)
    assert str(info.value).startswith(f"{binary} is not UTF-8 text: it holds NUL bytes (binary data, or UTF-16/UTF-32 "
                                      f"text), the first at byte {len(head)}; ")
    assert not list((tmp_path / "out").glob("Split-*"))

    examples, stats = run_executor(tmp_path / "accepted", statistics=True, accept_invalid_text=True, **props)
    assert examples.get_custom_property("refused_documents") == stats.get_custom_property("refused_documents") == 1
    assert "1 document not UTF-8 text tokenized (accept_invalid_text)" in capsys.readouterr().out
    found = {}
    for split in sources.SPLITS:
        for feature in stats_artifact_utils.load_statistics(stats, split).proto().datasets[0].features:
            if feature.path.step[0] in ("not_text", "control_characters") and feature.num_stats.max:
                found[feature.path.step[0]] = feature.num_stats.max
    assert found == {"not_text": 1, "control_characters": 5}


def test_control_characters_past_the_first_64_kib_of_one_file_are_refused_before_any_work(tmp_path):
    """One text file (split head_tail) is read whole to be cut: the policy holds for all of it."""
    path = tmp_path / "log.txt"
    path.write_bytes((TEXT * 30).encode() + b"\x1b[31mred\x1b[0m " * 1000 + (TEXT * 30).encode())
    with pytest.raises(sources.NotText, match=rf"^{path} is not UTF-8 text: 2000 control characters in its bytes "
                                              rf"65536-131072, more than 1%"):
        run_executor(tmp_path / "out", input_pattern=str(path), tokenizer="char")
