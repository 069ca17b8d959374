"""Run a compiled Kubeflow Pipelines v2 spec (what `runner.py compile` writes) on this machine, as
Kubeflow's v2 launcher runs it on a cluster: to check a spec before submitting it.

The tasks run in the order of the spec's DAG, each in its own process started from its container's
command and arguments, with the placeholders filled as the launcher fills them: `{{$}}` is the
executor input (pipeline_spec_pb2.ExecutorInput as JSON: the parameters, the input artifacts with
their URIs and metadata, the output artifacts with URIs under
pipeline_root/<pipeline>/<run id>/<task>/<output>, and the output file the task writes its
executor output to). The artifacts a task writes reach the tasks downstream by the spec's own
wiring (taskOutputArtifact), with the metadata the task put in its executor output. Resolver
tasks evaluate their outputArtifactQueries (filters on schema_title, state, name, metadata) over
the artifacts recorded by this run and by earlier runs under the same pipeline root, newest
first, as the cluster's metadata store answers them; importer tasks import their URI. A task
whose cachingOptions enable the cache reuses the outputs of an earlier successful run of the same
task with the same inputs, parameters and executor, as Kubeflow's cache does.

The record of a run (its artifacts, the state and outputs of its tasks) is one JSON file,
pipeline_root/<pipeline>/<run id>/kfp_local_run.json, rewritten atomically after each task. A
task that fails on an input artifact whose shards differ from the SHA-256 it records (bytes changed
in place) has that artifact set aside in the record of its run (DamagedInput), and the spec runs
again, as `runner.py run` does under LocalDagRunner (orchestration/recovery.py). A task whose spec gives
it a retryPolicy (the Trainer's: its retry continues the interrupted training) runs again after a
failure, at once (no backoff here), up to maxRetryCount times. SIGTERM and Ctrl-C are passed on
to the running task, which stops cleanly (a Trainer checkpoints its iteration), and the run ends
with one line (TaskStopped). A task's process dies with the launcher; the record of a run whose
launcher is proven dead (launchers.py: never another machine's live run on a shared pipeline root)
is marked CANCELED by the next run, what its killed task wrote removed (records.py).

Where it differs from a cluster (see docs/kubeflow.md): no containers (the image is not used; the
tasks run in this checkout with this Python, and the image's /pipeline paths in the spec mean this
checkout); no ML Metadata (the records above stand in for it); the pipeline root may be any path
tf.io.gfile writes, local ones included.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from typing import Dict, List, Optional

from core import signals
from core.errors import Interrupted
from orchestration.kubeflow import forkserver, launchers, records
from orchestration.kubeflow.records import RECORD_FILE, SET_ASIDE, earlier_records, tf_gfile, write_record
from orchestration.kubeflow.spec import (REPO_ROOT, TFX_ENTRYPOINT, SpecError, Unresolved, check_tasks, fill, fill_run,
                                         holds, in_checkout, load_spec, parse_filter, python_value, runtime_artifact,
                                         schema_title, task_order, typed_value, upstream)


class DamagedInput(SpecError):
    """A task failed, and an input artifact of it holds shards that are no longer those written
    (their recorded SHA-256, core.shards.SHARD_SHA256): the artifact is set aside."""


class TaskStopped(Interrupted):
    """The launcher was stopped (SIGTERM, Ctrl-C) while a task ran, and passed it on: the task's
    last line says where it stopped (a Trainer: at which iteration its checkpoint is)."""

    def __init__(self, task: str, signum: int, last_line: str):
        super().__init__(task, signum, last_line)
        self.exit_status = 128 + signum

    def __str__(self):
        task, signum, last_line = self.args
        return f"task {task} was stopped by {signal.Signals(signum).name}: {last_line}"


@dataclasses.dataclass
class Run:
    """One run of a spec: where it writes, the artifacts it knows (its own and earlier runs'),
    and its record."""
    spec: dict
    spec_path: str
    pipeline_root: str
    enable_cache: Optional[bool] = None  # None: each task's cachingOptions; True/False for all

    def __post_init__(self):
        self._forkserver = None  # started with the first task it can run; False: none on this system
        self.pipeline_name = self.spec["pipelineSpec"].get("pipelineInfo", {}).get("name")
        if not self.pipeline_name:
            raise ValueError("the spec names no pipeline (pipelineInfo.name)")
        self.run_id = f"{self.pipeline_name}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:6]}"
        self.run_root = f"{self.pipeline_root.rstrip('/')}/{self.pipeline_name}/{self.run_id}"
        self.record = {"run_id": self.run_id, "pipeline_name": self.pipeline_name, "spec": self.spec_path,
                       "pipeline_root": self.pipeline_root, "started": time.time(), "state": "RUNNING",
                       "launcher": launchers.this_launcher(), "artifacts": [], "tasks": {}}
        self.record_paths = earlier_records(self.pipeline_root)  # {path: record} of the earlier runs
        self.earlier = list(self.record_paths.values())
        self.artifacts = {a["name"]: a for r in self.earlier for a in r["artifacts"]}

    @property
    def _pipeline(self) -> dict:
        return self.spec["pipelineSpec"]

    def _component(self, task: str) -> dict:
        return self._pipeline["components"][self._tasks[task]["componentRef"]["name"]]

    def _executor(self, task: str) -> dict:
        return self._pipeline["deploymentSpec"]["executors"][self._component(task)["executorLabel"]]

    @property
    def _tasks(self) -> dict:
        return self._pipeline["root"]["dag"]["tasks"]

    # -- running -------------------------------------------------------------------------------------

    def run(self, until: Optional[str] = None) -> dict:
        """Run the tasks (those `until` needs and `until` itself, when given); the run's record."""
        order = task_order(self.spec)
        if until is not None:
            if until not in self._tasks:
                raise ValueError(f"--until={until}: no such task; tasks: {', '.join(order)}")
            wanted, queue = set(), [until]
            while queue:
                name = queue.pop()
                if name not in wanted:
                    wanted.add(name)
                    queue += upstream(name, self._tasks[name])
            order = [t for t in order if t in wanted]
        check_tasks(self._pipeline, order)
        images = sorted({e["container"].get("image", "") for e in self._pipeline["deploymentSpec"]["executors"].values()
                         if "container" in e})
        unused = f" (the image {', '.join(images)} is not used: the tasks run in this checkout)" if images else ""
        print(f"run {self.run_id}: {len(order)} tasks of {self.spec_path} under {self.run_root}{unused}", flush=True)
        records.cancel_dead_runs(self.record_paths, self.artifacts.values())
        try:
            self._write_record()  # RUNNING: a run killed before its first task ended is seen as such
            for name in order:
                started = time.time()
                state = self._run_task(name)
                self.record["tasks"][name]["seconds"] = round(time.time() - started, 1)
                self._write_record()
                print(f"  {name}: {state.lower()} in {time.time() - started:.0f} s", flush=True)
            self.record["state"] = "SUCCEEDED"
        except BaseException:
            self.record["state"] = "FAILED"
            raise
        finally:
            self._write_record()
            if self._forkserver:
                self._forkserver.close()
        return self.record

    def _run_task(self, name: str) -> str:
        executor, component = self._executor(name), self._component(name)
        inputs = {key: [self.artifacts[n] for n in self._output_names(source["taskOutputArtifact"])]
                  for key, source in self._tasks[name].get("inputs", {}).get("artifacts", {}).items()}
        parameters = self._parameters(name, component)
        if "resolver" in executor:
            outputs = self._resolve(name, executor["resolver"], inputs, parameters)
            return self._finish(name, "SUCCEEDED", {k: [a["name"] for a in v] for k, v in outputs.items()})
        if "importer" in executor:
            return self._import(name, executor["importer"], component, parameters)
        cache_key = self._cache_key(name, executor, inputs, parameters)
        cached = self._cached(name, cache_key)
        if cached is not None:
            return self._finish(name, "CACHED", cached, cache_key=cache_key)
        executor_input = self._executor_input(name, component, inputs, parameters)
        retries = int(self._tasks[name].get("retryPolicy", {}).get("maxRetryCount", 0))
        for attempt in range(retries + 1):
            try:
                self._run_container(name, executor["container"], executor_input)
                break
            except TaskStopped:
                raise
            except SpecError as failure:  # a damaged input (from the cache) is what it failed on, when it is one
                damaged = self._set_aside_damaged(inputs)
                if damaged:
                    raise DamagedInput(name, f"{str(failure)[len(f'task {name}: '):]}; {'; '.join(damaged)}") from None
                if attempt == retries:
                    raise
                print(f"  {failure}; its retry policy runs it again ({attempt + 1} of {retries})", flush=True)
                self._clear_outputs(executor_input)
        outputs = self._read_outputs(name, component, executor_input)
        return self._finish(name, "SUCCEEDED", outputs, cache_key=cache_key)

    def _set_aside_damaged(self, inputs: Dict[str, List[dict]]) -> List[str]:
        """Set aside each live input artifact whose shards differ from their recorded SHA-256 (read
        only after a failure: see orchestration/recovery.py), in the record of the run that made it; a line
        for each."""
        from core import shards

        lines = []
        for artifact in (a for found in inputs.values() for a in found):
            recorded = artifact.get("metadata", {}).get(shards.SHARD_SHA256)
            if artifact.get("state") != "LIVE" or not recorded:
                continue
            found = shards.damaged_shards(artifact["uri"],
                                          json.loads(recorded) if isinstance(recorded, str) else recorded)
            if found:
                artifact["state"] = SET_ASIDE  # the same dict as in its run's record, rewritten here
                paths = [p for p, r in self.record_paths.items() if r["run_id"] == artifact["run_id"]]
                if paths:
                    write_record(paths[0], self.record_paths[paths[0]])
                lines.append(f"{'; '.join(found)}: the artifact {artifact['name']} of task {artifact['task']} is set "
                             f"aside and made again")
        return lines

    def _output_names(self, source: dict) -> List[str]:
        return self.record["tasks"][source["producerTask"]]["outputs"].get(source["outputArtifactKey"], [])

    def _parameters(self, name: str, component: dict) -> dict:
        """The task's parameters as Python values: constants, the pipeline's runtime parameters,
        other tasks' output parameters; the image's paths are this checkout's."""
        runtime = self.spec.get("runtimeConfig", {})
        root_inputs = self._pipeline["root"].get("inputDefinitions", {}).get("parameters", {})
        values = {}
        for key, source in self._tasks[name].get("inputs", {}).get("parameters", {}).items():
            if "runtimeValue" in source:
                value = source["runtimeValue"]
                value = python_value(value["constantValue"]) if "constantValue" in value else value.get("constant")
                if isinstance(value, str):  # a run's placeholder in a constant ({{$.pipeline_job_uuid}}): its value
                    value = fill_run(value, self._context(name))
            elif "componentInputParameter" in source:
                pipeline_input = source["componentInputParameter"]
                if pipeline_input in runtime.get("parameterValues", {}):
                    value = runtime["parameterValues"][pipeline_input]
                elif pipeline_input in runtime.get("parameters", {}):
                    value = python_value(runtime["parameters"][pipeline_input])
                elif "defaultValue" in root_inputs.get(pipeline_input, {}):
                    value = root_inputs[pipeline_input]["defaultValue"]
                else:
                    raise SpecError(name, f"parameter {key!r}: the pipeline parameter {pipeline_input!r} has no value")
            elif "taskOutputParameter" in source:
                producer = source["taskOutputParameter"]
                value = self.record["tasks"][producer["producerTask"]]["parameters"][producer["outputParameterKey"]]
            else:
                raise SpecError(name, f"parameter {key!r}: unsupported source {sorted(source)}")
            values[key] = self._in_run_root(in_checkout(value))
        for key, definition in component.get("inputDefinitions", {}).get("parameters", {}).items():
            if key not in values and "defaultValue" in definition:
                values[key] = definition["defaultValue"]
        return values

    def _in_run_root(self, value):
        """A parameter that names the spec's own pipeline root (the Trainer's trainings directory)
        names this run's, when --pipeline_root gives another."""
        compiled = (self._pipeline.get("defaultPipelineRoot") or "").rstrip("/")
        if isinstance(value, str) and compiled and compiled != self.pipeline_root.rstrip("/"):
            return value.replace(compiled + "/", self.pipeline_root.rstrip("/") + "/")
        return value

    def _executor_input(self, name: str, component: dict, inputs: dict, parameters: dict) -> dict:
        task_root = f"{self.run_root}/{name}"
        outputs = {}
        for key, definition in component.get("outputDefinitions", {}).get("artifacts", {}).items():
            outputs[key] = {"artifacts": [{
                "name": self._artifact_name(name, key), "type": definition["artifactType"],
                "uri": f"{task_root}/{key}", "metadata": {}}]}
        output_parameters = {key: {"outputFile": f"{task_root}/parameters/{key}"}
                             for key in component.get("outputDefinitions", {}).get("parameters", {})}
        return {
            "inputs": {
                "parameters": {k: typed_value(v) for k, v in parameters.items()},
                "parameterValues": parameters,
                "artifacts": {key: {"artifacts": [runtime_artifact(a) for a in found]}
                              for key, found in inputs.items()},
            },
            "outputs": {"artifacts": outputs, "parameters": output_parameters,
                        "outputFile": f"{task_root}/executor_output.json"},
        }

    def _artifact_name(self, task: str, key: str) -> str:
        """The artifact's resource name, unique across runs as on a cluster's metadata store."""
        return f"runs/{self.run_id}/artifacts/{task}.{key}"

    def _context(self, name: str) -> dict:
        """The values of the run's placeholders ({{$.pipeline_job_uuid}} ...) for task `name`."""
        return {"pipeline_root": self.pipeline_root, "pipeline_job_name": self.run_id,
                "pipeline_job_uuid": self.run_id, "pipeline_task_name": name, "pipeline_task_uuid": name}

    def _run_container(self, name: str, container: dict, executor_input: dict) -> None:
        context = self._context(name)
        line = [in_checkout(fill(text, name, executor_input, context))
                for text in [*container.get("command", []), *container.get("args", [])]]
        if line and line[0] in ("python", "python3"):  # the image's Python is this checkout's
            line[0] = sys.executable
        # the image's environment (Dockerfile): this repository importable, oneDNN on
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [REPO_ROOT, os.environ.get("PYTHONPATH")])),
               "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1")}
        env.update({e["name"]: e.get("value", "") for e in container.get("env", [])})
        with tempfile.TemporaryDirectory(prefix=f"kfp_local_{name}_") as workdir:
            log_path = os.path.join(workdir, "log.txt")
            asked = []  # SIGTERM, Ctrl-C: passed on to the task, which stops cleanly (a Trainer checkpoints)
            with signals.passing_on(asked) as started:
                task = self._start(name, line, env, workdir, log_path)
                started(task)
                following = _LogFollower(name, log_path)
                try:
                    code = following.until_done(task)
                except BaseException:  # any other end of the launcher: the task stops too
                    task.kill()
                    task.wait()
                    raise
            self._keep_log(name, log_path)
            if code != 0 or asked:
                with open(log_path, encoding="utf-8", errors="replace") as f:
                    last = [ln.strip() for ln in f.read().splitlines() if ln.strip()][-1:] or ["(no output)"]
                if asked:
                    raise TaskStopped(name, asked[0], re.sub(r"^[A-Za-z_][\w.]*: ", "", last[0])[:300])
                raise SpecError(name, f"failed (exit code {code}): {last[0][:300]}; "
                                      f"log: {self.run_root}/{name}/log.txt")

    def _start(self, name: str, line: List[str], env: dict, workdir: str, log_path: str):
        """The task's process, which dies with the launcher, in a session of its own (a terminal's
        Ctrl-C reaches the launcher alone, which passes it on): forked from the run's fork server when
        its command is one the server runs (orchestration/kubeflow/forkserver.py), else started afresh."""
        if self._forkserver is None and line[:3] == [sys.executable, "-m", TFX_ENTRYPOINT]:
            self._forkserver = forkserver.start(TFX_ENTRYPOINT, env) or False
        if self._forkserver and self._forkserver.serves(line, env):
            return self._forkserver.start(line, workdir, log_path)
        try:
            with open(log_path, "wb") as log:
                return subprocess.Popen(line, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
                                        preexec_fn=signals.killed_with_parent(), start_new_session=True)
        except OSError as e:  # no such command
            raise SpecError(name, f"its command {line[0]!r} cannot run: {e}") from e

    def _clear_outputs(self, executor_input: dict) -> None:
        """Before a task runs again: what its failed attempt wrote (its own outputs in this run)."""
        gfile = tf_gfile()
        for output in executor_input["outputs"]["artifacts"].values():
            for artifact in output["artifacts"]:
                if gfile.isdir(artifact["uri"]):
                    records.remove_within(artifact["uri"], self.run_root)
        if gfile.exists(executor_input["outputs"]["outputFile"]):
            gfile.remove(executor_input["outputs"]["outputFile"])

    def _keep_log(self, name: str, log_path: str) -> None:
        gfile = tf_gfile()
        gfile.makedirs(f"{self.run_root}/{name}")
        gfile.copy(log_path, f"{self.run_root}/{name}/log.txt", overwrite=True)

    def _read_outputs(self, name: str, component: dict, executor_input: dict) -> dict:
        """The task's output artifacts as its executor output describes them (uri, metadata)."""
        gfile = tf_gfile()
        output_file = executor_input["outputs"]["outputFile"]
        written = {}
        if gfile.exists(output_file):
            with gfile.GFile(output_file) as f:
                written = json.load(f)
        parameters = {}
        for key, value in written.get("parameterValues", {}).items():
            parameters[key] = value
        for key, value in written.get("parameters", {}).items():
            parameters[key] = python_value(value)
        for key, spec in executor_input["outputs"]["parameters"].items():
            if key not in parameters and gfile.exists(spec["outputFile"]):
                with gfile.GFile(spec["outputFile"]) as f:
                    parameters[key] = f.read()
        self.record["tasks"].setdefault(name, {})["parameters"] = parameters
        outputs = {}
        for key, given in executor_input["outputs"]["artifacts"].items():
            artifact = dict(given["artifacts"][0])
            reported = (written.get("artifacts", {}).get(key, {}).get("artifacts") or [{}])[0]
            artifact.update(uri=reported.get("uri") or artifact["uri"], metadata=reported.get("metadata", {}))
            outputs[key] = [self._add_artifact(name, key, artifact)]
        return outputs

    def _add_artifact(self, task: str, key: str, artifact: dict) -> str:
        record = {**artifact, "schema_title": schema_title(artifact["type"]), "state": "LIVE",
                  "create_time": time.time(), "run_id": self.run_id, "task": task, "output": key}
        self.record["artifacts"].append(record)
        self.artifacts[record["name"]] = record
        return record["name"]

    def _finish(self, name: str, state: str, outputs: dict, cache_key: str = "") -> str:
        task = self.record["tasks"].setdefault(name, {})
        task.update(state=state, outputs=outputs, cache_key=cache_key)
        task.setdefault("parameters", {})
        return state

    # -- resolvers, importers, the cache ----------------------------------------------------------------

    def _resolve(self, name: str, resolver: dict, inputs: dict, parameters: dict) -> Dict[str, List[dict]]:
        """Each output's query over the known artifacts, newest first, up to its limit (1)."""
        executor_input = {"inputs": {"artifacts": {k: {"artifacts": [runtime_artifact(a) for a in v]}
                                                   for k, v in inputs.items()},
                                     "parameterValues": parameters}}
        outputs = {}
        for key, query in resolver.get("outputArtifactQueries", {}).items():
            try:
                text = fill(query.get("filter", ""), name, executor_input, {})
            except Unresolved:  # its input is empty: nothing can match
                outputs[key] = []
                continue
            clauses = parse_filter(name, text)
            matches = [a for a in self.artifacts.values() if all(holds(a, *c) for c in clauses)]
            matches.sort(key=lambda a: a["create_time"], reverse=True)
            outputs[key] = matches[:int(query.get("limit") or 1)]
        return outputs

    def _import(self, name: str, importer: dict, component: dict, parameters: dict) -> str:
        source = importer.get("artifactUri", {})
        if "runtimeParameter" in source:
            uri = parameters.get(source["runtimeParameter"])
        else:
            uri = python_value(source.get("constantValue", source.get("constant")))
        (key, definition), = component["outputDefinitions"]["artifacts"].items()
        artifact = {"name": self._artifact_name(name, key),
                    "type": importer.get("typeSchema") or definition["artifactType"],
                    "uri": in_checkout(uri), "metadata": importer.get("metadata", {})}
        return self._finish(name, "SUCCEEDED", {key: [self._add_artifact(name, key, artifact)]})

    def _cache_key(self, name: str, executor: dict, inputs: dict, parameters: dict) -> str:
        """What Kubeflow's cache compares: the component, its executor, the input artifacts and
        the parameters ('' when the task's cache is off)."""
        enabled = self._tasks[name].get("cachingOptions", {}).get("enableCache", False)
        if not (enabled if self.enable_cache is None else self.enable_cache):
            return ""
        content = {"component": self._component(name), "executor": executor, "parameters": parameters,
                   "inputs": {k: [a["name"] for a in v] for k, v in inputs.items()}}
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()

    def _cached(self, name: str, cache_key: str) -> Optional[dict]:
        if not cache_key:
            return None
        for record in sorted(self.earlier, key=lambda r: r["started"], reverse=True):
            task = record["tasks"].get(name, {})
            names = [n for v in task.get("outputs", {}).values() for n in v]
            if task.get("cache_key") == cache_key and task.get("state") in ("SUCCEEDED", "CACHED") \
                    and all(self.artifacts.get(n, {}).get("state") == "LIVE" for n in names):
                self.record["tasks"].setdefault(name, {})["parameters"] = task.get("parameters", {})
                return task["outputs"]
        return None

    def _write_record(self) -> None:
        tf_gfile().makedirs(self.run_root)
        write_record(f"{self.run_root}/{RECORD_FILE}", self.record)

    # -- the end -------------------------------------------------------------------------------------

    def produced(self, schema_title: str) -> Optional[dict]:
        """The newest artifact of the type that this run's tasks wrote or took from the cache (not
        those its resolvers found)."""
        names = [n for task, record in self.record["tasks"].items() if "resolver" not in self._executor(task)
                 for v in record.get("outputs", {}).values() for n in v]
        found = [self.artifacts[n] for n in names if self.artifacts[n]["schema_title"] == schema_title]
        return max(found, key=lambda a: a["create_time"]) if found else None

    def summary(self) -> str:
        """The lines `runner.py run` ends with, from this run's record instead of ML Metadata."""
        from components.artifact_layout import SERVING_DIR
        from pipeline import metadata

        evaluation, blessing = self.produced("tfx.ModelEvaluation"), self.produced("tfx.ModelBlessing")
        pushed, infra = self.produced("tfx.PushedModel"), self.produced("tfx.InfraBlessing")
        model = self.produced("tfx.Model")
        settings = self._parameters("TokenizeText", self._component("TokenizeText")).get("settings") \
            if "TokenizeText" in self._tasks else None  # its bpe_dir, for the sample command
        pushed = pushed if pushed and pushed["metadata"].get("pushed") == 1 else None  # (else: the Pusher skipped)
        lines = metadata.summary_lines(
            evaluation=(evaluation["uri"], evaluation["metadata"]) if evaluation else None,
            blessing=blessing["metadata"] if blessing else None,
            pushed_destination=pushed["metadata"].get("pushed_destination") if pushed else None,
            pushed_cached=bool(pushed) and pushed["run_id"] != self.run_id,  # an earlier run's, from the cache
            infra=infra["metadata"] if infra else None,
            model_card=pushed["metadata"].get("model_card") if pushed else None,
            saved_model=f"{model['uri']}/{SERVING_DIR}" if model else None, bpe_dir=metadata.bpe_dir_of(settings),
            last_push=None if pushed else records.latest_push(self.artifacts.values()))  # this run's or earlier
        return "\n".join(lines + [f"run record: {self.run_root}/{RECORD_FILE}"])


def run_spec(spec_path: str, pipeline_root: Optional[str] = None, until: Optional[str] = None,
             enable_cache: Optional[bool] = None) -> Run:
    """Run the spec file; its pipeline root unless one is given. SpecError names a failed task; a
    task that failed on a damaged input artifact (DamagedInput) has it set aside, and the spec runs
    again."""
    spec = load_spec(spec_path)
    root = (pipeline_root or spec["pipelineSpec"].get("defaultPipelineRoot")
            or spec.get("runtimeConfig", {}).get("gcsOutputDirectory"))
    if not root:
        raise ValueError("the spec names no pipeline root: give one with --pipeline_root")
    from orchestration.recovery import MAX_REMAKES

    for remakes in range(MAX_REMAKES + 1):
        run = Run(spec=spec, spec_path=spec_path, pipeline_root=root, enable_cache=enable_cache)
        try:
            run.run(until=until)
            return run
        except DamagedInput as e:  # set aside: a run again makes it anew, as `runner.py run` does
            if remakes == MAX_REMAKES:
                raise
            print(f"{e}; running the spec again", flush=True)


class _LogFollower:
    """The lines of a running task's log that `runner.py run` shows as they come, shown on the console as
    the task writes them (its whole log is kept once it ends): a Trainer's line on an interrupted
    training, its evaluations' losses and the estimate of a long first evaluation."""

    SHOWN = re.compile(r"^(step \d+: train loss |the first evaluation takes about )")

    def __init__(self, name: str, log_path: str):
        self.name, self.log_path, self._offset, self._partial = name, log_path, 0, b""

    def until_done(self, task, every_s: float = 0.5) -> int:
        """task.wait() (a process's, or a forked task's: in a thread), showing the lines as they come; its
        exit code."""
        done = {}

        def wait():
            try:
                done["code"] = task.wait()
            except BaseException as e:  # (the fork server gone): raised here
                done["error"] = e

        waiter = threading.Thread(target=wait, daemon=True)
        waiter.start()
        while waiter.is_alive():
            waiter.join(every_s)
            self._show_new()
        if "error" in done:
            raise done["error"]
        return done["code"]

    def _show_new(self) -> None:
        from components.trainer.trainings import LINE_STARTS

        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._offset)
                new = f.read()
        except FileNotFoundError:  # (not yet made)
            return
        self._offset += len(new)
        *lines, self._partial = (self._partial + new).split(b"\n")
        for raw in lines:
            line = raw.decode("utf-8", errors="replace").strip()
            if line.startswith(LINE_STARTS) or self.SHOWN.match(line):
                print(f"  {self.name}: {line}", flush=True)
