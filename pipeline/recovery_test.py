"""What a killed run left (executions RUNNING, unfinished outputs with `_staging-*` inside) is
cleared before the next local run, on a real SQLite ML Metadata store."""

import os

import pytest
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

from model.errors import UserError
from pipeline import recovery

State = metadata_store_pb2.Execution


def _store(path):
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(path)
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    return metadata_store.MetadataStore(config)


def test_dead_executions_are_cancelled_and_their_outputs_removed(tmp_path):
    metadata_path, root = tmp_path / "metadata.sqlite", tmp_path / "pipeline_root"
    store = _store(metadata_path)
    type_id = store.put_execution_type(metadata_store_pb2.ExecutionType(name="TokenizeText"))
    finished, killed = store.put_executions([metadata_store_pb2.Execution(type_id=type_id, last_known_state=s)
                                             for s in (State.COMPLETE, State.RUNNING)])
    artifact_type = store.put_artifact_type(metadata_store_pb2.ArtifactType(name="Examples"))
    kept = root / "TokenizeText" / "examples" / str(finished)
    store.put_artifacts([metadata_store_pb2.Artifact(type_id=artifact_type, uri=str(kept))])
    left = root / "TokenizeText" / "examples" / str(killed) / "_staging-1a2b3c4d" / "Split-train"
    for directory in (kept, left):
        os.makedirs(directory)

    with recovery.exclusive_run(str(tmp_path)):
        with pytest.raises(UserError, match="another `runner.py run` is running in"):
            with recovery.exclusive_run(str(tmp_path)):
                pass
        assert recovery.clear_dead_executions(str(metadata_path), str(root)) == [killed]
    states = {e.id: e.last_known_state for e in _store(metadata_path).get_executions()}
    assert states == {finished: State.COMPLETE, killed: State.CANCELED}
    assert kept.is_dir() and not (root / "TokenizeText" / "examples" / str(killed)).exists()
    assert recovery.clear_dead_executions(str(metadata_path), str(root)) == []  # a rerun finds nothing
