"""Before a local run: what a run killed mid-way (kill -9, a power cut) left behind is cleared.

Such a run leaves its executions RUNNING in ML Metadata forever and its unfinished outputs
(`<pipeline_root>/<component>/<output>/<execution id>/`, with TokenizeText's `_staging-*` inside)
on disk. `runner.py run` holds an exclusive lock on the output directory while it runs, so when it
gets the lock no other local run is in progress: every RUNNING execution of the store is a dead
one. They are marked CANCELED, and their output directories, which no published artifact names,
removed.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import shutil
from typing import List

from model.errors import UserError

LOCK_FILE = ".runner.lock"


@contextlib.contextmanager
def exclusive_run(output_dir: str):
    """Hold the output directory's run lock; UserError when another local run holds it."""
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, LOCK_FILE), "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"another `runner.py run` is running in {output_dir}: wait for it to end, or use "
                            f"another --output") from None
        yield


def clear_dead_executions(metadata_path: str, pipeline_root: str) -> List[int]:
    """Mark the RUNNING executions of the store CANCELED and remove their unpublished outputs (call
    holding exclusive_run); the ids of the executions cleared."""
    from ml_metadata import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    if not os.path.isfile(metadata_path):
        return []
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = metadata_path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE
    store = metadata_store.MetadataStore(config)
    dead = [e for e in store.get_executions() if e.last_known_state == metadata_store_pb2.Execution.RUNNING]
    if not dead:
        return []
    published = {os.path.normpath(a.uri) for a in store.get_artifacts()}
    for execution in dead:
        execution.last_known_state = metadata_store_pb2.Execution.CANCELED
        for path in glob.glob(os.path.join(pipeline_root, "*", "*", str(execution.id))):
            if os.path.isdir(path) and os.path.normpath(path) not in published:
                shutil.rmtree(path, ignore_errors=True)
    store.put_executions(dead)
    return [e.id for e in dead]
