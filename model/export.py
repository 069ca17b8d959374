"""Export a GPT as a SavedModel that serves text generation with no project code on the path.

Signatures (all plain TensorFlow ops; `saved_model_cli run` and `tf.saved_model.load` use them):
- `generate`: prompt token ids (B, T) int32 and the sampling settings (max_new_tokens,
  temperature, top_k, top_p, seed, eot_token, vocab_limit) -> tokens (B, T + max_new_tokens) and
  each row's length (see model/generate.py);
- `generate_text` (models with a character vocabulary): a prompt string and num_samples and the
  same settings -> the generated texts, the prompt mapped to ids by the function given at export
  (the Trainer passes the tf.Transform graph's own layer);
- `logits`: token ids (B, T) int32 -> logits (B, T, vocab_size) float32;
- `tokenizer`: the tokenizer's description as JSON (model.tokenizer.tokenizer_from_json reads it).
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Callable, List, Optional

import tensorflow as tf

from model.generate import serving_function

SIGNATURES = ("generate", "logits", "tokenizer")


class ServingModule(tf.Module):
    def __init__(self, model, tokenizer_json: dict, text_to_ids: Optional[Callable] = None,
                 text_encoder: Optional[tf.Module] = None):
        super().__init__(name="nanogpt_serving")
        self.model = model
        self.text_encoder = text_encoder  # tracked so that its tables and assets are saved
        self.generate = serving_function(model)
        tokenizer_text = json.dumps(tokenizer_json)

        @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32, name="idx")])
        def logits(idx):
            return {"logits": model(idx)}

        @tf.function(input_signature=[])
        def tokenizer():
            return {"tokenizer": tf.constant(tokenizer_text)}

        self.logits, self.tokenizer = logits, tokenizer
        self.generate_text = None
        if tokenizer_json.get("kind") == "char" and text_to_ids is not None:
            self.generate_text = _text_generation(self.generate, tokenizer_json["chars"], text_to_ids)

    def signatures(self) -> dict:
        signatures = {"generate": self.generate, "logits": self.logits, "tokenizer": self.tokenizer,
                      "serving_default": self.generate}
        if self.generate_text is not None:
            signatures["generate_text"] = self.generate_text
        return signatures


def _text_generation(generate, chars: List[str], text_to_ids: Callable):
    vocabulary = tf.constant(chars, tf.string)

    @tf.function(input_signature=[
        tf.TensorSpec([], tf.string, name="prompt"), tf.TensorSpec([], tf.int32, name="num_samples"),
        tf.TensorSpec([], tf.int32, name="max_new_tokens"), tf.TensorSpec([], tf.float32, name="temperature"),
        tf.TensorSpec([], tf.int32, name="top_k"), tf.TensorSpec([], tf.float32, name="top_p"),
        tf.TensorSpec([], tf.int64, name="seed")])
    def generate_text(prompt, num_samples, max_new_tokens, temperature, top_k, top_p, seed):
        ids = tf.cast(text_to_ids(tf.reshape(prompt, [1])).to_tensor(), tf.int32)  # (1, T)
        idx = tf.tile(ids, [num_samples, 1])
        out = generate(idx, max_new_tokens, temperature, top_k, top_p, seed,
                       tf.constant(-1), tf.constant(len(chars)))
        texts = tf.strings.reduce_join(tf.gather(vocabulary, out["tokens"]), axis=-1)
        return {"text": texts}

    return generate_text


def export_saved_model(model, path: str, tokenizer_json: dict, text_to_ids: Optional[Callable] = None,
                       text_encoder: Optional[tf.Module] = None) -> str:
    """Write the SavedModel to `path` (through a temporary sibling, renamed at the end, so that no
    half-written model is ever at `path`)."""
    module = ServingModule(model, tokenizer_json, text_to_ids, text_encoder)
    tmp = path.rstrip("/") + ".tmp-export"
    shutil.rmtree(tmp, ignore_errors=True)
    tf.saved_model.save(module, tmp, signatures=module.signatures())
    if os.path.exists(path):
        shutil.rmtree(path)
    os.replace(tmp, path)
    return path
