"""The LMEvaluator component (component.py): a candidate GPT's train and val loss against the last
blessed model and reference GPT-2 checkpoints, a blessing the standard Pusher honours, a Markdown
report and a loss-curve plot. `evaluate.py` and `report.py` import neither TFX nor matplotlib at
import time."""
