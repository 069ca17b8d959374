"""Piece cutting that keeps GPT-2 BPE exact, UTF-8 policy, and the TensorFlow-free record writer."""

import random

import numpy as np
import pytest

from components.tokenize_text import encoding
from core import shards
from model.tokenizer import GPT2Tokenizer


@pytest.fixture(scope="module")
def bpe(bpe_dir):
    return GPT2Tokenizer(bpe_dir)


def _encode_in_pieces(bpe, text, max_chars, block=997):
    blocks = (text[i:i + block] for i in range(0, len(text), block))
    pieces = list(encoding.bpe_pieces(blocks, max_chars))
    assert "".join(pieces) == text
    return [t for piece in pieces for t in bpe.encode(piece)], pieces


def test_shakespeare_in_small_pieces_encodes_exactly_as_whole(bpe, shakespeare_text):
    text = shakespeare_text[:200_000]
    tokens, pieces = _encode_in_pieces(bpe, text, max_chars=300)
    assert len(pieces) > 500
    assert tokens == bpe.encode(text)


AWKWARD = ["a", "Z", "é", "中", "7", "42", "'s", "'ll", "!", "?!", ".", " ", "  ", "   ", "\n", "\n\n",
           "\t", "\r\n", "\x1c", "\u00a0", "\u3000", " \n ", "😀", "<|endoftext|>"]


def _awkward_text(n):
    # Runs of mixed whitespace (some of it not whitespace to the GPT-2 regex, like \x1c), contractions,
    # digits, punctuation and non-ASCII: the cases where a careless cut changes the tokens.
    rng = random.Random(0)
    return "".join(rng.choice(AWKWARD) for _ in range(n))


def test_every_safe_cut_of_awkward_text_keeps_the_encoding(bpe):
    text = _awkward_text(1500)
    whole = bpe.encode(text)
    safe = [i for i in range(len(text)) if encoding.is_safe_cut(text, i)]
    assert len(safe) > 200
    for i in safe:
        assert bpe.encode(text[:i]) + bpe.encode(text[i:]) == whole, (i, text[i - 3:i + 3])
    # The rule is not vacuous: cutting inside a whitespace run, or before a character that is
    # whitespace to Python but not to the regex, does change the tokens somewhere in this text.
    unsafe = [i for i in range(1, len(text)) if not encoding.is_safe_cut(text, i)
              and (text[i - 1].isspace() or text[i] == "\x1c")]
    assert any(bpe.encode(text[:i]) + bpe.encode(text[i:]) != whole for i in unsafe)


def test_awkward_text_in_pieces_encodes_exactly_as_whole(bpe):
    text = _awkward_text(40_000)
    for max_chars in (5, 17, 64):
        tokens, _ = _encode_in_pieces(bpe, text, max_chars)
        assert tokens == bpe.encode(text), max_chars


def test_text_without_any_whitespace_is_kept_whole_not_cut():
    pieces = list(encoding.bpe_pieces(["x" * 50, "y" * 50, " tail"], max_chars=10))
    assert pieces[0] == "x" * 50 + "y" * 50 and "".join(pieces) == "x" * 50 + "y" * 50 + " tail"


def test_char_pieces_are_exact_chunks():
    assert list(encoding.char_pieces(["abcde", "fg", "hijk"], 4)) == ["abcd", "efgh", "ijk"]


def test_token_chunker_positions_are_consecutive_across_pieces():
    chunker = encoding.TokenChunker(4)
    out = list(chunker.add(range(3))) + list(chunker.add(range(3, 10))) + list(chunker.finish())
    assert [pos for pos, _ in out] == [0, 1, 2]
    assert [list(c) for _, c in out] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert chunker.num_tokens == 10


def test_utf8_decoder_replaces_and_flags_invalid_bytes_across_blocks():
    decoder = encoding.Utf8Decoder()
    data = "naïve ".encode() + b"\xff" + " café".encode()
    # Cut inside the two-byte "ï" and inside "é": valid sequences split over blocks are not errors.
    text = decoder.decode(data[:3]) + decoder.decode(data[3:-1]) + decoder.decode(data[-1:], final=True)
    assert text == "naïve \ufffd café" and decoder.replaced
    clean = encoding.Utf8Decoder()
    assert clean.decode("literal \ufffd is fine".encode(), final=True) and not clean.replaced


@pytest.mark.parametrize("tokens", [[], [0], [5, 127, 128, 16383, 16384, 50256], [(1 << 21) - 1, 2, 1 << 20],
                                    list(range(0, 1 << 22, 4099)), [1 << 40, 3]])
def test_token_record_parses_as_the_shard_format(tokens):
    import tensorflow as tf

    doc, pos = 123456789012, 7
    ours = tf.train.Example.FromString(encoding.token_record(doc, pos, np.array(tokens, np.int64)))
    reference = tf.train.Example.FromString(shards.serialize_chunk(doc, pos, np.array(tokens, np.int64)))
    assert ours == reference
    parsed = shards.parse_chunks(encoding.token_record(doc, pos, np.array(tokens, np.int64)))
    assert parsed[shards.TOKENS].numpy().tolist() == tokens and int(parsed[shards.DOC]) == doc


def test_token_record_takes_tiktokens_uint32_ids_as_they_come():
    tokens = np.array([0, 127, 128, 16383, 16384, 50256, (1 << 21) - 1], np.uint32)  # encode_to_numpy's dtype
    assert encoding.token_record(1, 0, tokens) == encoding.token_record(1, 0, tokens.astype(np.int64))


def test_text_record_holds_utf8_text():
    import tensorflow as tf

    example = tf.train.Example.FromString(encoding.text_record(3, 1, "é\n"))
    feature = example.features.feature
    assert feature[encoding.TEXT].bytes_list.value == ["é\n".encode()]
    assert feature[shards.DOC].int64_list.value == [3] and feature[shards.POS].int64_list.value == [1]


def test_text_check_judges_every_64_kib_and_a_short_tail_as_a_whole_window():
    text = b"To be, or not to be, that is the question:\n" * 3100  # 133,300 bytes: two windows and a tail
    for damage, problem in [(b"", None), (b"\xff" * 700, "700 invalid UTF-8 sequences in its bytes 65536-131072"),
                            (b"\x07" * 700, "700 control characters in its bytes 65536-131072")]:
        decoder = encoding.Utf8Decoder()
        decoder.decode(text[:70000] + damage + text[70000:], final=True)
        assert (decoder.check.problem or "").startswith(problem or ""), damage[:1]
        assert bool(decoder.check.problem) == bool(problem)
    tail = encoding.Utf8Decoder()  # two bad bytes in the last 1,000: 2% of them, but not of a window
    tail.decode(text[:-1000] + b"\xff\x07" + text[-1000:], final=True)
    assert tail.check.problem is None and (tail.check.replaced_sequences, tail.check.control_characters) == (1, 1)
    short = encoding.TextCheck()  # a document shorter than a window is judged on its own length
    short.check_text("hello\x07" * 10)
    assert short.problem == "10 control characters in its bytes 0-60, more than 1% (another encoding, or binary data)"
