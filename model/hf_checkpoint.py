"""GPT-2 checkpoints in Hugging Face's format, read and written; `GPT.from_pretrained` and
`GPT.save_pretrained` (model/model.py) build on these functions, which know the GPT only by its
variables' GPT-2 names and its GPTConfig fields (so this module imports nothing of model.py).

Weights are read and written as safetensors with numpy (no torch needed). Both layouts that
transformers writes are understood: PyTorch names (`h.0.attn.c_attn.weight`, what the hub holds)
and TensorFlow names (`transformer/h_._0/attn/c_attn/weight:0`, what `TFGPT2LMHeadModel.
save_pretrained(safe_serialization=True)` writes). Export writes PyTorch names, which both
transformers' PyTorch and TensorFlow classes load.
"""

from __future__ import annotations

import os
import re
from typing import Dict, Optional, Tuple

import numpy as np
import tensorflow as tf

from core import files
from core.errors import MissingFile, UsageError, one_line, writing

from model.hf_files import (CONFIG_FILE, HF_TOKENIZER_FILE, HUB_ORGANISATION, WEIGHTS_FILE,
                            WEIGHTS_INDEX_FILE, hub_problem, read_gpt2_config)
# Overrides that make sense on top of a pretrained checkpoint (everything else is fixed by it).
ALLOWED_OVERRIDES = ("dropout", "block_size", "dtype_policy")


def check_overrides(name_or_dir: str, overrides: dict) -> None:
    unknown = sorted(set(overrides) - set(ALLOWED_OVERRIDES))
    if unknown:
        raise UsageError(f"from_pretrained({name_or_dir!r}): cannot override {unknown}; "
                         f"only {list(ALLOWED_OVERRIDES)} can be changed on a pretrained model")


def read_gpt2(name_or_dir: str, known_sizes) -> Tuple[str, dict, Dict[str, np.ndarray]]:
    """(directory, GPTConfig fields, weights by GPT-2 name) of gpt2/gpt2-medium/... from the hub
    (`known_sizes` names them), or of the Hugging Face GPT-2 checkpoint in a local directory."""
    directory = _resolve_checkpoint_dir(name_or_dir, known_sizes)
    hf_config = read_gpt2_config(directory)
    fields = dict(n_layer=hf_config["n_layer"], n_head=hf_config["n_head"], n_embd=hf_config["n_embd"],
                  block_size=hf_config["n_positions"], vocab_size=hf_config["vocab_size"], bias=True)
    return directory, fields, _read_weights(directory)


def assign_weights(variables: Dict[str, tf.Variable], weights: Dict[str, np.ndarray], directory: str) -> None:
    """Every variable (by GPT-2 name) from the checkpoint's weights; errors name `directory`."""
    missing = sorted(set(variables) - set(weights))
    if missing:
        raise UsageError(f"GPT-2 checkpoint in {directory} lacks {len(missing)} weights, "
                         f"e.g. {missing[:3]}")
    for name, variable in variables.items():
        value = weights[name]
        if value.size != variable.shape.num_elements():
            raise UsageError(f"GPT-2 checkpoint in {directory}: {name} has shape {value.shape}, "
                             f"the model expects {variable.shape}")
        variable.assign(value.reshape(variable.shape).astype(np.float32))


def write_gpt2(directory: str, cfg, variables: Dict[str, tf.Variable], tokenizer_json: Optional[dict] = None) -> None:
    """A GPT of GPTConfig `cfg` with `variables` (by GPT-2 name) as a Hugging Face GPT2LMHeadModel
    checkpoint (config.json and model.safetensors; with tokenizer_json, HF_TOKENIZER_FILE), each file
    written whole or not at all."""
    from safetensors.numpy import save_file

    tensors: Dict[str, np.ndarray] = {}
    for name, variable in variables.items():
        tensors[name] = np.ascontiguousarray(variable.numpy())
    if not cfg.bias:
        # GPT-2's architecture always has biases: zeros are the same function as no bias.
        for name in list(tensors):
            if name.endswith(".weight") and name != "wte.weight" and name != "wpe.weight":
                bias_name = name[: -len("weight")] + "bias"
                tensors[bias_name] = np.zeros([tensors[name].shape[-1]], np.float32)
    hf_config = {
        "model_type": "gpt2",
        "architectures": ["GPT2LMHeadModel"],
        "vocab_size": cfg.vocab_size,
        "n_positions": cfg.block_size,
        "n_ctx": cfg.block_size,
        "n_embd": cfg.n_embd,
        "n_layer": cfg.n_layer,
        "n_head": cfg.n_head,
        "n_inner": None,
        "activation_function": "gelu_new",
        "resid_pdrop": cfg.dropout,
        "embd_pdrop": cfg.dropout,
        "attn_pdrop": cfg.dropout,
        "layer_norm_epsilon": 1e-5,
        "initializer_range": 0.02,
        "tie_word_embeddings": True,
    }
    if cfg.vocab_size > 50256:  # the vocabulary holds GPT-2's end-of-text token
        hf_config.update(bos_token_id=50256, eos_token_id=50256)
    # config.json last: the file that makes a directory a checkpoint (a reader looks for it)
    with writing(f"the Hugging Face checkpoint {directory}", cleanup=lambda: _remove_checkpoint(directory)):
        tf.io.gfile.makedirs(directory)
        with files.atomic_path(os.path.join(directory, WEIGHTS_FILE)) as tmp:
            save_file(tensors, tmp, metadata={"format": "pt"})
        if tokenizer_json is not None:
            files.write_json(os.path.join(directory, HF_TOKENIZER_FILE), tokenizer_json)
        files.write_json(os.path.join(directory, CONFIG_FILE), hf_config, sort_keys=False)


def _remove_checkpoint(directory: str) -> None:
    """The files of a checkpoint whose write failed, and its directory when nothing else is in it."""
    for name in (CONFIG_FILE, WEIGHTS_FILE, HF_TOKENIZER_FILE):
        if tf.io.gfile.exists(os.path.join(directory, name)):
            tf.io.gfile.remove(os.path.join(directory, name))
    if tf.io.gfile.isdir(directory) and not tf.io.gfile.listdir(directory):
        tf.io.gfile.rmtree(directory)


def _resolve_checkpoint_dir(name_or_dir: str, known_sizes) -> str:
    if tf.io.gfile.isdir(name_or_dir):
        return name_or_dir
    if name_or_dir in known_sizes:
        from huggingface_hub import hf_hub_download

        # offline, one request and one line (the hub client would retry for ~25 s, logging each try)
        problem = hub_problem(name_or_dir)
        if problem:
            raise MissingFile(f"GPT-2 checkpoint {name_or_dir!r}: {problem}")
        repo_id = f"{HUB_ORGANISATION}/{name_or_dir}"
        try:
            config_path = hf_hub_download(repo_id, CONFIG_FILE)
            hf_hub_download(repo_id, WEIGHTS_FILE)
        except Exception as e:  # the hub client's errors, requests' ...
            raise MissingFile(f"GPT-2 checkpoint {name_or_dir!r}: downloading it from the Hugging Face hub failed "
                              f"({type(e).__name__}: {one_line(e)[:200]})") from e
        return os.path.dirname(config_path)
    raise MissingFile(
        f"GPT-2 checkpoint {name_or_dir!r}: no such directory, and not one of the released "
        f"models {sorted(known_sizes)}")


def _read_weights(directory: str) -> Dict[str, np.ndarray]:
    from safetensors.numpy import load, load_file

    single = os.path.join(directory, WEIGHTS_FILE)
    index = os.path.join(directory, WEIGHTS_INDEX_FILE)
    if tf.io.gfile.exists(single):
        paths = [single]
    elif tf.io.gfile.exists(index):
        weight_map = files.read_json(index)["weight_map"]
        paths = sorted({os.path.join(directory, v) for v in weight_map.values()})
    else:
        present = sorted(tf.io.gfile.listdir(directory))
        raise FileNotFoundError(
            f"{directory} holds no {WEIGHTS_FILE} (it has {present}); save the checkpoint with "
            f"safetensors (save_pretrained(..., safe_serialization=True))")
    weights = {}
    for path in paths:
        if files.is_local(path):
            tensors = load_file(path)
        else:
            with tf.io.gfile.GFile(path, "rb") as f:
                tensors = load(f.read())
        for key, value in tensors.items():
            name = canonical_weight_name(key)
            if name is not None:
                weights[name] = value
    return weights


def canonical_weight_name(key: str):
    """GPT-2's PyTorch name for a checkpoint key in either layout; None for keys that are not
    parameters of the model (attention-mask buffers, the tied lm_head)."""
    key = key[:-2] if key.endswith(":0") else key
    if "/" in key:  # TensorFlow layout: [model_name/]transformer/h_._0/ln_1/gamma
        key = key[key.index("transformer/"):] if "transformer/" in key else key
        key = re.sub(r"h_\._(\d+)", r"h.\1", key).replace("/", ".")
        key = re.sub(r"\.(gamma|embeddings)$", ".weight", key)
        key = re.sub(r"\.beta$", ".bias", key)
    if key.startswith("transformer."):
        key = key[len("transformer."):]
    if key == "lm_head.weight" or re.fullmatch(r"h\.\d+\.attn\.(bias|masked_bias)", key):
        return None
    return key
