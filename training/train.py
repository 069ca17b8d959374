"""The training engine, nanoGPT's train.py in TensorFlow: usable on its own or from the TFX Trainer.

One process on a CPU or GPU:
$ python -m training.train --preset=shakespeare_char --text_file=input.txt --tokenizer=char
Several GPUs of one machine: --strategy=mirrored. Several machines: --strategy=multi_worker with
TF_CONFIG set on each (every worker runs the same command). A TPU: --strategy=tpu --tpu=NAME.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from typing import Dict, Optional

if __name__ == "__main__":  # the command line is checked, and --help answered, before TensorFlow loads (~12 s)
    from training import config as _config
    from core import errors as _errors, settings as _settings

    _COMMAND_LINE_CONFIG = _settings.command_line("python -m training.train", _errors.pop_debug(sys.argv[1:])[1],
                                                  _config.command_line_config, _config.train_help)

import numpy as np
import tensorflow as tf

from training import batches, checkpoint_shape, devices, divergence
from core import files, shards
from training.config import (CHECKPOINT_DIR, MODEL_CONFIG_FILE, TENSORBOARD_DIR, TOKENIZER_FILE,
                          TRAIN_CONFIG_FILE, TrainConfig, command_line_config, train_help)
from training.data import TokenStream, load_split
from core.errors import MissingFile, writing
from core.settings import command_line
from core.shards import SPLITS, TRAIN, VAL
from model.model import GPT, GPTConfig, counted_targets, cross_entropy
from model.presets import GPT2_SIZES, PADDED_VOCAB_SIZE, POLICY_OF_DTYPE
from training.optim import AdamW, DynamicLossScale, get_lr
from model.tokenizer import get_tokenizer


# --------------------------------------------------------------------------------------------
# distribution


def make_strategy(cfg: TrainConfig) -> tf.distribute.Strategy:
    name = cfg.strategy
    if name == "auto":
        tf_config = json.loads(os.environ.get("TF_CONFIG", "{}"))
        workers = sum(len(v) for k, v in tf_config.get("cluster", {}).items() if k in ("chief", "worker"))
        if cfg.tpu:
            name = "tpu"
        elif workers > 1:
            name = "multi_worker"
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            name = "default"
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=cfg.tpu or None)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"unknown strategy {name!r}")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type or isinstance(strategy, tf.distribute.TPUStrategy):
        return True
    if resolver.task_type == "chief":
        return True
    return resolver.task_type == "worker" and resolver.task_id == 0 and \
        "chief" not in resolver.cluster_spec().as_dict()


def cpu_branches(cfg: TrainConfig, log=print) -> int:
    """How many parallel branches each micro-batch runs as: on a CPU, one per core (or
    cfg.cpu_branches) where the micro-batch has a row for each; on a GPU or TPU, 1.

    A small model's ops are too small to share out among cores: the shakespeare_char step is a
    chain of some thousand ops of tens of microseconds each, which keeps about one core busy
    whatever the number of intra-op threads. Its micro-batch split row-wise into independent
    branches, one per core, each op on one thread, the step keeps every core busy (~40 against ~56
    ms an iteration on 2 cores, BENCHMARKS.md). The branches' losses add up to the batch's mean
    loss, so the split changes nothing but the order of float additions.

    TensorFlow fixes its threads when it runs its first op: call this before (a process that
    already ran ops gets no split, unless it was started with TF_NUM_INTRAOP_THREADS=1; the TFX
    Trainer therefore trains in a process of its own, training/train_process.py)."""
    if cfg.strategy == "tpu" or cfg.tpu or tf.config.list_physical_devices("GPU"):
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if not cfg.cpu_branches and cfg.batch_size < cores:
        return 1  # fewer rows than cores: single-threaded branches would leave cores idle
    branches = min(cfg.cpu_branches or cores, cfg.batch_size)
    if branches <= 1:
        return 1
    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
    except RuntimeError:  # TensorFlow runs already, with multi-threaded ops
        if os.environ.get("TF_NUM_INTRAOP_THREADS") != "1" and not cfg.cpu_branches:
            log(f"cpu_branches: TensorFlow started before training with multi-threaded ops, so each micro-batch "
                f"runs whole (set TF_NUM_INTRAOP_THREADS=1 to split it into {branches} parallel branches)")
            return 1
    return branches


def _branch_rows(rows: int, branches: int):
    """(start, end) of each branch's rows: `branches` parts of a batch of `rows`, as even as can be."""
    bounds = [rows * i // branches for i in range(branches + 1)]
    return [(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]


def _worker_dir(out_dir: str, chief: bool) -> str:
    """Where this worker writes: every worker must take part in a multi-worker save, but only the
    chief's copy is kept."""
    return out_dir if chief else tempfile.mkdtemp(prefix="nanogpt-worker-")


# --------------------------------------------------------------------------------------------
# data


def prepare_text_file(cfg: TrainConfig, data_dir: str) -> dict:
    """Tokenize a text file in process into token shards, nanoGPT's shakespeare prepare.py way:
    the first 90% of the text is train, the rest val. Returns the tokenizer's description."""
    with open(cfg.text_file, encoding="utf-8") as f:
        text = f.read()
    if not text:
        raise ValueError(f"text file {cfg.text_file} is empty")
    tokenizer = get_tokenizer(cfg.tokenizer, text=text, bpe_dir=cfg.bpe_dir or None)
    n = len(text)
    for split, part in ((TRAIN, text[: int(n * 0.9)]), (VAL, text[int(n * 0.9):])):
        shards.write_split(shards.split_dir(data_dir, split), [tokenizer.encode(part)])
    return tokenizer.to_json()


# --------------------------------------------------------------------------------------------
# the model and its optimizer step


def vocab_size(cfg: TrainConfig, tokenizer_json: Optional[dict]) -> int:
    if cfg.vocab_size:
        return cfg.vocab_size
    if tokenizer_json and tokenizer_json.get("kind") == "char":
        return len(tokenizer_json["chars"])
    return PADDED_VOCAB_SIZE  # GPT-2 BPE, padded to a multiple of 64 for efficiency, as nanoGPT


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
        return model, 0
    raise ValueError(f"init_from={cfg.init_from!r}: use 'scratch', 'resume', a GPT-2 name "
                     f"{sorted(GPT2_SIZES)} or a checkpoint directory")


def make_train_step(cfg: TrainConfig, loss_fn, optimizer: AdamW, loss_scale: Optional[DynamicLossScale],
                    strategy: tf.distribute.Strategy):
    """The compiled optimizer step train_step(xs, ys, lr) -> (loss, gradient norm): each replica's
    gradients of loss_fn(x, y, training=True) accumulated over its micro-batches, summed across
    replicas, clipped, applied (float16: skipped when they overflowed). Over 50 lines because its
    three nested graph functions share one closure."""
    params = optimizer.params
    total_micro = float(cfg.gradient_accumulation_steps)

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

    @tf.function
    def train_step(xs, ys, lr):
        loss, grad_norm = strategy.run(replica_step, args=(xs, ys, lr))
        loss = strategy.reduce(tf.distribute.ReduceOp.MEAN, loss, axis=None)
        return (divergence.check_step(loss, loss_scale),
                strategy.reduce(tf.distribute.ReduceOp.MEAN, grad_norm, axis=None))

    return train_step


# --------------------------------------------------------------------------------------------
# the trainer


class Trainer:
    """Holds the model, optimizer, data and checkpoints of one run; `run()` is nanoGPT's loop.
    Its batches come from a BatchSource (training/batches.py: this engine's draws or nanoGPT's)."""

    def __init__(self, cfg: TrainConfig, strategy: Optional[tf.distribute.Strategy] = None,
                 tokenizer_json: Optional[dict] = None, log=print):
        self.cfg = cfg
        self.log = log
        notes = []  # said after the devices, which the first line names
        self.branches = cpu_branches(cfg, notes.append)
        self.strategy = strategy or make_strategy(cfg)
        self.devices, detected_peak = devices.describe(self.strategy)
        self.peak_flops = cfg.peak_flops or detected_peak  # 0.0: no MFU (a CPU, or a device not in the table)
        log(f"training on {self.devices}" + (f"; MFU of a {self.peak_flops:.3g} FLOP/s peak" if self.peak_flops
                                             else ""))
        for note in [devices.unused_gpu_warning(), *notes]:
            if note:
                log(note)
        self.chief = is_chief(self.strategy)
        self.replicas = self.strategy.num_replicas_in_sync
        if cfg.gradient_accumulation_steps % self.replicas:
            raise ValueError(f"gradient_accumulation_steps={cfg.gradient_accumulation_steps} must be "
                             f"a multiple of the number of replicas ({self.replicas})")
        self.local_accumulation = cfg.gradient_accumulation_steps // self.replicas
        batches.check_supported(cfg, self.replicas)
        tf.io.gfile.makedirs(cfg.out_dir)
        self.worker_dir = _worker_dir(cfg.out_dir, self.chief)
        self.tokenizer_json = tokenizer_json
        self._load_data()
        self._build_state()
        if cfg.init_from == "resume":
            self._restore()
        self.batches = batches.batch_source(cfg, {TRAIN: self.train_data, VAL: self.val_data},
                                            strategy=self.strategy, model=self.model, start_iter=self.start_iter,
                                            evaluates=self._evaluates)
        self._train_step = make_train_step(cfg, self._loss, self.optimizer, self.loss_scale, self.strategy)
        self._eval_step = tf.function(self._loss, jit_compile=cfg.compile)

    # -- setup --------------------------------------------------------------------------------

    def _load_data(self) -> None:
        """train_data and val_data from data_dir's shards, or from text_file tokenized here."""
        cfg = self.cfg
        if cfg.data_dir:
            data_dir = cfg.data_dir
            if self.tokenizer_json is None:
                self.tokenizer_json = files.read_json(os.path.join(cfg.data_dir, TOKENIZER_FILE), default=None)
        elif cfg.text_file:
            data_dir = os.path.join(self.worker_dir, "data")  # each worker tokenizes its own copy
            self.tokenizer_json = prepare_text_file(cfg, data_dir)
        else:
            raise ValueError("no training data: set data_dir (token shards) or text_file")
        self.train_data = TokenStream(load_split(data_dir, TRAIN), cfg.block_size, TRAIN)
        self.val_data = TokenStream(load_split(data_dir, VAL), cfg.block_size, VAL)
        if self.chief and self.tokenizer_json:
            files.write_json(os.path.join(cfg.out_dir, TOKENIZER_FILE), self.tokenizer_json)

    def _build_state(self) -> None:
        """The model, optimizer, counters and their checkpoint manager, under the strategy."""
        cfg = self.cfg
        with self.strategy.scope():
            self.model, self.start_iter = build_model(cfg, self.tokenizer_json)
            decay, no_decay = self.model.parameter_groups()
            self.optimizer = AdamW(decay, no_decay, weight_decay=cfg.weight_decay, beta1=cfg.beta1,
                                   beta2=cfg.beta2)
            self.loss_scale = DynamicLossScale() if cfg.dtype == "float16" else None
            self.iter_num = tf.Variable(0, dtype=tf.int64, trainable=False)
            self.best_val_loss = tf.Variable(1e9, dtype=tf.float32, trainable=False)
        self.checkpoint = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer,
                                              iter_num=self.iter_num, best_val_loss=self.best_val_loss,
                                              **({"loss_scale": self.loss_scale} if self.loss_scale else {}))
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, os.path.join(self.worker_dir, CHECKPOINT_DIR), max_to_keep=2)

    def _restore(self):
        latest = tf.train.latest_checkpoint(os.path.join(self.cfg.out_dir, CHECKPOINT_DIR))
        if latest is None:
            raise MissingFile(f"init_from=resume: no checkpoint in {self.cfg.out_dir}/{CHECKPOINT_DIR}")
        checkpoint_shape.check_checkpoint(latest, self.model.config, os.path.join(self.cfg.out_dir, MODEL_CONFIG_FILE))
        self.checkpoint.restore(latest).assert_existing_objects_matched()
        self.start_iter = int(self.iter_num.numpy())
        self.log(f"resuming from {latest} at iter {self.start_iter}")

    def save_checkpoint(self):
        """Save model, optimizer, iteration and best val loss. CheckpointManager writes the new
        checkpoint's files before it updates the `checkpoint` index that names the latest, so a
        process killed mid-save leaves the previous checkpoint the latest one."""
        number = int(self.iter_num.numpy())
        with writing(f"checkpoint {number} in {self.manager.directory}",
                     cleanup=lambda: self._remove_unindexed(number)):
            if self.chief:
                files.write_json(os.path.join(self.cfg.out_dir, MODEL_CONFIG_FILE), self.model.config.to_dict())
                files.write_json(os.path.join(self.cfg.out_dir, TRAIN_CONFIG_FILE), self.cfg.to_dict())
            path = self.manager.save(checkpoint_number=number)
        if self.chief:
            self.log(f"saving checkpoint to {path}")

    def _remove_unindexed(self, number: int) -> None:
        """The files of checkpoint `number`, whose save failed before the index named it."""
        for path in tf.io.gfile.glob(os.path.join(self.manager.directory, f"ckpt-{number}[._]*")):
            if tf.io.gfile.isdir(path):
                tf.io.gfile.rmtree(path)
            else:
                tf.io.gfile.remove(path)

    # -- steps ---------------------------------------------------------------------------------

    def _loss(self, x, y, training=False):
        """The batch's mean loss, computed as self.branches independent parts (see cpu_branches)."""
        rows = _branch_rows(x.shape[0], self.branches) if x.shape[0] is not None else []
        if len(rows) <= 1:
            return cross_entropy(self.model(x, training=training), y)
        num_targets = counted_targets(y)
        return tf.add_n([cross_entropy(self.model(x[a:b], training=training), y[a:b], num_targets=num_targets)
                         for a, b in rows])

    def estimate_loss(self) -> Dict[str, float]:
        """Mean loss over eval_iters batches of each split (the same batches at each evaluation
        of a given iteration, different ones at the next)."""
        it = int(self.iter_num.numpy())
        out = {}
        for split in SPLITS:
            losses = [float(self._eval_step(x, y)) for x, y in self.batches.evaluation(split, it)]
            divergence.check_eval(losses, split, it, self.cfg)
            out[split] = float(np.mean(losses))
        return out

    def dataset_iterator(self, start_iter: int):
        """Each optimizer step's micro-batches from start_iter on (the BatchSource's)."""
        return self.batches.train(start_iter)

    # -- the loop ------------------------------------------------------------------------------

    def _evaluates(self, it: int) -> bool:
        return it % self.cfg.eval_interval == 0 or (self.cfg.eval_only and it == self.start_iter)

    def learning_rate(self, it: int) -> float:
        cfg = self.cfg
        return get_lr(it, learning_rate=cfg.learning_rate, warmup_iters=cfg.warmup_iters,
                      lr_decay_iters=cfg.lr_decay_iters, min_lr=cfg.min_lr, decay_lr=cfg.decay_lr)

    def run(self) -> Dict[str, float]:
        """nanoGPT's training loop: at each evaluation iteration evaluate, then checkpoint; one
        optimizer step; log it every log_interval; stop after max_iters."""
        iter_num = self.start_iter
        self.iter_num.assign(iter_num)
        iterator = self.dataset_iterator(iter_num)
        self._start_run()
        with self._writer.as_default() if self._writer else contextlib.nullcontext():
            while True:
                lr = self.learning_rate(iter_num)
                if self._evaluates(iter_num):
                    val_loss = self.evaluate(iter_num)[VAL]
                    self.checkpoint_if_due(iter_num, val_loss)
                if self.cfg.eval_only:
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

    def _start_run(self) -> None:
        """The run's header line, its summary writer, and the records it keeps."""
        cfg = self.cfg
        self.tokens_per_iter = cfg.gradient_accumulation_steps * cfg.batch_size * cfg.block_size
        self.log(f"tokens per iteration will be: {self.tokens_per_iter:,}; "
                 f"number of parameters: {self.model.get_num_params() / 1e6:.2f}M; replicas: {self.replicas}"
                 + (f"; parallel branches per micro-batch: {self.branches}" if self.branches > 1 else ""))
        self._writer = tf.summary.create_file_writer(os.path.join(cfg.out_dir, TENSORBOARD_DIR)) \
            if cfg.tensorboard and self.chief else None
        self.last_losses: Dict[str, float] = {}
        self.history = []  # (iter, train loss, val loss) at each evaluation
        self.iter_ms = []  # mean ms per iteration over each log interval (the first one excluded)
        self.train_losses = []  # (iter, loss) at each log line
        self._running_mfu = -1.0
        self._last_log_time = time.time()

    def _summarize(self, step: int, scalars: Dict[str, float]) -> None:
        """TensorBoard scalars, when the run writes summaries."""
        if self._writer:
            for name, value in scalars.items():
                tf.summary.scalar(name, value, step=step)

    def evaluate(self, iter_num: int) -> Dict[str, float]:
        """estimate_loss, recorded in history, logged and summarized."""
        losses = self.last_losses = self.estimate_loss()
        self.history.append((iter_num, losses[TRAIN], losses[VAL]))
        self.log(f"step {iter_num}: train loss {losses[TRAIN]:.4f}, val loss {losses[VAL]:.4f}")
        self._summarize(iter_num, {"eval/train_loss": losses[TRAIN], "eval/val_loss": losses[VAL]})
        return losses

    def checkpoint_if_due(self, iter_num: int, val_loss: float) -> None:
        """Keep the best val loss; save a checkpoint when it improved (or always_save_checkpoint),
        except at iteration 0."""
        improved = val_loss < float(self.best_val_loss.numpy())
        if improved:
            self.best_val_loss.assign(val_loss)
        if (improved or self.cfg.always_save_checkpoint) and iter_num > 0:
            self.save_checkpoint()

    def step(self, iterator, lr: float):
        """One optimizer step on the iterator's next micro-batches: (loss, gradient norm) tensors."""
        xs, ys = next(iterator)
        return self._train_step(xs, ys, tf.constant(lr, tf.float32))

    def log_step(self, it: int, loss, grad_norm, lr: float) -> None:
        """nanoGPT's log line of iteration it: its loss (a sync point), the time per iteration
        since the last log line, tokens/s and the running MFU (from the sixth iteration logged)."""
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
        if from_command_line and "_COMMAND_LINE_CONFIG" in globals():
            cfg = _COMMAND_LINE_CONFIG  # checked before TensorFlow was imported
        else:
            cfg = command_line("python -m training.train", argv, command_line_config, train_help)
        print(json.dumps(cfg.to_dict(), indent=2, sort_keys=True))
        result = train(cfg)
        print(json.dumps(result))


if __name__ == "__main__":
    main()
