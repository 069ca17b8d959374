"""The training input pipeline: random (x, y) windows from a split's token stream, like nanoGPT's
get_batch, as a tf.data pipeline sharded across replicas.

A split is read from its token shards (model/shards.py) once and held in memory as the one token
stream it is (uint16 where the vocabulary allows, as nanoGPT's .bin files). Every micro-batch is
a pure function of (seed, micro-batch index): micro-batch m of optimizer step s has index
s * gradient_accumulation_steps + m, and replica g of R takes micro-batches
g * (A / R) ... (g + 1) * (A / R) - 1. So replicas and workers never read the same batch, a run on
R replicas sees exactly the batches of a run on one, and resuming at step s needs only s.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import tensorflow as tf

from model import shards

TRAIN, VAL = "train", "val"


def load_split(data_dir: str, split: str) -> np.ndarray:
    """The split's whole token stream in corpus order, as uint16 or int32."""
    directory = shards.split_dir(data_dir, split)
    if not tf.io.gfile.isdir(directory):
        raise FileNotFoundError(f"no {split} split in {data_dir} (expected {directory})")
    stream = shards.read_token_stream(directory)
    if stream.size == 0:
        raise ValueError(f"the {split} split in {data_dir} holds no tokens")
    return stream.astype(np.uint16 if stream.max() < 2 ** 16 else np.int32)


def sample_windows(tokens: tf.Tensor, seed: tf.Tensor, batch_size: int, block_size: int):
    """x, y of shape (batch_size, block_size) at random offsets; y is x shifted by one token."""
    n = tf.shape(tokens, out_type=tf.int64)[0]
    offsets = tf.random.stateless_uniform([batch_size], seed=seed, minval=0, maxval=n - block_size,
                                          dtype=tf.int64)
    windows = tf.gather(tokens, offsets[:, None] + tf.range(block_size + 1, dtype=tf.int64)[None, :])
    windows = tf.cast(windows, tf.int32)
    return windows[:, :-1], windows[:, 1:]


class TokenStream:
    """One split in memory, ready to be sampled."""

    def __init__(self, tokens: np.ndarray, block_size: int, name: str):
        if len(tokens) <= block_size:
            raise ValueError(f"the {name} split has {len(tokens)} tokens: it needs more than "
                             f"block_size={block_size} for even one window")
        self.name = name
        self.num_tokens = len(tokens)
        self.block_size = block_size
        self.tokens = tf.constant(tokens)

    def train_dataset(self, *, batch_size: int, accumulation_steps: int, seed: int, start_step: int,
                      input_context: Optional[tf.distribute.InputContext] = None) -> tf.data.Dataset:
        """Per-replica elements (x, y), each of shape (local_accumulation, batch_size, block_size):
        the micro-batches of one optimizer step for one replica."""
        workers = input_context.num_input_pipelines if input_context else 1
        worker = input_context.input_pipeline_id if input_context else 0
        replicas = input_context.num_replicas_in_sync if input_context else 1
        local_replicas = replicas // workers
        if accumulation_steps % replicas:
            raise ValueError(f"gradient_accumulation_steps={accumulation_steps} must be a multiple of "
                             f"the {replicas} replicas it is divided across")
        local_accumulation = accumulation_steps // replicas
        tokens, block_size = self.tokens, self.block_size

        def step_batches(element):
            step, local_replica = element // local_replicas, element % local_replicas
            replica = worker * local_replicas + local_replica
            first = step * accumulation_steps + replica * local_accumulation
            xs, ys = [], []
            for m in range(local_accumulation):
                x, y = sample_windows(tokens, tf.stack([tf.constant(seed, tf.int64), first + m]),
                                      batch_size, block_size)
                xs.append(x)
                ys.append(y)
            return tf.stack(xs), tf.stack(ys)

        dataset = tf.data.Dataset.range(start_step * local_replicas, np.iinfo(np.int64).max)
        return dataset.map(step_batches, num_parallel_calls=tf.data.AUTOTUNE,
                           deterministic=True).prefetch(tf.data.AUTOTUNE)

    def eval_batch(self, seed_pair, batch_size: int):
        return sample_windows(self.tokens, tf.constant(seed_pair, tf.int64), batch_size, self.block_size)
