"""Before a local run: what a run killed mid-way (kill -9, a power cut) left behind is cleared.

Such a run leaves its executions RUNNING in ML Metadata forever and its unfinished outputs
(`<pipeline_root>/<component>/<output>/<execution id>/`, with TokenizeText's `_staging-*` inside)
on disk, and a push killed after its copy a version directory in the serving directory that no
PushedModel records. `runner.py run` holds an exclusive lock on the output directory while it
runs, so when it gets the lock no other local run is in progress: every RUNNING execution of the
store is a dead one. They are marked CANCELED, and their output directories, which no published
artifact names, removed: only those orchestration/ownership.py proves theirs (a pipeline root claimed
by this store, the execution's own path, no symbolic link on the way), and what a dead push named
before making it. An interrupted training is no execution's output: the next Trainer continues it.

A cached artifact that a reader finds damaged is set aside (set_aside_damaged) so that the next
run makes it again instead of taking it from the cache: before a run, the TokenizeText shards no
longer of their recorded sizes (set_aside_changed_shards, a stat a file); during it, a reader's
DamagedShard, or a reader's failure that names no file whose input shards no longer match their
recorded SHA-256 (set_aside_damaged_inputs, read only then); run_remaking_damaged runs the
pipeline again after each.
"""

from __future__ import annotations

import contextlib
import glob
import os
from typing import List, Optional

from core.errors import UserError

LOCK_FILE = ".runner.lock"


@contextlib.contextmanager
def exclusive_run(output_dir: str):
    """Hold the output directory's run lock; UserError when another local run holds it."""
    from core.files import exclusive_lock

    with exclusive_lock(os.path.join(output_dir, LOCK_FILE), UserError(
            f"another `runner.py run` is running in {output_dir}: wait for it to end, or use another --output")):
        yield


def _writable_store(metadata_path: str, create: bool = False):
    from ml_metadata import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = metadata_path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE if create \
        else metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE
    return metadata_store.MetadataStore(config)


def claim_pipeline_root(metadata_path: str, pipeline_root: str) -> None:
    """Before a run: the pipeline root is this store's, or the run stops here, in one line
    (orchestration/ownership.py: a store moved away and a new one started would name the old one's outputs)."""
    from orchestration import ownership

    ownership.claim_pipeline_root(_writable_store(metadata_path, create=True), metadata_path, pipeline_root)


def _recorded_pushes(store) -> set:
    return {os.path.normpath(a.custom_properties["pushed_destination"].string_value)
            for a in store.get_artifacts() if "pushed_destination" in a.custom_properties}


def clear_dead_executions(metadata_path: str, pipeline_root: str, serving_dir: str = "") -> List[int]:
    """Mark the RUNNING executions of the store CANCELED and remove their unpublished outputs (call
    holding exclusive_run), with, for a dead push, what it named before making it in serving_dir
    (components/pusher); only what orchestration/ownership.py proves theirs, never through a symbolic
    link. The ids of the executions cleared."""
    from ml_metadata.proto import metadata_store_pb2

    from components.pusher.marks import left_by
    from core.files import remove_tree_within
    from orchestration import ownership

    if not os.path.isfile(metadata_path):
        return []
    store = _writable_store(metadata_path)
    dead = [e for e in store.get_executions() if e.last_known_state == metadata_store_pb2.Execution.RUNNING]
    if not dead:
        return []
    owned = ownership.owns(store, pipeline_root)
    published = {os.path.normpath(a.uri) for a in store.get_artifacts()}
    pusher_types = {t.id for t in store.get_execution_types() if t.name.endswith("Pusher")}
    for execution in dead:
        execution.last_known_state = metadata_store_pb2.Execution.CANCELED
        outputs = ownership.unpublished_outputs(store, execution, pipeline_root, published) if owned else []
        if execution.type_id in pusher_types and serving_dir:
            for path in (p for output in outputs for p in left_by(output)):
                if os.path.normpath(path) not in _recorded_pushes(store):
                    remove_tree_within(path, serving_dir)
        for path in outputs:
            remove_tree_within(path, pipeline_root)
    # TFX removes an execution's stateful working directory when it succeeds, and names it by a UUID
    # that it does not record: with no run in progress, each one left is a dead execution's
    if owned:
        for path in glob.glob(os.path.join(glob.escape(pipeline_root), "*", ".system", "stateful_working_dir", "*")):
            remove_tree_within(path, pipeline_root)
    store.put_executions(dead)
    return [e.id for e in dead]


def set_aside_damaged(metadata_path: str, uri: str) -> Optional[str]:
    """Mark the live artifact stored at `uri` (found damaged by a reader) MARKED_FOR_DELETION: TFX's
    cache reuses an execution's outputs only while all of them are LIVE, so the component that made
    it runs again instead of being taken from the cache. 'the Examples artifact #N of <component>',
    or None when no live artifact of the store lies at `uri`."""
    from ml_metadata.proto import metadata_store_pb2

    store = _writable_store(metadata_path)
    damaged = [a for a in store.get_artifacts_by_uri(uri.rstrip("/"))
               if a.state == metadata_store_pb2.Artifact.LIVE]
    if not damaged:
        return None
    for artifact in damaged:
        artifact.state = metadata_store_pb2.Artifact.MARKED_FOR_DELETION
    store.put_artifacts(damaged)
    artifact = damaged[0]
    producers = [e.execution_id for e in store.get_events_by_artifact_ids([artifact.id])
                 if e.type == metadata_store_pb2.Event.OUTPUT]
    [type_name] = [t.name for t in store.get_artifact_types_by_id([artifact.type_id])]
    names = {t.id: t.name.rsplit(".", 1)[-1] for t in store.get_execution_types()}
    made_by = [names[e.type_id] for e in store.get_executions_by_id(producers)] or ["its component"]
    return f"the {type_name} artifact #{artifact.id} of {made_by[0]}"


def _set_aside_damaged_shards(metadata_path: str, artifacts, recorded_as: str, find_damage,
                              reader: str = "") -> List[str]:
    """Set aside (set_aside_damaged) each live artifact of `artifacts` whose shards
    find_damage(uri, what it records as `recorded_as`) finds damaged; a line for each."""
    import json

    from ml_metadata.proto import metadata_store_pb2

    lines = []
    for artifact in artifacts:
        recorded = artifact.custom_properties.get(recorded_as)
        if artifact.state != metadata_store_pb2.Artifact.LIVE or recorded is None:
            continue
        found = find_damage(artifact.uri, json.loads(recorded.string_value))
        if found:
            damaged = set_aside_damaged(metadata_path, artifact.uri)
            lines.append(f"{'; '.join(found)}{reader}: {damaged} is set aside and made again")
    return lines


def set_aside_changed_shards(metadata_path: str) -> List[str]:
    """Before a run: set aside (set_aside_damaged) each live Examples artifact whose shard files are
    no longer the sizes recorded when they were written; a line for each, saying what was found and
    what is made again."""
    from core import shards

    if not os.path.isfile(metadata_path):
        return []
    artifacts = _writable_store(metadata_path).get_artifacts_by_type("Examples")
    return _set_aside_damaged_shards(metadata_path, artifacts, shards.SHARD_BYTES, shards.shard_changes)


def last_execution_id(metadata_path: str) -> int:
    """The id of the store's newest execution (0: none), to tell the executions of a run that follows."""
    if not os.path.isfile(metadata_path):
        return 0
    return max((e.id for e in _writable_store(metadata_path).get_executions()), default=0)


def set_aside_damaged_inputs(metadata_path: str, after_execution: int, failure: str) -> List[str]:
    """After a run failed with an error that is not a user's (one that names no file, such as Beam's
    zlib.error or DataLossError when the standard Transform reads a shard damaged in place): read the
    shards of each live artifact that the executions which failed (those after `after_execution`)
    took as input, compare them with the SHA-256 digests recorded when they were written, and set
    aside each one found damaged; a line for each, naming the reader and its `failure` (none: the
    failure is something else, and goes on as it is)."""
    from ml_metadata.proto import metadata_store_pb2

    from core import shards

    if not os.path.isfile(metadata_path):
        return []
    store = _writable_store(metadata_path)
    names = {t.id: t.name.rsplit(".", 1)[-1] for t in store.get_execution_types()}
    lines = []
    for execution in store.get_executions():
        if execution.id <= after_execution or execution.last_known_state != metadata_store_pb2.Execution.FAILED:
            continue
        inputs = sorted({e.artifact_id for e in store.get_events_by_execution_ids([execution.id])
                         if e.type == metadata_store_pb2.Event.INPUT})
        reader = f", which {names[execution.type_id]} read when it failed ({failure})"
        lines += _set_aside_damaged_shards(metadata_path, store.get_artifacts_by_id(inputs), shards.SHARD_SHA256,
                                           shards.damaged_shards, reader)
    return lines


# Runs again after a damaged artifact was set aside, at most: an artifact made anew and found
# damaged again is not the cache's problem (a failing disk) and ends the run.
MAX_REMAKES = 3


def run_remaking_damaged(metadata_path: str, run_once) -> None:
    """run_once() (the pipeline under LocalDagRunner); when it fails on a damaged cached artifact, a
    reader's DamagedShard or an error (not a user's) of an execution whose input shards no longer
    match their SHA-256, the artifact is set aside with a line that says so, and the pipeline runs
    again, in which the component that made it makes it anew (MAX_REMAKES times at most). Any other
    failure goes on as it is."""
    from core.errors import one_line
    from core.shards import DamagedShard

    for remakes in range(MAX_REMAKES + 1):
        after = last_execution_id(metadata_path)
        try:
            return run_once()
        except DamagedShard as e:
            damaged = set_aside_damaged(metadata_path, e.examples) if remakes < MAX_REMAKES else None
            if damaged is None:
                raise
            lines = [f"{e.problem}: {damaged} is set aside and made again"]
        except UserError:  # says what is wrong already
            raise
        except Exception as e:  # noqa: BLE001 (any failure of a reader: re-raised unless its input is damaged)
            kind = ".".join(n for n in (type(e).__module__, type(e).__qualname__) if n != "builtins")
            failure = f"{kind}: {one_line(e)}"
            failure = failure if len(failure) <= 160 else failure[:157] + "..."
            lines = set_aside_damaged_inputs(metadata_path, after, failure) if remakes < MAX_REMAKES else []
            if not lines:
                raise
        print("\n".join(lines) + "; running the pipeline again", flush=True)
