"""The training engine, nanoGPT's train.py in TensorFlow: usable on its own or from the TFX Trainer.

One process on a CPU or GPU:
$ python -m training.train --preset=shakespeare_char --text_file=input.txt --tokenizer=char
Several GPUs of one machine: --strategy=mirrored. Several machines: --strategy=multi_worker with
TF_CONFIG set on each (every worker runs the same command). A TPU: --strategy=tpu --tpu=NAME.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import sys
import time
from typing import Dict, Optional

# `python -m training.train`: its command line is read here, above the imports, so that a mistake or
# --help is answered before TensorFlow loads (~12 s); main() takes it from here.
_COMMAND_LINE_CONFIG = None
if __name__ == "__main__":
    from training import config as _config
    from core import console as _console, errors as _errors, settings as _settings

    _console.check_environment("python -m training.train")
    _COMMAND_LINE_CONFIG = _settings.command_line("python -m training.train", _errors.pop_debug(sys.argv[1:])[1],
                                                  _config.command_line_config, _config.train_help)
    _console.quiet_imports()  # TensorFlow's start-up chatter left out, as runner.py does
    _console.quiet_tensorflow()

import numpy as np
import tensorflow as tf

from training import batches, checkpoint_shape, devices, divergence, memory, stopping
from training.distribution import (agreed, branch_rows, cpu_branches, is_chief, losing_a_worker_ends_it, make_strategy,
                                   num_workers, worker_dir)
from core import files
from training.checkpoints import Progress, RunCheckpoints, newest_checkpoint
from training.config import (CHECKPOINT_DIR, MODEL_CONFIG_FILE, TENSORBOARD_DIR, TOKENIZER_FILE,
                          TRAIN_CONFIG_FILE, TrainConfig, command_line_config, starts_from_checkpoint, train_help)
from training.data import NANOGPT_META, TokenStream, check_token_ids, load_split, nanogpt_tokenizer, prepare_text_file
from core.errors import MissingFile, UsageError, writing
from core.settings import command_line
from core.shards import SPLITS, TRAIN, VAL
from model.model import GPT, GPTConfig, counted_targets, cross_entropy
from model.presets import GPT2_SIZES, PADDED_VOCAB_SIZE, POLICY_OF_DTYPE
from model.tokenizer import TOKENIZERS
from training.optim import AdamW, DynamicLossScale
from training.schedule import get_lr


# --------------------------------------------------------------------------------------------
# the model and its optimizer step


def vocab_size(cfg: TrainConfig, tokenizer_json: Optional[dict]) -> int:
    if cfg.vocab_size:
        return cfg.vocab_size
    if tokenizer_json and tokenizer_json.get("kind") == "char":
        return len(tokenizer_json["chars"])
    return PADDED_VOCAB_SIZE  # GPT-2 BPE, padded to a multiple of 64 for efficiency, as nanoGPT


def write_run_settings(out_dir: str, model_config: Optional[GPTConfig] = None, cfg: Optional[TrainConfig] = None,
                       tokenizer_json: Optional[dict] = None) -> None:
    """A run's settings beside its checkpoints, those given: the model's shape (MODEL_CONFIG_FILE),
    the training's settings (TRAIN_CONFIG_FILE) and the tokenizer (TOKENIZER_FILE), which
    `init_from=resume`, sampling and the export read back."""
    records = ((MODEL_CONFIG_FILE, model_config.to_dict() if model_config else None),
               (TRAIN_CONFIG_FILE, cfg.to_dict() if cfg else None), (TOKENIZER_FILE, tokenizer_json))
    written = [(name, record) for name, record in records if record is not None]
    with writing(" and ".join(name for name, _ in written) + f" in {out_dir}"):
        for name, record in written:
            files.write_json(os.path.join(out_dir, name), record)


def build_model(cfg: TrainConfig, tokenizer_json: Optional[dict]):
    """(model, start iteration) for cfg.init_from: from scratch or a GPT-2 checkpoint at 0; on
    resume the saved model's shape, its iteration (None) read with the checkpoint later."""
    policy = POLICY_OF_DTYPE[cfg.dtype]
    if cfg.init_from == "resume":
        saved = files.read_json(os.path.join(cfg.out_dir, MODEL_CONFIG_FILE), default=None)
        if saved is None:
            raise MissingFile(f"init_from=resume: no {MODEL_CONFIG_FILE} in {cfg.out_dir}")
        trained = files.read_json(os.path.join(cfg.out_dir, TRAIN_CONFIG_FILE), default=None) or {}
        checkpoint_shape.check_resume(trained, cfg, cfg.out_dir)
        return GPT(GPTConfig(**saved), dtype_policy=policy), None
    if cfg.init_from == "scratch":
        config = GPTConfig(n_layer=cfg.n_layer, n_head=cfg.n_head, n_embd=cfg.n_embd,
                           block_size=cfg.block_size, bias=cfg.bias, vocab_size=vocab_size(cfg, tokenizer_json),
                           dropout=cfg.dropout)
        return GPT(config, dtype_policy=policy, seed=cfg.seed), 0
    if cfg.init_from in GPT2_SIZES or tf.io.gfile.isdir(cfg.init_from):
        model = GPT.from_pretrained(cfg.init_from, dropout=cfg.dropout, block_size=cfg.block_size,
                                    dtype_policy=policy)
        difference = checkpoint_shape.init_tokens_difference(cfg.init_from, model.config.vocab_size, tokenizer_json)
        if difference:
            raise UsageError(f"init_from={cfg.init_from}: it was trained on other tokens than this data's: "
                             f"{difference}; train from scratch (init_from=scratch)")
        return model, 0
    raise UsageError(f"init_from={cfg.init_from!r}: use 'scratch', 'resume', a GPT-2 name "
                     f"{sorted(GPT2_SIZES)} or a checkpoint directory")


def make_train_step(cfg: TrainConfig, loss_fn, optimizer: AdamW, loss_scale: Optional[DynamicLossScale],
                    strategy: tf.distribute.Strategy):
    """The compiled optimizer step train_step(xs, ys, lr) -> (loss, gradient norm): each replica's
    gradients of loss_fn(x, y, training=True) accumulated over its micro-batches, summed across
    replicas, clipped, applied (float16: skipped when they overflowed). Over 50 lines because its
    three nested graph functions share one closure."""
    params = optimizer.params
    total_micro = float(cfg.gradient_accumulation_steps)
    # AutoGraph only for the accumulation loop below: the rest is plain ops, whose conversion was ~0.7
    # s of the step's first trace
    loss_fn = tf.autograph.experimental.do_not_convert(loss_fn)

    @tf.function(jit_compile=cfg.compile)
    def gradients(xs, ys, scale):
        """Sum over this replica's micro-batches of loss/total_micro and its gradients."""
        def one(x, y):
            with tf.GradientTape() as tape:
                loss = loss_fn(x, y, training=True) / total_micro
                scaled = loss * scale
            grads = tape.gradient(scaled, params)
            return loss, [tf.convert_to_tensor(g) / scale for g in grads]

        loss, grads = one(xs[0], ys[0])
        if xs.shape[0] == 1:  # one micro-batch per replica: no loop in the graph (~1 ms a step on a CPU)
            return loss, grads
        for i in tf.range(1, tf.shape(xs)[0]):  # gradient accumulation
            micro_loss, micro_grads = one(xs[i], ys[i])
            loss += micro_loss
            grads = [a + b for a, b in zip(grads, micro_grads)]
        return loss, grads

    def replica_step(xs, ys, lr):
        scale = loss_scale.scale if loss_scale else tf.constant(1.0)
        loss, grads = gradients(xs, ys, scale)
        ctx = tf.distribute.get_replica_context()
        grads = ctx.all_reduce(tf.distribute.ReduceOp.SUM, grads)
        loss = ctx.all_reduce(tf.distribute.ReduceOp.SUM, loss)
        grad_norm = tf.linalg.global_norm(grads)
        if cfg.grad_clip > 0.0:
            grads, _ = tf.clip_by_global_norm(grads, cfg.grad_clip, use_norm=grad_norm)
        if loss_scale is None:
            optimizer.apply(grads, lr)
        else:  # float16: skip the update when the scaled gradients overflowed
            finite = tf.math.is_finite(grad_norm)
            optimizer.apply(grads, lr, finite=finite)
            loss_scale.update(finite)
        return loss, grad_norm

    @tf.function(autograph=False)
    def train_step(xs, ys, lr):
        loss, grad_norm = strategy.run(replica_step, args=(xs, ys, lr))
        loss = strategy.reduce(tf.distribute.ReduceOp.MEAN, loss, axis=None)
        return (divergence.check_step(loss, loss_scale),
                strategy.reduce(tf.distribute.ReduceOp.MEAN, grad_norm, axis=None))

    return train_step


# --------------------------------------------------------------------------------------------
# the trainer


class EvalPace:
    """Whether the first evaluation of a run takes long, and how long: nanoGPT's eval_iters (200 in its
    configs) at GPU batch sizes on a CPU is many minutes before the first line. Its batches are timed
    from the end of the first (which traced the step); once `measure_s` have passed, `said()` gives the
    line to print if the whole evaluation would take over `long_s`, once."""

    def __init__(self, eval_iters: int, measure_s: float = 5.0, long_s: float = 60.0, clock=time.time):
        self.eval_iters, self.batches = eval_iters, len(SPLITS) * eval_iters
        self.measure_s, self.long_s, self.clock = measure_s, long_s, clock
        self.done, self.started, self.over = 0, None, False

    def said(self) -> Optional[str]:
        """Called after each batch: the line to print, or None."""
        self.done += 1
        if self.over:
            return None
        if self.started is None:
            self.started = self.clock()
            return None
        seconds = self.clock() - self.started
        if seconds < self.measure_s:
            return None
        self.over = True
        total = seconds / (self.done - 1) * (self.batches - 1)
        if total < self.long_s:
            return None
        return (f"the first evaluation takes about {total / 60:.0f} min at this pace ({self.batches} batches: "
                f"eval_iters={self.eval_iters} of each split); a smaller --eval_iters estimates the loss sooner")


class _EvaluationStopped(Exception):
    """A stop was asked during an evaluation (one worker): the iteration is saved without it."""


class Trainer:
    """Holds the model, optimizer, data and checkpoints of one run; `run()` is nanoGPT's loop.
    Its batches come from a BatchSource (training/batches.py: this engine's draws or nanoGPT's).
    continue_from: a checkpoint of an interrupted run of this training to go on from exactly
    (training/checkpoints.py); stop: the StopRequest that signals fill (training/stopping.py)."""

    def __init__(self, cfg: TrainConfig, strategy: Optional[tf.distribute.Strategy] = None,
                 tokenizer_json: Optional[dict] = None, log=print, continue_from: Optional[str] = None,
                 stop: Optional[stopping.StopRequest] = None):
        self.cfg = cfg
        self.log = log
        self.stop = stop
        self.seconds = 0.0  # the training loop's own time, once run() has finished
        self.loop_ended = 0.0
        self._pace = EvalPace(cfg.eval_iters)  # said at the first evaluation
        self._set_up_devices(strategy)
        tf.io.gfile.makedirs(cfg.out_dir)
        self.worker_dir = worker_dir(cfg.out_dir, self.chief)
        self.tokenizer_json = tokenizer_json
        self._load_data()
        checks_memory = not cfg.eval_only and devices.on_cpu(self.strategy)  # (a GPU's error is one line)
        if checks_memory and cfg.init_from == "scratch":  # before its weights are made
            memory.check_fits(cfg.n_layer, cfg.n_head, cfg.block_size, cfg.batch_size, cfg.dtype, n_embd=cfg.n_embd,
                              vocab_size=vocab_size(cfg, self.tokenizer_json))
        self._build_state()
        if checks_memory and cfg.init_from != "scratch":  # a loaded model's shape, before a step is compiled
            shape = self.model.config
            memory.check_fits(shape.n_layer, shape.n_head, shape.block_size, cfg.batch_size, cfg.dtype,
                              n_embd=shape.n_embd, vocab_size=shape.vocab_size)
        if continue_from:
            self._continue(continue_from)
        elif cfg.init_from == "resume":
            self._restore()  # refused if the checkpoint's tokens are not the data's, before the id check below
        for stream in (self.train_data, self.val_data):  # against the model's own vocabulary (a resumed one's too)
            check_token_ids(stream.array(), self.model.config.vocab_size, f"the {stream.name} split of {self.data_dir}")
        if self.chief and self.tokenizer_json and not cfg.eval_only:  # once the data is known to be the model's
            write_run_settings(cfg.out_dir, tokenizer_json=self.tokenizer_json)
        self.batches = batches.batch_source(cfg, {TRAIN: self.train_data, VAL: self.val_data},
                                            strategy=self.strategy, model=self.model, start_iter=self.start_iter,
                                            evaluates=self._evaluates, restored=bool(continue_from))
        self._train_step = make_train_step(cfg, self._loss, self.optimizer, self.loss_scale, self.strategy)
        self._eval_step = tf.function(self._loss, jit_compile=cfg.compile, autograph=False)

    # -- setup --------------------------------------------------------------------------------

    def _set_up_devices(self, strategy: Optional[tf.distribute.Strategy]) -> None:
        """The distribution strategy (nanoGPT's DDP set-up), the line naming its devices, and how the
        gradient accumulation divides across its replicas."""
        cfg = self.cfg
        notes = []  # said after the devices, which the first line names
        self.branches = cpu_branches(cfg, notes.append)
        self.strategy = strategy or make_strategy(cfg, self.log, self.stop)
        self.devices, detected_peak = devices.describe(self.strategy)
        self.peak_flops = cfg.peak_flops or detected_peak  # 0.0: no MFU (a CPU, or a device not in the table)
        self.log(f"training on {self.devices}" + (f"; MFU of a {self.peak_flops:.3g} FLOP/s peak"
                                                  if self.peak_flops else ""))
        for note in [devices.unused_gpu_warning(), devices.slow_float16_warning(cfg.dtype), *notes]:
            if note:
                self.log(note)
        self.chief = is_chief(self.strategy)
        self.workers = num_workers(self.strategy)
        if self.stop is not None and self.workers > 1:
            stopping.reclaim(self.stop)
        self.replicas = self.strategy.num_replicas_in_sync
        if cfg.gradient_accumulation_steps % self.replicas:
            raise ValueError(f"gradient_accumulation_steps={cfg.gradient_accumulation_steps} must be "
                             f"a multiple of the number of replicas ({self.replicas})")
        self.local_accumulation = cfg.gradient_accumulation_steps // self.replicas
        batches.check_supported(cfg, self.replicas)

    def _load_data(self) -> None:
        """train_data and val_data from data_dir's shards, or from text_file tokenized here."""
        cfg = self.cfg
        if cfg.data_dir:
            data_dir = cfg.data_dir
            if self.tokenizer_json is None:
                self.tokenizer_json = (files.read_json(os.path.join(cfg.data_dir, TOKENIZER_FILE), default=None)
                                       or nanogpt_tokenizer(cfg.data_dir))
        elif cfg.text_file:
            data_dir = os.path.join(self.worker_dir, "data")  # each worker tokenizes its own copy
            self.tokenizer_json = prepare_text_file(cfg, data_dir)
        else:
            raise ValueError("no training data: set data_dir (token shards) or text_file")
        self.data_dir = data_dir
        self.train_data = TokenStream(load_split(data_dir, TRAIN, log=self.log), cfg.block_size, TRAIN)
        self.val_data = TokenStream(load_split(data_dir, VAL, log=self.log), cfg.block_size, VAL)
        if self.tokenizer_json is None:  # as nanoGPT's train.py and sample.py take data without a meta.pkl
            self.tokenizer_json = {"kind": "gpt2"}
            self.log(f"{data_dir} names no tokenizer (no {TOKENIZER_FILE} or {NANOGPT_META}): its token ids are taken "
                     f"as GPT-2 BPE's")
        if self.tokenizer_json.get("kind") in TOKENIZERS:  # recorded as the data's (the setting is text_file's)
            self.cfg = dataclasses.replace(self.cfg, tokenizer=self.tokenizer_json["kind"])

    def _build_state(self) -> None:
        """The model, optimizer, counters and their checkpoint manager, under the strategy."""
        cfg = self.cfg
        with self.strategy.scope():
            self.model, self.start_iter = build_model(cfg, self.tokenizer_json)
            if starts_from_checkpoint(cfg.init_from):  # recorded as the model is (a gs:// checkpoint's too)
                self.cfg = checkpoint_shape.model_shape(cfg, self.model.config, self.log)
            decay, no_decay = self.model.parameter_groups()
            self.optimizer = AdamW(decay, no_decay, weight_decay=cfg.weight_decay, beta1=cfg.beta1,
                                   beta2=cfg.beta2)
            self.loss_scale = DynamicLossScale() if cfg.dtype == "float16" else None
            self.iter_num = tf.Variable(0, dtype=tf.int64, trainable=False)
            self.best_val_loss = tf.Variable(1e9, dtype=tf.float32, trainable=False)
        self.progress = Progress()
        self.checkpoint = tf.train.Checkpoint(progress=self.progress, **self._state())
        self.checkpoints = RunCheckpoints(self.checkpoint, os.path.join(self.worker_dir, CHECKPOINT_DIR))
        self._last_checkpoint = time.monotonic()

    def _state(self, saved: Optional[str] = None) -> dict:
        """What a checkpoint restores: the loss scale only when both the run and `saved` have one (a
        run may change its precision)."""
        state = dict(model=self.model, optimizer=self.optimizer, iter_num=self.iter_num,
                     best_val_loss=self.best_val_loss)
        if self.loss_scale and (saved is None or any(n.startswith("loss_scale/") for n, _ in
                                                     tf.train.list_variables(saved))):
            state["loss_scale"] = self.loss_scale
        return state

    def _restore(self):
        """init_from=resume, nanoGPT's, from the newest checkpoint of out_dir: the last evaluation's
        (nanoGPT's ckpt.pt) or a newer one taken between evaluations (checkpoints/latest, which
        nanoGPT has not); the run evaluates again where it starts when its eval_interval falls there (on
        this run's data, which may be other), and its records go on from the checkpoint's: history.json
        shows the model's whole training."""
        newest = newest_checkpoint(self.cfg.out_dir)
        if newest is None:
            raise MissingFile(f"init_from=resume: no checkpoint in {self.cfg.out_dir}/{CHECKPOINT_DIR}")
        latest = newest[0]
        checkpoint_shape.check_checkpoint(latest, self.model.config, os.path.join(self.cfg.out_dir, MODEL_CONFIG_FILE))
        difference = checkpoint_shape.resumed_tokens_difference(self.cfg.out_dir, self.tokenizer_json)
        if difference:  # its ids would stand for other characters
            raise UsageError(f"init_from=resume: the checkpoint in {self.cfg.out_dir} was trained on other tokens than "
                             f"this data's: {difference}")
        tf.train.Checkpoint(progress=self.progress, **self._state(latest)).restore(latest) \
            .expect_partial().assert_existing_objects_matched()
        self.start_iter = int(self.iter_num.numpy())
        if self._evaluates(self.start_iter):  # its evaluation there is made again, on this run's data
            self.progress.forget_evaluation(self.start_iter)
        why = checkpoint_shape.nothing_to_train(self.start_iter, self.cfg)
        if why:
            raise UsageError(f"init_from=resume: {latest} is {why}")
        self.log(f"resuming from {latest} at iter {self.start_iter}")

    def _continue(self, path: str):
        """Go on from checkpoint `path` of this training as if never interrupted: its state and
        records; the evaluation of the iteration it holds is not made twice."""
        checkpoint_shape.check_checkpoint(path, self.model.config, "the training's settings")
        tf.train.Checkpoint(progress=self.progress, **self._state(path)).restore(path) \
            .expect_partial().assert_existing_objects_matched()
        self.start_iter = int(self.iter_num.numpy())
        self.log(f"continuing from {path} at iter {self.start_iter}")

    def save_checkpoint(self, number: int, between_evaluations: bool = False) -> str:
        """Save the run's state at iteration `number` (training/checkpoints.py: an evaluation's
        checkpoint, or the latest one between evaluations)."""
        if self.chief:
            write_run_settings(self.cfg.out_dir, self.model.config, self.cfg)
        started = time.monotonic()
        path = self.checkpoints.save(number, between_evaluations)
        self._last_checkpoint = time.monotonic()
        if self.chief:
            self.log(f"saving checkpoint to {path}" + (f" ({self._last_checkpoint - started:.1f} s)"
                                                       if between_evaluations else ""))
        return path

    # -- stopping, and checkpoints between evaluations ----------------------------------------

    def _requests(self, iter_num: int):
        """(stop, checkpoint due by time) at the top of iteration iter_num, agreed by all workers."""
        minutes = self.cfg.checkpoint_minutes
        flags = [self.stop is not None and self.stop.signal is not None,
                 bool(minutes) and iter_num > self.start_iter
                 and time.monotonic() - self._last_checkpoint >= 60 * minutes]
        if self.workers > 1:  # every worker must save at the same iteration: the flags of any of them count
            flags = agreed(self.strategy, flags)
        return flags

    def _between_iterations(self, iter_num: int) -> None:
        """Stop here when asked (checkpointing this iteration), or checkpoint when it is time."""
        stop, due = self._requests(iter_num)
        if stop:
            self._stopped(iter_num)
        if due:
            self.save_checkpoint(iter_num, between_evaluations=True)

    def _stopped(self, iter_num: int):
        """Checkpoint iteration iter_num (unless saved already) and end with TrainingStopped; eval_only
        ends with EvaluationStopped, nothing saved."""
        name = self.stop.signal if self.stop is not None and self.stop.signal else "another worker's stop"
        if self.cfg.eval_only:
            raise stopping.EvaluationStopped(name)
        self.iter_num.assign(iter_num)
        path = self.checkpoints.at(iter_num) or self.save_checkpoint(iter_num, between_evaluations=True)
        if not self.chief:  # its copy was for the collective save only; the chief's is the checkpoint
            shutil.rmtree(self.worker_dir, ignore_errors=True)
            path = os.path.join(self.cfg.out_dir, os.path.relpath(path, self.worker_dir))
        raise stopping.TrainingStopped(name, iter_num, path)

    # -- steps ---------------------------------------------------------------------------------

    def _loss(self, x, y, training=False):
        """The batch's mean loss, computed as self.branches independent parts (see cpu_branches)."""
        rows = branch_rows(x.shape[0], self.branches) if x.shape[0] is not None else []
        if len(rows) <= 1:
            return cross_entropy(self.model(x, training=training), y, differentiated=training)
        num_targets = counted_targets(y)
        return tf.add_n([cross_entropy(self.model(x[a:b], training=training), y[a:b], num_targets=num_targets,
                                       differentiated=training) for a, b in rows])

    def estimate_loss(self) -> Dict[str, float]:
        """Mean loss over eval_iters batches of each split (the same batches at each evaluation
        of a given iteration, different ones at the next). A stop asked meanwhile cuts it short
        (_EvaluationStopped) on one worker; several workers agree between iterations only."""
        it = int(self.iter_num.numpy())
        out = {}
        pace, self._pace = self._pace, None  # the first evaluation's only
        for split in SPLITS:
            losses = []
            for x, y in self.batches.evaluation(split, it):
                if self.workers == 1 and self.stop is not None and self.stop.signal:
                    raise _EvaluationStopped
                losses.append(float(self._eval_step(x, y)))
                line = pace.said() if pace is not None else None
                if line:
                    self.log(line)
            divergence.check_eval(losses, split, it, self.cfg)
            out[split] = float(np.mean(losses))
        return out

    def dataset_iterator(self, start_iter: int):
        """Each optimizer step's micro-batches from start_iter on (the BatchSource's)."""
        return self.batches.train(start_iter)

    # -- the loop ------------------------------------------------------------------------------

    def _evaluates(self, it: int) -> bool:
        return it % self.cfg.eval_interval == 0 or (self.cfg.eval_only and it == self.start_iter)

    @property
    def history(self):
        """(iter, train loss, val loss) at each evaluation of the training (training/checkpoints.py Progress)."""
        return self.progress.history

    @property
    def train_losses(self):
        """(iter, loss) at each log line of the training."""
        return self.progress.train_losses

    def _evaluated(self, it: int) -> bool:
        """Whether the records restored by a continued run hold the evaluation of iteration it."""
        return bool(self.history) and self.history[-1][0] == it

    def learning_rate(self, it: int) -> float:
        cfg = self.cfg
        return get_lr(it, learning_rate=cfg.learning_rate, warmup_iters=cfg.warmup_iters,
                      lr_decay_iters=cfg.lr_decay_iters, min_lr=cfg.min_lr, decay_lr=cfg.decay_lr)

    def run(self) -> Dict[str, float]:
        """nanoGPT's training loop: at each evaluation iteration evaluate, then checkpoint; one
        optimizer step; log it every log_interval; stop after max_iters."""
        iter_num = self.start_iter
        self.iter_num.assign(iter_num)
        # kept on the trainer, not a local: deleting a tf.data iterator whose parallel map and
        # prefetch are busy took 23-25 s in some pipeline runs, which the end of run() then waited for
        self._iterator = iterator = self.dataset_iterator(iter_num)
        self._start_run()
        self._loop_started = time.monotonic()
        with self._writer.as_default() if self._writer else contextlib.nullcontext(), \
                losing_a_worker_ends_it(self.workers, self.cfg.out_dir, lambda: int(self.iter_num.numpy())), \
                self._memory_named(lambda: iter_num):
            while True:
                lr = self.learning_rate(iter_num)
                self._between_iterations(iter_num)
                if self._evaluates(iter_num) and not self._evaluated(iter_num):
                    try:
                        val_loss = self.evaluate(iter_num)[VAL]
                    except _EvaluationStopped:
                        self._stopped(iter_num)
                    if not self.cfg.eval_only:  # nanoGPT's eval_only saves a resumed run's checkpoint here
                        self.checkpoint_if_due(iter_num, val_loss)  # (and trains on): it only evaluates here
                if self.cfg.eval_only:  # an evaluation changes nothing in out_dir
                    break
                with divergence.stops_training(iter_num, self.cfg):
                    loss, grad_norm = self.step(iterator, lr)
                iter_num += 1
                self.iter_num.assign(iter_num)
                if (iter_num - 1) % self.cfg.log_interval == 0:
                    self.log_step(iter_num - 1, loss, grad_norm, lr)
                if iter_num > self.cfg.max_iters:
                    break
        return self._finish_run(iter_num)

    @contextlib.contextmanager
    def _memory_named(self, iteration, training: bool = True):
        """A tensor the devices cannot hold, in a training step (training) or an evaluation, becomes one
        line (training/memory.py), not TensorFlow's traceback of graph nodes."""
        try:
            yield
        except tf.errors.ResourceExhaustedError as e:
            if not memory.is_out_of_memory(e):  # a full disk, too many open files: said as they are
                raise
            raise memory.resource_exhausted(e, self.model.config, self.cfg, iteration(), training) from e

    def _start_run(self) -> None:
        """The run's header line, its summary writer, and the records it keeps."""
        cfg = self.cfg
        self.tokens_per_iter = cfg.gradient_accumulation_steps * cfg.batch_size * cfg.block_size
        self.log(f"tokens per iteration will be: {self.tokens_per_iter:,}; "
                 f"number of parameters: {self.model.get_num_params() / 1e6:.2f}M; replicas: {self.replicas}"
                 + (f"; parallel branches per micro-batch: {self.branches}" if self.branches > 1 else ""))
        self._writer = tf.summary.create_file_writer(os.path.join(cfg.out_dir, TENSORBOARD_DIR)) \
            if cfg.tensorboard and self.chief and not cfg.eval_only else None  # (eval_only changes nothing there)
        # the losses of the last evaluation (a continued run's may be its interrupted part's)
        self.last_losses: Dict[str, float] = {TRAIN: self.history[-1][1], VAL: self.history[-1][2]} \
            if self.history else {}
        self.iter_ms = []  # mean ms per iteration over each log interval (the first one excluded)
        self._running_mfu = -1.0
        self._last_log_time = time.time()

    def _summarize(self, step: int, scalars: Dict[str, float]) -> None:
        """TensorBoard scalars, when the run writes summaries."""
        if self._writer:
            for name, value in scalars.items():
                tf.summary.scalar(name, value, step=step)

    def evaluate(self, iter_num: int) -> Dict[str, float]:
        """estimate_loss, recorded in history, logged and summarized."""
        with self._memory_named(lambda: iter_num, training=False):
            losses = self.last_losses = self.estimate_loss()
        self.history.append((iter_num, losses[TRAIN], losses[VAL]))
        self.log(f"step {iter_num}: train loss {losses[TRAIN]:.4f}, val loss {losses[VAL]:.4f}")
        self._summarize(iter_num, {"eval/train_loss": losses[TRAIN], "eval/val_loss": losses[VAL]})
        return losses

    def checkpoint_if_due(self, iter_num: int, val_loss: float) -> None:
        """Keep the best val loss; save a checkpoint when it improved (or always_save_checkpoint),
        except at iteration 0. (nanoGPT's sets best_val_loss to the latest val loss whenever it saves,
        so under always_save_checkpoint it is not the best: here it always is.)"""
        improved = val_loss < float(self.best_val_loss.numpy())
        if improved:
            self.best_val_loss.assign(val_loss)
        if (improved or self.cfg.always_save_checkpoint) and iter_num > 0:
            self.save_checkpoint(iter_num)

    def step(self, iterator, lr: float):
        """One optimizer step on the iterator's next micro-batches: (loss, gradient norm) tensors."""
        xs, ys = next(iterator)
        return self._train_step(xs, ys, tf.constant(lr, tf.float32))

    def log_step(self, it: int, loss, grad_norm, lr: float) -> None:
        """nanoGPT's log line of iteration it: its loss (a sync point; the mean of its micro-batches',
        where nanoGPT's prints the last one's), the mean time per iteration since the last log line
        (nanoGPT's: the last iteration's), tokens/s and the running MFU (once 5 iterations have run)."""
        cfg, local_iter_num = self.cfg, it - self.start_iter
        lossf = float(loss)
        self.train_losses.append((it, lossf))
        now = time.time()
        dt = (now - self._last_log_time) / (cfg.log_interval if local_iter_num else 1)
        self._last_log_time = now
        if local_iter_num:
            self.iter_ms.append(dt * 1000)
        if local_iter_num >= 5 and self.peak_flops:  # let the training loop settle a bit
            mfu = self.model.estimate_mfu(self.tokens_per_iter // self.replicas, dt, self.peak_flops)
            self._running_mfu = mfu if self._running_mfu == -1.0 else 0.9 * self._running_mfu + 0.1 * mfu
        self.log(f"iter {it}: loss {lossf:.4f}, time {dt * 1000:.2f}ms, tok/s {self.tokens_per_iter / dt:,.0f}"
                 + (f", mfu {self._running_mfu * 100:.2f}%" if self.peak_flops else ""))
        if self._writer:
            scalars = {"train/loss": lossf, "train/lr": lr, "train/grad_norm": float(grad_norm),
                       "train/ms_per_iter": dt * 1000}
            if self.peak_flops:
                scalars["train/mfu"] = max(self._running_mfu, 0.0)
            self._summarize(it, scalars)

    def _finish_run(self, iter_num: int) -> Dict[str, float]:
        self.seconds = time.monotonic() - self._loop_started
        self.loop_ended = time.time()  # (the wall clock's: another process compares it with its own)
        if self._writer:
            self._writer.flush()
        if not self.chief:
            shutil.rmtree(self.worker_dir, ignore_errors=True)
        return {**self.last_losses, "best_val_loss": float(self.best_val_loss.numpy()), "iter_num": iter_num}


def train(cfg: TrainConfig, log=print, **kwargs) -> Dict[str, float]:
    return Trainer(cfg, log=log, **kwargs).run()


def main(argv=None):
    from core.errors import pop_debug, reported

    from_command_line = argv is None
    debug, argv = pop_debug(sys.argv[1:] if argv is None else argv)
    with reported("python -m training.train", debug):
        if from_command_line and _COMMAND_LINE_CONFIG is not None:
            cfg = _COMMAND_LINE_CONFIG
        else:
            cfg = command_line("python -m training.train", argv, command_line_config, train_help)
        cfg = checkpoint_shape.resumed_shape(cfg) if cfg.init_from == "resume" else checkpoint_shape.started_shape(cfg)
        print(json.dumps(cfg.to_dict(), indent=2, sort_keys=True))
        stop = stopping.StopRequest()
        stopping.install(stop)  # SIGTERM, Ctrl-C: a checkpoint of the iteration, then one line
        result = train(cfg, stop=stop)
        print(json.dumps(result))


if __name__ == "__main__":
    main()
