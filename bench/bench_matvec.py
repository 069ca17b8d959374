"""Micro-benchmark of a decoding step's matrix-vector products: which kernel reads GPT-2's weights
fastest on this CPU, in float32, bfloat16 and int8.

$ python -m bench.bench_matvec [--steps=20] [--rounds=3] [--head=False]

The 48 matmul weights of GPT-2 124M (per layer c_attn 768x2304, c_proj 768x768, c_fc 768x3072,
mlp c_proj 3072x768; --head=True adds the tied lm_head, x @ wte^T with wte 50257x768), each
multiplied by one row (batch 1, as in a decoding step), chained so that no product can be
skipped, --steps times in a tf.while_loop inside one tf.function, for each kernel:
  float32, XLA               tf.function(jit_compile=True): XLA CPU's own matrix-vector emitter
  float32, plain graph       TensorFlow's MatMul kernel (oneDNN), no XLA
  bfloat16, plain graph      the same with bfloat16 weights and activations (oneDNN's bf16 kernel)
  int8, QuantizedMatMul      quint8 weights, the row quantized each product (tf.raw_ops)
  int8, oneDNN               qint8 weights, QuantizedMatMulWithBiasAndDequantize (oneDNN int8)
Prints steps/s per kernel (best of --rounds after a first call that compiles), then the bytes a
step reads at float32 and the float32 XLA figure's GB/s.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time

from core import settings

N_EMBD, N_LAYER, VOCAB = 768, 12, 50257


@dataclasses.dataclass
class BenchMatvecConfig:
    steps: int = settings.setting(20, "steps (48 products each) in one call", minimum=1)
    rounds: int = settings.setting(3, "each kernel is timed this many times, best kept", minimum=1)
    head: bool = settings.setting(False, "add the lm_head product (x @ wte^T) to every step")

    def __post_init__(self):
        settings.check(self)


def _kernels(tf, matrices):
    """{name: (product(x, j) -> x @ matrices[j] in float32, activation dtype, jit_compile)}."""
    f32 = [tf.Variable(m) for m in matrices]
    bf16 = [tf.Variable(tf.cast(m, tf.bfloat16)) for m in matrices]
    quint8, qint8 = [], []
    for m in matrices:
        q = tf.raw_ops.QuantizeV2(input=m, min_range=float(m.min()), max_range=float(m.max()), T=tf.quint8,
                                  mode="MIN_FIRST")
        quint8.append((tf.Variable(q.output), q.output_min, q.output_max))
        r = float(abs(m).max())
        q = tf.raw_ops.QuantizeV2(input=m, min_range=-r, max_range=r, T=tf.qint8, mode="SCALED")
        qint8.append((tf.Variable(q.output), q.output_min, q.output_max, tf.Variable(tf.zeros([m.shape[1]]))))

    def quantized_row(x):
        return tf.raw_ops.QuantizeV2(input=x, min_range=tf.minimum(tf.reduce_min(x), 0.0),
                                     max_range=tf.maximum(tf.reduce_max(x), 1e-6), T=tf.quint8, mode="MIN_FIRST")

    def quantized_matmul(x, j):
        w, w_min, w_max = quint8[j]
        xq = quantized_row(x)
        out = tf.raw_ops.QuantizedMatMul(a=xq.output, b=w, min_a=xq.output_min, max_a=xq.output_max,
                                         min_b=w_min, max_b=w_max, Toutput=tf.qint32)
        return tf.raw_ops.Dequantize(input=out.out, min_range=out.min_out, max_range=out.max_out, mode="MIN_FIRST")

    def onednn_int8(x, j):
        w, w_min, w_max, bias = qint8[j]
        xq = quantized_row(x)
        return tf.raw_ops.QuantizedMatMulWithBiasAndDequantize(
            a=xq.output, b=w, bias=bias, min_a=xq.output_min, max_a=xq.output_max, min_b=w_min, max_b=w_max,
            min_freezed_output=-1.0, max_freezed_output=1.0, Toutput=tf.float32, input_quant_mode="MIN_FIRST")

    return {"float32, XLA": (lambda x, j: tf.matmul(x, f32[j]), tf.float32, True),
            "float32, plain graph": (lambda x, j: tf.matmul(x, f32[j]), tf.float32, False),
            "bfloat16, plain graph": (lambda x, j: tf.matmul(x, bf16[j]), tf.bfloat16, False),
            "int8, QuantizedMatMul": (quantized_matmul, tf.float32, False),
            "int8, oneDNN": (onednn_int8, tf.float32, False)}


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    cfg = settings.command_line(
        "python -m bench.bench_matvec", sys.argv[1:] if argv is None else argv,
        lambda args: BenchMatvecConfig(**settings.parse_overrides(args, BenchMatvecConfig)),
        lambda prog: f"usage: {prog} [--key=value ...]\n\n" + settings.help_listing(BenchMatvecConfig, "options"))
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    shapes = [(N_EMBD, 3 * N_EMBD), (N_EMBD, N_EMBD), (N_EMBD, 4 * N_EMBD), (4 * N_EMBD, N_EMBD)] * N_LAYER
    matrices = [rng.standard_normal(shape, np.float32) * 0.02 for shape in shapes]
    wte = tf.Variable(rng.standard_normal((VOCAB, N_EMBD), np.float32) * 0.02) if cfg.head else None
    step_bytes = 4 * (sum(m.size for m in matrices) + (VOCAB * N_EMBD if cfg.head else 0))
    print(f"{len(matrices)} matrix-vector products a step{' and the lm_head' if cfg.head else ''}, "
          f"{step_bytes / 1e6:.0f} MB of float32 weights; {os.cpu_count()} CPUs", flush=True)

    results = {}
    for name, (product, dtype, jit_compile) in _kernels(tf, matrices).items():
        def step(x, product=product, dtype=dtype):
            h = x
            for j, m in enumerate(matrices):
                y = tf.cast(product(tf.cast(h, dtype), j), tf.float32)
                h = y[:, :N_EMBD] if m.shape[1] == 3 * N_EMBD else y  # c_attn: the queries go on
                if j % 4 == 3:  # the end of a block: the residual
                    x = x + 1e-3 * h
                    h = x
            if wte is not None:
                logits = tf.matmul(tf.cast(x, dtype), tf.cast(wte, dtype), transpose_b=True)
                x = x + 1e-6 * tf.cast(tf.reduce_max(logits), tf.float32)
            return x

        run = tf.function(lambda x, step=step: tf.while_loop(
            lambda i, x: i < cfg.steps, lambda i, x: (i + 1, step(x)), (0, x))[1], jit_compile=jit_compile)
        x = tf.fill([1, N_EMBD], 0.1)
        run(x).numpy()
        best = float("inf")
        for _ in range(cfg.rounds):
            t0 = time.perf_counter()
            run(x).numpy()
            best = min(best, time.perf_counter() - t0)
        results[name] = cfg.steps / best
        print(f"{name}: {results[name]:.1f} steps/s ({results[name] / results['float32, XLA']:.2f}x float32 XLA)",
              flush=True)
    print(f"float32, XLA reads {step_bytes * results['float32, XLA'] / 1e9:.1f} GB/s")


if __name__ == "__main__":
    main()
