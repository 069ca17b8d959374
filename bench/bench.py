"""Benchmarks that print figures (never asserted by tests).

$ python -m bench.bench shakespeare_char [--text_file=PATH] [--rng=tensorflow] [--key=value ...]
    nanoGPT's "I only have a macbook" run on characters, from nanoGPT's own random draws (its
    initial weights and batches for its seed 1337, rng='nanogpt'; --rng=tensorflow: this engine's
    draws); last line: ms_per_iter=<median> val_loss=<at the last iter> iters=<n>
$ python -m bench.bench gpt2_124m [--dtype=bfloat16] [--max_iters=N] [--batch_size=B] ...
    GPT-2 124M (block 1024) on random tokens: ms/iter and MFU (use --peak_flops for the device)
$ python -m bench.bench vs_nanogpt --torch_python=PATH [--isa=avx2|avx512|avx512_bf16] [--rounds=2] [--key=value ...]
    the shakespeare_char run here and nanoGPT's in PyTorch (bench.nanogpt_parity --nanogpt_only,
    in PATH, a Python that has PyTorch and NumPy), interleaved: here, nanoGPT, here, nanoGPT, ...
    each a fresh process; --isa=avx2 makes both use no instruction past AVX2 (oneDNN's, MKL's and
    PyTorch's own dispatch capped), as an AVX2-only CPU would (--isa=avx512: AVX-512 without BF16;
    avx512_bf16: without AMX); last line:
    ms_per_iter_here=<fastest> ms_per_iter_nanogpt=<fastest> ratio=<here/nanogpt> isa=<isa>
$ python -m bench.bench input [--memmap] [--batch_size=B --block_size=T ...]
    the input pipeline alone: tokens/s it delivers, against what the shakespeare_char run consumes
    (--memmap: windows read from a memory-mapped file, the path of splits too large for memory)
$ python -m bench.bench token_cache [--tokens=20000000] [--shards=4] [--rounds=3] [--text_file=PATH]
    the token cache of a large split (training/data.py): made from its shards on a machine that has
    none (a fresh pod), then opened by a restart; Tiny Shakespeare's GPT-2 BPE tokens cut into
    documents, written as TokenizeText's shards; last line: made_s=<fastest> opened_s=<fastest>
    tokens_per_s=<made> openwebtext_minutes=<9B tokens at that pace> cores=<os.cpu_count()> (OpenWebText's
    shards hold ~1.9 bytes a token, these fewer: its pace is lower than this one's)
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

import numpy as np


def _quiet():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def shakespeare_char(argv):
    from training.config import make_config, parse_overrides
    from training.corpus import tiny_shakespeare
    from training.train import Trainer

    overrides = parse_overrides(argv)
    overrides["text_file"] = tiny_shakespeare(overrides.get("text_file") or None)
    with tempfile.TemporaryDirectory() as out_dir:
        cfg = make_config("shakespeare_char", **{"out_dir": out_dir, "log_interval": 1, "rng": "nanogpt",
                                                     "tensorboard": False, **overrides})
        trainer = Trainer(cfg)
        result = trainer.run()
    ms = float(np.median(trainer.iter_ms))
    print(f"ms_per_iter={ms:.2f} val_loss={result['val']:.4f} iters={cfg.max_iters}")


def gpt2_124m(argv):
    from core import shards
    from training.config import make_config, parse_overrides
    from training.train import Trainer

    overrides = parse_overrides(argv)
    defaults = dict(dtype="bfloat16", compile=True, batch_size=12, gradient_accumulation_steps=1,
                    max_iters=30, eval_interval=10 ** 9, eval_iters=1, log_interval=1, tensorboard=False,
                    warmup_iters=10, lr_decay_iters=30, vocab_size=50304)
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        for split, n in (("train", 2_000_000), ("val", 100_000)):
            shards.write_split(shards.split_dir(tmp, split), [rng.integers(0, 50257, n)])
        cfg = make_config("owt_gpt2_124m", **{**defaults, "out_dir": os.path.join(tmp, "out"),
                                              "data_dir": tmp, **overrides})
        trainer = Trainer(cfg)
        trainer.estimate_loss = lambda: {"train": float("nan"), "val": float("nan")}  # timing only
        trainer.run()
    timed = trainer.iter_ms[5:] or trainer.iter_ms  # the first iterations include warm-up
    ms = float(np.median(timed))
    tokens = cfg.batch_size * cfg.gradient_accumulation_steps * cfg.block_size
    mfu = trainer.model.estimate_mfu(tokens // trainer.replicas, ms / 1000, cfg.peak_flops)
    print(f"tokens_per_iter={tokens} peak_flops={cfg.peak_flops:.3g} mfu={mfu * 100:.2f}%")
    print(f"ms_per_iter={ms:.2f} val_loss=nan iters={cfg.max_iters}")


# What caps every library at an older CPU's instructions on a CPU that has more: oneDNN (TensorFlow's
# and PyTorch's), MKL (PyTorch's products) and PyTorch's own kernels. avx2: an AVX2-only CPU;
# avx512: AVX-512 without BF16 (Intel's Skylake to Cascade Lake); avx512_bf16: with BF16 but no AMX
# (AMD's Zen 4).
ISA_ENV = {"avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"},
           "avx512": {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE", "MKL_ENABLE_INSTRUCTIONS": "AVX512",
                      "ATEN_CPU_CAPABILITY": "avx512"},
           "avx512_bf16": {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16", "MKL_ENABLE_INSTRUCTIONS": "AVX512",
                           "ATEN_CPU_CAPABILITY": "avx512"}}


def vs_nanogpt(argv):
    options = {"torch_python": os.environ.get("NANOGPT_TFX_TORCH_PYTHON", ""), "isa": "native", "rounds": "2"}
    rest = []
    for arg in argv:
        key, _, value = arg.lstrip("-").partition("=")
        if key in options:
            options[key] = value
        else:
            rest.append(arg)
    if not options["torch_python"]:
        raise SystemExit("vs_nanogpt: name a Python that has PyTorch and NumPy with --torch_python=PATH "
                         "(or NANOGPT_TFX_TORCH_PYTHON)")
    if options["isa"] not in ("native", *ISA_ENV):
        raise SystemExit(f"vs_nanogpt: --isa={options['isa']} is not one of native, {', '.join(ISA_ENV)}")
    env = {**os.environ, **ISA_ENV.get(options["isa"], {})}
    commands = {"here": [sys.executable, "-m", "bench.bench", "shakespeare_char", *rest],
                "nanogpt": [options["torch_python"], "-m", "bench.nanogpt_parity", "--nanogpt_only", *rest]}
    ms = {side: [] for side in commands}
    for r in range(int(options["rounds"])):
        for side, command in commands.items():
            done = subprocess.run(command, env=env, capture_output=True, text=True)
            last = done.stdout.strip().splitlines()[-1:] or [""]
            if done.returncode or not last[0].startswith("ms_per_iter="):
                raise SystemExit(f"vs_nanogpt: {' '.join(command)} failed:\n{done.stderr[-2000:]}")
            print(f"round {r} {side}: {last[0]}", flush=True)
            ms[side].append(float(last[0].split()[0].split("=")[1]))
    here, nanogpt = min(ms["here"]), min(ms["nanogpt"])
    print(f"ms_per_iter_here={here:.2f} ms_per_iter_nanogpt={nanogpt:.2f} ratio={here / nanogpt:.3f} "
          f"isa={options['isa']}")


def input_pipeline(argv):
    from training.config import make_config, parse_overrides
    from training.corpus import tiny_shakespeare
    from training.data import TokenStream
    from model.tokenizer import CharTokenizer

    memmap = "--memmap" in argv  # read windows from a memory-mapped cache file, as for large splits
    overrides = parse_overrides([a for a in argv if a != "--memmap"])
    cfg = make_config("shakespeare_char", **overrides)
    with open(tiny_shakespeare(overrides.get("text_file") or None), encoding="utf-8") as f:
        text = f.read()
    tokens = np.array(CharTokenizer.from_text(text).encode(text), np.uint16)
    with tempfile.TemporaryDirectory() as tmp:
        if memmap:
            path = os.path.join(tmp, "tokens.bin")
            tokens.tofile(path)
            tokens = np.memmap(path, dtype=np.uint16, mode="r")
        _time_input(TokenStream(tokens, cfg.block_size, "train"), cfg)


def _time_input(stream, cfg) -> None:
    dataset = stream.train_dataset(batch_size=cfg.batch_size, accumulation_steps=cfg.gradient_accumulation_steps,
                                   seed=cfg.seed, start_step=0)
    iterator = iter(dataset)
    for _ in range(50):
        next(iterator)
    n = 2000
    t0 = time.time()
    for _ in range(n):
        xs, _ = next(iterator)
    dt = time.time() - t0
    tokens_per_step = int(np.prod(xs.shape))
    print(f"input_tokens_per_s={tokens_per_step * n / dt:.0f} steps_per_s={n / dt:.0f} "
          f"tokens_per_step={tokens_per_step}")


def token_cache(argv):
    from core import shards
    from model.tokenizer import GPT2Tokenizer
    from training import data
    from training.corpus import tiny_shakespeare

    options = {"tokens": "20000000", "shards": "4", "rounds": "3", "text_file": ""}
    for arg in argv:
        key, _, value = arg.lstrip("-").partition("=")
        if key not in options:
            raise SystemExit(f"token_cache: unknown option {arg} (one of {', '.join(options)})")
        options[key] = value
    with open(tiny_shakespeare(options["text_file"] or None), encoding="utf-8") as f:
        text = np.array(GPT2Tokenizer().encode(f.read()), np.int64)
    rng = np.random.default_rng(0)

    def documents():  # OpenWebText's are ~1,000 tokens; up to 20,000 here, each ending in <|endoftext|>
        made = 0
        while made < int(options["tokens"]):
            length = int(rng.integers(500, 20_000))
            start = int(rng.integers(0, len(text) - length))
            made += length + 1
            yield np.append(text[start:start + length], GPT2Tokenizer.eot_token)

    with tempfile.TemporaryDirectory() as tmp:
        shards.write_split(shards.split_dir(tmp, "train"), documents(), num_shards=int(options["shards"]))
        shard_bytes = sum(os.path.getsize(p) for p in shards.shard_files(shards.split_dir(tmp, "train")))
        made, opened = [], []
        for r in range(int(options["rounds"])):
            os.environ[data.TOKEN_CACHE_ENV] = os.path.join(tmp, f"cache-{r}")  # none yet: a fresh machine's
            for times in (made, opened):
                started = time.perf_counter()
                tokens = data.load_split(tmp, "train", in_memory_max_tokens=0, log=lambda *_: None)
                times.append(time.perf_counter() - started)
            print(f"round {r}: made_s={made[-1]:.3f} opened_s={opened[-1]:.4f}", flush=True)
    rate = len(tokens) / min(made)
    print(f"tokens={len(tokens)} shards={options['shards']} shard_bytes_per_token={shard_bytes / len(tokens):.2f} "
          f"made_s={min(made):.3f} opened_s={min(opened):.4f} "
          f"tokens_per_s={rate:.3g} openwebtext_minutes={9e9 / rate / 60:.1f} cores={os.cpu_count()}")


BENCHMARKS = {"shakespeare_char": shakespeare_char, "gpt2_124m": gpt2_124m, "vs_nanogpt": vs_nanogpt,
              "input": input_pipeline, "token_cache": token_cache}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in BENCHMARKS:
        print(__doc__)
        raise SystemExit(f"usage: python -m bench.bench {{{','.join(BENCHMARKS)}}} [--key=value ...]")
    _quiet()
    BENCHMARKS[argv[0]](argv[1:])


if __name__ == "__main__":
    main()
