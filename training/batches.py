"""Where the Trainer's batches come from: one small interface, two kinds of random draws.

A BatchSource gives the Trainer
- `train(start_iter)`: an iterator over the optimizer steps from start_iter on, each step's (xs, ys),
  this replica's micro-batches of shape (local accumulation steps, batch_size, block_size);
- `evaluation(split, it)`: the eval_iters (x, y) batches of a split for the evaluation at
  iteration it (the same batches whenever they are asked for again).

`SeededDraws` (rng='tensorflow', the default) makes every micro-batch a pure function of (seed,
its index) (training/data.py), so that replicas and workers share the work without sharing a
generator and a resumed run needs nothing but its iteration. `NanoGPTDraws` (rng='nanogpt')
replays nanoGPT's own draws from PyTorch's generator (training/nanogpt_rng.py); as nanoGPT's model
takes its initial weights from that generator before the first batch, it sets them too.
"""

from __future__ import annotations

import itertools
from typing import Callable, Dict, Iterator, Tuple

import tensorflow as tf

from training import nanogpt_rng
from training.config import TrainConfig
from training.data import TokenStream
from core.errors import UsageError
from core.shards import SPLITS, TRAIN, VAL

Batch = Tuple[tf.Tensor, tf.Tensor]  # or numpy arrays (NanoGPTDraws.train)


class BatchSource:
    """The training and evaluation batches of one run (see the module's docstring)."""

    def __init__(self, cfg: TrainConfig, splits: Dict[str, TokenStream]):
        self.cfg = cfg
        self.splits = splits

    def train(self, start_iter: int) -> Iterator[Batch]:
        raise NotImplementedError

    def evaluation(self, split: str, it: int) -> Iterator[Batch]:
        raise NotImplementedError


class SeededDraws(BatchSource):
    """Micro-batch m of step s from the seed pair (seed, s * accumulation_steps + m), shared out
    among the strategy's replicas; evaluation batch k of iteration it from (seed + 1 + the split's
    index, it * eval_iters + k)."""

    def __init__(self, cfg: TrainConfig, splits: Dict[str, TokenStream], strategy: tf.distribute.Strategy):
        super().__init__(cfg, splits)
        self.strategy = strategy

    def train(self, start_iter: int) -> Iterator[Batch]:
        cfg = self.cfg

        def dataset_fn(input_context):
            return self.splits[TRAIN].train_dataset(
                batch_size=cfg.batch_size, accumulation_steps=cfg.gradient_accumulation_steps,
                seed=cfg.seed, start_step=start_iter, input_context=input_context)

        return iter(self.strategy.distribute_datasets_from_function(dataset_fn))

    def evaluation(self, split: str, it: int) -> Iterator[Batch]:
        cfg, seed = self.cfg, self.cfg.seed + 1 + SPLITS.index(split)
        for k in range(cfg.eval_iters):
            yield self.splits[split].eval_batch((seed, it * cfg.eval_iters + k), cfg.batch_size)


class NanoGPTDraws(BatchSource):
    """nanoGPT's initial weights (from scratch; on resume their draws are skipped) and the window
    offsets of its batches from start_iter on (one replica: nanogpt_rng.check_supported)."""

    def __init__(self, cfg: TrainConfig, splits: Dict[str, TokenStream], model, start_iter: int,
                 evaluates: Callable[[int], bool], restored: bool = False):
        super().__init__(cfg, splits)
        config = model.config
        shape = dict(n_layer=config.n_layer, n_embd=config.n_embd, vocab_size=config.vocab_size,
                     block_size=config.block_size, bias=config.bias)
        generator = nanogpt_rng.TorchGenerator(cfg.seed)
        if cfg.init_from == "scratch" and not restored:
            variables = model.named_variables()
            for name, value in nanogpt_rng.initial_weights(generator, **shape).items():
                variables[name].assign(value)
        else:
            generator.skip(nanogpt_rng.initial_draws(**shape))
        self.offsets = nanogpt_rng.BatchOffsets(
            generator, train_high=splits[TRAIN].num_tokens - cfg.block_size,
            val_high=splits[VAL].num_tokens - cfg.block_size, batch_size=cfg.batch_size,
            accumulation_steps=cfg.gradient_accumulation_steps, eval_iters=cfg.eval_iters,
            evaluates=evaluates, start_iter=start_iter)

    def train(self, start_iter: int) -> Iterator[Batch]:
        # read in the loop's own thread, as nanoGPT's get_batch: ~0.05 ms a step, where a tf.data
        # pipeline around the generator cost the step ~0.7 ms (its threads and the GIL)
        return (self.splits[TRAIN].windows_array(self.offsets.train(step)) for step in itertools.count(start_iter))

    def evaluation(self, split: str, it: int) -> Iterator[Batch]:
        for offsets in self.offsets.evaluation(it)[split]:
            yield self.splits[split].windows(offsets)


def check_supported(cfg: TrainConfig, replicas: int) -> None:
    """Raises when cfg's kind of draws cannot serve this run (before any data or model is loaded)."""
    problems = nanogpt_rng.check_supported(replicas=replicas, dropout=cfg.dropout,
                                           init_from=cfg.init_from) if cfg.rng == "nanogpt" else []
    if problems:
        raise UsageError("rng='nanogpt' cannot replay nanoGPT's draws for this run: " + "; ".join(problems))


def batch_source(cfg: TrainConfig, splits: Dict[str, TokenStream], *, strategy: tf.distribute.Strategy, model,
                 start_iter: int, evaluates: Callable[[int], bool], restored: bool = False) -> BatchSource:
    """The BatchSource of cfg.rng for a run that starts at start_iter with `model` just built or
    (restored) read from a checkpoint; `evaluates(it)` says at which iterations the run evaluates."""
    if cfg.rng == "nanogpt":
        return NanoGPTDraws(cfg, splits, model, start_iter, evaluates, restored)
    return SeededDraws(cfg, splits, strategy)
