"""Full definition of a GPT language model in TensorFlow.

It follows nanoGPT's model.py, which follows OpenAI's GPT-2 and Hugging Face's implementation.
Its ops as a CPU wants them (LayerNorm and GELU with their gradients written out) are
model/kernels.py's, the key/value cache of call_with_cache model/kv_cache.py's.
Variables carry GPT-2's own names (wte, wpe, h.N.attn.c_attn, ln_f, ...) so that checkpoints map
one to one onto Hugging Face's GPT-2 (see `model/hf_checkpoint.py`).

The model is a plain `tf.Module`: variables live in float32 and, under a mixed-precision policy,
are cast to the compute dtype where they are used (the same thing a Keras mixed policy does).
Unlike nanoGPT's forward(idx, targets), calling it returns the logits of every position only; the
loss is `cross_entropy` below (an evaluation's skips the gradient the training step's writes).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Dict, Optional

import tensorflow as tf

from model import hf_checkpoint, kernels, kv_cache
from model.kernels import is_one, sizes
from model.presets import GPT2_SIZES, PADDED_VOCAB_SIZE

# Compute dtypes by policy name (the names Keras uses for its mixed-precision policies).
DTYPE_POLICIES = {
    "float32": tf.float32,
    "mixed_bfloat16": tf.bfloat16,
    "mixed_float16": tf.float16,
}


@dataclasses.dataclass
class GPTConfig:
    block_size: int = 1024
    vocab_size: int = PADDED_VOCAB_SIZE
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True  # True: biases in Linears and LayerNorms, like GPT-2. False: a bit better and faster

    def __post_init__(self):
        for name in ("block_size", "vocab_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"GPTConfig.{name} must be a positive integer, got {value!r}")
        if self.n_embd % self.n_head != 0:
            raise ValueError(
                f"GPTConfig.n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"GPTConfig.dropout must be in [0, 1), got {self.dropout!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class LayerNorm(tf.Module):
    """LayerNorm with an optional bias (TF's and Keras' LayerNorm always have one)."""

    def __init__(self, ndim: int, bias: bool, name=None):
        super().__init__(name=name)
        self.weight = tf.Variable(tf.ones([ndim]), name="weight")
        self.bias = tf.Variable(tf.zeros([ndim]), name="bias") if bias else None

    def __call__(self, x, training=False):
        # Normalise in float32 even under mixed precision: variance in bfloat16 is too coarse.
        params = (self.weight,) if self.bias is None else (self.weight, self.bias)
        y = kernels.layer_norm(tf.cast(x, tf.float32), *[tf.convert_to_tensor(p) for p in params], trained=training)
        return tf.cast(y, x.dtype)


class Linear(tf.Module):
    """y = x @ W + b with W stored (in, out), the layout of GPT-2's Conv1D."""

    def __init__(self, n_in: int, n_out: int, bias: bool, normal, std: float = 0.02, name=None):
        super().__init__(name=name)
        self.weight = tf.Variable(normal([n_in, n_out], std), name="weight")
        self.bias = tf.Variable(tf.zeros([n_out]), name="bias") if bias else None

    def __call__(self, x, one_row=False):
        """one_row: x holds one position a row, a decoding step (see kernels.matmul_last_axis)."""
        return kernels.matmul_last_axis(x, tf.cast(self.weight, x.dtype), bias=self.bias, one_row=one_row)


class Embedding(tf.Module):
    def __init__(self, num: int, dim: int, normal, name=None):
        super().__init__(name=name)
        self.weight = tf.Variable(normal([num, dim], 0.02), name="weight")

    def __call__(self, ids):
        # A gather from the variable's value, not from the variable (ResourceGather): a sparse read
        # puts a variable in copy-on-read mode, after which every read of it copies it, and the
        # tied lm_head reads wte at every decoding step (154 MB for GPT-2).
        return tf.gather(tf.convert_to_tensor(self.weight), ids)


def _dropout(x, rate: float, training: bool):
    return tf.nn.dropout(x, rate=rate) if training and rate > 0.0 else x


class CausalSelfAttention(tf.Module):
    def __init__(self, config: GPTConfig, normal, name=None):
        super().__init__(name=name)
        # key, query, value projections for all heads, in one matmul
        self.c_attn = Linear(config.n_embd, 3 * config.n_embd, config.bias, normal, name="c_attn")
        # output projection; scaled init per GPT-2 paper: it adds into the residual stream
        self.c_proj = Linear(config.n_embd, config.n_embd, config.bias, normal,
                             std=0.02 / math.sqrt(2 * config.n_layer), name="c_proj")
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.dropout = config.dropout

    def qkv(self, x):
        """Queries, keys and values for all heads, each (B, nh, T, hs)."""
        B, T, C = sizes(x)
        nh = self.n_head
        if is_one(T):  # one position: (B, 1, 3C) -> 3 x (B, nh, 1, hs) by reshapes alone
            return [tf.reshape(t, [B, nh, 1, C // nh]) for t in tf.split(self.c_attn(x, one_row=True), 3, axis=-1)]
        # (B, T, 3C) -> (3, B, nh, T, hs): one transpose for the three (~2.5% of a training step
        # against a split and three transposes, whose gradients are three transposes and a concat)
        qkv = tf.reshape(self.c_attn(x), [B, T, 3, nh, C // nh])
        return tf.unstack(tf.transpose(qkv, [2, 0, 3, 1, 4]))

    def attend(self, q, k, v, mask, training=False):
        """Attention of queries q over keys k and values v where mask (Tq, Tk) is True (None: all
        of them), then the output projection: (B, Tq, C)."""
        # (B, nh, Tq, hs) x (B, nh, hs, Tk) -> (B, nh, Tq, Tk); softmax in float32 because under
        # mixed precision bf16/fp16 scores lose too much
        att = tf.cast(tf.matmul(q, k, transpose_b=True), tf.float32) * (1.0 / math.sqrt(q.shape[-1]))
        if mask is not None:  # -inf added where masked (tf.where before: the same scores, ~1% slower a step)
            att = att + tf.where(mask, 0.0, float("-inf"))
        att = tf.cast(tf.nn.softmax(att, axis=-1), q.dtype)
        att = _dropout(att, self.dropout, training)
        if q.shape[2] == 1 and v.dtype == tf.bfloat16:
            # a decoding step: XLA's CPU backend has no bfloat16 dot for one query row per head
            y = tf.cast(tf.matmul(tf.cast(att, tf.float32), tf.cast(v, tf.float32)), v.dtype)
        else:
            y = tf.matmul(att, v)  # (B, nh, Tq, hs)
        B, _, Tq, _ = sizes(y)
        if not is_one(Tq):
            y = tf.transpose(y, [0, 2, 1, 3])
        y = tf.reshape(y, [B, Tq, self.n_embd])  # re-assemble all heads
        return _dropout(self.c_proj(y, one_row=is_one(Tq)), self.dropout, training)

    def __call__(self, x, training=False, cache=None, slots=None):
        """Self-attention of x (B, T, C), causal. With a layer's cache (keys, values) and the
        forward's `slots` (model/kv_cache.py), x's rows are the positions slots.positions: their
        keys and values are written into the cache, their queries attend over the positions up
        to their own, and the result is (y, updated cache)."""
        q, k, v = self.qkv(x)
        if cache is None:
            return self.attend(q, k, v, causal_mask(tf.shape(x)[1]), training=training)
        cache, (keys, values) = kv_cache.write(cache, k, v, slots)
        return self.attend(q, keys, values, slots.mask, training=training), cache


def causal_mask(t):
    """(t, t) booleans: position i may attend to positions j <= i only."""
    return tf.linalg.band_part(tf.ones([t, t], tf.bool), -1, 0)


class MLP(tf.Module):
    def __init__(self, config: GPTConfig, normal, name=None):
        super().__init__(name=name)
        self.c_fc = Linear(config.n_embd, 4 * config.n_embd, config.bias, normal, name="c_fc")
        self.c_proj = Linear(4 * config.n_embd, config.n_embd, config.bias, normal,
                             std=0.02 / math.sqrt(2 * config.n_layer), name="c_proj")
        self.dropout = config.dropout

    def __call__(self, x, training=False):
        h = tf.reshape(x, [-1, x.shape[-1]])  # (B * T, C): one reshape each way for both products
        one_row = is_one(sizes(x)[1])
        h = kernels.gelu(self.c_fc(h, one_row=one_row), trained=training)
        return tf.reshape(_dropout(self.c_proj(h, one_row=one_row), self.dropout, training), sizes(x))


class Block(tf.Module):
    """A pre-LayerNorm transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, config: GPTConfig, normal, name=None):
        super().__init__(name=name)
        self.ln_1 = LayerNorm(config.n_embd, config.bias, name="ln_1")
        self.attn = CausalSelfAttention(config, normal, name="attn")
        self.ln_2 = LayerNorm(config.n_embd, config.bias, name="ln_2")
        self.mlp = MLP(config, normal, name="mlp")

    def __call__(self, x, training=False, cache=None, slots=None):
        """The block's output; with a cache (see CausalSelfAttention), (output, updated cache)."""
        if cache is None:
            x = x + self.attn(self.ln_1(x, training), training=training)
            return x + self.mlp(self.ln_2(x, training), training=training)
        y, cache = self.attn(self.ln_1(x, training), training=training, cache=cache, slots=slots)
        x = x + y
        return x + self.mlp(self.ln_2(x, training), training=training), cache


class GPT(tf.Module):
    def __init__(self, config: GPTConfig, dtype_policy: str = "float32", seed: Optional[int] = None,
                 name="gpt"):
        super().__init__(name=name)
        if dtype_policy not in DTYPE_POLICIES:
            raise ValueError(f"dtype_policy must be one of {sorted(DTYPE_POLICIES)}, got {dtype_policy!r}")
        self.config = config
        self.dtype_policy = dtype_policy
        self.compute_dtype = DTYPE_POLICIES[dtype_policy]
        # initial weights from a generator of their own when seeded (else TensorFlow's global one)
        generator = tf.random.Generator.from_seed(seed) if seed is not None else tf.random.get_global_generator()

        def normal(shape, stddev):
            return generator.normal(shape, mean=0.0, stddev=stddev, dtype=tf.float32)

        with self.name_scope:
            self.wte = Embedding(config.vocab_size, config.n_embd, normal, name="wte")
            self.wpe = Embedding(config.block_size, config.n_embd, normal, name="wpe")
            self.h = [Block(config, normal, name=f"h_{i}") for i in range(config.n_layer)]
            self.ln_f = LayerNorm(config.n_embd, config.bias, name="ln_f")
        # The LM head is tied to wte (weight tying, https://paperswithcode.com/method/weight-tying):
        # logits = x @ wte^T, so there is no separate lm_head variable at all (serving/weights.py's
        # bfloat16 copy adds a zero bias, lm_head_bias, for the sake of a faster kernel).
        self.lm_head_bias = None

    # ----------------------------------------------------------------------------------------
    # forward

    # Plain TensorFlow ops without Python control flow on tensors: AutoGraph, which a tf.function
    # applies to what it calls (the training step's), would only convert it, ~0.9 s a trace.
    @tf.autograph.experimental.do_not_convert
    def __call__(self, idx, training=False):
        """Logits (B, T, vocab_size) in float32 for int token ids idx of shape (B, T). training:
        dropout on, and LayerNorm and GELU with their gradients written out (model/kernels.py)."""
        idx = tf.convert_to_tensor(idx)
        if not idx.dtype.is_integer:
            raise TypeError(f"GPT expects integer token ids, got a {idx.dtype.name} tensor")
        if idx.shape.rank is not None and idx.shape.rank != 2:
            raise ValueError(f"GPT expects token ids of shape (batch, time), got shape {idx.shape}")
        self._check_length(idx)
        idx = self._check_token_range(idx)
        x = _dropout(self._embed(idx, tf.range(tf.shape(idx)[1])), self.config.dropout, training)
        for block in self.h:
            x = block(x, training=training)
        return self._lm_head(x, training)

    def _embed(self, idx, positions):
        """Token + position embeddings (B, T, n_embd) in the compute dtype."""
        return tf.cast(self.wte(idx) + self.wpe(positions), self.compute_dtype)

    def _lm_head(self, x, training=False):
        """Logits in float32 of hidden states x (..., n_embd), through ln_f and the tied head."""
        x = self.ln_f(x, training)
        logits = kernels.matmul_last_axis(x, tf.cast(self.wte.weight, x.dtype), bias=self.lm_head_bias,
                                          transpose_w=True)
        return tf.cast(logits, tf.float32)

    # ----------------------------------------------------------------------------------------
    # inference with a key/value cache (serving/generate.py runs the decoding loop)

    def empty_cache(self, batch, in_place=False):
        """A key/value cache for `batch` rows (model/kv_cache.py): per layer (keys, values), each
        (batch, n_head, block_size, head_size) zeros in the compute dtype; in_place: buffers of its
        own for call_with_cache(in_place=True)."""
        return kv_cache.empty(self.config, self.compute_dtype, batch, in_place)

    def call_with_cache(self, idx, cache, cache_index, last=None, in_place=False):
        """The logits (B, vocab_size) float32 of the last position of idx (B, T), and the cache.

        With a cache (see empty_cache), idx holds the positions cache_index..cache_index+T-1
        (T is the prompt's length for the prefill, 1 for a decoding step): their keys and values
        are written into the cache and each attends over the positions up to its own; returns the
        updated cache. With cache None, the full forward of idx from position 0 (nanoGPT's
        uncached step); returns None for the cache. Only the last position goes through ln_f and
        the head, as in nanoGPT's inference-time forward. No argument checks (the caller's).

        last: the index in idx of the position whose logits are returned (a scalar, possibly a
        tensor), for a prompt padded to a fixed length: the padding positions after it are
        written into the cache too, where the decoding steps overwrite them before any query
        sees them (each query attends only up to its own position). None: the last position.

        in_place: the cache is written in its own buffers, for a graph without XLA (model/kv_cache.py;
        the cache from empty_cache(in_place=True))."""
        if cache is None:
            x = self._embed(idx, tf.range(tf.shape(idx)[1]))
            for block in self.h:
                x = block(x)
            return self._lm_head(self._at(x, last)), None
        slots = kv_cache.slots(self.config, idx, cache_index, in_place)
        x = self._embed(idx, slots.positions)
        updated = []
        for block, layer_cache in zip(self.h, cache):
            x, layer_cache = block(x, cache=layer_cache, slots=slots)
            updated.append(layer_cache)
        return self._lm_head(self._at(x, last)), tuple(updated)

    @staticmethod
    def _at(x, position):
        """x (B, T, C) at one position (None: the last), (B, C)."""
        return x[:, -1, :] if position is None else tf.gather(x, position, axis=1)

    def _check_length(self, idx):
        t = idx.shape[1]
        if t is not None and t > self.config.block_size:
            raise ValueError(f"Cannot forward a sequence of length {t}: "
                             f"block_size is only {self.config.block_size}")

    def _check_token_range(self, idx):
        """idx, once it is known to hold valid ids: tf.gather on a GPU returns zeros for
        out-of-range ids instead of failing, and XLA clamps them, so check first."""
        if tf.executing_eagerly():
            hi, lo = int(tf.reduce_max(idx)), int(tf.reduce_min(idx))
            if hi >= self.config.vocab_size or lo < 0:
                bad = hi if hi >= self.config.vocab_size else lo
                raise ValueError(f"Token id {bad} is outside the vocabulary [0, {self.config.vocab_size})")
            return idx
        if kernels.in_xla_compilation():
            # XLA drops Assert ops (a warning for each at every compilation): a compiled step's ids are
            # checked where they come from (the training data's before the run, training/data.py)
            return idx
        checks = [
            tf.debugging.assert_less_equal(
                tf.shape(idx)[1], self.config.block_size,
                message=f"Cannot forward a sequence longer than block_size {self.config.block_size}"),
            tf.debugging.assert_less(idx, tf.cast(self.config.vocab_size, idx.dtype),
                                     message=f"Token ids must be < vocab_size {self.config.vocab_size}"),
            tf.debugging.assert_non_negative(idx, message="Token ids must be >= 0"),
        ]
        with tf.control_dependencies(checks):
            return tf.identity(idx)

    # ----------------------------------------------------------------------------------------
    # parameters

    def named_variables(self) -> Dict[str, tf.Variable]:
        """The model's variables under GPT-2's PyTorch names (h.0.attn.c_attn.weight, ...)."""
        out = {"wte.weight": self.wte.weight, "wpe.weight": self.wpe.weight}
        for i, block in enumerate(self.h):
            parts = {"ln_1": block.ln_1, "attn.c_attn": block.attn.c_attn, "attn.c_proj": block.attn.c_proj,
                     "ln_2": block.ln_2, "mlp.c_fc": block.mlp.c_fc, "mlp.c_proj": block.mlp.c_proj}
            for name, layer in parts.items():
                out[f"h.{i}.{name}.weight"] = layer.weight
                if layer.bias is not None:
                    out[f"h.{i}.{name}.bias"] = layer.bias
        out["ln_f.weight"] = self.ln_f.weight
        if self.ln_f.bias is not None:
            out["ln_f.bias"] = self.ln_f.bias
        return out

    def get_num_params(self, non_embedding: bool = True) -> int:
        """Number of parameters. As in nanoGPT, non_embedding excludes the position embeddings;
        the token embeddings count, because they are also the LM head's weights."""
        n = sum(int(v.shape.num_elements()) for v in self.named_variables().values())
        if non_embedding:
            n -= int(self.wpe.weight.shape.num_elements())
        return n

    def parameter_groups(self):
        """(decay, no_decay): weight decay applies to every 2-D and higher tensor (matmul weights,
        embeddings), not to biases and LayerNorm gains, as nanoGPT's configure_optimizers does."""
        named = self.named_variables()
        decay = [v for v in named.values() if v.shape.rank >= 2]
        no_decay = [v for v in named.values() if v.shape.rank < 2]
        return decay, no_decay

    def crop_block_size(self, block_size: int):
        """Model surgery to shrink the block size, e.g. to use a GPT-2 checkpoint (1024) with a
        smaller context. Only the position embeddings depend on it."""
        if not 0 < block_size <= self.config.block_size:
            raise ValueError(f"crop_block_size: {block_size} must be in (0, {self.config.block_size}]")
        self.config = dataclasses.replace(self.config, block_size=block_size)
        self.wpe.weight = tf.Variable(self.wpe.weight[:block_size], name="weight")

    def estimate_mfu(self, tokens_per_iter: int, dt: float, peak_flops: float) -> float:
        """Model FLOPs utilization: achieved FLOP/s over peak_flops, per the PaLM paper's
        6N + 12*L*H*Q*T FLOPs per token for the forward and backward pass (NaN without a peak).
        nanoGPT's takes sequences per iteration and an A100's 312 TFLOP/s; here one device's tokens
        per iteration and that device's own peak (training/devices.py)."""
        cfg = self.config
        n = self.get_num_params()
        flops_per_token = 6 * n + 12 * cfg.n_layer * cfg.n_head * (cfg.n_embd // cfg.n_head) * cfg.block_size
        return flops_per_token * tokens_per_iter / dt / peak_flops if peak_flops else float("nan")

    # ----------------------------------------------------------------------------------------
    # Hugging Face GPT-2 checkpoints (their format is hf_checkpoint.py's)

    @classmethod
    def from_pretrained(cls, name_or_dir: str, **overrides) -> "GPT":
        """A GPT with the weights of gpt2/gpt2-medium/gpt2-large/gpt2-xl from the hub, or of the
        Hugging Face GPT-2 checkpoint in a local directory. Overrides: dropout, block_size (crops
        the context), dtype_policy."""
        hf_checkpoint.check_overrides(name_or_dir, overrides)
        directory, fields, weights = hf_checkpoint.read_gpt2(name_or_dir, GPT2_SIZES)
        config = GPTConfig(**fields, dropout=overrides.get("dropout", 0.0))
        model = cls(config, dtype_policy=overrides.get("dtype_policy", "float32"))
        hf_checkpoint.assign_weights(model.named_variables(), weights, directory)
        if overrides.get("block_size", config.block_size) < config.block_size:
            model.crop_block_size(overrides["block_size"])
        return model

    def save_pretrained(self, directory: str, tokenizer_json: Optional[dict] = None) -> None:
        """This model as a Hugging Face GPT2LMHeadModel checkpoint, which transformers loads; with the
        tokens it reads (tokenizer_json: model/tokenizer.py's to_json) in hf_files.HF_TOKENIZER_FILE, as a
        character model's cannot be read without its table."""
        hf_checkpoint.write_gpt2(directory, self.config, self.named_variables(), tokenizer_json)


def cross_entropy(logits, targets, ignore_index: int = -1, num_targets=None, differentiated: bool = True):
    """Mean cross-entropy over all positions whose target is not ignore_index (nanoGPT uses -1).
    With num_targets (counted_targets of a whole batch), the summed loss of this part of the batch
    over the whole batch's count: the parts of a batch then add up to its mean. differentiated=False
    (an evaluation): each target's log-softmax instead of sparse_softmax_cross_entropy_with_logits,
    which writes its gradient beside the loss, as large as the logits (2.8x the time with GPT-2's
    vocabulary); the same values to float rounding."""
    mask = tf.not_equal(targets, ignore_index)
    safe_targets = tf.where(mask, targets, tf.zeros_like(targets))
    if differentiated:
        losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=safe_targets, logits=logits)
    else:
        losses = -tf.gather(tf.nn.log_softmax(logits), safe_targets, batch_dims=len(targets.shape))
    if num_targets is None:
        num_targets = counted_targets(targets, ignore_index)
    return tf.reduce_sum(losses * tf.cast(mask, losses.dtype)) / num_targets


def counted_targets(targets, ignore_index: int = -1):
    """How many targets a mean loss divides by (at least 1, so that an all-ignored batch gives 0)."""
    return tf.maximum(tf.reduce_sum(tf.cast(tf.not_equal(targets, ignore_index), tf.float32)), 1.0)

