"""Character vocabulary by tensorflow-transform: the module file of the standard TFX Transform
component for TokenizeText's character records.

TokenizeText(tokenizer="char") writes records with `text` (a chunk of a document's characters),
`doc` and `pos`. `preprocessing_fn` splits the text into Unicode characters, builds the vocabulary
with one `tft.vocabulary` pass over the analyzed splits, and outputs `tokens` (int64 ids), `doc` and
`pos`: Transform's transformed_examples are then `core.shards` records, read like BPE shards.

The vocabulary's keys are the characters' code points, int64 (written in decimal in the vocabulary
file: "10" for newline): tft's vocabularies of strings drop keys that contain "\\n" or "\\r", and
newline is one of Tiny Shakespeare's 65 characters; and integers are counted and looked up about
three times faster than strings of them (Transform of a 33 MB text: 30 s against 53 s with the
decimal strings as keys, the same vocabulary file). A text vocabulary (rather than tft's tfrecord
one) is what lets the exported model carry the transform layer itself (`TransformTextEncoder`), so
that the Trainer's data and the served model map text to ids through the same graph and table. Ids
follow the keys' fingerprints (tft's fingerprint_shuffle), not nanoGPT's sorted order: like it, and
unlike tft's default order by frequency, the same characters always get the same ids.

    transform = tfx.components.Transform(
        examples=tokenize.outputs["examples"], schema=ImportSchemaGen(schema_file=RAW_SCHEMA_PATH)...,
        module_file=char_transform.__file__, disable_statistics=True,
        splits_config=SplitsConfig(analyze=["train", "val"], transform=["train", "val"]))

(module_file makes TFX package this file's directory as a wheel with pip; where pip is absent, as in
this project's locked environment, pass preprocessing_fn="components.char_transform.preprocessing_fn".)
"""

from __future__ import annotations

import os
from typing import List

import tensorflow as tf
import tensorflow_transform as tft
from tensorflow_transform.saved import saved_transform_io_v2

from components.tokenize_text.encoding import TEXT  # the raw feature TokenizeText writes
from core import shards
from model.tokenizer import CharTokenizer

VOCAB_NAME = "chars"
# The ids' order, named in Transform's parameters (pipeline/pipeline.py) so that its cache does not take a
# Transform of another order: the keys' fingerprints (preprocessing_fn), the same characters, the same ids.
VOCABULARY_ORDER = "fingerprint"
# The raw records' schema, for ImportSchemaGen (checked against RAW_FEATURE_SPEC by the tests).
RAW_SCHEMA_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "char_schema.pbtxt")
RAW_FEATURE_SPEC = {
    TEXT: tf.io.FixedLenFeature([], tf.string),
    shards.DOC: tf.io.FixedLenFeature([], tf.int64),
    shards.POS: tf.io.FixedLenFeature([], tf.int64),
}


def char_keys(text: tf.Tensor) -> tf.RaggedTensor:
    """[batch] UTF-8 strings -> [batch, (chars)] vocabulary keys: each character's code point (int64)."""
    return tf.cast(tf.strings.unicode_decode(text, "UTF-8"), tf.int64)


def preprocessing_fn(inputs):
    """tf.Transform: text records -> `core.shards` token records."""
    keys = char_keys(inputs[TEXT])
    # ordered by the keys' fingerprints, not by their counts: the same characters get the same ids
    # whatever their frequencies, so that a model of edited data compares with (and continues) the last
    vocabulary = tft.vocabulary(keys.flat_values, vocab_filename=VOCAB_NAME, fingerprint_shuffle=True)
    ids = tf.ragged.map_flat_values(tft.apply_vocabulary, keys, vocabulary)
    # A 2-D SparseTensor is written as a variable-length int64 list, the shards' `tokens` feature.
    return {shards.TOKENS: ids.to_sparse(), shards.DOC: inputs[shards.DOC], shards.POS: inputs[shards.POS]}


def vocabulary_file(transform_output_dir: str) -> str:
    path = tft.TFTransformOutput(transform_output_dir).vocabulary_file_by_name(VOCAB_NAME)
    if path is None:
        raise FileNotFoundError(f"no {VOCAB_NAME!r} vocabulary in the transform output {transform_output_dir}")
    return path


def load_vocabulary(transform_output_dir: str) -> List[str]:
    """The characters in id order, from the transform graph's vocabulary file."""
    with tf.io.gfile.GFile(vocabulary_file(transform_output_dir)) as f:
        return [chr(int(key)) for key in f.read().split("\n") if key]


def char_tokenizer(transform_output_dir: str) -> CharTokenizer:
    """A Python CharTokenizer over exactly the transform graph's table (for sampling and tests)."""
    return CharTokenizer(load_vocabulary(transform_output_dir))


def text_to_ids(transform_layer, texts) -> tf.RaggedTensor:
    """[batch] strings -> [batch, (ids)] through the transform graph itself (as a served model
    would). `transform_layer` applies the graph to a dict of raw features:
    `TFTransformOutput.transform_features_layer()` or TransformTextEncoder's loader; create it once
    and keep it (a SavedModel must track it), not inside a traced function."""
    texts = tf.convert_to_tensor(texts, tf.string)
    zeros = tf.zeros_like(texts, dtype=tf.int64)  # doc/pos are carried through, not used for ids
    outputs = transform_layer({TEXT: texts, shards.DOC: zeros, shards.POS: zeros})
    return tf.RaggedTensor.from_sparse(outputs[shards.TOKENS])


class TransformTextEncoder(tf.Module):
    """Strings -> ragged ids through the transform graph: what the exported model's generate_text
    maps prompts with (serving/export.py's `text_encoder`); saved with the model, vocabulary included."""

    def __init__(self, transform_output_dir: str):
        super().__init__(name="transform_text_encoder")
        # tft's loader of the transform graph itself, not its Keras wrapper (transform_features_layer):
        # saving a SavedModel that holds a Keras layer traces the layer's call functions with AutoGraph
        # (5 s of every export). Its attributes are tracked as that layer tracks them, so that the
        # SavedModel carries the transform graph with its table and vocabulary file.
        self._loader = saved_transform_io_v2.SavedModelLoader(
            tft.TFTransformOutput(transform_output_dir).transform_savedmodel_dir)
        self._loader_tracked = self._loader.__dict__

    def __call__(self, texts) -> tf.RaggedTensor:
        return text_to_ids(self._loader.apply_transform_model, texts)


def ids_to_text(ids, vocabulary: List[str]) -> tf.Tensor:
    """[..., n] ids -> [...] strings, by the vocabulary of load_vocabulary (the same table)."""
    return tf.strings.reduce_join(tf.gather(tf.constant(vocabulary, tf.string), ids), axis=-1)
