"""Tokenizers: GPT-2 BPE as tiktoken's, and characters like nanoGPT's shakespeare_char.

GPT-2 BPE is tiktoken's `gpt2` encoding. Online, tiktoken downloads its two files on first use;
offline, `bpe_dir` (or the environment variable NANOGPT_TFX_BPE_DIR) names a directory holding
OpenAI's `vocab.bpe` and `encoder.json`, which are checked against their published SHA-256.
tiktoken loads the files and decodes; fastokens (a Rust BPE with PCRE2's JIT regex) encodes, with
tiktoken's ranks and GPT-2's pattern: the same tokens at 4-5 times tiktoken's pace (tests compare
them with tiktoken's on every code point of Unicode's planes 0-3 and 14; BENCHMARKS.md, TokenizeText).

The character vocabulary is stored as JSON or as plain text, never pickled (nanoGPT's meta.pkl can
run code when loaded).
"""

from __future__ import annotations

import base64
import os
import tempfile
import threading
from typing import Iterable, List, Optional, Sequence

from core import files
from core.errors import MissingFile, UsageError, UserError, one_line

BPE_DIR_ENV = "NANOGPT_TFX_BPE_DIR"
GPT2_EOT_TOKEN = 50256  # <|endoftext|>
# SHA-256 of OpenAI's GPT-2 BPE files, as tiktoken checks them.
VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
ENCODER_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
# GPT-2's pre-tokenizing pattern (tiktoken's r50k_pat_str) for PCRE2, with `\s` written out as
# Unicode's White_Space, which tiktoken's Rust regex means by `\s`: PCRE2's own `\s` also takes
# U+180E (MONGOLIAN VOWEL SEPARATOR), and "'\u180e's" would then split as tiktoken does not.
_WHITE_SPACE = r"\t-\r\x{20}\x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}"
GPT2_PATTERN_PCRE2 = (r"'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++"
                      rf"| ?[^{_WHITE_SPACE}\p{{L}}\p{{N}}]++|[{_WHITE_SPACE}]++$"
                      rf"|[{_WHITE_SPACE}]+(?![^{_WHITE_SPACE}])|[{_WHITE_SPACE}]")


class GPT2Tokenizer:
    """GPT-2 BPE. The encode methods ignore special tokens in the text, like tiktoken's
    encode_ordinary, and give its tokens; they may be called from several threads at once.

    Example:
        >>> tokenizer = GPT2Tokenizer(bpe_dir)
        >>> tokenizer.encode("Hello world")
        [15496, 995]
        >>> tokenizer.decode([15496, 995])
        'Hello world'
    """

    kind = "gpt2"
    vocab_size = 50257
    eot_token = GPT2_EOT_TOKEN

    def __init__(self, bpe_dir: Optional[str] = None):
        self.bpe_dir = bpe_dir or os.environ.get(BPE_DIR_ENV) or None
        self.encoding = gpt2_encoding(self.bpe_dir)  # tiktoken's: the checked files, decoding
        self._fast = None  # fastokens' encoder, built at the first encode (0.2 s; checks need none)
        self._fast_lock = threading.Lock()

    def encode(self, text: str) -> List[int]:
        return _encoded(lambda t: self.fast_encoder().encode_ordinary(t).ids, text)

    def encode_to_numpy(self, text: str):
        """The tokens as a uint32 array, with no Python int per token.

        Args:
            text: any string; special tokens in it are encoded as ordinary text.
        Returns:
            A 1-D numpy array of dtype uint32.
        """
        import numpy as np

        ids, _ = _encoded(lambda t: self.fast_encoder().encode_batch_flat([t]), text)
        return np.frombuffer(ids, dtype=np.uint32)

    def fast_encoder(self):
        """fastokens' Tokenizer for GPT-2: tiktoken's ranks, written to a temporary .tiktoken file
        (the form fastokens reads), and GPT-2's pattern for PCRE2; built once, on the first call."""
        with self._fast_lock:
            if self._fast is None:
                import fastokens

                token_bytes = self.encoding.decode_single_token_bytes  # tiktoken's, from the checked files
                with tempfile.TemporaryDirectory(prefix="gpt2_bpe_") as tmp:
                    path = os.path.join(tmp, "gpt2.tiktoken")
                    with open(path, "wb") as f:
                        f.writelines(base64.b64encode(token_bytes(rank)) + b" %d\n" % rank
                                     for rank in range(GPT2_EOT_TOKEN))
                    # no special tokens: "<|endoftext|>" in a text is ordinary text (the callers add
                    # the end-of-text token themselves)
                    self._fast = fastokens.Tokenizer.from_tiktoken(path, pattern=GPT2_PATTERN_PCRE2, special_tokens={})
            return self._fast

    def decode(self, ids: Iterable[int]) -> str:
        return self.encoding.decode([int(i) for i in ids if int(i) < self.vocab_size])

    def to_json(self) -> dict:
        return {"kind": self.kind}


def _encoded(encode, text: str):
    """encode(text); for a text UTF-8 cannot encode (a lone surrogate: undecodable bytes in argv),
    encode of it with each unpaired surrogate made U+FFFD and each pair joined, as tiktoken retries."""
    try:
        return encode(text)
    except UnicodeEncodeError:
        return encode(text.encode("utf-16", "surrogatepass").decode("utf-16", "replace"))


def gpt2_encoding(bpe_dir: Optional[str] = None):
    """tiktoken's GPT-2 encoding, built from the files in bpe_dir when it is given."""
    import tiktoken

    if not bpe_dir:
        try:
            return tiktoken.get_encoding("gpt2")
        except Exception as e:  # offline: requests' ConnectionError, or a blob store's error
            raise UserError(f"GPT-2 BPE: tiktoken could not fetch its gpt2 files ({type(e).__name__}: "
                            f"{one_line(e)[:200]}); offline, pass --bpe_dir=DIR, a directory holding OpenAI's "
                            f"vocab.bpe and encoder.json (or set {BPE_DIR_ENV})") from e
    import tiktoken.load
    from tiktoken_ext import openai_public

    vocab_bpe = os.path.join(bpe_dir, "vocab.bpe")
    encoder_json = os.path.join(bpe_dir, "encoder.json")
    for path in (vocab_bpe, encoder_json):
        if not os.path.isfile(path):
            raise MissingFile(f"GPT-2 BPE directory {bpe_dir!r} lacks {os.path.basename(path)}")
    try:
        ranks = tiktoken.load.data_gym_to_mergeable_bpe_ranks(
            vocab_bpe_file=vocab_bpe, encoder_json_file=encoder_json,
            vocab_bpe_hash=VOCAB_BPE_SHA256, encoder_json_hash=ENCODER_JSON_SHA256)
    except ValueError as e:  # tiktoken's hash mismatch
        raise UsageError(f"GPT-2 BPE files in {bpe_dir!r} are not OpenAI's: {e}") from e
    return tiktoken.Encoding(
        name="gpt2", pat_str=openai_public.r50k_pat_str, mergeable_ranks=ranks,
        special_tokens={"<|endoftext|>": GPT2_EOT_TOKEN}, explicit_n_vocab=50257)


class CharTokenizer:
    """Characters to ids by their position in a vocabulary (nanoGPT's stoi/itos; from_text sorts them,
    as nanoGPT does; the pipeline's are in its Transform's order)."""

    kind = "char"
    eot_token = None

    def __init__(self, chars: Sequence[str]):
        chars = list(chars)
        if not chars:
            raise ValueError("CharTokenizer needs a non-empty vocabulary")
        if any(len(c) != 1 for c in chars) or len(set(chars)) != len(chars):
            raise ValueError("CharTokenizer vocabulary must be distinct single characters")
        self.itos = chars
        self.stoi = {c: i for i, c in enumerate(chars)}

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> List[int]:
        try:
            return [self.stoi[c] for c in text]
        except KeyError as e:
            chars = "".join(self.itos)
            raise UsageError(f"character {e.args[0]!r} is not in the model's {self.vocab_size}-character "
                             f"vocabulary ({chars if len(chars) <= 100 else chars[:100] + '...'!r})") from None

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.itos[int(i)] for i in ids)

    def to_json(self) -> dict:
        return {"kind": self.kind, "chars": self.itos}

    def save(self, path: str) -> None:
        """JSON for a .json path; otherwise plain UTF-8 text holding the characters in id order."""
        if path.endswith(".json"):
            files.write_json(path, self.to_json(), ensure_ascii=False, indent=None, sort_keys=False)
        else:
            files.write_file(path, "".join(self.itos))

    @classmethod
    def load(cls, path: str) -> "CharTokenizer":
        if path.endswith(".json"):
            data = files.read_json(path)
            if data.get("kind") != cls.kind:
                raise UsageError(f"{path} is not a character vocabulary (kind={data.get('kind')!r})")
            return cls(data["chars"])
        with open(path, encoding="utf-8", newline="") as f:
            return cls(list(f.read()))


def tokens_difference(trained: dict, data: dict) -> Optional[str]:
    """How the tokens a model was trained on (`to_json()`) differ from a data's, in words: None when
    they are the same, so that the model's ids mean the data's characters (or BPE tokens)."""
    if trained == data:
        return None
    if trained.get("kind") != data.get("kind") or trained.get("kind") != CharTokenizer.kind:
        return f"{describe_tokens(trained)} against the data's {describe_tokens(data)}"
    old, new = trained["chars"], data["chars"]
    if set(old) == set(new):
        return f"the same {len(old)} characters with other ids"
    gained, lost = [c for c in new if c not in set(old)], [c for c in old if c not in set(new)]
    said = [f"{len(old)} characters against the data's {len(new)}"]
    said += [f"{len(chars)} {what} ({''.join(chars[:20])!r}{'...' if len(chars) > 20 else ''})"
             for chars, what in ((gained, "new"), (lost, "gone")) if chars]
    return ", ".join(said)


def describe_tokens(data: dict) -> str:
    """A tokenizer's description (`to_json()`) in a few words."""
    if data.get("kind") == CharTokenizer.kind:
        return f"{len(data.get('chars', []))} characters"
    return "GPT-2 BPE" if data.get("kind") == GPT2Tokenizer.kind else f"tokenizer {data.get('kind')!r}"


def tokenizer_from_json(data: dict, bpe_dir: Optional[str] = None):
    """The tokenizer that `to_json()` describes."""
    if data.get("kind") == GPT2Tokenizer.kind:
        return GPT2Tokenizer(bpe_dir)
    if data.get("kind") == CharTokenizer.kind:
        return CharTokenizer(data["chars"])
    raise ValueError(f"unknown tokenizer description {data!r}")


TOKENIZERS = ("gpt2", "char")  # the kinds get_tokenizer makes


def get_tokenizer(kind: str, text: Optional[str] = None, bpe_dir: Optional[str] = None):
    """'gpt2' for BPE, or 'char' for a character vocabulary built from `text`."""
    if kind == "gpt2":
        return GPT2Tokenizer(bpe_dir)
    if kind == "char":
        if text is None:
            raise ValueError("a character tokenizer is built from text: pass text=")
        return CharTokenizer.from_text(text)
    raise ValueError(f"unknown tokenizer {kind!r}: use 'gpt2' or 'char'")
