"""What a killed run left (executions RUNNING, unfinished outputs with `_staging-*` inside) is
cleared before the next local run, on a real SQLite ML Metadata store: only what is proven the dead
execution's own, never through a symbolic link, never another store's outputs."""

import json
import os

import pytest
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

from core.errors import UserError
from orchestration import recovery
from test_helpers.damage import flip_bytes_in_place

State = metadata_store_pb2.Execution


def _store(path):
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(path)
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    return metadata_store.MetadataStore(config)


def _executions(store, node, *states):
    """Executions of the pipeline node `node` as TFX registers them (with its `node` context)."""
    type_id = store.put_execution_type(metadata_store_pb2.ExecutionType(name=f"tfx.components.{node}"))
    context_type = store.put_context_type(metadata_store_pb2.ContextType(name="node"))
    [context] = store.put_contexts([metadata_store_pb2.Context(type_id=context_type, name=f"pipeline.{node}")])
    ids = store.put_executions([metadata_store_pb2.Execution(type_id=type_id, last_known_state=s) for s in states])
    store.put_attributions_and_associations([], [metadata_store_pb2.Association(context_id=context, execution_id=e)
                                                 for e in ids])
    return ids


def test_dead_executions_are_cancelled_and_their_outputs_removed(tmp_path):
    metadata_path, root = tmp_path / "metadata.sqlite", tmp_path / "pipeline_root"
    store = _store(metadata_path)
    finished, killed = _executions(store, "TokenizeText", State.COMPLETE, State.RUNNING)
    recovery.claim_pipeline_root(str(metadata_path), str(root))
    artifact_type = store.put_artifact_type(metadata_store_pb2.ArtifactType(name="Examples"))
    kept = root / "TokenizeText" / "examples" / str(finished)
    store.put_artifacts([metadata_store_pb2.Artifact(type_id=artifact_type, uri=str(kept))])
    left = root / "TokenizeText" / "examples" / str(killed) / "_staging-1a2b3c4d" / "Split-train"
    other_node = root / "Transform" / "transformed_examples" / str(killed)  # not the dead execution's node
    training = root / "Trainer" / "trainings" / "0123456789abcdef" / "checkpoints"  # an interrupted training
    system = root / "TokenizeText" / ".system"  # TFX's working directories: the killed execution's go
    kept_output, left_output = (system / "executor_execution" / str(e) for e in (finished, killed))
    left_stateful = system / "stateful_working_dir" / "0b5c7e4e-6f1d-4a8e-9c1e-3f2d6a7b8c9d"
    for directory in (kept, left, kept_output, left_output / ".temp", left_stateful, other_node, training):
        os.makedirs(directory)

    with recovery.exclusive_run(str(tmp_path)):
        with pytest.raises(UserError, match="another `runner.py run` is running in"):
            with recovery.exclusive_run(str(tmp_path)):
                pass
        assert recovery.clear_dead_executions(str(metadata_path), str(root)) == [killed]
    states = {e.id: e.last_known_state for e in _store(metadata_path).get_executions()}
    assert states == {finished: State.COMPLETE, killed: State.CANCELED}
    assert kept.is_dir() and not (root / "TokenizeText" / "examples" / str(killed)).exists()
    assert kept_output.is_dir() and not left_output.exists() and not left_stateful.exists()
    assert other_node.is_dir() and training.is_dir()
    assert recovery.clear_dead_executions(str(metadata_path), str(root)) == []  # a rerun finds nothing


def test_nothing_behind_a_symbolic_link_in_the_pipeline_root_is_removed(tmp_path):
    """A dead execution's output path that is a link, or reached through one (a component's folder
    linked to a disk elsewhere): what the link points to stays whole."""
    metadata_path, root, elsewhere = tmp_path / "metadata.sqlite", tmp_path / "pipeline_root", tmp_path / "elsewhere"
    store = _store(metadata_path)
    [transform] = _executions(store, "Transform", State.RUNNING)
    [trainer] = _executions(store, "Trainer", State.RUNNING)
    recovery.claim_pipeline_root(str(metadata_path), str(root))
    for directory in (elsewhere / "transform" / "transformed_examples" / str(transform) / "Split-train",
                      elsewhere / "model_run" / "checkpoints"):
        os.makedirs(directory)
    os.symlink(elsewhere / "transform", root / "Transform")  # the component's folder, on another disk
    os.makedirs(root / "Trainer" / "model_run")
    os.symlink(elsewhere / "model_run", root / "Trainer" / "model_run" / str(trainer))  # the output itself
    assert sorted(recovery.clear_dead_executions(str(metadata_path), str(root))) == sorted([transform, trainer])
    assert (elsewhere / "transform" / "transformed_examples" / str(transform) / "Split-train").is_dir()
    assert (elsewhere / "model_run" / "checkpoints").is_dir() and os.path.islink(root / "Trainer" / "model_run" /
                                                                                 str(trainer))


def test_a_replaced_store_neither_runs_on_nor_removes_the_old_stores_outputs(tmp_path):
    """The store moved away and a new one started: its execution ids start again at 1, and its
    first executions would name the old one's outputs. The pipeline root names its store: the new
    one is refused in one line and removes nothing; the old one, put back, runs on."""
    from orchestration.ownership import ForeignPipelineRoot

    metadata_path, root = tmp_path / "metadata.sqlite", tmp_path / "pipeline_root"
    store = _store(metadata_path)
    [old] = _executions(store, "Trainer", State.COMPLETE)
    recovery.claim_pipeline_root(str(metadata_path), str(root))
    published = root / "Trainer" / "model_run" / str(old)
    os.makedirs(published / "checkpoints")
    os.rename(metadata_path, tmp_path / "moved.sqlite")

    store = _store(metadata_path)  # a new store: its first execution has the old one's id, dead
    [new] = _executions(store, "Trainer", State.RUNNING)
    assert new == old
    with pytest.raises(ForeignPipelineRoot, match=rf"^{root} holds the outputs of another ML Metadata store \(the one "
                                                  rf"that was at {metadata_path}\), not of {metadata_path}: put that "
                                                  rf"store back, or use another --output$"):
        recovery.claim_pipeline_root(str(metadata_path), str(root))
    assert recovery.clear_dead_executions(str(metadata_path), str(root)) == [new]  # cancelled, nothing removed
    assert (published / "checkpoints").is_dir()

    os.remove(metadata_path)  # a pipeline root from before the claims, with a new store: refused too
    os.remove(root / ".metadata_store.json")
    with pytest.raises(ForeignPipelineRoot, match=r"holds outputs \(Trainer\) that .* does not record"):
        recovery.claim_pipeline_root(str(metadata_path), str(root))
    os.replace(tmp_path / "moved.sqlite", metadata_path)  # the old store, back: its root again
    recovery.claim_pipeline_root(str(metadata_path), str(root))


def test_an_output_directory_moved_or_copied_is_named_in_one_line_and_one_reached_by_a_link_runs(tmp_path):
    """TFX records each artifact by its absolute path: an output directory moved elsewhere names a
    cache and a last blessed model that lie nowhere (the LMEvaluator failed on the missing model), and
    a copy's would be read from the original. Both are refused before anything runs; the same
    directory by another path runs."""
    import shutil

    from orchestration.ownership import ForeignPipelineRoot

    def claim(output):
        recovery.claim_pipeline_root(str(output / "metadata.sqlite"), str(output / "pipeline_root"))

    made = tmp_path / "made"
    os.makedirs(made / "pipeline_root")
    _executions(_store(made / "metadata.sqlite"), "Trainer", State.COMPLETE)
    claim(made)
    claim(made)  # where it was made: runs
    shutil.copytree(made, tmp_path / "copy")
    with pytest.raises(ForeignPipelineRoot, match=rf"^{tmp_path}/copy is a copy of {made}: its ML Metadata store "
                                                  rf"records each artifact by its path there .* run with "
                                                  rf"--output={made}, or give a new --output to start anew$"):
        claim(tmp_path / "copy")
    os.rename(made, tmp_path / "moved")
    with pytest.raises(ForeignPipelineRoot, match=rf"^{tmp_path}/moved was moved here from {made}: .* move it back "
                                                  rf"to {made}, or give a new --output to start anew$"):
        claim(tmp_path / "moved")
    os.makedirs(made / "pipeline_root")  # a new output where it was made: the moved one is no copy of it
    _store(made / "metadata.sqlite")
    claim(made)
    with pytest.raises(ForeignPipelineRoot, match=rf"^{tmp_path}/moved was moved here from {made}: "):
        claim(tmp_path / "moved")
    shutil.rmtree(made)
    os.rename(tmp_path / "moved", made)
    os.symlink(made, tmp_path / "link")
    claim(tmp_path / "link")  # the same files by another path


def test_a_push_killed_after_its_copy_leaves_no_unrecorded_version(tmp_path):
    """The version and staging directories a dead Pusher execution named before making them go;
    recorded pushes, and another push's directories, stay."""
    metadata_path, root, serving = tmp_path / "metadata.sqlite", tmp_path / "root", tmp_path / "serving_model"
    from components.pusher.marks import PUSH_FILE

    store = _store(metadata_path)
    pushed_type = store.put_artifact_type(metadata_store_pb2.ArtifactType(name="PushedModel"))
    recorded = metadata_store_pb2.Artifact(type_id=pushed_type, uri=str(tmp_path / "pushed"))
    recorded.custom_properties["pushed_destination"].string_value = str(serving / "1000000001")
    store.put_artifacts([recorded])
    [killed] = _executions(store, "Pusher", State.RUNNING)
    recovery.claim_pipeline_root(str(metadata_path), str(root))
    own = root / "Pusher" / "pushed_model" / str(killed)
    os.makedirs(own)
    (own / PUSH_FILE).write_text(json.dumps({"destination": str(serving / "1000000002"),
                                             "staging": str(serving / ".staging-1000000002-77")}))
    for version in ("1000000000", "1000000001", "1000000002", ".staging-1000000002-77", ".staging-1000000003-78"):
        os.makedirs(serving / version)
    assert recovery.clear_dead_executions(str(metadata_path), str(root), str(serving)) == [killed]
    assert sorted(os.listdir(serving)) == [".staging-1000000003-78", "1000000000", "1000000001"]
    assert not own.exists()


def test_a_damaged_artifact_is_set_aside_so_that_the_cache_no_longer_takes_it(tmp_path):
    metadata_path = tmp_path / "metadata.sqlite"
    store = _store(metadata_path)
    type_id = store.put_execution_type(metadata_store_pb2.ExecutionType(name="tfx.components.Transform"))
    examples_type = store.put_artifact_type(metadata_store_pb2.ArtifactType(name="Examples"))
    uri = str(tmp_path / "Transform" / "transformed_examples" / "3")
    [artifact] = store.put_artifacts([metadata_store_pb2.Artifact(type_id=examples_type, uri=uri,
                                                                  state=metadata_store_pb2.Artifact.LIVE)])
    [execution] = store.put_executions([metadata_store_pb2.Execution(type_id=type_id,
                                                                     last_known_state=State.COMPLETE)])
    store.put_events([metadata_store_pb2.Event(artifact_id=artifact, execution_id=execution,
                                               type=metadata_store_pb2.Event.OUTPUT)])
    described = recovery.set_aside_damaged(str(metadata_path), uri + "/")
    assert described == f"the Examples artifact #{artifact} of Transform"
    [marked] = _store(metadata_path).get_artifacts_by_id([artifact])
    assert marked.state == metadata_store_pb2.Artifact.MARKED_FOR_DELETION
    assert recovery.set_aside_damaged(str(metadata_path), uri) is None  # no live artifact there any more


def _tokenized_examples(store, examples) -> int:
    """Token shards in `examples` and the id of the live Examples artifact that records them as
    TokenizeText does (their sizes and SHA-256)."""
    import json

    from core import shards

    for split, documents in ((shards.TRAIN, [list(range(3000))]), (shards.VAL, [list(range(500))])):
        shards.write_split(shards.split_dir(str(examples), split), documents, num_shards=2, chunk_size=100)
    examples_type = store.put_artifact_type(metadata_store_pb2.ArtifactType(name="Examples"))
    artifact = metadata_store_pb2.Artifact(type_id=examples_type, uri=str(examples),
                                           state=metadata_store_pb2.Artifact.LIVE)
    artifact.custom_properties[shards.SHARD_BYTES].string_value = json.dumps(shards.shard_sizes(str(examples)))
    artifact.custom_properties[shards.SHARD_SHA256].string_value = json.dumps(shards.shard_digests(str(examples)))
    [artifact_id] = store.put_artifacts([artifact])
    return artifact_id


def test_a_live_examples_artifact_whose_shards_changed_size_is_set_aside_before_the_run(tmp_path):
    from core import shards

    metadata_path, examples = tmp_path / "metadata.sqlite", tmp_path / "TokenizeText" / "examples" / "2"
    store = _store(metadata_path)
    artifact_id = _tokenized_examples(store, examples)
    assert recovery.set_aside_changed_shards(str(metadata_path)) == []  # whole: nothing to do
    shard = shards.shard_files(shards.split_dir(str(examples), shards.VAL))[1]
    size = os.path.getsize(shard)
    with open(shard, "r+b") as f:
        f.truncate(size - 10)
    assert recovery.set_aside_changed_shards(str(metadata_path)) == [
        f"token shard {shard} is {size - 10} bytes, {size} when written: the Examples artifact #{artifact_id} of "
        f"its component is set aside and made again"]
    [marked] = _store(metadata_path).get_artifacts_by_id([artifact_id])
    assert marked.state == metadata_store_pb2.Artifact.MARKED_FOR_DELETION
    assert recovery.set_aside_changed_shards(str(metadata_path)) == []  # set aside once


def test_a_reader_that_failed_on_shards_damaged_in_place_has_them_set_aside_else_its_error_goes_on(tmp_path, capsys):
    """Bytes flipped in the middle of a shard (its size kept) pass the size check; when an execution
    that read them fails, their recorded SHA-256 tells it, and only then are they read."""
    import zlib

    from core import shards

    metadata_path, examples = tmp_path / "metadata.sqlite", tmp_path / "TokenizeText" / "examples" / "2"
    store = _store(metadata_path)
    artifact_id = _tokenized_examples(store, examples)
    transform = store.put_execution_type(metadata_store_pb2.ExecutionType(name="tfx.components.Transform"))

    def reader_fails(error):
        """What LocalDagRunner leaves when Transform fails reading the artifact: a FAILED execution
        with the artifact as its input, and the error raised."""
        def run_once():
            [execution] = store.put_executions([metadata_store_pb2.Execution(
                type_id=transform, last_known_state=State.FAILED)])
            store.put_events([metadata_store_pb2.Event(artifact_id=artifact_id, execution_id=execution,
                                                       type=metadata_store_pb2.Event.INPUT)])
            raise error
        return run_once

    # whole shards: the reader's own error goes on, and nothing is set aside
    with pytest.raises(ValueError, match="a bug of the reader"):
        recovery.run_remaking_damaged(str(metadata_path), reader_fails(ValueError("a bug of the reader")))
    shard = shards.shard_files(shards.split_dir(str(examples), shards.TRAIN))[1]
    flip_bytes_in_place(shard)
    assert recovery.set_aside_changed_shards(str(metadata_path)) == []  # the same sizes: not seen before the run
    with pytest.raises(zlib.error):  # the failed executions of earlier runs are not looked at
        recovery.run_remaking_damaged(str(metadata_path), lambda: (_ for _ in ()).throw(zlib.error("elsewhere")))
    capsys.readouterr()
    runs = []

    def fails_then_completes():
        runs.append(len(runs))
        if runs == [0]:
            reader_fails(zlib.error("Error -3 while decompressing data: incorrect data check"))()

    recovery.run_remaking_damaged(str(metadata_path), fails_then_completes)
    assert runs == [0, 1]
    assert capsys.readouterr().out == (
        f"token shard {shard} is damaged (its bytes are not those written: another SHA-256), which Transform read "
        f"when it failed (zlib.error: Error -3 while decompressing data: incorrect data check): the Examples artifact "
        f"#{artifact_id} of its component is set aside and made again; running the pipeline again\n")
    [marked] = _store(metadata_path).get_artifacts_by_id([artifact_id])
    assert marked.state == metadata_store_pb2.Artifact.MARKED_FOR_DELETION
