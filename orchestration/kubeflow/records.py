"""The records of `run --spec` runs, which stand in for Kubeflow's ML Metadata: one JSON file a run,
pipeline_root/<pipeline>/<run id>/kfp_local_run.json, rewritten atomically after each task."""

from __future__ import annotations

import json
import os
import uuid
from typing import Dict, Optional, Tuple

from orchestration.kubeflow import launchers

RECORD_FILE = "kfp_local_run.json"
RECORDS = f"*/*/{RECORD_FILE}"  # the runs' records under a pipeline root: <pipeline>/<run id>/

# The state of an artifact set aside (ML Metadata's name): neither the cache nor a resolver takes it.
SET_ASIDE = "MARKED_FOR_DELETION"


def tf_gfile():
    import tensorflow as tf

    return tf.io.gfile


def write_record(path: str, record: dict) -> None:
    """Atomically: a temporary file renamed over the record."""
    gfile = tf_gfile()
    temporary = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    with gfile.GFile(temporary, "w") as f:
        json.dump(record, f, indent=1, sort_keys=True)
    gfile.rename(temporary, path, overwrite=True)


def earlier_records(pipeline_root: str) -> Dict[str, dict]:
    """The records of the earlier runs under the pipeline root (of any pipeline), by their paths."""
    gfile = tf_gfile()
    records = {}
    for path in gfile.glob(f"{pipeline_root.rstrip('/')}/{RECORDS}"):
        with gfile.GFile(path) as f:
            records[path] = json.load(f)
    return records


def latest_push(artifacts) -> Optional[str]:
    """The destination of the newest push among runs' artifact records (a Pusher that skipped pushed
    nothing; a set-aside artifact is none); None when there is none."""
    pushes = [a for a in artifacts if a["schema_title"] == "tfx.PushedModel" and a["metadata"].get("pushed") == 1
              and a.get("state") != SET_ASIDE]
    return max(pushes, key=lambda a: a["create_time"])["metadata"]["pushed_destination"] if pushes else None


def latest_model(pipeline_root: str) -> Optional[Tuple[str, bool]]:
    """(path, pushed) of the newest model the runs under the pipeline root made, for `runner.py sample
    --from`: the newest push's destination, else the newest trained model's SavedModel (not blessed,
    not pushed); None when they made neither."""
    from components.artifact_layout import SERVING_DIR

    artifacts = [a for r in earlier_records(pipeline_root).values() for a in r["artifacts"]
                 if a.get("state") != SET_ASIDE]
    pushed = latest_push(artifacts)
    if pushed:
        return pushed, True
    models = [a for a in artifacts if a["schema_title"] == "tfx.Model"]
    return (f"{max(models, key=lambda a: a['create_time'])['uri']}/{SERVING_DIR}", False) if models else None


def cancel_dead_runs(record_paths: Dict[str, dict], artifacts) -> None:
    """The records of earlier runs left RUNNING by a launcher that is proven dead (killed: kill
    -9, a power cut; launchers.py: never another machine's or container's live run) are
    marked CANCELED. What their tasks recorded stays usable (the cache takes it); what the killed
    task wrote (its directory, which the record does not name, and what a push named before
    making it) and a record's half-written copy are removed first, never through a symbolic link,
    so that a kill during this leaves the run RUNNING, to be cleared by the next."""
    gfile = tf_gfile()
    for path, record in record_paths.items():
        if record.get("state") == "RUNNING" and launchers.proven_dead(record.get("launcher", {})):
            run_root = path[:-len(RECORD_FILE)].rstrip("/")
            for entry in sorted(gfile.listdir(run_root)):
                name, where = entry.rstrip("/"), f"{run_root}/{entry.rstrip('/')}"
                if name.startswith(f"{RECORD_FILE}.tmp-"):
                    gfile.remove(where)
                elif name != RECORD_FILE and name not in record.get("tasks", {}) and gfile.isdir(where):
                    _remove_left_by_push(where, artifacts)
                    remove_within(where, run_root)
                    print(f"  run {os.path.basename(run_root)} was killed during {name}: its unrecorded "
                          f"outputs {where} are removed", flush=True)
            record["state"] = "CANCELED"
            write_record(path, record)


def remove_within(path: str, root: str) -> None:
    """Remove a directory of a run's own (locally: never through a symbolic link)."""
    from core.files import is_local, remove_tree_within

    if is_local(path):
        remove_tree_within(path, root)
    else:
        tf_gfile().rmtree(path)


def _remove_left_by_push(task_dir: str, artifacts) -> None:
    """What a killed push named before making it outside its run (components/pusher), unless a
    record names it as pushed."""
    from components.pusher.marks import left_by

    pushed = {a.get("metadata", {}).get("pushed_destination") for a in artifacts}
    for output in tf_gfile().glob(f"{task_dir}/*"):
        for path in left_by(output):
            if path not in pushed and tf_gfile().isdir(path):
                remove_within(path, os.path.dirname(path.rstrip("/")))
