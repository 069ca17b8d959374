"""Where things lie inside this project's TFX artifacts: one place, read by every component.

Model (the Trainer's output):
  Format-Serving/   the SavedModel to serve (TFX's own name for it, which the Pusher pushes)
  Format-HF/        the same weights as a Hugging Face GPT-2 checkpoint (GPT.from_pretrained reads
                    it: the Evaluator does, and so can transformers)
ModelRun (the Trainer's run directory):
  checkpoints/, model_config.json, train_config.json, tokenizer.json, tensorboard/  (training.train)
  history.json      {"eval": [[iter, train_loss, val_loss], ...], "train": [[iter, loss], ...]}
ModelEvaluation (the LMEvaluator's output):
  metrics.json, report.md, loss_curves.png
"""

SERVING_DIR = "Format-Serving"
HF_CHECKPOINT_DIR = "Format-HF"
HISTORY_FILE = "history.json"
# ModelEvaluation (the LMEvaluator's output)
METRICS_FILE = "metrics.json"
REPORT_FILE = "report.md"
PLOT_FILE = "loss_curves.png"
