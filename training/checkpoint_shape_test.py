"""Checkpoints know their shape: resume with another shape, and a run directory whose
model_config.json disagrees with its checkpoint, are refused in one line naming the field."""

import json
import os

import pytest

from training.checkpoint_shape import CheckpointMismatch
from training.config import MODEL_CONFIG_FILE
from serving.sample import load_for_sampling
from training.train import Trainer
from training.train_test import small_text as text_file, tiny_config  # noqa: F401 (a fixture)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, text_file):  # noqa: F811
    out_dir = tmp_path_factory.mktemp("run")
    Trainer(tiny_config(out_dir, text_file, max_iters=10, eval_interval=10, lr_decay_iters=10),
            log=lambda *_: None).run()
    return out_dir


def test_resume_with_another_shape_is_refused_before_training(run_dir, text_file):  # noqa: F811
    with pytest.raises(CheckpointMismatch) as info:
        Trainer(tiny_config(run_dir, text_file, init_from="resume", n_layer=1, max_iters=20), log=lambda *_: None)
    message = str(info.value)
    assert "\n" not in message and "has n_layer=2, the config says n_layer=1" in message
    assert str(run_dir) in message
    resumed = Trainer(tiny_config(run_dir, text_file, init_from="resume", max_iters=20), log=lambda *_: None)
    assert resumed.start_iter == 10  # the same shape resumes


def test_a_model_config_that_disagrees_with_its_checkpoint_is_refused(run_dir, text_file, tmp_path):  # noqa: F811
    damaged = tmp_path / "run"
    os.system(f"cp -r {run_dir} {damaged}")
    with open(damaged / MODEL_CONFIG_FILE) as f:
        config = json.load(f)
    with open(damaged / MODEL_CONFIG_FILE, "w") as f:
        json.dump({**config, "n_layer": 1, "n_embd": 64}, f)
    with pytest.raises(CheckpointMismatch, match=rf"has n_layer=2, {damaged}/{MODEL_CONFIG_FILE} says n_layer=1"):
        load_for_sampling(str(damaged))  # `sample --from`
    with pytest.raises(CheckpointMismatch, match="has n_layer=2, .* says n_layer=1"):
        Trainer(tiny_config(damaged, text_file, init_from="resume", max_iters=20), log=lambda *_: None)
