"""Tiny GPTs whose loss is known in closed form, for LMEvaluator's tests: data drawn from the
unigram distribution P over V tokens; `uniform_gpt` scores ln V on any data, `unigram_gpt` the data's
cross-entropy under P."""

import numpy as np
import tensorflow as tf

from model.model import GPT, GPTConfig

V = 12  # vocabulary of the test data
P = 1.0 / np.arange(1, V + 1)
P = P / P.sum()  # a skewed unigram distribution the data is drawn from
N_EMBD = 16


def tiny_gpt(vocab_size=V, seed=0, block_size=16):
    return GPT(GPTConfig(n_layer=1, n_head=2, n_embd=N_EMBD, block_size=block_size, vocab_size=vocab_size),
               seed=seed)


def uniform_gpt():
    """Logits all zero: loss ln V on any data."""
    model = tiny_gpt()
    model.wte.weight.assign(tf.zeros_like(model.wte.weight))
    return model


def unigram_gpt():
    """Predicts P at every position: ln_f zeroes the activations, its bias carries log P, and wte
    (also the LM head) is the identity on the first V dimensions."""
    model = tiny_gpt()
    model.ln_f.weight.assign(tf.zeros([N_EMBD]))
    model.ln_f.bias.assign(np.pad(np.log(P), (0, N_EMBD - V)).astype(np.float32))
    model.wte.weight.assign(np.eye(V, N_EMBD, dtype=np.float32))
    return model


# The characters of the test data's ids 0..V-1: ASCII, and characters of 2, 3 and 4 UTF-8 bytes, so
# that bits per byte and loss / ln 2 differ.
CHARS = ["a", "b", "\n", "é", "€", "c", "d", " ", "e", "ü", "f", "𝄞"]
CHAR_BYTES = np.array([len(c.encode("utf-8")) for c in CHARS])


def write_char_vocabulary(directory, chars=CHARS):
    """A transform graph directory whose vocabulary maps ids to `chars` as the char Transform's
    does (components/char_transform.py: one code point a line, in id order); any file system
    TensorFlow writes."""
    assets = f"{directory}/transform_fn/assets"
    tf.io.gfile.makedirs(assets)
    with tf.io.gfile.GFile(f"{assets}/chars", "w") as f:
        f.write("".join(f"{ord(c)}\n" for c in chars))
    return str(directory)
