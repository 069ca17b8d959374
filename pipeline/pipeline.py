"""The TFX pipeline: text -> token shards -> (character vocabulary) -> GPT -> evaluation -> push."""

from __future__ import annotations

import json
from typing import List

from tfx import v1 as tfx

from components import char_transform
from components.lm_evaluator.component import LMEvaluator
from components.tokenize_text.component import TokenizeText
from pipeline.configs import PipelineConfig


def create_components(config: PipelineConfig) -> List:
    components = []

    # Tokenize the corpus (Beam) into train/val token shards, or character records to map below.
    tokenize = TokenizeText(
        input_pattern=config.input_pattern, dataset_name=config.dataset_name,
        dataset_config=config.dataset_config, dataset_split=config.dataset_split,
        streaming=config.streaming, tokenizer=config.tokenizer, bpe_dir=config.bpe_dir)
    components.append(tokenize)
    examples, transform_graph = tokenize.outputs["examples"], None

    if config.tokenizer == "char":
        # The schema of the character records, which Transform needs.
        schema = tfx.components.ImportSchemaGen(schema_file=char_transform.RAW_SCHEMA_PATH)
        # Build the character vocabulary in one tf.Transform pass and map the text to ids.
        transform = tfx.components.Transform(
            examples=examples, schema=schema.outputs["schema"],
            preprocessing_fn="components.char_transform.preprocessing_fn", disable_statistics=True,
            splits_config=tfx.proto.SplitsConfig(analyze=["train", "val"], transform=["train", "val"]))
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

    # Train the GPT with the training engine (model/train.py) inside the standard Trainer.
    trainer = tfx.components.Trainer(
        run_fn="components.trainer.run_fn.run_fn", examples=examples, transform_graph=transform_graph,
        base_model=base_model, train_args=tfx.proto.TrainArgs(splits=["train"]),
        eval_args=tfx.proto.EvalArgs(splits=["val"]),
        custom_config={"train_preset": config.train_preset, "train_config": config.train_overrides,
                       "resume": config.resume})
    components.append(trainer)

    # The last blessed model: the baseline a new model must not fall behind.
    last_blessed = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id("latest_blessed_model_resolver")
    components.append(last_blessed)

    # Train and validation loss of the candidate and the baselines; bless or not.
    evaluator = LMEvaluator(
        examples=examples, model=trainer.outputs["model"], baseline_model=last_blessed.outputs["model"],
        model_run=trainer.outputs["model_run"], baselines=json.dumps(config.baselines),
        eval_batches=config.eval_batches, batch_size=config.eval_batch_size,
        val_loss_threshold=config.val_loss_threshold, max_regression=config.max_regression,
        data_tokenizer=config.tokenizer)
    components.append(evaluator)

    # Push a blessed model to a versioned directory under the serving directory.
    pusher = tfx.components.Pusher(
        model=trainer.outputs["model"], model_blessing=evaluator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory=config.serving_dir)))
    components.append(pusher)
    return components


def create_pipeline(config: PipelineConfig, metadata_connection_config=None) -> tfx.dsl.Pipeline:
    if metadata_connection_config is None:
        metadata_connection_config = tfx.orchestration.metadata.sqlite_metadata_connection_config(
            config.metadata_path)
    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name, pipeline_root=config.pipeline_root,
        components=create_components(config), enable_cache=config.enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=config.beam_pipeline_args)
