"""Throughput of TokenizeText against tiktoken itself, on the same text, in one run.

    python -m bench.bench_tokenize [--size_mb 50] [--workers 2]

Builds a corpus of about size_mb from Tiny Shakespeare's paragraphs (shuffled, grouped into documents
of about doc_kb, one file each), runs the component's executor end to end without its checks of the
data (planning, the Beam pipeline on the DirectRunner with `workers` workers, threads by default,
writing and publishing the shards) and
then tiktoken's encode_ordinary_batch over the same documents with `workers` threads, and the
component's own encoder alone (fastokens, model/tokenizer.py, one call per document on `workers`
threads, as the component calls it), alternately, `repeats` times, keeping each side's fastest run
(the machine may be shared); each repeat also runs the component with its checks of the data (the
duplicate pass and TFDV statistics, its default). The last line is `tokens_per_s=<component>
raw_tokens_per_s=<tiktoken> ratio=<component/tiktoken> checked_ratio=<checked component/tiktoken>
encoder_tokens_per_s=<fastokens alone> encoder_ratio=<component/fastokens alone>`; all count the
documents' BPE tokens (the component's end-of-text tokens are left out of its count), and the three
must count the same.

    python -m bench.bench_tokenize --huge_document_mb 100

instead pushes one document of that size through the component in process and reports the peak
memory, to show that a single huge document streams.

    python -m bench.bench_tokenize --checks [--size_mb 50]

instead times the component on the same corpus three ways, alternately, `repeats` times each
(fastest kept): plain (no statistics, no duplicate pass), with the duplicate pass (dedup), and with
the duplicate pass and TFDV statistics of the documents (the default); the last line is
`plain_s=<s> dedup_s=<s> checked_s=<s> checked_over_plain=<ratio>`.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.environ.get("NANOGPT_TFX_SHARED_DATA", os.path.join(REPO_ROOT, "..", "shared", "data"))


def build_corpus(directory: str, size_mb: float, doc_kb: float, seed: int = 0) -> list:
    """Writes documents of shuffled Shakespeare paragraphs; returns their texts."""
    with open(os.path.join(SHARED_DATA, "tinyshakespeare.txt"), encoding="utf-8") as f:
        paragraphs = [p for p in f.read().split("\n\n") if p.strip()]
    rng = random.Random(seed)
    texts, total, doc, doc_len = [], 0, [], 0
    while total < size_mb * 1e6:
        paragraph = rng.choice(paragraphs)
        doc.append(paragraph)
        doc_len += len(paragraph) + 2
        if doc_len >= doc_kb * 1e3:
            texts.append("\n\n".join(doc))
            total += len(texts[-1])
            doc, doc_len = [], 0
    for i, text in enumerate(texts):
        with open(os.path.join(directory, f"doc{i:06d}.txt"), "w", encoding="utf-8") as f:
            f.write(text)
    return texts


def run_component(input_pattern: str, out_dir: str, beam_args: list, statistics: bool = False, **props):
    """The executor's Examples and its time; statistics: with its ExampleStatistics output, as the
    pipeline runs it by default."""
    from tfx.dsl.components.base import base_beam_executor
    from tfx.types import standard_artifacts

    from components.tokenize_text.executor import Executor
    from components.tokenize_text.settings import TokenizeTextSettings

    examples = standard_artifacts.Examples()
    examples.uri = out_dir
    os.makedirs(out_dir, exist_ok=True)
    outputs = {"examples": [examples]}
    if statistics:
        outputs["statistics"] = [standard_artifacts.ExampleStatistics()]
        outputs["statistics"][0].uri = out_dir + "_statistics"
    context = base_beam_executor.BaseBeamExecutor.Context(beam_pipeline_args=beam_args,
                                                          tmp_dir=os.path.join(out_dir, ".tmp"))
    start = time.perf_counter()
    settings = TokenizeTextSettings(input_pattern=input_pattern, statistics=statistics, **props).to_json()
    Executor(context).Do({}, outputs, {"settings": settings})
    return examples, time.perf_counter() - start


def _corpus(args, work: str):
    """The corpus's folder and texts, the component's Beam arguments and settings."""
    corpus = os.path.join(work, "corpus")
    os.makedirs(corpus)
    texts = build_corpus(corpus, args.size_mb, args.doc_kb)
    print(f"corpus: {len(texts)} documents, {sum(map(len, texts)) / 1e6:.1f} MB in {corpus}", flush=True)
    beam_args = [f"--direct_num_workers={args.workers}", f"--direct_running_mode={args.running_mode}"]
    props = dict(tokenizer="gpt2", bpe_dir=args.bpe_dir, num_shards=args.num_shards,
                 val_fraction=0.01, split_method="hash")  # 0.0005 of a few thousand documents may be none
    print("component beam_pipeline_args: " + " ".join(beam_args), flush=True)
    return corpus, texts, beam_args, props


def bench_checks(args, work: str) -> None:
    """TokenizeText plain, with the duplicate pass, and with it and the TFDV statistics (the default)."""
    corpus, _, beam_args, props = _corpus(args, work)
    print(f"load average (1/5/15 min) at the start: {os.getloadavg()}; {os.cpu_count()} CPUs", flush=True)
    ways = {"plain": dict(dedup=False), "dedup": dict(dedup=True), "checked": dict(dedup=True, statistics=True)}
    times = {way: [] for way in ways}
    for repeat in range(args.repeats):
        for way, settings in ways.items():
            examples, seconds = run_component(os.path.join(corpus, "*.txt"), os.path.join(work, f"{way}{repeat}"),
                                              beam_args, **settings, **props)
            times[way].append(seconds)
            print(f"run {repeat} {way}: {seconds:.2f} s ({examples.get_custom_property('num_documents')} documents, "
                  f"{examples.get_custom_property('duplicate_documents')} duplicates dropped)", flush=True)
    print(f"load average (1/5/15 min) at the end: {os.getloadavg()}; {os.cpu_count()} CPUs", flush=True)
    best = {way: min(t) for way, t in times.items()}
    print(" ".join(f"{way}_s={t:.2f}" for way, t in best.items()) +
          f" checked_over_plain={best['checked'] / best['plain']:.3f}")


def bench_throughput(args, work: str) -> None:
    from model.tokenizer import GPT2Tokenizer

    corpus, texts, beam_args, props = _corpus(args, work)
    print(f"load average (1/5/15 min) at the start: {os.getloadavg()}; {os.cpu_count()} CPUs", flush=True)
    # The runner's fixed cost, shown apart: the same run on one tiny text (split 90/10).
    tiny = os.path.join(work, "tiny.txt")
    with open(tiny, "w") as f:
        f.write("To be, or not to be, that is the question:\n")
    _, startup = run_component(tiny, os.path.join(work, "tiny_examples"), beam_args, tokenizer="gpt2",
                               bpe_dir=args.bpe_dir)
    print(f"component on one tiny text (runner start-up and fixed costs): {startup:.2f} s", flush=True)

    # The machine is shared: each side runs `repeats` times, alternating, and the fastest counts.
    tokenizer = GPT2Tokenizer(args.bpe_dir)
    tokenizer.fast_encoder()  # built before the clock starts, as the component's setup builds it
    times, raw_times, checked_times, encoder_times = [], [], [], []
    for repeat in range(args.repeats):
        examples, seconds = run_component(os.path.join(corpus, "*.txt"), os.path.join(work, f"examples{repeat}"),
                                          beam_args, dedup=False, **props)  # the tokenizing alone (--checks)
        _, checked = run_component(os.path.join(corpus, "*.txt"), os.path.join(work, f"checked{repeat}"),
                                   beam_args, dedup=True, statistics=True, **props)
        checked_times.append(checked)
        count = examples.get_custom_property
        component_tokens = count("num_tokens_train") + count("num_tokens_val") - count("num_documents")
        start = time.perf_counter()
        raw_tokens = sum(map(len, tokenizer.encoding.encode_ordinary_batch(texts, num_threads=args.workers)))
        raw_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        with ThreadPoolExecutor(args.workers) as pool:
            encoder_tokens = sum(map(len, pool.map(tokenizer.encode_to_numpy, texts)))
        encoder_times.append(time.perf_counter() - start)
        times.append(seconds)
        print(f"run {repeat}: component {component_tokens} tokens in {seconds:.2f} s; tiktoken "
              f"encode_ordinary_batch ({args.workers} threads) {raw_tokens} tokens in {raw_times[-1]:.2f} s; "
              f"fastokens alone ({args.workers} threads) {encoder_tokens} tokens in {encoder_times[-1]:.2f} s; "
              f"component with its checks in {checked:.2f} s",
              flush=True)
        if not raw_tokens == encoder_tokens == component_tokens:
            raise SystemExit(f"token counts differ: component {component_tokens}, tiktoken {raw_tokens}, "
                             f"fastokens {encoder_tokens}")
    print(f"load average (1/5/15 min) at the end: {os.getloadavg()}; {os.cpu_count()} CPUs", flush=True)
    rate, raw_rate = component_tokens / min(times), raw_tokens / min(raw_times)
    encoder_rate = encoder_tokens / min(encoder_times)
    print(f"tokens_per_s={rate:.0f} raw_tokens_per_s={raw_rate:.0f} ratio={rate / raw_rate:.3f} "
          f"checked_ratio={component_tokens / min(checked_times) / raw_rate:.3f} "
          f"encoder_tokens_per_s={encoder_rate:.0f} encoder_ratio={rate / encoder_rate:.3f}")


def bench_huge_document(args, work: str) -> None:
    with open(os.path.join(SHARED_DATA, "tinyshakespeare.txt"), encoding="utf-8") as f:
        text = f.read()
    path = os.path.join(work, "huge.txt")
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(int(args.huge_document_mb * 1e6 / len(text)) + 1):
            f.write(text)
    size = os.path.getsize(path)
    tiny = os.path.join(work, "tiny.txt")
    with open(tiny, "w") as f:
        f.write(text[:10_000])

    def peak_mib():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB

    # The same run on 10 kB first: its peak is the baseline of TensorFlow, TFX and Beam in process.
    run_component(tiny, os.path.join(work, "tiny_examples"), ["--direct_num_workers=1"], tokenizer="gpt2",
                  bpe_dir=args.bpe_dir)
    before = peak_mib()
    examples, seconds = run_component(path, os.path.join(work, "examples"), ["--direct_num_workers=1"],
                                      tokenizer="gpt2", bpe_dir=args.bpe_dir)
    peak = peak_mib()
    tokens = examples.get_custom_property("num_tokens_train") + examples.get_custom_property("num_tokens_val")
    print(f"one text of {size / 1e6:.0f} MB (a 90% and a 10% document): {tokens} tokens in {seconds:.1f} s; "
          f"peak RSS {before:.0f} MiB after a 10 kB run, {peak:.0f} MiB after this one (+{peak - before:.0f} MiB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size_mb", type=float, default=50)
    parser.add_argument("--doc_kb", type=float, default=20, help="approximate document size")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--num_shards", type=int, default=0,
                        help="per split; 0 lets the runner decide (no shuffle of the records)")
    parser.add_argument("--running_mode", default="multi_threading",
                        choices=["multi_processing", "multi_threading", "in_memory"],
                        help="the DirectRunner's: multi_threading runs the workers as threads of this process "
                             "(tiktoken releases the GIL while it encodes); multi_processing starts one Python "
                             "process per worker, ~15 s here")
    parser.add_argument("--bpe_dir", default=os.environ.get("NANOGPT_TFX_BPE_DIR")
                        or os.path.join(SHARED_DATA, "gpt2_bpe"))
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs of each side")
    parser.add_argument("--huge_document_mb", type=float, default=0)
    parser.add_argument("--checks", action="store_true",
                        help="time the component without and with the duplicate pass and TFDV statistics")
    parser.add_argument("--work_dir", default=None, help="kept if given; a removed temp dir otherwise")
    args = parser.parse_args()
    work = args.work_dir or tempfile.mkdtemp(prefix="bench_tokenize_")
    try:
        if args.huge_document_mb:
            bench_huge_document(args, work)
        elif args.checks:
            bench_checks(args, work)
        else:
            bench_throughput(args, work)
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
