"""TEST-ONLY fault injection: `runner.py run` kills itself with SIGKILL at a chosen point of a chosen
component, as `kill -9` or a power cut would, so that tests can check what the next run makes of it.

    NANOGPT_TFX_KILL_AT=<component id>:<point>   e.g. Trainer:writing, TokenizeText:written

Points of a component (TFX's Launcher, under LocalDagRunner):
  registered  its execution is RUNNING in ML Metadata, its output directories exist, nothing is written
  writing     the first file appeared in its output directories (a watcher looks every 5 ms); a
              component that writes all it writes within one look is killed at `written` instead
  written     its executor returned, its outputs are whole on disk, ML Metadata has not published them
Point of a resolver (latest_blessed_model_resolver, ...):
  registered  its execution is registered in ML Metadata, its result not yet published

Points of a task under `runner.py run --spec` (pipeline/kfp_local.py, kill_if_at), the launcher killed:
  running     the task's process has started (it dies with the launcher)
  writing     the first file appeared in the task's output directories (as above), its process running
  written     the task's process ended and its outputs are whole, the run's record does not have them

Points inside a training (`training:...`) are training/kill_points.py's: the training process
reads them itself.

Nothing here runs unless the variable is set: runner.py calls install() only then.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

from training.kill_points import KILL_AT, PREFIX as TRAINING_POINT
COMPONENT_POINTS = ("registered", "writing", "written")
SPEC_TASK_POINTS = ("running", "writing", "written")


def _kill(node: str, point: str, what: str = "") -> None:
    print(f"fault injection: SIGKILL at {node}:{point}{what}", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def kill_if_at(task: str, point: str, output_uris=()) -> None:
    """Under `runner.py run --spec`: SIGKILL here when NANOGPT_TFX_KILL_AT names this point of this
    task (`writing`: as soon as a file appears under output_uris)."""
    if os.environ.get(KILL_AT) == f"{task}:{point}":
        if point == "writing":
            _watch_for_a_file(task, output_uris)
        else:
            _kill(task, point)


def _watch_for_a_file(node: str, uris) -> None:
    """Kill as soon as any file appears under one of the output directories."""
    def watch():
        while True:
            for uri in uris:
                for directory, _, names in os.walk(uri):
                    if names:
                        _kill(node, "writing", f" ({os.path.join(directory, names[0])} appeared)")
            threading.Event().wait(0.005)

    threading.Thread(target=watch, daemon=True).start()


def install() -> None:
    """Arm the kill point that NANOGPT_TFX_KILL_AT names (call before the pipeline runs)."""
    if os.environ[KILL_AT].startswith(TRAINING_POINT):  # the training process arms it
        return
    node, _, point = os.environ[KILL_AT].rpartition(":")
    if point not in COMPONENT_POINTS or not node:
        raise ValueError(f"{KILL_AT}={os.environ[KILL_AT]}: expected <component id>:<one of {COMPONENT_POINTS}>")
    from tfx.orchestration.portable import execution_publish_utils, launcher, resolver_node_handler

    run_executor = launcher.Launcher._run_executor

    def _run_executor(self, execution_info):
        if self._pipeline_node.node_info.id != node:
            return run_executor(self, execution_info)
        if point == "registered":
            _kill(node, point)
        if point == "writing":
            _watch_for_a_file(node, [a.uri for artifacts in execution_info.output_dict.values() for a in artifacts])
        output = run_executor(self, execution_info)
        _kill(node, "written")
        return output

    launcher.Launcher._run_executor = _run_executor

    resolve = resolver_node_handler.ResolverNodeHandler.run
    publish = execution_publish_utils.publish_internal_execution

    def run_resolver(self, mlmd_connection, pipeline_node, *args, **kwargs):
        if pipeline_node.node_info.id == node:
            def killed(*_, **__):
                _kill(node, point)
            execution_publish_utils.publish_internal_execution = killed
        try:
            return resolve(self, mlmd_connection, pipeline_node, *args, **kwargs)
        finally:
            execution_publish_utils.publish_internal_execution = publish

    resolver_node_handler.ResolverNodeHandler.run = run_resolver
