"""Tokenizers: GPT-2 BPE offline from the shared files, equal to tiktoken's own; characters."""

import hashlib
import os
import shutil

import pytest

from core.errors import UsageError
from model.tokenizer import CharTokenizer, GPT2Tokenizer, get_tokenizer, tokenizer_from_json

TIKTOKEN_URLS = {  # the files tiktoken's gpt2 encoding downloads
    "vocab.bpe": "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/vocab.bpe",
    "encoder.json": "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/encoder.json",
}


@pytest.fixture(scope="module")
def tiktoken_own_encoding(bpe_dir, tmp_path_factory):
    """tiktoken.get_encoding('gpt2') exactly as online users get it, fed from a pre-filled cache."""
    import tiktoken
    import tiktoken.registry

    cache = tmp_path_factory.mktemp("tiktoken_cache")
    for name, url in TIKTOKEN_URLS.items():
        shutil.copy(os.path.join(bpe_dir, name), cache / hashlib.sha1(url.encode()).hexdigest())
    old = os.environ.get("TIKTOKEN_CACHE_DIR")
    os.environ["TIKTOKEN_CACHE_DIR"] = str(cache)
    try:
        tiktoken.registry.ENCODINGS.pop("gpt2", None)
        return tiktoken.get_encoding("gpt2")
    finally:
        tiktoken.registry.ENCODINGS.pop("gpt2", None)
        if old is None:
            del os.environ["TIKTOKEN_CACHE_DIR"]
        else:
            os.environ["TIKTOKEN_CACHE_DIR"] = old


def test_gpt2_bpe_encodes_tiny_shakespeare_like_tiktoken(bpe_dir, shakespeare_text, tiktoken_own_encoding):
    tokenizer = GPT2Tokenizer(bpe_dir)
    ids = tokenizer.encode(shakespeare_text)
    assert len(ids) == 338_025
    assert ids == tiktoken_own_encoding.encode_ordinary(shakespeare_text)
    assert tokenizer.decode(ids) == shakespeare_text


def _contexts(chars):
    """Each character where GPT-2's pattern decides on it: in a run of its kind, after a space,
    beside letters, digits, whitespace and the apostrophe of a contraction."""
    yield "".join(f"a{c}1 {c}{c}  {c}\n" for c in chars)
    yield "".join(f"'{c}'s {c}'ll\t{c} 12{c}" for c in chars)


def test_gpt2_bpe_encodes_every_code_point_like_tiktoken(bpe_dir, tiktoken_own_encoding):
    # The encoder is fastokens (PCRE2's regex, its Unicode tables); tiktoken (Rust's regex) is the
    # reference. With PCRE2's own `\s`, U+180E differed here: "'\u180e's".
    tokenizer = GPT2Tokenizer(bpe_dir)
    # Unicode's planes 0-3 and 14 (planes 4-13 hold no character in any version so far, 15-16 are for
    # private use: none of them is a letter, digit or space for either regex)
    code_points = [chr(c) for c in [*range(0x40000), *range(0xE0000, 0xF0000)] if not 0xD800 <= c < 0xE000]
    texts = [text for i in range(0, len(code_points), 500) for text in _contexts(code_points[i:i + 500])]
    texts += [" " * 10_000, "\n" * 5_000 + "a", "x" * 20_000, "1" * 9_999, " \n\t\u3000\u00a0" * 2_000,
              "Hello world<|endoftext|> don't I'd we'll they're", "\r\n\r\n  \n", "\U0001F600" * 1_000]
    assert [tokenizer.encode(text) for text in texts] == tiktoken_own_encoding.encode_ordinary_batch(texts)
    assert tokenizer.encode_to_numpy(texts[-3]).tolist() == tiktoken_own_encoding.encode_ordinary(texts[-3])


def test_gpt2_bpe_encodes_lone_surrogates_like_tiktoken(bpe_dir, tiktoken_own_encoding):
    # Python decodes undecodable bytes of a command line to lone surrogates ("\udcff"); UTF-8 cannot
    # encode them, and tiktoken retries with U+FFFD in their place (a pair becomes its character)
    tokenizer = GPT2Tokenizer(bpe_dir)
    for text in ("a\udcff b", "\ud800", "x\ud83d\ude00y", "caf\udce9 \udc80\udc80 ok"):
        expected = tiktoken_own_encoding.encode_ordinary(text)
        assert tokenizer.encode(text) == expected and tokenizer.encode_to_numpy(text).tolist() == expected


def test_gpt2_bpe_encodes_from_threads_at_once(bpe_dir, shakespeare_text):
    from concurrent.futures import ThreadPoolExecutor

    tokenizer = GPT2Tokenizer(bpe_dir)
    parts = [shakespeare_text[i:i + 20_000] for i in range(0, len(shakespeare_text), 20_000)]
    with ThreadPoolExecutor(4) as pool:
        at_once = list(pool.map(lambda part: tokenizer.encode_to_numpy(part).tolist(), parts))
    assert at_once == [tokenizer.encoding.encode_ordinary(part) for part in parts]


def test_gpt2_bpe_dir_from_environment(bpe_dir, monkeypatch):
    monkeypatch.setenv("NANOGPT_TFX_BPE_DIR", bpe_dir)
    tokenizer = GPT2Tokenizer()
    assert tokenizer.encode("Hello world<|endoftext|>") == [15496, 995, 27, 91, 437, 1659, 5239, 91, 29]
    assert tokenizer.eot_token == 50256 and tokenizer.vocab_size == 50257


def test_gpt2_bpe_dir_missing_a_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="lacks vocab.bpe"):
        GPT2Tokenizer(str(tmp_path))


def test_gpt2_bpe_files_with_wrong_hash(bpe_dir, tmp_path):
    shutil.copy(os.path.join(bpe_dir, "encoder.json"), tmp_path)
    (tmp_path / "vocab.bpe").write_text("#version: 0.2\nĠ t\n")
    with pytest.raises(ValueError, match="are not OpenAI's"):
        GPT2Tokenizer(str(tmp_path))


def test_char_tokenizer_matches_nanogpt_shakespeare_char(shakespeare_text):
    tokenizer = CharTokenizer.from_text(shakespeare_text)
    assert tokenizer.vocab_size == 65
    assert "".join(tokenizer.itos) == "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    assert tokenizer.encode("hii there") == [46, 47, 47, 1, 58, 46, 43, 56, 43]
    assert tokenizer.decode(tokenizer.encode(shakespeare_text[:1000])) == shakespeare_text[:1000]


@pytest.mark.parametrize("filename", ["vocab.json", "vocab.txt"])
def test_char_vocabulary_round_trips_without_pickle(tmp_path, filename):
    tokenizer = CharTokenizer.from_text("To be,\nor not to be: é\r\t")
    path = str(tmp_path / filename)
    tokenizer.save(path)
    assert os.listdir(tmp_path) == [filename]
    assert CharTokenizer.load(path).itos == tokenizer.itos


def test_char_outside_vocabulary_is_named():
    with pytest.raises(UsageError, match=r"character 'z' is not in the model's 3-character vocabulary \('abc'\)"):
        CharTokenizer.from_text("abc").encode("abz")
    with pytest.raises(UsageError, match=r"200-character vocabulary \('(.){100}\.\.\.'\)"):  # shown in part
        CharTokenizer([chr(0x100 + i) for i in range(200)]).encode("z")


def test_tokenizer_descriptions(bpe_dir):
    char = CharTokenizer.from_text("hello")
    assert tokenizer_from_json(char.to_json()).itos == char.itos
    assert isinstance(tokenizer_from_json({"kind": "gpt2"}, bpe_dir), GPT2Tokenizer)
    with pytest.raises(ValueError, match="unknown tokenizer 'sentencepiece'"):
        get_tokenizer("sentencepiece")


def test_how_the_tokens_a_model_was_trained_on_differ_from_the_datas():
    from model.tokenizer import tokens_difference

    chars = {"kind": "char", "chars": list("abc")}
    assert tokens_difference(chars, {"kind": "char", "chars": list("abc")}) is None
    assert tokens_difference(chars, {"kind": "char", "chars": list("cab")}) == "the same 3 characters with other ids"
    assert tokens_difference(chars, {"kind": "char", "chars": list("abxyz")}) == \
        "3 characters against the data's 5, 3 new ('xyz'), 1 gone ('c')"
    assert tokens_difference(chars, {"kind": "gpt2"}) == "3 characters against the data's GPT-2 BPE"
    assert tokens_difference({"kind": "gpt2"}, {"kind": "gpt2"}) is None
