"""The character Transform module, run by tf.Transform on Beam over a few records with awkward
characters: newline, carriage return, space, non-ASCII."""

import pytest
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2
from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

from components import char_transform
from model import shards

TEXTS = ["To be,\nor not", "é\r\n  ü!", "zz\n"]


@pytest.fixture(scope="module")
def transformed(tmp_path_factory):
    out = tmp_path_factory.mktemp("transform")
    raw = [{char_transform.TEXT: t.encode(), shards.DOC: i, shards.POS: 0} for i, t in enumerate(TEXTS)]
    metadata = dataset_metadata.DatasetMetadata(
        schema_utils.schema_from_feature_spec(char_transform.RAW_FEATURE_SPEC))
    with tft_beam.Context(temp_dir=str(out / "tmp")):
        (records, _), transform_fn = ((raw, metadata)
                                      | tft_beam.AnalyzeAndTransformDataset(char_transform.preprocessing_fn))
        _ = transform_fn | tft_beam.WriteTransformFn(str(out / "graph"))
    return str(out / "graph"), records


def test_vocabulary_holds_every_character_once_newline_included(transformed):
    graph_dir, _ = transformed
    vocabulary = char_transform.load_vocabulary(graph_dir)
    assert sorted(vocabulary) == sorted(set("".join(TEXTS)))
    assert "\n" in vocabulary and "\r" in vocabulary and " " in vocabulary
    # tft orders by frequency: " " (4 times) comes first.
    assert vocabulary[0] == " "


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
