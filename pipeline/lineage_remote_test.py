"""`runner.py lineage --model=...` on a model whose artifacts lie on a remote file system: their files
(the vocabulary, the tokenizer) are read through tf.io.gfile, here on ram:// (TensorFlow's in-memory
file system), from an ML Metadata store written as a pipeline on Kubeflow would write it."""

import json

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2 as mlmd

import runner
from training.config import TOKENIZER_FILE

ROOT = "ram://lineage_test"


def _write(path, text):
    import tensorflow as tf

    tf.io.gfile.makedirs(path.rsplit("/", 1)[0])
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(text)


def _store_with_a_pushed_model(metadata_path):
    """Transform's graph -> Trainer -> Model and ModelRun -> Pusher -> PushedModel, all under ram://."""
    config = mlmd.ConnectionConfig()
    config.sqlite.filename_uri = metadata_path
    config.sqlite.connection_mode = mlmd.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    store = metadata_store.MetadataStore(config)
    types = {n: store.put_artifact_type(mlmd.ArtifactType(name=n))
             for n in ("TransformGraph", "Model", "ModelRun", "PushedModel")}

    def artifact(type_name, uri, **custom):
        a = mlmd.Artifact(type_id=types[type_name], uri=uri, state=mlmd.Artifact.LIVE)
        for key, value in custom.items():
            if isinstance(value, int):
                a.custom_properties[key].int_value = value
            else:
                a.custom_properties[key].string_value = value
        return store.put_artifacts([a])[0]

    def execution(type_name, inputs, outputs):
        type_id = store.put_execution_type(mlmd.ExecutionType(name=f"tfx.components.{type_name}"))
        (execution_id,) = store.put_executions([mlmd.Execution(type_id=type_id, last_known_state=mlmd.Execution.COMPLETE)])
        events = []
        for kind, artifacts in ((mlmd.Event.INPUT, inputs), (mlmd.Event.OUTPUT, outputs)):
            for key, artifact_id in artifacts.items():
                event = mlmd.Event(artifact_id=artifact_id, execution_id=execution_id, type=kind)
                event.path.steps.add().key = key
                events.append(event)
        store.put_events(events)

    graph = artifact("TransformGraph", f"{ROOT}/Transform/transform_graph")
    model = artifact("Model", f"{ROOT}/Trainer/model")
    model_run = artifact("ModelRun", f"{ROOT}/Trainer/model_run")
    pushed = artifact("PushedModel", f"{ROOT}/Pusher/pushed_model", pushed=1,
                      pushed_destination=f"{ROOT}/serving_model/17")
    execution("Transform", {}, {"transform_graph": graph})
    execution("Trainer", {"transform_graph": graph}, {"model": model, "model_run": model_run})
    execution("Pusher", {"model": model}, {"pushed_model": pushed})


def test_lineage_of_a_model_on_a_remote_file_system(tmp_path, capsys):
    _write(f"{ROOT}/Transform/transform_graph/transform_fn/assets/chars", "a\nb\n")
    _write(f"{ROOT}/Trainer/model_run/{TOKENIZER_FILE}", json.dumps({"kind": "char", "chars": ["\n", "a", "b"]}))
    _store_with_a_pushed_model(str(tmp_path / "metadata.sqlite"))
    runner.main(["lineage", f"--output={tmp_path}", f"--model={ROOT}/serving_model/17/"])
    text = capsys.readouterr().out
    assert text.startswith(f"lineage of PushedModel #4: {ROOT}/serving_model/17")
    assert "vocabulary files: transform_fn/assets/chars" in text  # listed on ram://
    assert "vocabulary: 3 characters" in text  # the ModelRun's tokenizer.json, read on ram://
