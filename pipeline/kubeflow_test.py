"""`runner.py compile`: the Kubeflow Pipelines v2 spec of every preset, its components, their order and
parameters; and one component run from the spec through TFX's Kubeflow v2 container entrypoint,
as a Kubeflow pod runs it."""

import json
import os
import subprocess
import sys

import pytest

import runner
from pipeline.configs import IMAGE_WORKDIR, PRESETS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _compile(tmp_path, *args, preset="shakespeare_char", name="spec.json"):
    spec_path = tmp_path / name
    runner.main(["compile", f"--preset={preset}", f"--spec={spec_path}", *args])
    with open(spec_path) as f:
        return json.load(f)


def _task_order(spec):
    """The tasks in an order that respects their dependencies (ties by name), as Kubeflow runs them."""
    tasks = spec["pipelineSpec"]["root"]["dag"]["tasks"]
    order, done = [], set()
    while len(order) < len(tasks):
        ready = sorted(n for n, t in tasks.items() if n not in done and set(t.get("dependentTasks", [])) <= done)
        assert ready, f"a cycle among {set(tasks) - done}"
        order.append(ready[0])
        done.add(ready[0])
    return order


def _constants(spec, task):
    """The task's parameters as the spec gives them: {name: {"stringValue": ...} or {"intValue": ...}, ...}."""
    params = spec["pipelineSpec"]["root"]["dag"]["tasks"][task]["inputs"].get("parameters", {})
    return {k: v["runtimeValue"]["constantValue"] for k, v in params.items()}


def _parameters(spec, task):
    return {k: next(iter(v.values())) for k, v in _constants(spec, task).items()}


def _executor(spec, task):
    label = spec["pipelineSpec"]["components"][task]["executorLabel"]
    return spec["pipelineSpec"]["deploymentSpec"]["executors"][label]["container"]


def test_compiled_default_pipeline_components_order_and_parameters(tmp_path):
    spec = _compile(tmp_path, "--pipeline_root=gs://bucket/nanogpt", "--data=gs://bucket/shakespeare.txt",
                    "--image=registry.example/nanogpt-tfx:7",
                    "--beam_pipeline_args=--runner=DataflowRunner --project=p",
                    "--max_iters=123", "--learning_rate=3e-4", "--eval_batches=50")
    order = _task_order(spec)
    components = [t for t in order if "resolver" not in t]
    assert components == ["ImportSchemaGen", "TokenizeText", "Transform", "Trainer", "LMEvaluator", "Pusher"]
    tasks = spec["pipelineSpec"]["root"]["dag"]["tasks"]
    assert set(tasks["Transform"]["dependentTasks"]) == {"ImportSchemaGen", "TokenizeText"}
    assert tasks["Trainer"]["dependentTasks"] == ["Transform"]
    assert order.index("latest_blessed_model_resolver-model-resolver") < order.index("LMEvaluator")
    assert set(tasks["Pusher"]["dependentTasks"]) == {"LMEvaluator", "Trainer"}
    assert spec["runtimeConfig"]["gcsOutputDirectory"] == "gs://bucket/nanogpt/pipeline_root"

    tokenize = json.loads(_parameters(spec, "TokenizeText")["settings"])  # TokenizeTextSettings
    assert (tokenize["input_pattern"], tokenize["tokenizer"]) == ("gs://bucket/shakespeare.txt", "char")
    schema_file = _parameters(spec, "ImportSchemaGen")["schema_file"]
    assert schema_file.startswith(IMAGE_WORKDIR + "/")  # the image's copy, which this repository holds too
    assert os.path.isfile(os.path.join(REPO, os.path.relpath(schema_file, IMAGE_WORKDIR)))
    custom = json.loads(_parameters(spec, "Trainer")["custom_config"])
    assert custom["train_preset"] == "shakespeare_char"
    assert custom["train_config"] == {"max_iters": 123, "learning_rate": 3e-4}
    assert _parameters(spec, "Trainer")["run_fn"] == "components.trainer.run_fn.run_fn"
    evaluator = _parameters(spec, "LMEvaluator")
    assert (evaluator["eval_batches"], evaluator["val_loss_threshold"]) == ("50", 1.95)
    push = json.loads(_parameters(spec, "Pusher")["push_destination"])
    assert push["filesystem"]["base_directory"] == "gs://bucket/nanogpt/serving_model"
    for task in components:
        container = _executor(spec, task)
        assert container["image"] == "registry.example/nanogpt-tfx:7"
        assert container["args"][-2:] == ["--runner=DataflowRunner", "--project=p"]


def test_every_preset_compiles(tmp_path):
    for preset, settings in PRESETS.items():
        data = [] if settings.get("dataset_name") else ["--data=gs://bucket/input.txt"]
        spec = _compile(tmp_path, "--pipeline_root=gs://bucket/root", *data, preset=preset, name=f"{preset}.json")
        tasks = set(spec["pipelineSpec"]["root"]["dag"]["tasks"])
        assert {"TokenizeText", "Trainer", "LMEvaluator", "Pusher"} <= tasks, preset
        assert ("Transform" in tasks) == (settings.get("tokenizer", "char") == "char"), preset
        assert json.loads(_parameters(spec, "Trainer")["custom_config"])["train_preset"] == settings["train_preset"]
        assert json.loads(_parameters(spec, "LMEvaluator")["baselines"]) == settings.get("baselines", [])


def test_file_presets_need_data_the_pods_can_read(tmp_path, capsys):
    with pytest.raises(SystemExit, match="2"):
        runner.main(["compile", "--pipeline_root=gs://bucket/root", f"--spec={tmp_path / 'x.json'}"])
    assert "reads text files: name ones that the pipeline's pods can read with --data" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def test_multi_worker_training_on_vertex_ai(tmp_path, capsys):
    spec = _compile(tmp_path, "--pipeline_root=gs://bucket/root", "--data=gs://bucket/input.txt",
                    "--image=registry.example/nanogpt-tfx:7-gpu", "--train_workers=3",
                    "--train_accelerator=NVIDIA_TESLA_A100", "--train_accelerator_count=4",
                    "--vertex_project=my-project", "--vertex_region=europe-west4")
    assert _executor(spec, "Trainer")["args"][1] == \
        "tfx.extensions.google_cloud_ai_platform.trainer.executor.GenericExecutor"
    custom = json.loads(_parameters(spec, "Trainer")["custom_config"])
    assert custom["ai_platform_enable_vertex"] is True and custom["ai_platform_vertex_region"] == "europe-west4"
    job = custom["ai_platform_training_args"]
    assert job["project"] == "my-project"
    pools = job["job_spec"]["worker_pool_specs"]
    assert [p["replica_count"] for p in pools] == [1, 2]  # the chief and two workers
    for pool in pools:
        assert pool["machine_spec"]["accelerator_type"] == "NVIDIA_TESLA_A100"
        assert pool["machine_spec"]["accelerator_count"] == 4
        assert pool["container_spec"]["image_uri"] == "registry.example/nanogpt-tfx:7-gpu"
    with pytest.raises(SystemExit, match="2"):
        _compile(tmp_path, "--pipeline_root=gs://bucket/root", "--data=gs://bucket/input.txt", "--train_workers=2",
                 name="no_project.json")
    assert "--train_workers=2: multi-worker training runs on Vertex AI, which needs --vertex_project" in \
        capsys.readouterr().err


def test_a_component_runs_from_the_spec_through_the_kubeflow_v2_entrypoint(tmp_path, shakespeare_text):
    """TokenizeText as its pod runs it: the spec's command and arguments, the executor input that
    Kubeflow fills in for `{{$}}` from the spec's parameters, local paths in place of gs://."""
    text = shakespeare_text[:20000]
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(text, encoding="utf-8")
    spec = _compile(tmp_path, f"--pipeline_root={tmp_path / 'root'}", f"--data={corpus}")
    container = _executor(spec, "TokenizeText")
    component = spec["pipelineSpec"]["components"]["TokenizeText"]
    task_root = tmp_path / "root" / "TokenizeText_task"
    examples_uri = str(task_root / "examples")
    executor_input = {
        "inputs": {"parameters": _constants(spec, "TokenizeText")},
        "outputs": {
            "artifacts": {"examples": {"artifacts": [{
                "name": "projects/1/locations/here/metadataStores/default/artifacts/1",
                "uri": examples_uri,
                "type": component["outputDefinitions"]["artifacts"]["examples"]["artifactType"]}]}},
            "outputFile": str(task_root / "executor_output.json"),
        },
    }
    args = [json.dumps(executor_input) if a == "{{$}}" else a for a in container["args"]]
    assert container["command"][0] == "python"
    result = subprocess.run([sys.executable, *container["command"][1:], *args], cwd=tmp_path, capture_output=True,
                            text=True, timeout=600, env={**os.environ, "PYTHONPATH": REPO})
    assert result.returncode == 0, result.stderr[-3000:]

    with open(task_root / "executor_output.json") as f:
        output = json.load(f)
    artifact = output["artifacts"]["examples"]["artifacts"][0]
    assert artifact["uri"] == examples_uri
    metadata = artifact["metadata"]
    assert json.loads(metadata["split_names"]) == ["train", "val"]
    assert metadata["num_tokens_train"] + metadata["num_tokens_val"] == len(text)  # characters
    assert metadata["num_tokens_val"] == len(text) - int(len(text) * 0.9)  # the last 10%, as nanoGPT
    for split in ("train", "val"):
        assert os.listdir(os.path.join(examples_uri, f"Split-{split}"))


def test_one_worker_with_gpus_gets_them_on_its_trainer_pod(tmp_path, capsys):
    """One worker: the standard Trainer, whose Kubeflow task asks for the accelerators (the
    training engine's strategy 'auto' then mirrors across them)."""
    spec = _compile(tmp_path, "--pipeline_root=gs://bucket/root", "--data=gs://bucket/input.txt",
                    "--train_accelerator=NVIDIA_TESLA_T4", "--train_accelerator_count=2")
    trainer = _executor(spec, "Trainer")
    assert trainer["args"][1] == "tfx.components.trainer.executor.GenericExecutor"
    assert trainer["resources"]["accelerator"] == {"type": "NVIDIA_TESLA_T4", "count": "2"}
    assert "resources" not in _executor(spec, "TokenizeText")
    with pytest.raises(SystemExit, match="2"):
        _compile(tmp_path, "--pipeline_root=gs://bucket/root", "--data=gs://bucket/input.txt",
                 "--train_accelerator=NVIDIA_TESLA_T4", name="no_count.json")
    assert "needs --train_accelerator_count >= 1" in capsys.readouterr().err
