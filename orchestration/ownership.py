"""What a dead execution's outputs are, proven before anything is removed (orchestration/recovery.py).

TFX names an execution's output directories <pipeline_root>/<node>/<output>/<execution id>, and an
ML Metadata store numbers its executions from 1: a store moved away and a new one started on the
same pipeline root would give its executions the ids, and so the directories, of the old store's
published outputs. So a pipeline root is claimed by one store: PIPELINE_ROOT_MARK in it names the
store (a Context of type STORE_CONTEXT_TYPE that the store holds, named by a random id), and
`runner.py run` refuses, in one line and before anything runs, a store that is not the one the
pipeline root names. Within a pipeline root that this store claims, a directory is a dead
execution's own exactly when it lies at that execution's output path, under its own node, reached
without a symbolic link, and no artifact of the store records it; only such a directory is
removed, and never what a link inside the pipeline root points to. The Trainer's trainings
(<pipeline_root>/Trainer/trainings/) are no execution's output: an interrupted training is never
removed (components/trainer/trainings.py).
"""

from __future__ import annotations

import glob
import os
import uuid
from typing import List, Optional

from core import files
from core.errors import UserError

STORE_CONTEXT_TYPE = "nanogpt_tfx.MetadataStore"
PIPELINE_ROOT_MARK = ".metadata_store.json"


class ForeignPipelineRoot(UserError):
    """The pipeline root holds the outputs of another ML Metadata store."""


def store_id(store) -> str:
    """The store's own random id, made (and kept in the store) on first use."""
    from ml_metadata.proto import metadata_store_pb2

    found = [c.name for c in _contexts_of_type(store, STORE_CONTEXT_TYPE)]
    if found:
        return found[0]
    type_id = store.put_context_type(metadata_store_pb2.ContextType(name=STORE_CONTEXT_TYPE))
    name = uuid.uuid4().hex
    store.put_contexts([metadata_store_pb2.Context(type_id=type_id, name=name)])
    return name


def _contexts_of_type(store, type_name: str):
    from ml_metadata import errors

    try:
        return store.get_contexts_by_type(type_name)
    except errors.NotFoundError:
        return []


def claim_pipeline_root(store, metadata_path: str, pipeline_root: str) -> None:
    """Mark the pipeline root as this store's; ForeignPipelineRoot when it is another's (or holds
    outputs from before marks, which this store, holding no execution, cannot have made)."""
    identity = store_id(store)
    mark = os.path.join(pipeline_root, PIPELINE_ROOT_MARK)
    claimed = files.read_json(mark, default=None)
    if claimed is not None and claimed.get("store") != identity:
        raise ForeignPipelineRoot(
            f"{pipeline_root} holds the outputs of another ML Metadata store (the one that was at "
            f"{claimed.get('metadata_path')}), not of {metadata_path}: put that store back, or use another --output")
    if claimed is not None:
        _check_where_it_was_made(claimed.get("metadata_path"), metadata_path, pipeline_root, identity)
    if claimed is None:
        made = [n for n in os.listdir(pipeline_root) if n != PIPELINE_ROOT_MARK] if os.path.isdir(pipeline_root) else []
        if made and not store.get_executions():
            raise ForeignPipelineRoot(
                f"{pipeline_root} holds outputs ({', '.join(sorted(made)[:3])}) that {metadata_path} does not record "
                f"(a store moved away or removed): put that store back, or use another --output")
        files.write_json(mark, {"store": identity, "metadata_path": os.path.abspath(metadata_path)})


def _check_where_it_was_made(made_at: Optional[str], metadata_path: str, pipeline_root: str, identity: str) -> None:
    """ForeignPipelineRoot when the store and its pipeline root (an output directory) are no longer
    where the store was made: moved, or copied. TFX records each artifact by its absolute path, so a
    moved store names a cache, a last blessed model and a lineage that lie nowhere, and a copy's would
    be read from the original. The same files by another path (a symbolic link) are where they were."""
    here = os.path.abspath(metadata_path)
    if not made_at or made_at == here or (os.path.exists(made_at) and os.path.samefile(made_at, here)):
        return
    old, new = os.path.dirname(made_at), os.path.dirname(here)
    # the original, still there, claims its pipeline root (at the same place in it) for this very store
    original_root = os.path.join(old, os.path.relpath(os.path.abspath(pipeline_root), new))
    original = files.read_json(os.path.join(original_root, PIPELINE_ROOT_MARK), default=None) or {}
    if os.path.exists(made_at) and original.get("store") == identity:
        raise ForeignPipelineRoot(
            f"{new} is a copy of {old}: its ML Metadata store records each artifact by its path there (TFX keeps "
            f"absolute paths), so a run here would take its cache and its last blessed model from {old}: run with "
            f"--output={old}, or give a new --output to start anew")
    raise ForeignPipelineRoot(
        f"{new} was moved here from {old}: its ML Metadata store records each artifact by its path there (TFX keeps "
        f"absolute paths), where its cache, its last blessed model and its lineage no longer are: move it back to "
        f"{old}, or give a new --output to start anew")


def owns(store, pipeline_root: str) -> bool:
    """Whether the pipeline root is this store's (claim_pipeline_root)."""
    claimed = files.read_json(os.path.join(pipeline_root, PIPELINE_ROOT_MARK), default=None)
    return claimed is not None and claimed.get("store") == store_id(store)


def node_of(store, execution) -> Optional[str]:
    """The id of the pipeline node that ran the execution (from its TFX `node` context)."""
    node_type = [t.id for t in store.get_context_types() if t.name == "node"]
    for context in store.get_contexts_by_execution(execution.id):
        if context.type_id in node_type and "." in context.name:
            return context.name.split(".", 1)[1]
    return None


def unpublished_outputs(store, execution, pipeline_root: str, published) -> List[str]:
    """The directories that are the dead execution's own and that no artifact records: its outputs
    under its node's directory and TFX's working directory of it."""
    node = node_of(store, execution)
    if node is None:
        return []
    node_dir = os.path.join(pipeline_root, node)
    paths = glob.glob(os.path.join(glob.escape(node_dir), "*", str(execution.id)))
    paths.append(os.path.join(node_dir, ".system", "executor_execution", str(execution.id)))
    return [p for p in paths if os.path.isdir(p) and not os.path.islink(p) and os.path.normpath(p) not in published]
