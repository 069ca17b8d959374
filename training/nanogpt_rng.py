"""nanoGPT's random draws without PyTorch: the initial weights and batches of nanoGPT's own run.

nanoGPT seeds PyTorch's CPU generator (torch.manual_seed(1337)) and takes every random number
from it, in a fixed order: the initial weights, as GPT.__init__ builds its modules and then
initialises them; one train batch; at each evaluation, eval_iters batches of train and then of
val; and one train batch after each micro-step's forward pass. That generator is a 32-bit
Mersenne Twister seeded as std::mt19937 (numpy's legacy RandomState is the same generator, seeded
the same way), and PyTorch turns its 32-bit draws into values by fixed rules, reproduced here:

- torch.randint(n): one draw modulo n; from n >= 2**28, two draws joined into 64 bits, modulo n.
- Tensor.uniform_ (nn.Linear's default init): one draw per element.
- Tensor.normal_ on 16 or more float32 elements: one uniform per element, (draw & 0xFFFFFF) / 2**24,
  turned into normals by Box-Muller in blocks of 16 (the first 8 of a block with the last 8);
  when 16 does not divide the size, 16 more uniforms redo the last 16 elements.

So a Trainer with rng='nanogpt' starts from nanoGPT's initial weights and trains on nanoGPT's
batches, and its run follows nanoGPT's for the same seed (`python -m bench.nanogpt_parity`
checks it against PyTorch). Normals may differ from PyTorch's in the last bit (its vectorised
log, sin and cos); every integer draw is the same. As of PyTorch 2.14.
"""

from __future__ import annotations

import math
import threading
from typing import Callable, Dict, Iterator, List

import numpy as np

from core.errors import UsageError
from core.shards import TRAIN, VAL
from training.config import starts_from_checkpoint

_TWO_DRAWS_FROM = 1 << 28  # torch.randint ranges from here on take 64 bits (two draws)
_CHUNK = 1 << 22  # draws skipped at a time


class TorchGenerator:
    """PyTorch's CPU generator after torch.manual_seed(seed), for the draws nanoGPT makes."""

    def __init__(self, seed: int):
        if not 0 <= seed < 1 << 32:
            raise UsageError(f"seed={seed}: PyTorch's CPU generator replays only seeds in [0, 2**32)")
        self._mt = np.random.RandomState(seed)  # MT19937 seeded as std::mt19937(seed)
        self.draws = 0  # 32-bit draws taken so far

    def raw(self, n: int) -> np.ndarray:
        """The next n 32-bit draws, as uint64."""
        self.draws += n
        return self._mt.randint(0, 1 << 32, size=n, dtype=np.uint64)

    def skip(self, n: int) -> None:
        while n > 0:
            self.raw(min(n, _CHUNK))
            n -= _CHUNK

    def randint(self, high: int, size: int) -> np.ndarray:
        """torch.randint(high, (size,))."""
        if high >= _TWO_DRAWS_FROM:
            pairs = self.raw(2 * size)
            return ((pairs[0::2] << np.uint64(32) | pairs[1::2]) % np.uint64(high)).astype(np.int64)
        return (self.raw(size) % np.uint64(high)).astype(np.int64)

    def normal(self, shape, std: float) -> np.ndarray:
        """torch.empty(shape).normal_(0, std), float32."""
        n = int(np.prod(shape))
        if n < 16:
            raise ValueError(f"normal_ of {n} elements: PyTorch draws those another way, not reproduced here")
        uniforms = (self.raw(draws_of("normal", n)) & np.uint64(0xFFFFFF)) / float(1 << 24)
        out = np.empty(n)
        whole = n - n % 16
        out[:whole] = _box_muller_16(uniforms[:whole])
        if whole < n:
            out[n - 16:] = _box_muller_16(uniforms[n:])
        return (out * std).astype(np.float32).reshape(shape)


def draws_of(kind: str, n: int) -> int:
    """32-bit draws that filling n elements takes: 'uniform' one each; 'normal' (16 or more) one
    each, and 16 more when 16 does not divide n."""
    return n + (16 if kind == "normal" and n % 16 else 0)


def _box_muller_16(u: np.ndarray) -> np.ndarray:
    """PyTorch's normal_fill_16 over consecutive blocks of 16 uniforms."""
    blocks = u.reshape(-1, 2, 8)
    radius = np.sqrt(-2.0 * np.log(1.0 - blocks[:, 0]))
    theta = 2.0 * math.pi * blocks[:, 1]
    return np.stack([radius * np.cos(theta), radius * np.sin(theta)], axis=1).reshape(-1)


# --------------------------------------------------------------------------------------------
# initial weights


def _init_plan(n_layer: int, n_embd: int, vocab_size: int, block_size: int, bias: bool):
    """nanoGPT's GPT.__init__ as its draws: (kind, torch shape, std, name it ends up in or None).
    kind 'uniform' is nn.Linear's default init, values overwritten later; 'normal' is normal_."""
    C, std = n_embd, 0.02
    linears = [("attn.c_attn", (3 * C, C)), ("attn.c_proj", (C, C)), ("mlp.c_fc", (4 * C, C)),
               ("mlp.c_proj", (C, 4 * C))]
    # the modules as they are built: Embedding inits normal_(0, 1), Linear kaiming-uniform (+ bias)
    yield "normal", (vocab_size, C), 1.0, None
    yield "normal", (block_size, C), 1.0, None
    for _ in range(n_layer):
        for _, shape in linears:
            yield "uniform", shape, None, None
            if bias:
                yield "uniform", shape[:1], None, None
    yield "uniform", (vocab_size, C), None, None  # lm_head
    # self.apply(_init_weights), children first: wte, wpe, each block's Linears, then lm_head,
    # which shares its weight with wte (weight tying), so its draw is wte's final value
    yield "normal", (vocab_size, C), std, None
    yield "normal", (block_size, C), std, "wpe.weight"
    for i in range(n_layer):
        for name, shape in linears:
            yield "normal", shape, std, None if name.endswith("c_proj") else f"h.{i}.{name}.weight"
    yield "normal", (vocab_size, C), std, "wte.weight"
    # then c_proj weights again, scaled for the residual path, in named_parameters() order
    for i in range(n_layer):
        for name, shape in linears:
            if name.endswith("c_proj"):
                yield "normal", shape, std / math.sqrt(2 * n_layer), f"h.{i}.{name}.weight"


def initial_weights(generator: TorchGenerator, n_layer: int, n_embd: int, vocab_size: int, block_size: int,
                    bias: bool) -> Dict[str, np.ndarray]:
    """nanoGPT's initial matmul and embedding weights by GPT-2 name (LayerNorm gains are ones,
    biases zeros), matmul weights in GPT-2's (in, out) layout."""
    weights = {}
    for kind, shape, std, name in _init_plan(n_layer, n_embd, vocab_size, block_size, bias):
        if name is None:  # drawn, then overwritten: only the draws count
            generator.skip(draws_of(kind, int(np.prod(shape))))
            continue
        weights[name] = linear_transposed(name, generator.normal(shape, std))
    return weights


def initial_draws(n_layer: int, n_embd: int, vocab_size: int, block_size: int, bias: bool) -> int:
    """How many 32-bit draws nanoGPT's model initialisation takes."""
    return sum(draws_of(kind, int(np.prod(shape)))
               for kind, shape, _, _ in _init_plan(n_layer, n_embd, vocab_size, block_size, bias))


def linear_transposed(name: str, value: np.ndarray) -> np.ndarray:
    """A weight from torch's nn.Linear layout (out, in) to GPT-2's Conv1D layout (in, out), or back;
    embeddings and 1-D tensors as they are."""
    return value.T if value.ndim == 2 and not name.startswith(("wte", "wpe")) else value


# --------------------------------------------------------------------------------------------
# batches


def batch_draws(high: int, batch_size: int) -> int:
    """32-bit draws of one get_batch: torch.randint(high, (batch_size,))."""
    return batch_size * (2 if high >= _TWO_DRAWS_FROM else 1)


class BatchOffsets:
    """The window offsets of nanoGPT's get_batch calls, in the order nanoGPT's loop draws them:
    train micro-batch j, and after micro-batch i * accumulation_steps the evaluation of iteration
    i (eval_iters train batches, then eval_iters val batches) where `evaluates(i)`. Asked in any
    order the Trainer asks (an evaluation before its iteration's micro-batches, the input pipeline
    steps ahead, on its own thread), it draws ahead and holds what it drew until asked.

    `generator` stands just after the initial weights; a run resumed at start_iter skips the
    draws of the iterations before it (nanoGPT itself re-seeds on resume and draws anew)."""

    def __init__(self, generator: TorchGenerator, *, train_high: int, val_high: int, batch_size: int,
                 accumulation_steps: int, eval_iters: int, evaluates: Callable[[int], bool], start_iter: int = 0):
        self.generator = generator
        self.highs = {TRAIN: train_high, VAL: val_high}
        self.batch_size, self.accumulation_steps, self.eval_iters = batch_size, accumulation_steps, eval_iters
        evals_before = sum(1 for i in range(start_iter) if evaluates(i))
        generator.skip(start_iter * accumulation_steps * batch_draws(train_high, batch_size)
                       + evals_before * eval_iters * sum(batch_draws(h, batch_size) for h in self.highs.values()))
        self._next_micro_batch = start_iter * accumulation_steps  # the next one to draw
        self._next_step = start_iter  # the next step to hand out
        self._events = self._draw_events(evaluates)
        self._train: Dict[int, np.ndarray] = {}
        self._evals: Dict[int, Dict[str, np.ndarray]] = {}
        self._lock = threading.Lock()

    def _draw_events(self, evaluates) -> Iterator[None]:
        while True:
            j = self._next_micro_batch
            self._train[j] = self.generator.randint(self.highs[TRAIN], self.batch_size)
            yield
            it, m = divmod(j, self.accumulation_steps)
            if m == 0 and evaluates(it):
                self._evals[it] = {split: np.stack([self.generator.randint(high, self.batch_size)
                                                    for _ in range(self.eval_iters)])
                                   for split, high in self.highs.items()}
                yield
            self._next_micro_batch = j + 1

    def train(self, step: int) -> np.ndarray:
        """(accumulation_steps, batch_size) offsets of one optimizer step's micro-batches; each
        step once, in order."""
        with self._lock:
            if step != self._next_step:
                raise ValueError(f"nanoGPT's batches are handed out step by step: asked for step {step}, "
                                 f"next is {self._next_step}")
            last = (step + 1) * self.accumulation_steps - 1
            while last not in self._train:
                next(self._events)
            self._next_step += 1
            return np.stack([self._train.pop(j) for j in range(last + 1 - self.accumulation_steps, last + 1)])

    def evaluation(self, it: int) -> Dict[str, np.ndarray]:
        """{'train': (eval_iters, batch_size) offsets, 'val': ...} of the evaluation at iteration it."""
        with self._lock:
            while it not in self._evals:
                if self._next_micro_batch > it * self.accumulation_steps:
                    raise ValueError(f"nanoGPT draws no evaluation batches at iteration {it}")
                next(self._events)
            return self._evals[it]


def check_supported(*, replicas: int, dropout: float, init_from: str) -> List[str]:
    """Why a run cannot replay nanoGPT's draws (empty when it can)."""
    problems = []
    if replicas != 1:
        problems.append(f"it runs on {replicas} replicas (nanoGPT's DDP ranks each draw from their own "
                        f"generator; replay covers one device: --strategy=default)")
    if dropout:
        problems.append(f"dropout={dropout} (nanoGPT's dropout masks come from the same generator)")
    if starts_from_checkpoint(init_from):
        problems.append(f"init_from={init_from!r} (replay covers initialisation from scratch)")
    return problems

