"""Reading the pipeline's ML Metadata store: what a run produced and where it lies."""

from __future__ import annotations

from typing import Optional


def _store(metadata_path: str):
    from ml_metadata import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = metadata_path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(config)


def _latest(store, type_name: str):
    artifacts = store.get_artifacts_by_type(type_name)
    return max(artifacts, key=lambda a: (a.create_time_since_epoch, a.id)) if artifacts else None


def _prop(artifact, name: str) -> Optional[object]:
    if artifact is None or name not in artifact.custom_properties:
        return None
    value = artifact.custom_properties[name]
    return value.string_value or value.int_value or value.double_value


def run_summary(metadata_path: str) -> str:
    """Where the latest pushed model, evaluation report and metadata store are."""
    import os

    store = _store(metadata_path)
    evaluation = _latest(store, "ModelEvaluation")
    blessing = _latest(store, "ModelBlessing")
    pushed = [a for a in store.get_artifacts_by_type("PushedModel") if _prop(a, "pushed") == 1]
    lines = []
    if evaluation is not None:
        lines.append(f"evaluation: val loss {_prop(evaluation, 'candidate_val_loss')}, "
                     f"train loss {_prop(evaluation, 'candidate_train_loss')}; "
                     f"report {os.path.join(evaluation.uri, 'report.md')}")
    if blessing is not None:
        lines.append(f"blessed: {'yes' if _prop(blessing, 'blessed') == 1 else 'no'}"
                     + (f" ({_prop(blessing, 'blessing_reason')})" if _prop(blessing, 'blessing_reason') else ""))
    if pushed:
        latest = max(pushed, key=lambda a: a.id)
        lines.append(f"pushed model: {_prop(latest, 'pushed_destination')}")
    else:
        lines.append("pushed model: none")
    lines.append(f"metadata store: {os.path.abspath(metadata_path)}")
    return "\n".join(lines)
