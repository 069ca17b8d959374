"""The TFX pipeline: text -> token shards -> (character vocabulary) -> GPT -> evaluation -> push."""

from __future__ import annotations

import json
import os
from typing import List

from tfx import v1 as tfx

from components import char_transform
from components.baseline_resolver import PreviousBlessedModelStrategy
from components.lm_evaluator.component import LMEvaluator
from components.pusher.component import Pusher
from components.tokenize_text.component import TokenizeText
from components.trainer.trainings import trainings_dir
from core import shards
from pipeline.configs import IMAGE_WORKDIR, PipelineConfig

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _vertex_training_args(config: PipelineConfig) -> dict:
    """The Vertex AI custom job that trains: a chief and train_workers - 1 workers running the same
    run_fn in the pipeline's image; Vertex AI sets each one's TF_CONFIG, from which the training
    engine's strategy 'auto' picks MultiWorkerMirroredStrategy (or names --strategy=tpu)."""
    machine = {"machine_type": config.train_machine_type}
    if config.train_accelerator:
        machine.update(accelerator_type=config.train_accelerator,
                       accelerator_count=config.train_accelerator_count)
    pool = {"machine_spec": machine, "container_spec": {"image_uri": config.image}}
    pools = [{**pool, "replica_count": 1}, {**pool, "replica_count": config.train_workers - 1}]
    return {"project": config.vertex_project, "job_spec": {"worker_pool_specs": pools}}


def _trainer(config: PipelineConfig, kubeflow: bool, **inputs):
    """The standard Trainer running model/train.py in its own pod or process (on Kubeflow with the
    accelerators asked for), or, for several workers, TFX's Vertex AI Trainer."""
    custom_config = {"train_preset": config.train_preset, "train_config": config.train_overrides,
                     "resume": config.resume, "serving_weights": config.serving_weights,
                     "serving_loop": config.serving_loop, "trainings_dir": trainings_dir(config.pipeline_root),
                     "continue_interrupted": config.continue_interrupted}
    common = dict(run_fn="components.trainer.run_fn.run_fn", train_args=tfx.proto.TrainArgs(splits=[shards.TRAIN]),
                  eval_args=tfx.proto.EvalArgs(splits=[shards.VAL]), **inputs)
    if config.trains_on_vertex:
        vertex = tfx.extensions.google_cloud_ai_platform
        custom_config.update({vertex.ENABLE_VERTEX_KEY: True, vertex.VERTEX_REGION_KEY: config.vertex_region,
                              vertex.TRAINING_ARGS_KEY: _vertex_training_args(config)})
        return vertex.Trainer(custom_config=custom_config, **common)
    trainer = tfx.components.Trainer(custom_config=custom_config, **common)
    if kubeflow and config.train_accelerator:  # the Trainer's pod gets the accelerators
        from kfp.pipeline_spec import pipeline_spec_pb2

        resources = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec()
        resources.accelerator.type = config.train_accelerator
        resources.accelerator.count = config.train_accelerator_count
        trainer = trainer.with_platform_config(resources)
    return trainer


def create_components(config: PipelineConfig, kubeflow: bool = False) -> List:
    """The pipeline's components in order. kubeflow: for a Kubeflow Pipelines v2 spec, which
    compiles only TFX's built-in resolver strategies."""
    components = []

    # Tokenize the corpus (Beam) into train/val token shards, or character records to map below.
    tokenize = TokenizeText(config.tokenize_settings())
    components.append(tokenize)
    examples, transform_graph = tokenize.outputs["examples"], None

    if config.tokenizer == "char":
        # The schema of the character records, which Transform needs.
        schema_file = char_transform.RAW_SCHEMA_PATH
        if kubeflow:  # the copy in the image
            schema_file = os.path.join(IMAGE_WORKDIR, os.path.relpath(schema_file, REPO_ROOT))
        schema = tfx.components.ImportSchemaGen(schema_file=schema_file)
        # Build the character vocabulary in one tf.Transform pass and map the text to ids.
        transform = tfx.components.Transform(
            examples=examples, schema=schema.outputs["schema"],
            preprocessing_fn="components.char_transform.preprocessing_fn", disable_statistics=True,
            splits_config=tfx.proto.SplitsConfig(analyze=list(shards.SPLITS), transform=list(shards.SPLITS)))
        components += [schema, transform]
        examples, transform_graph = transform.outputs["transformed_examples"], transform.outputs["transform_graph"]

    base_model = None
    if config.resume:
        # The latest model, whose training run a resumed training continues.
        latest_model = tfx.dsl.Resolver(
            strategy_class=tfx.dsl.experimental.LatestArtifactStrategy,
            model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model)).with_id("latest_model_resolver")
        components.append(latest_model)
        base_model = latest_model.outputs["model"]

    # Train the GPT with the training engine (model/train.py) inside the Trainer.
    trainer = _trainer(config, kubeflow, examples=examples, transform_graph=transform_graph, base_model=base_model)
    components.append(trainer)

    # The last blessed model (other than this candidate): the baseline a new model must not fall behind.
    blessed = dict(model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
                   model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing))
    if kubeflow:
        last_blessed = tfx.dsl.Resolver(strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy, **blessed)
    else:
        last_blessed = tfx.dsl.Resolver(strategy_class=PreviousBlessedModelStrategy,
                                        candidate=trainer.outputs["model"], **blessed)
    last_blessed = last_blessed.with_id("latest_blessed_model_resolver")
    components.append(last_blessed)

    # Train and validation loss of the candidate and the baselines; bless or not.
    evaluator = LMEvaluator(
        examples=examples, model=trainer.outputs["model"], baseline_model=last_blessed.outputs["model"],
        model_run=trainer.outputs["model_run"], baselines=json.dumps(config.baselines),
        eval_batches=config.eval_batches, batch_size=config.eval_batch_size,
        val_loss_threshold=config.val_loss_threshold, max_regression=config.max_regression,
        data_tokenizer=config.tokenizer)
    components.append(evaluator)

    # Push a blessed model to a versioned directory under the serving directory, atomically.
    pusher = Pusher(
        model=trainer.outputs["model"], model_blessing=evaluator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory=config.serving_dir)))
    components.append(pusher)
    return components


def with_retries(pipeline_job: dict, config: PipelineConfig) -> dict:
    """The compiled Kubeflow job with a retry policy on its Trainer task (TFX's compiler writes
    none): a Trainer pod preempted, killed or failed runs again, config.train_retries times, and
    continues its training from the checkpoints of the attempt before (components/trainer/trainings.py)."""
    trainer = pipeline_job["pipelineSpec"]["root"]["dag"]["tasks"]["Trainer"]
    if config.train_retries:
        trainer["retryPolicy"] = {"maxRetryCount": config.train_retries, "backoffDuration": "60s",
                                  "backoffFactor": 2.0, "backoffMaxDuration": "3600s"}
    return pipeline_job


def create_pipeline(config: PipelineConfig, metadata_connection_config=None,
                    kubeflow: bool = False) -> tfx.dsl.Pipeline:
    """The pipeline; locally with the SQLite ML Metadata store of config.metadata_path (or the given
    connection), or for Kubeflow Pipelines, whose deployment brings its own store."""
    if metadata_connection_config is None and not kubeflow:
        metadata_connection_config = tfx.orchestration.metadata.sqlite_metadata_connection_config(
            config.metadata_path)
    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name, pipeline_root=config.pipeline_root,
        components=create_components(config, kubeflow=kubeflow), enable_cache=config.enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=config.beam_pipeline_args)
