"""run_fn's file handling on a non-local filesystem (tf.io.gfile, as gs:// on Vertex AI needs)."""

import tensorflow as tf

from components.trainer.run_fn import RUN_DIR_POINTER, _copy_previous_run


def _write(path, text=""):
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(text)


def test_resume_copies_the_previous_run_on_ram(tmp_path):
    root = f"ram://{tmp_path.name}"
    previous, out = f"{root}/run1", f"{root}/run2"
    tf.io.gfile.makedirs(f"{previous}/checkpoints/ckpt-9_temp")  # a save cut short
    for name in ("checkpoints/checkpoint", "checkpoints/ckpt-8.index", "checkpoints/ckpt-9_temp/part",
                 "model_config.json", "tokenizer.json", "train_config.json"):
        _write(f"{previous}/{name}", name)
    _write(f"{root}/model1/{RUN_DIR_POINTER}", previous)
    tf.io.gfile.makedirs(out)
    _copy_previous_run(f"{root}/model1/Format-Serving", out)
    assert sorted(tf.io.gfile.listdir(f"{out}/checkpoints")) == ["checkpoint", "ckpt-8.index"]
    for name in ("checkpoints/ckpt-8.index", "model_config.json", "tokenizer.json"):
        with tf.io.gfile.GFile(f"{out}/{name}") as f:
            assert f.read() == name
    assert not tf.io.gfile.exists(f"{out}/train_config.json")  # the new run writes its own
