"""Where things lie inside this project's TFX artifacts: one place, read by every component.

Model (the Trainer's output):
  Format-Serving/   the SavedModel to serve (TFX's own name for it, which the Pusher pushes)
  Format-HF/        the same weights as a Hugging Face GPT-2 checkpoint (GPT.from_pretrained reads
                    it: the Evaluator does, and so can transformers)
  run_dir.txt       the ModelRun directory that trained it
ModelRun (the Trainer's run directory):
  checkpoints/, model_config.json, train_config.json, tokenizer.json, tensorboard/  (training.train)
  history.json      {"eval": [[iter, train_loss, val_loss], ...], "train": [[iter, loss], ...]}
ModelEvaluation (the LMEvaluator's output):
  metrics.json, report.md, loss_curves.png
ModelBlessing (the LMEvaluator's): property `evaluation`, the uri of the evaluation it decided on
InfraBlessing (the InfraValidator's): properties `infra_check` (what was checked, or what failed),
  `infra_check_seconds` and `infra_checked` (0: the model was not checked, being unblessed)
PushedModel: the version directory holds assets.extra/model_card.md; property `model_card`, its path
"""

import os
from typing import Optional

from core import files

SERVING_DIR = "Format-Serving"
HF_CHECKPOINT_DIR = "Format-HF"
RUN_DIR_POINTER = "run_dir.txt"
HISTORY_FILE = "history.json"
TIMING_FILE = "timing.json"  # in a ModelRun: {"training_seconds": the training loop's own time}
# ModelEvaluation (the LMEvaluator's output)
METRICS_FILE = "metrics.json"
REPORT_FILE = "report.md"
PLOT_FILE = "loss_curves.png"
# ModelBlessing, InfraBlessing and PushedModel properties the components read of each other
BLESSING_EVALUATION_KEY = "evaluation"
INFRA_CHECK_KEY, INFRA_CHECK_SECONDS_KEY, INFRA_CHECKED_KEY = "infra_check", "infra_check_seconds", "infra_checked"
MODEL_CARD_KEY = "model_card"
MODEL_CARD_PATH = "assets.extra/model_card.md"  # in a pushed version directory (TF Serving ignores assets.extra/)
# ModelBlessing (the LMEvaluator's): the uri of the ExampleStatistics of the data the model was
# trained on, against which the next run's data is checked for drift (components/data_validation/)
DATA_STATISTICS_PROPERTY = "data_statistics"
# ExampleAnomalies (the DataValidator's): Split-<split>/SchemaDiff.pb (TFX's), and a report to read
ANOMALIES_REPORT_FILE = "report.md"


def optional_artifact(artifacts: dict, key: str):
    """The one artifact of an optional channel in a component's input or output dict, or None when
    the pipeline wired none (TFX gives an empty list, or no key)."""
    return (artifacts.get(key) or [None])[0]


def model_run_dir(model_uri: str) -> Optional[str]:
    """The ModelRun directory that trained the Model artifact at model_uri (its run_dir.txt), or
    None when the model records none."""
    pointer = files.read_text(os.path.join(model_uri, RUN_DIR_POINTER), default=None)
    return pointer.strip() if pointer is not None else None
