"""InfraValidator's executor: run canned_requests.py on the candidate's SavedModel in a fresh
process, and write TFX's InfraBlessing as TFX's own InfraValidator writes it (an INFRA_BLESSED or
INFRA_NOT_BLESSED file, the custom property `blessed` 1/0 that the Pusher reads), with what was
checked or what failed in one line (`infra_check`) and the check's seconds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Tuple

from absl import logging
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.components.util import model_utils
from tfx.utils import io_utils

from components import artifact_layout
from components.trainer.settings import DeployConfig
from core.errors import writing
from model.hf_files import read_gpt2_config

MODEL_KEY = "model"
MODEL_BLESSING_KEY = "model_blessing"
BLESSING_KEY = "blessing"
CONFIG_KEY = "config"

# TFX's InfraValidator's marker files and property (tfx/components/infra_validator/executor.py),
# which the Pusher's model_utils.is_infra_validated reads.
BLESSED_FILE, NOT_BLESSED_FILE, BLESSED_KEY = "INFRA_BLESSED", "INFRA_NOT_BLESSED", "blessed"

CLIENT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "canned_requests.py")
PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The project's top-level modules, which the check's process must not be able to import.
PROJECT_PACKAGES = ("core", "model", "training", "serving", "components", "pipeline", "orchestration", "runner",
                    "test_helpers", "bench")
BATCHES = (1, 4)


def check_saved_model(model_uri: str, timeout: float, max_new_tokens: int = 0) -> Tuple[bool, str, float]:
    """(passed, what was checked or what failed in one line, seconds) of the canned requests on the
    SavedModel of a Model artifact, in a fresh `python -I` process started in an empty directory."""
    serving_dir = os.path.join(model_uri, artifact_layout.SERVING_DIR)
    try:
        config = read_gpt2_config(os.path.join(model_uri, artifact_layout.HF_CHECKPOINT_DIR))
    except (OSError, ValueError) as e:
        return False, f"the model's shape is unknown: {e}", 0.0
    request = {"model_dir": serving_dir, "block_size": config["n_positions"], "vocab_size": config["vocab_size"],
               "batches": list(BATCHES), "max_new_tokens": max_new_tokens, "project_root": PROJECT_ROOT,
               "project_packages": list(PROJECT_PACKAGES), "parent_pid": os.getpid()}
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="infra_check_") as workdir:
        try:
            done = subprocess.run([sys.executable, "-I", CLIENT, json.dumps(request)], cwd=workdir, env=env,
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return False, (f"the SavedModel did not load and answer within {timeout:g} s (--infra_timeout; "
                           f"--infra_max_new_tokens bounds the requests)"), timeout
    seconds = time.time() - started
    result = _last_json_line(done.stdout)
    if result is None:
        last = [line for line in done.stderr.splitlines() if line.strip()][-1:] or ["no output"]
        return False, f"the check's process ended with status {done.returncode}: {last[0].strip()[:300]}", seconds
    if not result["ok"]:
        return False, result["failed"], seconds
    return True, (f"loaded in a fresh process without the project's code, answered {len(result['calls'])} "
                  f"requests: {', '.join(result['calls'])}"), seconds


def _last_json_line(text: str) -> Optional[dict]:
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None


class Executor(base_executor.BaseExecutor):
    def Do(self, input_dict: Dict[str, List[types.Artifact]], output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        deploy = DeployConfig.from_json(exec_properties[CONFIG_KEY])
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
