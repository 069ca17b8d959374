"""What an export's `auto` settings become: each candidate's decoding speed measured on the machine
that exports, and the fastest kept.

serving_loop=auto weighs XLA's loop against TensorFlow's own kernels; serving_weights=auto weighs
float32 weights against bfloat16 ones. Which wins depends on the CPU more than on anything a rule can
read from the model: XLA's matrix-vector product runs on one core while oneDNN's uses all of them
at a cost per op that only large layers repay; bfloat16 halves the bytes a token reads, but only a
CPU with AVX-512 multiplies it in oneDNN's kernels (far faster with AMX than without), and one
without multiplies it in generic kernels several times slower than float32's (BENCHMARKS.md). So
the export measures instead of guessing: every candidate is the very serving function it would
save, called once (its compilation, not timed), then timed in turn, a short sampled request at
batch 1 each round, best of `ROUNDS`. The measurement is only as good as the machine is quiet, and
it is the exporting machine's (the Trainer's): train on the kind of machine that serves, or name the loop
and the weights.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import itertools
import time
from typing import Dict, List

import numpy as np
import tensorflow as tf

from model.presets import WEIGHT_DTYPES
from serving import AUTO, SERVING_LOOPS
from serving.generate import serving_function, uses_xla
from serving.weights import with_weights

ROUNDS = 3
PROMPT_TOKENS, NEW_TOKENS = 8, 32  # per timed request; within block_size, so that every step is cached


@dataclasses.dataclass
class Candidate:
    weights: str  # "float32" or "bfloat16"
    loop: str  # "xla" or "graph"
    model: object  # the GPT it decodes with (serving/weights.py)
    generate: object  # its serving function (serving/generate.py serving_function)

    @property
    def name(self) -> str:
        return f"{self.weights} {self.loop}"


@dataclasses.dataclass
class Choice:
    """The candidate exported, and what each candidate measured (empty when nothing was auto)."""
    chosen: Candidate
    measured: Dict[str, float]  # candidate name -> tokens/s
    asked: Dict[str, str]  # {"weights": ..., "loop": ...} as set
    cpu: str

    def record(self) -> dict:
        return dict(weights=self.chosen.weights, loop=self.chosen.loop, asked=self.asked,
                    measured_tokens_per_s=self.measured, measured_on=self.cpu if self.measured else None,
                    measured_request=f"batch 1, {PROMPT_TOKENS}-token prompt, {NEW_TOKENS} new tokens, best of "
                                     f"{ROUNDS}" if self.measured else None)


def candidates(model, weights: str, loop: str) -> List[Candidate]:
    """The (weights, loop) pairs that the settings allow: an "auto" stands for every choice."""
    if weights not in WEIGHT_DTYPES + (AUTO,):
        raise ValueError(f"weights must be one of {list(WEIGHT_DTYPES + (AUTO,))}, got {weights!r}")
    if loop not in SERVING_LOOPS:
        raise ValueError(f"loop must be one of {list(SERVING_LOOPS)}, got {loop!r}")
    loops = [name for name in SERVING_LOOPS if name != AUTO] if loop == AUTO else [loop]
    found = []
    for weights_name in WEIGHT_DTYPES if weights == AUTO else [weights]:
        served = with_weights(model, weights_name)
        for loop_name in loops:
            found.append(Candidate(weights_name, loop_name, served,
                                   serving_function(served, jit_compile=uses_xla(served, loop_name))))
    return found


def _request(config):
    """A short sampled request within the context: (batch 1 prompt, then the signature's settings)."""
    prompt = min(PROMPT_TOKENS, max(1, config.block_size // 4))
    new = max(1, min(NEW_TOKENS, config.block_size - prompt))
    idx = np.random.default_rng(0).integers(0, config.vocab_size, (1, prompt))
    return new, [tf.constant(idx, tf.int32), tf.constant(new), tf.constant(0.8), tf.constant(200),
                 tf.constant(1.0), tf.constant(1337, tf.int64), tf.constant(-1), tf.constant(config.vocab_size)]


def choose(model, weights: str = "float32", loop: str = AUTO) -> Choice:
    """The candidate to export for these settings: the only one, or the fastest measured."""
    from training.devices import cpu_name

    found = candidates(model, weights, loop)
    asked = dict(weights=weights, loop=loop)
    if len(found) == 1:
        return Choice(found[0], {}, asked, cpu_name())
    new, request = _request(model.config)
    # Each candidate's first call compiles (XLA) or optimizes its graph (grappler), mostly on one
    # core and outside Python's lock, so it runs in a thread while the next candidate is traced
    # (Python's, under the lock): ~1.2 s less for the default character model's two loops.
    with concurrent.futures.ThreadPoolExecutor(len(found)) as pool:
        first_calls = []
        for candidate in found:
            candidate.generate.get_concrete_function()
            first_calls.append(pool.submit(lambda c=candidate: c.generate(*request)["tokens"].numpy()))
        for call in first_calls:
            call.result()
    best = {candidate.name: float("inf") for candidate in found}
    for _, candidate in itertools.product(range(ROUNDS), found):  # in turn: the machine's load moves
        started = time.perf_counter()
        candidate.generate(*request)["tokens"].numpy()
        best[candidate.name] = min(best[candidate.name], time.perf_counter() - started)
    measured = {name: round(new / seconds, 1) for name, seconds in best.items()}
    return Choice(min(found, key=lambda c: best[c.name]), measured, asked, cpu_name())
