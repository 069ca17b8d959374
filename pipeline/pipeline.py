"""The TFX pipeline: text -> token shards -> (character vocabulary) -> GPT -> evaluation -> infra
check -> push.

The pipeline knows no orchestrator: what differs between where it runs is a `Platform`, which
each orchestrator module gives (orchestration/local.py, orchestration/kubeflow/compile.py).
"""

from __future__ import annotations

import dataclasses
import os
from typing import List, Optional

# TFX's classes from their own modules, not `from tfx import v1`: tfx.v1 also imports Vertex AI's
# client library (6 s of every command's start-up); the Vertex AI Trainer is imported where it is used.
from tfx.components import Trainer, Transform
from tfx.components.schema_gen.import_schema_gen.component import ImportSchemaGen
from tfx.dsl.components.base import executor_spec
from tfx.dsl.components.common.resolver import Resolver
from tfx.dsl.input_resolution.strategies.latest_artifact_strategy import LatestArtifactStrategy
from tfx.dsl.input_resolution.strategies.latest_blessed_model_strategy import LatestBlessedModelStrategy
from tfx.orchestration.pipeline import Pipeline
from tfx.proto import pusher_pb2, trainer_pb2, transform_pb2
from tfx.types import Channel, standard_artifacts

from components import char_transform, transform_executor
from components.baseline_resolver import LastBlessedDataStrategy, PreviousBlessedModelStrategy
from components.data_validation.component import AnomalyGate, DataValidator
from components.data_validation.schema_gen import SchemaGen
from components.infra_validator.component import InfraValidator
from components.lm_evaluator.component import LMEvaluator
from components.pusher.component import Pusher
from components.tokenize_text import sources
from components.tokenize_text.component import TokenizeText
from components.trainer import settings as trainer_settings
from components.trainer.trainings import trainings_dir
from core import shards
from pipeline.configs import RunConfig

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclasses.dataclass(frozen=True)
class Platform:
    """What the pipeline needs to know of where it runs.

    code_root: where this repository lies for the components (a checkout, or the image's workdir).
    builtin_resolvers: only TFX's built-in resolver strategies can be used (a compiled spec holds
      no custom Python strategy), so the last blessed model is the latest one, which can be the
      candidate itself on a rerun (the LMEvaluator then blesses nothing anew).
    trainer_resources: the Trainer's pod gets the accelerators asked for (a Kubernetes resource spec).
    metadata_connection_config: the ML Metadata store; None: the orchestrator brings its own.
    runs_here: the pipeline runs now, on this machine, where TokenizeText's corpus is seen as it is
      now (its input_fingerprint); False: a compiled spec, run later and elsewhere.
    """
    code_root: str = REPO_ROOT
    builtin_resolvers: bool = False
    trainer_resources: bool = False
    metadata_connection_config: Optional[object] = None
    runs_here: bool = True


def _vertex_training_args(config: RunConfig) -> dict:
    """The Vertex AI custom job that trains: a chief and train_workers - 1 workers running the same
    run_fn in the pipeline's image; Vertex AI sets each one's TF_CONFIG, from which the training
    engine's strategy 'auto' picks MultiWorkerMirroredStrategy (or names --strategy=tpu)."""
    deploy = config.deploy
    machine = {"machine_type": deploy.train_machine_type}
    if deploy.train_accelerator:
        machine.update(accelerator_type=deploy.train_accelerator, accelerator_count=deploy.train_accelerator_count)
    pool = {"machine_spec": machine, "container_spec": {"image_uri": deploy.image}}
    pools = [{**pool, "replica_count": 1}, {**pool, "replica_count": deploy.train_workers - 1}]
    return {"project": deploy.vertex_project, "job_spec": {"worker_pool_specs": pools}}


def _trainer(config: RunConfig, platform: Platform, **inputs):
    """The standard Trainer running the training engine in its own pod or process (with the
    accelerators asked for), or, for several workers, TFX's Vertex AI Trainer."""
    custom_config = trainer_settings.custom_config(config.train, config.deploy, resume=config.pipeline.resume,
                                                   trainings_dir=trainings_dir(config.pipeline_root))
    common = dict(run_fn="components.trainer.run_fn.run_fn", train_args=trainer_pb2.TrainArgs(splits=[shards.TRAIN]),
                  eval_args=trainer_pb2.EvalArgs(splits=[shards.VAL]), **inputs)
    deploy = config.deploy
    if deploy.trains_on_vertex:
        from tfx.v1.extensions import google_cloud_ai_platform as vertex
        custom_config.update({vertex.ENABLE_VERTEX_KEY: True, vertex.VERTEX_REGION_KEY: deploy.vertex_region,
                              vertex.TRAINING_ARGS_KEY: _vertex_training_args(config)})
        return vertex.Trainer(custom_config=custom_config, **common)
    trainer = Trainer(custom_config=custom_config, **common)
    if platform.trainer_resources and deploy.train_accelerator:  # the Trainer's pod gets the accelerators
        from kfp.pipeline_spec import pipeline_spec_pb2

        resources = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec()
        resources.accelerator.type = deploy.train_accelerator
        resources.accelerator.count = deploy.train_accelerator_count
        trainer = trainer.with_platform_config(resources)
    return trainer


def _blessed_channels() -> dict:
    return dict(model=Channel(type=standard_artifacts.Model),
                model_blessing=Channel(type=standard_artifacts.ModelBlessing))


def _data_validation(config: RunConfig, statistics, last_blessed) -> List:
    """The schema of the data (inferred by SchemaGen, or a curated one), the DataValidator that checks
    its statistics against the schema and against the statistics of the last blessed model's data,
    and the AnomalyGate that stops the run on anomalies (docs/data_validation.md). last_blessed: the
    built-in LatestBlessedModelStrategy resolver, else None (one of its own here)."""
    if config.validation.schema_file:  # curated: pinned as it is
        schema = ImportSchemaGen(schema_file=config.validation.schema_file).with_id("ImportDataSchema")
    else:
        schema = SchemaGen(statistics=statistics)
    resolver = [] if last_blessed else [Resolver(
        strategy_class=LastBlessedDataStrategy, statistics=statistics, **_blessed_channels()
    ).with_id("latest_blessed_data_resolver")]
    baseline = (last_blessed or resolver[0]).outputs["model_blessing"]
    validator = DataValidator(statistics=statistics, schema=schema.outputs["schema"], baseline_blessing=baseline)
    gate = AnomalyGate(anomalies=validator.outputs["anomalies"], accept_anomalies=config.validation.accept_anomalies)
    return [schema, *resolver, validator, gate]


def _char_transform(platform: Platform, examples) -> List:
    """[the schema of TokenizeText's character records, the Transform that maps them to ids]."""
    schema_file = os.path.join(platform.code_root, os.path.relpath(char_transform.RAW_SCHEMA_PATH, REPO_ROOT))
    schema = ImportSchemaGen(schema_file=schema_file)
    transform = Transform(
        examples=examples, schema=schema.outputs["schema"],
        preprocessing_fn="components.char_transform.preprocessing_fn", disable_statistics=True,
        # no analyzer cache: it serves an analysis over spans, of which a run reads one (~1 s a run)
        disable_analyzer_cache=True,
        # in its parameters, so that the cache does not take a Transform of tft's frequency order (an
        # output made before the vocabulary was ordered by fingerprint: char_transform.py)
        custom_config={"vocabulary_order": char_transform.VOCABULARY_ORDER},
        splits_config=transform_pb2.SplitsConfig(analyze=list(shards.SPLITS), transform=list(shards.SPLITS)))
    # TFX's executor, without packing TFX for the DirectRunner's workers (~1.5 s and 42 MB a run)
    transform.executor_spec = executor_spec.BeamExecutorSpec(transform_executor.Executor)
    # Beam's type checks at construction check TFX's and tf.Transform's own pipeline code, the
    # same at every run; they took ~0.7 s of the default run's Transform (TokenizeText keeps them)
    transform.with_beam_pipeline_args(["--no_pipeline_type_check"])
    return [schema, transform]


def create_components(config: RunConfig, platform: Platform = Platform()) -> List:
    """The pipeline's components in order."""
    components = []

    # Tokenize the corpus (Beam) into train/val token shards, or character records to map below, and
    # describe its documents (TFDV statistics). With the fingerprint of its files as they are now, a
    # corpus edited in place is tokenized again: TFX's cache compares parameters and inputs only.
    fingerprint = sources.input_fingerprint(dataclasses.asdict(config.data)) if platform.runs_here else None
    tokenize = TokenizeText(config.data, input_fingerprint=fingerprint)
    components.append(tokenize)
    examples, transform_graph, source_examples = tokenize.outputs["examples"], None, None
    statistics = tokenize.outputs["statistics"] if config.data.statistics else None

    # The last blessed model: with built-in resolvers only, TFX's own strategy, whose blessing also
    # names the statistics of its data; else one for the data (just below) and one for the model
    # (after training), which is never the candidate itself.
    last_blessed = None
    if platform.builtin_resolvers:
        last_blessed = Resolver(strategy_class=LatestBlessedModelStrategy,
                                        **_blessed_channels()).with_id("latest_blessed_model_resolver")
    # Check the data before anything is trained on it; anomalies stop the run at the gate.
    gate = None
    if statistics is not None and not config.validation.skip_validation:
        components += _data_validation(config, statistics, last_blessed)
        gate = components[-1]

    if config.data.tokenizer == "char":
        # Build the character vocabulary in one tf.Transform pass and map the text to ids.
        schema, transform = _char_transform(platform, examples)
        if gate is not None:
            transform.add_upstream_node(gate)
        components += [schema, transform]
        source_examples = examples  # the tokenization's counts, which Transform's output does not carry
        examples, transform_graph = transform.outputs["transformed_examples"], transform.outputs["transform_graph"]

    base_model = None
    if config.pipeline.resume:
        # The latest model, whose training run a resumed training continues.
        latest_model = Resolver(
            strategy_class=LatestArtifactStrategy,
            model=Channel(type=standard_artifacts.Model)).with_id("latest_model_resolver")
        components.append(latest_model)
        base_model = latest_model.outputs["model"]

    # Train the GPT with the training engine (training/train.py) inside the Trainer.
    trainer = _trainer(config, platform, examples=examples, transform_graph=transform_graph, base_model=base_model)
    if gate is not None:
        trainer.add_upstream_node(gate)
    components.append(trainer)

    # The last blessed model (other than this candidate): the baseline a new model must not fall behind.
    if last_blessed is None:
        last_blessed = Resolver(strategy_class=PreviousBlessedModelStrategy,
                                        candidate=trainer.outputs["model"],
                                        **_blessed_channels()).with_id("latest_blessed_model_resolver")
    components.append(last_blessed)

    # Train and val loss and bits per byte of the candidate, the last blessed model, the unigram
    # baseline and GPT-2 baselines; bless or not (the blessing names the statistics of the data,
    # for the next run's validation).
    evaluator = LMEvaluator(
        examples=examples, model=trainer.outputs["model"], baseline_model=last_blessed.outputs["model"],
        model_run=trainer.outputs["model_run"], transform_graph=transform_graph, source_examples=source_examples,
        statistics=statistics, config=config.eval, bpe_dir=config.data.bpe_dir)
    components.append(evaluator)

    # The blessed model's SavedModel loaded and called in a fresh process without this code, as a
    # server would; a model that fails to load or answer is not pushed.
    infra_validator = InfraValidator(model=trainer.outputs["model"], model_blessing=evaluator.outputs["blessing"],
                                     config=config.deploy)
    components.append(infra_validator)

    # Push a blessed model to a versioned directory under the serving directory, atomically, with
    # its model card.
    pusher = Pusher(
        model=trainer.outputs["model"], model_blessing=evaluator.outputs["blessing"],
        infra_blessing=infra_validator.outputs["blessing"],
        push_destination=pusher_pb2.PushDestination(
            filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=config.serving_dir)))
    components.append(pusher)
    return components


def create_pipeline(config: RunConfig, platform: Platform = Platform()) -> Pipeline:
    """The pipeline, for the platform (default: here, from this checkout)."""
    return Pipeline(
        pipeline_name=config.pipeline_name, pipeline_root=config.pipeline_root,
        components=create_components(config, platform), enable_cache=config.pipeline.enable_cache,
        metadata_connection_config=platform.metadata_connection_config,
        beam_pipeline_args=config.pipeline.beam_pipeline_args)
