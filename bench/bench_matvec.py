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
Prints steps/s per kernel (best of --rounds after a first call that compiles) and, for the float32
and bfloat16 kernels, the GB/s of weights they read and their share of the memory wall: the weights'
read by bench_generate's `weights_read_gb_per_s` on the same cores. With --head=True a step reads
what a decoding step of GPT-2 124M reads (bench_generate's weight_bytes_per_token), so the best
share is the ceiling of a served step made of these products, everything else in it free:
    float32_products_vs_wall=<best float32 kernel> bfloat16_products_vs_wall=<bfloat16> read_gb_per_s=<r>
(the head in bfloat16 as the served model has it: a bfloat16 copy of wte and a zero bias, oneDNN's
fused kernel; the int8 kernels' head is the float32 one).
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


def _kernels(tf, matrices, f32, bf16):
    """{name: (product(x, j) -> x @ matrices[j] in float32, activation dtype, jit_compile)}; f32 and
    bf16: the matrices as float32 and bfloat16 variables."""
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

    tf.get_logger().setLevel("ERROR")  # each kernel's loop is a tf.function of its own: no retracing warning

    from bench.bench_generate import weights_bytes, weights_read_gb_per_s
    from training.devices import cpu_name

    rng = np.random.default_rng(0)
    shapes = [(N_EMBD, 3 * N_EMBD), (N_EMBD, N_EMBD), (N_EMBD, 4 * N_EMBD), (4 * N_EMBD, N_EMBD)] * N_LAYER
    matrices = [rng.standard_normal(shape, np.float32) * 0.02 for shape in shapes]
    f32 = [tf.Variable(m) for m in matrices]
    bf16 = [tf.Variable(tf.cast(m, tf.bfloat16)) for m in matrices]
    if cfg.head:  # the tied head, x @ wte^T; in bfloat16 with the served model's zero bias
        wte = tf.Variable(rng.standard_normal((VOCAB, N_EMBD), np.float32) * 0.02)
        f32.append(wte)
        bf16.append(tf.Variable(tf.cast(wte, tf.bfloat16)))
        head_bias = tf.Variable(tf.zeros([VOCAB], tf.bfloat16))
    step_bytes = {tf.float32: weights_bytes(f32), tf.bfloat16: weights_bytes(bf16)}
    print(f"{len(matrices)} matrix-vector products a step{' and the lm_head' if cfg.head else ''}, "
          f"{step_bytes[tf.float32] / 1e6:.0f} MB of float32 weights; {os.cpu_count()} CPUs of {cpu_name()}",
          flush=True)

    def head(x, dtype):
        if dtype == tf.bfloat16:
            return tf.nn.bias_add(tf.matmul(tf.cast(x, dtype), bf16[-1], transpose_b=True), head_bias)
        return tf.matmul(x, f32[-1], transpose_b=True)

    results = {}
    for name, (product, dtype, jit_compile) in _kernels(tf, matrices, f32, bf16).items():
        def step(x, product=product, dtype=dtype):
            h = x
            for j, m in enumerate(matrices):
                y = tf.cast(product(tf.cast(h, dtype), j), tf.float32)
                h = y[:, :N_EMBD] if m.shape[1] == 3 * N_EMBD else y  # c_attn: the queries go on
                if j % 4 == 3:  # the end of a block: the residual
                    x = x + 1e-3 * h
                    h = x
            if cfg.head:
                x = x + 1e-6 * tf.cast(tf.reduce_max(head(x, dtype)), tf.float32)
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
        read = f", reads {step_bytes[dtype] * results[name] / 1e9:.1f} GB/s" if name.startswith(dtype.name) else ""
        print(f"{name}: {results[name]:.1f} steps/s ({results[name] / results['float32, XLA']:.2f}x float32 XLA)"
              f"{read}", flush=True)

    # the memory wall: steps/s at which these cores merely read the weights a step reads
    share, read_rate = {}, {}
    for dtype, weights in ((tf.float32, f32), (tf.bfloat16, bf16)):
        gb_per_s = read_rate[dtype.name] = weights_read_gb_per_s(weights)
        wall = gb_per_s * 1e9 / step_bytes[dtype]
        fastest = max(rate for name, rate in results.items() if name.startswith(dtype.name))
        share[dtype.name] = fastest / wall
        print(f"memory wall, {dtype.name}: {step_bytes[dtype] / 1e6:.0f} MB a step read at {gb_per_s:.2f} GB/s: "
              f"{wall:.1f} steps/s; the fastest {dtype.name} kernel {fastest:.1f}", flush=True)
    print(f"float32_products_vs_wall={share['float32']:.2f} bfloat16_products_vs_wall={share['bfloat16']:.2f} "
          f"read_gb_per_s={read_rate['float32']:.2f} head={cfg.head}")


if __name__ == "__main__":
    main()
