"""A candidate whose loss is not finite: NOT BLESSED, and its evaluation and blessing go into a real
SQLite ML Metadata store (a NaN float property used to fail there: `no such column: nan`)."""

import math

import numpy as np
import tensorflow as tf
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from components.lm_evaluator.executor_test import data, run_executor, save_model  # noqa: F401 (fixture)
from test_helpers.lm_models import tiny_gpt


def test_a_nan_candidate_is_not_blessed_and_its_loss_is_stored_as_a_string(tmp_path, data):  # noqa: F811
    diverged = tiny_gpt()
    diverged.wte.weight.assign(tf.fill(diverged.wte.weight.shape, np.nan))  # a diverged training run
    model = save_model(diverged, tmp_path / "nan_model", 21)
    evaluation, blessing = run_executor(tmp_path, data, model, val_loss_threshold=3.5)
    assert blessing.get_int_custom_property("blessed") == 0
    assert "val loss is nan" in blessing.get_string_custom_property("blessing_reason")
    assert evaluation.get_string_custom_property("candidate_val_loss") == "nan"

    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(tmp_path / "metadata.sqlite")
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    store = metadata_store.MetadataStore(config)
    for artifact in (evaluation, blessing):
        artifact_type = metadata_store_pb2.ArtifactType(name=artifact.type_name)
        artifact.type_id = store.put_artifact_type(artifact_type)
        artifact.mlmd_artifact.ClearField("id")
        [artifact_id] = store.put_artifacts([artifact.mlmd_artifact])
        stored = store.get_artifacts_by_id([artifact_id])[0]
        for value in stored.custom_properties.values():
            assert not (value.HasField("double_value") and not math.isfinite(value.double_value))
    stored_evaluation = store.get_artifacts_by_type(evaluation.type_name)[0]
    assert stored_evaluation.custom_properties["candidate_val_loss"].string_value == "nan"
