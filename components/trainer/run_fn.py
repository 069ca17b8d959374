"""The standard TFX Trainer runs the training engine (training/train.py) through this run_fn, in a
training process of its own (training/train_process.py) with its own TensorFlow threads, as the
benchmark's; this process keeps the TFX side and exports the trained model.

    Trainer(run_fn="components.trainer.run_fn.run_fn", examples=..., transform_graph=...,
            custom_config=settings.custom_config(train_config, deploy_config, resume=False, trainings_dir=...))

- The token shards are the Examples artifact's Split-train/ and Split-val/ (TokenizeText's BPE
  shards, or Transform's transformed examples for characters: the same format).
- The tokenizer: GPT-2 BPE, or the character vocabulary of the transform graph, which is also
  the table the exported model maps text with.
- The training runs in a directory of the pipeline's trainings directory (custom_config
  "trainings_dir"; components/trainer/trainings.py), where an interrupted one is continued by the
  next execution (DeployConfig.continue_interrupted False trains anew); once finished it is copied
  into the ModelRun artifact (checkpoints, configs, TensorBoard, history.json). The Model artifact
  gets the SavedModel (Format-Serving) and a Hugging Face checkpoint (Format-HF) of the best weights
  (the last evaluation's checkpoint, which is the best unless always_save_checkpoint). Without
  "trainings_dir" it trains in the ModelRun directory itself.
- eval_only (the eval_gpt2* presets): nothing trains and no training process starts; the model of
  init_from is exported as it is, and the LMEvaluator is its evaluation (nanoGPT's eval_iters,
  which the training process would otherwise have made first: the same work twice).
- custom_config (components/trainer/settings.py): the TrainConfig (its out_dir and data_dir are set
  here), the DeployConfig (serving_weights, the SavedModel's matmul weights, float32, bfloat16 or
  auto; serving_loop, how its generate signature decodes, auto, xla or graph: serving/export.py;
  an auto is measured at the export, serving/choose.py), and
  resume: start from the checkpoint of the run that made `base_model`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
import time
from typing import Optional

import tensorflow as tf
from absl import logging

from components import artifact_layout
from components.deploy_settings import DeployConfig
from components.trainer import settings, trainings
from core import files
from training import train_process
from training.checkpoint_shape import check_resume, nothing_to_train, resumed_tokens_difference
from training.checkpoints import iteration_of
from training.distribution import chief_by_tf_config
from model.presets import POLICY_OF_DTYPE
from training.config import CHECKPOINT_DIR, MODEL_CONFIG_FILE, TOKENIZER_FILE, TRAIN_CONFIG_FILE
from core.errors import MissingFile, UsageError, writing
from serving import describe_export
from serving.export import export_record, export_saved_model


def _examples_uri(file_pattern: str) -> str:
    """The Examples artifact's directory, from TFX's `<uri>/Split-train/*` file pattern."""
    return os.path.dirname(os.path.dirname(file_pattern))


def _previous_run(base_model: str) -> str:
    """The training run (ModelRun directory) that made base_model."""
    model_uri = os.path.dirname(base_model.rstrip("/"))
    run_dir = artifact_layout.model_run_dir(model_uri)
    if run_dir is None:
        raise MissingFile(f"resume: the previous model {base_model} records no training run "
                          f"({os.path.join(model_uri, artifact_layout.RUN_DIR_POINTER)})")
    return run_dir


def _copy_previous_run(previous: str, out_dir: str) -> None:
    """Copy the checkpoints and configs of the training run `previous` into out_dir."""
    for name in (CHECKPOINT_DIR, MODEL_CONFIG_FILE, TOKENIZER_FILE):
        src, dst = os.path.join(previous, name), os.path.join(out_dir, name)
        if tf.io.gfile.isdir(src):  # checkpoints/: its files (not the *_temp/ dir of a save cut short)
            tf.io.gfile.makedirs(dst)
            for file in tf.io.gfile.listdir(src):
                if not tf.io.gfile.isdir(os.path.join(src, file)):
                    tf.io.gfile.copy(os.path.join(src, file), os.path.join(dst, file), overwrite=True)
        elif tf.io.gfile.exists(src):
            tf.io.gfile.copy(src, dst, overwrite=True)


def _tokenizer_and_export(fn_args, deploy: DeployConfig):
    """(the tokenizer's to_json form, export_saved_model's options): GPT-2 BPE, or for characters the
    vocabulary of the transform graph, through which the exported model also maps its prompts."""
    if fn_args.transform_graph_path:
        from components import char_transform

        tokenizer_json = char_transform.char_tokenizer(fn_args.transform_graph_path).to_json()
        export = dict(text_encoder=char_transform.TransformTextEncoder(fn_args.transform_graph_path))
    else:
        tokenizer_json, export = {"kind": "gpt2"}, {}
    return tokenizer_json, {**export, "weights": deploy.serving_weights, "loop": deploy.serving_loop}


def _resumable_run(base_model: str, cfg, tokenizer_json: dict) -> str:
    """The training run that made base_model, once it is known that this training can start from its
    checkpoint (the same shape of model, the same tokens): refused here, before a training process
    starts, as ML Metadata records only what trained."""
    previous_run = _previous_run(base_model)
    evaluated = tf.train.latest_checkpoint(os.path.join(previous_run, CHECKPOINT_DIR))  # what _copy_previous_run copies
    if evaluated is None:
        raise MissingFile(f"resume: the training run {previous_run} of the latest model saved no checkpoint to "
                          f"start from: train anew with --resume=False")
    check_resume(files.read_json(os.path.join(previous_run, TRAIN_CONFIG_FILE), default=None) or {}, cfg,
                 previous_run)
    difference = resumed_tokens_difference(previous_run, tokenizer_json)
    if difference:  # its ids would stand for other characters: a continuation would learn nonsense
        raise UsageError(f"resume: the latest model ({base_model}) was trained on other tokens than this data's: "
                         f"{difference}; train anew with --resume=False")
    why = nothing_to_train(iteration_of(evaluated), cfg)
    if why:  # it would publish (and push) the same model again
        raise UsageError(f"resume: the latest model ({base_model}) is {why}")
    return previous_run


def run_fn(fn_args) -> None:
    """TFX's entry point (see the module docstring): the training, new, continued or resumed, in a
    training process; then the export of its model."""
    train_config, deploy, resume = settings.read_custom_config(fn_args.custom_config or {})
    trainings_dir = (fn_args.custom_config or {}).get(settings.TRAININGS_DIR_KEY)
    model_run_dir = fn_args.model_run_dir
    tf.io.gfile.makedirs(model_run_dir)
    tokenizer_json, export = _tokenizer_and_export(fn_args, deploy)
    examples_uri = _examples_uri(fn_args.train_files[0])
    cfg = dataclasses.replace(train_config, data_dir=examples_uri)
    if resume and not fn_args.base_model:
        raise UsageError("resume was asked for, but there is no previous model to resume from")
    base_model = fn_args.base_model if resume else None
    if cfg.eval_only and not base_model and cfg.init_from != "resume":
        trained, model = _as_it_is(cfg, tokenizer_json, model_run_dir)
        _export(fn_args, trained, model, tokenizer_json, export, None)
        return
    ident = trainings.identity(cfg, examples_uri, fn_args.transform_graph_path, base_model)
    if base_model:  # nanoGPT's init_from=resume (from base_model's run, or its own interrupted continuation)
        cfg = dataclasses.replace(cfg, init_from="resume")
    choice = trainings.Choice(model_run_dir, None, "")
    if trainings_dir:
        choice = trainings.choose(trainings_dir, ident, cfg, model_run_dir, allow_continue=deploy.continue_interrupted)
    if choice.line:
        print(choice.line, flush=True)
    cfg = dataclasses.replace(cfg, out_dir=choice.directory)
    # a continued training has its own checkpoints; a resumed one starts from base_model's run's
    previous_run = _resumable_run(base_model, cfg, tokenizer_json) if base_model and not choice.continue_from \
        else None
    separate = choice.directory != model_run_dir
    with trainings.held(choice.directory) if separate else contextlib.nullcontext():
        if previous_run:
            _copy_previous_run(previous_run, cfg.out_dir)
        if separate:
            trainings.start(choice, ident, cfg, model_run_dir, chief=chief_by_tf_config())
        try:
            started = time.time()
            trained, model = _train(cfg, tokenizer_json, choice.continue_from)
            training_process_seconds = time.time() - started
        except BaseException:
            if separate:  # failed before its first checkpoint: nothing to continue from
                trainings.discard_if_empty(choice.directory)
            raise
    if trained is None:  # a multi-worker run: only the chief exports
        return
    if separate:
        trainings.publish(choice.directory, model_run_dir)
    _export(fn_args, trained, model, tokenizer_json, export, training_process_seconds)
    if separate:  # last: a kill before it leaves the training to be continued (exported again)
        trainings.completed(choice.directory, model_run_dir)


def _export(fn_args, trained: train_process.Outcome, model, tokenizer_json, export: dict,
            training_process_seconds: Optional[float]) -> None:
    """The run's records in the ModelRun directory; the SavedModel and the Hugging Face checkpoint
    of `model` in the Model artifact, with the pointer to the run. training_process_seconds: None
    when no training process ran (eval_only)."""
    model_run_dir = fn_args.model_run_dir
    history = {"eval": trained.history, "train": trained.train_losses, "result": trained.result}
    with writing(f"{artifact_layout.HISTORY_FILE} in {model_run_dir}"):
        files.write_json(os.path.join(model_run_dir, artifact_layout.HISTORY_FILE), history, indent=None,
                         sort_keys=False)
    with writing(f"{artifact_layout.TIMING_FILE} in {model_run_dir}"):
        files.write_json(os.path.join(model_run_dir, artifact_layout.TIMING_FILE),
                         {"training_seconds": round(trained.seconds, 1)})
    model_uri = os.path.dirname(fn_args.serving_model_dir.rstrip("/"))
    exporting = time.time()
    export_saved_model(model, fn_args.serving_model_dir, tokenizer_json, **export)
    model.save_pretrained(os.path.join(model_uri, artifact_layout.HF_CHECKPOINT_DIR), tokenizer_json)
    training = "no training process (eval_only)" if training_process_seconds is None else \
        f"the training process {training_process_seconds:.1f} s ({trained.time_split()})"
    logging.info("Trainer: %s, the export %.1f s: %s", training, time.time() - exporting,
                 describe_export(export_record(fn_args.serving_model_dir)))
    with writing(f"{artifact_layout.RUN_DIR_POINTER} in {model_uri}"):
        files.write_file(os.path.join(model_uri, artifact_layout.RUN_DIR_POINTER), model_run_dir)


def _as_it_is(cfg, tokenizer_json, run_dir: str):
    """eval_only (nanoGPT's eval_gpt2*): (an Outcome of nothing trained, the model of cfg.init_from as
    it is), with the run's settings in run_dir. No training process and no evaluation here: the
    pipeline's LMEvaluator evaluates the exported model (the preset's eval_batches of each split, as
    nanoGPT's eval_iters), which a training process would have done first, the same work twice."""
    from training.train import build_model, write_run_settings

    model, _ = build_model(cfg, tokenizer_json)
    write_run_settings(run_dir, model.config, cfg, tokenizer_json)
    print(f"eval_only: nothing trains; the model of init_from={cfg.init_from} is exported as it is, and the "
          f"LMEvaluator evaluates it", flush=True)
    return train_process.Outcome(chief=True, result={}, history=[], train_losses=[],
                                 model_config=model.config.to_dict(), weights=""), model


def _train(cfg, tokenizer_json, continue_from):
    """The training process's Outcome and the model with the weights to export (the last evaluation's
    checkpoint, the best unless always_save_checkpoint; or the final weights in the scratch directory
    when it saved no checkpoint); (None, None) on a worker
    other than the chief."""
    scratch = tempfile.mkdtemp(prefix="nanogpt-training-")  # the training process's outcome files
    try:
        trained = train_process.train(cfg, tokenizer_json, scratch, continue_from)  # its own TensorFlow
        if not trained.chief:
            return None, None
        return trained, train_process.trained_model(trained, POLICY_OF_DTYPE[cfg.dtype])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
