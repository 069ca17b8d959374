"""End-to-end runs of the whole pipeline under LocalDagRunner with SQLite ML Metadata, on a small
slice of Tiny Shakespeare and a tiny model."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from tfx import v1 as tfx

from pipeline import lineage
from pipeline.configs import make_pipeline_config
from pipeline.pipeline import create_pipeline
from test_helpers.processes import gone, training_process

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_TRAINING = dict(n_layer=1, n_head=2, n_embd=32, block_size=32, batch_size=8, max_iters=40,
                     eval_interval=20, eval_iters=2, log_interval=10, learning_rate=3e-3, warmup_iters=5,
                     lr_decay_iters=40, min_lr=3e-4)


def _store(config):
    return lineage.sqlite_store(config.metadata_path)


def _execution_ids(config):
    return {e.id for e in _store(config).get_executions()}


def _component_states(config, exclude=frozenset()):
    """The state of each component execution by type name (resolvers, which always run, left
    out), but for the executions in `exclude`."""
    store = _store(config)
    type_names = {t.id: t.name.rsplit(".", 1)[-1] for t in store.get_execution_types()}
    return {type_names[e.type_id]: e.last_known_state for e in store.get_executions()
            if e.id not in exclude and not type_names[e.type_id].endswith("Resolver")}


def _pushed_versions(config):
    return sorted(os.listdir(config.serving_dir)) if os.path.isdir(config.serving_dir) else []


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory, shakespeare_text):
    path = tmp_path_factory.mktemp("corpus") / "shakespeare_small.txt"
    path.write_text(shakespeare_text[:30000], encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def char_run(tmp_path_factory, small_corpus):
    """The default (character) pipeline, run once."""
    config = make_pipeline_config("shakespeare_char", input_pattern=small_corpus,
                                  output_dir=str(tmp_path_factory.mktemp("char_run")),
                                  val_loss_threshold=3.5, train_overrides=dict(TINY_TRAINING))
    tfx.orchestration.LocalDagRunner().run(create_pipeline(config))
    return config


def test_char_pipeline_trains_blesses_and_pushes_a_servable_model(char_run):
    versions = _pushed_versions(char_run)
    assert len(versions) == 1
    loaded = tf.saved_model.load(os.path.join(char_run.serving_dir, versions[0]))
    texts = loaded.signatures["generate_text"](
        prompt=tf.constant("ROMEO:"), num_samples=tf.constant(2), max_new_tokens=tf.constant(20),
        temperature=tf.constant(0.8), top_k=tf.constant(10), top_p=tf.constant(1.0),
        seed=tf.constant(1, tf.int64))["text"].numpy()
    assert all(t.decode().startswith("ROMEO:") and len(t.decode()) == 26 for t in texts)
    tokenizer = json.loads(loaded.signatures["tokenizer"]()["tokenizer"].numpy())
    assert tokenizer["kind"] == "char" and len(tokenizer["chars"]) > 30
    summary = lineage.run_summary(char_run.metadata_path)
    assert "blessed: yes" in summary and os.path.join(char_run.serving_dir, versions[0]) in summary
    evaluation = max(_store(char_run).get_artifacts_by_type("ModelEvaluation"), key=lambda a: a.id)
    assert os.path.isfile(os.path.join(evaluation.uri, "report.md"))
    assert evaluation.custom_properties["candidate_val_loss"].double_value < 3.5


def _rerun(config):
    """Run again; the states of that run's component executions by type name."""
    before = _execution_ids(config)
    tfx.orchestration.LocalDagRunner().run(create_pipeline(config))
    return _component_states(config, exclude=before)


def test_rerun_with_cache_executes_nothing(char_run):
    from ml_metadata.proto import metadata_store_pb2

    # The Evaluator's baseline is the last blessed model other than the candidate: the same (none)
    # as in the first run, so nothing has a new input.
    assert set(_rerun(char_run).values()) == {metadata_store_pb2.Execution.CACHED}
    assert len(_pushed_versions(char_run)) == 1


def test_changed_hyperparameter_reruns_the_trainer_and_what_follows(char_run):
    """One training hyperparameter changed: tokenization and Transform come from the cache; the
    Trainer, the Evaluator (against the first run's blessed model) and the Pusher run."""
    from ml_metadata.proto import metadata_store_pb2

    cached, complete = metadata_store_pb2.Execution.CACHED, metadata_store_pb2.Execution.COMPLETE
    config = make_pipeline_config("shakespeare_char", input_pattern=char_run.input_pattern,
                                  output_dir=char_run.output_dir, val_loss_threshold=3.5, max_regression=10.0,
                                  train_overrides={**TINY_TRAINING, "learning_rate": 2e-3})
    assert _rerun(config) == {"TokenizeText": cached, "ImportSchemaGen": cached, "Transform": cached,
                              "Trainer": complete, "LMEvaluator": complete, "Pusher": complete}
    store = _store(config)
    models = sorted(store.get_artifacts_by_type("Model"), key=lambda a: a.id)
    evaluation = max(store.get_artifacts_by_type("ModelEvaluation"), key=lambda a: a.id)
    with open(os.path.join(evaluation.uri, "report.md")) as f:
        assert models[0].uri in f.read()  # compared with the first run's blessed model


def test_lineage_shows_the_chain_from_the_text_file_to_the_pushed_model(char_run):
    import runner

    graph = lineage.model_lineage(lineage.sqlite_store(char_run.metadata_path))
    pushed = _pushed_versions(char_run)[-1]
    text = graph.to_text()
    assert text.startswith("lineage of PushedModel #")
    assert os.path.join(char_run.serving_dir, pushed) in text.splitlines()[0]
    steps = [e.type_name for e in graph.executions]
    assert steps == ["ImportSchemaGen", "TokenizeText", "Transform", "Trainer", "LMEvaluator", "Pusher"]
    tokenize, transform, trainer, evaluator, pusher = (text.index(f"\n{s} #") for s in steps[1:])
    assert tokenize < transform < trainer < evaluator < pusher
    corpus = open(char_run.input_pattern, encoding="utf-8").read()
    n_train = int(len(corpus) * 0.9)
    assert f"input_pattern: {char_run.input_pattern}" in text[tokenize:transform]
    assert f"num_tokens_train: {n_train}" in text and f"num_tokens_val: {len(corpus) - n_train}" in text
    assert f"vocabulary: {len(set(corpus))} characters" in text[trainer:evaluator]
    assert "transform_fn/assets/" in text[transform:trainer]  # tf.Transform's vocabulary file
    assert "n_layer=1" in text[trainer:evaluator] and "max_iters=40" in text[trainer:evaluator]
    assert "candidate_val_loss: " in text[evaluator:pusher] and "blessed: 1" in text[evaluator:pusher]
    assert f"pushed_destination: {os.path.join(char_run.serving_dir, pushed)}" in text[pusher:]
    dot = graph.to_dot()
    assert dot.startswith("digraph lineage {") and dot.count(" -> ") == len(graph.edges)

    # the same from the command line, for the Model artifact given by id, and as a PNG
    model_id = next(key for source, key, name in graph.edges if name == "model" and source.startswith("e"))[1:]
    out = os.path.join(char_run.output_dir, "lineage.png")
    runner.main(["lineage", f"--output={char_run.output_dir}", f"--model={model_id}", "--format=png",
                 f"--png={out}"])
    with open(out, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(LookupError, match="no artifact with id 99999"):
        lineage.model_lineage(lineage.sqlite_store(char_run.metadata_path), "99999")


def test_resume_continues_the_latest_models_training_run(char_run):
    """resume=True: the Trainer starts from the checkpoint of the run that made the latest model."""
    config = make_pipeline_config("shakespeare_char", input_pattern=char_run.input_pattern,
                                  output_dir=char_run.output_dir, val_loss_threshold=3.5, resume=True,
                                  train_overrides={**TINY_TRAINING, "max_iters": 60, "lr_decay_iters": 60})
    tfx.orchestration.LocalDagRunner().run(create_pipeline(config))
    runs = sorted(_store(config).get_artifacts_by_type("ModelRun"), key=lambda a: a.id)
    latest = tf.train.latest_checkpoint(os.path.join(runs[-2].uri, "checkpoints"))
    saved_at = int(latest.rsplit("-", 1)[1])  # the previous run's last checkpoint
    with open(os.path.join(runs[-1].uri, "history.json")) as f:
        resumed = json.load(f)
    assert resumed["eval"][0][0] == saved_at  # evaluated again where it left off, as nanoGPT does
    assert resumed["result"]["iter_num"] == 61


def test_unblessed_model_is_not_pushed(char_run):
    """A model worse than the threshold: evaluated, not blessed, and the serving dir unchanged."""
    pushed = _pushed_versions(char_run)
    config = make_pipeline_config("shakespeare_char", input_pattern=char_run.input_pattern,
                                  output_dir=char_run.output_dir, val_loss_threshold=0.01,
                                  train_overrides={**TINY_TRAINING, "max_iters": 10})
    tfx.orchestration.LocalDagRunner().run(create_pipeline(config))
    blessing = max(_store(config).get_artifacts_by_type("ModelBlessing"), key=lambda a: a.id)
    assert blessing.custom_properties["blessed"].int_value == 0
    assert _pushed_versions(config) == pushed
    assert "blessed: no" in lineage.run_summary(config.metadata_path)


def test_eval_gpt2_style_with_a_local_baseline(tmp_path, small_corpus, bpe_dir):
    """eval_gpt2's shape (BPE data, a GPT-2 checkpoint evaluated without training) with a small
    local GPT-2 checkpoint standing in for the hub's."""
    from model import GPT, GPTConfig

    checkpoint = str(tmp_path / "tiny-gpt2")
    GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=64, vocab_size=50257), seed=0).save_pretrained(checkpoint)
    config = make_pipeline_config(
        "eval_gpt2", dataset_name=None, input_pattern=small_corpus, tokenizer="gpt2", bpe_dir=bpe_dir,
        output_dir=str(tmp_path / "out"), baselines=[checkpoint], eval_batches=4, eval_batch_size=2,
        train_overrides=dict(init_from=checkpoint, block_size=64, batch_size=2, eval_iters=2))
    tfx.orchestration.LocalDagRunner().run(create_pipeline(config))
    evaluation = max(_store(config).get_artifacts_by_type("ModelEvaluation"), key=lambda a: a.id)
    with open(os.path.join(evaluation.uri, "report.md")) as f:
        report = f.read()
    assert "tiny-gpt2" in report
    candidate = evaluation.custom_properties["candidate_val_loss"].double_value
    assert np.isfinite(candidate) and candidate > 9.0  # an untrained 50257-way model: ~ln(50257)


def test_runner_samples_from_the_pushed_model(char_run, capsys):
    import runner

    runner.main(["sample", f"--output={char_run.output_dir}", "--start=ROMEO:", "--num_samples=2",
                 "--max_new_tokens=12", "--seed=3"])
    samples = capsys.readouterr().out.split("---------------\n")
    assert len(samples) == 3 and samples[2] == ""
    assert all(s.startswith("ROMEO:") and len(s.rstrip("\n")) >= 6 for s in samples[:2])


def test_interrupted_run_completes_on_rerun_without_repeating_finished_components(tmp_path, small_corpus):
    """kill -9 of `runner.py run` while the Trainer trains; the same command again takes the
    tokenization and Transform from the cache, trains anew and pushes, and ML Metadata stays whole."""
    from ml_metadata.proto import metadata_store_pb2

    out = tmp_path / "out"
    training = {**TINY_TRAINING, "max_iters": 600, "lr_decay_iters": 600, "eval_interval": 300}
    command = [sys.executable, "runner.py", "run", f"--data={small_corpus}", f"--output={out}",
               "--val_loss_threshold=9", *(f"--{k}={v}" for k, v in training.items())]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    for line in process.stdout:
        seen.append(line)
        if line.startswith("iter 10:"):  # the Trainer is training
            break
    training = training_process(process.pid)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert any(line.startswith("iter 10:") for line in seen), "".join(seen[-30:])
    assert training and gone(training), "the Trainer's training process outlived runner.py"
    config = make_pipeline_config("shakespeare_char", output_dir=str(out))
    first = _component_states(config)
    assert first["TokenizeText"] == first["Transform"] == metadata_store_pb2.Execution.COMPLETE
    assert first["Trainer"] == metadata_store_pb2.Execution.RUNNING and "Pusher" not in first
    assert not os.path.isdir(config.serving_dir)

    before = _execution_ids(config)
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    rerun = _component_states(config, exclude=before)
    cached, complete = metadata_store_pb2.Execution.CACHED, metadata_store_pb2.Execution.COMPLETE
    assert rerun == {"TokenizeText": cached, "ImportSchemaGen": cached, "Transform": cached,
                     "Trainer": complete, "LMEvaluator": complete, "Pusher": complete}
    assert len(_pushed_versions(config)) == 1 and "pushed model: " + config.serving_dir in result.stdout
    # the killed run's executions are no longer RUNNING, and their unfinished outputs are gone
    assert "cleared executions" in result.stdout
    assert metadata_store_pb2.Execution.RUNNING not in {e.last_known_state for e in _store(config).get_executions()}
