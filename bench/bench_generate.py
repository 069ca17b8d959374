"""Benchmark of generation: in process, served from a SavedModel, in bfloat16, against transformers
and nanoGPT's uncached loop.

$ python -m bench.bench_generate [--new_tokens=256] [--prompt_tokens=16] [--batch=1] [--rounds=2]
                                 [--hf=True] [--uncached=True] [--bfloat16=True] [--isa=avx2|avx512|avx512_bf16]
                                 [--n_layer=12 --n_head=12 --n_embd=768 --vocab_size=50257 --block_size=1024]

A GPT-2 124M-shaped model (random weights, vocab 50257, block 1024, float32; the --n_* options, --vocab_size
and --block_size give another shape) continues a random
16-token prompt by 256 tokens, sampling as nanoGPT's sample.py does by default (temperature 0.8,
top_k 200, one seed), in the same process:
  cached, XLA        `generate(jit_compile=True)`: the whole loop compiled by XLA
  served, XLA        the SavedModel the Pusher exports (serving/export.py), saved, loaded from disk
                     and its `generate` signature called as a client would, with
                     `serving_loop=xla`: its prefill and decoding steps one XLA function per
                     prompt-length bucket
  served, graph      the same with `serving_loop=graph`: TensorFlow's own kernels, no XLA (the
                     cache written in place, oneDNN's products on every core)
  served             the faster of the two (the default `serving_loop=auto` measures both at
                     the export and exports the faster: serving/choose.py)
  served, bfloat16   the export with bfloat16 weights (`serving_weights=bfloat16`, its loop auto)
  served, auto       the export with `serving_weights=auto` and `serving_loop=auto`: the fastest
                     of the four measured at the export (its choice and figures printed; float32
                     weights only with --bfloat16=False)
  transformers       TFGPT2LMHeadModel loaded from the project's Hugging Face export
                     (`model.save_pretrained`) and its `generate` under tf.function(jit_compile=True)
  uncached           `generate_uncached`: nanoGPT's loop, the whole cropped context through the
                     model for every token (one graph for every length)
Each path is called once to compile (that first call's time is printed), then the cached paths
are timed in turn for --rounds rounds, best time each (the machine's load moves). The
project's float32 paths produce the same tokens from the same seed, which is checked. The last
line is
    cached_tokens_per_s=<x> uncached_tokens_per_s=<y> speedup=<x/y> served_tokens_per_s=<s>
    hf_tokens_per_s=<h> served_vs_hf=<s/h> served_bf16_tokens_per_s=<b> bf16_vs_float32=<b/x>
    served_xla_tokens_per_s=<a> served_graph_tokens_per_s=<g> served_auto_tokens_per_s=<u>
    auto=<weights>,<loop> weight_bytes_per_token=<n> read_gb_per_s=<r> served_vs_wall=<s/wall>
    served_bf16_vs_wall=<b/bfloat16 wall> isa=<--isa>
in tokens generated per second over all rows (one line). --isa caps oneDNN (bench.bench ISA_ENV) as on
an older CPU: avx2 (AVX2 only), avx512 (AVX-512 without BF16: Skylake to Cascade Lake), avx512_bf16
(without AMX: AMD's Zen 4). TensorFlow itself still sees this CPU's flags and XLA compiles for them;
under avx2 TensorFlow would send bfloat16 products to oneDNN, which the cap leaves without a kernel
(the process aborts), so the bfloat16 paths are left out: an AVX2-only CPU multiplies bfloat16 in
TensorFlow's generic kernels, which `TF_ENABLE_ONEDNN_OPTS=0` measures (float32 then without oneDNN
too). --hf=False, --uncached=False and --bfloat16=False leave those paths out (their figures print as
nan), e.g. for a quick batch-8 comparison of served and in-process.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
import time

import numpy as np

from bench.bench import ISA_ENV
from core import settings

SAMPLING = dict(temperature=0.8, top_k=200, seed=1337)  # nanoGPT sample.py's defaults


def _timed(fn):
    t0 = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - t0


def _best_of(paths: dict, total: int, rounds: int) -> dict:
    """{name: (result, seconds)}: each path's best time over `rounds` calls taken in turn (the
    machine's load moves; alternating keeps the ratios fair), after a first call that compiles."""
    best = {}
    for name, fn in paths.items():
        _, first_s = _timed(fn)
        print(f"{name}: first call, with compilation, {first_s:.1f} s", flush=True)
    for _ in range(rounds):
        for name, fn in paths.items():
            result, seconds = _timed(fn)
            if name not in best or seconds < best[name][1]:
                best[name] = (result, seconds)
    for name, (_, seconds) in best.items():
        print(f"{name}: {total / seconds:.2f} tokens/s (best of {rounds}: {seconds:.2f} s)", flush=True)
    return best


def _served(model, directory, prompt, n, weights, loop):
    """A client's call of the exported SavedModel's generate signature, as a function."""
    import tensorflow as tf

    from serving import describe_export
    from serving.export import export_record, export_saved_model

    export_saved_model(model, directory, {"kind": "gpt2"}, weights=weights, loop=loop)
    if "auto" in (weights, loop):
        print(f"export of serving_weights={weights} serving_loop={loop}: {describe_export(export_record(directory))}",
              flush=True)
    signature = tf.saved_model.load(directory).signatures["generate"]
    settings = dict(max_new_tokens=tf.constant(n), temperature=tf.constant(SAMPLING["temperature"]),
                    top_k=tf.constant(SAMPLING["top_k"]), top_p=tf.constant(1.0),
                    seed=tf.constant(SAMPLING["seed"], tf.int64), eot_token=tf.constant(-1),
                    vocab_limit=tf.constant(model.config.vocab_size))
    return lambda: signature(idx=tf.constant(prompt, tf.int32), **settings)["tokens"].numpy()


def _read_weights(model):
    """The weights one decoding step reads whole at batch 1: every matmul weight, and wte (the tied
    head multiplies by all of it); of wpe, as of the embedding's gather, a row only."""
    return [layer.weight for layer in model.submodules
            if getattr(layer, "weight", None) is not None and layer.weight.shape.rank == 2
            and layer is not model.wpe]


def weight_bytes_per_token(model) -> int:
    """The bytes of weights one decoding step reads at batch 1."""
    return weights_bytes(_read_weights(model))


def weights_bytes(weights) -> int:
    """The bytes that the tensors `weights` hold."""
    return sum(int(w.shape.num_elements()) * w.dtype.size for w in weights)


def read_gb_per_s(model, rounds: int = 5) -> float:
    """How fast these cores read the weights a decoding step of `model` reads (`weights_read_gb_per_s`)."""
    return weights_read_gb_per_s(_read_weights(model), rounds)


def weights_read_gb_per_s(weights, rounds: int = 5) -> float:
    """How fast these cores read `weights` (tf.Variables): their bytes summed once per call (a read
    of each byte and little arithmetic, TensorFlow's ops sharing out the cores as the step's products
    do), as 32-bit floats and as 32-bit integers (2-byte weights two to a word), whichever reads
    faster on this CPU (on the Xeon the float sum: 21.5 GB/s against the integer sum's 16.9); the best
    of `rounds` calls, in GB/s (1e9 bytes)."""
    import tensorflow as tf

    def words(w, dtype):  # the weight's bytes as 32-bit words
        return tf.bitcast(tf.reshape(w, [-1, 4 // w.dtype.size]), dtype) if w.dtype.size < 4 else \
            tf.bitcast(w, dtype)

    nbytes = weights_bytes(weights)
    rates = []
    for dtype in (tf.float32, tf.int32):
        read = tf.function(lambda dtype=dtype: tf.add_n([tf.reduce_sum(words(w, dtype)) for w in weights]))
        read()
        rates += [nbytes / _timed(read)[1] for _ in range(rounds)]
    return max(rates) / 1e9


def _transformers(model, directory, prompt, n):
    """transformers' XLA generate on the model's weights, through the project's Hugging Face export."""
    import tensorflow as tf
    from transformers import TFGPT2LMHeadModel
    from transformers.utils import logging

    logging.set_verbosity_error()
    model.save_pretrained(directory)
    hf = TFGPT2LMHeadModel.from_pretrained(directory)
    xla_generate = tf.function(hf.generate, jit_compile=True)
    ids = tf.constant(prompt, tf.int32)
    # eos_token_id=None: no stop, so that every row gets all n tokens, as on the other paths
    return lambda: xla_generate(ids, max_new_tokens=n, do_sample=True, temperature=SAMPLING["temperature"],
                                top_k=SAMPLING["top_k"], seed=[SAMPLING["seed"], 0], eos_token_id=None,
                                pad_token_id=0).numpy()


@dataclasses.dataclass
class BenchGenerateConfig:
    new_tokens: int = settings.setting(256, "tokens generated after the prompt", minimum=1)
    prompt_tokens: int = settings.setting(16, "tokens of the random prompt", minimum=1)
    batch: int = settings.setting(1, "prompts generated side by side", minimum=1)
    hf: bool = settings.setting(True, "measure transformers' TFGPT2LMHeadModel XLA generate too")
    uncached: bool = settings.setting(True, "measure nanoGPT's uncached loop too")
    bfloat16: bool = settings.setting(True, "measure the bfloat16 export too")
    n_layer: int = settings.setting(12, "layers (the default shape is GPT-2 124M's)", minimum=1)
    n_head: int = settings.setting(12, "attention heads", minimum=1)
    n_embd: int = settings.setting(768, "embedding width", minimum=1)
    vocab_size: int = settings.setting(50257, "vocabulary", minimum=1)
    block_size: int = settings.setting(1024, "context length", minimum=1)
    rounds: int = settings.setting(2, "each path is timed this many times, best kept", minimum=1)
    isa: str = settings.setting("native", "oneDNN capped at an older CPU's instructions (bench.bench ISA_ENV): avx2 "
                                          "(float32 only), avx512 (no BF16), avx512_bf16 (no AMX)",
                                choices=("native", *ISA_ENV))

    def __post_init__(self):
        settings.check(self)


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    opts = dataclasses.asdict(settings.command_line(
        "python -m bench.bench_generate", sys.argv[1:] if argv is None else argv,
        lambda args: BenchGenerateConfig(**settings.parse_overrides(args, BenchGenerateConfig)),
        lambda prog: f"usage: {prog} [--key=value ...]\n\n" + settings.help_listing(BenchGenerateConfig, "options")))
    os.environ.update(ISA_ENV.get(opts["isa"], {}))  # before TensorFlow loads oneDNN
    if opts["isa"] == "avx2" and opts["bfloat16"]:
        print("bfloat16: not measured with --isa=avx2 (no oneDNN kernel under the cap: the module docstring says "
              "why)", flush=True)
        opts["bfloat16"] = False
    from serving.generate import generate, generate_uncached
    from model.model import GPT, GPTConfig
    from training.devices import cpu_name

    n, p = opts["new_tokens"], opts["prompt_tokens"]
    total = n * opts["batch"]  # tokens generated by one call
    shape = {key: opts[key] for key in ("n_layer", "n_head", "n_embd", "vocab_size", "block_size")}
    model = GPT(GPTConfig(**shape), seed=0)
    prompt = np.random.default_rng(0).integers(0, shape["vocab_size"], (opts["batch"], p))
    print(f"GPT {shape} ({model.get_num_params(non_embedding=False) / 1e6:.2f}M params), float32, batch "
          f"{opts['batch']}, prompt {p} tokens, {n} new tokens, {SAMPLING}; {os.cpu_count()} CPUs of "
          f"{cpu_name()}, isa {opts['isa']}", flush=True)

    with tempfile.TemporaryDirectory() as scratch:
        paths = {"cached, XLA": lambda: generate(model, prompt, n, jit_compile=True, **SAMPLING).tokens,
                 "served, XLA": _served(model, os.path.join(scratch, "xla"), prompt, n, "float32", "xla"),
                 "served, graph": _served(model, os.path.join(scratch, "graph"), prompt, n, "float32", "graph")}
        if opts["bfloat16"]:
            paths["served, bfloat16"] = _served(model, os.path.join(scratch, "bf16"), prompt, n, "bfloat16", "auto")
        paths["served, auto"] = _served(model, os.path.join(scratch, "auto"), prompt, n,
                                        "auto" if opts["bfloat16"] else "float32", "auto")
        if opts["hf"]:
            paths["transformers, XLA"] = _transformers(model, os.path.join(scratch, "hf"), prompt, n)
        best = _best_of(paths, total, opts["rounds"])
        from serving.export import export_record

        auto = export_record(os.path.join(scratch, "auto"))
    best["served"] = min(best["served, XLA"], best["served, graph"], key=lambda found: found[1])
    (xla, xla_s), served_s = best["cached, XLA"], best["served"][1]
    served_bf16, bf16_s = best.get("served, bfloat16", (None, float("inf")))
    hf_s = best["transformers, XLA"][1] if opts["hf"] else float("inf")

    uncached, uncached_s = xla, float("inf")  # without the uncached loop, compare with the XLA tokens
    if opts["uncached"]:
        generate_uncached(model, prompt, 1, **SAMPLING)  # builds the forward graph
        uncached, uncached_s = _timed(lambda: generate_uncached(model, prompt, n, **SAMPLING).tokens)
        print(f"uncached (nanoGPT's loop): {total / uncached_s:.2f} tokens/s ({uncached_s:.2f} s)", flush=True)

    # the memory wall: the tokens/s at which these cores could merely read the weights a step reads
    from serving.weights import with_weights

    wall, read_rate = {}, {}
    for weights in ("float32", "bfloat16") if opts["bfloat16"] else ("float32",):
        served_model = with_weights(model, weights)
        nbytes, gb_per_s = weight_bytes_per_token(served_model), read_gb_per_s(served_model)
        wall[weights], read_rate[weights] = gb_per_s * 1e9 / nbytes * opts["batch"], gb_per_s
        print(f"memory wall, {weights} weights: {nbytes / 1e6:.1f} MB read per step, read at {gb_per_s:.2f} GB/s: "
              f"{wall[weights]:.2f} tokens/s", flush=True)

    reference = "uncached" if opts["uncached"] else "cached, XLA"
    for name, tokens in (("cached, XLA", xla), ("served, XLA", best["served, XLA"][0]),
                         ("served, graph", best["served, graph"][0]), ("served, bfloat16", served_bf16)):
        if tokens is None:
            continue
        same = int(np.sum(np.all(tokens == uncached, axis=0))) - p
        print(f"{name}: {same}/{n} new tokens identical to the {reference} float32 ones")
    rate = {name: total / seconds if seconds < float("inf") else float("nan") for name, seconds in
            dict(cached=xla_s, uncached=uncached_s, served=served_s, hf=hf_s, bf16=bf16_s,
                 served_xla=best["served, XLA"][1], served_graph=best["served, graph"][1],
                 served_auto=best["served, auto"][1]).items()}
    print(f"cached_tokens_per_s={rate['cached']:.2f} uncached_tokens_per_s={rate['uncached']:.2f} "
          f"speedup={rate['cached'] / rate['uncached']:.2f} served_tokens_per_s={rate['served']:.2f} "
          f"hf_tokens_per_s={rate['hf']:.2f} served_vs_hf={rate['served'] / rate['hf']:.2f} "
          f"served_bf16_tokens_per_s={rate['bf16']:.2f} bf16_vs_float32={rate['bf16'] / rate['cached']:.2f} "
          f"served_xla_tokens_per_s={rate['served_xla']:.2f} served_graph_tokens_per_s={rate['served_graph']:.2f} "
          f"served_auto_tokens_per_s={rate['served_auto']:.2f} "
          f"auto={auto['weights']},{auto['loop']} "
          f"weight_bytes_per_token={weight_bytes_per_token(model)} read_gb_per_s={read_rate['float32']:.2f} "
          f"served_vs_wall={rate['served'] / wall['float32']:.2f} "
          f"served_bf16_vs_wall={rate['bf16'] / wall.get('bfloat16', float('nan')):.2f} isa={opts['isa']}")


if __name__ == "__main__":
    main()
