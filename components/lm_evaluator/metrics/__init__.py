"""The LMEvaluator's metrics: one entry each, which the evaluation, the report's table, metrics.json,
the ML Metadata properties (`<model>_<split>_<name>`) and the blessing's regression check all loop
over. A metric is computed for every model on every split from that model's SplitScore (its summed
cross-entropy over the split's target tokens) and the split's windows.

To add one: a file beside loss.py defining a Metric, and its entry in METRICS below.
"""

from __future__ import annotations

from components.lm_evaluator.metrics.base import Metric, SplitScore  # noqa: F401  (what a metric is made of)
from components.lm_evaluator.metrics.bpb import BPB
from components.lm_evaluator.metrics.loss import LOSS

METRICS = (LOSS, BPB)
