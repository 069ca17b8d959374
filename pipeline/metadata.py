"""The pipeline's ML Metadata store read back: the store itself (the SQLite file `runner.py run`
writes, or a Kubeflow deployment's gRPC service), the latest push, and the lines a run ends with.
Only ml_metadata is imported (no TensorFlow), so that `runner.py lineage` and `sample` answer quickly."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
from typing import List, Optional, Tuple

from components.artifact_layout import (INFRA_CHECK_KEY, INFRA_CHECK_SECONDS_KEY, INFRA_CHECKED_KEY, MODEL_CARD_KEY,
                                        PLOT_FILE, REPORT_FILE, SERVING_DIR, TIMING_FILE)
from core import files
from core.errors import UserError, one_line
from pipeline.configs import OUTPUT_DIR
from training.config import TENSORBOARD_DIR


RUNNER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "runner.py")


def runner_command(command: str) -> str:
    """`runner.py COMMAND` as it is typed here, for the lines a run ends with: the Python running now
    (`python` when it is the one the shell finds, as with an activated .venv; else its path, such as
    .venv/bin/python after scripts/run.sh) and runner.py, from the working directory."""
    on_path = shutil.which("python")  # (python3 of the same environment is the same Python)
    same = on_path is not None and bool(sys.executable) and os.path.dirname(os.path.abspath(on_path)) == \
        os.path.dirname(os.path.abspath(sys.executable)) and os.path.samefile(on_path, sys.executable)
    python = "python" if same or not sys.executable else _typed(sys.executable, program=True)
    return f"{python} {_typed(RUNNER)} {command}"


def _typed(path: str, program: bool = False) -> str:
    """A path as typed from the working directory (a program's bare name with ./: the shell would look it up)."""
    relative = os.path.relpath(path)
    if relative.startswith(".."):
        return shlex.quote(os.path.abspath(path))
    return shlex.quote(f"./{relative}" if program and "/" not in relative else relative)


def push_gone(destination: str) -> bool:
    """Whether a push's local version directory is no longer there (moved or deleted by hand: a
    model withdrawn); a rerun's cache pushes nothing again."""
    return files.is_local(destination) and not os.path.isdir(destination)


def sqlite_store(metadata_path: str):
    """The SQLite store that `runner.py run` writes, opened read-only; UserError naming the file
    when it is not a readable ML Metadata store."""
    from ml_metadata import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = metadata_path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    try:
        store = metadata_store.MetadataStore(config)
        store.get_artifact_types()  # a damaged file may open and fail on the first query
    except Exception as e:  # ml_metadata raises RuntimeError or its own errors, often with no message
        raise UserError(f"{metadata_path} is not a readable ML Metadata store ({type(e).__name__}: "
                        f"{one_line(e)}); move it away (the pipeline then starts a new store and runs "
                        f"everything again) or restore it from a copy") from e
    return store


def grpc_store(host: str, port: int):
    """ML Metadata's gRPC service, e.g. Kubeflow Pipelines' metadata-grpc-service (port 8080),
    reachable with `kubectl port-forward svc/metadata-grpc-service 8080:8080 -n kubeflow`."""
    from ml_metadata import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    config = metadata_store_pb2.MetadataStoreClientConfig(host=host, port=port)
    return metadata_store.MetadataStore(config)


def latest_artifact(store, type_name: str):
    """The newest artifact of the type (None when there is none)."""
    artifacts = store.get_artifacts_by_type(type_name)
    return max(artifacts, key=lambda a: (a.create_time_since_epoch, a.id)) if artifacts else None


def value_of(value):
    kind = value.WhichOneof("value")
    if kind == "struct_value":  # a JSON value (TFX's set_json_value_custom_property)
        from google.protobuf import json_format

        return json.dumps(json_format.MessageToDict(value.struct_value), sort_keys=True)
    return value.string_value or value.int_value or value.double_value


def prop(artifact, name: str) -> Optional[object]:
    if artifact is None or name not in artifact.custom_properties:
        return None
    return value_of(artifact.custom_properties[name])


def settings_values(text) -> dict:
    """The values of a settings object as core.settings.Settings.to_json wrote it ({} for anything else):
    TokenizeText's and LMEvaluator's parameters are one such JSON property of their executions."""
    if not isinstance(text, str) or not text.startswith("{"):
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data.get("values", {}) if isinstance(data, dict) else {}


def pushed_models(store) -> list:
    """PushedModel artifacts of pushes that happened (the Pusher records one even when it skips),
    published by a Pusher that completed (LIVE)."""
    from ml_metadata.proto import metadata_store_pb2

    return [a for a in store.get_artifacts_by_type("PushedModel")
            if prop(a, "pushed") == 1 and a.state == metadata_store_pb2.Artifact.LIVE]


def latest_push(store):
    """The PushedModel artifact of the latest push (pushed_models), or None: no push yet."""
    pushed = pushed_models(store)
    return max(pushed, key=lambda a: a.id) if pushed else None


def producer_of(store, artifact_id: int):
    """The execution that wrote the artifact; the one that ran, not a later cached reuse (None: none recorded)."""
    from ml_metadata.proto import metadata_store_pb2

    events = [e for e in store.get_events_by_artifact_ids([artifact_id]) if e.type == metadata_store_pb2.Event.OUTPUT]
    executions = store.get_executions_by_id(sorted({e.execution_id for e in events}))
    ran = [e for e in executions if e.last_known_state == metadata_store_pb2.Execution.COMPLETE]
    return min(ran or executions, key=lambda e: e.id) if executions else None


def pushed_model(store, pushed):
    """The Model artifact that the Pusher which recorded `pushed` (a PushedModel) took; None if none is recorded."""
    from ml_metadata.proto import metadata_store_pb2

    pusher = producer_of(store, pushed.id)
    if pusher is None:
        return None
    inputs = [e.artifact_id for e in store.get_events_by_execution_ids([pusher.id])
              if e.type == metadata_store_pb2.Event.INPUT]
    model_type = store.get_artifact_type("Model").id
    return next((a for a in store.get_artifacts_by_id(inputs) if a.type_id == model_type), None)


def run_outputs(store, started: float) -> Optional[dict]:
    """The artifacts, by type name, that the executions of the latest pipeline run output, made or taken
    from the cache (the newest of a type when several), when that run began at or after `started`
    (time.time()); None when there is no such run. A rerun that took all from the cache ends with the
    artifacts it took, not with the newest ones of the store, which another run (other data, other
    settings) may have made since."""
    from ml_metadata.proto import metadata_store_pb2

    if "pipeline_run" not in {t.name for t in store.get_context_types()}:
        return None
    runs = [c for c in store.get_contexts_by_type("pipeline_run") if c.create_time_since_epoch >= started * 1000]
    if not runs:
        return None
    executions = store.get_executions_by_context(max(runs, key=lambda c: c.id).id)
    events = store.get_events_by_execution_ids([e.id for e in executions]) if executions else []
    types = {t.id: t.name for t in store.get_artifact_types()}
    outputs = {}
    for artifact in store.get_artifacts_by_id([e.artifact_id for e in events
                                               if e.type == metadata_store_pb2.Event.OUTPUT]):
        name = types[artifact.type_id]
        if name not in outputs or artifact.id > outputs[name].id:
            outputs[name] = artifact
    return outputs


def run_summary(metadata_path: str, started: Optional[float] = None) -> str:
    """Where the run's results are: the evaluation report and loss curves, the training logs (a
    TensorBoard command), the pushed model and how to sample from it, the metadata store. started
    (time.time() at the run's start): the pushed model is this run's push, and a run that pushed
    nothing says so beside the last push; None: the last push."""
    store = sqlite_store(metadata_path)
    outputs = run_outputs(store, started) if started is not None else None
    pick = outputs.get if outputs is not None else lambda type_name: latest_artifact(store, type_name)
    evaluation, blessing, model_run, model, infra = (pick(t) for t in (
        "ModelEvaluation", "ModelBlessing", "ModelRun", "Model", "InfraBlessing"))

    def properties(artifact) -> dict:
        return {k: value_of(v) for k, v in artifact.custom_properties.items()}

    output_dir = os.path.dirname(os.path.abspath(metadata_path))
    last_push = latest_push(store)
    if outputs is not None:  # this run's Pusher's output: a push, made now or taken from the cache
        pushed = outputs.get("PushedModel")
        this_run = pushed if pushed is not None and prop(pushed, "pushed") == 1 else None
    else:
        this_run = last_push if started is None or (
            last_push is not None and last_push.create_time_since_epoch >= started * 1000) else None
    cached = this_run is not None and started is not None and this_run.create_time_since_epoch < started * 1000
    lines = summary_lines(
        evaluation=(evaluation.uri, properties(evaluation)) if evaluation is not None else None,
        blessing=properties(blessing) if blessing is not None else None,
        pushed_destination=prop(this_run, "pushed_destination") if this_run is not None else None,
        model_run_uri=model_run.uri if model_run is not None else None,
        saved_model=os.path.join(model.uri, SERVING_DIR) if model is not None else None,
        infra=properties(infra) if infra is not None else None, model_card=prop(this_run, MODEL_CARD_KEY),
        bpe_dir=run_bpe_dir(store), pushed_cached=cached,
        last_push=prop(last_push, "pushed_destination") if last_push is not None and this_run is None else None)
    lines.append(f"metadata store: {os.path.abspath(metadata_path)}")
    lines.append("lineage: " + runner_command("lineage")
                 + ("" if output_dir == os.path.abspath(OUTPUT_DIR) else f" --output={shlex.quote(output_dir)}")
                 # nothing pushed by this run: its trained model's, not an earlier push's
                 + (f" --model={shlex.quote(model.uri)}" if this_run is None and model is not None else ""))
    return "\n".join(lines)


def run_bpe_dir(store) -> Optional[str]:
    """bpe_dir_of the latest TokenizeText's settings: the GPT-2 BPE files of the store's runs."""
    types = {t.id: t.name for t in store.get_execution_types()}
    runs = [e for e in store.get_executions() if types.get(e.type_id, "").endswith(".TokenizeText")]
    return bpe_dir_of(prop(max(runs, key=lambda e: e.id), "settings") if runs else None)


def bpe_dir_of(tokenize_text_settings) -> Optional[str]:
    """The GPT-2 BPE files' directory a TokenizeText was given (absolute; its settings as JSON), when
    it tokenized with GPT-2 BPE: sampling offline needs them again."""
    settings = settings_values(tokenize_text_settings)
    if settings.get("tokenizer") != "gpt2" or not settings.get("bpe_dir"):
        return None
    return os.path.abspath(settings["bpe_dir"])


def time_split(metadata_path: str, started: float, ended: float) -> str:
    """Where a run's wall time went (started, ended: seconds since the epoch): each component that ran
    since `started` (its execution's time in ML Metadata; a cached one takes none), the training's own
    time apart (the ModelRun's timing.json), and the rest: start-up, imports, TFX's own work."""
    from ml_metadata.proto import metadata_store_pb2

    store = sqlite_store(metadata_path)
    types = {t.id: t.name.rsplit(".", 1)[-1] for t in store.get_execution_types()}
    ran = [e for e in store.get_executions() if e.create_time_since_epoch >= started * 1000
           and e.last_known_state == metadata_store_pb2.Execution.COMPLETE
           and not types[e.type_id].endswith("Resolver")]
    parts = []  # (component, seconds, the training's own seconds or None)
    for execution in sorted(ran, key=lambda e: e.id):
        name = types[execution.type_id]
        training = None
        if name == "Trainer":  # its output ModelRun holds the training's own time
            outputs = [e.artifact_id for e in store.get_events_by_execution_ids([execution.id])
                       if e.type == metadata_store_pb2.Event.OUTPUT]
            model_run = store.get_artifact_type("ModelRun").id
            timings = [files.read_json(os.path.join(a.uri, TIMING_FILE), default=None) or {}
                       for a in store.get_artifacts_by_id(outputs) if a.type_id == model_run]
            training = sum(t.get("training_seconds", 0.0) for t in timings)
        parts.append((name, (execution.last_update_time_since_epoch - execution.create_time_since_epoch) / 1000,
                      training))
    wall = ended - started
    listed = ", ".join(f"{name} {seconds:.0f} s" + ("" if training is None else f" (training {training:.0f} s)")
                       for name, seconds, training in parts)
    return (f"time: {wall:.0f} s in all: {listed or 'every component from the cache'}; start-up and the rest "
            f"{wall - sum(p[1] for p in parts):.0f} s; all but the training "
            f"{wall - sum(p[2] or 0.0 for p in parts):.0f} s")


def summary_lines(evaluation: Optional[Tuple[str, dict]], blessing: Optional[dict],
                  pushed_destination: Optional[str], model_run_uri: Optional[str] = None,
                  infra: Optional[dict] = None, model_card: Optional[str] = None,
                  bpe_dir: Optional[str] = None, last_push: Optional[str] = None,
                  saved_model: Optional[str] = None, pushed_cached: bool = False) -> List[str]:
    """The evaluation (its uri and properties), the blessing and the infra blessing (their
    properties), the pushed model's directory, its model card and the training run's directory, as
    a run ends with them: the report, the loss curves, the TensorBoard command (when the run wrote
    its logs) and the sample command (with the run's GPT-2 BPE files, bpe_dir, when it had them);
    from ML Metadata or a Kubeflow run's record. last_push: when this run pushed nothing, the
    directory of an earlier run's push, named beside the none. saved_model: the Trainer's SavedModel,
    sampled from when nothing was pushed. pushed_cached: the push is an earlier run's, which this run
    took from the cache (the same data, settings and model)."""
    lines = []
    if evaluation is not None:
        uri, values = evaluation
        # as the LMEvaluator's lines give them (ML Metadata and a Kubeflow run's record keep other digits)
        figure = {key: f"{value:.4f}" if isinstance(value, float) else str(value) for key, value in values.items()}
        lines.append(f"evaluation: val loss {figure.get('candidate_val_loss')}, "
                     f"train loss {figure.get('candidate_train_loss')}, val bpb {figure.get('candidate_val_bpb')} "
                     f"(unigram baseline {figure.get('unigram_val_bpb')}); "
                     f"report {shlex.quote(os.path.join(uri, REPORT_FILE))}")
        lines.append(f"loss curves: {shlex.quote(os.path.join(uri, PLOT_FILE))}")
    tensorboard_logs = os.path.join(model_run_uri, TENSORBOARD_DIR) if model_run_uri else None
    if tensorboard_logs and files.is_directory(tensorboard_logs):  # none written with --tensorboard=False
        lines.append(f"training logs: tensorboard --logdir {shlex.quote(tensorboard_logs)}")
    if blessing is not None:
        reason = blessing.get("blessing_reason")
        lines.append(f"blessed: {'yes' if blessing.get('blessed') == 1 else 'no'}" + (f" ({reason})" if reason else ""))
    if infra is not None and infra.get(INFRA_CHECKED_KEY) == 0:
        lines.append(f"infra check: not run ({infra.get(INFRA_CHECK_KEY)})")
    elif infra is not None:
        lines.append(f"infra check: {'passed' if infra.get('blessed') == 1 else 'failed'} in "
                     f"{infra.get(INFRA_CHECK_SECONDS_KEY)} s ({infra.get(INFRA_CHECK_KEY)})")
    gone = bool(pushed_destination) and push_gone(pushed_destination)
    if pushed_destination or not last_push:
        notes = (["an earlier run's push, taken from the cache"] if pushed_cached and pushed_destination else []) + (
            ["no longer there: moved or deleted"] if gone else [])
        lines.append(f"pushed model: {pushed_destination or 'none'}" + (f" ({'; '.join(notes)})" if notes else ""))
    else:
        lines.append(f"pushed model: none this run (the last push: {last_push})")
    if pushed_destination and model_card and not gone:
        lines.append(f"model card: {shlex.quote(model_card)}")
    # not pushed: the Trainer's SavedModel, the model evaluated (its training run may hold no checkpoint:
    # nanoGPT saves none before its first evaluation after iteration 0)
    sample_from = (None if gone else pushed_destination) or saved_model or model_run_uri
    if sample_from:
        # no --start: a prompt of the run's own data is not known here, and one of characters outside a
        # character model's vocabulary fails; sample's default is nanoGPT's, a newline
        lines.append(f"sample: {runner_command('sample')} --from={shlex.quote(sample_from)}"
                     + (f" --bpe_dir={shlex.quote(bpe_dir)}" if bpe_dir else ""))
    return lines
