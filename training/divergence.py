"""Divergence stops training: a non-finite loss ends the run at the step that made it.

The check runs inside the training step's graph (tf.debugging), so it adds no host sync: on a
non-finite loss the step itself fails, and the loop turns that failure into one TrainingDiverged
line naming the iteration and the likely causes. Under float16 loss scaling a non-finite step is
an overflow the loss scale handles by skipping the update and halving the scale; only a run of
MAX_SKIPPED_STEPS skipped steps in a row (the scale then below 2**-9 of its start) is a divergence.
Nothing is saved from a diverged step: the checkpoint of the last good evaluation stays the latest,
and the TFX Trainer fails without exporting a model.
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterable

import tensorflow as tf

from core.errors import UserError

MAX_SKIPPED_STEPS = 25
_MARKER = "nanogpt: non-finite training step"


class TrainingDiverged(UserError):
    pass


def check_step(loss: tf.Tensor, loss_scale=None) -> tf.Tensor:
    """In the training step's graph: the loss, which fails the step when it is not finite (float16:
    when the loss scale has skipped MAX_SKIPPED_STEPS steps in a row)."""
    if loss_scale is None:
        return tf.debugging.check_numerics(loss, _MARKER)
    check = tf.debugging.Assert(loss_scale.skipped_steps < MAX_SKIPPED_STEPS, [_MARKER, loss])
    with tf.control_dependencies([check]):
        return tf.identity(loss)


def _causes(cfg) -> str:
    causes = [f"the learning rate is too high (learning_rate={cfg.learning_rate:g})"]
    if cfg.dtype == "float16":
        causes.append(f"float16 overflows (the loss scale skipped {MAX_SKIPPED_STEPS} steps in a row; "
                      f"try dtype=bfloat16 or float32)")
    if cfg.grad_clip <= 0:
        causes.append("no gradient clipping (grad_clip=0)")
    causes.append("damaged input data or weights")
    return "; likely causes: " + ", ".join(causes)


@contextlib.contextmanager
def stops_training(iter_num: int, cfg):
    """Around one training step: its non-finite failure becomes TrainingDiverged."""
    try:
        yield
    except tf.errors.InvalidArgumentError as e:
        if _MARKER not in e.message:
            raise
        what = "the loss is not finite" if cfg.dtype != "float16" else \
            f"{MAX_SKIPPED_STEPS} float16 steps in a row were not finite"
        raise TrainingDiverged(f"training diverged at iter {iter_num}: {what}{_causes(cfg)}; "
                               f"nothing was saved from this run after its last good evaluation") from None


def check_eval(losses: Iterable[float], split: str, iter_num: int, cfg) -> None:
    """An evaluation's losses: a non-finite one is a divergence (or weights restored non-finite)."""
    bad = [x for x in losses if not math.isfinite(x)]
    if bad:
        raise TrainingDiverged(f"training diverged at iter {iter_num}: the {split} loss is {bad[0]}"
                               f"{_causes(cfg)}")
