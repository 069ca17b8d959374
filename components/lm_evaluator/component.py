"""LMEvaluator: a TFX component that evaluates a trained GPT's language-modelling loss and blesses it.

Inputs:
  examples        Examples, splits train and val in the model.shards format (TokenizeText, or the
                  char Transform's output)
  model           Model, the candidate: <uri>/Format-HF is loaded with GPT.from_pretrained
  baseline_model  Model (optional): the last blessed model, from a resolver with
                  LatestBlessedModelStrategy; absent or empty on the first run
  model_run       ModelRun (optional): its history.json feeds the loss-curve plot; published, so the
                  training directory it was copied from is removed (components/trainer/trainings.py)

Parameters:
  baselines           GPT-2 names ("gpt2", ...: downloaded from the hub) or local Hugging Face GPT-2
                      checkpoint directories, evaluated for reference (they do not gate the blessing)
  eval_batches        batches per split, at random offsets drawn from seed (default 200, nanoGPT's
                      eval_iters); 0: the whole split as consecutive non-overlapping windows
  batch_size          windows per batch (default 8)
  block_size          window length; 0 (default): the candidate's block_size. Every model is cropped
                      to it; a model with a shorter context is an error
  seed                the random windows' seed; every model sees the same windows
  val_loss_threshold  bless only if the candidate's val loss is below it (None: no threshold)
  max_regression      bless only if the candidate's val loss <= last blessed val loss + max_regression
  data_tokenizer      "gpt2" or "char": how the examples were tokenized, when their `tokenizer`
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

import json
import math
from typing import Optional, Sequence, Union

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from components.lm_evaluator import executor


class LMEvaluatorSpec(types.ComponentSpec):
    PARAMETERS = {
        "baselines": ExecutionParameter(type=str),
        "eval_batches": ExecutionParameter(type=int),
        "batch_size": ExecutionParameter(type=int),
        "block_size": ExecutionParameter(type=int),
        "seed": ExecutionParameter(type=int),
        "val_loss_threshold": ExecutionParameter(type=float, optional=True),
        "max_regression": ExecutionParameter(type=float),
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
                 baselines: Union[Sequence[str], str] = (), eval_batches: int = 200, batch_size: int = 8,
                 block_size: int = 0, seed: int = 1337, val_loss_threshold: Optional[float] = None,
                 max_regression: float = 0.0, data_tokenizer: Optional[str] = None):
        if isinstance(baselines, str):  # a JSON list, as the parameter is stored
            baselines = json.loads(baselines)
        if val_loss_threshold is not None and math.isinf(val_loss_threshold):
            val_loss_threshold = None  # no threshold; ML Metadata stores no infinities in JSON
        properties = dict(baselines=json.dumps(list(baselines)), eval_batches=eval_batches,
                          batch_size=batch_size, block_size=block_size, seed=seed,
                          val_loss_threshold=val_loss_threshold, max_regression=max_regression,
                          data_tokenizer=data_tokenizer)
        # Checked here too so that a wrong pipeline fails when it is built, not when it runs.
        executor.Settings.parse(properties)
        spec = LMEvaluatorSpec(
            examples=examples, model=model, baseline_model=baseline_model, model_run=model_run,
            evaluation=types.Channel(type=standard_artifacts.ModelEvaluation),
            blessing=types.Channel(type=standard_artifacts.ModelBlessing), **properties)
        super().__init__(spec=spec)
