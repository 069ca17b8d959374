"""A compiled Kubeflow Pipelines v2 spec read as Kubeflow's v2 launcher reads it: the file, the
DAG's order, the checks a task must pass before anything runs, the placeholders of its command
line (filled as the launcher fills them) and the filters of its resolver queries."""

from __future__ import annotations

import json
import os
import re
import sys
from typing import List

from pipeline.configs import IMAGE_WORKDIR

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TFX_ENTRYPOINT = "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"
RUN_PLACEHOLDERS = ("pipeline_root", "pipeline_job_name", "pipeline_job_uuid", "pipeline_task_name",
                    "pipeline_task_uuid")
PLACEHOLDER = re.compile(r"\{\{\$(.*?)\}\}")
_REFERENCE = re.compile(r"^\.(inputs|outputs)\.(parameters|artifacts)\['([^']+)'\](.*)$")
_CLAUSE = re.compile(r'^([A-Za-z_][\w.]*)\s*(!=|=)\s*("(?:[^"\\]|\\.)*"|\S+)$')
_FILTER_KEYS = ("schema_title", "state", "name", "uri", "display_name")


class SpecError(ValueError):
    """A task this runner cannot run as the spec gives it, or that failed: the message names it."""

    def __init__(self, task: str, message: str):
        super().__init__(f"task {task}: {message}")
        self.task = task


class Unresolved(LookupError):
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


def task_order(spec: dict) -> List[str]:
    """The DAG's tasks in an order that respects their dependencies (dependentTasks and the
    producers of their inputs), ties by name."""
    tasks = spec["pipelineSpec"]["root"]["dag"]["tasks"]
    needs = {name: upstream(name, task) for name, task in tasks.items()}
    order: List[str] = []
    while len(order) < len(tasks):
        ready = sorted(n for n in tasks if n not in order and needs[n] <= set(order))
        if not ready:
            raise SpecError(sorted(set(tasks) - set(order))[0], "its dependencies form a cycle or name tasks "
                                                                "that are not in the DAG")
        order.append(ready[0])
    return order


def upstream(name: str, task: dict) -> set:
    inputs = task.get("inputs", {})
    producers = {v["taskOutputArtifact"]["producerTask"] for v in inputs.get("artifacts", {}).values()
                 if "taskOutputArtifact" in v}
    producers |= {v["taskOutputParameter"]["producerTask"] for v in inputs.get("parameters", {}).values()
                  if "taskOutputParameter" in v}
    return set(task.get("dependentTasks", [])) | producers


def _component(pipeline: dict, task: str) -> dict:
    return pipeline["components"][pipeline["root"]["dag"]["tasks"][task]["componentRef"]["name"]]


def check_tasks(pipeline: dict, tasks: List[str]) -> None:
    """Every task's component, executor, parameters, input wiring and placeholders, so that a
    damaged spec fails before its first task runs."""
    for name in tasks:
        task = pipeline["root"]["dag"]["tasks"][name]
        component_name = task.get("componentRef", {}).get("name")
        component = pipeline.get("components", {}).get(component_name)
        if component is None:
            raise SpecError(name, f"its component {component_name!r} is not in the spec's components")
        label = component.get("executorLabel")
        executor = pipeline.get("deploymentSpec", {}).get("executors", {}).get(label)
        if executor is None:
            raise SpecError(name, f"its executor {label!r} is not in the spec's deploymentSpec")
        kinds = set(executor) & {"container", "resolver", "importer"}
        if len(kinds) != 1:
            raise SpecError(name, f"unknown executor {label!r} (kind {sorted(executor)}; this runner runs "
                                  f"container, resolver and importer executors)")
        _check_inputs(pipeline, name, task, component)
        if "container" in executor:
            _check_container(name, executor["container"], component)
        for query in executor.get("resolver", {}).get("outputArtifactQueries", {}).values():
            for expression in PLACEHOLDER.findall(query.get("filter", "")):
                check_placeholder(name, expression, component)
            parse_filter(name, PLACEHOLDER.sub("placeholder", query.get("filter", "")))

def _check_inputs(pipeline: dict, name: str, task: dict, component: dict) -> None:
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
        producer = source["taskOutputArtifact"]["producerTask"]
        output = source["taskOutputArtifact"]["outputArtifactKey"]
        if producer not in pipeline["root"]["dag"]["tasks"]:
            raise SpecError(name, f"input artifact {key!r} comes from task {producer!r}, which is not in the DAG")
        if output not in _component(pipeline, producer).get("outputDefinitions", {}).get("artifacts", {}):
            raise SpecError(name, f"input artifact {key!r}: task {producer} has no output {output!r}")

def _check_container(name: str, container: dict, component: dict) -> None:
    if not container.get("command") and not container.get("args"):
        raise SpecError(name, "its container has neither a command nor arguments")
    line = [*container.get("command", []), *container.get("args", [])]
    for text in line:
        for expression in PLACEHOLDER.findall(text):
            check_placeholder(name, expression, component)
    if TFX_ENTRYPOINT in line:  # the arguments TFX's entrypoint cannot do without
        for flag in ("--executor_class_path", "--json_serialized_invocation_args"):
            if flag not in line[:-1]:
                raise SpecError(name, f"the arguments of TFX's Kubeflow v2 entrypoint lack {flag}")
        class_path = line[line.index("--executor_class_path") + 1]
        module = class_path.rpartition(".")[0]
        if not module_exists(module):
            raise SpecError(name, f"unknown executor class {class_path}: no module {module} here")


def module_exists(module: str) -> bool:
    """Whether a module's file lies on this Python's path (looked for, not imported: importing
    TFX's packages takes half a minute)."""
    relative = module.replace(".", os.sep)
    return any(os.path.isfile(os.path.join(base, relative + ".py"))
               or os.path.isfile(os.path.join(base, relative, "__init__.py"))
               for base in [REPO_ROOT, *sys.path] if base)


def check_placeholder(task: str, expression: str, component: dict) -> None:
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


def fill_run(text: str, context: dict) -> str:
    """A task's constant parameter as Kubeflow's driver gives it: when the whole of it is one of the run's
    placeholders ({{$.pipeline_job_uuid}} ...; context: their values), that value; else as it is."""
    match = PLACEHOLDER.fullmatch(text)
    name = match.group(1).lstrip(".") if match else None
    return context[name] if name in RUN_PLACEHOLDERS else text


def fill(text: str, task: str, executor_input: dict, context: dict) -> str:
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
                return as_text(executor_input["inputs"]["parameterValues"][key])
            return executor_input["outputs"]["parameters"][key]["outputFile"]
        found = executor_input[side]["artifacts"].get(key, {}).get("artifacts", [])
        if not found:
            raise Unresolved(key)
        artifact = found[0]
        if rest in (".uri", ".path"):
            return artifact["uri"]
        metadata = re.match(r"^\.metadata\['([^']+)'\]$", rest)
        if metadata:
            if metadata.group(1) not in artifact["metadata"]:
                raise Unresolved(key)
            return as_text(artifact["metadata"][metadata.group(1)])
        raise SpecError(task, f"unknown placeholder {{{{${expression}}}}}")

    return PLACEHOLDER.sub(value, text)


def parse_filter(task: str, text: str) -> list:
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


def holds(artifact: dict, key: str, equal: bool, wanted) -> bool:
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


def schema_title(artifact_type: dict) -> str:
    if "schemaTitle" in artifact_type:
        return artifact_type["schemaTitle"]
    match = re.search(r"^title:\s*(\S+)", artifact_type.get("instanceSchema", ""), re.MULTILINE)
    return match.group(1) if match else ""


def python_value(value: dict):
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


def typed_value(value) -> dict:
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


def as_text(value) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return json.dumps(value) if isinstance(value, (list, dict, bool)) else str(value)


def runtime_artifact(record: dict) -> dict:
    return {"name": record["name"], "type": record["type"], "uri": record["uri"], "metadata": record["metadata"]}
