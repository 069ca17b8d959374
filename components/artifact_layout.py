"""Where things lie inside this project's TFX artifacts: one place, read by every component.

Model (the Trainer's output):
  Format-Serving/   the SavedModel to serve (TFX's own name for it, which the Pusher pushes)
  Format-HF/        the same weights as a Hugging Face GPT-2 checkpoint (GPT.from_pretrained reads
                    it: the Evaluator does, and so can transformers)
ModelRun (the Trainer's run directory):
  checkpoints/, model_config.json, train_config.json, tokenizer.json, tensorboard/  (model.train)
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
# ModelBlessing (the LMEvaluator's): the uri of the ExampleStatistics of the data the model was
# trained on, against which the next run's data is checked for drift (components/data_validation/)
DATA_STATISTICS_PROPERTY = "data_statistics"
# ExampleAnomalies (the DataValidator's): Split-<split>/SchemaDiff.pb (TFX's), and a report to read
ANOMALIES_REPORT_FILE = "report.md"
