"""End-to-end runs of the whole pipeline under LocalDagRunner with SQLite ML Metadata, on a small
slice of Tiny Shakespeare and a tiny model."""

import gc
import glob
import json
import os
import re
import signal
import sys

import numpy as np
import pytest
import tensorflow as tf
from tfx import v1 as tfx

from core import shards
from pipeline import fault_injection, lineage
from pipeline.configs import make_pipeline_config
from pipeline.pipeline import create_pipeline
from test_helpers.damage import flip_bytes_in_place
from test_helpers.forked_runner import forked_runner
from test_helpers.processes import group_gone

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
    """The default (character) pipeline, run once, then run again unchanged. What the tests check of
    these two runs is recorded here (char_run.recorded), before any test runs more in the same store:
    each test passes alone and in any order."""
    config = make_pipeline_config("shakespeare_char", input_pattern=small_corpus,
                                  output_dir=str(tmp_path_factory.mktemp("char_run")),
                                  val_loss_threshold=3.5, train_overrides=dict(TINY_TRAINING))
    tfx.orchestration.LocalDagRunner().run(create_pipeline(config))
    config.recorded = dict(versions=_pushed_versions(config), summary=lineage.run_summary(config.metadata_path),
                           rerun_states=_rerun(config), versions_after_rerun=_pushed_versions(config))
    return config


def test_char_pipeline_trains_blesses_and_pushes_a_servable_model(char_run):
    versions = char_run.recorded["versions"]
    assert len(versions) == 1
    loaded = tf.saved_model.load(os.path.join(char_run.serving_dir, versions[0]))
    texts = loaded.signatures["generate_text"](
        prompt=tf.constant("ROMEO:"), num_samples=tf.constant(2), max_new_tokens=tf.constant(20),
        temperature=tf.constant(0.8), top_k=tf.constant(10), top_p=tf.constant(1.0),
        seed=tf.constant(1, tf.int64))["text"].numpy()
    assert all(t.decode().startswith("ROMEO:") and len(t.decode()) == 26 for t in texts)
    tokenizer = json.loads(loaded.signatures["tokenizer"]()["tokenizer"].numpy())
    assert tokenizer["kind"] == "char" and len(tokenizer["chars"]) > 30
    summary = char_run.recorded["summary"]
    assert "blessed: yes" in summary and os.path.join(char_run.serving_dir, versions[0]) in summary
    evaluation = min(_store(char_run).get_artifacts_by_type("ModelEvaluation"), key=lambda a: a.id)
    assert os.path.isfile(os.path.join(evaluation.uri, "report.md"))
    assert evaluation.custom_properties["candidate_val_loss"].double_value < 3.5


def _last_blessed_model(config):
    """The uri of the latest model the LMEvaluator blessed."""
    blessings = [b for b in _store(config).get_artifacts_by_type("ModelBlessing")
                 if b.custom_properties["blessed"].int_value == 1]
    return max(blessings, key=lambda b: b.id).custom_properties["current_model"].string_value


def _rerun(config):
    """Run again; the states of that run's component executions by type name."""
    before = _execution_ids(config)
    tfx.orchestration.LocalDagRunner().run(create_pipeline(config))
    return _component_states(config, exclude=before)


def test_rerun_with_cache_executes_nothing(char_run):
    from ml_metadata.proto import metadata_store_pb2

    # The Evaluator's baseline is the last blessed model other than the candidate: the same (none)
    # as in the first run, so nothing has a new input.
    assert set(char_run.recorded["rerun_states"].values()) == {metadata_store_pb2.Execution.CACHED}
    assert char_run.recorded["versions_after_rerun"] == char_run.recorded["versions"]


def test_changed_hyperparameter_reruns_the_trainer_and_what_follows(char_run):
    """One training hyperparameter changed: tokenization and Transform come from the cache; the
    Trainer, the Evaluator (against the first run's blessed model) and the Pusher run."""
    from ml_metadata.proto import metadata_store_pb2

    cached, complete = metadata_store_pb2.Execution.CACHED, metadata_store_pb2.Execution.COMPLETE
    config = make_pipeline_config("shakespeare_char", input_pattern=char_run.input_pattern,
                                  output_dir=char_run.output_dir, val_loss_threshold=3.5, max_regression=10.0,
                                  train_overrides={**TINY_TRAINING, "learning_rate": 2e-3})
    last_blessed = _last_blessed_model(config)  # char_run's, or another test's made since
    assert _rerun(config) == {"TokenizeText": cached, "ImportSchemaGen": cached, "Transform": cached,
                              "Trainer": complete, "LMEvaluator": complete, "Pusher": complete}
    store = _store(config)
    evaluation = max(store.get_artifacts_by_type("ModelEvaluation"), key=lambda a: a.id)
    with open(os.path.join(evaluation.uri, "report.md")) as f:
        assert last_blessed in f.read()  # compared with the last blessed model


def test_lineage_shows_the_chain_from_the_text_file_to_the_pushed_model(char_run):
    import runner

    pushed = char_run.recorded["versions"][0]  # the model char_run pushed (other tests push more)
    graph = lineage.model_lineage(lineage.sqlite_store(char_run.metadata_path),
                                  os.path.join(char_run.serving_dir, pushed))
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
    """resume=True: the Trainer starts from the checkpoint of the run that made the latest model
    (char_run's, or another test's: each saves one at an evaluation, where the resumed run evaluates)."""
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
                                  train_overrides={**TINY_TRAINING, "max_iters": 20})
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


# Every kill point of pipeline/fault_injection.py of every component of the default pipeline, in
# the order LocalDagRunner runs them; `writing` of a component that writes in one go falls on `written`.
# Inside the Trainer's training (TINY_TRAINING: checkpoints at its evaluations of 20 and 40), the
# points of training/kill_points.py, each continued by the next run: kill -9 of the training process
# just after checkpoint 20; SIGTERM to runner.py at iteration 30, which it passes on (a checkpoint of
# the iteration it stops at, N); kill -9 of runner.py and its training process as checkpoint 40 is
# about to be written (the next run continues from N); Trainer:writing then falls after the training.
TRAINING_KILL_POINTS = [("training", "after_checkpoint:20:kill"), ("training", "iteration:30:sigterm_parent"),
                        ("training", "before_checkpoint:40:kill_group")]
KILL_POINTS = [(node, point) for node in ("ImportSchemaGen", "TokenizeText", "Transform")
               for point in fault_injection.COMPONENT_POINTS] + [("Trainer", "registered"), *TRAINING_KILL_POINTS] + [
               ("Trainer", point) for point in fault_injection.COMPONENT_POINTS[1:]] + [
               ("latest_blessed_model_resolver", "registered")] + [
               (node, point) for node in ("LMEvaluator", "Pusher") for point in fault_injection.COMPONENT_POINTS]
# How runner.py ends at each training point: one line for the killed training process (exit 2), its
# own stop (128 + SIGTERM), killed with it
TRAINING_ENDS = {"kill": {"exit": 2, "signal": None}, "sigterm_parent": {"exit": 128 + signal.SIGTERM, "signal": None},
                 "kill_group": {"exit": -signal.SIGKILL, "signal": signal.SIGKILL}}


def _output_of(config, component, output, first):
    """The first (or last live) artifact under <pipeline_root>/<component>/<output>/."""
    from ml_metadata.proto import metadata_store_pb2

    prefix = os.path.join(config.pipeline_root, component, output) + os.sep
    artifacts = sorted((a for a in _store(config).get_artifacts() if a.uri.startswith(prefix)
                        and a.state == metadata_store_pb2.Artifact.LIVE), key=lambda a: a.id)
    return (artifacts[0] if first else artifacts[-1]).uri


def _records(examples_uri):
    """Every split's records as {feature: values}, in a canonical order (neither a Beam writer's
    shard order nor the order in which a tf.train.Example serializes its features is fixed)."""
    def parsed(serialized):
        features = tf.train.Example.FromString(serialized).features.feature
        return sorted((key, tuple(getattr(value, value.WhichOneof("kind")).value)) for key, value in features.items())

    return {split: sorted(parsed(r) for r in tf.data.TFRecordDataset(
                tf.io.gfile.glob(os.path.join(examples_uri, split, "*")), compression_type="GZIP").as_numpy_iterator())
            for split in sorted(os.listdir(examples_uri)) if split.startswith("Split-")}


def _generated(serving_path):
    loaded = tf.saved_model.load(serving_path)
    return loaded.signatures["generate_text"](
        prompt=tf.constant("ROMEO:"), num_samples=tf.constant(2), max_new_tokens=tf.constant(20),
        temperature=tf.constant(0.8), top_k=tf.constant(10), top_p=tf.constant(1.0),
        seed=tf.constant(7, tf.int64))["text"].numpy().tolist()


def _assert_same_artifacts(run, uninterrupted):
    """What matters of each component's output is the same as in the uninterrupted run's."""
    def both(component, output, name=""):
        return [os.path.join(_output_of(config, component, output, first), name)
                for config, first in ((run, False), (uninterrupted, True))]

    for component, output in (("TokenizeText", "examples"), ("Transform", "transformed_examples")):
        records, expected = (_records(uri) for uri in both(component, output))
        assert records == expected and all(records.values()), component
    histories = [json.loads(open(path).read()) for path in both("Trainer", "model_run", "history.json")]
    assert histories[0] == histories[1]  # every loss of the training
    weights = [open(path, "rb").read() for path in both("Trainer", "model", "Format-HF/model.safetensors")]
    assert weights[0] == weights[1]
    evaluations = [json.loads(open(path).read()) for path in both("LMEvaluator", "evaluation", "metrics.json")]
    losses = [([(m["role"], m["train_loss"], m["val_loss"]) for m in e["models"]], e["blessed"]) for e in evaluations]
    assert losses[0] == losses[1]
    pushed = [os.path.join(config.serving_dir, _pushed_versions(config)[0]) for config in (run, uninterrupted)]
    assert _generated(pushed[0]) == _generated(pushed[1])


def test_kill_9_at_each_point_of_each_component_then_the_rerun_makes_what_an_uninterrupted_run_makes(
        tmp_path, char_run):
    """`runner.py run` killed with SIGKILL at every point of KILL_POINTS in turn (inside the training:
    its training process killed, runner.py stopped by SIGTERM, both killed), each run the same command
    again after the last was killed (so the components before each point come from the cache, and
    an interrupted training is continued from its latest checkpoint), then once to the end: the
    rerun completes, leaves no RUNNING execution, no staging folder, no unpublished output or version
    directory, and its artifacts, every loss of the training and the weights to the last bit, are
    char_run's."""
    from ml_metadata.proto import metadata_store_pb2

    out = tmp_path / "out"
    argv = ["run", f"--data={char_run.input_pattern}", f"--output={out}", "--val_loss_threshold=3.5",
            *(f"--{k}={v}" for k, v in TINY_TRAINING.items())]
    config = make_pipeline_config("shakespeare_char", output_dir=str(out))
    continued_at = []  # the iteration each run after a training's interruption said it continued from
    with forked_runner() as run:
        for node, point in KILL_POINTS:
            log = tmp_path / f"{node}-{point}.log"
            ended = run(argv, {fault_injection.KILL_AT: f"{node}:{point}"}, log)
            text = log.read_text()
            continued_at += [int(n) for n in re.findall(r"^continuing the training interrupted at iteration (\d+) "
                                                        r"\(run \w+\)$", text, re.M)]
            if node == "training":
                expected = TRAINING_ENDS[point.rsplit(":", 1)[1]]
                assert {k: ended[k] for k in expected} == expected, text[-3000:]
                when, how = point.rsplit(":", 1)
                # killed with its parent, the training process's last line never reached the log: its evaluation's did
                assert (f"fault injection: {how} at training:{when}" if how != "kill_group" else "step 40: ") in text
            else:
                assert ended["signal"] == signal.SIGKILL, text[-3000:]
                assert f"fault injection: SIGKILL at {node}:" in text
            if point.endswith("sigterm_parent"):
                stopped = re.search(r"^runner.py run: the training was stopped by SIGTERM at iteration (\d+), which is "
                                    r"saved in \S+/ckpt-\1: run the same command again to continue from it$",
                                    text, re.M)
                assert stopped and "Traceback" not in text, text[-3000:]
            assert group_gone(ended["pid"]), f"a process outlived `runner.py run` killed at {node}:{point}"
            executions = sorted(_store(config).get_executions(), key=lambda e: e.id)
            running = [e.id for e in executions if e.last_known_state == metadata_store_pb2.Execution.RUNNING]
            # the killed one; those killed before were cleared (a failed or stopped Trainer is FAILED)
            assert running == ([] if ended["signal"] is None else [executions[-1].id]), f"{node}:{point}"
        ended = run(argv, {}, tmp_path / "rerun.log")
        rerun = (tmp_path / "rerun.log").read_text()
        assert ended["exit"] == 0, rerun[-3000:]
    # from the checkpoint at 20, from the stop's at N (twice: the kill before checkpoint 40 lost what
    # followed), then from the finished training at 40, exported again after each kill of its export
    assert continued_at[:3] == [20, int(stopped[1]), int(stopped[1])] and 30 <= int(stopped[1]) < 40, continued_at
    assert set(continued_at[3:]) == {40}, continued_at
    assert "cleared executions" in rerun and "pushed model: " + config.serving_dir in rerun
    states = {e.last_known_state for e in _store(config).get_executions()}
    assert metadata_store_pb2.Execution.RUNNING not in states
    finished = {e.id for e in _store(config).get_executions()
                if e.last_known_state != metadata_store_pb2.Execution.CANCELED}
    artifact_dirs = {os.path.normpath(a.uri) for a in _store(config).get_artifacts()}
    assert os.listdir(os.path.join(config.pipeline_root, "Trainer", "trainings")) == []  # published, then removed
    for component in (c for c in os.listdir(config.pipeline_root) if not c.startswith(".")):  # .metadata_store.json
        for output in os.listdir(os.path.join(config.pipeline_root, component)):
            for execution in os.listdir(os.path.join(config.pipeline_root, component, output)):
                path = os.path.join(config.pipeline_root, component, output, execution)
                assert output == ".system" or path in artifact_dirs, f"{path}: no artifact names it"
        system = os.path.join(config.pipeline_root, component, ".system")  # TFX's working directories
        assert not glob.glob(os.path.join(system, "stateful_working_dir", "*")), component
        assert {int(os.path.basename(p)) for p in glob.glob(os.path.join(system, "executor_execution", "*"))
                } <= finished, component
    litter = [os.path.join(d, n) for d, dirs, files in os.walk(out) for n in dirs + files if "staging" in n]
    assert not litter
    assert len(_pushed_versions(config)) == 1
    _assert_same_artifacts(config, char_run)


class _FillDiskAfter:
    """stdout that fills the disk (a filler file) as the line starting with `marker` is printed."""

    def __init__(self, stdout, marker, filler):
        self._stdout, self._marker, self._filler, self.filled = stdout, marker, filler, False

    def write(self, text):
        if text.startswith(self._marker) and not self.filled:
            with open(self._filler, "wb", buffering=0) as f:
                try:
                    while True:
                        f.write(b"\0" * 4096)
                except OSError:  # ENOSPC: the disk is full
                    self.filled = True
        return self._stdout.write(text)

    def flush(self):
        self._stdout.flush()


def _run_fn_args(char_run, run_dir, model_dir):
    """run_fn's arguments to train TINY_TRAINING's model for 20 iterations on char_run's examples."""
    from tfx.components.trainer.fn_args_utils import FnArgs

    examples = _output_of(char_run, "Transform", "transformed_examples", first=True)
    return FnArgs(train_files=[os.path.join(examples, "Split-train", "*")],
                  eval_files=[os.path.join(examples, "Split-val", "*")],
                  transform_graph_path=_output_of(char_run, "Transform", "transform_graph", first=True),
                  model_run_dir=str(run_dir), serving_model_dir=str(model_dir / "Format-Serving"),
                  custom_config={"train_preset": "shakespeare_char",
                                 "train_config": {**TINY_TRAINING, "max_iters": 20, "eval_interval": 20}})


def _run_fn_fails(fn_args):
    """run_fn's DiskFull message."""
    from components.trainer import run_fn
    from core.errors import DiskFull

    with pytest.raises(DiskFull) as info:
        run_fn.run_fn(fn_args)
    message = str(info.value)
    del info  # its traceback holds the Trainer, whose TensorBoard writer holds a file open
    gc.collect()
    return message


def test_a_full_disk_when_the_trainer_writes_its_history_is_one_line_and_leaves_nothing_half_written(
        char_run, small_disk, monkeypatch):
    """run_fn's run and model directories on the 1 MiB tmpfs: the disk fills up as training ends
    (after its last checkpoint, ~0.34 MB, is saved), so that history.json, the first file run_fn
    writes itself, does not fit."""
    run_dir, model_dir = small_disk / "model_run", small_disk / "model"
    stdout = _FillDiskAfter(sys.stdout, "iter 20:", small_disk / "filler")
    monkeypatch.setattr(sys, "stdout", stdout)
    message = _run_fn_fails(_run_fn_args(char_run, run_dir, model_dir))
    assert stdout.filled
    assert message == f"no space left on the device writing history.json in {run_dir}: free space, then run again"
    assert not [name for name in os.listdir(run_dir) if "history" in name]  # nor its temporary file
    assert not model_dir.exists()


def test_a_full_disk_when_the_trainer_writes_run_dir_txt_is_one_line_and_leaves_nothing_half_written(
        char_run, tmpfs, tmp_path, monkeypatch):
    """The Model directory on a 16 MiB tmpfs (the SavedModel takes ~1.5), which fills up (a filler file) as soon as the Hugging
    Face checkpoint is written: run_dir.txt, written last, does not fit."""
    from components import artifact_layout
    from components.trainer.run_fn import RUN_DIR_POINTER
    from model.model import GPT

    small_disk = tmpfs("16M")
    save_pretrained = GPT.save_pretrained

    def save_then_fill_the_disk(self, *args, **kwargs):
        save_pretrained(self, *args, **kwargs)
        with open(small_disk / "filler", "wb", buffering=0) as f:
            with pytest.raises(OSError):
                while True:
                    f.write(b"\0" * 4096)

    monkeypatch.setattr(GPT, "save_pretrained", save_then_fill_the_disk)
    model_dir = small_disk / "model"
    message = _run_fn_fails(_run_fn_args(char_run, tmp_path / "model_run", model_dir))
    assert message == (f"no space left on the device writing {RUN_DIR_POINTER} in {model_dir}: "
                       f"free space, then run again")
    assert sorted(os.listdir(model_dir)) == sorted([artifact_layout.SERVING_DIR, artifact_layout.HF_CHECKPOINT_DIR])


def test_a_damaged_cached_artifact_is_set_aside_and_its_component_runs_again(char_run, capsys):
    """Two damaged cached artifacts: a truncated shard of the transformed examples, read by a Trainer
    that runs anew (a new max_iters), and a shard of the tokenized examples with bytes flipped in
    place (its size kept), read by the standard Transform once its output is set aside, where Beam
    fails with zlib's error, naming no file. `runner.py run` names each, marks its artifact so that
    the cache no longer takes it, and runs the pipeline again, in which TokenizeText and Transform
    make the same records anew (the other tests then read those: the same records)."""
    import runner
    from ml_metadata.proto import metadata_store_pb2

    # TokenizeText records its shards' sizes, which each run checks before it starts (recovery_test),
    # and their SHA-256, checked when a reader of them fails
    tokenized_uri = _output_of(char_run, "TokenizeText", "examples", first=True)
    [tokenized] = _store(char_run).get_artifacts_by_uri(tokenized_uri)
    assert json.loads(tokenized.custom_properties[shards.SHARD_BYTES].string_value) == shards.shard_sizes(tokenized.uri)
    assert json.loads(tokenized.custom_properties[shards.SHARD_SHA256].string_value) == \
        shards.shard_digests(tokenized.uri)
    transformed = _output_of(char_run, "Transform", "transformed_examples", first=False)
    [damaged] = _store(char_run).get_artifacts_by_uri(transformed)
    records, tokenized_records = _records(transformed), _records(tokenized_uri)
    shard = sorted(tf.io.gfile.glob(os.path.join(transformed, "Split-train", "*")))[0]
    with open(shard, "r+b") as f:
        f.truncate(os.path.getsize(shard) // 2)
    flipped = sorted(tf.io.gfile.glob(os.path.join(tokenized_uri, "Split-train", "*")))[0]
    flip_bytes_in_place(flipped)
    capsys.readouterr()
    before = _execution_ids(char_run)
    runner.main(["run", f"--data={char_run.input_pattern}", f"--output={char_run.output_dir}",
                 "--val_loss_threshold=3.5", "--max_regression=10",
                 *(f"--{k}={v}" for k, v in {**TINY_TRAINING, "max_iters": 20}.items())])
    out = capsys.readouterr().out
    assert f"token shard {shard} is damaged (" in out
    assert (f": the Examples artifact #{damaged.id} of Transform is set aside and made again; running the "
            f"pipeline again") in out
    [line] = [line for line in out.splitlines() if line.startswith(f"token shard {flipped} ")]
    assert line.startswith(f"token shard {flipped} is damaged (its bytes are not those written: another SHA-256), "
                           f"which Transform read when it failed (zlib.error: ")
    assert line.endswith(f"): the Examples artifact #{tokenized.id} of TokenizeText is set aside and made again; "
                         f"running the pipeline again")
    for artifact in _store(char_run).get_artifacts_by_id([damaged.id, tokenized.id]):
        assert artifact.state == metadata_store_pb2.Artifact.MARKED_FOR_DELETION
    states = _component_states(char_run, exclude=before)  # by type: the last run's overwrite the earlier ones'
    assert states["TokenizeText"] == states["Transform"] == states["Trainer"] == metadata_store_pb2.Execution.COMPLETE
    remade = _output_of(char_run, "Transform", "transformed_examples", first=False)
    assert remade != transformed and _records(remade) == records
    remade_tokenized = _output_of(char_run, "TokenizeText", "examples", first=False)
    assert remade_tokenized != tokenized_uri and _records(remade_tokenized) == tokenized_records
