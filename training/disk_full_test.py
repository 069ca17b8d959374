"""A full disk while checkpointing and while exporting the trained model (fault injection: a real
ENOSPC on the small_disk tmpfs of conftest.py): one line, nothing half-written, the previous
checkpoint the latest, and the run resumes (the export completes) once space is freed."""

import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from model import GPT, GPTConfig
from training.config import CHECKPOINT_DIR
from core.errors import DiskFull
from serving.export import export_saved_model
from model.tokenizer import CharTokenizer
from training.train import Trainer
from training.train_test import small_text as text_file, tiny_config  # noqa: F401 (a fixture)

CHARS = list("\n abcdefghij")


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


def _fill_all_but(disk, free_bytes):
    """A filler file that leaves `free_bytes` (rounded to pages) free on the disk."""
    (disk / "filler").write_bytes(b"\0" * (shutil.disk_usage(disk).free - free_bytes))
    return disk / "filler"


def test_a_full_disk_while_exporting_the_saved_model_leaves_nothing_and_the_rerun_completes(small_disk):
    """The variables (~57 KB) fit in what is left, saved_model.pb (~490 KB), written after them, does not."""
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=32, block_size=16, vocab_size=len(CHARS)), seed=0)
    path = str(small_disk / "model" / "Format-Serving")
    filler = _fill_all_but(small_disk, 200 * 1024)
    with pytest.raises(DiskFull) as info:
        export_saved_model(model, path, CharTokenizer(CHARS).to_json(), loop="graph")
    assert str(info.value) == f"no space left on the device writing the SavedModel {path}: free space, then run again"
    assert os.listdir(small_disk / "model") == []  # neither the SavedModel nor its temporary sibling
    filler.unlink()
    assert shutil.disk_usage(small_disk).used == 0  # nothing the failed export wrote still holds space
    export_saved_model(model, path, CharTokenizer(CHARS).to_json(), loop="graph")
    assert tf.saved_model.load(path).signatures["tokenizer"]()["tokenizer"].numpy()


def test_a_full_disk_while_writing_the_hugging_face_checkpoint_leaves_nothing_and_the_rerun_completes(small_disk):
    """model.safetensors (~56 KB: 14 pages) fits, config.json, written last, does not."""
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=32, block_size=16, vocab_size=len(CHARS)), seed=0)
    directory = str(small_disk / "model" / "Format-HF")
    filler = _fill_all_but(small_disk, 14 * 4096)
    with pytest.raises(DiskFull) as info:
        model.save_pretrained(directory)
    assert str(info.value) == (f"no space left on the device writing the Hugging Face checkpoint {directory}: "
                               f"free space, then run again")
    assert os.listdir(small_disk / "model") == []
    filler.unlink()
    model.save_pretrained(directory)
    assert sorted(os.listdir(directory)) == ["config.json", "model.safetensors"]
    ids = tf.constant([[1, 2, 3]])
    np.testing.assert_array_equal(GPT.from_pretrained(directory)(ids).numpy(), model(ids).numpy())
