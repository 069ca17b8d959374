"""Fast generation for the GPT of model.py: a key/value cache, the whole decoding loop compiled.

nanoGPT's generate() runs the whole context through the model again for every new token. Here the
prompt goes through the model once (the prefill), every layer's keys and values are kept in a
preallocated cache, and each later step runs only the newest token through the model, attending
over the cache. The loop itself (prefill, steps, sampling, the stop at end-of-text) is one
tf.while_loop inside one tf.function, so Python is not involved between tokens.

The model computes the cached forward itself (GPT.call_with_cache; Block and the attention take
an optional cache); this module holds sampling, the loop and the serving signature. The cache
holds keys and values of shape (n_layer, B, n_head, block_size, head_size), allocated once at
full size (GPT.empty_cache): every step writes one position and attends over all block_size
slots with a mask that hides the slots not written yet. Fixed shapes let XLA compile the loop,
which on a CPU makes a step several times faster; they also let the serving signature, whose
prompt length and max_new_tokens are tensors, run the prefill and the steps as one XLA-compiled
function, with the prompt padded to a power-of-two length (`bucketed`).

Exactness past block_size. The model has learned absolute position embeddings and a context of
block_size tokens. Once prompt + generated tokens exceed block_size, the next token is predicted,
as nanoGPT does, from the last block_size tokens at positions 0..block_size-1: every token of the
window moves one position down at each step, so every cached key and value is stale. A sliding
cache would be an approximation; this module stays exact instead: each step past block_size runs
the full model forward over the cropped window (a branch of the same compiled loop), which costs
as much as nanoGPT's uncached step. Only the steps within block_size gain from the cache.

Both generators sample with serving/sampling.py's `sample_next`: the same seed gives the same tokens.

`generate_uncached` is nanoGPT's generate(): the reference for tests and the benchmark baseline.
"""

from __future__ import annotations

import functools
import secrets
import weakref
from typing import NamedTuple, Optional

import numpy as np
import tensorflow as tf

from serving import SERVING_LOOPS
from serving.sampling import sample_next
from serving.weights import with_weights


class Generation(NamedTuple):
    """tokens: (B, T + max_new_tokens) int32, the whole prompt then the new tokens; a row that
    ended at end-of-text is padded with the end-of-text token. lengths: (B,) int32, each row's
    length, its prompt and its end-of-text token included (T + max_new_tokens for rows that did
    not end)."""
    tokens: np.ndarray
    lengths: np.ndarray

    def rows(self):
        """Each row's tokens up to its length, as Python lists."""
        return [row[:n].tolist() for row, n in zip(self.tokens, self.lengths)]


# --------------------------------------------------------------------------------------------
# the compiled loop


def last_logits(model, ids):
    """Logits (B, V) at the last position of ids (B, T <= block_size), by the full forward."""
    return model.call_with_cache(ids, None, 0)[0]


class Settings(NamedTuple):
    """The sampling settings of one generation, scalars (tensors in a serving graph)."""
    max_new_tokens: object
    temperature: object
    top_k: object
    top_p: object
    seed: object
    eot_token: object  # -1: none
    vocab_limit: object


def _emit(settings: Settings, s, logits, tokens, column, finished, lengths, prompt_length, xla=True):
    """Sample token s from its logits and write it at `column` of tokens (B, n); a row that
    emits the end-of-text token is finished, and its length is the prompt's and s + 1 tokens."""
    pad = tf.maximum(settings.eot_token, 0)
    token = sample_next(logits, settings.seed, s, settings.temperature, settings.top_k, settings.top_p,
                        settings.vocab_limit, xla)
    token = tf.where(finished, pad, token)  # finished rows keep padding
    batch = tf.shape(tokens)[0]
    where = tf.stack([tf.range(batch), tf.fill([batch], column)], axis=1)
    tokens = tf.tensor_scatter_nd_update(tokens, where, token)
    ended = tf.logical_not(finished) & tf.equal(token, settings.eot_token) & (s < settings.max_new_tokens)
    return tokens, finished | ended, tf.where(ended, prompt_length + s + 1, lengths)


def _going(settings: Settings, s, finished):
    return (s < settings.max_new_tokens) & tf.logical_not(tf.reduce_all(finished))


def cached_steps(model, logits, cache, prompt_length, context_length, settings: Settings, xla=True):
    """The tokens sampled while the context fits in block_size: token 0 from the prefill's
    logits, each later token s from token s - 1 alone at position context_length + s - 1,
    attending over the cache. All shapes are fixed by the batch size, so that XLA compiles this
    once per batch size whatever the prompt length, max_new_tokens and sampling settings.
    xla False: for a graph without XLA (the cache written in place, see GPT.call_with_cache).

    Returns (new, s, finished, lengths): new (B, block_size) int32 holds token s at column s
    (padding after the last one sampled), s the number of tokens sampled, and the rows' state."""
    batch = tf.shape(logits)[0]
    block_size = model.config.block_size
    new = tf.fill([batch, block_size], tf.maximum(settings.eot_token, 0))
    lengths = tf.fill([batch], prompt_length + settings.max_new_tokens)
    new, finished, lengths = _emit(settings, 0, logits, new, 0, tf.zeros([batch], tf.bool), lengths, prompt_length,
                                   xla)

    def step(s, new, finished, lengths, cache):
        logits, cache = model.call_with_cache(tf.slice(new, [0, s - 1], [-1, 1]), cache, context_length + s - 1,
                                              in_place=not xla)
        return (s + 1, *_emit(settings, s, logits, new, s, finished, lengths, prompt_length, xla), cache)

    s, new, finished, lengths, _ = tf.while_loop(
        lambda s, new, finished, *_: _going(settings, s, finished) & (context_length + s <= block_size),
        step, (tf.constant(1), new, finished, lengths, cache))
    return new, s, finished, lengths


def prefill_and_steps(model, context, context_length, prompt_length, settings: Settings, xla=True):
    """The prefill, then `cached_steps`. context (B, P): the (cropped) prompt in its first
    context_length columns, then padding (P == context_length: none): the prefill runs all P
    positions through the model, which writes them into the cache, and samples token 0 from
    the logits at position context_length - 1 (see GPT.call_with_cache's `last`). xla False:
    for a graph without XLA (see `cached_steps`)."""
    cache = model.empty_cache(tf.shape(context)[0], in_place=not xla)
    logits, cache = model.call_with_cache(context, cache, 0, last=context_length - 1, in_place=not xla)
    return cached_steps(model, logits, cache, prompt_length, context_length, settings, xla)


def prompt_buckets(block_size: int):
    """The padded prompt lengths of the serving graph: powers of two, then block_size."""
    return [1 << i for i in range(block_size.bit_length()) if 1 << i < block_size] + [block_size]


def bucketed(xla_prefill_and_steps, block_size: int):
    """`prefill_and_steps` for a context of any length, through one XLA function: the context is
    padded to the next of `prompt_buckets`, so that XLA, which compiles a function for each shape
    it is called with, compiles only the buckets that are used, each once per batch size, on its
    first call. (The function is traced once, its length unknown: a bucket costs the export nothing.)"""
    buckets = tf.constant(prompt_buckets(block_size))

    def run(context, context_length, prompt_length, settings):
        size = tf.gather(buckets, tf.reduce_sum(tf.cast(buckets < context_length, tf.int32)))
        padded = tf.pad(context, [[0, 0], [0, size - context_length]])
        return xla_prefill_and_steps(padded, context_length, prompt_length, settings)

    return run


def decode_loop(model, idx, max_new_tokens, temperature, top_k, top_p, seed, eot_token, vocab_limit,
                decode=None, xla=True):
    """The whole generation as graph ops (call it inside a tf.function). idx (B, T) int32, the
    other arguments scalars: temperature 0 = greedy, top_k 0 = off, top_p 1 = off, eot_token -1
    = no stop, vocab_limit = the number of ids that may be sampled. Returns (tokens, lengths).

    decode: `prefill_and_steps` as the caller compiles it (the serving graph passes `bucketed`
    XLA functions: their shapes fixed while the prompt's length is not); None runs it inline.
    xla: whether XLA compiles the graph this builds (False: the cache is written in place and
    top_k takes TensorFlow's kernel, see `cached_steps` and `sample_next`).

    The cache is the (n_layer, B, n_head, block_size, head_size) keys and values split by layer
    (GPT.empty_cache): one tensor per layer's keys and values, so that no update touches the
    others (XLA updates in place; without XLA, GPT.call_with_cache(in_place=True) does)."""
    block_size = model.config.block_size
    settings = Settings(max_new_tokens, temperature, top_k, top_p, seed, eot_token, vocab_limit)
    idx = tf.cast(idx, tf.int32)
    batch, t = tf.shape(idx)[0], tf.shape(idx)[1]
    pad = tf.maximum(eot_token, 0)

    # The prefill runs the (cropped) prompt through the model and fills the cache. For a prompt
    # longer than block_size it is exactly the forward of the window nanoGPT crops.
    context = idx[:, -block_size:]
    context_length = tf.shape(context)[1]
    new, s, finished, lengths = (decode or functools.partial(prefill_and_steps, model, xla=xla))(
        context, context_length, t, settings)
    cached = tf.minimum(max_new_tokens, block_size - context_length + 1)  # the tokens new can hold
    out = tf.concat([idx, new[:, :cached], tf.fill([batch, max_new_tokens - cached], pad)], axis=1)

    # Steps past block_size: every position of the window has moved, so the whole window runs
    # through the model (see the module's docstring). The loop is left out when static sizes
    # show it never runs: XLA could not cut a block_size window out of a shorter buffer.
    static_t, static_n = idx.shape[1], tf.get_static_value(max_new_tokens)
    if static_t is None or static_n is None or static_t + static_n - 1 > block_size:
        def window_step(s, out, finished, lengths):
            # tf.slice with a constant size: XLA compiles no dynamically sized window
            window = tf.slice(out, [0, t + s - block_size], [-1, block_size])
            return (s + 1, *_emit(settings, s, last_logits(model, window), out, t + s, finished, lengths, t, xla))

        _, out, _, lengths = tf.while_loop(lambda s, out, finished, lengths: _going(settings, s, finished),
                                           window_step, (s, out, finished, lengths))
    return out, lengths


def _assert_args(model, max_new_tokens, temperature, top_k, top_p, eot_token, vocab_limit):
    """The argument checks of `check_args`, as graph assertions for a serving signature."""
    vocab = model.config.vocab_size
    return [
        tf.debugging.assert_greater_equal(max_new_tokens, 0, message="max_new_tokens must be >= 0"),
        tf.debugging.assert_greater_equal(temperature, 0.0, message="temperature must be >= 0"),
        tf.debugging.assert_greater_equal(top_k, 0, message="top_k must be >= 0 (0: no top-k cut)"),
        tf.debugging.assert_greater(top_p, 0.0, message="top_p must be in (0, 1]"),
        tf.debugging.assert_less_equal(top_p, 1.0, message="top_p must be in (0, 1]"),
        tf.debugging.assert_less(eot_token, vocab, message=f"eot_token must be < vocab_size {vocab} (-1: none)"),
        tf.debugging.assert_greater_equal(eot_token, -1, message="eot_token must be >= -1 (-1: none)"),
        tf.debugging.assert_less_equal(vocab_limit, vocab, message=f"vocab_limit must be <= vocab_size {vocab}"),
        tf.debugging.assert_greater(vocab_limit, 0, message="vocab_limit must be > 0"),
    ]


SERVING_SIGNATURE = [
    tf.TensorSpec([None, None], tf.int32, name="idx"),
    tf.TensorSpec([], tf.int32, name="max_new_tokens"),
    tf.TensorSpec([], tf.float32, name="temperature"),
    tf.TensorSpec([], tf.int32, name="top_k"),
    tf.TensorSpec([], tf.float32, name="top_p"),
    tf.TensorSpec([], tf.int64, name="seed"),
    tf.TensorSpec([], tf.int32, name="eot_token"),
    tf.TensorSpec([], tf.int32, name="vocab_limit"),
]


def serving_function(model, jit_compile: bool = True) -> tf.types.experimental.GenericFunction:
    """A tf.function with SERVING_SIGNATURE (every shape and setting a tensor, so one graph
    serves all calls), returning {"tokens": (B, T + max_new_tokens) int32, "lengths": (B,) int32}.
    Out-of-range ids and settings fail with InvalidArgumentError naming the argument. Prompts
    longer than block_size are cropped by the loop itself. For a SavedModel:
        module.generate = serving_function(model)
        tf.saved_model.save(module, path, signatures={"generate": module.generate})

    jit_compile: the prefill and the decoding steps within block_size (`prefill_and_steps`) are
    one XLA function, the prompt padded to a bucket of lengths (`bucketed`; saved with
    _XlaMustCompile, compiled on first use in the process that loads the model, once per bucket
    and batch size); only the
    steps past block_size, whose window moves, stay in the plain graph. False: no XLA at all."""
    # autograph=False here and in serving/export.py: the decoding is TensorFlow ops with explicit
    # tf.while_loop and tf.cond, so AutoGraph's conversion would only add seconds to every export.
    decode = None
    if jit_compile:
        @tf.function(jit_compile=True, autograph=False)
        def xla_prefill_and_steps(context, context_length, prompt_length, settings):
            return prefill_and_steps(model, context, context_length, prompt_length, settings)

        decode = bucketed(xla_prefill_and_steps, model.config.block_size)

    @tf.function(input_signature=SERVING_SIGNATURE, autograph=False)
    def generate(idx, max_new_tokens, temperature, top_k, top_p, seed, eot_token, vocab_limit):
        checks = _assert_args(model, max_new_tokens, temperature, top_k, top_p, eot_token, vocab_limit)
        checks += [
            tf.debugging.assert_greater(tf.shape(idx)[1], 0, message="idx: the prompt is empty"),
            tf.debugging.assert_non_negative(idx, message="idx: token ids must be >= 0"),
            tf.debugging.assert_less(idx, model.config.vocab_size,
                                     message=f"idx: token ids must be < vocab_size {model.config.vocab_size}"),
        ]
        with tf.control_dependencies(checks):
            idx = tf.identity(idx)
        tokens, lengths = decode_loop(model, idx, max_new_tokens, temperature, top_k, top_p, seed,
                                      eot_token, vocab_limit, decode=decode, xla=False)
        return {"tokens": tokens, "lengths": lengths}

    return generate


# generate(jit_compile=None) and runner.py sample's --compile=None decode with XLA up to this many
# parameters per layer and in the graph without XLA above (the export's serving_loop=auto measures
# the two instead, serving/choose.py: a compilation more is nothing to an export, much to a sample).
# On a CPU a decoding step reads every weight once: XLA's matrix-vector product runs on one core,
# while TensorFlow's (oneDNN's) uses all of them but its step costs ~0.6 ms a layer in ops besides.
# Models of small layers are bound by that cost (the 10.7M shakespeare_char model, 1.8M a layer: XLA
# 2.1x faster), models of large layers by the weights' reads (GPT-2 124M, 10.4M a layer: the graph
# 1.4x faster; 30M in 6 layers, 5M a layer: even; BENCHMARKS.md).
XLA_LOOP_MAX_PARAMS_PER_LAYER = 4_000_000


def uses_xla(model, loop: str) -> bool:
    """Whether `model` decodes with XLA when its loop is `loop` ("xla", "graph", or "auto": by the
    size of its layers, XLA_LOOP_MAX_PARAMS_PER_LAYER)."""
    if loop not in SERVING_LOOPS:
        raise ValueError(f"loop must be one of {list(SERVING_LOOPS)}, got {loop!r}")
    if loop == "auto":
        return model.get_num_params(non_embedding=False) <= XLA_LOOP_MAX_PARAMS_PER_LAYER * model.config.n_layer
    return loop == "xla"


# --------------------------------------------------------------------------------------------
# the Python API


class _Args(NamedTuple):
    idx: np.ndarray  # (B * num_samples, T) int32
    temperature: float
    top_k: int  # 0: off
    top_p: float  # 1.0: off
    seed: int
    eot_token: int  # -1: none
    vocab_limit: int


def check_args(model, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, seed=None,
               eot_token=None, vocab_limit=None, num_samples=1) -> _Args:
    """Validate generation arguments, raising ValueError/TypeError that names the argument, and
    bring them to the form the compiled loop takes. idx (T,) or (B, T); each row is repeated
    num_samples times (rows b*num_samples .. b*num_samples+num_samples-1 are prompt b's samples)."""
    vocab = model.config.vocab_size
    idx = np.asarray(idx.numpy() if isinstance(idx, tf.Tensor) else idx)
    if idx.ndim == 1:
        idx = idx[None, :]
    if idx.ndim != 2:
        raise ValueError(f"idx: expected token ids of shape (T,) or (B, T), got shape {idx.shape}")
    if idx.size and not np.issubdtype(idx.dtype, np.integer):
        raise TypeError(f"idx: expected integer token ids, got {idx.dtype}")
    if idx.shape[1] == 0 or idx.shape[0] == 0:
        raise ValueError("idx: the prompt is empty; generation needs at least one token "
                         "(nanoGPT's sample.py starts from '\\n')")
    if idx.min() < 0 or idx.max() >= vocab:
        raise ValueError(f"idx: token ids must be in [0, {vocab}), got {idx.min()}..{idx.max()}")

    def is_int(x):
        return isinstance(x, (int, np.integer)) and not isinstance(x, bool)

    if not is_int(max_new_tokens) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
    if not is_int(num_samples) or num_samples < 1:
        raise ValueError(f"num_samples must be an integer >= 1, got {num_samples!r}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float, np.floating)) \
            or not np.isfinite(temperature) or temperature < 0:
        raise ValueError(f"temperature must be a finite number >= 0 (0: greedy), got {temperature!r}")
    if top_k is not None and (not is_int(top_k) or top_k < 1):
        raise ValueError(f"top_k must be None (off) or an integer >= 1, got {top_k!r}")
    if top_p is not None and (isinstance(top_p, bool) or not isinstance(top_p, (int, float, np.floating))
                              or not 0.0 < top_p <= 1.0):
        raise ValueError(f"top_p must be None (off) or in (0, 1], got {top_p!r}")
    if seed is not None and (not is_int(seed) or not 0 <= seed < 2 ** 63):
        raise ValueError(f"seed must be None (random) or an integer in [0, 2**63), got {seed!r}")
    if eot_token is not None and (not is_int(eot_token) or not 0 <= eot_token < vocab):
        raise ValueError(f"eot_token must be None or a token id in [0, {vocab}), got {eot_token!r}")
    if vocab_limit is not None and (not is_int(vocab_limit) or not 0 < vocab_limit <= vocab):
        raise ValueError(f"vocab_limit must be None or an integer in [1, {vocab}], got {vocab_limit!r}")
    return _Args(idx=np.repeat(idx.astype(np.int32), num_samples, axis=0),
                 temperature=float(temperature), top_k=int(top_k or 0),
                 top_p=float(1.0 if top_p is None else top_p),
                 seed=int(secrets.randbelow(2 ** 63) if seed is None else seed),
                 eot_token=-1 if eot_token is None else int(eot_token),
                 vocab_limit=int(vocab if vocab_limit is None else vocab_limit))


class KVCacheGenerator:
    """The compiled cached loop for one model. jit_compile=False: one graph for every batch, prompt
    length and max_new_tokens (the serving function without XLA). jit_compile=True: the whole loop
    by XLA, compiled once per (batch, prompt length, max_new_tokens), since XLA needs static sizes."""

    def __init__(self, model, jit_compile: bool = False):
        self.model = model
        self.jit_compile = jit_compile
        if jit_compile:
            self._fn = tf.function(
                lambda idx, n, *rest: decode_loop(model, idx, n, *rest), jit_compile=True)
        else:
            serve = serving_function(model, jit_compile=False)
            self._fn = lambda *args: tuple(serve(*args).values())

    def __call__(self, args: _Args, max_new_tokens: int) -> Generation:
        n = max_new_tokens if self.jit_compile else tf.constant(max_new_tokens, tf.int32)
        tokens, lengths = self._fn(
            tf.constant(args.idx), n, tf.constant(args.temperature, tf.float32),
            tf.constant(args.top_k, tf.int32), tf.constant(args.top_p, tf.float32),
            tf.constant(args.seed, tf.int64), tf.constant(args.eot_token, tf.int32),
            tf.constant(args.vocab_limit, tf.int32))
        return Generation(tokens.numpy(), lengths.numpy())


# One compiled generator per (model, jit_compile), dropped with the model.
_generators: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def generate(model, idx, max_new_tokens: int, temperature: float = 1.0, top_k: Optional[int] = None,
             top_p: Optional[float] = None, seed: Optional[int] = None, eot_token: Optional[int] = None,
             vocab_limit: Optional[int] = None, num_samples: int = 1, jit_compile: Optional[bool] = None,
             weights: str = "float32") -> Generation:
    """Continue the prompt(s) idx ((T,) or (B, T) token ids) by max_new_tokens tokens, with the
    key/value cache. temperature 0: greedy. top_k: keep the k most likely tokens (nanoGPT's).
    top_p: nucleus sampling. seed: reproducible sampling (None: a random seed). eot_token: rows
    stop at it (and are padded with it). vocab_limit: never sample ids >= vocab_limit (the
    tokenizer's vocabulary when the model's is padded). num_samples: samples per prompt.
    weights: "bfloat16" decodes with a copy of the model whose matmul weights are bfloat16
    (serving/weights.py, made once per model: later changes to the model's weights are not seen).
    jit_compile: True, the whole loop by XLA (compiled per batch, prompt length and
    max_new_tokens); False, TensorFlow's own kernels (one graph for all); None, the faster of
    the two on a CPU for the model's size (`uses_xla`)."""
    args = check_args(model, idx, max_new_tokens, temperature, top_k, top_p, seed, eot_token,
                      vocab_limit, num_samples)
    if jit_compile is None:
        jit_compile = uses_xla(model, "auto")
    per_model = _generators.setdefault(model, {})
    if (jit_compile, weights) not in per_model:
        per_model[(jit_compile, weights)] = KVCacheGenerator(with_weights(model, weights), jit_compile)
    return per_model[(jit_compile, weights)](args, max_new_tokens)


def generate_uncached(model, idx, max_new_tokens: int, temperature: float = 1.0,
                      top_k: Optional[int] = None, top_p: Optional[float] = None,
                      seed: Optional[int] = None, eot_token: Optional[int] = None,
                      vocab_limit: Optional[int] = None, num_samples: int = 1) -> Generation:
    """nanoGPT's generate(): a Python loop that crops the context to its last block_size tokens
    and runs it through the whole model for each new token. Same arguments and same sampling as
    `generate` (the same seed gives the same tokens), so it is the reference for the cache."""
    args = check_args(model, idx, max_new_tokens, temperature, top_k, top_p, seed, eot_token,
                      vocab_limit, num_samples)
    forward = _uncached_forward(model)
    block_size = model.config.block_size
    tokens = args.idx
    batch, t = tokens.shape
    finished = np.zeros(batch, bool)
    lengths = np.full(batch, t + max_new_tokens, np.int32)
    pad = max(args.eot_token, 0)
    for step in range(max_new_tokens):
        if finished.all():
            tokens = np.concatenate([tokens, np.full((batch, t + max_new_tokens - tokens.shape[1]), pad,
                                                     np.int32)], axis=1)
            break
        # if the sequence context is growing too long we must crop it at block_size
        idx_cond = tokens[:, -block_size:]
        logits = forward(tf.constant(idx_cond))
        token = sample_next(logits, args.seed, step, args.temperature, args.top_k, args.top_p,
                            args.vocab_limit, xla=False).numpy()  # eager: top_k by TensorFlow's kernel
        token = np.where(finished, pad, token)
        ended = ~finished & (token == args.eot_token)
        lengths[ended] = t + step + 1
        finished |= ended
        tokens = np.concatenate([tokens, token[:, None]], axis=1)
    return Generation(tokens, lengths)


_uncached_forwards: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _uncached_forward(model):
    """The model's forward as one graph for any (B, T): nanoGPT runs its forward op by op, which
    TensorFlow's eager mode does far slower than PyTorch, so a graph keeps the baseline honest."""
    if model not in _uncached_forwards:
        _uncached_forwards[model] = tf.function(
            lambda ids: last_logits(model, ids), input_signature=[tf.TensorSpec([None, None], tf.int32)])
    return _uncached_forwards[model]
