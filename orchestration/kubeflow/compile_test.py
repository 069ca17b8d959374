"""`runner.py compile`: the Kubeflow Pipelines v2 spec of every preset, its components, their order and
parameters; the YAML file that docs/kubeflow.md's submission snippets (the kfp client, Vertex AI's
PipelineJob) load. orchestration/kubeflow/launcher_test.py runs the compiled spec."""

import json
import os

import pytest

import runner
from components.lm_evaluator.settings import EvalConfig
from components.tokenize_text.settings import TokenizeTextSettings
from components.trainer.settings import read_custom_config
from pipeline.configs import IMAGE_WORKDIR, PRESETS
from training.checkpoint_shape import started_shape
from training.config import make_config
from orchestration.kubeflow.spec import load_spec, task_order

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _compile(tmp_path, *args, preset="shakespeare_char", name="spec.json"):
    spec_path = tmp_path / name
    runner.main(["compile", f"--preset={preset}", f"--spec={spec_path}", *args])
    return load_spec(str(spec_path))


def _parameters(spec, task):
    """The task's constant parameters as the spec (pipeline spec 2.1) gives them: {name: value}."""
    params = spec["pipelineSpec"]["root"]["dag"]["tasks"][task]["inputs"].get("parameters", {})
    return {k: v["runtimeValue"]["constant"] for k, v in params.items() if "runtimeValue" in v}


def _executor(spec, task):
    label = spec["pipelineSpec"]["components"][task]["executorLabel"]
    return spec["pipelineSpec"]["deploymentSpec"]["executors"][label]["container"]


def test_compiled_default_pipeline_components_order_and_parameters(tmp_path):
    spec = _compile(tmp_path, "--pipeline_root=gs://bucket/nanogpt", "--data=gs://bucket/shakespeare.txt",
                    "--image=registry.example/nanogpt-tfx:7",
                    "--beam_pipeline_args=--runner=DataflowRunner --project=p",
                    "--max_iters=123", "--learning_rate=3e-4", "--eval_batches=50")
    order = task_order(spec)
    components = [t for t in order if "resolver" not in t]
    assert components == ["DataFingerprint", "ImportSchemaGen", "TokenizeText", "SchemaGen", "DataValidator",
                          "AnomalyGate", "Transform", "Trainer", "LMEvaluator", "InfraValidator", "Pusher"]
    tasks = spec["pipelineSpec"]["root"]["dag"]["tasks"]
    # the data checked before anything trains on it: the gate comes before Transform and the Trainer
    assert set(tasks["Transform"]["dependentTasks"]) == {"AnomalyGate", "ImportSchemaGen", "TokenizeText"}
    assert set(tasks["Trainer"]["dependentTasks"]) == {"AnomalyGate", "Transform"}
    validator = tasks["DataValidator"]["inputs"]["artifacts"]
    assert validator["statistics"]["taskOutputArtifact"] == {"producerTask": "TokenizeText",
                                                             "outputArtifactKey": "statistics"}
    assert validator["baseline_blessing"]["taskOutputArtifact"]["producerTask"].startswith(
        "latest_blessed_model_resolver")  # TFX's LatestBlessedModelStrategy, whose blessing names the data
    assert tasks["LMEvaluator"]["inputs"]["artifacts"]["statistics"]["taskOutputArtifact"]["producerTask"] == \
        "TokenizeText"
    assert _parameters(spec, "AnomalyGate") == {"accept_anomalies": 0}
    # the kfp SDK 2's schema, whose `constant` parameters Kubeflow Pipelines' driver reads (not 2.0's constantValue)
    assert spec["pipelineSpec"]["schemaVersion"] == "2.1.0" and "constantValue" not in json.dumps(spec)
    assert order.index("latest_blessed_model_resolver-model-resolver") < order.index("LMEvaluator")
    assert set(tasks["Pusher"]["dependentTasks"]) == {"InfraValidator", "LMEvaluator", "Trainer"}
    assert set(tasks["InfraValidator"]["dependentTasks"]) == {"LMEvaluator", "Trainer"}
    assert set(tasks["LMEvaluator"]["inputs"]["artifacts"]) == {"examples", "model", "baseline_model", "model_run",
                                                                "transform_graph", "source_examples", "statistics"}
    assert spec["runtimeConfig"]["gcsOutputDirectory"] == "gs://bucket/nanogpt/pipeline_root"

    tokenize = TokenizeTextSettings.from_json(_parameters(spec, "TokenizeText")["settings"])
    assert (tokenize.input_pattern, tokenize.tokenizer) == ("gs://bucket/shakespeare.txt", "char")
    # the corpus' fingerprint taken where and when the spec runs, by a task never cached, is TokenizeText's parameter
    assert _parameters(spec, "DataFingerprint") == {"settings": _parameters(spec, "TokenizeText")["settings"],
                                                    "run": "{{$.pipeline_job_uuid}}"}  # its cache key: each run's own
    assert "cachingOptions" not in tasks["DataFingerprint"] and tasks["TokenizeText"]["cachingOptions"]["enableCache"]
    assert tasks["TokenizeText"]["inputs"]["parameters"]["input_fingerprint"] == {
        "taskOutputParameter": {"producerTask": "DataFingerprint", "outputParameterKey": "input_fingerprint"}}
    assert _executor(spec, "DataFingerprint")["command"] == ["python", "-m", "orchestration.kubeflow.data_fingerprint"]
    schema_file = _parameters(spec, "ImportSchemaGen")["schema_file"]
    assert schema_file.startswith(IMAGE_WORKDIR + "/")  # the image's copy, which this repository holds too
    assert os.path.isfile(os.path.join(REPO, os.path.relpath(schema_file, IMAGE_WORKDIR)))
    train, deploy, resume = read_custom_config(json.loads(_parameters(spec, "Trainer")["custom_config"]))
    assert train == make_config("shakespeare_char", max_iters=123, learning_rate=3e-4)
    assert resume is False and _executor(spec, "Trainer")["image"] == "registry.example/nanogpt-tfx:7"
    # a retried Trainer task (or a new run) continues the training interrupted in the pipeline root's trainings
    custom = json.loads(_parameters(spec, "Trainer")["custom_config"])
    assert custom["trainings_dir"] == "gs://bucket/nanogpt/pipeline_root/Trainer/trainings"
    assert deploy.continue_interrupted is True
    assert tasks["Trainer"]["retryPolicy"] == {"maxRetryCount": 3, "backoffDuration": "60s", "backoffFactor": 2.0,
                                               "backoffMaxDuration": "3600s"}
    assert _parameters(spec, "Trainer")["run_fn"] == "components.trainer.run_fn.run_fn"
    evaluation = EvalConfig.from_json(_parameters(spec, "LMEvaluator")["config"])
    assert (evaluation.eval_batches, evaluation.val_loss_threshold) == (50, 1.95)
    push = json.loads(_parameters(spec, "Pusher")["push_destination"])
    assert push["filesystem"]["base_directory"] == "gs://bucket/nanogpt/serving_model"
    for task in components:
        container = _executor(spec, task)
        assert container["image"] == "registry.example/nanogpt-tfx:7"
        if task == "DataFingerprint":  # not a TFX component: no Beam pipeline of its own
            continue
        own = ["--no_pipeline_type_check"] if task == "Transform" else []  # pipeline/pipeline.py's, after the run's
        assert container["args"][-2 - len(own):] == ["--runner=DataflowRunner", "--project=p"] + own


def test_every_preset_compiles(tmp_path):
    for preset, settings in PRESETS.items():
        data = [] if settings.get("dataset_name") else ["--data=gs://bucket/input.txt"]
        spec = _compile(tmp_path, "--pipeline_root=gs://bucket/root", *data, preset=preset, name=f"{preset}.json")
        tasks = set(spec["pipelineSpec"]["root"]["dag"]["tasks"])
        checks = {"SchemaGen", "DataValidator", "AnomalyGate"}
        assert {"TokenizeText", *checks, "Trainer", "LMEvaluator", "Pusher"} <= tasks, preset
        assert ("Transform" in tasks) == (settings.get("tokenizer", "char") == "char"), preset
        train, _, _ = read_custom_config(json.loads(_parameters(spec, "Trainer")["custom_config"]))
        assert train == started_shape(make_config(settings["train_preset"]), log=lambda *_: None), preset
        evaluation = EvalConfig.from_json(_parameters(spec, "LMEvaluator")["config"])
        assert evaluation.baselines == settings.get("baselines", [])
        assert evaluation.beat_unigram, preset  # a model no better than the unigram baseline: never blessed
        assert "InfraValidator" in tasks, preset


def test_a_curated_schema_or_no_validation(tmp_path):
    """--schema_file: TFX's ImportSchemaGen in SchemaGen's place; --skip_validation=True: no checks,
    the Trainer after Transform alone."""
    common = ["--pipeline_root=gs://bucket/root", "--data=gs://bucket/input.txt"]
    spec = _compile(tmp_path, *common, "--schema_file=gs://bucket/schema.pbtxt", name="curated.json")
    tasks = spec["pipelineSpec"]["root"]["dag"]["tasks"]
    assert "SchemaGen" not in tasks and _parameters(spec, "ImportDataSchema") == {
        "schema_file": "gs://bucket/schema.pbtxt"}
    assert tasks["DataValidator"]["inputs"]["artifacts"]["schema"]["taskOutputArtifact"]["producerTask"] == \
        "ImportDataSchema"
    spec = _compile(tmp_path, *common, "--skip_validation=True", name="unchecked.json")
    tasks = spec["pipelineSpec"]["root"]["dag"]["tasks"]
    assert not {"SchemaGen", "DataValidator", "AnomalyGate"} & set(tasks)
    assert tasks["Trainer"]["dependentTasks"] == ["Transform"]
    assert "statistics" in tasks["LMEvaluator"]["inputs"]["artifacts"]  # still recorded with the blessing


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


def test_one_worker_with_gpus_gets_them_on_its_trainer_pod(tmp_path, capsys):
    """One worker: the standard Trainer, whose Kubeflow task asks for the accelerators (the
    training engine's strategy 'auto' then mirrors across them)."""
    spec = _compile(tmp_path, "--pipeline_root=gs://bucket/root", "--data=gs://bucket/input.txt",
                    "--train_accelerator=NVIDIA_TESLA_T4", "--train_accelerator_count=2")
    trainer = _executor(spec, "Trainer")
    assert trainer["args"][1] == "tfx.components.trainer.executor.GenericExecutor"
    assert trainer["resources"]["accelerator"] == {"type": "NVIDIA_TESLA_T4", "count": "2"}
    assert "resources" not in _executor(spec, "TokenizeText")
    # open-source Kubeflow Pipelines names the Kubernetes resource instead
    spec = _compile(tmp_path, "--pipeline_root=gs://bucket/root", "--data=gs://bucket/input.txt",
                    "--train_accelerator=nvidia.com/gpu", "--train_accelerator_count=1", name="kfp_gpu.yaml")
    assert _executor(spec, "Trainer")["resources"]["accelerator"] == {"type": "nvidia.com/gpu", "count": "1"}
    with pytest.raises(SystemExit, match="2"):
        _compile(tmp_path, "--pipeline_root=gs://bucket/root", "--data=gs://bucket/input.txt",
                 "--train_accelerator=NVIDIA_TESLA_T4", name="no_count.json")
    assert "needs --train_accelerator_count >= 1" in capsys.readouterr().err


def test_compile_writes_yaml_that_the_kfp_client_and_vertex_ai_load(tmp_path, monkeypatch):
    """docs/kubeflow.md's submission snippets as far as they go without a server: the kfp client
    (2.5) loads the YAML and builds its run request from it; Vertex AI's PipelineJob is built
    from it. The client refuses TFX's JSON."""
    monkeypatch.chdir(tmp_path)
    runner.main(["compile", "--pipeline_root=gs://bucket/nanogpt", "--data=gs://bucket/input.txt"])
    path = str(tmp_path / "nanogpt-tfx-shakespeare_char.yaml")  # the default name
    spec = load_spec(path)["pipelineSpec"]
    assert spec["defaultPipelineRoot"] == "gs://bucket/nanogpt/pipeline_root"

    import kfp
    from kfp.client import client as kfp_client

    client = kfp.Client(host="http://localhost:9", namespace="nanogpt")  # no request is made
    job = client._create_job_config(params=None, pipeline_package_path=path, pipeline_id=None, version_id=None,
                                    enable_caching=None, pipeline_root=None)
    assert job.pipeline_spec["pipelineInfo"]["name"] == "nanogpt-tfx"
    assert set(job.pipeline_spec["root"]["dag"]["tasks"]) == set(spec["root"]["dag"]["tasks"])
    assert job.pipeline_spec["defaultPipelineRoot"] == "gs://bucket/nanogpt/pipeline_root"
    runner.main(["compile", "--pipeline_root=gs://bucket/nanogpt", "--data=gs://bucket/input.txt",
                 f"--spec={tmp_path / 'tfx.json'}"])
    with pytest.raises(ValueError, match=r"\.yaml, \.yml"):
        kfp_client._extract_pipeline_yaml(str(tmp_path / "tfx.json"))

    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform

    for template in (path, str(tmp_path / "tfx.json")):  # Vertex AI takes both
        # enable_caching unset, as docs/kubeflow.md submits: each task keeps the spec's own option
        vertex_job = aiplatform.PipelineJob(display_name="nanogpt-tfx", template_path=template,
                                            project="my-project", location="us-central1",
                                            credentials=AnonymousCredentials())
        built = vertex_job.to_dict()
        assert built["runtimeConfig"]["gcsOutputDirectory"] == "gs://bucket/nanogpt/pipeline_root"
        tasks = built["pipelineSpec"]["root"]["dag"]["tasks"]
        assert set(tasks) == set(spec["root"]["dag"]["tasks"])
        cached = {n for n, t in tasks.items() if t.get("cachingOptions", {}).get("enableCache")}
        assert cached == {n for n in tasks if "resolver" not in n and n != "DataFingerprint"}
