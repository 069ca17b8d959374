"""Sampling a token from a model's logits, as one graph for every setting: the logits beyond
`vocab_limit` masked (a model trained with the padded vocabulary 50304 must never emit ids the
tokenizer lacks), then temperature, top_k (nanoGPT's), top_p (nucleus), and a draw by the Gumbel-max
trick with noise hashed from (seed, step): the same seed gives the same tokens, whichever generator
and however the loop is compiled. temperature == 0 is greedy decoding (argmax)."""

from __future__ import annotations

import tensorflow as tf



def sample_next(logits, seed, step, temperature, top_k, top_p, vocab_limit, xla=True):
    """One token per row from logits (B, V) float32, as int32 (B,).

    All arguments are tensors (or numbers) so that one compiled graph serves every setting:
    temperature 0 means greedy, top_k 0 means no top-k cut, top_p 1 means no nucleus cut,
    vocab_limit V means no vocabulary mask. The draw is argmax(logits / temperature + Gumbel noise),
    which is exactly a draw from softmax(logits / temperature); the noise comes from a
    hash keyed by (seed, step), so a step's token depends on nothing but its logits. xla: for a
    graph that XLA compiles (see _top_k_top_p; the same tokens either way)."""
    logits = tf.convert_to_tensor(logits, tf.float32)
    vocab = tf.shape(logits)[-1]
    logits = tf.where(tf.range(vocab)[None, :] < vocab_limit, logits, float("-inf"))
    temperature = tf.cast(temperature, tf.float32)
    greedy = temperature <= 0.0
    scaled = _top_k_top_p(logits / tf.where(greedy, 1.0, temperature), top_k, top_p, xla)
    u = uniform_noise(tf.shape(scaled), seed, step)
    noisy = scaled - tf.math.log(-tf.math.log(u))
    return tf.argmax(tf.where(greedy, logits, noisy), axis=-1, output_type=tf.int32)


def uniform_noise(shape, seed, step):
    """Uniform numbers in (0, 1) of shape (B, V), a function of (seed, step) and the position
    alone: murmur3's 32-bit finalizer over a counter. Not tf.random.stateless_uniform: with a
    seed known only at run time, XLA draws other numbers than TensorFlow's kernel does, and the
    same seed must give the same tokens with and without XLA."""
    seed = tf.cast(seed, tf.int64)
    low = tf.cast(tf.bitwise.bitwise_and(seed, 0xFFFFFFFF), tf.uint32)
    high = tf.cast(tf.bitwise.right_shift(seed, 32), tf.uint32)
    key = _fmix32(_fmix32(_fmix32(low ^ 0x9E3779B9) ^ high) ^ tf.cast(step, tf.uint32))
    counter = tf.cast(tf.range(tf.reduce_prod(shape)), tf.uint32)
    bits = _fmix32(_fmix32(counter ^ key) ^ _fmix32(key ^ 0x85EBCA6B))
    # the top 24 bits, centred in their interval: never 0, never 1
    u = (tf.cast(tf.bitwise.right_shift(bits, 8), tf.float32) + 0.5) * (1.0 / (1 << 24))
    return tf.reshape(u, shape)


def _fmix32(h):
    """murmur3's finalizer: every input bit changes each output bit with probability ~1/2."""
    h = (h ^ tf.bitwise.right_shift(h, 16)) * tf.constant(0x85EBCA6B, tf.uint32)
    h = (h ^ tf.bitwise.right_shift(h, 13)) * tf.constant(0xC2B2AE35, tf.uint32)
    return h ^ tf.bitwise.right_shift(h, 16)


def _top_k_top_p(logits, top_k, top_p, xla=True):
    """logits with everything outside the top_k largest and outside the nucleus (the smallest set
    of largest logits whose probability reaches top_p) set to -inf. Ties with the last kept logit
    are kept, as nanoGPT's `logits[logits < v[:, [-1]]] = -inf` keeps them.

    Each cut is a threshold found by bisection over the logits' values, not by sorting: XLA's sort
    on a CPU takes about 0.6 s for GPT-2's 50257 logits, 20 times a whole cached step. Without XLA
    (xla False) the top_k cut's threshold is the k-th of TensorFlow's top_k (a partial sort, a
    fraction of a millisecond), the same value, in one op instead of ~300."""
    top_k = tf.cast(top_k, tf.int32)
    top_p = tf.cast(top_p, tf.float32)
    keys = _ordered_keys(logits)

    def cut_k():
        k = tf.minimum(top_k, tf.shape(logits)[-1])
        if xla:
            kth = _largest_key(keys, lambda kept: tf.reduce_sum(tf.cast(kept, tf.int32), axis=-1) >= k)
            return tf.where(keys >= kth[:, None], logits, float("-inf"))
        kth = tf.math.top_k(logits, k, sorted=False).values
        return tf.where(logits >= tf.reduce_min(kth, axis=-1, keepdims=True), logits, float("-inf"))

    logits = tf.cond(top_k > 0, cut_k, lambda: logits)

    def cut_p():
        probs = tf.nn.softmax(logits, axis=-1)
        edge = _largest_key(keys, lambda kept: tf.reduce_sum(tf.where(kept, probs, 0.0), axis=-1) >= top_p)
        return tf.where(keys >= edge[:, None], logits, float("-inf"))

    return tf.cond(top_p < 1.0, cut_p, lambda: logits)


def _ordered_keys(x):
    """int64 keys in the order of the float32 values x: the bit patterns, with those of negative
    numbers (sign-magnitude) turned around."""
    bits = tf.bitcast(tf.cast(x, tf.float32), tf.int32)
    return tf.cast(tf.where(bits < 0, tf.bitwise.bitwise_xor(bits, 0x7FFFFFFF), bits), tf.int64)


def _largest_key(keys, holds):
    """For each row of keys (B, V), the largest v such that holds(keys >= v) is True for the row.
    holds (B, V) bool -> (B,) bool must hold at the row's smallest key and, as v grows, stop
    holding at most once. Bisection: at most 33 halvings of the 32-bit key range."""
    lo, hi = tf.reduce_min(keys, axis=-1), tf.reduce_max(keys, axis=-1)

    def halve(lo, hi):
        mid = lo + (hi - lo + 1) // 2
        ok = holds(keys >= mid[:, None])
        return tf.where(ok, mid, lo), tf.where(ok, hi, mid - 1)

    lo, _ = tf.while_loop(lambda lo, hi: tf.reduce_any(lo < hi), halve, (lo, hi))
    return lo
