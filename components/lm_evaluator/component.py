"""LMEvaluator: a TFX component that evaluates a trained GPT's language-modelling loss and blesses it.

Inputs:
  examples        Examples, splits train and val in the core.shards format (TokenizeText, or the
                  char Transform's output)
  model           Model, the candidate: <uri>/Format-HF is loaded with GPT.from_pretrained
  baseline_model  Model (optional): the last blessed model, from a resolver with
                  LatestBlessedModelStrategy; absent or empty on the first run
  model_run       ModelRun (optional): its history.json feeds the loss-curve plot

Parameters:
  config          EvalConfig (components/lm_evaluator/settings.py: baselines, eval_batches,
                  eval_batch_size, eval_block_size, eval_seed, val_loss_threshold, max_regression),
                  stored as one JSON execution property. Baselines are GPT-2 names (downloaded from the
                  hub) or local Hugging Face GPT-2 checkpoint directories, evaluated for reference (they
                  do not gate the blessing); eval_batches 0 evaluates the whole of each split as
                  consecutive windows, else that many batches at random windows drawn from eval_seed
                  (every model sees the same windows); every model is cropped to eval_block_size (0:
                  the candidate's block_size; a model with a shorter context is an error).
  data_tokenizer  "gpt2" or "char": how the examples were tokenized, when their `tokenizer`
                  property does not say (the char Transform's output has none)

Vocabulary: the candidate and the last blessed model must cover the data's token ids (an error for
the candidate; the last blessed model is then left uncompared, with a note). A baseline whose
vocabulary does not cover them, or a GPT-2-BPE-sized baseline on examples tokenized otherwise
(data_tokenizer, or the examples' `tokenizer` property: a char-level dataset), is skipped with a note
in the report and a `baseline_<name>_skipped` property. A baseline that cannot be loaded (a missing
directory) fails the run with an error naming it.

Outputs:
  evaluation  ModelEvaluation: metrics.json, report.md, loss_curves.png; custom properties blessed,
              blessing_reason, candidate_train_loss, candidate_val_loss, last_blessed_train_loss,
              last_blessed_val_loss, baseline_<name>_train_loss, baseline_<name>_val_loss,
              eval_block_size, eval_batches, eval_tokens_train/val, eval_windows_train/val
  blessing    ModelBlessing: a BLESSED or NOT_BLESSED file and the custom properties of TFX's Evaluator
              (blessed 1/0, current_model, current_model_id, baseline_model, baseline_model_id),
              which the standard Pusher and LatestBlessedModelStrategy read; plus blessing_reason,
              blessing_message (the same text) and candidate_val_loss
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
        "data_tokenizer": ExecutionParameter(type=str, optional=True),
    }
    INPUTS = {
        executor.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
        executor.MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
        executor.BASELINE_MODEL_KEY: ChannelParameter(type=standard_artifacts.Model, optional=True),
        executor.MODEL_RUN_KEY: ChannelParameter(type=standard_artifacts.ModelRun, optional=True),
    }
    OUTPUTS = {
        executor.EVALUATION_KEY: ChannelParameter(type=standard_artifacts.ModelEvaluation),
        executor.BLESSING_KEY: ChannelParameter(type=standard_artifacts.ModelBlessing),
    }


class LMEvaluator(base_component.BaseComponent):
    """Candidate vs last blessed model vs GPT-2 baselines on the same windows; a ModelBlessing.

    See the module docstring for the inputs, parameters, outputs and policies.
    """

    SPEC_CLASS = LMEvaluatorSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, *, examples: types.BaseChannel, model: types.BaseChannel,
                 baseline_model: Optional[types.BaseChannel] = None,
                 model_run: Optional[types.BaseChannel] = None,
                 config: Optional[EvalConfig] = None, data_tokenizer: Optional[str] = None):
        # EvalConfig checks itself, so that a wrong pipeline fails when it is built, not when it runs.
        spec = LMEvaluatorSpec(
            examples=examples, model=model, baseline_model=baseline_model, model_run=model_run,
            evaluation=types.Channel(type=standard_artifacts.ModelEvaluation),
            blessing=types.Channel(type=standard_artifacts.ModelBlessing),
            config=(config or EvalConfig()).to_json(), data_tokenizer=data_tokenizer)
        super().__init__(spec=spec)
