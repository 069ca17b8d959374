"""The standard TFX Trainer runs the training engine (training/train.py) through this run_fn, in a
training process of its own (training/train_process.py) with its own TensorFlow threads, as the
benchmark's; this process keeps the TFX side and exports the trained model.

    Trainer(run_fn="components.trainer.run_fn.run_fn", examples=..., transform_graph=...,
            custom_config=settings.custom_config(train_config, deploy_config, resume=False))

- The token shards are the Examples artifact's Split-train/ and Split-val/ (TokenizeText's BPE
  shards, or Transform's transformed examples for characters: the same format).
- The tokenizer: GPT-2 BPE, or the character vocabulary of the transform graph, which is also
  the table the exported model maps text with.
- The training run lives in the ModelRun artifact (checkpoints, configs, TensorBoard, history.json);
  the Model artifact gets the SavedModel (Format-Serving) and a Hugging Face checkpoint (Format-HF)
  of the best weights (the last checkpoint saved, which is the best unless always_save_checkpoint).
- custom_config (components/trainer/settings.py): the TrainConfig (its out_dir and data_dir are set
  here), the DeployConfig (serving_weights, the SavedModel's matmul weights, float32 or bfloat16;
  serving_loop, how its generate signature decodes, auto, xla or graph: serving/export.py), and
  resume: continue from the checkpoint of the run that made `base_model`.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile

import tensorflow as tf

from components import artifact_layout
from components.trainer import settings
from core import files
from training import train_process
from training.checkpoint_shape import check_resume
from model.presets import POLICY_OF_DTYPE
from training.config import CHECKPOINT_DIR, MODEL_CONFIG_FILE, TOKENIZER_FILE, TRAIN_CONFIG_FILE
from core.errors import writing
from serving.export import export_saved_model

RUN_DIR_POINTER = artifact_layout.RUN_DIR_POINTER  # in the Model artifact: the ModelRun directory that trained it


def _examples_uri(file_pattern: str) -> str:
    """The Examples artifact's directory, from TFX's `<uri>/Split-train/*` file pattern."""
    return os.path.dirname(os.path.dirname(file_pattern))


def _copy_previous_run(base_model: str, out_dir: str) -> str:
    """Copy the checkpoints and configs of the run that made base_model into out_dir; that run's dir."""
    pointer = os.path.join(os.path.dirname(base_model.rstrip("/")), RUN_DIR_POINTER)
    if not tf.io.gfile.exists(pointer):
        raise FileNotFoundError(f"resume: the previous model {base_model} records no training run ({pointer})")
    with tf.io.gfile.GFile(pointer) as f:
        previous = f.read().strip()
    for name in (CHECKPOINT_DIR, MODEL_CONFIG_FILE, TOKENIZER_FILE):
        src, dst = os.path.join(previous, name), os.path.join(out_dir, name)
        if tf.io.gfile.isdir(src):  # checkpoints/: its files (not the *_temp/ dir of a save cut short)
            tf.io.gfile.makedirs(dst)
            for file in tf.io.gfile.listdir(src):
                if not tf.io.gfile.isdir(os.path.join(src, file)):
                    tf.io.gfile.copy(os.path.join(src, file), os.path.join(dst, file), overwrite=True)
        elif tf.io.gfile.exists(src):
            tf.io.gfile.copy(src, dst, overwrite=True)
    return previous


def run_fn(fn_args) -> None:
    train_config, deploy, resume = settings.read_custom_config(fn_args.custom_config or {})
    out_dir = fn_args.model_run_dir
    tf.io.gfile.makedirs(out_dir)
    if fn_args.transform_graph_path:  # characters: the vocabulary of the transform graph
        from components import char_transform

        tokenizer_json = char_transform.char_tokenizer(fn_args.transform_graph_path).to_json()
        # the exported model maps prompts through the transform graph itself
        export = dict(text_encoder=char_transform.TransformTextEncoder(fn_args.transform_graph_path))
    else:
        tokenizer_json, export = {"kind": "gpt2"}, {}
    export["weights"], export["loop"] = deploy.serving_weights, deploy.serving_loop
    changed = dict(out_dir=out_dir, data_dir=_examples_uri(fn_args.train_files[0]))
    if resume:
        if not fn_args.base_model:
            raise ValueError("resume was asked for, but there is no previous model to resume from")
        previous_run = _copy_previous_run(fn_args.base_model, out_dir)
        changed["init_from"] = "resume"
    cfg = dataclasses.replace(train_config, **changed)
    if resume:  # refused before training, so that ML Metadata records only what trained
        previous_config = files.read_json(os.path.join(previous_run, TRAIN_CONFIG_FILE), default=None) or {}
        check_resume(previous_config, cfg, previous_run)
    scratch = tempfile.mkdtemp(prefix="nanogpt-training-")  # the training process's outcome files
    try:
        trained = train_process.train(cfg, tokenizer_json, scratch)  # its own TensorFlow, as the benchmark's
        if not trained.chief:  # a multi-worker run: only the chief exports
            return
        model = train_process.trained_model(trained, POLICY_OF_DTYPE[cfg.dtype])  # the best weights
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    history = {"eval": trained.history, "train": trained.train_losses, "result": trained.result}
    with writing(f"{artifact_layout.HISTORY_FILE} in {out_dir}"):
        files.write_json(os.path.join(out_dir, artifact_layout.HISTORY_FILE), history, indent=None, sort_keys=False)
    model_uri = os.path.dirname(fn_args.serving_model_dir.rstrip("/"))
    export_saved_model(model, fn_args.serving_model_dir, tokenizer_json, **export)
    model.save_pretrained(os.path.join(model_uri, artifact_layout.HF_CHECKPOINT_DIR))
    with writing(f"{RUN_DIR_POINTER} in {model_uri}"):
        files.write_file(os.path.join(model_uri, RUN_DIR_POINTER), out_dir)
