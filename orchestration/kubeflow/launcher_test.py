"""`runner.py run --spec`: the compiled Kubeflow Pipelines spec runs here, task by task in processes
of their own through TFX's Kubeflow v2 entrypoint, as Kubeflow's launcher runs it: a tiny model on
a slice of Tiny Shakespeare to a pushed SavedModel (its training process killed once: the Trainer
task's retry continues the training); a second run that finds it through the resolver tasks; the
BPE preset through its Trainer; damaged specs that fail naming their task."""

import contextlib
import io
import json
import os
import re

import pytest
import tensorflow as tf
import yaml

import runner
from orchestration.kubeflow import launcher
from pipeline.metadata import runner_command

SAMPLE = runner_command("sample")  # as the summary types it here

# 20 iterations do not beat the unigram baseline: the blessing here gates on the threshold alone;
# the infra check's generation requests make 8 tokens
TINY = ["--max_iters=20", "--eval_interval=10", "--eval_iters=2", "--log_interval=10", "--n_layer=1",
        "--n_head=2", "--n_embd=32", "--block_size=32", "--batch_size=8", "--warmup_iters=5",
        "--lr_decay_iters=20", "--eval_batches=2", "--val_loss_threshold=10", "--beat_unigram=False",
        "--infra_max_new_tokens=8"]


def _records(root):
    """The run records under the pipeline root, oldest first."""
    found = [json.load(tf.io.gfile.GFile(p)) for p in tf.io.gfile.glob(f"{root}/*/*/{launcher.RECORD_FILE}")]
    return sorted(found, key=lambda r: r["started"])


def _artifact(record, task, output):
    names = {a["name"]: a for r in [record] for a in r["artifacts"]}
    name = record["tasks"][task]["outputs"][output][0]
    return names.get(name, name)


@pytest.fixture(scope="module")
def char_spec(tmp_path_factory, shakespeare_text):
    """The default preset compiled (YAML) for a tiny model on 30,000 characters."""
    workdir = tmp_path_factory.mktemp("kfp_local")
    corpus = workdir / "corpus.txt"
    corpus.write_text(shakespeare_text[:30000], encoding="utf-8")
    spec = workdir / "nanogpt.yaml"
    runner.main(["compile", f"--pipeline_root={workdir / 'out'}", f"--data={corpus}", f"--spec={spec}", *TINY])
    return dict(spec=str(spec), root=str(workdir / "out" / "pipeline_root"), text=shakespeare_text[:30000],
                serving=str(workdir / "out" / "serving_model"))


@pytest.fixture(scope="module")
def first_run(char_spec):
    """The spec run once, its training process killed (kill -9) just after its checkpoint of iteration
    10 (test_helpers/fault_injection.py): the Trainer task fails, and its retry policy runs it again."""
    from test_helpers.fault_injection import training_environment

    armed = training_environment("after_checkpoint", 10, "kill")
    saved = {key: os.environ.get(key) for key in armed}
    os.environ.update(armed)
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            runner.main(["run", f"--spec={char_spec['spec']}"])
        char_spec["first_run_printed"] = printed.getvalue()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    (record,) = _records(char_spec["root"])
    return record


def test_the_spec_runs_to_a_pushed_model_that_generates(char_spec, first_run, capsys):
    record = first_run
    assert record["state"] == "SUCCEEDED"
    assert {t: v["state"] for t, v in record["tasks"].items()} == {
        t: "SUCCEEDED" for t in ["DataFingerprint", "ImportSchemaGen", "TokenizeText", "SchemaGen", "DataValidator",
                                 "AnomalyGate", "Transform", "Trainer", "LMEvaluator", "InfraValidator", "Pusher",
                                 "latest_blessed_model_resolver-model-blessing-resolver",
                                 "latest_blessed_model_resolver-model-resolver"]}
    # the data checked: TFDV statistics, SchemaGen's schema, no anomalies; the blessing names the statistics
    statistics = _artifact(record, "TokenizeText", "statistics")
    assert statistics["metadata"]["num_documents"] == 1 and _artifact(record, "SchemaGen", "schema")["uri"]
    assert _artifact(record, "DataValidator", "anomalies")["metadata"]["anomalies"] == "[]"
    assert _artifact(record, "LMEvaluator", "blessing")["metadata"]["data_statistics"] == statistics["uri"]
    # the retried Trainer task continued the training its first attempt left at iteration 10
    with open(f"{char_spec['root']}/nanogpt-tfx/{record['run_id']}/Trainer/log.txt") as f:
        retried = f.read()
    assert re.search(r"^continuing the training interrupted at iteration 10 \(run \w+\)$", retried, re.M), retried
    # and said on the console, as `runner.py run` says it
    assert re.search(r"^  Trainer: continuing the training interrupted at iteration 10 \(run \w+\)$",
                     char_spec["first_run_printed"], re.M), char_spec["first_run_printed"]
    # with its evaluations' losses as the task writes them (the whole log is kept once it ends)
    assert re.search(r"^  Trainer: step 20: train loss \d+\.\d+, val loss \d+\.\d+$", char_spec["first_run_printed"],
                     re.M), char_spec["first_run_printed"]
    assert "step 0: " not in retried and "step 10: " not in retried and "step 20: " in retried
    with open(os.path.join(_artifact(record, "Trainer", "model_run")["uri"], "history.json")) as f:
        assert [row[0] for row in json.load(f)["eval"]] == [0, 10, 20]  # the whole training's records
    # published, and so removed by the LMEvaluator, which ran once the run's record had the ModelRun
    assert os.listdir(os.path.join(char_spec["root"], "Trainer", "trainings")) == []
    # nothing blessed before: both resolvers answer with nothing
    assert record["tasks"]["latest_blessed_model_resolver-model-resolver"]["outputs"] == {"model": []}
    # the metadata TokenizeText's executor output gave its examples reached the record
    examples = _artifact(record, "TokenizeText", "examples")
    assert examples["uri"] == f"{char_spec['root']}/nanogpt-tfx/{record['run_id']}/TokenizeText/examples"
    text = char_spec["text"]
    assert examples["metadata"]["num_tokens_train"] + examples["metadata"]["num_tokens_val"] == len(text)
    pushed = _artifact(record, "Pusher", "pushed_model")["metadata"]
    assert pushed["pushed"] == 1 and pushed["pushed_destination"].startswith(char_spec["serving"])
    # the infra check ran as a task of its own; its InfraBlessing reached the Pusher, which wrote the card
    infra = _artifact(record, "InfraValidator", "blessing")["metadata"]
    assert infra["blessed"] == 1 and infra["infra_check"].startswith("loaded in a fresh process")
    assert "generate_text (4 samples, max_new_tokens 8)" in infra["infra_check"]
    assert pushed["model_card"] == f"{pushed['pushed_destination']}/assets.extra/model_card.md"
    with open(pushed["model_card"]) as f:
        assert "| candidate | candidate | char |" in f.read()

    loaded = tf.saved_model.load(pushed["pushed_destination"])
    chars = json.loads(loaded.signatures["tokenizer"]()["tokenizer"].numpy())["chars"]
    prompt = [chars.index(c) for c in "ROMEO:"]
    out = loaded.signatures["generate"](
        idx=tf.constant([prompt], tf.int32), max_new_tokens=tf.constant(8), temperature=tf.constant(1.0),
        top_k=tf.constant(0), top_p=tf.constant(1.0), seed=tf.constant(1, tf.int64), eot_token=tf.constant(-1),
        vocab_limit=tf.constant(len(chars)))
    tokens = out["tokens"].numpy()[0][:out["lengths"].numpy()[0]]
    assert list(tokens[:len(prompt)]) == prompt and len(tokens) == len(prompt) + 8
    assert all(0 <= t < len(chars) for t in tokens)
    # `runner.py sample --from=<the spec's output directory>`: its runs' latest push, from their records
    capsys.readouterr()
    runner.main(["sample", f"--from={os.path.dirname(char_spec['root'])}", "--num_samples=1", "--max_new_tokens=4"])
    assert f"sampling from {pushed['pushed_destination']}\n" in capsys.readouterr().err


def test_a_second_run_finds_the_first_runs_blessed_model_through_the_resolvers(char_spec, first_run, capsys):
    runner.main(["run", f"--spec={char_spec['spec']}", "--until=LMEvaluator"])  # the Pusher is the first run's test
    summary = capsys.readouterr().out
    first, second = _records(char_spec["root"])
    assert first["run_id"] == first_run["run_id"]
    tasks = second["tasks"]
    # Kubeflow's cache: the same inputs and parameters, so the tasks up to the Trainer are reused
    assert [tasks[t]["state"] for t in ("ImportSchemaGen", "TokenizeText", "SchemaGen", "Transform", "Trainer")] == \
        ["CACHED"] * 5
    # the data is checked again against the first run's blessed model, which was trained on this very data
    assert tasks["DataValidator"]["state"] == tasks["AnomalyGate"]["state"] == "SUCCEEDED"
    with open(os.path.join(_artifact(second, "DataValidator", "anomalies")["uri"], "report.md")) as f:
        assert "was trained on this very data: no drift to measure" in f.read()
    first_model = first["tasks"]["Trainer"]["outputs"]["model"]
    assert tasks["latest_blessed_model_resolver-model-blessing-resolver"]["outputs"]["model_blessing"] == \
        first["tasks"]["LMEvaluator"]["outputs"]["blessing"]
    assert tasks["latest_blessed_model_resolver-model-resolver"]["outputs"]["model"] == first_model

    blessing = _artifact(second, "LMEvaluator", "blessing")["metadata"]
    assert blessing["baseline_model_id"] == first_model[0]  # the resource name, as the model query needs
    evaluation = _artifact(second, "LMEvaluator", "evaluation")
    with open(os.path.join(evaluation["uri"], "metrics.json")) as f:
        models = {m["role"]: m for m in json.load(f)["models"]}
    first_model_uri = _artifact(first, "Trainer", "model")["uri"]
    assert models["last_blessed"]["source"] == first_model_uri and models["last_blessed"]["val_loss"] > 0
    # the candidate is that model itself (the Trainer came from the cache): not pushed twice
    assert blessing["blessed"] == 0 and "last blessed model itself" in blessing["blessing_reason"]
    assert "blessed: no" in summary
    # nothing pushed by this run, and the first run's push named as the model still served
    pushed = _artifact(first, "Pusher", "pushed_model")["metadata"]["pushed_destination"]
    assert f"pushed model: none this run (the last push: {pushed})" in summary


def test_a_corpus_edited_in_place_is_tokenized_again_not_taken_from_the_cache(tmp_path, shakespeare_text):
    """The spec's DataFingerprint task (never cached, whatever the run's caching) gives TokenizeText the
    corpus' fingerprint as it is when the spec runs: unchanged, TokenizeText is cached (the test above);
    edited, it runs again."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(shakespeare_text[:5000], encoding="utf-8")
    spec = tmp_path / "spec.yaml"
    runner.main(["compile", f"--pipeline_root={tmp_path / 'out'}", f"--data={corpus}", f"--spec={spec}", *TINY])
    runner.main(["run", f"--spec={spec}", "--until=TokenizeText"])
    status = os.stat(corpus)
    corpus.write_text(shakespeare_text[:6000], encoding="utf-8")
    os.utime(corpus, ns=(status.st_atime_ns, status.st_mtime_ns + 1_000_000_000))  # a coarse clock's edit
    # caching turned on for every task, as a submission's enable_caching=True does: the fingerprint is still taken
    runner.main(["run", f"--spec={spec}", "--until=TokenizeText", "--enable_cache=true"])
    runs = _records(str(tmp_path / "out" / "pipeline_root"))
    assert [r["tasks"]["TokenizeText"]["state"] for r in runs] == ["SUCCEEDED", "SUCCEEDED"]
    fingerprints = [_artifact(r, "TokenizeText", "examples")["metadata"]["input_fingerprint"] for r in runs]
    assert fingerprints == [r["tasks"]["DataFingerprint"]["parameters"]["input_fingerprint"] for r in runs]
    assert len(set(fingerprints)) == 2


def test_a_bpe_spec_runs_through_its_trainer(tmp_path, shakespeare_text, bpe_dir, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(shakespeare_text[:20000], encoding="utf-8")
    spec = tmp_path / "bpe.yaml"
    runner.main(["compile", "--preset=shakespeare", f"--pipeline_root={tmp_path / 'out'}", f"--data={corpus}",
                 f"--spec={spec}", f"--bpe_dir={bpe_dir}", "--skip_validation=True",  # (checked in the char spec)
                 *TINY])
    runner.main(["run", f"--spec={spec}", "--until=Trainer"])
    (record,) = _records(tmp_path / "out" / "pipeline_root")
    assert {t: v["state"] for t, v in record["tasks"].items()} == {"DataFingerprint": "SUCCEEDED",
                                                                   "TokenizeText": "SUCCEEDED", "Trainer": "SUCCEEDED"}
    examples = _artifact(record, "TokenizeText", "examples")["metadata"]
    assert examples["tokenizer"] == "gpt2" and 0 < examples["num_tokens_val"] < examples["num_tokens_train"]
    model_run = _artifact(record, "Trainer", "model_run")["uri"]
    with open(os.path.join(model_run, "tokenizer.json")) as f:
        assert json.load(f)["kind"] == "gpt2"
    summary = capsys.readouterr().out
    assert "pushed model: none" in summary
    # nothing pushed: the sample command takes the Trainer's SavedModel, with the run's BPE files (offline)
    model = _artifact(record, "Trainer", "model")["uri"]
    assert f"sample: {SAMPLE} --from={model}/Format-Serving --bpe_dir={os.path.abspath(bpe_dir)}" \
        in summary
    with pytest.raises(SystemExit):  # `sample --from=<the output directory>`: the one line names that model
        runner.main(["sample", f"--from={tmp_path / 'out'}"])
    assert capsys.readouterr().err.endswith(
        f"no pushed model among the runs of a spec under {tmp_path / 'out' / 'pipeline_root'} (no run's model was "
        f"blessed); the latest trained one: --from={model}/Format-Serving\n")


def _damaged(char_spec, tmp_path, damage):
    with open(char_spec["spec"]) as f:
        spec = yaml.safe_load(f)
    damage(spec)
    path = tmp_path / "damaged.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


DAMAGES = {
    "a parameter removed": (lambda s: s["root"]["dag"]["tasks"]["Trainer"]["inputs"]["parameters"].pop("run_fn"),
                            "task Trainer: parameter 'run_fn' has no value"),
    "an input unwired": (lambda s: s["root"]["dag"]["tasks"]["Pusher"]["inputs"]["artifacts"].pop("model"),
                         "task Pusher: input artifact 'model' is wired to nothing"),
    "an unknown executor kind": (lambda s: s["deploymentSpec"]["executors"].update(
        LMEvaluator_executor={"mystery": {}}), "task LMEvaluator: unknown executor 'LMEvaluator_executor'"),
    "an unknown executor class": (lambda s: s["deploymentSpec"]["executors"]["Pusher_executor"]["container"]
                                  ["args"].__setitem__(1, "components.no_such.Executor"),
                                  "task Pusher: unknown executor class components.no_such.Executor"),
    "the executor input argument removed": (
        lambda s: s["deploymentSpec"]["executors"]["Transform_executor"]["container"]["args"].__delitem__(
            slice(2, 4)), "task Transform: the arguments of TFX's Kubeflow v2 entrypoint lack "
                          "--json_serialized_invocation_args"),
    "an unsupported resolver filter": (
        lambda s: s["deploymentSpec"]["executors"]["latest_blessed_model_resolver-model-resolver_executor"]
        ["resolver"]["outputArtifactQueries"]["model"].update(filter='schema_title="tfx.Model" OR state=LIVE'),
        "task latest_blessed_model_resolver-model-resolver: resolver filter"),
    "a task whose process fails": (
        lambda s: s["deploymentSpec"]["executors"]["ImportSchemaGen_executor"]["container"].update(
            command=["python", "-c", "raise SystemExit('no schema here')"], args=[]),
        "task ImportSchemaGen: failed (exit code 1): no schema here"),
}


@pytest.mark.parametrize("damage", DAMAGES, ids=list(DAMAGES))
def test_a_damaged_spec_fails_naming_the_task(char_spec, tmp_path, damage, capsys):
    change, message = DAMAGES[damage]
    spec = _damaged(char_spec, tmp_path, change)
    root = tmp_path / "root"
    capsys.readouterr()
    with pytest.raises(SystemExit) as failure:
        runner.main(["run", f"--spec={spec}", f"--pipeline_root={root}"])
    stderr = capsys.readouterr().err
    assert failure.value.code == 2 and stderr.startswith(f"runner.py run: error: --spec={spec}: ")
    assert message in stderr and stderr.count("\n") == 1
    records = _records(root)
    if "process" in damage:  # it ran, and its record says how it ended
        assert [r["state"] for r in records] == ["FAILED"]
    else:  # found before any task ran
        assert records == []


def _importer(uri, blessed):
    return {"importer": {"artifactUri": {"constantValue": {"stringValue": uri}},
                         "typeSchema": {"schemaTitle": "tfx.Model"}, "metadata": {"blessed": blessed}}}


def test_records_importers_and_resolvers_on_a_remote_pipeline_root(tmp_path):
    """The launcher's own reads and writes (the run records) go through tf.io.gfile: a pipeline root
    on ram://. Two importer tasks and a resolver that picks the newest blessed model among the
    artifacts of this run and the earlier one; no container runs."""
    model = {"artifacts": {"result": {"artifactType": {"schemaTitle": "tfx.Model"}}}}
    spec = {"pipelineInfo": {"name": "resolving"}, "defaultPipelineRoot": "/nowhere", "root": {"dag": {"tasks": {
        name: {"componentRef": {"name": name}, "taskInfo": {"name": name}}
        for name in ("import_blessed", "import_unblessed", "latest_blessed")}}},
        "components": {"import_blessed": {"executorLabel": "blessed", "outputDefinitions": model},
                       "import_unblessed": {"executorLabel": "unblessed", "outputDefinitions": model},
                       "latest_blessed": {"executorLabel": "query", "outputDefinitions": {
                           "artifacts": {"model": {"artifactType": {"schemaTitle": "tfx.Model"}}}}}},
        "deploymentSpec": {"executors": {
            "blessed": _importer("ram://models/blessed", 1), "unblessed": _importer("ram://models/other", 0),
            "query": {"resolver": {"outputArtifactQueries": {"model": {
                "filter": 'schema_title="tfx.Model" AND state=LIVE AND metadata.blessed.number_value=1'}}}}}}}
    path = tmp_path / "resolving.yaml"
    path.write_text(yaml.safe_dump(spec))
    root = "ram://kfp_local_test/root"
    for _ in range(2):
        runner.main(["run", f"--spec={path}", f"--pipeline_root={root}"])
    first, second = _records(root)
    for record in (first, second):
        assert record["state"] == "SUCCEEDED"
        assert record["tasks"]["latest_blessed"]["outputs"]["model"] == \
            record["tasks"]["import_blessed"]["outputs"]["result"]  # the newest blessed one, this run's
    assert _artifact(second, "import_blessed", "result")["uri"] == "ram://models/blessed"
