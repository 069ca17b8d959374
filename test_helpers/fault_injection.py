"""Fault injection for tests: `runner.py run` (or `run --spec`) kills itself with SIGKILL at a chosen
point of a chosen component, as `kill -9` or a power cut would, so that tests can check what the next
run makes of it. The shipped code has no hook for it: this module patches TFX's launcher (or the spec
launcher's methods) in the process that runs the pipeline, before it runs.

    NANOGPT_TFX_KILL_AT=<component id>:<point> python -m test_helpers.fault_injection run ...
    (test_helpers/forked_runner.py arms it the same way in each forked run)

Points of a component (TFX's Launcher, under LocalDagRunner):
  registered  its execution is RUNNING in ML Metadata, its output directories exist, nothing is written
  writing     the first file appeared in its output directories (a watcher looks every 5 ms); a
              component that writes all it writes within one look is killed at `written` instead
  written     its executor returned, its outputs are whole on disk, ML Metadata has not published them
Point of a resolver (latest_blessed_model_resolver, ...):
  registered  its execution is registered in ML Metadata, its result not yet published

Points of a task under `runner.py run --spec` (orchestration/kubeflow/launcher.py), the launcher killed
(NANOGPT_TFX_KILL_TASK_AT=<task>:<point>):
  running     the task's process has started (it dies with the launcher)
  writing     the first file appeared in the task's output directories (as above), its process running
  written     the task's process ended and its outputs are whole, the run's record does not have them

Points inside a training, the training process's (NANOGPT_TFX_KILL_AT=training:<when>:<iteration>:<how>,
e.g. training:after_checkpoint:20:kill; the environment of training_environment(), whose PYTHONPATH
names test_helpers/site, where sitecustomize.py arms it as the training process starts):
  when  iteration          at the top of that iteration (reached by training, not started at)
        before_checkpoint  as the checkpoint of that iteration is about to be written
        after_checkpoint   just after it was written
  how   kill               SIGKILL of the training process (an out-of-memory kill)
        kill_group         SIGKILL of the process group that started it (kill -9 of the runner's command), and of it
        sigterm_parent     SIGTERM to the process that started it (runner.py, as Kubernetes stops a pod)
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

KILL_AT = "NANOGPT_TFX_KILL_AT"  # a component's point under LocalDagRunner
KILL_TASK_AT = "NANOGPT_TFX_KILL_TASK_AT"  # a task's point under `run --spec`
COMPONENT_POINTS = ("registered", "writing", "written")
SPEC_TASK_POINTS = ("running", "writing", "written")


def _kill(node: str, point: str, what: str = "") -> None:
    print(f"fault injection: SIGKILL at {node}:{point}{what}", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


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


TRAINING_POINT = "training:"
TRAINING_WHEN = ("iteration", "before_checkpoint", "after_checkpoint")
TRAINING_HOW = ("kill", "kill_group", "sigterm_parent")
SITE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "site")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def training_environment(when: str, iteration: int, how: str) -> dict:
    """The variables that arm a training point in the processes that have them (a child's
    environment, or os.environ for the processes this one starts)."""
    if when not in TRAINING_WHEN or how not in TRAINING_HOW:
        raise ValueError(f"training point {when}:{how}: expected one of {TRAINING_WHEN} and {TRAINING_HOW}")
    return {KILL_AT: f"{TRAINING_POINT}{when}:{iteration}:{how}",
            "PYTHONPATH": os.pathsep.join(filter(None, [SITE, REPO, os.environ.get("PYTHONPATH")]))}


def install_training() -> None:
    """Arm the training point that NANOGPT_TFX_KILL_AT names in this process (sitecustomize.py):
    the Trainer's checkpoint saves and iterations patched to end the process there."""
    when, iteration, how = os.environ[KILL_AT][len(TRAINING_POINT):].split(":")
    iteration = int(iteration)
    from training import checkpoints, train

    def kill():
        print(f"fault injection: {how} at training:{when}:{iteration}", file=sys.stderr, flush=True)
        if how == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif how == "kill_group":  # the training process has a session of its own (training/train_process.py)
            os.killpg(os.getpgid(os.getppid()), signal.SIGKILL)
            os.kill(os.getpid(), signal.SIGKILL)
        else:
            os.kill(os.getppid(), signal.SIGTERM)

    save = checkpoints.RunCheckpoints.save

    def saving(self, number, *args, **kwargs):
        if (when, number) == ("before_checkpoint", iteration):
            kill()
        path = save(self, number, *args, **kwargs)
        if (when, number) == ("after_checkpoint", iteration):
            kill()
        return path

    between = train.Trainer._between_iterations

    def between_iterations(self, iter_num):
        if (when, iter_num) == ("iteration", iteration) and iter_num > self.start_iter:
            kill()
            if how == "sigterm_parent":  # the parent passes the stop on: it lands at this iteration, however
                deadline = time.time() + 60  # busy the machine (a tiny model's ten iterations: ~50 ms)
                while not (self.stop is not None and self.stop.signal) and time.time() < deadline:
                    time.sleep(0.005)
        return between(self, iter_num)

    checkpoints.RunCheckpoints.save = saving
    train.Trainer._between_iterations = between_iterations


def install() -> None:
    """Arm the kill point that NANOGPT_TFX_KILL_AT names, if it names one (call before the pipeline
    runs): a component's under LocalDagRunner, or a task's under `run --spec`."""
    if KILL_TASK_AT in os.environ:
        task, _, point = os.environ[KILL_TASK_AT].rpartition(":")
        if point not in SPEC_TASK_POINTS or not task:
            raise ValueError(f"{KILL_TASK_AT}={os.environ[KILL_TASK_AT]}: expected <task>:<one of {SPEC_TASK_POINTS}>")
        _install_spec(task, point)
    if KILL_AT not in os.environ or os.environ[KILL_AT].startswith(TRAINING_POINT):  # (the training process's)
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


def _install_spec(task: str, point: str) -> None:
    """The kill point of a task under `run --spec`, in the launcher's Run."""
    from orchestration.kubeflow.launcher import Run

    if point == "running":
        start = Run._start

        def _start(self, name, *args, **kwargs):
            process = start(self, name, *args, **kwargs)
            if name == task:
                _kill(task, point)
            return process

        Run._start = _start
    elif point == "writing":
        run_container = Run._run_container

        def _run_container(self, name, container, executor_input):
            if name == task:
                _watch_for_a_file(task, [a["uri"] for output in executor_input["outputs"]["artifacts"].values()
                                         for a in output["artifacts"]])
            return run_container(self, name, container, executor_input)

        Run._run_container = _run_container
    else:  # written: the task's outputs whole, the run's record not yet rewritten
        run_task = Run._run_task

        def _run_task(self, name):
            state = run_task(self, name)
            if name == task:
                _kill(task, point)
            return state

        Run._run_task = _run_task


if __name__ == "__main__":  # runner.py with the kill point armed
    install()
    import runner

    sys.exit(runner.main(sys.argv[1:]))
