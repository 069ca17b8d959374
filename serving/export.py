"""Export a GPT as a SavedModel that serves text generation with no project code on the path.

Signatures (all plain TensorFlow ops; `saved_model_cli run` and `tf.saved_model.load` use them):
- `generate`: prompt token ids (B, T) int32 and the sampling settings (max_new_tokens,
  temperature, top_k, top_p, seed, eot_token, vocab_limit) -> tokens (B, T + max_new_tokens) and
  each row's length (see serving/generate.py). How it decodes is `loop` (`auto`: measured, serving/choose.py):
  "xla", the prefill and decoding steps are one XLA-compiled function, the prompt padded to a
  bucket of lengths (powers of two up to block_size; saved with the attribute _XlaMustCompile: the
  loading process compiles a bucket on its first call, once per batch size; TF Serving runs it
  when built with XLA); "graph", TensorFlow's own kernels, no XLA (the cache written in place); no custom ops;
- `generate_text` (models with a character vocabulary): a prompt string and num_samples and the
  same settings -> the generated texts. The prompt maps to ids through `text_encoder` when given
  (for pipeline models, the tf.Transform graph itself: components/char_transform.py), else
  through a table of the tokenizer's characters; ids map back through the characters in id order;
- `logits`: token ids (B, T) int32 -> logits (B, T, vocab_size) float32;
- `tokenizer`: the tokenizer's description as JSON (model.tokenizer.tokenizer_from_json reads it).
"""

from __future__ import annotations

import json
import os
from typing import List, Optional

import tensorflow as tf

from core import files
from core.errors import writing
from serving import EXPORT_RECORD, choose


class CharTable(tf.Module):
    """Strings -> ragged ids through a table of the characters (-1 for one outside them)."""

    def __init__(self, chars: List[str]):
        super().__init__(name="char_table")
        self.table = tf.lookup.StaticHashTable(  # an attribute, so that it is saved
            tf.lookup.KeyValueTensorInitializer(tf.constant(chars), tf.range(len(chars), dtype=tf.int64)),
            default_value=-1)

    def __call__(self, texts) -> tf.RaggedTensor:
        return tf.ragged.map_flat_values(self.table.lookup, tf.strings.unicode_split(texts, "UTF-8"))


class ServingModule(tf.Module):
    def __init__(self, model, generate, tokenizer_json: dict, text_encoder: Optional[tf.Module] = None):
        """model: the GPT to serve; generate: its serving function (serving/generate.py)."""
        super().__init__(name="nanogpt_serving")
        self.model = model
        self.generate = generate
        tokenizer_text = json.dumps(tokenizer_json)

        @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32, name="idx")], autograph=False)
        def logits(idx):
            return {"logits": model(idx)}

        @tf.function(input_signature=[], autograph=False)
        def tokenizer():
            return {"tokenizer": tf.constant(tokenizer_text)}

        self.logits, self.tokenizer = logits, tokenizer
        self.generate_text = None
        if tokenizer_json.get("kind") == "char":
            chars = tokenizer_json["chars"]
            self.text_encoder = text_encoder or CharTable(chars)  # an attribute, so that it is saved
            self.generate_text = _text_generation(self.generate, chars, self.text_encoder)

    def signatures(self) -> dict:
        signatures = {"generate": self.generate, "logits": self.logits, "tokenizer": self.tokenizer,
                      "serving_default": self.generate}
        if self.generate_text is not None:
            signatures["generate_text"] = self.generate_text
        return signatures


def _text_generation(generate, chars: List[str], text_encoder):
    vocabulary = tf.constant(chars, tf.string)

    @tf.function(input_signature=[
        tf.TensorSpec([], tf.string, name="prompt"), tf.TensorSpec([], tf.int32, name="num_samples"),
        tf.TensorSpec([], tf.int32, name="max_new_tokens"), tf.TensorSpec([], tf.float32, name="temperature"),
        tf.TensorSpec([], tf.int32, name="top_k"), tf.TensorSpec([], tf.float32, name="top_p"),
        tf.TensorSpec([], tf.int64, name="seed")], autograph=False)
    def generate_text(prompt, num_samples, max_new_tokens, temperature, top_k, top_p, seed):
        ids = tf.cast(text_encoder(prompt[None])[0], tf.int32)
        tf.debugging.assert_non_negative(ids, message="prompt: a character outside the vocabulary")
        idx = tf.tile(ids[None, :], [num_samples, 1])
        out = generate(idx, max_new_tokens, temperature, top_k, top_p, seed,
                       tf.constant(-1), tf.constant(len(chars)))
        texts = tf.strings.reduce_join(tf.gather(vocabulary, out["tokens"]), axis=-1)
        return {"text": texts}

    return generate_text


def export_saved_model(model, path: str, tokenizer_json: dict, text_encoder: Optional[tf.Module] = None,
                       weights: str = "float32", loop: str = "auto") -> str:
    """Write the SavedModel to `path`, whole or not at all (files.atomic_directory: on gs:// in
    place, where the SavedModel writes saved_model.pb after the variables, so a model cut short
    does not load), with what it chose in EXPORT_RECORD.

    weights: "float32"; "bfloat16" serves a copy whose matmul weights are bfloat16 (serving/weights.py;
    half the file and the bytes read per token); "auto", the faster of the two here. loop: "xla"
    (the prefill and decoding steps by XLA, for GPU and TPU servers built with XLA), "graph" (no
    XLA: loads in any TF Serving) or "auto", the faster of the two here. An "auto" is measured on
    this machine (serving/choose.py)."""
    choice = choose.choose(model, weights, loop)
    served = choice.chosen
    module = ServingModule(served.model, served.generate, tokenizer_json, text_encoder)
    with writing(f"the SavedModel {path}"), files.atomic_directory(path) as directory:
        tf.saved_model.save(module, directory, signatures=module.signatures())
        files.write_json(os.path.join(directory, EXPORT_RECORD), choice.record())
    return path


def export_record(path: str) -> Optional[dict]:
    """What the SavedModel at `path` was exported with (EXPORT_RECORD), or None for one without it."""
    return files.read_json(os.path.join(path, EXPORT_RECORD), default=None)
