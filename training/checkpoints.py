"""A training run's checkpoints: what one holds, where they lie, which are kept.

A checkpoint holds everything a run needs to go on exactly where it was: the model, the optimizer's
moments and step, the iteration, the best val loss so far, the float16 loss scale, and the run's
progress (the losses it evaluated and logged: Progress). The data position is the iteration itself
(the batches are drawn from (seed, iteration), training/batches.py).

Two are kept, as few as nanoGPT keeps (its one ckpt.pt), named ckpt-<iteration>:
- out_dir/checkpoints/: the checkpoint of the last evaluation that saved one (val loss improved, or
  always_save_checkpoint): nanoGPT's ckpt.pt, the weights the pipeline exports and `sample` reads;
- out_dir/checkpoints/latest/: a checkpoint taken between evaluations (every checkpoint_minutes, or
  when the run is stopped by SIGTERM/SIGINT), only while it is newer than the first.
A run continues from the newer of the two (newest_checkpoint). CheckpointManager writes a
checkpoint's files before the index that names it, so a kill at any moment leaves the previous one
named and whole; what such a kill left half-written is swept when the next run opens the directory.
"""

from __future__ import annotations

import json
import os
from typing import Optional, Tuple

import tensorflow as tf

from core.errors import writing
from training.config import CHECKPOINT_DIR

LATEST_DIR = "latest"  # under CHECKPOINT_DIR: the checkpoint taken between evaluations


class Progress(tf.train.experimental.PythonState):
    """The run's records saved with each checkpoint, so that a continued run reports the whole
    training: (iter, train loss, val loss) at each evaluation, (iter, loss) at each log line."""

    def __init__(self):
        self.history, self.train_losses = [], []

    def serialize(self) -> str:
        return json.dumps({"history": self.history, "train_losses": self.train_losses})

    def forget_evaluation(self, iteration: int) -> None:
        """Forget the evaluation of `iteration` (a resumed run makes it again where it starts)."""
        self.history = [entry for entry in self.history if entry[0] != iteration]

    def deserialize(self, string_value) -> None:
        saved = json.loads(string_value.numpy() if hasattr(string_value, "numpy") else string_value)
        self.history = [tuple(entry) for entry in saved["history"]]
        self.train_losses = [tuple(entry) for entry in saved["train_losses"]]


def iteration_of(path: str) -> int:
    """The iteration of a checkpoint saved here (its prefix ends in ckpt-<iteration>)."""
    return int(path.rsplit("-", 1)[1])


def newest_checkpoint(out_dir: str) -> Optional[Tuple[str, int]]:
    """(path, iteration) of the newest whole checkpoint of the run in out_dir, of either kind; None
    when it has none."""
    found = [path for path in (tf.train.latest_checkpoint(os.path.join(out_dir, CHECKPOINT_DIR)),
                               tf.train.latest_checkpoint(os.path.join(out_dir, CHECKPOINT_DIR, LATEST_DIR)))
             if path]
    if not found:
        return None
    path = max(found, key=iteration_of)
    return path, iteration_of(path)


class RunCheckpoints:
    """The two checkpoints of a run in `directory` (out_dir/checkpoints, or a worker's own copy)."""

    def __init__(self, checkpoint: tf.train.Checkpoint, directory: str):
        self._checkpoint = checkpoint
        self.evaluated = tf.train.CheckpointManager(checkpoint, directory, max_to_keep=1)
        self.latest = tf.train.CheckpointManager(checkpoint, os.path.join(directory, LATEST_DIR), max_to_keep=1)
        for manager in (self.evaluated, self.latest):
            _sweep(manager)

    def save(self, number: int, between_evaluations: bool = False) -> str:
        """Checkpoint `number` (the iteration); a full disk is one DiskFull line and leaves the
        previous checkpoint the newest. An evaluation's checkpoint makes an older latest one useless."""
        manager = self.latest if between_evaluations else self.evaluated
        with writing(f"checkpoint {number} in {manager.directory}", cleanup=lambda: _remove(manager, number)):
            path = manager.save(checkpoint_number=number)
        superseded = self.latest.latest_checkpoint
        if not between_evaluations and superseded and iteration_of(superseded) <= number:
            tf.io.gfile.remove(os.path.join(self.latest.directory, "checkpoint"))  # the index first: a kill
            _remove(self.latest, iteration_of(superseded))  # between leaves files no index names, swept later
            self.latest = tf.train.CheckpointManager(self._checkpoint, self.latest.directory, max_to_keep=1)
        return path

    def at(self, number: int) -> Optional[str]:
        """The checkpoint of iteration `number`, when one was saved."""
        for manager in (self.evaluated, self.latest):
            if manager.latest_checkpoint and iteration_of(manager.latest_checkpoint) == number:
                return manager.latest_checkpoint
        return None


def _remove(manager: tf.train.CheckpointManager, number: int) -> None:
    """The files of checkpoint `number` (a save that failed before the index named it, or one no
    longer needed)."""
    for path in tf.io.gfile.glob(os.path.join(manager.directory, f"ckpt-{number}[._]*")):
        if tf.io.gfile.isdir(path):
            tf.io.gfile.rmtree(path)
        else:
            tf.io.gfile.remove(path)


def _sweep(manager: tf.train.CheckpointManager) -> None:
    """What a kill left in the manager's directory: the files of checkpoints its index does not
    name (a save cut short, or an old one whose removal was), and the index's own half-written copy
    (TensorFlow writes `checkpoint` as checkpoint.tmp<hex>, then renames it)."""
    if not tf.io.gfile.isdir(manager.directory):
        return
    named = {os.path.basename(path) for path in manager.checkpoints}
    for name in tf.io.gfile.listdir(manager.directory):
        name = name.rstrip("/")
        if name.startswith("ckpt-") and (name.endswith("_temp") or name.split(".")[0] not in named) or \
                name.startswith("checkpoint.tmp"):
            path = os.path.join(manager.directory, name)
            if tf.io.gfile.isdir(path):
                tf.io.gfile.rmtree(path)
            else:
                tf.io.gfile.remove(path)
