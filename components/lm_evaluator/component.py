"""LMEvaluator: a TFX component that evaluates a trained GPT's language modelling and blesses it.

Inputs:
  examples         Examples, splits train and val in the core.shards format (TokenizeText, or the
                   char Transform's output)
  model            Model, the candidate: <uri>/Format-HF is loaded with GPT.from_pretrained
  baseline_model   Model (optional): the last blessed model, from a resolver with
                   LatestBlessedModelStrategy; absent or empty on the first run
  model_run        ModelRun (optional): its history.json feeds the loss-curve plot, its
                   train_config.json the training settings that metrics.json records; published, so
                   the training directory it was copied from is removed (components/trainer/trainings.py)
  transform_graph  TransformGraph (optional): for character examples (Transform's), the vocabulary
                   that maps their ids to characters; without it the examples' `tokenizer`
                   property must say "gpt2" (components/lm_evaluator/tokens.py)
  source_examples  Examples (optional): TokenizeText's, when `examples` are Transform's: the data's
                   source, documents and token counts, which metrics.json and the model card show
  statistics       ExampleStatistics (optional): those of the data the candidate was trained on
                   (TokenizeText's), whose uri the blessing records for the next run's data validation

Parameters:
  config          EvalConfig (components/lm_evaluator/settings.py: baselines, eval_batches,
                  eval_train_batches, eval_batch_size, eval_block_size, eval_seed, val_loss_threshold,
                  max_regression, beat_unigram, gate_baseline, gate_margin), stored as one JSON
                  execution property. Baselines are GPT-2 names (downloaded from the hub) or local
                  Hugging Face GPT-2 checkpoint directories; eval_batches (val) and eval_train_batches
                  (train) 0 evaluate the whole split as consecutive windows, else that many batches at
                  random windows drawn from eval_seed (every model sees the same windows); every model
                  is cropped to eval_block_size (0:
                  the candidate's block_size; a model with a shorter context is an error).
  bpe_dir         GPT-2's BPE files for offline use (as TokenizeText's): to count the bytes of GPT-2
                  tokens, and to encode the val text for a GPT-2 baseline beside characters

Metrics (components/lm_evaluator/metrics/): every model's train and val loss (nats per token) and
bits per byte (bpb: bits per UTF-8 byte of the text its target tokens decode to), for the
candidate, the last blessed model, the unigram baseline (each token predicted by its train-split
frequency) and each baseline. A baseline that reads GPT-2 BPE beside examples of other tokens
(characters) is evaluated on the same val text in its own tokens (val only): compare its bpb, not
its loss. A baseline of another vocabulary that does not cover the data's ids is skipped with a
note and a `baseline_<name>_skipped` property. The last blessed model must cover the data's ids
(else it is left uncompared, with a note). A baseline that cannot be loaded fails the run.

Blessing: the candidate's val loss is finite and under val_loss_threshold (when set), at most
max_regression above the last blessed model's, its val bpb below the unigram baseline's
(beat_unigram) and within gate_margin of gate_baseline's (when set).

Outputs:
  evaluation  ModelEvaluation: metrics.json, report.md, loss_curves.png; custom properties blessed,
              blessing_reason, <model>_<split>_<metric> (model: candidate, last_blessed, unigram,
              baseline_<name>; e.g. candidate_val_bpb), eval_block_size, eval_batches,
              eval_tokens_train/val, eval_windows_train/val
  blessing    ModelBlessing: a BLESSED or NOT_BLESSED file and the custom properties of TFX's Evaluator
              (blessed 1/0, current_model, current_model_id, baseline_model, baseline_model_id),
              which the standard Pusher and LatestBlessedModelStrategy read; plus blessing_reason,
              blessing_message (the same text), candidate_val_loss, evaluation (the evaluation's
              uri: the Pusher's model card reads its metrics.json) and data_statistics (the uri of
              the statistics input, when given)
"""

from __future__ import annotations

from typing import Optional

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from components.lm_evaluator import executor
from components.lm_evaluator.settings import EvalConfig


class LMEvaluatorSpec(types.ComponentSpec):
    PARAMETERS = {
        executor.CONFIG_KEY: ExecutionParameter(type=str),  # EvalConfig as JSON
        executor.BPE_DIR_KEY: ExecutionParameter(type=str, optional=True),
    }
    INPUTS = {
        executor.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
        executor.MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
        executor.BASELINE_MODEL_KEY: ChannelParameter(type=standard_artifacts.Model, optional=True),
        executor.MODEL_RUN_KEY: ChannelParameter(type=standard_artifacts.ModelRun, optional=True),
        executor.TRANSFORM_GRAPH_KEY: ChannelParameter(type=standard_artifacts.TransformGraph, optional=True),
        executor.SOURCE_EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples, optional=True),
        executor.STATISTICS_KEY: ChannelParameter(type=standard_artifacts.ExampleStatistics, optional=True),
    }
    OUTPUTS = {
        executor.EVALUATION_KEY: ChannelParameter(type=standard_artifacts.ModelEvaluation),
        executor.BLESSING_KEY: ChannelParameter(type=standard_artifacts.ModelBlessing),
    }


class LMEvaluator(base_component.BaseComponent):
    """Candidate vs last blessed model vs the unigram and GPT-2 baselines on the same text; a
    ModelBlessing. See the module docstring for the inputs, parameters, outputs and policies.
    """

    SPEC_CLASS = LMEvaluatorSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, *, examples: types.BaseChannel, model: types.BaseChannel,
                 baseline_model: Optional[types.BaseChannel] = None,
                 model_run: Optional[types.BaseChannel] = None,
                 transform_graph: Optional[types.BaseChannel] = None,
                 source_examples: Optional[types.BaseChannel] = None,
                 statistics: Optional[types.BaseChannel] = None,
                 config: Optional[EvalConfig] = None, bpe_dir: Optional[str] = None):
        # EvalConfig checks itself, so that a wrong pipeline fails when it is built, not when it runs.
        spec = LMEvaluatorSpec(
            examples=examples, model=model, baseline_model=baseline_model, model_run=model_run,
            transform_graph=transform_graph, source_examples=source_examples, statistics=statistics,
            evaluation=types.Channel(type=standard_artifacts.ModelEvaluation),
            blessing=types.Channel(type=standard_artifacts.ModelBlessing),
            config=(config or EvalConfig()).to_json(), bpe_dir=bpe_dir)
        super().__init__(spec=spec)
