"""What a metric of the LMEvaluator is (see components/lm_evaluator/metrics/__init__.py)."""

from __future__ import annotations

import dataclasses
from typing import Callable


@dataclasses.dataclass(frozen=True)
class SplitScore:
    """One model on one split's windows."""
    nats: float  # the cross-entropy summed over every target token (natural log)
    tokens: int  # the target tokens


@dataclasses.dataclass(frozen=True)
class Metric:
    name: str  # in property and metrics.json keys: candidate_val_<name>
    title: str  # the report's column title, after the split's name
    unit: str  # what the number is, in words, for the report
    of: Callable  # (SplitScore, SplitWindows) -> float
    gates: bool = False  # a candidate worse than the last blessed model on val by > max_regression is not blessed
