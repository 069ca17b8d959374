"""Checkpoints know their shape: what a checkpoint's variables say of the model (tf.train.
list_variables, nothing restored), compared with the configuration that is about to read it, so
that a mismatch is refused with one line naming the field and both values instead of restoring
part of a model (a config with fewer layers than the checkpoint) or failing deep in TensorFlow."""

from __future__ import annotations

import os
from typing import Dict, Optional

from core.errors import UserError

SHAPE_FIELDS = ("n_layer", "n_head", "n_embd", "block_size", "bias", "vocab_size")


class CheckpointMismatch(UserError):
    pass


def checkpoint_shape(path: str) -> Dict[str, object]:
    """n_layer, n_embd, vocab_size, block_size and bias of the GPT saved as `model` in a
    tf.train.Checkpoint (n_head leaves no trace in the shapes). Read from the checkpoint's object
    graph: a variable's key names the first path that reached it (the optimizer's, for most)."""
    import tensorflow as tf
    from tensorflow.core.protobuf import trackable_object_graph_pb2

    reader = tf.compat.v1.train.NewCheckpointReader(path)  # not load_checkpoint: ram:// prefixes look like dirs
    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))

    def node(*names):
        current = graph.nodes[0]
        for name in names:
            child = next((c for c in current.children if c.local_name == name), None)
            if child is None:
                return None
            current = graph.nodes[child.node_id]
        return current

    def shape(*names):
        found = node(*names)
        keys = [a.checkpoint_key for a in found.attributes] if found is not None else []
        return reader.get_variable_to_shape_map()[keys[0]] if keys else None

    wte, wpe, blocks = shape("model", "wte", "weight"), shape("model", "wpe", "weight"), node("model", "h")
    if wte is None or wpe is None or blocks is None:
        raise CheckpointMismatch(f"checkpoint {path} holds no GPT (no model.wte, model.wpe and model.h)")
    return {"n_layer": len(blocks.children), "n_embd": wte[1], "vocab_size": wte[0], "block_size": wpe[0],
            "bias": shape("model", "h", "0", "attn", "c_attn", "bias") is not None}


def check_checkpoint(path: str, config, config_source: str) -> None:
    """Refuse a GPTConfig (read from config_source) that is not the shape of the checkpoint at path."""
    for field, value in checkpoint_shape(path).items():
        if getattr(config, field) != value:
            raise CheckpointMismatch(f"checkpoint {path} has {field}={value}, {config_source} says "
                                     f"{field}={getattr(config, field)}: restore it with the configuration "
                                     f"it was trained with")


def resumed_tokens_difference(run_dir: str, tokenizer_json: Optional[dict]) -> Optional[str]:
    """How the tokens the training run in run_dir was trained on (its tokenizer.json) differ from the
    data's (model/tokenizer.py tokens_difference): a continuation on other characters would read its
    ids as them. None when they are the same, or either is not known."""
    from core import files
    from model.tokenizer import tokens_difference
    from training.config import TOKENIZER_FILE

    trained_on = files.read_json(os.path.join(run_dir, TOKENIZER_FILE), default=None)
    return tokens_difference(trained_on, tokenizer_json) if trained_on and tokenizer_json else None


def init_tokens_difference(source: str, vocab_size: int, tokenizer_json: Optional[dict]) -> Optional[str]:
    """How the tokens of the checkpoint a training starts from (init_from: a GPT-2 name or a directory,
    model/hf_files.py checkpoint_tokens) differ from the data's, or None when they are the same or either
    is not known: GPT-2's weights on character ids, or a character model on other characters, would
    read the ids as other text."""
    from model.hf_files import checkpoint_tokens
    from model.tokenizer import tokens_difference

    trained_on = checkpoint_tokens(source, vocab_size)
    return tokens_difference(trained_on, tokenizer_json) if trained_on and tokenizer_json else None


def nothing_to_train(iteration: int, cfg) -> Optional[str]:
    """Why a training resumed from a checkpoint of `iteration` would train nothing (max_iters not past it:
    nanoGPT's makes one step more), said after "is", or None; eval_only trains nothing anyway."""
    if iteration >= cfg.max_iters and not cfg.eval_only:
        return (f"at iteration {iteration}, and max_iters={cfg.max_iters} is not past it: nothing would train; "
                f"raise --max_iters")
    return None


def evaluated_iteration(run_dir: str) -> Optional[int]:
    """The iteration of the newest evaluation checkpoint of a training run (what a resume starts from),
    read from TensorFlow's checkpoint state file without TensorFlow (a check before anything runs); None
    without one."""
    import re

    from core import files
    from training.config import CHECKPOINT_DIR

    state = files.read_text(os.path.join(run_dir, CHECKPOINT_DIR, "checkpoint"), None)
    found = re.search(r'^model_checkpoint_path: "(?:.*/)?ckpt-(\d+)"$', state or "", re.M)
    return int(found.group(1)) if found else None


def resumed_shape(cfg, log=print):
    """nanoGPT's init_from=resume on its command line: the model's shape is the checkpoint's (its run's
    train_config.json) whatever the arguments say; cfg with those fields, and a line naming each one it
    overrode. (The Trainer itself refuses a shape that differs: check_resume.)"""
    from core import files
    from training.config import TRAIN_CONFIG_FILE

    previous = files.read_json(os.path.join(cfg.out_dir, TRAIN_CONFIG_FILE), default=None) or {}
    return _taken(cfg, {field: previous[field] for field in SHAPE_FIELDS if field in previous}, log)


def started_shape(cfg, log=print):
    """init_from a checkpoint (a GPT-2 name, a local Hugging Face directory): the model's shape is the
    checkpoint's, as nanoGPT's train.py takes it (its layers, heads and width; biases, which GPT-2's
    checkpoints always hold), whatever the settings say; cfg with those fields, so that the settings
    recorded (train_config.json, ML Metadata) are the model's, and a line naming each one it overrode.
    A checkpoint at a URI is read where the training runs: cfg as it is."""
    from training.config import init_checkpoint_fields

    fields = init_checkpoint_fields(cfg.init_from)
    if not fields:
        return cfg
    return _taken(cfg, {"n_layer": fields["n_layer"], "n_head": fields["n_head"], "n_embd": fields["n_embd"],
                        "bias": True}, log)


def model_shape(cfg, config, log=print):
    """cfg with the shape of the model a checkpoint made (its GPTConfig), a line naming each field it
    overrode: what started_shape does where the checkpoint could not be read before (a URI)."""
    return _taken(cfg, {"n_layer": config.n_layer, "n_head": config.n_head, "n_embd": config.n_embd,
                        "bias": config.bias}, log)


def _taken(cfg, shape: dict, log):
    """cfg with the checkpoint's `shape`, a line naming each field it overrode."""
    import dataclasses

    changed = {field: value for field, value in shape.items() if value != getattr(cfg, field)}
    if changed:
        log(f"init_from={cfg.init_from}: the model's shape is the checkpoint's, as nanoGPT takes it: "
            + ", ".join(f"{field}={value} (not {getattr(cfg, field)})" for field, value in changed.items()))
        cfg = dataclasses.replace(cfg, **changed)
    return cfg


def check_resume(previous: dict, cfg, out_dir: str, asked_by: str = "resume") -> None:
    """init_from=resume: refuse training settings (cfg) whose model shape differs from those of the
    run being continued (its train_config.json, `previous`): the resumed model would keep the old
    shape while the new settings are recorded. asked_by: what asked to resume, which the error
    begins with (the Trainer's "resume", the command line's "--resume=True")."""
    differ = [field for field in SHAPE_FIELDS if field in previous and previous[field] != getattr(cfg, field)]
    if differ:  # all of them in the one line: a finetuned model's shape is the checkpoint's, biases and all
        def said(source):
            return ", ".join(f"{field}={source(field)}" for field in differ)

        flags = " ".join(f"--{field}={previous[field]}" for field in differ)
        raise CheckpointMismatch(
            f"{asked_by}: the checkpoint in {out_dir} has {said(previous.get)}, the config says "
            f"{said(lambda field: getattr(cfg, field))}: resume with {flags}, or train anew (init_from=scratch, "
            f"or resume=False in the pipeline)")
