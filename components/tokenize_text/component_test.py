"""TokenizeText in a real TFX pipeline (LocalDagRunner, SQLite ML Metadata, Beam DirectRunner): GPT-2
shards, and characters through the standard Transform component with components/char_transform.py."""

import os

import pytest
import tensorflow_transform as tft
from tfx import v1 as tfx
from tfx.orchestration import metadata
from tfx.proto import transform_pb2

from components import char_transform
from components.tokenize_text.component import TokenizeText
from core import shards


def test_component_rejects_bad_configuration():
    with pytest.raises(ValueError, match="exactly one"):
        TokenizeText(input_pattern="a.txt", dataset_name="openwebtext")
    with pytest.raises(ValueError, match="--tokenizer='bpe': expected one of gpt2, char"):
        TokenizeText(input_pattern="a.txt", tokenizer="bpe")


def _latest_artifact(store, type_name, producer_id):
    """The newest artifact of a type produced by a node (ML Metadata as the trainer would see it)."""
    for execution in sorted(store.get_executions(), key=lambda e: -e.id):
        events = store.get_events_by_execution_ids([execution.id])
        ids = [e.artifact_id for e in events if e.type == e.OUTPUT]
        for artifact in store.get_artifacts_by_id(ids):
            if store.get_artifact_types_by_id([artifact.type_id])[0].name == type_name and \
                    producer_id in artifact.uri:
                return artifact
    raise AssertionError(f"no {type_name} from {producer_id}")


def test_pipeline_tokenizes_and_transforms_shakespeare(tmp_path, shared_data, bpe_dir, shakespeare_text):
    text_path = os.path.join(shared_data, "tinyshakespeare.txt")
    bpe = TokenizeText(input_pattern=text_path, tokenizer="gpt2", bpe_dir=bpe_dir).with_id("TokenizeBPE")
    chars = TokenizeText(input_pattern=text_path, tokenizer="char").with_id("TokenizeChars")
    schema = tfx.components.ImportSchemaGen(schema_file=char_transform.RAW_SCHEMA_PATH)
    transform = tfx.components.Transform(
        examples=chars.outputs["examples"], schema=schema.outputs["schema"],
        # By import path: module_file=char_transform.__file__ makes TFX build a wheel of the module's
        # directory with pip, which this locked environment does not have.
        preprocessing_fn="components.char_transform.preprocessing_fn", disable_statistics=True,
        # nanoGPT's shakespeare_char vocabulary covers the whole text: analyze both splits.
        splits_config=transform_pb2.SplitsConfig(analyze=["train", "val"], transform=["train", "val"]))
    db = str(tmp_path / "metadata.sqlite")
    pipeline = tfx.dsl.Pipeline(
        pipeline_name="tokenize_test", pipeline_root=str(tmp_path / "root"),
        components=[bpe, chars, schema, transform],
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(db),
        beam_pipeline_args=["--direct_num_workers=1"])
    tfx.orchestration.LocalDagRunner().run(pipeline)

    with metadata.Metadata(metadata.sqlite_metadata_connection_config(db)) as m:
        bpe_examples = _latest_artifact(m.store, "Examples", "TokenizeBPE")
        char_examples = _latest_artifact(m.store, "Examples", "TokenizeChars")
        transformed = _latest_artifact(m.store, "Examples", "Transform")
        graph = _latest_artifact(m.store, "TransformGraph", "Transform")
    props = {k: v.int_value or v.string_value for k, v in bpe_examples.custom_properties.items()}
    assert (props["num_tokens_train"], props["num_tokens_val"]) == (301_966, 36_059)
    assert (props["tokenizer"], props["vocab_size"], props["eot_token"]) == ("gpt2", 50257, 50256)
    char_props = {k: v.int_value or v.string_value for k, v in char_examples.custom_properties.items()}
    assert (char_props["num_tokens_train"], char_props["num_tokens_val"]) == (1_003_854, 111_540)
    assert char_props["tokenizer"] == "char" and char_props["vocab_size"] == 65

    # The vocabulary of one tft.vocabulary pass, kept in the transform graph, newline included.
    vocabulary = char_transform.load_vocabulary(graph.uri)
    assert len(vocabulary) == 65 and "\n" in vocabulary
    assert sorted(vocabulary) == sorted(set(shakespeare_text))
    # Transform's output is in the shard format: read back in order, it is the text's ids.
    tokenizer = char_transform.char_tokenizer(graph.uri)
    cut = int(len(shakespeare_text) * 0.9)
    for split, text in (("train", shakespeare_text[:cut]), ("val", shakespeare_text[cut:])):
        stream = shards.read_token_stream(shards.split_dir(transformed.uri, split))
        assert len(stream) == len(text)
        assert tokenizer.decode(stream) == text
    # The graph itself maps text to the same ids, and the ids back to the text.
    ids = char_transform.text_to_ids(tft.TFTransformOutput(graph.uri).transform_features_layer(), ["First Citizen:\n"])
    assert ids.to_list() == [tokenizer.encode("First Citizen:\n")]
    assert char_transform.ids_to_text(ids, vocabulary).numpy()[0].decode() == "First Citizen:\n"
