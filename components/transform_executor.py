"""The executor of the character runs' Transform: TFX's own, on the DirectRunner without TFX's
package for the workers (components/beam_executor.py), which also writes the vocabulary beside the
records it made."""

from __future__ import annotations

import os

from tfx.components.transform import executor
from tfx.types import artifact_utils, standard_component_specs

from components import char_transform
from components.beam_executor import NoWorkerPackage
from core import files
from training.config import TOKENIZER_FILE


class Executor(NoWorkerPackage, executor.Executor):
    """TFX's Transform executor; its Beam arguments as given on the DirectRunner."""

    def Do(self, input_dict, output_dict, exec_properties) -> None:
        super().Do(input_dict, output_dict, exec_properties)
        # The characters its ids stand for, beside them (as TokenizeText's BPE examples name their
        # tokenizer): `python -m training.train --data_dir=` these records then trains on characters,
        # where without it the ids were taken as GPT-2 BPE's (as still for a Transform output made
        # before this, which the cache keeps: the Trainer of the pipeline reads the transform graph).
        graph = artifact_utils.get_single_uri(output_dict[standard_component_specs.TRANSFORM_GRAPH_KEY])
        tokenizer = char_transform.char_tokenizer(graph).to_json()
        for examples in output_dict.get(standard_component_specs.TRANSFORMED_EXAMPLES_KEY, []):
            files.write_json(os.path.join(examples.uri, TOKENIZER_FILE), tokenizer)
