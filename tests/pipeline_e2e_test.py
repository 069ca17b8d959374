"""End-to-end runs of the whole pipeline under LocalDagRunner with SQLite ML Metadata, on a small
slice of Tiny Shakespeare and a tiny model: what the default pipeline makes and records, its reruns,
its lineage and a damaged cache (the kills and full disks: interruptions_e2e_test.py; the data
checks: data_checks_e2e_test.py; char_run: conftest.py)."""

import argparse
import json
import os
import shlex
import time

import numpy as np
import pytest
import tensorflow as tf

from core import files, shards
from core.errors import UsageError
from core.settings import SettingError
from pipeline import lineage, metadata
from pipeline.configs import make_run_config
from test_helpers import pipeline_runs
from test_helpers.damage import flip_bytes_in_place
from test_helpers.pipeline_runs import TINY_RUN

SAMPLE = metadata.runner_command("sample")  # as the summary types it here


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
    evaluation = pipeline_runs.first(char_run, "ModelEvaluation")
    assert os.path.isfile(os.path.join(evaluation.uri, "report.md"))
    values = {k: v.double_value for k, v in evaluation.custom_properties.items() if v.HasField("double_value")}
    assert values["candidate_val_loss"] < 3.5


def test_the_run_ends_with_where_its_time_went(char_run):
    """The split of the wall time: each component's execution from ML Metadata, the training's own
    time inside the Trainer's, and the rest (start-up, TFX's own work)."""
    import re

    split = char_run.recorded["time_split"]
    wall, listed, rest, but_training = re.fullmatch(
        r"time: (\d+) s in all: (.*); start-up and the rest (-?\d+) s; all but the training (\d+) s", split).groups()
    components = dict(re.findall(r"(\w+) (\d+) s", re.sub(r" \(training \d+ s\)", "", listed)))
    assert {"TokenizeText", "Transform", "Trainer", "LMEvaluator", "Pusher"} <= set(components)
    training = int(re.search(r"Trainer \d+ s \(training (\d+) s\)", listed).group(1))
    assert 0 <= training <= int(components["Trainer"])
    assert int(rest) >= -len(components)  # the components' seconds are rounded
    assert abs(int(wall) - training - int(but_training)) <= 1


def test_the_report_compares_every_model_in_bits_per_byte(char_run):
    """Tiny Shakespeare is ASCII: a character is a byte, so the candidate's bits per byte are its
    loss / ln 2; the unigram baseline, which it beat, and the GPT-2 baseline on the same val text
    in its own tokens, beside it."""
    import math

    evaluation = pipeline_runs.first(char_run, "ModelEvaluation")
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
    infra = pipeline_runs.first(char_run, "InfraBlessing")  # char_run's own
    assert infra.custom_properties["blessed"].int_value == 1
    assert os.listdir(infra.uri) == ["INFRA_BLESSED"]
    check = infra.custom_properties["infra_check"].string_value
    assert check.startswith("loaded in a fresh process without the project's code, answered 9 requests: ")
    assert "generate_text (1 sample, max_new_tokens 28)" in check
    assert "generate_text (4 samples, max_new_tokens 28)" in check
    type_names = {t.id: t.name for t in store.get_execution_types()}
    pusher = min((e for e in store.get_executions() if type_names[e.type_id].endswith("Pusher")), key=lambda e: e.id)
    inputs = {e.path.steps[0].key: e.artifact_id for e in store.get_events_by_execution_ids([pusher.id])
              if e.type == metadata_store_pb2.Event.INPUT}
    assert inputs["infra_blessing"] == infra.id
    version = os.path.join(char_run.serving_dir, char_run.recorded["versions"][0])
    with open(os.path.join(version, "assets.extra", "model_card.md")) as f:
        card = f.read()
    evaluation = pipeline_runs.first(char_run, "ModelEvaluation")
    val_loss = evaluation.custom_properties["candidate_val_loss"].double_value
    assert "| candidate | candidate | char | " in card and f" {val_loss:.4f} |" in card
    corpus = open(char_run.data.input_pattern, encoding="utf-8").read()
    assert f"- source: `{char_run.data.input_pattern}`" in card
    assert f"- tokens: {int(len(corpus) * 0.9):,} train" in card
    assert "n_layer 1, n_head 2, n_embd 32, block_size 32" in card and "max_iters 40" in card
    assert ", bias False" in card  # as it trained (its Hugging Face copy has zero biases)
    assert f"| infra_blessing | InfraBlessing | {infra.id} |" in card and "## Intended use and limits" in card
    # serving_loop=auto (the default): both loops measured at the export, the faster pushed and named
    exported = files.read_json(os.path.join(version, "assets.extra", "export.json"))
    assert sorted(exported["measured_tokens_per_s"]) == ["float32 graph", "float32 xla"]
    assert f"- served with float32 weights, the {exported['loop']} loop (the fastest measured on " in card
    summary = char_run.recorded["summary"]
    assert f"model card: {version}/assets.extra/model_card.md" in summary and "infra check: passed in " in summary


def test_the_run_records_the_statistics_schema_and_anomalies_of_its_data(char_run):
    """TFX's own artifact types in ML Metadata, as TFX's and TFDV's readers read them."""
    from tfx.components.statistics_gen import stats_artifact_utils
    from tfx.types import standard_artifacts

    statistics = pipeline_runs.first(char_run, "ExampleStatistics")
    artifact = standard_artifacts.ExampleStatistics()
    artifact.set_mlmd_artifact(statistics)
    corpus = open(char_run.data.input_pattern, encoding="utf-8").read()
    chars = {b.label: b.sample_count for split in ("train", "val") for f in stats_artifact_utils.load_statistics(
             artifact, split).proto().datasets[0].features if f.path.step[0] == "char"
             for b in f.string_stats.rank_histogram.buckets}
    assert set(chars) == set(corpus)
    with open(os.path.join(pipeline_runs.output_of(char_run, "SchemaGen", "schema", first=True), "schema.pbtxt")) as f:
        assert "drift_comparator" in f.read()  # SchemaGen's, with the thresholds of the checks
    anomalies = pipeline_runs.first(char_run, "ExampleAnomalies")
    assert anomalies.custom_properties["anomalies"].string_value == "[]"
    with open(os.path.join(anomalies.uri, "report.md")) as f:
        assert "no blessed model of other data to compare with: no drift is measured" in f.read()


def test_rerun_with_cache_executes_nothing(char_run):
    from ml_metadata.proto import metadata_store_pb2

    # The Evaluator's baseline is the last blessed model other than the candidate: the same (none)
    # as in the first run, so nothing has a new input; the same data, checked: cached too.
    states = char_run.recorded["rerun_states"]
    assert set(states.values()) == {metadata_store_pb2.Execution.CACHED}
    assert "every component from the cache" in char_run.recorded["rerun_time_split"]
    assert {"SchemaGen", "DataValidator", "AnomalyGate"} <= set(states)
    assert char_run.recorded["versions_after_rerun"] == char_run.recorded["versions"]


def test_changed_settings_that_no_local_component_reads_execute_nothing(char_run):
    """The image, the Kubeflow retries, Vertex AI's machines: no component here reads them, so none
    runs again (they were in the Trainer's parameters, its cache key: a new --image trained anew)."""
    from ml_metadata.proto import metadata_store_pb2

    config = char_run.replace(image="registry.example/nanogpt-tfx:v2", train_retries=5, vertex_region="europe-west4",
                              train_machine_type="n1-standard-16")
    assert set(pipeline_runs.rerun(config).values()) == {metadata_store_pb2.Execution.CACHED}


def test_changed_hyperparameter_reruns_the_trainer_and_what_follows(char_run):
    """One training hyperparameter changed: tokenization, its checks and Transform come from the
    cache; the Trainer, the Evaluator (against the last blessed model), the infra check and the
    Pusher run."""
    from ml_metadata.proto import metadata_store_pb2

    cached, complete = metadata_store_pb2.Execution.CACHED, metadata_store_pb2.Execution.COMPLETE
    config = char_run.replace(max_regression=10.0, learning_rate=2e-3)
    last_blessed = pipeline_runs.last_blessed_model(config)  # char_run's, or another test's made since
    assert pipeline_runs.rerun(config) == {
        "TokenizeText": cached, "SchemaGen": cached, "DataValidator": cached, "AnomalyGate": cached,
        "ImportSchemaGen": cached, "Transform": cached, "Trainer": complete, "LMEvaluator": complete,
        "InfraValidator": complete, "Pusher": complete}
    evaluation = max(pipeline_runs.store(config).get_artifacts_by_type("ModelEvaluation"), key=lambda a: a.id)
    with open(os.path.join(evaluation.uri, "report.md")) as f:
        assert last_blessed in f.read()  # compared with the last blessed model


def test_lineage_shows_the_chain_from_the_text_file_to_the_pushed_model(char_run):
    import runner

    pushed = char_run.recorded["versions"][0]  # the model char_run pushed (other tests push more)
    graph = lineage.model_lineage(metadata.sqlite_store(char_run.metadata_path),
                                  os.path.join(char_run.serving_dir, pushed))
    text = graph.to_text()
    assert text.startswith("lineage of PushedModel #")
    assert os.path.join(char_run.serving_dir, pushed) in text.splitlines()[0]
    steps = [e.type_name for e in graph.executions]  # by execution id: in the order they ran
    assert sorted(steps) == sorted(["ImportSchemaGen", "TokenizeText", "SchemaGen", "DataValidator", "AnomalyGate",
                                    "Transform", "Trainer", "LMEvaluator", "InfraValidator", "Pusher"])
    # what each needs ran before it (the gate and Transform: in either order, by which run each is of)
    for before, after in (("TokenizeText", "SchemaGen"), ("SchemaGen", "DataValidator"),
                          ("DataValidator", "AnomalyGate"), ("TokenizeText", "Transform"), ("AnomalyGate", "Trainer"), ("Transform", "Trainer"),
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
    trainer = " ".join(part["Trainer"].split())  # long details are wrapped
    assert "export: serving_weights=float32 serving_loop=auto" in trainer
    assert "served with: float32 weights, the " in trainer and "loop (the fastest measured on " in trainer
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
    with pytest.raises(SettingError, match=f"^--png={out}/x.png: {out} is a file, not a directory$"):
        runner.lineage(argparse.Namespace(grpc=None, output=char_run.output_dir, model=model_id, format="png",
                                          png=f"{out}/x.png"), [])
    with pytest.raises(UsageError, match=f"^cannot write {out}/x.png: "):  # past the check: still one line
        graph.write_png(os.path.join(out, "x.png"))
    with pytest.raises(LookupError, match="no artifact with id 99999"):
        lineage.model_lineage(metadata.sqlite_store(char_run.metadata_path), "99999")


def test_resume_continues_the_latest_models_training_run(char_run):
    """resume=True: the Trainer starts from the checkpoint of the run that made the latest model
    (char_run's, or another test's: each saves one at an evaluation, where the resumed run evaluates)."""
    config = char_run.replace(resume=True, max_iters=60, lr_decay_iters=60)
    pipeline_runs.rerun(config)
    runs = sorted(pipeline_runs.store(config).get_artifacts_by_type("ModelRun"), key=lambda a: a.id)
    latest = tf.train.latest_checkpoint(os.path.join(runs[-2].uri, "checkpoints"))
    saved_at = int(latest.rsplit("-", 1)[1])  # the previous run's last checkpoint
    with open(os.path.join(runs[-2].uri, "history.json")) as f:
        previous = json.load(f)
    with open(os.path.join(runs[-1].uri, "history.json")) as f:
        resumed = json.load(f)
    # the records go on from the checkpoint's; evaluated again where it left off, as nanoGPT does
    before_checkpoint = [row for row in previous["eval"] if row[0] < saved_at]
    assert before_checkpoint and resumed["eval"][:len(before_checkpoint)] == before_checkpoint
    assert resumed["eval"][len(before_checkpoint)][0] == saved_at
    assert resumed["train"][:3] == previous["train"][:3]
    assert resumed["result"]["iter_num"] == 61
    # resumed again with max_iters not past the latest model's iterations: refused before anything trains
    # (it published the same model again, which the LMEvaluator blessed as no worse and the Pusher pushed)
    before = pipeline_runs.execution_ids(config)
    with pytest.raises(UsageError, match=r"^resume: the latest model \(.*\) is at iteration 60, and "
                                         r"max_iters=60 is not past it: nothing would train; raise --max_iters$"):
        pipeline_runs.rerun(config)
    assert pipeline_runs.component_states(config, exclude=before).get("Pusher") is None


def test_unblessed_model_is_not_pushed(char_run):
    """A model worse than the threshold: evaluated, not blessed, and the serving dir unchanged."""
    pushed = pipeline_runs.pushed_versions(char_run)
    config = char_run.replace(val_loss_threshold=0.01, max_iters=20)
    started = time.time()
    pipeline_runs.rerun(config)
    blessing = max(pipeline_runs.store(config).get_artifacts_by_type("ModelBlessing"), key=lambda a: a.id)
    assert blessing.custom_properties["blessed"].int_value == 0
    assert pipeline_runs.pushed_versions(config) == pushed
    summary = metadata.run_summary(config.metadata_path, started).splitlines()
    assert any(line.startswith("blessed: no") for line in summary)
    # the summary does not present the earlier run's push as this run's
    last = metadata.prop(metadata.latest_push(pipeline_runs.store(config)), "pushed_destination")
    assert f"pushed model: none this run (the last push: {last})" in summary
    assert not [line for line in summary if line.startswith("model card: ")]
    # the printed sample and lineage commands take this run's model, and work (the sample command
    # named the training run's directory, holding no checkpoint when it was shorter than eval_interval)
    model = max(pipeline_runs.store(config).get_artifacts_by_type("Model"), key=lambda a: a.id)
    saved_model = os.path.join(model.uri, "Format-Serving")
    assert f"sample: {SAMPLE} --from={shlex.quote(saved_model)}" in summary
    assert summary[-1].endswith(f" --model={shlex.quote(model.uri)}")
    assert lineage.model_lineage(pipeline_runs.store(config), model.uri).to_text().startswith("lineage of Model #")
    import runner

    runner.main(["sample", f"--from={saved_model}", "--start=ROMEO:", "--num_samples=1", "--max_new_tokens=4"])


def test_a_rerun_from_the_cache_ends_with_its_own_results_not_the_newest_in_the_store(tmp_path, small_corpus,
                                                                                     capsys):
    """A run (blessed, pushed), one with a stricter threshold (its evaluation the store's newest: not
    blessed), then the first settings again, all from the cache: its summary names what it took from
    the cache, the first run's evaluation and push, not the newest evaluation of the store."""
    from ml_metadata.proto import metadata_store_pb2

    first = make_run_config("shakespeare_char", input_pattern=small_corpus, output_dir=str(tmp_path / "out"),
                            val_loss_threshold=3.5, **TINY_RUN)
    pipeline_runs.rerun(first)
    evaluation = pipeline_runs.first(first, "ModelEvaluation").uri
    (version,) = pipeline_runs.pushed_versions(first)
    pipeline_runs.rerun(first.replace(val_loss_threshold=0.01))  # the same model, evaluated again: not blessed
    started = time.time()
    assert set(pipeline_runs.rerun(first).values()) == {metadata_store_pb2.Execution.CACHED}
    summary = metadata.run_summary(first.metadata_path, started).splitlines()
    assert summary[0].endswith(f"report {evaluation}/report.md"), summary
    assert any(line.startswith("blessed: yes") for line in summary), summary
    assert f"pushed model: {first.serving_dir}/{version} (an earlier run's push, taken from the cache)" in summary
    assert f"sample: {SAMPLE} --from={first.serving_dir}/{version}" in summary
    # the pushed version moved away by hand (a model withdrawn): said, and sampled from the Trainer's model
    os.rename(os.path.join(first.serving_dir, version), tmp_path / "withdrawn")
    summary = metadata.run_summary(first.metadata_path, started).splitlines()
    assert f"pushed model: {first.serving_dir}/{version} (an earlier run's push, taken from the cache; no longer " \
           f"there: moved or deleted)" in summary
    saved_model = os.path.join(pipeline_runs.first(first, "Model").uri, "Format-Serving")
    assert f"sample: {SAMPLE} --from={saved_model}" in summary
    import runner

    capsys.readouterr()
    with pytest.raises(SystemExit) as stopped:
        runner.main(["sample", f"--output={first.output_dir}"])
    assert stopped.value.code == 2 and capsys.readouterr().err.endswith(
        f"{first.serving_dir}/{version}, is no longer there (moved or deleted); the model it pushed: "
        f"--from={saved_model}\n")


def test_eval_gpt2_style_with_a_local_baseline(tmp_path, small_corpus, bpe_dir, capfd):
    """eval_gpt2's shape (BPE data, a GPT-2 checkpoint evaluated without training) with a small
    local GPT-2 checkpoint standing in for the hub's. The Trainer exports the checkpoint as it is, with
    no evaluation of its own: the LMEvaluator's is the one (nanoGPT's eval_iters were made twice)."""
    from components.artifact_layout import HF_CHECKPOINT_DIR, HISTORY_FILE
    from model import GPT, GPTConfig
    from training.config import TRAIN_CONFIG_FILE

    checkpoint = str(tmp_path / "tiny-gpt2")
    GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=64, vocab_size=50257), seed=0).save_pretrained(checkpoint)
    config = make_run_config(
        "eval_gpt2", dataset_name=None, input_pattern=small_corpus, tokenizer="gpt2", bpe_dir=bpe_dir,
        output_dir=str(tmp_path / "out"), baselines=[checkpoint], eval_batches=4, eval_train_batches=4,
        eval_batch_size=2, init_from=checkpoint, block_size=64, batch_size=2, eval_iters=2)
    pipeline_runs.rerun(config)
    out = capfd.readouterr().out
    assert f"eval_only: nothing trains; the model of init_from={checkpoint} is exported as it is" in out
    assert "step 0: train loss" not in out
    store = pipeline_runs.store(config)
    [model_run] = store.get_artifacts_by_type("ModelRun")
    assert files.read_json(os.path.join(model_run.uri, HISTORY_FILE)) == {"eval": [], "train": [], "result": {}}
    assert files.read_json(os.path.join(model_run.uri, TRAIN_CONFIG_FILE))["init_from"] == checkpoint
    [model] = store.get_artifacts_by_type("Model")
    exported, given = (GPT.from_pretrained(path) for path in (os.path.join(model.uri, HF_CHECKPOINT_DIR), checkpoint))
    weights = [{v.name: v.numpy() for v in m.variables} for m in (exported, given)]
    assert weights[0].keys() == weights[1].keys()
    assert all(np.array_equal(weights[0][k], weights[1][k]) for k in weights[0])
    evaluation = max(store.get_artifacts_by_type("ModelEvaluation"), key=lambda a: a.id)
    with open(os.path.join(evaluation.uri, "report.md")) as f:
        report = f.read()
    assert "tiny-gpt2" in report
    candidate = evaluation.custom_properties["candidate_val_loss"].double_value
    assert np.isfinite(candidate) and candidate > 9.0  # an untrained 50257-way model: ~ln(50257)
    # not blessed (no better than the unigram baseline), so nothing to sample from the output directory
    # by default: the one line names the trained model's SavedModel instead
    assert not metadata.pushed_models(store)
    import runner

    with pytest.raises(SystemExit):
        runner.main(["sample", f"--from={config.output_dir}"])
    saved_model = os.path.join(model.uri, "Format-Serving")
    err = capfd.readouterr().err
    # with the run's GPT-2 BPE files, which sampling needs offline
    assert err.endswith(f"(no run's model was blessed); the latest trained one: --from={saved_model} "
                        f"--bpe_dir={os.path.abspath(bpe_dir)}\n")


def test_runner_samples_from_the_pushed_model(char_run, capsys):
    import runner

    runner.main(["sample", f"--output={char_run.output_dir}", "--start=ROMEO:", "--num_samples=2",
                 "--max_new_tokens=12", "--seed=3"])
    printed = capsys.readouterr().out
    samples = printed.split("---------------\n")
    assert len(samples) == 3 and samples[2] == ""
    assert all(s.startswith("ROMEO:") and len(s.rstrip("\n")) >= 6 for s in samples[:2])
    # the output directory named as the model: its latest push, the same samples
    runner.main(["sample", f"--from={char_run.output_dir}", "--start=ROMEO:", "--num_samples=2",
                 "--max_new_tokens=12", "--seed=3"])
    assert capsys.readouterr().out == printed


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
                 *(f"--{k}={v}" for k, v in {**TINY_RUN, "max_iters": 20}.items())])
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


def test_the_transformed_records_name_their_characters_for_a_training_of_its_own(char_run, tmp_path):
    """`python -m training.train --data_dir=` Transform's records trains on them as the characters they
    are (the vocabulary of the transform graph, written beside them), not as GPT-2 BPE ids."""
    from components import char_transform
    from training.config import make_config
    from training.train import Trainer

    transformed = pipeline_runs.output_of(char_run, "Transform", "transformed_examples", first=True)
    graph = pipeline_runs.output_of(char_run, "Transform", "transform_graph", first=True)
    chars = char_transform.char_tokenizer(graph).to_json()
    assert files.read_json(os.path.join(transformed, "tokenizer.json")) == chars
    lines = []
    settings = {**pipeline_runs.TINY_TRAINING, "max_iters": 2, "eval_iters": 1}
    trainer = Trainer(make_config(**settings, data_dir=transformed, out_dir=str(tmp_path / "out")), log=lines.append)
    assert trainer.model.config.vocab_size == len(chars["chars"])
    assert not any("GPT-2 BPE" in line for line in lines)
    assert files.read_json(str(tmp_path / "out" / "tokenizer.json")) == chars
    assert trainer.cfg.tokenizer == "char"  # recorded as the data's, not the text_file setting's default
