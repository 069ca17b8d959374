"""What a kill leaves among a run's checkpoints is swept when the next run opens them."""

import os

import tensorflow as tf

from training.checkpoints import LATEST_DIR, RunCheckpoints, newest_checkpoint


def test_what_a_kill_left_half_written_is_swept_and_the_whole_checkpoints_kept(tmp_path):
    directory = str(tmp_path / "checkpoints")
    checkpoint = tf.train.Checkpoint(step=tf.Variable(0))
    first = RunCheckpoints(checkpoint, directory)
    first.save(10)
    first.save(12, between_evaluations=True)
    # a kill while the index was written (TensorFlow's atomic write), and one while a save's shards were
    for where in (directory, os.path.join(directory, LATEST_DIR)):
        with open(os.path.join(where, "checkpoint.tmp" + "0123456789abcdef" * 2), "w") as f:
            f.write('model_checkpoint_path: "ckpt-1')
        os.makedirs(os.path.join(where, "ckpt-14_temp"))
    RunCheckpoints(checkpoint, directory)
    assert sorted(os.listdir(directory)) == ["checkpoint", "ckpt-10.data-00000-of-00001", "ckpt-10.index", LATEST_DIR]
    assert sorted(os.listdir(os.path.join(directory, LATEST_DIR))) == [
        "checkpoint", "ckpt-12.data-00000-of-00001", "ckpt-12.index"]
    assert newest_checkpoint(str(tmp_path)) == (os.path.join(directory, LATEST_DIR, "ckpt-12"), 12)
