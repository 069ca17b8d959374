"""The baselines a run compares with: for its model, the latest blessed model other than the
candidate itself (PreviousBlessedModelStrategy); for its data, the latest blessed model's blessing,
which names the statistics of the data it was trained on (LastBlessedDataStrategy).

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

from components.artifact_layout import DATA_STATISTICS_PROPERTY

MODEL_KEY, BLESSING_KEY, CANDIDATE_KEY, STATISTICS_KEY = "model", "model_blessing", "candidate", "statistics"


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


class LastBlessedDataStrategy(LatestBlessedModelStrategy):
    """Resolver(strategy_class=LastBlessedDataStrategy, model=Channel(type=Model),
    model_blessing=Channel(type=ModelBlessing), statistics=tokenize.outputs["statistics"]): the latest
    blessed model and its blessing, unless the statistics its blessing names are the current ones
    (the model was trained on this very data: nothing to compare), so that an identical rerun gives
    the DataValidator the inputs of the first run and it stays cached. (On Kubeflow the validator
    takes LatestBlessedModelStrategy's blessing and tells that case itself.)"""

    def resolve_artifacts(self, store, input_dict: Dict[str, List[types.Artifact]]
                          ) -> Optional[Dict[str, List[types.Artifact]]]:
        if set(input_dict) != {MODEL_KEY, BLESSING_KEY, STATISTICS_KEY}:
            raise ValueError(f"LastBlessedDataStrategy takes the inputs {MODEL_KEY!r}, {BLESSING_KEY!r} and "
                             f"{STATISTICS_KEY!r}, not {sorted(input_dict)}")
        result = self._resolve({MODEL_KEY: list(input_dict[MODEL_KEY]), BLESSING_KEY: list(input_dict[BLESSING_KEY])},
                               MODEL_KEY, BLESSING_KEY)
        current = {artifact.uri for artifact in input_dict[STATISTICS_KEY]}
        if any(b.get_string_custom_property(DATA_STATISTICS_PROPERTY) in current for b in result[BLESSING_KEY]):
            result = {MODEL_KEY: [], BLESSING_KEY: []}
        result[STATISTICS_KEY] = list(input_dict[STATISTICS_KEY])
        return result
