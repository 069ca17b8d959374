"""A full disk while checkpointing (fault injection: a real ENOSPC on the small_disk tmpfs of
conftest.py): one line, nothing half-written, the previous checkpoint the latest, and the run
resumes once space is freed."""

import os

import pytest
import tensorflow as tf

from model.config import CHECKPOINT_DIR
from model.errors import DiskFull
from model.train import Trainer
from model.train_test import small_text as text_file, tiny_config  # noqa: F401 (a fixture)


def test_a_full_disk_while_checkpointing_is_one_line_and_leaves_the_last_checkpoint(tmp_path, small_disk,
                                                                                 text_file):  # noqa: F811
    """The second checkpoint (~0.34 MB each, with the optimizer's moments) no longer fits."""
    out_dir = small_disk / "run"
    cfg = tiny_config(out_dir, text_file, max_iters=20, eval_interval=10, always_save_checkpoint=True)
    (small_disk / "filler").write_bytes(b"\0" * 350_000)
    with pytest.raises(DiskFull) as info:
        Trainer(cfg, log=lambda *_: None).run()
    message = str(info.value)
    assert message.startswith(f"no space left on the device writing checkpoint 20 in {out_dir}/{CHECKPOINT_DIR}")
    checkpoints = os.path.join(out_dir, CHECKPOINT_DIR)
    assert tf.train.latest_checkpoint(checkpoints).endswith("ckpt-10")
    assert not [f for f in os.listdir(checkpoints) if f.startswith("ckpt-20")]  # nothing half-written
    (small_disk / "filler").unlink()
    resumed = Trainer(tiny_config(out_dir, text_file, max_iters=20, eval_interval=10, always_save_checkpoint=True,
                                  init_from="resume"), log=lambda *_: None)
    assert resumed.start_iter == 10 and resumed.run()["iter_num"] == 21
