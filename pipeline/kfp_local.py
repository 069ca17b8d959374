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
again, as `runner.py run` does under LocalDagRunner (pipeline/recovery.py). A task whose spec gives
it a retryPolicy (the Trainer's: its retry continues the interrupted training) runs again after a
failure, at once (no backoff here), up to maxRetryCount times. SIGTERM and Ctrl-C are passed on
to the running task, which stops cleanly (a Trainer checkpoints its iteration), and the run ends
with one line (TaskStopped). A task's process dies with the launcher; the record of a run whose
launcher is proven dead (pipeline/launchers.py: never another machine's live run on a shared
pipeline root) is marked CANCELED by the next run, what its killed task wrote removed.

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
import time
import uuid
from typing import Dict, List, Optional

from core import signals
from core.errors import Interrupted
from pipeline import fault_injection, launchers
from pipeline.configs import IMAGE_WORKDIR

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECORD_FILE = "kfp_local_run.json"
TFX_ENTRYPOINT = "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"
RUN_PLACEHOLDERS = ("pipeline_root", "pipeline_job_name", "pipeline_job_uuid", "pipeline_task_name",
                    "pipeline_task_uuid")
_PLACEHOLDER = re.compile(r"\{\{\$(.*?)\}\}")
_REFERENCE = re.compile(r"^\.(inputs|outputs)\.(parameters|artifacts)\['([^']+)'\](.*)$")
_CLAUSE = re.compile(r'^([A-Za-z_][\w.]*)\s*(!=|=)\s*("(?:[^"\\]|\\.)*"|\S+)$')
_FILTER_KEYS = ("schema_title", "state", "name", "uri", "display_name")


class SpecError(ValueError):
    """A task this runner cannot run as the spec gives it, or that failed: the message names it."""

    def __init__(self, task: str, message: str):
        super().__init__(f"task {task}: {message}")
        self.task = task


class DamagedInput(SpecError):
    """A task failed, and an input artifact of it holds shards that are no longer those written
    (their recorded SHA-256, model.shards.SHARD_SHA256): the artifact is set aside."""


# The state of an artifact set aside (ML Metadata's name): neither the cache nor a resolver takes it.
SET_ASIDE = "MARKED_FOR_DELETION"


class TaskStopped(Interrupted):
    """The launcher was stopped (SIGTERM, Ctrl-C) while a task ran, and passed it on: the task's
    last line says where it stopped (a Trainer: at which iteration its checkpoint is)."""

    def __init__(self, task: str, signum: int, last_line: str):
        super().__init__(task, signum, last_line)
        self.exit_status = 128 + signum

    def __str__(self):
        task, signum, last_line = self.args
        return f"task {task} was stopped by {signal.Signals(signum).name}: {last_line}"


class _Unresolved(LookupError):
    """A placeholder naming an input artifact that is absent (an empty resolver output)."""


def load_spec(path: str) -> dict:
    """The spec file as a PipelineJob dict ({"pipelineSpec": ..., "runtimeConfig": ...}): the YAML
    PipelineSpec that kfp's compiler and `runner.py compile` write, or TFX's PipelineJob JSON."""
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            document = json.load(f) if path.endswith(".json") else next(yaml.safe_load_all(f), None)
    except (OSError, ValueError, yaml.YAMLError) as e:
        raise ValueError(f"not a readable pipeline spec ({e})") from e
    if not isinstance(document, dict) or not isinstance(document.get("pipelineSpec", document).get("root"), dict):
        raise ValueError("not a Kubeflow Pipelines v2 spec (no root DAG)")
    return document if "pipelineSpec" in document else {"pipelineSpec": document, "runtimeConfig": {}}


def write_pipeline_spec(pipeline_job: dict, path: str) -> None:
    """Write the PipelineJob that TFX's KubeflowV2DagRunner compiles as the file the kfp client,
    the KFP UI and Vertex AI take: YAML (the PipelineSpec, its pipeline root as
    defaultPipelineRoot, written by kfp's compiler's own writer), or, for a .json path, the
    PipelineJob JSON as TFX writes it (which Vertex AI takes and the kfp client refuses)."""
    if path.endswith(".json"):
        with open(path, "w", encoding="utf-8") as f:
            json.dump(pipeline_job, f, indent=2, sort_keys=True)
        return
    from google.protobuf import json_format
    from kfp.compiler import pipeline_spec_builder
    from kfp.pipeline_spec import pipeline_spec_pb2

    spec = dict(pipeline_job["pipelineSpec"])
    runtime = pipeline_job.get("runtimeConfig", {})
    if runtime.get("gcsOutputDirectory"):
        spec["defaultPipelineRoot"] = runtime["gcsOutputDirectory"]
    if runtime.get("parameters") or runtime.get("parameterValues"):
        raise ValueError("the pipeline has runtime parameters, which a YAML spec holds only as the root's "
                         "defaults: write a .json spec")
    pipeline_spec_builder.write_pipeline_spec_to_file(
        json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec()), None, pipeline_spec_pb2.PlatformSpec(), path)


def task_order(spec: dict) -> List[str]:
    """The DAG's tasks in an order that respects their dependencies (dependentTasks and the
    producers of their inputs), ties by name."""
    tasks = spec["pipelineSpec"]["root"]["dag"]["tasks"]
    needs = {name: _upstream(name, task) for name, task in tasks.items()}
    order: List[str] = []
    while len(order) < len(tasks):
        ready = sorted(n for n in tasks if n not in order and needs[n] <= set(order))
        if not ready:
            raise SpecError(sorted(set(tasks) - set(order))[0], "its dependencies form a cycle or name tasks "
                                                                "that are not in the DAG")
        order.append(ready[0])
    return order


def _upstream(name: str, task: dict) -> set:
    inputs = task.get("inputs", {})
    producers = {v["taskOutputArtifact"]["producerTask"] for v in inputs.get("artifacts", {}).values()
                 if "taskOutputArtifact" in v}
    producers |= {v["taskOutputParameter"]["producerTask"] for v in inputs.get("parameters", {}).values()
                  if "taskOutputParameter" in v}
    return set(task.get("dependentTasks", [])) | producers


def _schema_title(artifact_type: dict) -> str:
    if "schemaTitle" in artifact_type:
        return artifact_type["schemaTitle"]
    match = re.search(r"^title:\s*(\S+)", artifact_type.get("instanceSchema", ""), re.MULTILINE)
    return match.group(1) if match else ""


def _python_value(value: dict):
    """A parameter's value from the spec's Value ({"intValue": "3"}, ...) or a struct value."""
    if not isinstance(value, dict):
        return value
    if "intValue" in value:
        return int(value["intValue"])
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "stringValue" in value:
        return value["stringValue"]
    raise ValueError(f"unknown parameter value {value!r}")


def _typed_value(value) -> dict:
    """The executor input's `parameters` form of a value (the pipeline spec 2.0 Value)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return {"stringValue": json.dumps(value)}
    if isinstance(value, int):
        return {"intValue": str(value)}
    return {"doubleValue": value} if isinstance(value, float) else {"stringValue": value}


def in_checkout(value):
    """A path of the image's copy of this repository (IMAGE_WORKDIR) as the path in this checkout."""
    if isinstance(value, str) and (value == IMAGE_WORKDIR or value.startswith(IMAGE_WORKDIR + "/")):
        return REPO_ROOT + value[len(IMAGE_WORKDIR):]
    return value


def _text(value) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return json.dumps(value) if isinstance(value, (list, dict, bool)) else str(value)


@dataclasses.dataclass
class Run:
    """One run of a spec: where it writes, the artifacts it knows (its own and earlier runs'),
    and its record."""
    spec: dict
    spec_path: str
    pipeline_root: str
    enable_cache: Optional[bool] = None  # None: each task's cachingOptions; True/False for all

    def __post_init__(self):
        self.pipeline_name = self.spec["pipelineSpec"].get("pipelineInfo", {}).get("name")
        if not self.pipeline_name:
            raise ValueError("the spec names no pipeline (pipelineInfo.name)")
        self.run_id = f"{self.pipeline_name}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:6]}"
        self.run_root = f"{self.pipeline_root.rstrip('/')}/{self.pipeline_name}/{self.run_id}"
        self.record = {"run_id": self.run_id, "pipeline_name": self.pipeline_name, "spec": self.spec_path,
                       "pipeline_root": self.pipeline_root, "started": time.time(), "state": "RUNNING",
                       "launcher": launchers.this_launcher(), "artifacts": [], "tasks": {}}
        self.record_paths = _earlier_records(self.pipeline_root)  # {path: record} of the earlier runs
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

    # -- checks before anything runs -----------------------------------------------------------------

    def check(self, tasks: List[str]) -> None:
        """Every task's component, executor, parameters, input wiring and placeholders, so that a
        damaged spec fails before its first task runs."""
        for name in tasks:
            task = self._tasks[name]
            component_name = task.get("componentRef", {}).get("name")
            component = self._pipeline.get("components", {}).get(component_name)
            if component is None:
                raise SpecError(name, f"its component {component_name!r} is not in the spec's components")
            label = component.get("executorLabel")
            executor = self._pipeline.get("deploymentSpec", {}).get("executors", {}).get(label)
            if executor is None:
                raise SpecError(name, f"its executor {label!r} is not in the spec's deploymentSpec")
            kinds = set(executor) & {"container", "resolver", "importer"}
            if len(kinds) != 1:
                raise SpecError(name, f"unknown executor {label!r} (kind {sorted(executor)}; this runner runs "
                                      f"container, resolver and importer executors)")
            self._check_inputs(name, task, component)
            if "container" in executor:
                self._check_container(name, executor["container"], component)
            for query in executor.get("resolver", {}).get("outputArtifactQueries", {}).values():
                for expression in _PLACEHOLDER.findall(query.get("filter", "")):
                    _check_placeholder(name, expression, component)
                _parse_filter(name, _PLACEHOLDER.sub("placeholder", query.get("filter", "")))

    def _check_inputs(self, name: str, task: dict, component: dict) -> None:
        definitions = component.get("inputDefinitions", {})
        given = task.get("inputs", {})
        for key, definition in definitions.get("parameters", {}).items():
            if key not in given.get("parameters", {}) and not definition.get("isOptional") \
                    and "defaultValue" not in definition:
                raise SpecError(name, f"parameter {key!r} has no value (the component's inputDefinitions name it)")
        for key in given.get("parameters", {}):
            if key not in definitions.get("parameters", {}):
                raise SpecError(name, f"parameter {key!r} is not one of its component's inputs")
        for key, definition in definitions.get("artifacts", {}).items():
            if key not in given.get("artifacts", {}) and not definition.get("isOptional"):
                raise SpecError(name, f"input artifact {key!r} is wired to nothing")
        for key, source in given.get("artifacts", {}).items():
            if key not in definitions.get("artifacts", {}):
                raise SpecError(name, f"input artifact {key!r} is not one of its component's inputs")
            if "taskOutputArtifact" not in source:
                raise SpecError(name, f"input artifact {key!r}: only taskOutputArtifact inputs are supported")
            producer, output = source["taskOutputArtifact"]["producerTask"], source["taskOutputArtifact"]["outputArtifactKey"]
            if producer not in self._tasks:
                raise SpecError(name, f"input artifact {key!r} comes from task {producer!r}, which is not in the DAG")
            if output not in self._component(producer).get("outputDefinitions", {}).get("artifacts", {}):
                raise SpecError(name, f"input artifact {key!r}: task {producer} has no output {output!r}")

    def _check_container(self, name: str, container: dict, component: dict) -> None:
        if not container.get("command") and not container.get("args"):
            raise SpecError(name, "its container has neither a command nor arguments")
        line = [*container.get("command", []), *container.get("args", [])]
        for text in line:
            for expression in _PLACEHOLDER.findall(text):
                _check_placeholder(name, expression, component)
        if TFX_ENTRYPOINT in line:  # the arguments TFX's entrypoint cannot do without
            for flag in ("--executor_class_path", "--json_serialized_invocation_args"):
                if flag not in line[:-1]:
                    raise SpecError(name, f"the arguments of TFX's Kubeflow v2 entrypoint lack {flag}")
            class_path = line[line.index("--executor_class_path") + 1]
            module = class_path.rpartition(".")[0]
            if not _module_exists(module):
                raise SpecError(name, f"unknown executor class {class_path}: no module {module} here")

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
                    queue += _upstream(name, self._tasks[name])
            order = [t for t in order if t in wanted]
        self.check(order)
        images = sorted({e["container"].get("image", "") for e in self._pipeline["deploymentSpec"]["executors"].values()
                         if "container" in e})
        unused = f" (the image {', '.join(images)} is not used: the tasks run in this checkout)" if images else ""
        print(f"run {self.run_id}: {len(order)} tasks of {self.spec_path} under {self.run_root}{unused}", flush=True)
        self._cancel_dead_runs()
        try:
            self._write_record()  # RUNNING: a run killed before its first task ended is seen as such
            for name in order:
                started = time.time()
                state = self._run_task(name)
                self.record["tasks"][name]["seconds"] = round(time.time() - started, 1)
                fault_injection.kill_if_at(name, "written")  # tests only
                self._write_record()
                print(f"  {name}: {state.lower()} in {time.time() - started:.0f} s", flush=True)
            self.record["state"] = "SUCCEEDED"
        except BaseException:
            self.record["state"] = "FAILED"
            raise
        finally:
            self._write_record()
        return self.record

    def _cancel_dead_runs(self) -> None:
        """The records of earlier runs left RUNNING by a launcher that is proven dead (killed: kill
        -9, a power cut; pipeline/launchers.py: never another machine's or container's live run) are
        marked CANCELED. What their tasks recorded stays usable (the cache takes it); what the killed
        task wrote (its directory, which the record does not name, and what a push named before
        making it) and a record's half-written copy are removed first, never through a symbolic link,
        so that a kill during this leaves the run RUNNING, to be cleared by the next."""
        gfile = _gfile()
        for path, record in self.record_paths.items():
            if record.get("state") == "RUNNING" and launchers.proven_dead(record.get("launcher", {})):
                run_root = path[:-len(RECORD_FILE)].rstrip("/")
                for entry in sorted(gfile.listdir(run_root)):
                    name, where = entry.rstrip("/"), f"{run_root}/{entry.rstrip('/')}"
                    if name.startswith(f"{RECORD_FILE}.tmp-"):
                        gfile.remove(where)
                    elif name != RECORD_FILE and name not in record.get("tasks", {}) and gfile.isdir(where):
                        _remove_left_by_push(where, self.artifacts.values())
                        _remove_within(where, run_root)
                        print(f"  run {os.path.basename(run_root)} was killed during {name}: its unrecorded "
                              f"outputs {where} are removed", flush=True)
                record["state"] = "CANCELED"
                _write_record(path, record)

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
        only after a failure: see pipeline/recovery.py), in the record of the run that made it; a line
        for each."""
        from core import shards

        lines = []
        for artifact in (a for found in inputs.values() for a in found):
            recorded = artifact.get("metadata", {}).get(shards.SHARD_SHA256)
            if artifact.get("state") != "LIVE" or not recorded:
                continue
            found = shards.damaged_shards(artifact["uri"], json.loads(recorded) if isinstance(recorded, str) else recorded)
            if found:
                artifact["state"] = SET_ASIDE  # the same dict as in its run's record, rewritten here
                paths = [p for p, r in self.record_paths.items() if r["run_id"] == artifact["run_id"]]
                if paths:
                    _write_record(paths[0], self.record_paths[paths[0]])
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
                value = _python_value(value["constantValue"]) if "constantValue" in value else value.get("constant")
            elif "componentInputParameter" in source:
                pipeline_input = source["componentInputParameter"]
                if pipeline_input in runtime.get("parameterValues", {}):
                    value = runtime["parameterValues"][pipeline_input]
                elif pipeline_input in runtime.get("parameters", {}):
                    value = _python_value(runtime["parameters"][pipeline_input])
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
                "parameters": {k: _typed_value(v) for k, v in parameters.items()},
                "parameterValues": parameters,
                "artifacts": {key: {"artifacts": [_runtime_artifact(a) for a in found]}
                              for key, found in inputs.items()},
            },
            "outputs": {"artifacts": outputs, "parameters": output_parameters,
                        "outputFile": f"{task_root}/executor_output.json"},
        }

    def _artifact_name(self, task: str, key: str) -> str:
        """The artifact's resource name, unique across runs as on a cluster's metadata store."""
        return f"runs/{self.run_id}/artifacts/{task}.{key}"

    def _run_container(self, name: str, container: dict, executor_input: dict) -> None:
        context = {"pipeline_root": self.pipeline_root, "pipeline_job_name": self.run_id,
                   "pipeline_job_uuid": self.run_id, "pipeline_task_name": name, "pipeline_task_uuid": name}
        line = [in_checkout(_fill(text, name, executor_input, context))
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
            with open(log_path, "wb") as log, signals.passing_on(asked) as started:
                try:
                    # a session of its own: a terminal's Ctrl-C reaches the launcher alone, which passes it on
                    task = subprocess.Popen(line, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
                                            preexec_fn=_dies_with_the_launcher(), start_new_session=True)
                except OSError as e:  # no such command
                    raise SpecError(name, f"its command {line[0]!r} cannot run: {e}") from e
                started(task)
                try:
                    fault_injection.kill_if_at(name, "running")  # tests only
                    fault_injection.kill_if_at(name, "writing", [a["uri"] for output in executor_input["outputs"][
                        "artifacts"].values() for a in output["artifacts"]])
                    code = task.wait()
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
                raise SpecError(name, f"failed (exit code {code}): {last[0][:300]}; log: {self.run_root}/{name}/log.txt")

    def _clear_outputs(self, executor_input: dict) -> None:
        """Before a task runs again: what its failed attempt wrote (its own outputs in this run)."""
        gfile = _gfile()
        for output in executor_input["outputs"]["artifacts"].values():
            for artifact in output["artifacts"]:
                if gfile.isdir(artifact["uri"]):
                    _remove_within(artifact["uri"], self.run_root)
        if gfile.exists(executor_input["outputs"]["outputFile"]):
            gfile.remove(executor_input["outputs"]["outputFile"])

    def _keep_log(self, name: str, log_path: str) -> None:
        gfile = _gfile()
        gfile.makedirs(f"{self.run_root}/{name}")
        gfile.copy(log_path, f"{self.run_root}/{name}/log.txt", overwrite=True)

    def _read_outputs(self, name: str, component: dict, executor_input: dict) -> dict:
        """The task's output artifacts as its executor output describes them (uri, metadata)."""
        gfile = _gfile()
        output_file = executor_input["outputs"]["outputFile"]
        written = {}
        if gfile.exists(output_file):
            with gfile.GFile(output_file) as f:
                written = json.load(f)
        parameters = {}
        for key, value in written.get("parameterValues", {}).items():
            parameters[key] = value
        for key, value in written.get("parameters", {}).items():
            parameters[key] = _python_value(value)
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
        record = {**artifact, "schema_title": _schema_title(artifact["type"]), "state": "LIVE",
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
        executor_input = {"inputs": {"artifacts": {k: {"artifacts": [_runtime_artifact(a) for a in v]}
                                                   for k, v in inputs.items()},
                                     "parameterValues": parameters}}
        outputs = {}
        for key, query in resolver.get("outputArtifactQueries", {}).items():
            try:
                text = _fill(query.get("filter", ""), name, executor_input, {})
            except _Unresolved:  # its input is empty: nothing can match
                outputs[key] = []
                continue
            clauses = _parse_filter(name, text)
            matches = [a for a in self.artifacts.values() if all(_holds(a, *c) for c in clauses)]
            matches.sort(key=lambda a: a["create_time"], reverse=True)
            outputs[key] = matches[:int(query.get("limit") or 1)]
        return outputs

    def _import(self, name: str, importer: dict, component: dict, parameters: dict) -> str:
        source = importer.get("artifactUri", {})
        if "runtimeParameter" in source:
            uri = parameters.get(source["runtimeParameter"])
        else:
            uri = _python_value(source.get("constantValue", source.get("constant")))
        (key, definition), = component["outputDefinitions"]["artifacts"].items()
        artifact = {"name": self._artifact_name(name, key), "type": importer.get("typeSchema") or definition["artifactType"],
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
        _gfile().makedirs(self.run_root)
        _write_record(f"{self.run_root}/{RECORD_FILE}", self.record)

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
        from pipeline import lineage

        evaluation, blessing = self.produced("tfx.ModelEvaluation"), self.produced("tfx.ModelBlessing")
        pushed = self.produced("tfx.PushedModel")
        lines = lineage.summary_lines(
            evaluation=(evaluation["uri"], evaluation["metadata"]) if evaluation else None,
            blessing=blessing["metadata"] if blessing else None,
            pushed_destination=pushed["metadata"].get("pushed_destination")
            if pushed and pushed["metadata"].get("pushed") == 1 else None)
        return "\n".join(lines + [f"run record: {self.run_root}/{RECORD_FILE}"])


def _runtime_artifact(record: dict) -> dict:
    return {"name": record["name"], "type": record["type"], "uri": record["uri"], "metadata": record["metadata"]}


def _check_placeholder(task: str, expression: str, component: dict) -> None:
    if expression == "" or expression.lstrip(".") in RUN_PLACEHOLDERS:
        return
    match = _REFERENCE.match(expression)
    if not match:
        raise SpecError(task, f"unknown placeholder {{{{${expression}}}}}")
    side, kind, key, _ = match.groups()
    definitions = component.get(f"{side[:-1]}Definitions", {}).get(kind, {})
    if key not in definitions:
        raise SpecError(task, f"placeholder {{{{${expression}}}}} names {side[:-1]} {kind[:-1]} {key!r}, which "
                              f"its component does not have")


def _fill(text: str, task: str, executor_input: dict, context: dict) -> str:
    """The text with its placeholders replaced as Kubeflow's launcher replaces them."""
    def value(match) -> str:
        expression = match.group(1)
        if expression == "":
            return json.dumps(executor_input)
        if expression.lstrip(".") in RUN_PLACEHOLDERS:
            return context[expression.lstrip(".")]
        reference = _REFERENCE.match(expression)
        if not reference:
            raise SpecError(task, f"unknown placeholder {{{{${expression}}}}}")
        side, kind, key, rest = reference.groups()
        if kind == "parameters":
            if side == "inputs":
                return _text(executor_input["inputs"]["parameterValues"][key])
            return executor_input["outputs"]["parameters"][key]["outputFile"]
        found = executor_input[side]["artifacts"].get(key, {}).get("artifacts", [])
        if not found:
            raise _Unresolved(key)
        artifact = found[0]
        if rest in (".uri", ".path"):
            return artifact["uri"]
        metadata = re.match(r"^\.metadata\['([^']+)'\]$", rest)
        if metadata:
            if metadata.group(1) not in artifact["metadata"]:
                raise _Unresolved(key)
            return _text(artifact["metadata"][metadata.group(1)])
        raise SpecError(task, f"unknown placeholder {{{{${expression}}}}}")

    return _PLACEHOLDER.sub(value, text)


def _parse_filter(task: str, text: str) -> list:
    """A resolver's filter: KEY=VALUE (or !=) clauses joined by AND, the keys schema_title, state,
    name, uri, display_name or metadata.FIELD.(number_value|string_value|bool_value)."""
    clauses = []
    for part in re.split(r"\s+AND\s+", text.strip()):
        match = _CLAUSE.match(part.strip())
        key = match.group(1) if match else ""
        field = re.match(r"^metadata\.(\w+)\.(number_value|string_value|bool_value)$", key)
        if not match or not (key in _FILTER_KEYS or field):
            raise SpecError(task, f"resolver filter {part!r} is not supported (KEY=VALUE clauses joined by AND on "
                                  f"{', '.join(_FILTER_KEYS)} or metadata.FIELD.number_value)")
        raw = match.group(3)
        clauses.append((key, match.group(2) == "=", json.loads(raw) if raw.startswith('"') else raw))
    return clauses


def _holds(artifact: dict, key: str, equal: bool, wanted) -> bool:
    if key.startswith("metadata."):
        _, field, kind = key.split(".")
        if field not in artifact["metadata"]:
            return not equal
        actual = artifact["metadata"][field]
        try:
            if kind == "number_value":
                same = float(actual) == float(wanted)
            elif kind == "bool_value":
                same = bool(actual) == (str(wanted).lower() == "true")
            else:
                same = str(actual) == str(wanted)
        except (TypeError, ValueError):
            same = False
    else:
        same = str(artifact.get(key, "")) == str(wanted)
    return same == equal


def _module_exists(module: str) -> bool:
    """Whether a module's file lies on this Python's path (looked for, not imported: importing
    TFX's packages takes half a minute)."""
    relative = module.replace(".", os.sep)
    return any(os.path.isfile(os.path.join(base, relative + ".py"))
               or os.path.isfile(os.path.join(base, relative, "__init__.py"))
               for base in [REPO_ROOT, *sys.path] if base)


def _gfile():
    import tensorflow as tf

    return tf.io.gfile


def _dies_with_the_launcher():
    """A preexec_fn that has a task's process killed when the launcher dies (Linux's
    PR_SET_PDEATHSIG), so that no task outlives a killed launcher; None elsewhere. prctl is looked
    up here, before the fork: the child runs nothing but the call before its exec."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes
    import signal

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig, sigkill = 1, int(signal.SIGKILL)
    return lambda: prctl(pr_set_pdeathsig, sigkill)


def _remove_within(path: str, root: str) -> None:
    """Remove a directory of a run's own (locally: never through a symbolic link)."""
    from core.files import is_local, remove_tree_within

    if is_local(path):
        remove_tree_within(path, root)
    else:
        _gfile().rmtree(path)


def _remove_left_by_push(task_dir: str, artifacts) -> None:
    """What a killed push named before making it outside its run (components/pusher), unless a
    record names it as pushed."""
    from components.pusher.marks import left_by

    pushed = {a.get("metadata", {}).get("pushed_destination") for a in artifacts}
    for output in _gfile().glob(f"{task_dir}/*"):
        for path in left_by(output):
            if path not in pushed and _gfile().isdir(path):
                _remove_within(path, os.path.dirname(path.rstrip("/")))


def _write_record(path: str, record: dict) -> None:
    """Atomically: a temporary file renamed over the record."""
    gfile = _gfile()
    temporary = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    with gfile.GFile(temporary, "w") as f:
        json.dump(record, f, indent=1, sort_keys=True)
    gfile.rename(temporary, path, overwrite=True)


def _earlier_records(pipeline_root: str) -> Dict[str, dict]:
    """The records of the earlier runs under the pipeline root (of any pipeline), by their paths."""
    gfile = _gfile()
    records = {}
    for path in gfile.glob(f"{pipeline_root.rstrip('/')}/*/*/{RECORD_FILE}"):
        with gfile.GFile(path) as f:
            records[path] = json.load(f)
    return records


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
    from pipeline.recovery import MAX_REMAKES

    for remakes in range(MAX_REMAKES + 1):
        run = Run(spec=spec, spec_path=spec_path, pipeline_root=root, enable_cache=enable_cache)
        try:
            run.run(until=until)
            return run
        except DamagedInput as e:  # set aside: a run again makes it anew, as `runner.py run` does
            if remakes == MAX_REMAKES:
                raise
            print(f"{e}; running the spec again", flush=True)
