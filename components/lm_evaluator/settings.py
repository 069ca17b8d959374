"""The LMEvaluator's settings: one typed dataclass, the evaluation part of the run's configuration
(pipeline/configs.py), stored as one JSON execution property and read back typed by the executor.
Imports nothing heavy."""

from __future__ import annotations

import dataclasses
import math
from typing import List, Optional

from core.settings import SettingError, Settings, check, setting


@dataclasses.dataclass
class EvalConfig(Settings):
    baselines: List[str] = setting([], "GPT-2 names or Hugging Face GPT-2 checkpoint directories evaluated beside "
                                       "the model (on the same text in their own tokens, compared in bits per byte)",
                                     path=True)
    eval_batches: int = setting(0, "evaluation batches of the val split, at random windows (0: the whole split, as "
                                   "consecutive windows)", minimum=0)
    eval_train_batches: int = setting(50, "evaluation batches of the train split, at random windows, as nanoGPT "
                                          "estimates it (0: the whole split)", minimum=0)
    eval_batch_size: int = setting(32, "windows per evaluation batch", minimum=1)
    eval_block_size: int = setting(0, "window length (0: the candidate's block_size); every model is cropped to it",
                                   minimum=0)
    eval_seed: int = setting(1337, "the seed of the random windows; every model sees the same windows")
    val_loss_threshold: Optional[float] = setting(None, "bless only under this validation loss (None: no threshold)")
    max_regression: float = setting(0.0, "and no worse than the last blessed model by more than this")
    beat_unigram: bool = setting(True, "and only when its val bits per byte beat the unigram baseline's (each token "
                                       "predicted by its train-split frequency)")
    gate_baseline: Optional[str] = setting(None, "and only when its val bits per byte are within gate_margin of this "
                                                 "baseline's (one of --baselines), or better")
    gate_margin: float = setting(0.0, "how far the val bits per byte may be above gate_baseline's (negative: must "
                                      "beat it by this much)")

    def __post_init__(self):
        check(self)
        if not math.isfinite(self.max_regression):
            raise SettingError(f"--max_regression={self.max_regression}: expected a finite number")
        if self.val_loss_threshold is not None and math.isnan(self.val_loss_threshold):
            raise SettingError("--val_loss_threshold=nan: expected a number (or None: no threshold)")
        if self.val_loss_threshold is not None and math.isinf(self.val_loss_threshold):
            self.val_loss_threshold = None  # no threshold (ML Metadata stores no infinities)
        if any(not b for b in self.baselines):
            raise SettingError(f"--baselines={self.baselines}: an empty name")
        if not math.isfinite(self.gate_margin):
            raise SettingError(f"--gate_margin={self.gate_margin}: expected a finite number")
        if self.gate_baseline is not None and self.gate_baseline not in self.baselines:
            raise SettingError(f"--gate_baseline={self.gate_baseline}: not one of --baselines "
                               f"({', '.join(self.baselines) or 'none given'})")
