"""The infra check's process: canned_requests.py on a Model artifact's SavedModel in a fresh `python -I`
process started in an empty directory, which may be started ahead (core/prestart.py: it imports
TensorFlow while the pipeline's other components run, then reads its request). TFX-free, so that a
run can start it before it imports TFX."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Optional, Tuple

from components import artifact_layout
from core import prestart
from model.hf_files import read_gpt2_config

CLIENT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "canned_requests.py")
PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The project's top-level modules, which the check's process must not be able to import.
PROJECT_PACKAGES = ("core", "model", "training", "serving", "components", "pipeline", "orchestration", "runner",
                    "test_helpers", "bench")
BATCHES = (1, 4)


PRESTART_NAME = "infra_check"


def _process() -> tuple:
    """The check process's command and environment: canned_requests.py isolated from the
    project (-I, and no PYTHON* variables)."""
    return [sys.executable, "-I", CLIENT], {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}


def _in_its_own_directory() -> dict:
    return dict(cwd=tempfile.mkdtemp(prefix="infra_check_"), remove_cwd=True)


def prestart_check() -> None:
    """Start the check's process now, in an empty directory of its own: it imports TensorFlow and
    waits for its request (check_saved_model takes it)."""
    argv, env = _process()
    prestart.start(PRESTART_NAME, argv, env, **_in_its_own_directory())


def check_saved_model(model_uri: str, timeout: float, max_new_tokens: int = 0) -> Tuple[bool, str, float]:
    """(passed, what was checked or what failed in one line, seconds) of the canned requests on the
    SavedModel of a Model artifact, in a fresh `python -I` process in an empty directory (the one
    prestart_check started, if it did)."""
    serving_dir = os.path.join(model_uri, artifact_layout.SERVING_DIR)
    try:
        config = read_gpt2_config(os.path.join(model_uri, artifact_layout.HF_CHECKPOINT_DIR))
    except (OSError, ValueError) as e:
        return False, f"the model's shape is unknown: {e}", 0.0
    request = json.dumps({"model_dir": serving_dir, "block_size": config["n_positions"],
                          "vocab_size": config["vocab_size"], "batches": list(BATCHES),
                          "max_new_tokens": max_new_tokens, "project_root": PROJECT_ROOT,
                          "project_packages": list(PROJECT_PACKAGES), "parent_pid": os.getpid()})
    argv, env = _process()
    started = time.time()
    waiting = prestart.take(PRESTART_NAME, argv, env) or prestart.launch(argv, env, **_in_its_own_directory())
    try:
        stdout, stderr = waiting.process.communicate(input=(request + "\n").encode("utf-8"), timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, (f"the SavedModel did not load and answer within {timeout:g} s (--infra_timeout; "
                       f"--infra_max_new_tokens bounds the requests)"), timeout
    finally:
        prestart.end(waiting)  # ended if still running (a timeout), its directory removed
    seconds = time.time() - started
    result = _last_json_line(stdout.decode("utf-8", errors="replace"))
    if result is None:
        last = [line for line in stderr.decode("utf-8", errors="replace").splitlines() if line.strip()][-1:]
        last = last or ["no output"]
        return False, (f"the check's process ended with status {waiting.process.returncode}: "
                       f"{last[0].strip()[:300]}"), seconds
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
