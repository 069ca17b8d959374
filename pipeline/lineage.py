"""Where a model came from, read from the pipeline's ML Metadata store (pipeline/metadata.py).

`model_lineage(store)` walks ML Metadata's events upstream from a pushed model (or a Model): the
Pusher, the evaluator that blessed it, the Trainer and its hyperparameters, Transform and its
vocabulary, and the tokenization with its data source, token counts and statistics; then the checks
of that data in the run that trained the model (SchemaGen or ImportSchemaGen, the DataValidator and
its anomalies, the AnomalyGate). The store is the SQLite
file `runner.py run` writes, or the gRPC service of a Kubeflow Pipelines deployment. Only
ml_metadata is imported (no TensorFlow), so `runner.py lineage` answers quickly.
"""

from __future__ import annotations

import dataclasses
import json
import os
import textwrap
from typing import Dict, List, Optional, Tuple

from components.artifact_layout import HISTORY_FILE, MODEL_CARD_KEY, SERVING_DIR
from core import files
from training.config import TOKENIZER_FILE, TRAIN_CONFIG_FILE
from core.errors import NotFound, UsageError, one_line
from core.shards import SHARD_BYTES, SHARD_SHA256
from pipeline.configs import absolute_path
from pipeline.metadata import latest_artifact, latest_push, producer_of, prop, settings_values, value_of
from serving import EXPORT_RECORD, describe_export

# ML Metadata's Event.Type and Execution.State values (metadata_store_pb2), named here.
INPUT, OUTPUT = 3, 4
COMPLETE, CACHED = 3, 5
# Inputs that are compared with, not built from: the walk does not follow them upstream.
NOT_ANCESTORS = ("baseline_model", "baseline_blessing")
# Artifacts of the data checks, whose readers in the model's training run are part of its lineage.
DATA_CHECKS = ("ExampleStatistics", "Schema", "ExampleAnomalies")
# ML Metadata's context types of one pipeline run: TFX's local runner's, Kubeflow Pipelines'.
RUN_CONTEXTS = ("pipeline_run", "system.PipelineRun")
# Bookkeeping properties TFX puts on every artifact; left out of the listing.
BOOKKEEPING = ("tfx_version", "is_external", "state", "payload_format", "blessing_message", SHARD_BYTES,
               SHARD_SHA256)
# What the drawings (dot, PNG) show of each node, when it has them.
HIGHLIGHTS = ("input_pattern", "dataset_name", "tokenizer", "num_documents", "num_tokens_train", "num_tokens_val",
              "duplicate_documents", "anomalies", "accept_anomalies",
              "vocab_size", "vocabulary files", "preprocessing_fn", "training preset", "overrides", "vocabulary",
              "candidate_val_loss", "candidate_val_bpb", "candidate_train_loss", "val_loss_threshold", "blessed",
              "infra_check_seconds", "pushed_destination", "model_card")


@dataclasses.dataclass
class Node:
    key: str  # 'a<id>' for an artifact, 'e<id>' for an execution
    type_name: str
    uri: str = ""
    details: List[Tuple[str, str]] = dataclasses.field(default_factory=list)

    @property
    def title(self) -> str:
        return f"{self.type_name} #{self.key[1:]}"

    def highlights(self, limit: int, width: int) -> List[str]:
        shown = dict(self.details)
        rows = [f"{k}: {shown[k]}" for k in HIGHLIGHTS if k in shown]
        return [r if len(r) <= width else r[:width - 3] + "..." for r in rows][:limit]


@dataclasses.dataclass
class Lineage:
    """Executions in the order they ran, the artifacts they read and wrote, and edges
    (from, to, input or output key) between them."""
    subject: Node
    location: str  # where the subject lies: a pushed model's directory, or the artifact's uri
    executions: List[Node]
    artifacts: Dict[str, Node]
    edges: List[Tuple[str, str, str]]

    def to_text(self) -> str:
        lines = [f"lineage of {self.subject.title}: {self.location}"]
        card = dict(self.subject.details).get(MODEL_CARD_KEY)
        lines += [f"model card: {card}", ""] if card else [""]
        for execution in self.executions:
            lines.append(f"{execution.title}")
            lines += _detail_lines(execution.details, "    ")
            for source, target, key in self.edges:
                if target == execution.key:
                    lines.append(f"  <- {key}: {self.artifacts[source].title}")
            for source, target, key in self.edges:
                if source == execution.key:
                    artifact = self.artifacts[target]
                    lines.append(f"  -> {key}: {artifact.title}  {artifact.uri}")
                    lines += _detail_lines(artifact.details, "       ")
            lines.append("")
        return "\n".join(lines).rstrip() + "\n"

    def to_dot(self) -> str:
        def label(node: Node) -> str:
            rows = [node.title] + node.highlights(limit=8, width=60)
            return "\\n".join(r.replace("\\", "\\\\").replace('"', '\\"') for r in rows)

        lines = ["digraph lineage {", "  rankdir=TB;", '  node [fontname="Helvetica", fontsize=10];']
        for node in self.executions:
            lines.append(f'  {node.key} [shape=box, style="rounded,filled", fillcolor="#dbe8f7", '
                         f'label="{label(node)}"];')
        for node in self.artifacts.values():
            color = "#f7e3c4" if node.key == self.subject.key else "#eeeeee"
            lines.append(f'  {node.key} [shape=note, style=filled, fillcolor="{color}", label="{label(node)}"];')
        for source, target, key in self.edges:
            lines.append(f'  {source} -> {target} [label="{key}", fontsize=8];')
        lines.append("}")
        return "\n".join(lines) + "\n"

    def write_png(self, path: str) -> None:
        """The graph drawn with matplotlib (no Graphviz needed): one row per execution with the
        artifacts it wrote beside it, arrows from each input artifact."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = len(self.executions)
        # each execution's row: the artifacts it wrote, then those it read that nothing here wrote
        written = {t for s, t, _ in self.edges if s.startswith("e")}
        row = {e.key: [t for s, t, _ in self.edges if s == e.key] for e in self.executions}
        for execution in self.executions:
            row[execution.key] += [s for s, t, _ in self.edges if t == execution.key and s not in written]
        width = max([len(v) for v in row.values()] + [1])
        fig, ax = plt.subplots(figsize=(3.2 * (width + 1), 1.3 * rows + 0.5))
        position = {}
        for index, execution in enumerate(self.executions):
            y = rows - index
            position[execution.key] = (0, y)
            for col, key in enumerate(row[execution.key], start=1):
                position.setdefault(key, (col, y))
        for source, target, key in self.edges:
            (x0, y0), (x1, y1) = position[source], position[target]
            ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                        arrowprops=dict(arrowstyle="->", color="#888888", shrinkA=28, shrinkB=28,
                                        connectionstyle="arc3,rad=0.15" if x1 == 0 else "arc3"), zorder=1)
        for key, (x, y) in position.items():
            node = self.artifacts.get(key) or next(e for e in self.executions if e.key == key)
            lines = [node.title] + node.highlights(limit=3, width=40)
            color = "#dbe8f7" if key.startswith("e") else ("#f7e3c4" if key == self.subject.key else "#eeeeee")
            ax.text(x, y, "\n".join(lines), ha="center", va="center", fontsize=7, zorder=3,
                    bbox=dict(boxstyle="round", facecolor=color, edgecolor="#666666"))
        ax.set_xlim(-0.7, width + 0.7)
        ax.set_ylim(0.3, rows + 0.7)
        ax.axis("off")
        fig.tight_layout()
        try:
            with files.atomic_path(path) as tmp:  # whole or not at all
                fig.savefig(tmp, dpi=110, format="png")
        except OSError as e:
            raise UsageError(f"cannot write {path}: {e.strerror or one_line(e)}") from None
        finally:
            plt.close(fig)


def _detail_lines(details: List[Tuple[str, str]], indent: str, width: int = 110) -> List[str]:
    """Short details several to a line, long ones wrapped on lines of their own."""
    lines, current = [], ""
    for key, value in details:
        item = f"{key}: {value}"
        if len(item) > 40:
            lines += [current] if current else []
            lines += textwrap.wrap(item, width=width, initial_indent=indent, subsequent_indent=indent + "    ",
                                   break_on_hyphens=False)
            current = ""
        elif current and len(current) + 2 + len(item) > width:
            lines.append(current)
            current = indent + item
        else:
            current = f"{current}, {item}" if current else indent + item
    return lines + ([current] if current else [])


def _read_json(uri: str, name: str) -> Optional[dict]:
    """A JSON file of an artifact (local, or any file system TensorFlow reads); None if unreadable."""
    try:
        return files.read_json(os.path.join(uri, name))
    except (OSError, ValueError, ImportError):
        return None


def _list_dir(path: str) -> List[str]:
    """A directory's entries, sorted (local, or any file system TensorFlow reads); [] if none."""
    if "://" not in path:
        return sorted(os.listdir(path)) if os.path.isdir(path) else []
    import tensorflow as tf

    return sorted(n.rstrip("/") for n in tf.io.gfile.listdir(path)) if tf.io.gfile.isdir(path) else []


def _format(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _artifact_details(artifact, type_name: str) -> List[Tuple[str, str]]:
    details = [(k, _format(value_of(v))) for k, v in sorted(artifact.properties.items())]
    details += [(k, _format(value_of(v))) for k, v in sorted(artifact.custom_properties.items())
                if k not in BOOKKEEPING]
    if type_name == "TransformGraph":  # tf.Transform's vocabulary files
        assets = _list_dir(os.path.join(artifact.uri, "transform_fn", "assets"))
        if assets:
            details.append(("vocabulary files", ", ".join(f"transform_fn/assets/{name}" for name in assets)))
    if type_name == "Model":  # what its export chose (serving/choose.py)
        exported = _read_json(os.path.join(artifact.uri, SERVING_DIR), EXPORT_RECORD)
        if exported:
            details.append(("served with", describe_export(exported)))
    if type_name == "ModelRun":
        tokenizer = _read_json(artifact.uri, TOKENIZER_FILE)
        if tokenizer and tokenizer.get("kind") == "char":
            details.append(("vocabulary", f"{len(tokenizer['chars'])} characters "
                                          f"{''.join(tokenizer['chars'])!r}"))
        elif tokenizer:
            details.append(("vocabulary", "GPT-2 BPE (50257 tokens)"))
        history = _read_json(artifact.uri, HISTORY_FILE)
        if history and history.get("result"):
            details.append(("training result", json.dumps(history["result"], sort_keys=True)))
    return details


def _execution_details(execution, type_name: str, outputs) -> List[Tuple[str, str]]:
    properties = {k: value_of(v) for k, v in execution.custom_properties.items()}
    details = [("state", {COMPLETE: "complete", CACHED: "cached"}.get(execution.last_known_state,
                                                                     str(execution.last_known_state)))]
    if type_name == "Trainer":
        custom = json.loads(properties.get("custom_config") or "{}") or {}
        details.append(("resume", str(custom.get("resume", False))))
        export = settings_values(custom.get("deploy_config"))
        if export:
            details.append(("export", " ".join(f"{k}={export[k]}" for k in ("serving_weights", "serving_loop")
                                               if k in export)))
        run = next((a for key, a in outputs if key == "model_run"), None)
        # what trained (the run's train_config.json, with its directories), else what was asked for
        config = (_read_json(run.uri, TRAIN_CONFIG_FILE) if run is not None else None) \
            or settings_values(custom.get("train_config"))
        if config:
            details.append(("hyperparameters", " ".join(f"{k}={v}" for k, v in sorted(config.items()))))
        return details
    for key in ("settings", "config"):
        # a component whose parameters are one JSON settings object (TokenizeText, LMEvaluator): each by name
        values = settings_values(properties.get(key))
        if values:
            properties.pop(key)
            properties.update({k: v if isinstance(v, str) else str(v) for k, v in values.items() if v is not None})
    for key, value in sorted(properties.items()):
        if value not in ("", "null", "[]", "{}") and key not in ("custom_config",):
            details.append((key, " ".join(_format(value).split())))
    return details


def _contexts(store, execution_id: int) -> list:
    """The contexts (pipeline, run, node) of an execution; none for one recorded without any."""
    from ml_metadata import errors

    try:
        return store.get_contexts_by_execution(execution_id)
    except errors.NotFoundError:
        return []


def _find_subject(store, model: Optional[str]):
    if model is None:  # the latest push; with none yet, the latest trained model (evaluated, not pushed)
        subject = latest_push(store) or latest_artifact(store, "Model")
        if subject is None:
            raise NotFound("no model in ML Metadata: run the pipeline until its Trainer completes, or name "
                           "an artifact with --model=ID")
        return subject
    if model.isdigit():
        found = store.get_artifacts_by_id([int(model)])
        if not found:
            raise NotFound(f"no artifact with id {model} in ML Metadata")
        return found[0]
    wanted = absolute_path(model.rstrip("/"))
    for artifact in store.get_artifacts_by_type("PushedModel") + store.get_artifacts_by_type("Model"):
        if wanted in (str(prop(artifact, "pushed_destination") or "").rstrip("/"), artifact.uri.rstrip("/")):
            return artifact
    raise NotFound(f"{model}: neither a pushed model's directory nor a Model artifact's uri in ML Metadata")


def model_lineage(store, model: Optional[str] = None) -> Lineage:
    """The lineage of the latest pushed model (with none pushed, of the latest Model), or of `model`:
    an artifact id, a pushed model's directory or a Model artifact's uri. A Model also gets the
    evaluation and push that took it."""
    subject = _find_subject(store, model)
    artifact_types = {t.id: t.name for t in store.get_artifact_types()}
    execution_types = {t.id: t.name.rsplit(".", 1)[-1] for t in store.get_execution_types()}
    found = {subject.id: subject}  # the artifacts themselves, by id
    executions: Dict[int, object] = {}
    edges: List[Tuple[str, str, str]] = []

    def add_execution(execution, follow_inputs: bool) -> List[int]:
        """Record an execution with its inputs and outputs; the input ids to walk from."""
        if execution.id in executions:
            return []
        executions[execution.id] = execution
        events = store.get_events_by_execution_ids([execution.id])
        ids = sorted({e.artifact_id for e in events})
        by_id = {a.id: a for a in store.get_artifacts_by_id(ids)}
        upstream = []
        for event in sorted(events, key=lambda e: (e.type, e.artifact_id)):
            if event.type not in (INPUT, OUTPUT):
                continue
            artifact = found.setdefault(event.artifact_id, by_id[event.artifact_id])
            node_key = f"a{artifact.id}"
            input_key = event.path.steps[0].key if event.path.steps else ""
            if event.type == INPUT:
                edges.append((node_key, f"e{execution.id}", input_key))
                if follow_inputs and input_key not in NOT_ANCESTORS:
                    upstream.append(artifact.id)
            else:
                edges.append((f"e{execution.id}", node_key, input_key))
        return upstream

    def walk(queue: List[int]) -> None:
        seen = set()
        while queue:
            artifact_id = queue.pop()
            if artifact_id in seen:
                continue
            seen.add(artifact_id)
            producer = producer_of(store, artifact_id)
            if producer is not None:
                queue += add_execution(producer, follow_inputs=True)

    queue = [subject.id]
    if artifact_types[subject.type_id] == "Model":  # what became of it: evaluated, pushed
        for event in store.get_events_by_artifact_ids([subject.id]):
            if event.type == INPUT and event.path.steps and event.path.steps[0].key == "model":
                consumer = store.get_executions_by_id([event.execution_id])[0]
                if consumer.last_known_state == COMPLETE:
                    queue += add_execution(consumer, follow_inputs=False)
    walk(queue)
    # the checks of its data in the run that trained it: readers of statistics, schema, anomalies; of
    # one that came from the cache, the execution that ran (as for any artifact), unless it wrote nothing
    trainers = [e for e in executions.values() if execution_types[e.type_id] == "Trainer"]
    context_types = {t.id: t.name for t in store.get_context_types()}
    runs = {c.id for e in trainers for c in _contexts(store, e.id) if context_types.get(c.type_id) in RUN_CONTEXTS}
    checks = [e for run in sorted(runs) for e in store.get_executions_by_context(run)
              if not execution_types[e.type_id].endswith("Resolver")]

    def events(execution, kind: int) -> List[int]:
        return sorted({e.artifact_id for e in store.get_events_by_execution_ids([execution.id]) if e.type == kind})

    pending = {e.id: e for e in checks if e.id not in executions}
    while True:  # until none reads what the lineage holds (the gate reads what the validator wrote)
        readers = [e for e in pending.values() if any(
            i in found and artifact_types[found[i].type_id] in DATA_CHECKS for i in events(e, INPUT))]
        if not readers:
            break
        for execution in readers:
            del pending[execution.id]
            for producer in [producer_of(store, i) for i in events(execution, OUTPUT)] or [execution]:
                walk(add_execution(producer, follow_inputs=True))

    artifacts: Dict[str, Node] = {}
    for artifact_id, artifact in found.items():
        type_name = artifact_types[artifact.type_id]
        artifacts[f"a{artifact_id}"] = Node(f"a{artifact_id}", type_name, artifact.uri,
                                            _artifact_details(artifact, type_name))
    ordered = []
    for execution in sorted(executions.values(), key=lambda e: e.id):
        type_name = execution_types[execution.type_id]
        outputs = [(k, found[int(t[1:])]) for s, t, k in edges if s == f"e{execution.id}"]
        ordered.append(Node(f"e{execution.id}", type_name, details=_execution_details(execution, type_name, outputs)))
    subject_node = artifacts[f"a{subject.id}"]
    location = str(prop(subject, "pushed_destination") or subject.uri)
    return Lineage(subject_node, location, ordered, artifacts, edges)
