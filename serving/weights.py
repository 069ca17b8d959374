"""A GPT for inference with its matmul weights in another precision (the pushed model's
serving_weights, runner.py sample --weights)."""

from __future__ import annotations

import tensorflow as tf

from model.model import GPT
from model.presets import WEIGHT_DTYPES


def with_weights(model: GPT, weights: str) -> GPT:
    """The model for inference with its matmul weights and embeddings (the 2-D variables)
    stored in `weights`: "float32" is the model itself; "bfloat16" is a copy under the
    mixed_bfloat16 policy whose 2-D variables are bfloat16, half the bytes a decoding step
    reads. LayerNorm gains and biases stay float32; LayerNorm, softmax and the logits are
    computed in float32, as under any mixed policy. The copy does not follow later updates."""
    if weights not in WEIGHT_DTYPES:
        raise ValueError(f"weights must be one of {list(WEIGHT_DTYPES)}, got {weights!r}")
    if weights == "float32":
        return model
    copy = GPT(model.config, dtype_policy="mixed_bfloat16", seed=0, name=model.name)
    for source, target in zip(model.submodules, copy.submodules):
        for attribute in ("weight", "bias"):
            value = getattr(source, attribute, None)
            if isinstance(value, tf.Variable):
                dtype = tf.bfloat16 if value.shape.rank == 2 else tf.float32
                setattr(target, attribute, tf.Variable(tf.cast(value, dtype), name=attribute))
    # A zero bias for the head: oneDNN runs a product with a bias (MatMul + BiasAdd, which
    # TensorFlow fuses into one kernel) of a single bfloat16 row more than twice as fast as
    # the plain MatMul (BENCHMARKS.md). A variable, so that no graph pass folds it away.
    copy.lm_head_bias = tf.Variable(tf.zeros([model.config.vocab_size], tf.bfloat16), name="lm_head_bias")
    return copy
