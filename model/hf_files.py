"""What makes a directory a Hugging Face GPT-2 checkpoint, read without TensorFlow (settings check
their checkpoints before anything loads): its file names, its config.json checked for the GPT-2
variant this model implements, and whether a source names a checkpoint at all. model/hf_checkpoint.py
reads and writes the checkpoints themselves."""

from __future__ import annotations

import os
from typing import Optional

from core import files
from core.errors import MissingFile, UsageError
from model.presets import GPT2_SIZES, GPT2_VOCAB_SIZE
from model.tokenizer import GPT2Tokenizer

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX_FILE = "model.safetensors.index.json"
# The tokens a checkpoint of this project reads, as model/tokenizer.py's to_json writes them (a character
# table, or GPT-2 BPE): not transformers' tokenizer.json, whose format is the tokenizers library's.
HF_TOKENIZER_FILE = "nanogpt_tokenizer.json"
HUB_ORGANISATION = "openai-community"  # where the hub keeps OpenAI's GPT-2 checkpoints

# Hugging Face's names for GPT-2's tanh-approximated GELU, which is the one the model computes.
_TANH_GELUS = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")


def read_gpt2_config(directory: str) -> dict:
    """The checkpoint's config.json; MissingFile without one, UsageError for another kind of model
    or a GPT-2 variant this model does not implement."""
    config = files.read_json(os.path.join(directory, CONFIG_FILE), default=None)
    if config is None:
        raise MissingFile(f"{directory} is not a Hugging Face checkpoint: it has no {CONFIG_FILE}")
    model_type = config.get("model_type")
    if model_type != "gpt2":
        raise UsageError(f"{directory} holds a {model_type!r} checkpoint "
                         f"({config.get('architectures')}), not a GPT-2 one")
    problems = []
    if config.get("activation_function", "gelu_new") not in _TANH_GELUS:
        problems.append(f"activation_function={config['activation_function']!r}")
    if config.get("n_inner") not in (None, 4 * config["n_embd"]):
        problems.append(f"n_inner={config['n_inner']}")
    if not config.get("scale_attn_weights", True) or config.get("scale_attn_by_inverse_layer_idx"):
        problems.append("non-standard attention scaling")
    if config.get("add_cross_attention"):
        problems.append("cross-attention")
    if problems:
        raise UsageError(f"{directory}: GPT-2 variant this model does not implement: {', '.join(problems)}")
    return config


def local_checkpoint_problem(source: str) -> Optional[str]:
    """Why `source` is neither a released GPT-2 name nor a local directory holding a Hugging Face
    GPT-2 checkpoint (config.json and safetensors weights), or None. A URI (gs://...) is not looked
    at here: the component that reads it names what is wrong."""
    if source in GPT2_SIZES or "://" in source:
        return None
    if not os.path.isdir(source):
        what = "it is a file" if os.path.exists(source) else "no such directory"
        return (f"neither a released GPT-2 model ({', '.join(GPT2_SIZES)}) nor a directory holding a Hugging Face "
                f"GPT-2 checkpoint ({what})")
    try:
        read_gpt2_config(source)
    except (OSError, ValueError) as e:
        return str(e)
    if not any(os.path.isfile(os.path.join(source, name)) for name in (WEIGHTS_FILE, WEIGHTS_INDEX_FILE)):
        return f"{source} holds no {WEIGHTS_FILE} (save the checkpoint with safetensors)"
    return None


def checkpoint_fields(source: str) -> Optional[dict]:
    """(context, vocabulary, depth, heads, width) of a released GPT-2 name or a local checkpoint's
    config.json: {"n_positions": ..., "vocab_size": ..., "n_layer": ..., "n_head": ..., "n_embd": ...};
    None for a URI or what is not a checkpoint."""
    from model.presets import GPT2_BLOCK_SIZE

    if source in GPT2_SIZES:
        return {"n_positions": GPT2_BLOCK_SIZE, "vocab_size": GPT2_VOCAB_SIZE, **GPT2_SIZES[source]}
    if "://" in source or local_checkpoint_problem(source):
        return None
    config = read_gpt2_config(source)
    return {key: config.get(key) for key in ("n_positions", "vocab_size", "n_layer", "n_head", "n_embd")}


def checkpoint_tokens(source: str, vocab_size: int) -> Optional[dict]:
    """The tokens a checkpoint (a released GPT-2 name, a local or gs:// directory) of vocab_size reads,
    in model/tokenizer.py's to_json form: its HF_TOKENIZER_FILE, which this project's exports write, else
    GPT-2 BPE where its vocabulary holds GPT-2's (a released GPT-2, another Hugging Face one); None when
    it names none and cannot read GPT-2 BPE."""
    named = None if source in GPT2_SIZES else files.read_json(os.path.join(source, HF_TOKENIZER_FILE), default=None)
    if named is not None:
        return named
    return {"kind": GPT2Tokenizer.kind} if vocab_size >= GPT2_VOCAB_SIZE else None


def hub_problem(name: str, timeout: float = 10.0) -> Optional[str]:
    """Why the released GPT-2 model `name` cannot be had here, and what to do, or None: it is in the
    Hugging Face hub's cache, or the hub answers (one request, no retries: what hf_hub_download would
    first ask). Offline without it, a run would fail only where the checkpoint is read."""
    import huggingface_hub
    import requests
    from huggingface_hub import constants

    repo_id = f"{HUB_ORGANISATION}/{name}"
    if all(isinstance(huggingface_hub.try_to_load_from_cache(repo_id, f), str) for f in (CONFIG_FILE, WEIGHTS_FILE)):
        return None
    instead = "; offline, name a local Hugging Face GPT-2 directory instead"
    if constants.HF_HUB_OFFLINE:
        return f"{name} is not in the Hugging Face hub's cache, and HF_HUB_OFFLINE is set{instead}"
    url = huggingface_hub.hf_hub_url(repo_id, CONFIG_FILE)
    try:
        requests.head(url, timeout=timeout, allow_redirects=False)
    except requests.RequestException as e:
        return (f"{name} is not in the Hugging Face hub's cache, and the hub ({constants.ENDPOINT}) cannot be "
                f"reached ({type(e).__name__}){instead}")
    return None
