"""SchemaGen: TFX's own (tfdv.infer_schema over the statistics of every split), whose schema also
carries the comparators that the DataValidator measures, so that the thresholds are the schema's
and a curated copy of it (ImportSchemaGen) states its own:

  drift  the train split against that of the data of the last blessed model, L-infinity distance
         (the largest difference in any value's share) of the character distribution above 0.03 or
         of the token distribution above 0.05
  skew   the train split against the val split, L-infinity above 0.1 for either

The thresholds come from comparing texts: two halves of Tiny Shakespeare differ by 0.005-0.007 in
characters and 0.007-0.02 in GPT-2 tokens (30,000 characters each); Shakespeare against the GPL's
prose by 0.017 and 0.07, against Python source by 0.037 and 0.25, against a file of numbers by 0.15
and 0.2 (docs/data_validation.md).
"""

from __future__ import annotations

import os
from typing import Any, Dict, List

from tfx import types
from tfx.components.schema_gen import component as schema_gen_component
from tfx.components.schema_gen import executor as schema_gen_executor
from tfx.dsl.components.base import executor_spec
from tfx.types import artifact_utils
from tfx.utils import io_utils

from components.tokenize_text.statistics import CHAR, TOKEN

DRIFT_L_INFINITY = {CHAR: 0.03, TOKEN: 0.05}
SKEW_L_INFINITY = {CHAR: 0.1, TOKEN: 0.1}


def add_comparators(schema) -> None:
    """The default comparators on the distributions the schema has, where it has none."""
    for feature in schema.feature:
        if feature.name in DRIFT_L_INFINITY and not feature.HasField("drift_comparator"):
            feature.drift_comparator.infinity_norm.threshold = DRIFT_L_INFINITY[feature.name]
        if feature.name in SKEW_L_INFINITY and not feature.HasField("skew_comparator"):
            feature.skew_comparator.infinity_norm.threshold = SKEW_L_INFINITY[feature.name]


class Executor(schema_gen_executor.Executor):
    def Do(self, input_dict: Dict[str, List[types.Artifact]], output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        super().Do(input_dict, output_dict, exec_properties)
        path = os.path.join(artifact_utils.get_single_uri(output_dict["schema"]), schema_gen_executor.DEFAULT_FILE_NAME)
        schema = io_utils.SchemaReader().read(path)
        add_comparators(schema)
        io_utils.write_pbtxt_file(path, schema)


class SchemaGen(schema_gen_component.SchemaGen):
    """SchemaGen(statistics=tokenize.outputs["statistics"]): a Schema with the comparators above."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)
