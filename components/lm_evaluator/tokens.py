"""The data's tokenizer as the LMEvaluator needs it: the UTF-8 bytes each token id stands for (bits
per byte), and a split's text in GPT-2 BPE tokens (a GPT-2 baseline beside a model of other tokens).

Where the evaluator learns the data's tokenizer:
- characters: the transform graph (the `transform_graph` input, Transform's output), whose
  vocabulary maps the ids; a character id stands for its character's UTF-8 bytes (1 for ASCII);
- GPT-2 BPE: the examples' `tokenizer` property ("gpt2", TokenizeText's), with tiktoken's files
  from `bpe_dir` (or $NANOGPT_TFX_BPE_DIR, or tiktoken's download); a token stands for the bytes
  it decodes to, the end-of-text token for none (it is no text of the documents).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

CHAR, GPT2 = "char", "gpt2"


@dataclasses.dataclass
class DataTokenizer:
    kind: str  # CHAR or GPT2
    tokenizer: object  # model.tokenizer's CharTokenizer or GPT2Tokenizer
    token_bytes: np.ndarray  # the UTF-8 bytes of each token id (int64)

    @property
    def vocab_size(self) -> int:
        return len(self.token_bytes)

    def describe(self) -> str:
        if self.kind == CHAR:
            return f"characters ({self.vocab_size} in the transform graph's vocabulary)"
        return f"GPT-2 BPE ({self.vocab_size} tokens)"

    def to_json(self) -> dict:
        return self.tokenizer.to_json()

    def decode(self, ids: np.ndarray) -> str:
        """The text of a token stream (a split's), for GPT-2 BPE to encode again."""
        if self.kind == CHAR:
            return "".join(np.asarray(self.tokenizer.itos, dtype=object)[ids])
        return self.tokenizer.decode(ids.tolist())


def characters(chars) -> DataTokenizer:
    from model.tokenizer import CharTokenizer

    tokenizer = CharTokenizer(chars)
    return DataTokenizer(CHAR, tokenizer, np.array([len(c.encode("utf-8")) for c in tokenizer.itos], np.int64))


def gpt2(bpe_dir: Optional[str] = None) -> DataTokenizer:
    """GPT-2 BPE; the end-of-text token stands for no byte."""
    from model.tokenizer import GPT2Tokenizer

    tokenizer = GPT2Tokenizer(bpe_dir)
    encoding = tokenizer.encoding
    sizes = [len(encoding.decode_single_token_bytes(i)) for i in range(tokenizer.vocab_size)]
    sizes[tokenizer.eot_token] = 0
    return DataTokenizer(GPT2, tokenizer, np.array(sizes, np.int64))


def data_tokenizer(examples, transform_graph_uri: Optional[str], bpe_dir: Optional[str]) -> DataTokenizer:
    """The tokenizer of an Examples artifact: the transform graph's characters when one is given,
    else the one its `tokenizer` property names (ValueError when neither says)."""
    if transform_graph_uri:
        from components import char_transform

        return characters(char_transform.load_vocabulary(transform_graph_uri))
    kind = examples.get_string_custom_property("tokenizer")
    if kind == GPT2:
        return gpt2(bpe_dir)
    if kind == CHAR:
        raise ValueError(f"LMEvaluator: the examples {examples.uri} are character records; give the transform "
                         f"graph that holds their vocabulary (the transform_graph input)")
    raise ValueError(f"LMEvaluator: the tokenizer of the examples {examples.uri} is not known: they need a "
                     f"`tokenizer` property ('gpt2'), or the transform_graph input for characters")


def target_bytes(token_bytes: np.ndarray, targets: np.ndarray) -> int:
    """The UTF-8 bytes that target token ids stand for."""
    return int(token_bytes[targets].sum())
