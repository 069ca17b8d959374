"""The Trainer's run_fn: its training process of its own, killed and run again, which continues the
interrupted training to the losses and artifacts of the in-process training loop; file handling on
a non-local filesystem (tf.io.gfile, as gs:// on Vertex AI needs)."""

import glob
import json
import os
import re
import signal
import threading
import time

import numpy as np
import pytest
import tensorflow as tf

from components import artifact_layout
from components.trainer import trainings
from components.artifact_layout import RUN_DIR_POINTER
from components.trainer.run_fn import _copy_previous_run, _previous_run
from components.deploy_settings import DeployConfig
from components.trainer.settings import custom_config
from core import shards
from training.config import make_config
from core.errors import UserError
from model.tokenizer import CharTokenizer
from training.train import Trainer
from training.train_process import TrainingProcessFailed
from test_helpers.processes import training_process

# killed at its first checkpoint (iter 20): 80 more iterations, 4 evaluations and checkpoints to go
TRAINING = dict(n_layer=1, n_head=2, n_embd=32, block_size=32, batch_size=8, max_iters=100, eval_interval=20,
                eval_iters=2, log_interval=10, learning_rate=3e-3, warmup_iters=5, lr_decay_iters=100, min_lr=3e-4,
                vocab_size=128)


def _write(path, text=""):
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(text)


@pytest.fixture(scope="module")
def examples(tmp_path_factory, shakespeare_text):
    """An Examples directory of character token shards (Split-train/, Split-val/)."""
    text = shakespeare_text[:30000]
    ids = CharTokenizer.from_text(text).encode(text)
    uri = str(tmp_path_factory.mktemp("examples"))
    cut = int(len(ids) * 0.9)
    for split, part in ((shards.TRAIN, ids[:cut]), (shards.VAL, ids[cut:])):
        shards.write_split(shards.split_dir(uri, split), [part])
    return uri


def test_the_trainer_trains_in_a_process_of_its_own_whose_kill_fails_it_cleanly_and_the_rerun_continues(
        tmp_path, examples, capsys):
    """A kill of the training process mid-training fails the Trainer (FAILED in ML Metadata, no Model, one
    line); the rerun continues from the checkpoint the killed one saved, and completes with the losses
    and weights of the in-process training loop."""
    from ml_metadata.proto import metadata_store_pb2
    from tfx import v1 as tfx

    from pipeline import metadata

    root, metadata_path = str(tmp_path / "root"), str(tmp_path / "metadata.sqlite")

    def pipeline():
        data = tfx.dsl.Importer(source_uri=examples, artifact_type=tfx.types.standard_artifacts.Examples,
                                properties={"split_names": json.dumps(list(shards.SPLITS))}).with_id("examples")
        trainer = tfx.components.Trainer(
            run_fn="components.trainer.run_fn.run_fn", examples=data.outputs["result"],
            train_args=tfx.proto.TrainArgs(splits=[shards.TRAIN]), eval_args=tfx.proto.EvalArgs(splits=[shards.VAL]),
            custom_config=custom_config(make_config(**TRAINING), DeployConfig(), resume=False,
                                        trainings_dir=trainings.trainings_dir(root)))
        return tfx.dsl.Pipeline(
            pipeline_name="killed_trainer", pipeline_root=root, components=[data, trainer], enable_cache=True,
            metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(metadata_path))

    def trainer_states():
        store = metadata.sqlite_store(metadata_path)
        [trainer_type] = [t.id for t in store.get_execution_types() if t.name.endswith("Trainer")]
        models = [a for a in store.get_artifacts_by_type("Model") if a.state == metadata_store_pb2.Artifact.LIVE]
        return [e.last_known_state for e in store.get_executions() if e.type_id == trainer_type], models

    killed = []

    def kill_mid_training():  # once the run has saved a checkpoint: mid-training
        deadline = time.time() + 300
        while time.time() < deadline and not killed:
            child = training_process(os.getpid())
            if child and glob.glob(f"{root}/Trainer/trainings/*/checkpoints/checkpoint"):
                os.kill(child, signal.SIGKILL)
                killed.append(child)
            time.sleep(0.02)

    killer = threading.Thread(target=kill_mid_training, daemon=True)
    killer.start()
    with pytest.raises(TrainingProcessFailed) as failure:
        tfx.orchestration.LocalDagRunner().run(pipeline())
    killer.join()
    message = str(failure.value)
    assert isinstance(failure.value, UserError) and "\n" not in message  # runner.py prints it as one line
    training = re.search(rf"training process of ({re.escape(root)}/Trainer/trainings/\w+) was killed by SIGKILL; "
                         rf"nothing was published from it: run again to continue from its checkpoint of iteration "
                         rf"(\d+)$", message)
    assert training, message
    states, models = trainer_states()
    assert states == [metadata_store_pb2.Execution.FAILED] and not models
    assert training_process(os.getpid()) is None

    capsys.readouterr()
    tfx.orchestration.LocalDagRunner().run(pipeline())
    states, models = trainer_states()
    assert states == [metadata_store_pb2.Execution.FAILED, metadata_store_pb2.Execution.COMPLETE]
    [model] = models
    [model_run] = [a for a in metadata.sqlite_store(metadata_path).get_artifacts_by_type("ModelRun")
                   if a.state == metadata_store_pb2.Artifact.LIVE]
    printed = capsys.readouterr().out  # the training process's lines, streamed to this process's stdout
    assert "step 100: train loss" in printed and f"step {training[2]}: train loss" not in printed
    assert (f"continuing the training interrupted at iteration {training[2]} (run "
            f"{os.path.basename(training[1])})\n") in printed
    record = json.load(open(os.path.join(training[1], trainings.TRAINING_FILE)))
    assert record["completed_as"] == model_run.uri and [a["from_iteration"] for a in record["attempts"]] == [
        0, int(training[2])]
    assert sorted(os.listdir(os.path.join(model_run.uri, "checkpoints"))) == [
        "checkpoint", "ckpt-100.data-00000-of-00001", "ckpt-100.index"]

    # The same losses and weights as the training loop run in this process. The training process ran
    # its micro-batches as one branch per core, which this process, where TensorFlow runs already,
    # gets only when told (cpu_branches): the same computation, so the same losses to the last bit.
    branches = re.search(r"parallel branches per micro-batch: (\d+)", printed)
    branches = int(branches.group(1)) if branches else 1
    assert branches == min(len(os.sched_getaffinity(0)), TRAINING["batch_size"])
    reference = Trainer(make_config(**TRAINING, cpu_branches=branches, out_dir=str(tmp_path / "in_process"),
                                    data_dir=examples), tokenizer_json={"kind": "gpt2"}, log=lambda *_: None)
    result = reference.run()
    with tf.io.gfile.GFile(os.path.join(model_run.uri, artifact_layout.HISTORY_FILE)) as f:
        history = json.load(f)
    assert history["eval"] == [list(row) for row in reference.history]
    assert history["train"] == [list(row) for row in reference.train_losses]
    assert history["result"] == result
    with tf.io.gfile.GFile(os.path.join(model.uri, RUN_DIR_POINTER)) as f:
        assert f.read() == model_run.uri
    assert tf.io.gfile.isdir(os.path.join(model.uri, artifact_layout.HF_CHECKPOINT_DIR))
    latest = tf.train.latest_checkpoint(str(tmp_path / "in_process" / "checkpoints"))  # the best weights
    tf.train.Checkpoint(model=reference.model).restore(latest).expect_partial()
    ids = tf.constant([[1, 2, 3, 4, 5]], tf.int32)
    served = tf.saved_model.load(os.path.join(model.uri, "Format-Serving")).signatures["logits"](idx=ids)["logits"]
    np.testing.assert_allclose(served.numpy(), reference.model(ids).numpy(), rtol=1e-5, atol=1e-5)


def test_resume_copies_the_previous_run_on_ram(tmp_path):
    root = f"ram://{tmp_path.name}"
    previous, out = f"{root}/run1", f"{root}/run2"
    tf.io.gfile.makedirs(f"{previous}/checkpoints/ckpt-9_temp")  # a save cut short
    for name in ("checkpoints/checkpoint", "checkpoints/ckpt-8.index", "checkpoints/ckpt-9_temp/part",
                 "model_config.json", "tokenizer.json", "train_config.json"):
        _write(f"{previous}/{name}", name)
    _write(f"{root}/model1/{RUN_DIR_POINTER}", previous)
    tf.io.gfile.makedirs(out)
    _copy_previous_run(_previous_run(f"{root}/model1/Format-Serving"), out)
    assert sorted(tf.io.gfile.listdir(f"{out}/checkpoints")) == ["checkpoint", "ckpt-8.index"]
    for name in ("checkpoints/ckpt-8.index", "model_config.json", "tokenizer.json"):
        with tf.io.gfile.GFile(f"{out}/{name}") as f:
            assert f.read() == name
    assert not tf.io.gfile.exists(f"{out}/train_config.json")  # the new run writes its own
