"""Which training a Trainer execution continues (components/trainer/trainings.py choose), with real
checkpoints in a trainings directory."""

import dataclasses

import pytest
import tensorflow as tf

from components.trainer import trainings
from core.errors import UsageError
from training.config import make_config


def _interrupted_at(trainings_dir, ident, cfg, iteration):
    """A training of `ident` interrupted with a checkpoint at `iteration`, its attempt recorded with cfg."""
    choice = trainings.choose(trainings_dir, ident, cfg, "/runs/model_run/1")
    trainings.start(choice, ident, cfg, "/runs/model_run/1")
    tf.train.CheckpointManager(tf.train.Checkpoint(step=tf.Variable(iteration)), f"{choice.directory}/checkpoints",
                               max_to_keep=1).save(checkpoint_number=iteration)
    return choice.directory


def test_a_continuation_says_the_settings_that_changed_and_none_when_none_did(tmp_path):
    """(run_fn records and compares the same settings, init_from=resume for a resumed training from the
    start: what this cannot see, the new-user trials of an identical rerun of a killed --resume did.)"""
    cfg = make_config("shakespeare_char", init_from="resume", max_iters=2000)
    ident = trainings.identity(cfg, "/examples/1", None, "/models/7")
    directory = _interrupted_at(str(tmp_path), ident, cfg, 1000)
    same = trainings.choose(str(tmp_path), ident, cfg, "/runs/model_run/2")
    assert (same.directory, same.line) == (directory, f"continuing the training interrupted at iteration 1000 (run "
                                                      f"{directory.rsplit('/', 1)[1]})")
    more = trainings.choose(str(tmp_path), ident, dataclasses.replace(cfg, max_iters=3000), "/runs/model_run/2")
    assert more.line.endswith(" with changed settings: max_iters 2000 -> 3000")


def test_a_continuation_past_max_iters_is_refused(tmp_path):
    """Interrupted at 1000, rerun with max_iters=800: it would publish a model of 1000 iterations as one of
    800 (and the settings recorded would disagree)."""
    cfg = make_config("shakespeare_char", max_iters=3000)
    ident = trainings.identity(cfg, "/examples/1", None, None)
    directory = _interrupted_at(str(tmp_path), ident, cfg, 1000)
    with pytest.raises(UsageError, match=rf"^the training interrupted at iteration 1000 \(run "
                                         rf"{directory.rsplit('/', 1)[1]}\) is past max_iters=800: raise --max_iters "
                                         rf"to continue it, or train anew with --continue_interrupted=False$"):
        trainings.choose(str(tmp_path), ident, dataclasses.replace(cfg, max_iters=800), "/runs/model_run/2")
    at_its_end = trainings.choose(str(tmp_path), ident, dataclasses.replace(cfg, max_iters=1000), "/runs/model_run/2")
    assert at_its_end.directory == directory  # (killed after its last checkpoint: one step more, as nanoGPT's)
