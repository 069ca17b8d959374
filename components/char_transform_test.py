"""The character Transform module, run by tf.Transform on Beam over a few records with awkward
characters: newline, carriage return, space, non-ASCII."""

import json

import pytest
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2
from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

from components import char_transform
from core import shards

TEXTS = ["To be,\nor not", "é\r\n  ü!", "zz\n"]


def transform(texts, out):
    raw = [{char_transform.TEXT: t.encode(), shards.DOC: i, shards.POS: 0} for i, t in enumerate(texts)]
    metadata = dataset_metadata.DatasetMetadata(
        schema_utils.schema_from_feature_spec(char_transform.RAW_FEATURE_SPEC))
    with tft_beam.Context(temp_dir=str(out / "tmp")):
        (records, _), transform_fn = ((raw, metadata)
                                      | tft_beam.AnalyzeAndTransformDataset(char_transform.preprocessing_fn))
        _ = transform_fn | tft_beam.WriteTransformFn(str(out / "graph"))
    return str(out / "graph"), records


@pytest.fixture(scope="module")
def transformed(tmp_path_factory):
    return transform(TEXTS, tmp_path_factory.mktemp("transform"))


def test_vocabulary_holds_every_character_once_newline_included(transformed):
    graph_dir, _ = transformed
    vocabulary = char_transform.load_vocabulary(graph_dir)
    assert sorted(vocabulary) == sorted(set("".join(TEXTS)))
    assert "\n" in vocabulary and "\r" in vocabulary and " " in vocabulary


def test_the_same_characters_get_the_same_ids_whatever_their_counts(transformed, tmp_path):
    """Not tft's default order by frequency: edited data of the same characters keeps the ids, so
    that the last blessed model compares with a new one, and --resume continues it."""
    graph_dir, _ = transformed
    recounted, _ = transform(["zzzzzzzz\r\r\r\rééé" + "".join(sorted(set("".join(TEXTS))))], tmp_path)
    assert char_transform.load_vocabulary(recounted) == char_transform.load_vocabulary(graph_dir)


def test_transformed_records_are_shard_records_with_the_vocabulary_ids(transformed):
    graph_dir, records = transformed
    tokenizer = char_transform.char_tokenizer(graph_dir)
    by_doc = {int(r[shards.DOC]): r for r in records}
    for doc, text in enumerate(TEXTS):
        assert list(by_doc[doc][shards.TOKENS]) == tokenizer.encode(text)
        assert int(by_doc[doc][shards.POS]) == 0


def test_graph_maps_text_to_ids_and_back_with_one_table(transformed):
    graph_dir, _ = transformed
    layer = tft.TFTransformOutput(graph_dir).transform_features_layer()
    vocabulary = char_transform.load_vocabulary(graph_dir)
    ids = char_transform.text_to_ids(layer, TEXTS)
    tokenizer = char_transform.char_tokenizer(graph_dir)
    assert ids.to_list() == [tokenizer.encode(t) for t in TEXTS]
    back = char_transform.ids_to_text(ids, vocabulary).numpy()
    assert [b.decode() for b in back] == TEXTS
    # A character the vocabulary lacks maps to -1 rather than to some other character.
    assert char_transform.text_to_ids(layer, ["a"]).to_list() == [[-1]]


def test_schema_file_matches_feature_spec():
    with open(char_transform.RAW_SCHEMA_PATH) as f:
        schema = text_format.Parse(f.read(), schema_pb2.Schema())
    assert schema_utils.schema_as_feature_spec(schema).feature_spec == char_transform.RAW_FEATURE_SPEC


def test_exported_model_maps_prompts_through_the_transform_graph(transformed, tmp_path):
    """The served model carries the transform layer (its vocabulary among the SavedModel's assets)
    and needs no project code to generate from text."""
    import os
    import subprocess
    import sys

    from model import GPT, GPTConfig
    from serving.export import export_saved_model

    graph_dir, _ = transformed
    tokenizer = char_transform.char_tokenizer(graph_dir)
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=16, vocab_size=len(tokenizer.itos)), seed=0)
    path = str(tmp_path / "served")
    export_saved_model(model, path, tokenizer.to_json(),
                       text_encoder=char_transform.TransformTextEncoder(graph_dir), loop="graph")
    assert char_transform.VOCAB_NAME in os.listdir(os.path.join(path, "assets"))
    code = f"""
import json, sys, tensorflow as tf
m = tf.saved_model.load({path!r})
run = lambda prompt: m.signatures["generate_text"](prompt=tf.constant(prompt), num_samples=tf.constant(2),
    max_new_tokens=tf.constant(4), temperature=tf.constant(1.0), top_k=tf.constant(0), top_p=tf.constant(1.0),
    seed=tf.constant(7, tf.int64))["text"].numpy()
print(json.dumps([t.decode() for t in run("or not\\n")]))
try:
    run("xyz")
except tf.errors.InvalidArgumentError as e:
    print("REFUSED", "outside the vocabulary" in str(e))
assert "components" not in sys.modules and "model" not in sys.modules
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=str(tmp_path), capture_output=True, text=True,
                            timeout=300, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert result.returncode == 0, result.stderr[-3000:]
    texts, refused = result.stdout.strip().splitlines()[-2:]
    texts = json.loads(texts)
    assert len(texts) == 2 and all(t.startswith("or not\n") and len(t) == 11 for t in texts)
    assert set("".join(texts)) <= set(tokenizer.itos)
    assert refused == "REFUSED True"
