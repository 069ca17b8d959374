"""LMEvaluator's executor: evaluate, decide, and write the ModelEvaluation and ModelBlessing."""

from __future__ import annotations

import dataclasses
import gc
import json
import math
import os
import sys
import time
from typing import Any, Dict, List, Optional

import tensorflow as tf
from absl import logging
from tfx import types
from tfx.components.evaluator import constants as evaluator_constants
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import io_utils

from components.artifact_layout import METRICS_FILE, PLOT_FILE, REPORT_FILE
from components.lm_evaluator import evaluate as ev
from components.lm_evaluator import report
from components.trainer import trainings
from core import files
from core.errors import writing
from model.presets import GPT2_VOCAB_SIZE

EXAMPLES_KEY = "examples"
MODEL_KEY = "model"
BASELINE_MODEL_KEY = "baseline_model"
MODEL_RUN_KEY = "model_run"
EVALUATION_KEY = "evaluation"
BLESSING_KEY = "blessing"

BLESSING_REASON_KEY = "blessing_reason"

DEFAULTS = {"baselines": "[]", "eval_batches": 200, "batch_size": 8, "block_size": 0, "seed": 1337,
            "val_loss_threshold": None, "max_regression": 0.0, "data_tokenizer": ""}


def _remove_outputs(evaluation: types.Artifact, blessing: types.Artifact) -> None:
    """The files of an evaluation and blessing whose writing failed midway."""
    c = evaluator_constants
    for path in ([os.path.join(evaluation.uri, name) for name in (METRICS_FILE, REPORT_FILE, PLOT_FILE)]
                 + [os.path.join(blessing.uri, name) for name in (c.BLESSED_FILE_NAME, c.NOT_BLESSED_FILE_NAME)]):
        if tf.io.gfile.exists(path):
            tf.io.gfile.remove(path)


def _log_result(result: ev.ModelResult, started: float) -> None:
    """One line per model evaluated, as it is done."""
    if result.skipped:
        logging.info("LMEvaluator: %s (%s) skipped: %s", result.name, result.source, result.skipped)
    else:
        logging.info("LMEvaluator: %s (%s): train loss %.4f, val loss %.4f (%.1f s)", result.name, result.source,
                     result.train_loss, result.val_loss, time.time() - started)


@dataclasses.dataclass
class Settings:
    baselines: List[str]
    eval_batches: int
    batch_size: int
    block_size: int  # 0: the candidate's
    seed: int
    val_loss_threshold: Optional[float]  # None: no threshold
    max_regression: float
    data_tokenizer: str  # "": the examples' `tokenizer` property, when they have one

    @classmethod
    def parse(cls, exec_properties: Dict[str, Any]) -> "Settings":
        """Settings from exec properties (absent or None: the default); ValueError when invalid."""
        values = {k: exec_properties.get(k) for k in DEFAULTS}
        values = {k: DEFAULTS[k] if v is None else v for k, v in values.items()}
        baselines = values["baselines"]
        if isinstance(baselines, str):
            try:
                baselines = json.loads(baselines)
            except json.JSONDecodeError as e:
                raise ValueError(f"LMEvaluator baselines must be a JSON list of GPT-2 names or "
                                 f"checkpoint directories, got {values['baselines']!r}") from e
        if not isinstance(baselines, list) or not all(isinstance(b, str) and b for b in baselines):
            raise ValueError(f"LMEvaluator baselines must be a list of GPT-2 names or checkpoint "
                             f"directories, got {baselines!r}")
        threshold = values["val_loss_threshold"]
        settings = cls(baselines=baselines, eval_batches=int(values["eval_batches"]),
                       batch_size=int(values["batch_size"]), block_size=int(values["block_size"]),
                       seed=int(values["seed"]),
                       val_loss_threshold=None if threshold is None else float(threshold),
                       max_regression=float(values["max_regression"]),
                       data_tokenizer=str(values["data_tokenizer"]))
        problems = [name for name, ok in (
            ("eval_batches >= 0", settings.eval_batches >= 0), ("batch_size >= 1", settings.batch_size >= 1),
            ("block_size >= 0", settings.block_size >= 0),
            ("max_regression finite", math.isfinite(settings.max_regression)),
            ("val_loss_threshold not NaN", threshold is None or not math.isnan(float(threshold))))
            if not ok]
        if problems:
            raise ValueError(f"LMEvaluator: invalid settings, need {', '.join(problems)}: {settings}")
        return settings


def set_loss_property(artifact, name: str, value: float) -> None:
    """A loss as a float property, or, when it is not finite, as the string "nan"/"inf": ML
    Metadata's SQLite store cannot hold a non-finite float (its INSERT fails, leaving the
    execution RUNNING)."""
    if math.isfinite(value):
        artifact.set_float_custom_property(name, value)
    else:
        artifact.set_string_custom_property(name, str(value))


class Executor(base_executor.BaseExecutor):
    """Evaluates the candidate, the last blessed model and the baselines on the same windows."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]], output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        settings = Settings.parse(exec_properties)
        examples = artifact_utils.get_single_instance(input_dict[EXAMPLES_KEY])
        model = artifact_utils.get_single_instance(input_dict[MODEL_KEY])
        last_blessed = (input_dict.get(BASELINE_MODEL_KEY) or [None])[0]
        model_run = (input_dict.get(MODEL_RUN_KEY) or [None])[0]
        if model_run is not None:  # published, as this execution's input: the training it was copied from may go
            trainings.remove_published(model_run.uri, log=lambda line: logging.info("LMEvaluator: %s", line))
        evaluation = artifact_utils.get_single_instance(output_dict[EVALUATION_KEY])
        blessing = artifact_utils.get_single_instance(output_dict[BLESSING_KEY])
        labels = ev.unique_labels(settings.baselines)  # fails on a bad list before any work

        candidate = ev.load_for_eval(ev.candidate_checkpoint(model.uri), settings.block_size,
                                     "the candidate model")
        block_size = candidate.config.block_size  # cropped to settings.block_size when one is set
        windows = ev.load_windows(examples.uri, block_size=block_size, batch_size=settings.batch_size,
                                  eval_batches=settings.eval_batches, seed=settings.seed)
        problem = ev.vocab_problem(candidate.config.vocab_size, windows)
        if problem:
            raise ValueError(f"LMEvaluator: the candidate model ({model.uri}) cannot be evaluated on "
                             f"{examples.uri}: {problem}")
        started = time.time()
        results = [ev.evaluate(candidate, windows, ev.ModelResult("candidate", "candidate", model.uri))]
        _log_result(results[0], started)
        del candidate
        notes: List[str] = []

        last_result = None
        if last_blessed is not None:
            started = time.time()
            last_result = self._evaluate_last_blessed(last_blessed, model, results[0], block_size, windows)
            _log_result(last_result, started)
            results.append(last_result)
            if last_result.skipped:
                notes.append(f"the last blessed model ({last_blessed.uri}) was not compared: "
                             f"{last_result.skipped}")
        else:
            notes.append("no last blessed model (baseline_model input absent or empty): the candidate is "
                         "judged on the threshold alone")

        data_tokenizer = settings.data_tokenizer or examples.get_string_custom_property("tokenizer")
        for source, label in zip(settings.baselines, labels):
            started = time.time()
            result = self._evaluate_baseline(source, label, block_size, windows, data_tokenizer)
            _log_result(result, started)
            if result.skipped:
                notes.append(f"baseline {label} skipped: {result.skipped}")
            results.append(result)

        compared = last_result if last_result is not None and not last_result.skipped else None
        candidate_is_last_blessed = last_blessed is not None and last_blessed.uri == model.uri
        blessed, reason = ev.decide(results[0].val_loss, threshold=settings.val_loss_threshold,
                                    last_blessed_val=compared.val_loss if compared else None,
                                    max_regression=settings.max_regression,
                                    candidate_is_last_blessed=candidate_is_last_blessed)
        eval_info = self._eval_info(settings, block_size, windows)
        history = report.read_history(model_run.uri if model_run else None)
        # a full disk midway leaves neither a complete-looking evaluation nor a blessing marker
        with writing(f"the evaluation {evaluation.uri} and the blessing {blessing.uri}",
                     cleanup=lambda: _remove_outputs(evaluation, blessing)):
            self._write_evaluation(evaluation, results, blessed, reason, settings, eval_info, notes, history)
            self._write_blessing(blessing, model, last_blessed, blessed, reason, results[0])
        logging.info("LMEvaluator: %s", reason)

    # -- models ----------------------------------------------------------------------------------

    @staticmethod
    def _evaluate_last_blessed(artifact, model, candidate_result, block_size, windows) -> ev.ModelResult:
        result = ev.ModelResult("last_blessed", "last blessed", artifact.uri)
        if artifact.uri == model.uri:  # the resolver found the candidate itself already blessed
            return dataclasses.replace(candidate_result, role=result.role, name=result.name)
        last = ev.load_for_eval(ev.candidate_checkpoint(artifact.uri), block_size, "the last blessed model")
        result.skipped = ev.vocab_problem(last.config.vocab_size, windows)
        return result if result.skipped else ev.evaluate(last, windows, result)

    @staticmethod
    def _evaluate_baseline(source, label, block_size, windows, data_tokenizer) -> ev.ModelResult:
        result = ev.ModelResult("baseline", label, source)
        baseline = ev.load_for_eval(source, block_size, f"baseline {label!r}")
        result.vocab_size = baseline.config.vocab_size
        result.skipped = ev.vocab_problem(baseline.config.vocab_size, windows)
        if not result.skipped and data_tokenizer and data_tokenizer != "gpt2" and \
                baseline.config.vocab_size >= GPT2_VOCAB_SIZE:
            result.skipped = (f"the data was tokenized with {data_tokenizer!r}, this baseline reads "
                              f"GPT-2 BPE tokens")
        if not result.skipped:
            ev.evaluate(baseline, windows, result)
        del baseline
        gc.collect()
        return result

    # -- outputs ---------------------------------------------------------------------------------

    @staticmethod
    def _eval_info(settings: Settings, block_size: int, windows) -> dict:
        info = {"mode": "random windows" if settings.eval_batches else "whole split",
                "block_size": block_size, "batch_size": settings.batch_size,
                "eval_batches": settings.eval_batches, "seed": settings.seed,
                "val_loss_threshold": settings.val_loss_threshold,
                "max_regression": settings.max_regression}
        for split, w in windows.items():
            info[f"tokens_{split}"] = w.num_tokens
            info[f"windows_{split}"] = w.num_windows
        return info

    @staticmethod
    def _write_evaluation(evaluation, results, blessed, reason, settings, eval_info, notes, history):
        tf.io.gfile.makedirs(evaluation.uri)
        metrics = {"blessed": blessed, "reason": reason, "evaluation": eval_info,
                   "models": [r.to_dict() for r in results], "notes": notes,
                   "reference_openwebtext_val_losses": ev.REFERENCE_VAL_LOSSES}
        files.write_json(os.path.join(evaluation.uri, METRICS_FILE), metrics, sort_keys=False)
        settings_text = dict(eval_info)
        if settings.val_loss_threshold is None:
            settings_text["val_loss_threshold"] = "none"
        files.write_file(os.path.join(evaluation.uri, REPORT_FILE),
                         report.markdown(results, blessed=blessed, reason=reason, settings=settings_text, notes=notes))
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
            set_loss_property(evaluation, f"{prefix}_train_loss", r.train_loss)
            set_loss_property(evaluation, f"{prefix}_val_loss", r.val_loss)

    @staticmethod
    def _write_blessing(blessing, model, last_blessed, blessed, reason, candidate_result):
        """The properties and marker file of TFX's own Evaluator, which Pusher and
        LatestBlessedModelStrategy read, plus the reason."""
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


# TFX's Kubeflow v2 entrypoint gives each artifact an integer id hashed from its resource name and,
# for a blessing written by a subclass of TFX's Evaluator executor only, turns current_model_id and
# baseline_model_id back into resource names: what the compiled LatestBlessedModelStrategy's model
# query (name="...current_model_id...") matches. The entrypoint imports that executor before this
# one; registering with it there (an abc) passes the check without loading TensorFlow Model Analysis
# anywhere else. `runner.py run --spec` shows it: without this the second run finds no baseline.
_tfx_evaluator = sys.modules.get("tfx.components.evaluator.executor")
if _tfx_evaluator is not None:
    _tfx_evaluator.Executor.register(Executor)
