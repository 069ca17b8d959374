"""Divergence stops training at the step that made it (fault injection: a learning rate of 1000)."""

import os

import pytest
import tensorflow as tf

from training.config import CHECKPOINT_DIR
from training.divergence import MAX_SKIPPED_STEPS, TrainingDiverged
from training.train import Trainer
from training.train_test import small_text as text_file, tiny_config  # noqa: F401 (a fixture)


def _diverge(out_dir, text_file, **overrides):
    trainer = Trainer(tiny_config(out_dir, text_file, learning_rate=1000.0, warmup_iters=0, decay_lr=False,
                                  grad_clip=0.0, max_iters=200, eval_interval=50, **overrides),
                      log=lambda *_: None)
    with pytest.raises(TrainingDiverged) as info:
        trainer.run()
    return trainer, str(info.value)


def test_a_non_finite_loss_stops_training_at_that_iteration(tmp_path, text_file):  # noqa: F811
    trainer, message = _diverge(tmp_path, text_file)
    assert "\n" not in message and "training diverged at iter" in message
    assert "learning_rate=1000" in message and "grad_clip=0" in message
    stopped = int(message.split("at iter ")[1].split(":")[0])
    assert stopped < 50 and int(trainer.iter_num.numpy()) == stopped  # at once, not at the end
    assert tf.train.latest_checkpoint(os.path.join(tmp_path, CHECKPOINT_DIR)) is None  # nothing saved


def test_float16_stops_after_a_bounded_run_of_skipped_steps(tmp_path, text_file):  # noqa: F811
    trainer, message = _diverge(tmp_path, text_file, dtype="float16")
    assert f"{MAX_SKIPPED_STEPS} float16 steps in a row" in message and "dtype=bfloat16" in message
    assert int(trainer.loss_scale.skipped_steps.numpy()) == MAX_SKIPPED_STEPS
    assert int(trainer.iter_num.numpy()) < 50 + MAX_SKIPPED_STEPS
