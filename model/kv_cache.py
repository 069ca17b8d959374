"""The key/value cache of GPT.call_with_cache: its buffers, where a forward writes (CacheSlots), and
the write itself.

A cache holds, per layer, (keys, values), each (B, n_head, block_size, head_size). Fixed shapes, so
that XLA compiles a decoding loop over it: there, a forward's keys and values are scattered into
the cache (a new tensor each step, which XLA turns into an update in place). A graph that XLA does
not compile would copy the whole cache at every step that way, so it writes in place instead
(tf.raw_ops.InplaceUpdate into buffers of its own) and attends over the slots written so far only.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import tensorflow as tf

from model.kernels import is_one, sizes


class CacheSlots(NamedTuple):
    """Where one forward with a cache writes its keys and values and which slots its queries
    see: the same for every layer, so found once per forward (`slots`). positions (T,): the
    positions of the forward's rows. mask (T, slots attended): where a query may attend (None:
    every slot attended). In place, rows: the rows of each cache's (B * nh * L, hs) view to
    overwrite, written: the slots attended (the ones written so far); else indices: the
    (B, nh, T, 3) places of tensor_scatter_nd_update."""
    positions: tf.Tensor
    mask: Optional[tf.Tensor]
    rows: Optional[tf.Tensor] = None
    written: Optional[tf.Tensor] = None
    indices: Optional[tf.Tensor] = None


def empty(config, dtype, batch, in_place=False):
    """A cache for `batch` rows of up to block_size positions, zeros in `dtype`.

    in_place: each buffer is made by the stateful op Empty, which the graph optimizer never folds
    into a constant nor merges with its twins, so that every cache, and every layer's keys and
    values, has buffers of its own to be written in place."""
    shape = [batch, config.n_head, config.block_size, config.n_embd // config.n_head]
    if in_place:
        def zeros():
            return tf.raw_ops.Empty(shape=tf.stack(shape), dtype=dtype, init=True)
    else:
        def zeros():
            return tf.zeros(shape, dtype)
    return tuple((zeros(), zeros()) for _ in range(config.n_layer))


def slots(config, idx, cache_index, in_place=False) -> CacheSlots:
    """The CacheSlots of a forward of idx (B, T) at positions cache_index.."""
    B, T = tf.shape(idx)[0], sizes(idx)[1]
    positions = cache_index + tf.range(T)
    if in_place:
        written = cache_index + T
        rows = tf.reshape(tf.range(B * config.n_head)[:, None] * config.block_size + positions[None, :], [-1])
        # one position (a decoding step) sees every slot written so far: no mask
        mask = None if is_one(T) else tf.range(written)[None, :] <= positions[:, None]
        return CacheSlots(positions, mask, rows=rows, written=written)
    b, h, p = tf.meshgrid(tf.range(B), tf.range(config.n_head), positions, indexing="ij")
    # query i sees slots 0..cache_index+i: the slots further on are not written yet
    mask = tf.range(config.block_size)[None, :] <= positions[:, None]
    return CacheSlots(positions, mask, indices=tf.stack([b, h, p], axis=-1))


def write(cache, k, v, slots: CacheSlots):
    """(the cache with the forward's keys k and values v (B, nh, T, hs) written at its slots, the
    keys and values its queries attend over)."""
    keys, values = cache
    if slots.rows is None:
        keys = tf.tensor_scatter_nd_update(keys, slots.indices, k)
        values = tf.tensor_scatter_nd_update(values, slots.indices, v)
        return (keys, values), (keys, values)
    keys, values = (_write_in_place(buffer, new, slots.rows) for buffer, new in ((keys, k), (values, v)))
    return (keys, values), (keys[:, :, :slots.written], values[:, :, :slots.written])


def _write_in_place(buffer, new, rows):
    """The buffer (B, nh, L, hs) with new (B, nh, T, hs) written at `rows` of its (B * nh * L, hs)
    view, in the buffer itself: InplaceUpdate overwrites rows (reshapes share the buffer) and does
    not copy, whoever else holds the buffer; so each cache must have buffers of its own
    (empty(in_place=True)). XLA has no InplaceUpdate (nor needs it)."""
    updated = tf.raw_ops.InplaceUpdate(x=tf.reshape(buffer, [-1, buffer.shape[-1]]), i=rows,
                                       v=tf.reshape(new, [-1, new.shape[-1]]))
    return tf.reshape(updated, sizes(buffer))
