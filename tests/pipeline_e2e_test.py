"""End-to-end runs of the whole pipeline under LocalDagRunner with SQLite ML Metadata, on a small
slice of Tiny Shakespeare and a tiny model."""

import gc
import glob
import json
import os
import signal
import sys

import numpy as np
import pytest
import tensorflow as tf
from tfx import v1 as tfx

from core import shards
from orchestration.local import local_pipeline
from pipeline import lineage
from pipeline.configs import Outputs, make_run_config
from test_helpers import fault_injection, pipeline_runs
from test_helpers.damage import FillDiskAfter, flip_bytes_in_place
from test_helpers.forked_runner import forked_runs
from test_helpers.processes import group_gone

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_TRAINING = dict(n_layer=1, n_head=2, n_embd=32, block_size=32, batch_size=8, max_iters=40,
                     eval_interval=20, eval_iters=2, log_interval=10, learning_rate=3e-3, warmup_iters=5,
                     lr_decay_iters=40, min_lr=3e-4)


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory, shakespeare_text):
    path = tmp_path_factory.mktemp("corpus") / "shakespeare_small.txt"
    path.write_text(shakespeare_text[:30000], encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def gpt2_baseline(tmp_path_factory, bpe_dir):
    """A small GPT-2 checkpoint made here (the hub's are not reachable), as --baselines takes one,
    with the BPE files it reads the val text with: {"baselines": [dir], "bpe_dir": dir}."""
    from model import GPT, GPTConfig

    checkpoint = str(tmp_path_factory.mktemp("baseline") / "tiny-gpt2")
    GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=64, vocab_size=50257), seed=0).save_pretrained(checkpoint)
    return {"baselines": [checkpoint], "bpe_dir": bpe_dir}


@pytest.fixture(scope="module")
def char_run(tmp_path_factory, small_corpus, gpt2_baseline):
    """The default (character) pipeline, run once, with a GPT-2 baseline."""
    config = make_run_config("shakespeare_char", input_pattern=small_corpus,
                                  output_dir=str(tmp_path_factory.mktemp("char_run")),
                                  val_loss_threshold=3.5, **gpt2_baseline, **TINY_TRAINING)
    tfx.orchestration.LocalDagRunner().run(local_pipeline(config))
    return config


def test_char_pipeline_trains_blesses_and_pushes_a_servable_model(char_run):
    versions = pipeline_runs.pushed_versions(char_run)
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
    evaluation = max(pipeline_runs.store(char_run).get_artifacts_by_type("ModelEvaluation"), key=lambda a: a.id)
    assert os.path.isfile(os.path.join(evaluation.uri, "report.md"))
    values = {k: v.double_value for k, v in evaluation.custom_properties.items() if v.HasField("double_value")}
    assert values["candidate_val_loss"] < 3.5


def test_the_report_compares_every_model_in_bits_per_byte(char_run):
    """Tiny Shakespeare is ASCII: a character is a byte, so the candidate's bits per byte are its
    loss / ln 2; the unigram baseline, which it beat, and the GPT-2 baseline on the same val text
    in its own tokens, beside it."""
    import math

    evaluation = max(pipeline_runs.store(char_run).get_artifacts_by_type("ModelEvaluation"), key=lambda a: a.id)
    values = {k: v.double_value for k, v in evaluation.custom_properties.items() if v.HasField("double_value")}
    for split in ("train", "val"):
        assert values[f"candidate_{split}_bpb"] == pytest.approx(values[f"candidate_{split}_loss"] / math.log(2))
    assert values["candidate_val_bpb"] < values["unigram_val_bpb"]
    assert values["baseline_tiny_gpt2_val_bpb"] > 0 and "baseline_tiny_gpt2_train_bpb" not in values
    with open(os.path.join(evaluation.uri, "report.md")) as f:
        report = f.read()
    assert f"| candidate | candidate | {values['candidate_train_loss']:.4f} | {values['candidate_val_loss']:.4f} | " \
           f"{values['candidate_train_bpb']:.4f} | {values['candidate_val_bpb']:.4f} |" in report
    assert f"| tiny-gpt2 | baseline | — | {values['baseline_tiny_gpt2_val_loss']:.4f} | — | " \
           f"{values['baseline_tiny_gpt2_val_bpb']:.4f} |" in report
    assert "| unigram | unigram baseline |" in report and "skipped" not in report


def test_a_push_was_infra_checked_and_has_a_model_card(char_run):
    """The InfraBlessing in ML Metadata, the Pusher's infra_blessing input; the card beside the
    pushed SavedModel names the candidate's val loss and the lineage ids."""
    from ml_metadata.proto import metadata_store_pb2

    store = pipeline_runs.store(char_run)
    infra = min(store.get_artifacts_by_type("InfraBlessing"), key=lambda a: a.id)  # char_run's own
    assert infra.custom_properties["blessed"].int_value == 1
    assert os.listdir(infra.uri) == ["INFRA_BLESSED"]
    check = infra.custom_properties["infra_check"].string_value
    assert check.startswith("loaded in a fresh process without the project's code, answered 9 requests: ")
    assert "generate_text (4 samples, max_new_tokens 28)" in check
    type_names = {t.id: t.name for t in store.get_execution_types()}
    pusher = min((e for e in store.get_executions() if type_names[e.type_id].endswith("Pusher")), key=lambda e: e.id)
    inputs = {e.path.steps[0].key: e.artifact_id for e in store.get_events_by_execution_ids([pusher.id])
              if e.type == metadata_store_pb2.Event.INPUT}
    assert inputs["infra_blessing"] == infra.id
    version = os.path.join(char_run.serving_dir, pipeline_runs.pushed_versions(char_run)[0])
    with open(os.path.join(version, "assets.extra", "model_card.md")) as f:
        card = f.read()
    evaluation = max(store.get_artifacts_by_type("ModelEvaluation"), key=lambda a: a.id)
    val_loss = evaluation.custom_properties["candidate_val_loss"].double_value
    assert "| candidate | candidate | char | " in card and f" {val_loss:.4f} |" in card
    corpus = open(char_run.data.input_pattern, encoding="utf-8").read()
    assert f"- source: `{char_run.data.input_pattern}`" in card
    assert f"- tokens: {int(len(corpus) * 0.9):,} train" in card
    assert "n_layer 1, n_head 2, n_embd 32, block_size 32" in card and "max_iters 40" in card
    assert f"| infra_blessing | InfraBlessing | {infra.id} |" in card and "## Intended use and limits" in card
    summary = lineage.run_summary(char_run.metadata_path)
    assert f"model card: {version}/assets.extra/model_card.md" in summary and "infra check: passed in " in summary


def test_the_run_records_the_statistics_schema_and_anomalies_of_its_data(char_run):
    """TFX's own artifact types in ML Metadata, as TFX's and TFDV's readers read them."""
    from tfx.components.statistics_gen import stats_artifact_utils
    from tfx.types import standard_artifacts

    store = pipeline_runs.store(char_run)
    [statistics] = store.get_artifacts_by_type("ExampleStatistics")
    artifact = standard_artifacts.ExampleStatistics()
    artifact.set_mlmd_artifact(statistics)
    corpus = open(char_run.data.input_pattern, encoding="utf-8").read()
    chars = {b.label: b.sample_count for split in ("train", "val") for f in stats_artifact_utils.load_statistics(
             artifact, split).proto().datasets[0].features if f.path.step[0] == "char"
             for b in f.string_stats.rank_histogram.buckets}
    assert set(chars) == set(corpus)
    with open(os.path.join(pipeline_runs.output_of(char_run, "SchemaGen", "schema", first=True), "schema.pbtxt")) as f:
        assert "drift_comparator" in f.read()  # SchemaGen's, with the thresholds of the checks
    [anomalies] = store.get_artifacts_by_type("ExampleAnomalies")
    assert anomalies.custom_properties["anomalies"].string_value == "[]"
    with open(os.path.join(anomalies.uri, "report.md")) as f:
        assert "no blessed model yet: no drift is measured" in f.read()


def _rerun(config):
    """Run again; the states of that run's component executions by type name."""
    before = pipeline_runs.execution_ids(config)
    tfx.orchestration.LocalDagRunner().run(local_pipeline(config))
    return pipeline_runs.component_states(config, exclude=before)


def test_rerun_with_cache_executes_nothing(char_run):
    from ml_metadata.proto import metadata_store_pb2

    # The Evaluator's baseline is the last blessed model other than the candidate: the same (none)
    # as in the first run, so nothing has a new input.
    states = _rerun(char_run)
    assert set(states.values()) == {metadata_store_pb2.Execution.CACHED}
    assert {"SchemaGen", "DataValidator", "AnomalyGate"} <= set(states)  # the same data checked: cached too
    assert len(pipeline_runs.pushed_versions(char_run)) == 1


def test_changed_hyperparameter_reruns_the_trainer_and_what_follows(char_run):
    """One training hyperparameter changed: tokenization and Transform come from the cache; the
    Trainer, the Evaluator (against the first run's blessed model) and the Pusher run."""
    from ml_metadata.proto import metadata_store_pb2

    cached, complete = metadata_store_pb2.Execution.CACHED, metadata_store_pb2.Execution.COMPLETE
    config = char_run.replace(max_regression=10.0, learning_rate=2e-3)
    assert _rerun(config) == {"TokenizeText": cached, "SchemaGen": cached, "DataValidator": cached,
                              "AnomalyGate": cached, "ImportSchemaGen": cached, "Transform": cached,
                              "Trainer": complete, "LMEvaluator": complete, "InfraValidator": complete,
                              "Pusher": complete}
    store = pipeline_runs.store(config)
    models = sorted(store.get_artifacts_by_type("Model"), key=lambda a: a.id)
    evaluation = max(store.get_artifacts_by_type("ModelEvaluation"), key=lambda a: a.id)
    with open(os.path.join(evaluation.uri, "report.md")) as f:
        assert models[0].uri in f.read()  # compared with the first run's blessed model


def test_lineage_shows_the_chain_from_the_text_file_to_the_pushed_model(char_run):
    import runner

    graph = lineage.model_lineage(lineage.sqlite_store(char_run.metadata_path))
    pushed = pipeline_runs.pushed_versions(char_run)[-1]
    text = graph.to_text()
    assert text.startswith("lineage of PushedModel #")
    assert os.path.join(char_run.serving_dir, pushed) in text.splitlines()[0]
    steps = [e.type_name for e in graph.executions]  # by execution id: in the order they ran
    assert sorted(steps) == sorted(["ImportSchemaGen", "TokenizeText", "SchemaGen", "DataValidator", "AnomalyGate",
                                    "Transform", "Trainer", "LMEvaluator", "InfraValidator", "Pusher"])
    # what each needs ran before it (the gate and Transform: in either order, by which run each is of)
    for before, after in (("TokenizeText", "SchemaGen"), ("SchemaGen", "DataValidator"), ("DataValidator", "AnomalyGate"),
                          ("TokenizeText", "Transform"), ("AnomalyGate", "Trainer"), ("Transform", "Trainer"),
                          ("Trainer", "LMEvaluator"), ("LMEvaluator", "InfraValidator"), ("InfraValidator", "Pusher")):
        assert steps.index(before) < steps.index(after), (before, after, steps)
    card = os.path.join(char_run.serving_dir, pushed, "assets.extra", "model_card.md")
    assert text.splitlines()[1] == f"model card: {card}"
    # each execution's part of the text, from its heading to the next one
    starts = sorted((text.index(f"\n{s} #"), s) for s in steps)
    part = {s: text[a:b] for (a, s), (b, _) in zip(starts, starts[1:] + [(len(text), None)])}
    # the statistics of the data, its schema, and the anomalies checked before training (none)
    assert "-> statistics: ExampleStatistics #" in part["TokenizeText"] and "duplicate_documents: 0" in text
    assert "-> schema: Schema #" in part["SchemaGen"]
    assert "-> anomalies: ExampleAnomalies #" in part["DataValidator"] and "anomalies: []" in part["DataValidator"]
    assert "accept_anomalies: 0" in part["AnomalyGate"]
    corpus = open(char_run.data.input_pattern, encoding="utf-8").read()
    n_train = int(len(corpus) * 0.9)
    assert f"input_pattern: {char_run.data.input_pattern}" in part["TokenizeText"]
    assert f"num_tokens_train: {n_train}" in text and f"num_tokens_val: {len(corpus) - n_train}" in text
    assert f"vocabulary: {len(set(corpus))} characters" in part["Trainer"]
    assert "transform_fn/assets/" in part["Transform"]  # tf.Transform's vocabulary file
    assert "n_layer=1" in part["Trainer"] and "max_iters=40" in part["Trainer"]
    assert "candidate_val_loss: " in part["LMEvaluator"] and "blessed: 1" in part["LMEvaluator"]
    assert f"pushed_destination: {os.path.join(char_run.serving_dir, pushed)}" in part["Pusher"]
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
    config = char_run.replace(resume=True, max_iters=60, lr_decay_iters=60)
    tfx.orchestration.LocalDagRunner().run(local_pipeline(config))
    runs = sorted(pipeline_runs.store(config).get_artifacts_by_type("ModelRun"), key=lambda a: a.id)
    latest = tf.train.latest_checkpoint(os.path.join(runs[-2].uri, "checkpoints"))
    saved_at = int(latest.rsplit("-", 1)[1])  # the previous run's last checkpoint
    with open(os.path.join(runs[-1].uri, "history.json")) as f:
        resumed = json.load(f)
    assert resumed["eval"][0][0] == saved_at  # evaluated again where it left off, as nanoGPT does
    assert resumed["result"]["iter_num"] == 61


def test_unblessed_model_is_not_pushed(char_run):
    """A model worse than the threshold: evaluated, not blessed, and the serving dir unchanged."""
    pushed = pipeline_runs.pushed_versions(char_run)
    config = char_run.replace(val_loss_threshold=0.01, max_iters=10)
    tfx.orchestration.LocalDagRunner().run(local_pipeline(config))
    blessing = max(pipeline_runs.store(config).get_artifacts_by_type("ModelBlessing"), key=lambda a: a.id)
    assert blessing.custom_properties["blessed"].int_value == 0
    assert pipeline_runs.pushed_versions(config) == pushed
    assert "blessed: no" in lineage.run_summary(config.metadata_path)


def test_eval_gpt2_style_with_a_local_baseline(tmp_path, small_corpus, bpe_dir):
    """eval_gpt2's shape (BPE data, a GPT-2 checkpoint evaluated without training) with a small
    local GPT-2 checkpoint standing in for the hub's."""
    from model import GPT, GPTConfig

    checkpoint = str(tmp_path / "tiny-gpt2")
    GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=64, vocab_size=50257), seed=0).save_pretrained(checkpoint)
    config = make_run_config(
        "eval_gpt2", dataset_name=None, input_pattern=small_corpus, tokenizer="gpt2", bpe_dir=bpe_dir,
        output_dir=str(tmp_path / "out"), baselines=[checkpoint], eval_batches=4, eval_batch_size=2,
        init_from=checkpoint, block_size=64, batch_size=2, eval_iters=2)
    tfx.orchestration.LocalDagRunner().run(local_pipeline(config))
    evaluation = max(pipeline_runs.store(config).get_artifacts_by_type("ModelEvaluation"), key=lambda a: a.id)
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


# Every kill point of test_helpers/fault_injection.py of every component of the default pipeline, in
# the order LocalDagRunner runs them; `writing` of a component that writes in one go falls on `written`.
# Of the data checks, which write small files in one go (as ImportSchemaGen does) or nothing (the gate),
# the point that leaves something to clear: outputs written and not published; the gate just registered.
# The InfraValidator writes one file, as it ends: its `writing` is its `written`, left out.
CHECKS = [("SchemaGen", "written"), ("latest_blessed_data_resolver", "registered"), ("DataValidator", "written"),
          ("AnomalyGate", "registered")]
KILL_POINTS = [(node, point) for node in ("ImportSchemaGen", "TokenizeText")
               for point in fault_injection.COMPONENT_POINTS] + CHECKS + [
               (node, point) for node in ("Transform", "Trainer") for point in fault_injection.COMPONENT_POINTS] + [
               ("latest_blessed_model_resolver", "registered")] + [
               (node, point) for node in ("LMEvaluator", "InfraValidator", "Pusher")
               for point in fault_injection.COMPONENT_POINTS if (node, point) != ("InfraValidator", "writing")]


def _assert_same_artifacts(run, uninterrupted):
    """What matters of each component's output is the same as in the uninterrupted run's."""
    def both(component, output, name=""):
        return [os.path.join(pipeline_runs.output_of(config, component, output, first), name)
                for config, first in ((run, False), (uninterrupted, True))]

    for component, output in (("TokenizeText", "examples"), ("Transform", "transformed_examples")):
        records, expected = (pipeline_runs.records(uri) for uri in both(component, output))
        assert records == expected and all(records.values()), component
    histories = [json.loads(open(path).read()) for path in both("Trainer", "model_run", "history.json")]
    assert histories[0] == histories[1]  # every loss of the training
    weights = [open(path, "rb").read() for path in both("Trainer", "model", "Format-HF/model.safetensors")]
    assert weights[0] == weights[1]
    evaluations = [json.loads(open(path).read()) for path in both("LMEvaluator", "evaluation", "metrics.json")]
    losses = [([(m["role"], m.get("train_loss"), m["val_loss"]) for m in e["models"]], e["blessed"])
              for e in evaluations]
    assert losses[0] == losses[1]
    pushed = [os.path.join(c.serving_dir, pipeline_runs.pushed_versions(c)[0]) for c in (run, uninterrupted)]
    assert pipeline_runs.generated_texts(pushed[0]) == pipeline_runs.generated_texts(pushed[1])


def test_kill_9_at_each_point_of_each_component_then_the_rerun_makes_what_an_uninterrupted_run_makes(
        tmp_path, char_run, gpt2_baseline):
    """`runner.py run` killed with SIGKILL at every point of KILL_POINTS in turn, each run the same
    command again after the last was killed (so the components before each point come from the
    cache), then once to the end: the rerun completes, leaves no RUNNING execution, no staging
    folder, no unpublished output or version directory, and its artifacts are char_run's."""
    from ml_metadata.proto import metadata_store_pb2

    out = tmp_path / "out"
    argv = ["run", f"--data={char_run.data.input_pattern}", f"--output={out}", "--val_loss_threshold=3.5",
            f"--baselines={gpt2_baseline['baselines'][0]}", f"--bpe_dir={gpt2_baseline['bpe_dir']}",
            *(f"--{k}={v}" for k, v in TINY_TRAINING.items())]
    config = Outputs(str(out))
    with forked_runs(REPO) as run:
        for node, point in KILL_POINTS:
            log = tmp_path / f"{node}-{point}.log"
            ended = run(argv, {fault_injection.KILL_AT: f"{node}:{point}"}, log)
            assert ended["signal"] == signal.SIGKILL, log.read_text()[-3000:]
            assert f"fault injection: SIGKILL at {node}:" in log.read_text()
            assert group_gone(ended["pid"]), f"a process outlived `runner.py run` killed at {node}:{point}"
            executions = sorted(pipeline_runs.store(config).get_executions(), key=lambda e: e.id)
            assert [e.id for e in executions if e.last_known_state == metadata_store_pb2.Execution.RUNNING] == [
                executions[-1].id], f"{node}:{point}"  # the killed one; those killed before were cleared
        ended = run(argv, {}, tmp_path / "rerun.log")
        rerun = (tmp_path / "rerun.log").read_text()
        assert ended["exit"] == 0, rerun[-3000:]
    assert "cleared executions" in rerun and "pushed model: " + config.serving_dir in rerun
    states = {e.last_known_state for e in pipeline_runs.store(config).get_executions()}
    assert metadata_store_pb2.Execution.RUNNING not in states
    finished = {e.id for e in pipeline_runs.store(config).get_executions()
                if e.last_known_state != metadata_store_pb2.Execution.CANCELED}
    artifact_dirs = {os.path.normpath(a.uri) for a in pipeline_runs.store(config).get_artifacts()}
    for component in os.listdir(config.pipeline_root):
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
    assert len(pipeline_runs.pushed_versions(config)) == 1
    _assert_same_artifacts(config, char_run)


def _run_fn_args(char_run, run_dir, model_dir):
    """run_fn's arguments to train TINY_TRAINING's model for 20 iterations on char_run's examples."""
    from tfx.components.trainer.fn_args_utils import FnArgs

    from components.trainer.settings import DeployConfig, custom_config
    from training.config import make_config

    examples = pipeline_runs.output_of(char_run, "Transform", "transformed_examples", first=True)
    return FnArgs(train_files=[os.path.join(examples, "Split-train", "*")],
                  eval_files=[os.path.join(examples, "Split-val", "*")],
                  transform_graph_path=pipeline_runs.output_of(char_run, "Transform", "transform_graph", first=True),
                  model_run_dir=str(run_dir), serving_model_dir=str(model_dir / "Format-Serving"),
                  custom_config=custom_config(make_config("shakespeare_char", **{**TINY_TRAINING, "max_iters": 20,
                                                                                  "eval_interval": 20}),
                                              DeployConfig(), resume=False))


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
    stdout = FillDiskAfter(sys.stdout, "iter 20:", small_disk / "filler")
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
    make the same records anew. (It damages char_run's cache: the last test on char_run's data but
    for those of the data checks, which look for no artifact by its position.)"""
    import runner
    from ml_metadata.proto import metadata_store_pb2

    # TokenizeText records its shards' sizes, which each run checks before it starts (recovery_test),
    # and their SHA-256, checked when a reader of them fails
    tokenized_uri = pipeline_runs.output_of(char_run, "TokenizeText", "examples", first=True)
    [tokenized] = pipeline_runs.store(char_run).get_artifacts_by_uri(tokenized_uri)
    assert json.loads(tokenized.custom_properties[shards.SHARD_BYTES].string_value) == shards.shard_sizes(tokenized.uri)
    assert json.loads(tokenized.custom_properties[shards.SHARD_SHA256].string_value) == \
        shards.shard_digests(tokenized.uri)
    transformed = pipeline_runs.output_of(char_run, "Transform", "transformed_examples", first=False)
    [damaged] = pipeline_runs.store(char_run).get_artifacts_by_uri(transformed)
    records, tokenized_records = pipeline_runs.records(transformed), pipeline_runs.records(tokenized_uri)
    shard = sorted(tf.io.gfile.glob(os.path.join(transformed, "Split-train", "*")))[0]
    with open(shard, "r+b") as f:
        f.truncate(os.path.getsize(shard) // 2)
    flipped = sorted(tf.io.gfile.glob(os.path.join(tokenized_uri, "Split-train", "*")))[0]
    flip_bytes_in_place(flipped)
    capsys.readouterr()
    before = pipeline_runs.execution_ids(char_run)
    runner.main(["run", f"--data={char_run.data.input_pattern}", f"--output={char_run.output_dir}",
                 "--val_loss_threshold=3.5", "--max_regression=10", f"--baselines={char_run.eval.baselines[0]}",
                 f"--bpe_dir={char_run.data.bpe_dir}",
                 *(f"--{k}={v}" for k, v in {**TINY_TRAINING, "max_iters": 12}.items())])
    out = capsys.readouterr().out
    assert f"token shard {shard} is damaged (" in out
    assert (f": the Examples artifact #{damaged.id} of Transform is set aside and made again; running the "
            f"pipeline again") in out
    [line] = [line for line in out.splitlines() if line.startswith(f"token shard {flipped} ")]
    assert line.startswith(f"token shard {flipped} is damaged (its bytes are not those written: another SHA-256), "
                           f"which Transform read when it failed (zlib.error: ")
    assert line.endswith(f"): the Examples artifact #{tokenized.id} of TokenizeText is set aside and made again; "
                         f"running the pipeline again")
    for artifact in pipeline_runs.store(char_run).get_artifacts_by_id([damaged.id, tokenized.id]):
        assert artifact.state == metadata_store_pb2.Artifact.MARKED_FOR_DELETION
    # by type: the last run's overwrite the earlier ones'
    states = pipeline_runs.component_states(char_run, exclude=before)
    assert states["TokenizeText"] == states["Transform"] == states["Trainer"] == metadata_store_pb2.Execution.COMPLETE
    remade = pipeline_runs.output_of(char_run, "Transform", "transformed_examples", first=False)
    assert remade != transformed and pipeline_runs.records(remade) == records
    remade_tokenized = pipeline_runs.output_of(char_run, "TokenizeText", "examples", first=False)
    assert remade_tokenized != tokenized_uri and pipeline_runs.records(remade_tokenized) == tokenized_records


# The data checks in char_run's output, after the test above and in this order: each adds models and data.

def _run_command(config, data, *settings):
    """`runner.py run` on `data` into config's output, tiny training; its exit status and stderr."""
    import runner

    try:
        runner.main(["run", f"--data={data}", f"--output={config.output_dir}", "--val_loss_threshold=3.5",
                     *(f"--{k}={v}" for k, v in {**TINY_TRAINING, "max_iters": 10}.items()), *settings])
    except SystemExit as e:
        return e.code
    return 0


def _stopped(config, before, capsys, code):
    """The one line a run stopped at the AnomalyGate printed, after it had checked the data; nothing
    was trained (states of the executions not in before)."""
    from ml_metadata.proto import metadata_store_pb2

    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("runner.py run: error: data anomalies, nothing "
                                                                 "trained (report: "), err
    states = pipeline_runs.component_states(config, exclude=before)
    assert states["DataValidator"] == metadata_store_pb2.Execution.COMPLETE
    assert states["AnomalyGate"] == metadata_store_pb2.Execution.FAILED
    assert not {"Transform", "Trainer", "LMEvaluator", "Pusher"} & set(states)
    report = err.split("(report: ")[1].split("): ")[0]
    assert os.path.isfile(report) and report.startswith(config.pipeline_root)
    return err.strip()


def test_a_curated_schema_stops_the_run_and_skip_validation_runs_without_the_checks(char_run, tmp_path, capsys):
    """SchemaGen's schema, curated to allow documents of at most 1,000 characters and pinned with
    --schema_file (ImportSchemaGen): char_run's corpus is stopped; --skip_validation=True runs the
    pipeline without the checks (the rest from the cache)."""
    from ml_metadata.proto import metadata_store_pb2

    with open(os.path.join(pipeline_runs.output_of(char_run, "SchemaGen", "schema", first=True), "schema.pbtxt")) as f:
        curated = tmp_path / "schema.pbtxt"
        curated.write_text(f.read().replace('name: "num_characters"\n  type: INT\n', 'name: "num_characters"\n'
                                            '  type: INT\n  int_domain {\n    max: 1000\n  }\n'))
    before = pipeline_runs.execution_ids(char_run)
    line = _stopped(char_run, before, capsys, _run_command(char_run, char_run.data.input_pattern,
                                                           f"--schema_file={curated}"))
    assert "num_characters (train): Out-of-range values: Unexpectedly large value: " in line
    pinned = pipeline_runs.output_of(char_run, "ImportDataSchema", "schema", first=True)
    with open(os.path.join(pinned, "schema.pbtxt")) as f:  # TFX's ImportSchemaGen copied it
        assert f.read() == curated.read_text()

    before = pipeline_runs.execution_ids(char_run)
    assert _run_command(char_run, char_run.data.input_pattern, f"--schema_file={curated}", "--skip_validation=True") == 0
    states = pipeline_runs.component_states(char_run, exclude=before)
    assert not {"SchemaGen", "DataValidator", "AnomalyGate"} & set(states)
    assert states["Trainer"] in (metadata_store_pb2.Execution.COMPLETE, metadata_store_pb2.Execution.CACHED)


def test_a_run_on_unlike_data_stops_before_the_trainer_and_accept_anomalies_trains_on_it(char_run, tmp_path,
                                                                                        capsys):
    """A file of numbers where Shakespeare was: the run stops at the gate with one line naming the new
    characters, nothing trained or pushed; --accept_anomalies=True prints them and trains."""
    from ml_metadata.proto import metadata_store_pb2

    numbers = tmp_path / "numbers.txt"
    numbers.write_text("\n".join(" ".join(str((i * 7919 + j * 104729) % 100003) for j in range(8))
                                 for i in range(600)), encoding="utf-8")
    pushed, before = pipeline_runs.pushed_versions(char_run), pipeline_runs.execution_ids(char_run)
    line = _stopped(char_run, before, capsys, _run_command(char_run, numbers))
    assert "new characters '0', '1', '2', '3', '4', '5', '6', '7', '8', '9' not in the last blessed model's " \
           "vocabulary (model " in line and "(and 1 more)" in line  # the character distribution's drift
    assert pipeline_runs.pushed_versions(char_run) == pushed

    before = pipeline_runs.execution_ids(char_run)
    assert _run_command(char_run, numbers, "--accept_anomalies=True") == 0
    assert "data anomalies accepted (--accept_anomalies=True): new characters '0'" in capsys.readouterr().out
    states = pipeline_runs.component_states(char_run, exclude=before)
    assert states["DataValidator"] == metadata_store_pb2.Execution.CACHED  # the same data, the same checks
    assert states["AnomalyGate"] == states["Trainer"] == metadata_store_pb2.Execution.COMPLETE
