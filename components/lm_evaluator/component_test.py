"""LMEvaluator in a real TFX pipeline (LocalDagRunner, SQLite ML Metadata): the last blessed model comes
from a LatestBlessedModelStrategy resolver, and the standard Pusher honours the blessing."""

import os

import numpy as np
import pytest
import tensorflow as tf
from tfx import v1 as tfx
from tfx.orchestration import metadata

from components import artifact_layout
from components.lm_evaluator.component import LMEvaluator
from components.lm_evaluator.settings import EvalConfig
from core.settings import SettingError
from test_helpers.lm_models import P, V, uniform_gpt, unigram_gpt, write_char_vocabulary
from core import shards


def test_component_rejects_bad_configuration():
    examples = tfx.dsl.Channel(type=tfx.types.standard_artifacts.Examples)
    model = tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model)
    with pytest.raises(SettingError, match="--eval_batch_size=0: expected an integer >= 1"):
        LMEvaluator(examples=examples, model=model, config=EvalConfig(eval_batch_size=0))
    with pytest.raises(SettingError, match="an empty name"):
        LMEvaluator(examples=examples, model=model, config=EvalConfig(baselines=[""]))


def write_model_dir(model, directory):
    """A Model artifact's directory: the HF checkpoint, and a SavedModel for the Pusher to copy."""
    model.save_pretrained(os.path.join(directory, artifact_layout.HF_CHECKPOINT_DIR))
    tf.saved_model.save(tf.Module(), os.path.join(directory, artifact_layout.SERVING_DIR))
    return directory


def build_pipeline(root, db, examples_dir, model_dir, push_dir):
    examples = tfx.dsl.Importer(
        source_uri=examples_dir, artifact_type=tfx.types.standard_artifacts.Examples,
        properties={"split_names": '["train", "val"]'}).with_id("ImportExamples")
    vocabulary = tfx.dsl.Importer(source_uri=write_char_vocabulary(os.path.join(root, "vocabulary")),
                                  artifact_type=tfx.types.standard_artifacts.TransformGraph).with_id("ImportVocabulary")
    model = tfx.dsl.Importer(source_uri=model_dir, artifact_type=tfx.types.standard_artifacts.Model
                             ).with_id("ImportModel")
    latest_blessed = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id("latest_blessed_model_resolver")
    evaluator = LMEvaluator(examples=examples.outputs["result"], model=model.outputs["result"],
                            baseline_model=latest_blessed.outputs["model"],
                            transform_graph=vocabulary.outputs["result"],
                            config=EvalConfig(val_loss_threshold=float(np.log(V))))
    pusher = tfx.components.Pusher(
        model=model.outputs["result"], model_blessing=evaluator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(base_directory=push_dir)))
    return tfx.dsl.Pipeline(
        pipeline_name="lm_evaluator_test", pipeline_root=root,
        components=[examples, vocabulary, model, latest_blessed, evaluator, pusher],
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(db))


def latest_output(store, type_name, producer):
    artifacts = [a for a in store.get_artifacts_by_type(type_name) if f"/{producer}/" in a.uri]
    return max(artifacts, key=lambda a: a.id)


def imported(store, type_name, uri):
    [artifact] = [a for a in store.get_artifacts_by_type(type_name) if a.uri == uri]
    return artifact


def props(artifact):
    return {k: v.int_value or v.string_value or v.double_value for k, v in artifact.custom_properties.items()}


def test_blessed_model_is_pushed_and_a_worse_one_is_not(tmp_path):
    examples_dir = str(tmp_path / "examples")
    rng = np.random.default_rng(1)
    for split, n in (("train", 400), ("val", 200)):
        shards.write_split(shards.split_dir(examples_dir, split), [rng.choice(V, n, p=P).tolist()])
    good = write_model_dir(unigram_gpt(), str(tmp_path / "good_model"))
    worse = write_model_dir(uniform_gpt(), str(tmp_path / "worse_model"))
    push_dir, db, root = str(tmp_path / "serving"), str(tmp_path / "metadata.sqlite"), str(tmp_path / "root")
    config = metadata.sqlite_metadata_connection_config(db)

    # First run: nothing blessed yet; the candidate is under the threshold, so it is blessed and pushed.
    tfx.orchestration.LocalDagRunner().run(build_pipeline(root, db, examples_dir, good, push_dir))
    versions = os.listdir(push_dir)
    assert len(versions) == 1
    assert os.path.isfile(os.path.join(push_dir, versions[0], "saved_model.pb"))
    with metadata.Metadata(config) as m:
        good_model = imported(m.store, "Model", good)
        blessing = props(latest_output(m.store, "ModelBlessing", "LMEvaluator"))
        pushed = props(latest_output(m.store, "PushedModel", "Pusher"))
        evaluation = props(latest_output(m.store, "ModelEvaluation", "LMEvaluator"))
    assert blessing["blessed"] == 1 and blessing["current_model_id"] == good_model.id
    assert "baseline_model_id" not in blessing
    assert pushed["pushed"] == 1
    assert evaluation["blessed"] == 1 and evaluation["candidate_val_loss"] < np.log(V)

    # Second run: a worse candidate. The resolver finds the first model as the last blessed one;
    # the candidate loses to it, is not blessed, and the Pusher pushes nothing.
    tfx.orchestration.LocalDagRunner().run(build_pipeline(root, db, examples_dir, worse, push_dir))
    assert os.listdir(push_dir) == versions
    with metadata.Metadata(config) as m:
        worse_model = imported(m.store, "Model", worse)
        blessing = props(latest_output(m.store, "ModelBlessing", "LMEvaluator"))
        pushed = props(latest_output(m.store, "PushedModel", "Pusher"))
        evaluation = latest_output(m.store, "ModelEvaluation", "LMEvaluator")
    assert blessing["blessed"] == 0 and blessing["current_model_id"] == worse_model.id
    assert blessing["baseline_model_id"] == good_model.id and blessing["baseline_model"] == good
    assert "worse than the last blessed" in blessing["blessing_reason"]
    assert pushed["pushed"] == 0
    assert os.path.isfile(os.path.join(evaluation.uri, "report.md"))
    assert props(evaluation)["last_blessed_val_loss"] < props(evaluation)["candidate_val_loss"]
