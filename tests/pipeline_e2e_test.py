"""End-to-end runs of the whole pipeline under LocalDagRunner with SQLite ML Metadata, on a small
slice of Tiny Shakespeare and a tiny model."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
from tfx import v1 as tfx

from pipeline import lineage
from pipeline.configs import make_pipeline_config
from pipeline.pipeline import create_pipeline

TINY_TRAINING = dict(n_layer=1, n_head=2, n_embd=32, block_size=32, batch_size=8, max_iters=40,
                     eval_interval=20, eval_iters=2, log_interval=10, learning_rate=3e-3, warmup_iters=5,
                     lr_decay_iters=40, min_lr=3e-4)


def _store(config):
    return lineage._store(config.metadata_path)


def _executions(config):
    return _store(config).get_executions()


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
    """Run again; the component executions (resolvers always run) of that run by type name."""
    store = _store(config)
    before = {e.id for e in store.get_executions()}
    tfx.orchestration.LocalDagRunner().run(create_pipeline(config))
    type_names = {t.id: t.name.rsplit(".", 1)[-1] for t in store.get_execution_types()}
    return {type_names[e.type_id]: e.last_known_state for e in store.get_executions()
            if e.id not in before and not type_names[e.type_id].endswith("Resolver")}


def test_rerun_with_cache_executes_nothing(char_run):
    from ml_metadata.proto import metadata_store_pb2

    cached, complete = metadata_store_pb2.Execution.CACHED, metadata_store_pb2.Execution.COMPLETE
    first = _rerun(char_run)
    # The first rerun's Evaluator has a new input, the model the first run blessed, which is the
    # candidate itself: it evaluates, does not bless it again, and the Pusher pushes nothing.
    assert first == {"TokenizeText": cached, "ImportSchemaGen": cached, "Transform": cached,
                     "Trainer": cached, "LMEvaluator": complete, "Pusher": complete}
    assert len(_pushed_versions(char_run)) == 1
    assert "already blessed" in lineage.run_summary(char_run.metadata_path)
    # From then on an identical rerun executes nothing at all.
    assert set(_rerun(char_run).values()) == {cached}
    assert len(_pushed_versions(char_run)) == 1


def test_resume_continues_the_latest_models_training_run(char_run):
    """resume=True: the Trainer starts from the checkpoint of the run that made the latest model."""
    config = make_pipeline_config("shakespeare_char", input_pattern=char_run.input_pattern,
                                  output_dir=char_run.output_dir, val_loss_threshold=3.5, resume=True,
                                  train_overrides={**TINY_TRAINING, "max_iters": 60, "lr_decay_iters": 60})
    tfx.orchestration.LocalDagRunner().run(create_pipeline(config))
    runs = sorted(_store(config).get_artifacts_by_type("ModelRun"), key=lambda a: a.id)
    assert len(runs) == 2
    latest = tf.train.latest_checkpoint(os.path.join(runs[0].uri, "checkpoints"))
    saved_at = int(latest.rsplit("-", 1)[1])  # the first run's last checkpoint
    with open(os.path.join(runs[1].uri, "history.json")) as f:
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
