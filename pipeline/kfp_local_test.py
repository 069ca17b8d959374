"""`runner.py run --spec`: the compiled Kubeflow Pipelines spec runs here, task by task in processes
of their own through TFX's Kubeflow v2 entrypoint, as Kubeflow's launcher runs it: a tiny model on
a slice of Tiny Shakespeare to a pushed SavedModel; a second run that finds it through the
resolver tasks; the BPE preset through its Trainer; damaged specs that fail naming their task."""

import json
import os

import pytest
import tensorflow as tf
import yaml

import runner
from pipeline import kfp_local
from test_helpers.damage import flip_bytes_in_place

TINY = ["--max_iters=20", "--eval_interval=10", "--eval_iters=2", "--log_interval=10", "--n_layer=1",
        "--n_head=2", "--n_embd=32", "--block_size=32", "--batch_size=8", "--warmup_iters=5",
        "--lr_decay_iters=20", "--eval_batches=2", "--val_loss_threshold=10"]


def _records(root):
    """The run records under the pipeline root, oldest first."""
    found = [json.load(tf.io.gfile.GFile(p)) for p in tf.io.gfile.glob(f"{root}/*/*/{kfp_local.RECORD_FILE}")]
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
    runner.main(["run", f"--spec={char_spec['spec']}"])
    (record,) = _records(char_spec["root"])
    return record


def test_the_spec_runs_to_a_pushed_model_that_generates(char_spec, first_run):
    record = first_run
    assert record["state"] == "SUCCEEDED"
    assert {t: v["state"] for t, v in record["tasks"].items()} == {
        t: "SUCCEEDED" for t in ["ImportSchemaGen", "TokenizeText", "Transform", "Trainer", "LMEvaluator", "Pusher",
                                 "latest_blessed_model_resolver-model-blessing-resolver",
                                 "latest_blessed_model_resolver-model-resolver"]}
    # nothing blessed before: both resolvers answer with nothing
    assert record["tasks"]["latest_blessed_model_resolver-model-resolver"]["outputs"] == {"model": []}
    # the metadata TokenizeText's executor output gave its examples reached the record
    examples = _artifact(record, "TokenizeText", "examples")
    assert examples["uri"] == f"{char_spec['root']}/nanogpt-tfx/{record['run_id']}/TokenizeText/examples"
    text = char_spec["text"]
    assert examples["metadata"]["num_tokens_train"] + examples["metadata"]["num_tokens_val"] == len(text)
    pushed = _artifact(record, "Pusher", "pushed_model")["metadata"]
    assert pushed["pushed"] == 1 and pushed["pushed_destination"].startswith(char_spec["serving"])

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


def test_a_second_run_finds_the_first_runs_blessed_model_through_the_resolvers(char_spec, first_run, capsys):
    runner.main(["run", f"--spec={char_spec['spec']}", "--until=LMEvaluator"])  # the Pusher is the first run's test
    summary = capsys.readouterr().out
    first, second = _records(char_spec["root"])
    assert first["run_id"] == first_run["run_id"]
    tasks = second["tasks"]
    # Kubeflow's cache: the same inputs and parameters, so the tasks up to the Trainer are reused
    assert [tasks[t]["state"] for t in ("ImportSchemaGen", "TokenizeText", "Transform", "Trainer")] == ["CACHED"] * 4
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
    assert "blessed: no" in summary and "pushed model: none" in summary


def test_a_bpe_spec_runs_through_its_trainer(tmp_path, shakespeare_text, bpe_dir, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(shakespeare_text[:20000], encoding="utf-8")
    spec = tmp_path / "bpe.yaml"
    runner.main(["compile", "--preset=shakespeare", f"--pipeline_root={tmp_path / 'out'}", f"--data={corpus}",
                 f"--spec={spec}", f"--bpe_dir={bpe_dir}", *TINY])
    runner.main(["run", f"--spec={spec}", "--until=Trainer"])
    (record,) = _records(tmp_path / "out" / "pipeline_root")
    assert {t: v["state"] for t, v in record["tasks"].items()} == {"TokenizeText": "SUCCEEDED",
                                                                   "Trainer": "SUCCEEDED"}
    examples = _artifact(record, "TokenizeText", "examples")["metadata"]
    assert examples["tokenizer"] == "gpt2" and 0 < examples["num_tokens_val"] < examples["num_tokens_train"]
    model_run = _artifact(record, "Trainer", "model_run")["uri"]
    with open(os.path.join(model_run, "tokenizer.json")) as f:
        assert json.load(f)["kind"] == "gpt2"
    assert "pushed model: none" in capsys.readouterr().out


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


# A task that writes an Examples artifact as TokenizeText does (a GZIP shard, and the SHA-256 it
# recorded of it, model.shards.SHARD_SHA256), and one that reads it, in plain Python (no TFX: fast).
MAKE_EXAMPLES = """
import gzip, hashlib, json, os, sys
executor_input = json.loads(sys.argv[1])
uri = executor_input["outputs"]["artifacts"]["examples"]["artifacts"][0]["uri"]
os.makedirs(uri + "/Split-train")
with gzip.open(uri + "/Split-train/part-0.gz", "wb") as f:
    f.write(b"".join(b"record %d of the shard; " % i for i in range(20000)))
with open(uri + "/Split-train/part-0.gz", "rb") as f:
    digests = {"Split-train/part-0.gz": hashlib.sha256(f.read()).hexdigest()}
with open(executor_input["outputs"]["outputFile"], "w") as f:
    json.dump({"artifacts": {"examples": {"artifacts": [{"metadata": {"shard_sha256": json.dumps(digests)}}]}}}, f)
import time
time.sleep(float(os.environ.get("MAKE_EXAMPLES_SECONDS", "0")))
"""
READ_EXAMPLES = """
import glob, gzip, json, os, sys
uri = json.loads(sys.argv[1])["inputs"]["artifacts"]["examples"]["artifacts"][0]["uri"]
for path in sorted(glob.glob(uri + "/Split-*/*.gz")):
    gzip.open(path).read()
if os.environ.get("READ_EXAMPLES_FAILS"):
    raise SystemExit("the reader failed on its own")
import time
time.sleep(float(os.environ.get("READ_EXAMPLES_SECONDS", "0")))
"""


def _reading_spec(tmp_path):
    """A spec of two tasks, MAKE_EXAMPLES (cached) and READ_EXAMPLES (not), its root tmp_path/root."""
    examples = {"artifacts": {"examples": {"artifactType": {"schemaTitle": "tfx.Examples"}}}}
    spec = {"pipelineInfo": {"name": "reading"}, "defaultPipelineRoot": str(tmp_path / "root"), "root": {"dag": {
        "tasks": {"make": {"componentRef": {"name": "make"}, "taskInfo": {"name": "make"},
                           "cachingOptions": {"enableCache": True}},
                  "read": {"componentRef": {"name": "read"}, "taskInfo": {"name": "read"}, "inputs": {"artifacts": {
                      "examples": {"taskOutputArtifact": {"producerTask": "make", "outputArtifactKey": "examples"}}}}}}}},
        "components": {"make": {"executorLabel": "make", "outputDefinitions": examples},
                       "read": {"executorLabel": "read", "inputDefinitions": examples}},
        "deploymentSpec": {"executors": {
            name: {"container": {"image": "unused", "command": ["python", "-c", script, "{{$}}"]}}
            for name, script in (("make", MAKE_EXAMPLES), ("read", READ_EXAMPLES))}}}
    path = tmp_path / "reading.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path, str(tmp_path / "root")


def test_a_task_that_fails_on_a_cached_input_damaged_in_place_has_it_set_aside_and_made_again(
        tmp_path, monkeypatch, capsys):
    """Bytes flipped in place in the shard of a cached artifact (its size kept): its reader fails with
    gzip's own error, naming no file; the run checks the reader's inputs against the SHA-256 they
    record, names the file and the artifact, sets the artifact aside in the record of the run that
    made it (the cache no longer takes it) and runs the spec again, in which the task that made it
    makes it anew. A reader that fails with its inputs whole fails as it is."""
    from model import shards

    path, root = _reading_spec(tmp_path)
    runner.main(["run", f"--spec={path}"])
    [first] = _records(root)
    made = _artifact(first, "make", "examples")
    assert json.loads(made["metadata"][shards.SHARD_SHA256]) == shards.shard_digests(made["uri"])
    shard = os.path.join(made["uri"], "Split-train", "part-0.gz")
    flip_bytes_in_place(shard)
    capsys.readouterr()

    runner.main(["run", f"--spec={path}"])
    [line] = [line for line in capsys.readouterr().out.splitlines() if line.startswith("task read: ")]
    assert line.startswith("task read: failed (exit code 1): ")
    assert line.endswith(f"; token shard {shard} is damaged (its bytes are not those written: another SHA-256): the "
                         f"artifact {made['name']} of task make is set aside and made again; running the spec again")
    first, failed, remade = _records(root)
    assert _artifact(first, "make", "examples")["state"] == kfp_local.SET_ASIDE  # in the record of the run that made it
    assert failed["state"] == "FAILED" and failed["tasks"]["make"]["state"] == "CACHED"
    assert remade["state"] == "SUCCEEDED" and remade["tasks"]["make"]["state"] == "SUCCEEDED"
    assert _artifact(remade, "make", "examples")["uri"] != made["uri"]

    monkeypatch.setenv("READ_EXAMPLES_FAILS", "1")
    with pytest.raises(SystemExit):
        runner.main(["run", f"--spec={path}"])
    assert "task read: failed (exit code 1): the reader failed on its own; log: " in capsys.readouterr().err
    assert len(_records(root)) == 4  # not run again


def test_a_launcher_killed_at_each_point_of_a_task_leaves_no_task_running_and_the_rerun_completes(tmp_path):
    """`runner.py run --spec` killed with SIGKILL (pipeline/fault_injection.py) at each point of a task
    (its tasks would run on for 60 s after their work): no process of it is left, and the next run
    marks the killed run's record CANCELED and completes, taking what the killed runs recorded from
    the cache."""
    import signal
    import subprocess
    import sys

    from pipeline import fault_injection
    from test_helpers.processes import group_gone

    path, root = _reading_spec(tmp_path)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def run(kill_at=None):
        env = {k: v for k, v in os.environ.items() if k != fault_injection.KILL_AT}
        if kill_at:
            task, point = kill_at.split(":")
            env[fault_injection.KILL_AT] = kill_at
            if point != "written":  # killed while it runs: it would run on for a minute after its work
                env[f"{task.upper()}_EXAMPLES_SECONDS"] = "60"
        launcher = subprocess.Popen([sys.executable, "runner.py", "run", f"--spec={path}"], cwd=repo, env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                    start_new_session=True)
        out, _ = launcher.communicate(timeout=120)
        assert group_gone(launcher.pid), f"a process of the killed launcher is left:\n{out}"
        return launcher.returncode, out

    for kill_at in ("make:writing", "make:written"):  # the kill comes before the record has make
        code, out = run(kill_at)
        assert code == -signal.SIGKILL and f"fault injection: SIGKILL at {kill_at}" in out
        assert _records(root)[-1]["state"] == "RUNNING" and _records(root)[-1]["tasks"] == {}
    code, out = run("read:running")
    assert code == -signal.SIGKILL and "fault injection: SIGKILL at read:running" in out
    code, out = run()
    assert code == 0, out
    *killed, last_killed, completed = _records(root)
    assert [r["state"] for r in killed + [last_killed]] == ["CANCELED"] * 3
    assert last_killed["tasks"]["make"]["state"] == "SUCCEEDED" and "read" not in last_killed["tasks"]
    assert completed["state"] == "SUCCEEDED"
    assert {t: v["state"] for t, v in completed["tasks"].items()} == {"make": "CACHED", "read": "SUCCEEDED"}
    assert completed["tasks"]["make"]["outputs"] == last_killed["tasks"]["make"]["outputs"]
