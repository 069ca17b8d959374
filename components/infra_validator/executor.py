"""InfraValidator's executor: run canned_requests.py on the candidate's SavedModel in a fresh
process, and write TFX's InfraBlessing as TFX's own InfraValidator writes it (an INFRA_BLESSED or
INFRA_NOT_BLESSED file, the custom property `blessed` 1/0 that the Pusher reads), with what was
checked or what failed in one line (`infra_check`) and the check's seconds."""

from __future__ import annotations

import os
from typing import Any, Dict, List

from absl import logging
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.components.util import model_utils
from tfx.utils import io_utils

from components import artifact_layout
from components.infra_validator.check import check_saved_model
from components.deploy_settings import INFRA_DEPLOY, part_from_json
from core.errors import writing

MODEL_KEY = "model"
MODEL_BLESSING_KEY = "model_blessing"
BLESSING_KEY = "blessing"
CONFIG_KEY = "config"

# TFX's InfraValidator's marker files and property (tfx/components/infra_validator/executor.py),
# which the Pusher's model_utils.is_infra_validated reads.
BLESSED_FILE, NOT_BLESSED_FILE, BLESSED_KEY = "INFRA_BLESSED", "INFRA_NOT_BLESSED", "blessed"

class Executor(base_executor.BaseExecutor):
    def Do(self, input_dict: Dict[str, List[types.Artifact]], output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        deploy = part_from_json(exec_properties[CONFIG_KEY], INFRA_DEPLOY)
        model = artifact_utils.get_single_instance(input_dict[MODEL_KEY])
        blessing = artifact_utils.get_single_instance(output_dict[BLESSING_KEY])
        model_blessing = artifact_layout.optional_artifact(input_dict, MODEL_BLESSING_KEY)
        checked = model_blessing is None or model_utils.is_model_blessed(model_blessing)
        if checked:
            passed, what, seconds = check_saved_model(model.uri, deploy.infra_timeout, deploy.infra_max_new_tokens)
            logging.info("InfraValidator: %s %s (%.1f s)", "passed:" if passed else "failed:", what, seconds)
        else:  # not to be pushed whatever its check says: the process and its seconds are spared
            passed, what, seconds = False, "the evaluator did not bless the model", 0.0
            logging.info("InfraValidator: not checked: %s", what)
        with writing(f"the infra blessing {blessing.uri}"):
            io_utils.write_string_file(os.path.join(blessing.uri, BLESSED_FILE if passed else NOT_BLESSED_FILE), "")
        blessing.set_int_custom_property(BLESSED_KEY, int(passed))
        blessing.set_string_custom_property(artifact_layout.INFRA_CHECK_KEY, what)
        blessing.set_float_custom_property(artifact_layout.INFRA_CHECK_SECONDS_KEY, round(seconds, 1))
        blessing.set_int_custom_property(artifact_layout.INFRA_CHECKED_KEY, int(checked))
