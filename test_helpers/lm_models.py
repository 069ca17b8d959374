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
