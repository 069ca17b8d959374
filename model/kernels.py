"""The GPT's ops as a CPU wants them (model/model.py uses them; the math is GPT-2's).

Without XLA every op costs, and autodiff's many small ops cost more than their arithmetic: so
LayerNorm and GELU have their gradients written out (for training; graphs that are never
differentiated carry none), a 3-D input times a 2-D weight is one 2-D matmul, and reshapes take the
static sizes where they are known (shape arithmetic is most of the ops of a decoding step).
"""

from __future__ import annotations

import math

import tensorflow as tf


def layer_norm(x, weight, *bias, trained=False):
    """LayerNorm over the last axis (eps 1e-5, as GPT-2), bias optional. trained: with its gradient
    written out; a graph that is never differentiated (evaluation, serving) is better without the
    custom gradient, which a SavedModel would otherwise save beside every function that uses it."""
    return _layer_norm_trained(x, weight, *bias) if trained else _layer_norm(x, weight, *bias)[0]


def _layer_norm(x, weight, *bias):
    """(LayerNorm of x, x_hat, rstd): the forward and what its gradient reuses."""
    mean = tf.reduce_mean(x, axis=-1, keepdims=True)
    centered = x - mean
    rstd = tf.math.rsqrt(tf.reduce_mean(tf.square(centered), axis=-1, keepdims=True) + 1e-5)
    x_hat = centered * rstd
    return (x_hat * weight + bias[0] if bias else x_hat * weight), x_hat, rstd


@tf.custom_gradient
def _layer_norm_trained(x, weight, *bias):
    y, x_hat, rstd = _layer_norm(x, weight, *bias)

    def grad(dy):
        batch_axes = list(range(len(x.shape) - 1))
        dx_hat = dy * weight
        dx = rstd * (dx_hat - tf.reduce_mean(dx_hat, axis=-1, keepdims=True)
                     - x_hat * tf.reduce_mean(dx_hat * x_hat, axis=-1, keepdims=True))
        grads = [dx, tf.reduce_sum(dy * x_hat, axis=batch_axes)]
        return grads + [tf.reduce_sum(dy, axis=batch_axes)] if bias else grads

    return y, grad


_GELU_K = 2.0 * math.sqrt(2.0 / math.pi)


def gelu(x, trained=False):
    """GPT-2's tanh-approximated GELU (nanoGPT's nn.GELU() is the exact erf one; GPT-2 was trained with
    this, Hugging Face's "gelu_new"; they differ by < 1e-3), 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), written as
    x * sigmoid(2 sqrt(2/pi) (x + 0.044715 x^3)) (the same function); trained: with its gradient
    spelled out, which takes a third fewer ops than tf.nn.gelu and its autodiff (see layer_norm)."""
    return _gelu_trained(x) if trained else _gelu(x)[0]


def _gelu(x):
    """(GELU of x, the sigmoid, x^2): the forward and what its gradient reuses."""
    x2 = x * x
    s = tf.sigmoid(x * (_GELU_K + (_GELU_K * 0.044715) * x2))
    return x * s, s, x2


@tf.custom_gradient
def _gelu_trained(x):
    y, s, x2 = _gelu(x)

    def grad(dy):
        return dy * (s + x * s * (1.0 - s) * (_GELU_K + (3.0 * _GELU_K * 0.044715) * x2))

    return y, grad


def matmul_last_axis(x, w, bias=None, transpose_w=False, one_row=False):
    """x (..., n_in) @ w as one 2-D matmul. A 3-D x @ 2-D w would broadcast into a batched
    matmul, whose weight gradient TF computes per batch element and then sums: many times slower.

    one_row: x is one position a row (a decoding step). A float32 bias is then added as a 2-D
    tensor, which TensorFlow does not fuse into the product: TensorFlow's own fused MatMul +
    BiasAdd kernel multiplies a row far slower than its plain MatMul (GPT-2 124M served in float32
    without oneDNN: 26.5 tokens/s fused, 29.7 apart; with oneDNN the same either way; 2-core Xeon,
    one process). bfloat16 keeps the fused kernel, oneDNN's, which is the faster there."""
    y = tf.matmul(tf.reshape(x, [-1, x.shape[-1]]) if x.shape.rank != 2 else x, w, transpose_b=transpose_w)
    if bias is not None:
        bias = tf.cast(bias, y.dtype)
        y = y + bias[None, :] if one_row and y.dtype == tf.float32 else tf.nn.bias_add(y, bias)
    return y if x.shape.rank == 2 else tf.reshape(y, [*sizes(x)[:-1], y.shape[-1]])


def sizes(x):
    """x's shape for a reshape: the static sizes where known, -1 for the first axis when it alone
    is unknown (the batch), else tensors (ops) for the unknown ones."""
    static = x.shape.as_list()
    if None not in static[1:]:
        return [-1 if static[0] is None else static[0], *static[1:]]
    dynamic = tf.shape(x)
    return [dynamic[i] if size is None else size for i, size in enumerate(static)]


def is_one(size) -> bool:
    """Whether a size of `sizes` is statically 1 (a decoding step's single position)."""
    return isinstance(size, int) and size == 1


def in_xla_compilation() -> bool:
    """Whether the graph being traced is compiled by XLA (jit_compile), which drops Assert ops."""
    from tensorflow.python.ops import control_flow_util  # (TensorFlow's own test, not in its public API)

    return control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())
