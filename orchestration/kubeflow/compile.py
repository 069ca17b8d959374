"""The pipeline as a Kubeflow Pipelines v2 spec (TFX's KubeflowV2DagRunner), for Kubeflow Pipelines and
Vertex AI Pipelines; no cluster needed to write it. `runner.py run --spec` runs it here (launcher.py)."""

from __future__ import annotations

from core import files
from pipeline.configs import IMAGE_WORKDIR, RunConfig


def kubeflow_platform():
    """What the pipeline needs to know of a Kubeflow cluster: the code lies in the image's workdir, a
    compiled spec holds only TFX's built-in resolver strategies, the Trainer's pod asks for its
    accelerators, the deployment brings its own ML Metadata store, and the spec runs later, elsewhere."""
    from pipeline.pipeline import Platform

    return Platform(code_root=IMAGE_WORKDIR, builtin_resolvers=True, trainer_resources=True, runs_here=False)


def compile_spec(config: RunConfig, path: str) -> None:
    """Write the pipeline of config as a spec file: YAML, or JSON for a .json path."""
    from tfx import v1 as tfx

    from pipeline.pipeline import create_pipeline

    # pipeline spec 2.1 (the kfp SDK 2's schema), not TFX's default 2.0: the driver of recent Kubeflow
    # Pipelines backends reads a task's constant parameters only in 2.1's form (`constant`), where it also
    # fills in the run's placeholders; Vertex AI takes both
    runner_config = tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=config.deploy.image,
                                                                             use_pipeline_spec_2_1=True)
    pipeline_job = tfx.orchestration.experimental.KubeflowV2DagRunner(config=runner_config).run(
        create_pipeline(config, kubeflow_platform()), write_out=False)
    write_pipeline_spec(with_data_fingerprint(with_retries(pipeline_job, config.deploy.train_retries)), path)


def with_data_fingerprint(pipeline_job: dict) -> dict:
    """The compiled Kubeflow job with a first task, never cached, that takes the fingerprint of
    TokenizeText's corpus where and when the spec runs (data_fingerprint.py) and hands it to
    TokenizeText as its parameter input_fingerprint: Kubeflow's cache then takes TokenizeText, and
    all after it, only while the corpus is as it was (TFX's compiler gives a custom component no driver).
    Also for a hub dataset, whose fingerprint is "": a name here may be a folder in the pods."""
    from orchestration.kubeflow.data_fingerprint import PARAMETER, SETTINGS, TASK, container_line

    spec = pipeline_job["pipelineSpec"]
    tasks = spec["root"]["dag"]["tasks"]
    tokenize = tasks["TokenizeText"]
    tokenize_component = spec["components"][tokenize["componentRef"]["name"]]
    image = spec["deploymentSpec"]["executors"][tokenize_component["executorLabel"]]["container"]["image"]
    text = {"parameterType": "STRING"}  # (pipeline spec 2.1, as TFX compiles it here)
    spec["components"][TASK] = {
        "executorLabel": f"{TASK}_executor",
        "inputDefinitions": {"parameters": {SETTINGS: text, "run": text}},
        "outputDefinitions": {"parameters": {PARAMETER: text}}}
    command, args = container_line()
    spec["deploymentSpec"]["executors"][f"{TASK}_executor"] = {"container": {"image": image, "command": command,
                                                                             "args": args}}
    # never cached, as the data may have changed since the last run: no cachingOptions; and a parameter of
    # its own in every run, the run's id (a placeholder Kubeflow's driver fills in), for a submission whose
    # enable_caching=True turns every task's cache on
    run = {"runtimeValue": {"constant": "{{$.pipeline_job_uuid}}"}}
    tasks[TASK] = {"taskInfo": {"name": TASK}, "componentRef": {"name": TASK},
                   "inputs": {"parameters": {SETTINGS: tokenize["inputs"]["parameters"][SETTINGS], "run": run}}}
    tokenize_component["inputDefinitions"]["parameters"][PARAMETER] = text
    tokenize["inputs"]["parameters"][PARAMETER] = {
        "taskOutputParameter": {"producerTask": TASK, "outputParameterKey": PARAMETER}}
    tokenize["dependentTasks"] = sorted({*tokenize.get("dependentTasks", []), TASK})
    return pipeline_job


def with_retries(pipeline_job: dict, retries: int) -> dict:
    """The compiled Kubeflow job with a retry policy on its Trainer task (TFX's compiler writes
    none): a Trainer pod preempted, killed or failed runs again, `retries` times, and continues its
    training from the checkpoints of the attempt before (components/trainer/trainings.py)."""
    trainer = pipeline_job["pipelineSpec"]["root"]["dag"]["tasks"]["Trainer"]
    if retries:
        trainer["retryPolicy"] = {"maxRetryCount": retries, "backoffDuration": "60s", "backoffFactor": 2.0,
                                  "backoffMaxDuration": "3600s"}
    return pipeline_job


def write_pipeline_spec(pipeline_job: dict, path: str) -> None:
    """Write the PipelineJob that TFX's KubeflowV2DagRunner compiles as the file the kfp client,
    the KFP UI and Vertex AI take: YAML (the PipelineSpec, its pipeline root as
    defaultPipelineRoot, written by kfp's compiler's own writer), or, for a .json path, the
    PipelineJob JSON as TFX writes it (which Vertex AI takes and the kfp client refuses)."""
    if path.endswith(".json"):
        files.write_json(path, pipeline_job, indent=2, sort_keys=True)
        return
    from google.protobuf import json_format
    from kfp.compiler import pipeline_spec_builder
    from kfp.pipeline_spec import pipeline_spec_pb2

    spec = dict(pipeline_job["pipelineSpec"])
    runtime = pipeline_job.get("runtimeConfig", {})
    if runtime.get("gcsOutputDirectory"):
        spec["defaultPipelineRoot"] = runtime["gcsOutputDirectory"]
    if runtime.get("parameters") or runtime.get("parameterValues"):
        raise ValueError("the pipeline has runtime parameters, which a YAML spec holds only as the root's "
                         "defaults: write a .json spec")
    with files.atomic_path(path, keep_extension=True) as tmp:  # whole or not at all
        pipeline_spec_builder.write_pipeline_spec_to_file(
            json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec()), None, pipeline_spec_pb2.PlatformSpec(), tmp)
