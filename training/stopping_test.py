"""A training stopped by SIGTERM (or Ctrl-C) checkpoints the iteration it is at and continues from it
to exactly what it would have made; checkpoints between evaluations by time; only the latest and the
evaluation's checkpoint are kept."""

import os
import signal

import numpy as np
import pytest
import tensorflow as tf

from training import stopping
from training.checkpoints import LATEST_DIR, newest_checkpoint
from training.train import Trainer
from training.train_test import small_text as text_file, tiny_config, weights  # noqa: F401 (a fixture)

RUN = dict(max_iters=20, eval_interval=10, lr_decay_iters=20, log_interval=1, always_save_checkpoint=False)


def _stopped_by_sigterm_after(out_dir, text_file, line_start, **settings):  # noqa: F811
    """A run that receives a real SIGTERM as it logs the line starting with line_start; its TrainingStopped."""
    stop = stopping.StopRequest()
    restore = stopping.install(stop)

    def log(line):
        if line.startswith(line_start):
            os.kill(os.getpid(), signal.SIGTERM)

    try:
        with pytest.raises(stopping.TrainingStopped) as stopped:
            Trainer(tiny_config(out_dir, text_file, **{**RUN, **settings}), log=log, stop=stop).run()
    finally:
        restore()
    return stopped.value


@pytest.mark.parametrize("rng", ["tensorflow", "nanogpt"])
def test_a_training_stopped_between_checkpoints_continues_to_exactly_the_uninterrupted_training(
        tmp_path, text_file, rng):  # noqa: F811
    straight = Trainer(tiny_config(tmp_path / "straight", text_file, **RUN, rng=rng), log=lambda *_: None)
    result = straight.run()

    out = tmp_path / "stopped"
    stopped = _stopped_by_sigterm_after(out, text_file, "iter 13:", rng=rng)  # caught at the top of iteration 14
    assert (stopped.signal_name, stopped.iteration, stopped.exit_status) == ("SIGTERM", 14, 143)
    assert stopped.checkpoint == str(out / "checkpoints" / LATEST_DIR / "ckpt-14")
    assert str(stopped) == (f"the training was stopped by SIGTERM at iteration 14, which is saved in "
                            f"{stopped.checkpoint}: continue it with --init_from=resume")
    assert newest_checkpoint(str(out)) == (stopped.checkpoint, 14)
    assert tf.train.latest_checkpoint(str(out / "checkpoints")).endswith("ckpt-10")  # the evaluation's, kept

    logs = []
    again = Trainer(tiny_config(out, text_file, **RUN, rng=rng), log=logs.append, continue_from=f"{out}/checkpoints/"
                    f"{LATEST_DIR}/ckpt-14")
    assert again.start_iter == 14 and f"continuing from {out}/checkpoints/{LATEST_DIR}/ckpt-14 at iter 14" in logs
    assert again.run() == result
    assert again.history == straight.history and again.train_losses == straight.train_losses
    for name, value in weights(straight).items():
        np.testing.assert_array_equal(weights(again)[name], value, err_msg=name)
    # the evaluation's checkpoint at 20 made the latest one (14) useless: it is gone
    assert newest_checkpoint(str(out))[1] == 20 and not os.listdir(out / "checkpoints" / LATEST_DIR)


def test_a_stop_at_an_evaluation_iteration_is_saved_without_that_evaluation_which_the_continued_run_makes(
        tmp_path, text_file):  # noqa: F811
    straight = Trainer(tiny_config(tmp_path / "straight", text_file, **RUN), log=lambda *_: None)
    straight.run()
    out = tmp_path / "stopped"
    stopped = _stopped_by_sigterm_after(out, text_file, "iter 9:")
    assert stopped.iteration == 10
    first = Trainer(tiny_config(out, text_file, **RUN), log=lambda *_: None, continue_from=stopped.checkpoint)
    assert [it for it, *_ in first.history] == [0]  # saved before the evaluation of 10
    first.run()
    assert first.history == straight.history


def test_checkpoints_between_evaluations_by_time_keep_only_the_latest_and_the_evaluations(
        tmp_path, text_file):  # noqa: F811
    logs = []
    Trainer(tiny_config(tmp_path, text_file, **{**RUN, "max_iters": 14}, checkpoint_minutes=1e-9),
            log=logs.append).run()
    saves = [line for line in logs if line.startswith("saving checkpoint to")]
    assert len(saves) == 15  # iterations 1 to 14 between evaluations (by time), and 10 at its evaluation
    assert saves[0].startswith(f"saving checkpoint to {tmp_path}/checkpoints/{LATEST_DIR}/ckpt-1 (")
    assert sorted(os.listdir(tmp_path / "checkpoints" / LATEST_DIR)) == [
        "checkpoint", "ckpt-14.data-00000-of-00001", "ckpt-14.index"]
    assert sorted(n for n in os.listdir(tmp_path / "checkpoints") if n != LATEST_DIR) == [
        "checkpoint", "ckpt-10.data-00000-of-00001", "ckpt-10.index"]


def _snapshot(directory):
    return {os.path.relpath(os.path.join(root, name), directory): open(os.path.join(root, name), "rb").read()
            for root, _, names in os.walk(directory) for name in names}


def test_eval_only_on_a_resumed_run_changes_nothing_in_it_even_when_stopped(tmp_path, text_file):  # noqa: F811
    """nanoGPT's eval_only on a resumed run saves a checkpoint of it (and trains on); here it evaluates the
    checkpoint and ends: no checkpoint (whose rotation would drop an older one), no settings rewritten."""
    out, run = tmp_path / "run", {**RUN, "always_save_checkpoint": True, "tensorboard": True}  # (the defaults)
    Trainer(tiny_config(out, text_file, **run), log=lambda *_: None).run()
    before = _snapshot(out)
    logs = []
    evaluated = Trainer(tiny_config(out, text_file, **run, init_from="resume", eval_only=True, eval_iters=2),
                        log=logs.append).run()
    assert evaluated["iter_num"] == 20 and any(line.startswith("step 20: train loss") for line in logs)
    assert not any("saving checkpoint" in line for line in logs)
    assert _snapshot(out) == before
    # Stopped by Ctrl-C in its evaluation: one line, nothing saved either.
    stop = stopping.StopRequest()
    stop.ask(signal.SIGINT)
    with pytest.raises(stopping.EvaluationStopped) as stopped:
        Trainer(tiny_config(out, text_file, **run, init_from="resume", eval_only=True), log=lambda *_: None,
                stop=stop).run()
    assert (str(stopped.value), stopped.value.exit_status) == (
        "the evaluation (eval_only) was stopped by SIGINT; nothing was saved", 130)
    assert _snapshot(out) == before
