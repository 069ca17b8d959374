"""The baseline a candidate model is compared with: the latest blessed model other than the
candidate itself.

TFX's LatestBlessedModelStrategy returns the latest blessed model. After a run blesses its model,
an identical rerun (the Trainer cached, so the same candidate) would get that very model as its
baseline: a new input, so the Evaluator and the Pusher would run again for nothing. Leaving the
candidate out gives the rerun the same baseline as the first run, and caching holds.

Kubeflow Pipelines v2 compiles only TFX's two built-in strategies, so a compiled pipeline uses
LatestBlessedModelStrategy (see pipeline/pipeline.py); there the first rerun after a blessing
evaluates once more and blesses nothing new.
"""

from __future__ import annotations

from typing import Dict, List, Optional

from tfx import types
from tfx.dsl.input_resolution.strategies.latest_blessed_model_strategy import LatestBlessedModelStrategy

MODEL_KEY, BLESSING_KEY, CANDIDATE_KEY = "model", "model_blessing", "candidate"


class PreviousBlessedModelStrategy(LatestBlessedModelStrategy):
    """Resolver(strategy_class=PreviousBlessedModelStrategy, model=Channel(type=Model),
    model_blessing=Channel(type=ModelBlessing), candidate=trainer.outputs["model"])."""

    def resolve_artifacts(self, store, input_dict: Dict[str, List[types.Artifact]]
                          ) -> Optional[Dict[str, List[types.Artifact]]]:
        if set(input_dict) != {MODEL_KEY, BLESSING_KEY, CANDIDATE_KEY}:
            raise ValueError(f"PreviousBlessedModelStrategy takes the inputs {MODEL_KEY!r}, {BLESSING_KEY!r} "
                             f"and {CANDIDATE_KEY!r}, not {sorted(input_dict)}")
        candidates = input_dict[CANDIDATE_KEY]
        candidate_ids = {artifact.id for artifact in candidates}
        models = [model for model in input_dict[MODEL_KEY] if model.id not in candidate_ids]
        result = self._resolve({MODEL_KEY: models, BLESSING_KEY: list(input_dict[BLESSING_KEY])},
                               MODEL_KEY, BLESSING_KEY)
        result[CANDIDATE_KEY] = candidates
        return result
