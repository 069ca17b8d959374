"""What a run on this machine needs besides its settings, checked before anything runs (the
settings themselves are checked by pipeline/configs.py make_run_config, wherever the pipeline runs):

- an output directory it can write in (--output: a directory, or one it can make);
- GPT-2's BPE files, for data of GPT-2 BPE tokens or a GPT-2 baseline beside characters: offline,
  without --bpe_dir, tiktoken cannot fetch them, which TokenizeText or the LMEvaluator would find
  only when they start;
- the released GPT-2 checkpoints that --baselines and --init_from name: in the Hugging Face hub's
  cache, or the hub reachable (offline: a local Hugging Face GPT-2 directory instead);
- a model to continue from for --resume=True, of the model shape these settings give;
- memory for a training step on this machine's CPU (training/memory.py check_fits: a lower bound).

A compiled spec (`runner.py compile`) runs elsewhere, where none of this can be seen from here.
"""

from __future__ import annotations

import os

from core import files
from core.errors import UserError, one_line
from core.settings import SettingError
from pipeline.configs import RunConfig


def check_here(config: RunConfig) -> None:
    """SettingError naming the first need this machine cannot meet."""
    _check_output(config)
    _check_gpt2_bpe(config)
    _check_released_checkpoints(config)
    _check_resume(config)
    _check_memory(config)


def _check_memory(config: RunConfig) -> None:
    """A training step that cannot fit in this machine's memory nor its largest GPU's (training/memory.py
    check_fits: a lower bound), refused before the data is tokenized. Not where the Trainer runs
    elsewhere (Vertex AI, a pod with accelerators, a TPU) or on a GPU whose memory cannot be read: the
    Trainer checks its own CPU, and TensorFlow's out-of-memory error on a device is one line."""
    from model.hf_files import checkpoint_fields
    from model.presets import GPT2_VOCAB_SIZE
    from training import memory

    train, deploy = config.train, config.deploy
    if train.eval_only or train.strategy == "tpu" or train.tpu or deploy.trains_on_vertex or deploy.train_accelerator:
        return
    gpu = memory.largest_gpu_memory()
    ram = memory.machine_memory()
    if gpu is None or not ram:
        return
    shape = dict(n_layer=train.n_layer, n_head=train.n_head, n_embd=train.n_embd, vocab_size=train.vocab_size) \
        if train.init_from == "scratch" else checkpoint_fields(train.init_from)
    if shape and shape.get("n_layer") and shape.get("n_head"):
        vocab = shape.get("vocab_size") or (GPT2_VOCAB_SIZE if config.data.tokenizer == "gpt2" else 0)
        memory.check_fits(shape["n_layer"], shape["n_head"], train.block_size, train.batch_size, train.dtype,
                          n_embd=shape.get("n_embd") or 0, vocab_size=vocab, memory=max(ram, gpu),
                          where="this machine" if ram >= gpu else "this machine's GPU")


def _check_output(config: RunConfig) -> None:
    """The output directory: a directory, or one that can be made, where this user can write."""
    files.check_writable_directory(config.output_dir, f"--output={config.output_dir}")


def check_spec_file(path: str) -> None:
    """SettingError unless `path` names a spec file that `runner.py compile` can write: YAML (.yaml,
    .yml) or JSON (.json), in a directory this user can write (checked before the compilation)."""
    if not path.endswith((".yaml", ".yml", ".json")):
        raise SettingError(f"--spec={path}: a spec is YAML (.yaml, .yml) or JSON (.json)")
    if os.path.isdir(path):
        raise SettingError(f"--spec={path}: a directory, not a file")
    files.check_writable_directory(os.path.dirname(os.path.abspath(path)), f"--spec={path}")


def reads_gpt2_bpe(source: str) -> bool:
    """Whether a baseline reads GPT-2 BPE tokens (its vocabulary is GPT-2's)."""
    from model.hf_files import checkpoint_fields
    from model.presets import GPT2_VOCAB_SIZE

    fields = checkpoint_fields(source)
    return bool(fields) and (fields["vocab_size"] or 0) >= GPT2_VOCAB_SIZE


def _check_gpt2_bpe(config: RunConfig) -> None:
    data = config.data
    if data.tokenizer == "gpt2":
        why = f"--tokenizer=gpt2 (the preset {config.preset})"
    else:
        gpt2 = [b for b in config.eval.baselines if reads_gpt2_bpe(b)]
        if not gpt2:
            return
        why = f"--baselines={gpt2[0]} (a GPT-2 baseline reads the val text in GPT-2 BPE tokens)"
    from model.tokenizer import GPT2Tokenizer

    try:
        GPT2Tokenizer(data.bpe_dir)
    except UserError as e:
        raise SettingError(f"{why} needs GPT-2's BPE files: {one_line(e)}") from None


def _check_released_checkpoints(config: RunConfig) -> None:
    from model.hf_files import hub_problem
    from model.presets import GPT2_SIZES

    named = [("--init_from", config.train.init_from)] + [("--baselines", b) for b in config.eval.baselines]
    for setting, source in named:
        if source in GPT2_SIZES:
            problem = hub_problem(source)
            if problem:
                raise SettingError(f"{setting}={source}: {problem}")


def _check_resume(config: RunConfig) -> None:
    """A model to continue from, whose training run had the model shape of these settings (what
    the Trainer checks again, once the tokenization is done)."""
    if not config.pipeline.resume:
        return
    from components.artifact_layout import model_run_dir
    from core import files
    from pipeline import metadata
    from training.checkpoint_shape import CheckpointMismatch, check_resume, evaluated_iteration, nothing_to_train
    from training.config import TRAIN_CONFIG_FILE

    from ml_metadata.proto import metadata_store_pb2

    models = [m for m in metadata.sqlite_store(config.metadata_path).get_artifacts_by_type("Model")
              if m.state == metadata_store_pb2.Artifact.LIVE] if os.path.isfile(config.metadata_path) else []
    if not models:
        raise SettingError(f"--resume=True: no model in {config.metadata_path} to continue from; run once without "
                           f"--resume")
    latest = max(models, key=lambda a: a.id)  # what the pipeline's latest_model_resolver takes
    run_dir = model_run_dir(latest.uri)
    previous = files.read_json(os.path.join(run_dir, TRAIN_CONFIG_FILE), default=None) if run_dir else None
    if previous:
        try:
            check_resume(previous, config.train, run_dir, asked_by="--resume=True")
        except CheckpointMismatch as e:
            raise SettingError(one_line(e)) from None
    iteration = evaluated_iteration(run_dir) if run_dir else None
    why = iteration is not None and nothing_to_train(iteration, config.train)
    if why:  # as the Trainer would find once the data is tokenized
        raise SettingError(f"--resume=True: the latest model ({latest.uri}) is {why}")
