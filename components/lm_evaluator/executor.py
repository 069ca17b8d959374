"""LMEvaluator's executor: evaluate, decide, and write the ModelEvaluation and ModelBlessing."""

from __future__ import annotations

import dataclasses
import gc
import math
import os
import sys
import time
from typing import Any, Dict, List, Optional

import numpy as np
import tensorflow as tf
from absl import logging
from tfx import types
from tfx.components.evaluator import constants as evaluator_constants
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import io_utils

from components.artifact_layout import (BLESSING_EVALUATION_KEY, DATA_STATISTICS_PROPERTY, HF_CHECKPOINT_DIR,
                                        METRICS_FILE, PLOT_FILE, REPORT_FILE, model_run_dir, optional_artifact)
from components.lm_evaluator import evaluate as ev
from components.lm_evaluator import report, tokens
from components.lm_evaluator.settings import EvalConfig
from components.trainer import trainings
from core import files, shards
from core.errors import UsageError, writing
from core.shards import TRAIN, VAL
from model.presets import GPT2_VOCAB_SIZE
from model.tokenizer import tokens_difference
from training.config import MODEL_CONFIG_FILE, TOKENIZER_FILE, TRAIN_CONFIG_FILE

EXAMPLES_KEY = "examples"
MODEL_KEY = "model"
BASELINE_MODEL_KEY = "baseline_model"
MODEL_RUN_KEY = "model_run"
TRANSFORM_GRAPH_KEY = "transform_graph"
SOURCE_EXAMPLES_KEY = "source_examples"
STATISTICS_KEY = "statistics"
EVALUATION_KEY = "evaluation"
BLESSING_KEY = "blessing"
CONFIG_KEY = "config"
BPE_DIR_KEY = "bpe_dir"

BLESSING_REASON_KEY = "blessing_reason"


def _remove_outputs(evaluation: types.Artifact, blessing: types.Artifact) -> None:
    """The files of an evaluation and blessing whose writing failed midway."""
    c = evaluator_constants
    for path in ([os.path.join(evaluation.uri, name) for name in (METRICS_FILE, REPORT_FILE, PLOT_FILE)]
                 + [os.path.join(blessing.uri, name) for name in (c.BLESSED_FILE_NAME, c.NOT_BLESSED_FILE_NAME)]):
        if tf.io.gfile.exists(path):
            tf.io.gfile.remove(path)


def _what_is_scored(windows: dict, settings) -> str:
    """What each model is scored on, said before the first: the whole val split of a large corpus
    takes minutes where the training of a small model took seconds, and the line names the setting."""
    def split(name, setting, sampled):
        w = windows[name]
        how = f"{sampled} random batches (--{setting})" if sampled else \
            f"whole, {w.num_tokens:,} tokens (--{setting}=N: N random batches)"
        return f"the {name} split {how}: {w.num_windows:,} windows of {w.batches[0][0].shape[1]} tokens"
    return "scoring each model on " + " and ".join((split(VAL, "eval_batches", settings.eval_batches),
                                                      split(TRAIN, "eval_train_batches", settings.eval_train_batches)))


def _log_line(line: str) -> None:
    logging.info("LMEvaluator: %s", line)


def _log_result(result: ev.ModelResult, started: float) -> None:
    """One line per model evaluated, as it is done."""
    if result.skipped:
        logging.info("LMEvaluator: %s (%s) skipped: %s", result.name, result.source, result.skipped)
        return
    values = ", ".join(f"{key.replace('_', ' ')} {value:.4f}" for key, value in result.values.items())
    logging.info("LMEvaluator: %s (%s): %s (%.1f s)", result.name, result.source, values, time.time() - started)


def set_loss_property(artifact, name: str, value: float) -> None:
    """A loss as a float property, or, when it is not finite, as the string "nan"/"inf": ML
    Metadata's SQLite store cannot hold a non-finite float (its INSERT fails, leaving the
    execution RUNNING)."""
    if math.isfinite(value):
        artifact.set_float_custom_property(name, value)
    else:
        artifact.set_string_custom_property(name, str(value))


def _trained_tokenizer(model) -> Optional[dict]:
    """The tokenizer (model/tokenizer.py's JSON) that trained a Model artifact, from the ModelRun its
    run_dir.txt names; None when that is not known (no pointer, the run's directory gone)."""
    run_dir = model_run_dir(model.uri)
    return files.read_json(os.path.join(run_dir, TOKENIZER_FILE), default=None) if run_dir else None


class Executor(base_executor.BaseExecutor):
    """Evaluates the candidate, the last blessed model, the unigram baseline and the baselines on the
    same text."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]], output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        settings = EvalConfig.from_json(exec_properties[CONFIG_KEY])
        examples = artifact_utils.get_single_instance(input_dict[EXAMPLES_KEY])
        model = artifact_utils.get_single_instance(input_dict[MODEL_KEY])
        last_blessed = optional_artifact(input_dict, BASELINE_MODEL_KEY)
        model_run = optional_artifact(input_dict, MODEL_RUN_KEY)
        transform_graph = optional_artifact(input_dict, TRANSFORM_GRAPH_KEY)
        statistics = optional_artifact(input_dict, STATISTICS_KEY)
        if model_run is not None:
            # The Trainer cannot remove its training directory itself: killed after that and before ML
            # Metadata published its ModelRun, the next run would have nothing to continue. As this
            # execution's input, the ModelRun is published: the copy it was made from may go now.
            trainings.remove_published(model_run.uri, log=_log_line)
        evaluation = artifact_utils.get_single_instance(output_dict[EVALUATION_KEY])
        blessing = artifact_utils.get_single_instance(output_dict[BLESSING_KEY])
        labels = ev.unique_labels(settings.baselines)  # fails on a bad list before any work
        bpe_dir = exec_properties.get(BPE_DIR_KEY) or None
        data = tokens.data_tokenizer(examples, transform_graph.uri if transform_graph else None, bpe_dir)

        candidate = ev.load_for_eval(ev.candidate_checkpoint(model.uri), settings.eval_block_size,
                                     "the candidate model")
        block_size = candidate.config.block_size  # cropped to settings.eval_block_size when one is set
        model_config = dataclasses.asdict(candidate.config)
        if model_run is not None:  # the shape that trained: the Hugging Face copy it was loaded from has
            # GPT-2's biases always (zeros for a model trained without), so it cannot say bias=False
            model_config = files.read_json(os.path.join(model_run.uri, MODEL_CONFIG_FILE), default=None) or model_config
        streams = ev.load_streams(examples.uri)
        shape = dict(block_size=block_size, batch_size=settings.eval_batch_size, eval_batches=settings.eval_batches,
                     seed=settings.eval_seed)
        windows = ev.make_windows(streams, token_bytes=data.token_bytes, train_batches=settings.eval_train_batches,
                                  **shape)
        problem = ev.vocab_problem(candidate.config.vocab_size, windows)
        if problem:
            raise UsageError(f"LMEvaluator: the candidate model ({model.uri}) cannot be evaluated on "
                             f"{examples.uri}: {problem}")
        _log_line(_what_is_scored(windows, settings))
        started = time.time()
        results = [ev.evaluate(candidate, windows, ev.ModelResult("candidate", "candidate", model.uri,
                                                                  tokens=data.kind), _log_line)]
        _log_result(results[0], started)
        del candidate
        notes: List[str] = []

        last_result = None
        if last_blessed is not None:
            started = time.time()
            last_result = self._evaluate_last_blessed(last_blessed, model, results[0], block_size, windows, data)
            _log_result(last_result, started)
            results.append(last_result)
            if last_result.skipped:
                notes.append(f"the last blessed model ({last_blessed.uri}) was not compared: "
                             f"{last_result.skipped}")
        else:
            notes.append("no last blessed model (baseline_model input absent or empty): the candidate is "
                         "judged without one")
        unigram = ev.unigram(streams, windows, data.vocab_size, data.kind)
        _log_result(unigram, time.time())
        results.append(unigram)

        gpt2_windows = _Gpt2Windows(data, streams, shape, bpe_dir)
        for source, label in zip(settings.baselines, labels):
            started = time.time()
            result = self._evaluate_baseline(source, label, block_size, windows, data, gpt2_windows)
            _log_result(result, started)
            if result.skipped:
                notes.append(f"baseline {label} skipped: {result.skipped}")
            results.append(result)
        if gpt2_windows.made:
            notes.append(f"GPT-2 baselines read the val text in their own tokens (GPT-2 BPE: "
                         f"{gpt2_windows.made[VAL].num_tokens} tokens, {gpt2_windows.made[VAL].num_windows} "
                         f"windows of {block_size}): compare their bits per byte, not their loss per token")

        compared = last_result if last_result is not None and not last_result.skipped else None
        candidate_is_last_blessed = last_blessed is not None and last_blessed.uri == model.uri
        blessed, reason = ev.decide(results[0].values, threshold=settings.val_loss_threshold,
                                    last_blessed=compared.values if compared else None,
                                    max_regression=settings.max_regression,
                                    candidate_is_last_blessed=candidate_is_last_blessed,
                                    bars=self._bars(settings, labels, results),
                                    uncompared=last_result.skipped if last_result is not None else None)
        eval_info = self._eval_info(settings, block_size, windows)
        history = report.read_history(model_run.uri if model_run else None)
        facts = self._facts(input_dict, data, model_config, model_run, history)
        # a full disk midway leaves neither a complete-looking evaluation nor a blessing marker
        with writing(f"the evaluation {evaluation.uri} and the blessing {blessing.uri}",
                     cleanup=lambda: _remove_outputs(evaluation, blessing)):
            self._write_evaluation(evaluation, results, blessed, reason, settings, eval_info, notes, history, facts)
            self._write_blessing(blessing, model, last_blessed, blessed, reason, results[0], evaluation, statistics)
        _log_line(reason)

    @staticmethod
    def _bars(settings: EvalConfig, labels: List[str], results: List[ev.ModelResult]) -> List[ev.Bar]:
        """What the candidate's val bits per byte must pass besides the threshold and the last
        blessed model: the unigram baseline (beat_unigram) and the gating baseline (gate_baseline)."""
        bars = []
        if settings.beat_unigram:
            unigram = next(r for r in results if r.role == "unigram")
            bars.append(ev.Bar("the unigram baseline", unigram.values.get(f"{VAL}_bpb"), beat=True))
        if settings.gate_baseline is not None:
            label = labels[settings.baselines.index(settings.gate_baseline)]
            gate = next(r for r in results if r.role == "baseline" and r.name == label)
            bars.append(ev.Bar(f"baseline {label}", gate.values.get(f"{VAL}_bpb"), margin=settings.gate_margin,
                               missing=gate.skipped))
        return bars

    # -- models ----------------------------------------------------------------------------------

    @staticmethod
    def _evaluate_last_blessed(artifact, model, candidate_result, block_size, windows, data) -> ev.ModelResult:
        result = ev.ModelResult("last_blessed", "last blessed", artifact.uri, tokens=data.kind)
        if artifact.uri == model.uri:  # the resolver found the candidate itself already blessed
            return dataclasses.replace(candidate_result, role=result.role, name=result.name)
        # a model of other tokens (another tokenizer, or other characters) reads the data's ids as
        # other text, even where its vocabulary covers them: its loss would compare nothing
        trained_on = _trained_tokenizer(artifact)
        difference = trained_on and tokens_difference(trained_on, data.to_json())
        if difference:
            result.skipped = f"it was trained on other tokens: {difference}"
            return result
        checkpoint = os.path.join(artifact.uri, HF_CHECKPOINT_DIR)
        if not tf.io.gfile.isdir(checkpoint):  # moved or deleted by hand: compared with nothing, said so
            result.skipped = f"its files are gone ({checkpoint}: moved or deleted)"
            return result
        last = ev.load_for_eval(checkpoint, block_size, "the last blessed model")
        result.skipped = ev.vocab_problem(last.config.vocab_size, windows)
        return result if result.skipped else ev.evaluate(last, windows, result, _log_line)

    @staticmethod
    def _evaluate_baseline(source, label, block_size, windows, data, gpt2_windows) -> ev.ModelResult:
        """A baseline on the data's windows when it reads the data's tokens, or, a GPT-2 checkpoint
        beside data of other tokens, on the val text in its own tokens."""
        result = ev.ModelResult("baseline", label, source, tokens=data.kind)
        baseline = ev.load_for_eval(source, block_size, f"baseline {label!r}")
        result.vocab_size = baseline.config.vocab_size
        if data.kind != tokens.GPT2 and baseline.config.vocab_size >= GPT2_VOCAB_SIZE:
            result.tokens = f"{tokens.GPT2} (the val text, re-tokenized)"
            ev.evaluate(baseline, gpt2_windows(), result, _log_line)
        else:
            result.skipped = ev.vocab_problem(baseline.config.vocab_size, windows)
            if not result.skipped:
                ev.evaluate(baseline, windows, result, _log_line)
        del baseline
        gc.collect()
        return result

    @staticmethod
    def _facts(input_dict, data, model_config: dict, model_run, history) -> dict:
        """What the evaluation knew of the data, the candidate and its training, with the ids of the
        artifacts they came from: metrics.json keeps them, the Pusher's model card shows them."""
        facts = {"data": {"tokenizer": data.describe()}, "model": {"config": model_config}, "inputs": {}}
        for key in (EXAMPLES_KEY, SOURCE_EXAMPLES_KEY, TRANSFORM_GRAPH_KEY, MODEL_KEY, MODEL_RUN_KEY,
                    BASELINE_MODEL_KEY):
            artifact = optional_artifact(input_dict, key)
            if artifact is not None:
                facts["inputs"][key] = {"id": artifact.id, "type": artifact.type_name, "uri": artifact.uri}
        for key in (SOURCE_EXAMPLES_KEY, EXAMPLES_KEY):  # the tokenization's own counts, when it made these
            artifact = optional_artifact(input_dict, key)
            if artifact is not None and "properties" not in facts["data"]:
                properties = _properties(artifact)
                if "num_documents" in properties:
                    facts["data"]["properties"] = properties
        if model_run is not None:
            train_config = files.read_json(os.path.join(model_run.uri, TRAIN_CONFIG_FILE), default=None)
            facts["training"] = {"config": train_config, "result": (history or {}).get("result")}
        return facts

    # -- outputs ---------------------------------------------------------------------------------

    @staticmethod
    def _eval_info(settings: EvalConfig, block_size: int, windows) -> dict:
        info = {"mode": ", ".join(f"{split} " + (f"{n} batches of random windows" if n else "whole split")
                                  for split, n in ((VAL, settings.eval_batches), (TRAIN, settings.eval_train_batches))),
                "block_size": block_size, "batch_size": settings.eval_batch_size,
                "eval_batches": settings.eval_batches, "eval_train_batches": settings.eval_train_batches,
                "seed": settings.eval_seed,
                "val_loss_threshold": settings.val_loss_threshold,
                "max_regression": settings.max_regression, "beat_unigram": settings.beat_unigram}
        if settings.gate_baseline is not None:
            info.update(gate_baseline=settings.gate_baseline, gate_margin=settings.gate_margin)
        for split, w in windows.items():
            info[f"tokens_{split}"] = w.num_tokens
            info[f"windows_{split}"] = w.num_windows
        return info

    @staticmethod
    def _write_evaluation(evaluation, results, blessed, reason, settings, eval_info, notes, history, facts):
        tf.io.gfile.makedirs(evaluation.uri)
        # nanoGPT's OpenWebText figures mean something only beside losses of GPT-2 BPE tokens
        references = ev.REFERENCE_VAL_LOSSES if results[0].tokens == tokens.GPT2 else None
        metrics = {"blessed": blessed, "reason": reason, "evaluation": eval_info,
                   "models": [r.to_dict() for r in results], "notes": notes, **facts,
                   "reference_openwebtext_val_losses": references}
        files.write_json(os.path.join(evaluation.uri, METRICS_FILE), metrics, sort_keys=False)
        settings_text = dict(eval_info)
        if settings.val_loss_threshold is None:
            settings_text["val_loss_threshold"] = "none"
        files.write_file(os.path.join(evaluation.uri, REPORT_FILE),
                         report.markdown(results, blessed=blessed, reason=reason, settings=settings_text, notes=notes,
                                         data=facts["data"]["tokenizer"], references=references))
        report.plot_loss_curves(os.path.join(evaluation.uri, PLOT_FILE), history, results)

        evaluation.set_int_custom_property("blessed", int(blessed))
        evaluation.set_string_custom_property(BLESSING_REASON_KEY, reason)
        evaluation.set_int_custom_property("eval_batches", eval_info["eval_batches"])
        for key in ("block_size", "tokens_train", "tokens_val", "windows_train", "windows_val"):
            evaluation.set_int_custom_property(f"eval_{key}", eval_info[key])
        for r in results:
            prefix = r.role if r.role != "baseline" else f"baseline_{ev.property_name(r.name)}"
            if r.skipped:
                evaluation.set_string_custom_property(f"{prefix}_skipped", r.skipped)
                continue
            for key, value in r.values.items():  # <split>_<metric> of every metric
                set_loss_property(evaluation, f"{prefix}_{key}", value)

    @staticmethod
    def _write_blessing(blessing, model, last_blessed, blessed, reason, candidate_result, evaluation, statistics):
        """The properties and marker file of TFX's own Evaluator, which Pusher and
        LatestBlessedModelStrategy read, plus the reason, the evaluation's uri and the statistics of
        the model's data (with which the next run's data is compared)."""
        c = evaluator_constants
        blessing.set_string_custom_property(c.ARTIFACT_PROPERTY_CURRENT_MODEL_URI_KEY, model.uri)
        blessing.set_int_custom_property(c.ARTIFACT_PROPERTY_CURRENT_MODEL_ID_KEY, model.id)
        if last_blessed:
            blessing.set_string_custom_property(c.ARTIFACT_PROPERTY_BASELINE_MODEL_URI_KEY, last_blessed.uri)
            blessing.set_int_custom_property(c.ARTIFACT_PROPERTY_BASELINE_MODEL_ID_KEY, last_blessed.id)
        marker = c.BLESSED_FILE_NAME if blessed else c.NOT_BLESSED_FILE_NAME
        io_utils.write_string_file(os.path.join(blessing.uri, marker), "")
        blessing.set_int_custom_property(c.ARTIFACT_PROPERTY_BLESSED_KEY,
                                         c.BLESSED_VALUE if blessed else c.NOT_BLESSED_VALUE)
        blessing.set_string_custom_property(c.ARTIFACT_PROPERTY_BLESSING_MESSAGE_KEY, reason)
        blessing.set_string_custom_property(BLESSING_REASON_KEY, reason)
        set_loss_property(blessing, "candidate_val_loss", candidate_result.val_loss)
        blessing.set_string_custom_property(BLESSING_EVALUATION_KEY, evaluation.uri)
        if statistics is not None:
            blessing.set_string_custom_property(DATA_STATISTICS_PROPERTY, statistics.uri)


def _properties(artifact) -> dict:
    """An artifact's custom properties (strings and numbers), but the shards' sizes and digests."""
    values = {}
    for key, value in artifact.mlmd_artifact.custom_properties.items():
        kind = value.WhichOneof("value")
        if kind in ("string_value", "int_value", "double_value") and key not in (shards.SHARD_BYTES,
                                                                                  shards.SHARD_SHA256):
            values[key] = getattr(value, kind)
    return values


class _Gpt2Windows:
    """The val split's text in GPT-2 BPE tokens, windowed as the data's windows are: made on the
    first call (the first GPT-2 baseline beside data of other tokens), then kept."""

    def __init__(self, data, streams, shape: dict, bpe_dir):
        self._data, self._streams, self._shape, self._bpe_dir = data, streams, shape, bpe_dir
        self.made = None

    def __call__(self):
        if self.made is None:
            bpe = tokens.gpt2(self._bpe_dir)
            ids = np.array(bpe.tokenizer.encode(self._data.decode(self._streams[VAL])), np.int32)
            self.made = ev.make_windows({VAL: ids}, token_bytes=bpe.token_bytes, **self._shape)
        return self.made


# TFX's Kubeflow v2 entrypoint gives each artifact an integer id hashed from its resource name and,
# for a blessing written by a subclass of TFX's Evaluator executor only, turns current_model_id and
# baseline_model_id back into resource names: what the compiled LatestBlessedModelStrategy's model
# query (name="...current_model_id...") matches. The entrypoint imports that executor before this
# one; registering with it there (an abc) passes the check without loading TensorFlow Model Analysis
# anywhere else. `runner.py run --spec` shows it: without this the second run finds no baseline.
_tfx_evaluator = sys.modules.get("tfx.components.evaluator.executor")
if _tfx_evaluator is not None:
    _tfx_evaluator.Executor.register(Executor)
