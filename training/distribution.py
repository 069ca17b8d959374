"""Where a training runs: the tf.distribute strategy (one device, the GPUs of a machine, several
machines, a TPU), which worker is the chief, and on a CPU the parallel branches of a micro-batch.
Several workers first wait for each other, within worker_wait_minutes (wait_for_workers), and a
worker lost mid-training ends the others with one line (losing_a_worker_ends_it, WorkerLost)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import tempfile
import time
from typing import Callable, Dict, Iterator, Optional, Tuple

import tensorflow as tf

from core.errors import Terminated, UsageError, UserError
from training.checkpoints import newest_checkpoint
from training.config import TrainConfig


def make_strategy(cfg: TrainConfig, log=print, stop=None) -> tf.distribute.Strategy:
    """The strategy cfg names (auto: from TF_CONFIG, the TPU setting and the GPUs). log: where the
    worker of a multi-worker training says whom it waits for; stop: its StopRequest
    (training/stopping.py), which ends that wait."""
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
        if cfg.worker_wait_minutes:
            wait_for_workers(cfg.worker_wait_minutes, log, stop)
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=cfg.tpu or None)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise UsageError(f"unknown strategy {name!r}")


class WorkersMissing(UserError):
    """Workers of TF_CONFIG's cluster that did not start within worker_wait_minutes."""


def _workers() -> Tuple[Optional[str], Dict[str, str]]:
    """This task's address in TF_CONFIG's cluster (None if it names none), and those of the other
    tasks that train ("chief", "worker"): {"worker 1": "host:port", ...}."""
    tf_config = json.loads(os.environ.get("TF_CONFIG", "{}"))
    me = tf_config.get("task", {})
    mine = (me.get("type"), int(me.get("index", 0)))
    tasks = {(job, index): address for job, addresses in tf_config.get("cluster", {}).items()
             if job in ("chief", "worker") for index, address in enumerate(addresses)}
    return tasks.get(mine), {f"{job} {index}": address for (job, index), address in tasks.items()
                             if (job, index) != mine}


@contextlib.contextmanager
def _holding_port(address: str) -> Iterator[None]:
    """This worker's port (of its TF_CONFIG address) listened on for the block, so that the other
    workers, which wait for it, see it start; given back before the strategy binds it. A port that
    cannot be bound now (in use) is left to the strategy to report."""
    try:
        placeholder = socket.create_server(("", int(address.rpartition(":")[2])), reuse_port=False)
    except (OSError, ValueError):
        yield
        return
    with placeholder:
        yield


def _not_listening(addresses: Dict[str, str]) -> Dict[str, str]:
    """Those of addresses where nothing accepts a connection yet, with why."""
    missing = {}
    for name, address in addresses.items():
        host, _, port = address.rpartition(":")
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=2).close()
        except OSError as e:
            missing[name] = f"{address}: {e.strerror or e}"
    return missing


def wait_for_workers(minutes: float, log=print, stop=None, poll_seconds: float = 1.0,
                     say_every: float = 30.0) -> None:
    """On each worker, before the strategy starts: listen on its own port, and wait until every other
    worker of TF_CONFIG listens on its own (its wait, or its strategy starting), saying which are
    missing every say_every seconds; WorkersMissing after `minutes`; a stop asked meanwhile
    (stop.signal) ends the wait as Ctrl-C or SIGTERM ends a command. TensorFlow's own wait, in the
    strategy's start, has no end here and holds Python's lock (no Ctrl-C, no SIGTERM handled), so a
    worker that never starts (a wrong address in TF_CONFIG, a pod not scheduled) would leave the
    others waiting silently for ever."""
    mine, others = _workers()
    with _holding_port(mine) if mine else contextlib.nullcontext():
        _wait_for(others, minutes, log, stop, poll_seconds, say_every)


def _wait_for(others: Dict[str, str], minutes: float, log, stop, poll_seconds: float, say_every: float) -> None:
    started = time.monotonic()
    said = started
    while True:
        if stop is not None and stop.signal:
            raise Terminated() if stop.signal == "SIGTERM" else KeyboardInterrupt()
        missing = _not_listening(others)
        if not missing:
            return
        waited = time.monotonic() - started
        if waited >= 60 * minutes:
            raise WorkersMissing(f"the training's other workers did not all start within {minutes:g} minutes: "
                                 f"{_listed(missing)}; check that each runs with the same TF_CONFIG cluster and "
                                 f"that this machine reaches its address, or wait longer with "
                                 f"--worker_wait_minutes")
        if time.monotonic() - said >= say_every:
            said = time.monotonic()
            log(f"waiting {waited:.0f} s of {60 * minutes:g} s for the training's other workers to start: "
                f"{_listed(missing)}")
        time.sleep(poll_seconds)


def _listed(missing: Dict[str, str]) -> str:
    return ", ".join(f"{name} at {why}" for name, why in missing.items())


def chief_by_tf_config() -> bool:
    """Whether this process is the chief of the cluster TF_CONFIG names (its worker 0 when it names
    no chief), or trains alone; for a caller that has no strategy yet."""
    tf_config = json.loads(os.environ.get("TF_CONFIG", "{}"))
    task = tf_config.get("task", {})
    return not task.get("type") or task["type"] == "chief" or (
        task["type"] == "worker" and int(task.get("index", 0)) == 0 and "chief" not in tf_config.get("cluster", {}))


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type or isinstance(strategy, tf.distribute.TPUStrategy):
        return True
    if resolver.task_type == "chief":
        return True
    return resolver.task_type == "worker" and resolver.task_id == 0 and \
        "chief" not in resolver.cluster_spec().as_dict()


def num_workers(strategy: tf.distribute.Strategy) -> int:
    """The machines that train together (that must agree on when to stop or checkpoint); a TPU's
    hosts run one program and count as one."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or isinstance(strategy, tf.distribute.TPUStrategy):
        return 1
    spec = resolver.cluster_spec().as_dict()
    return max(1, sum(len(spec.get(job, [])) for job in ("chief", "worker")))


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


def branch_rows(rows: int, branches: int):
    """(start, end) of each branch's rows: `branches` parts of a batch of `rows`, as even as can be."""
    bounds = [rows * i // branches for i in range(branches + 1)]
    return [(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]


def worker_dir(out_dir: str, chief: bool) -> str:
    """Where this worker writes: every worker must take part in a multi-worker save, but only the
    chief's copy is kept."""
    return out_dir if chief else tempfile.mkdtemp(prefix="nanogpt-worker-")


def agreed(strategy: tf.distribute.Strategy, flags):
    """Each flag true on any worker (a collective: every worker calls it at the same point)."""
    summed = _sum_across_replicas(strategy, tf.constant([int(bool(f)) for f in flags], tf.int32))
    return [bool(value) for value in summed.numpy()]


@tf.function
def _sum_across_replicas(strategy, flags):
    return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(tf.identity, args=(flags,)), axis=None)


class WorkerLost(UserError):
    """A worker of a multi-worker training failed, was preempted or crashed, and the others stopped
    with it: TensorFlow's collectives fail in them (UnavailableError) once the coordination service
    misses the worker's heartbeat (~10 s), or at once when its connection closes. One line naming the
    worker and the checkpoint to continue from, instead of TensorFlow's traceback. Its arguments are
    its state, so that it pickles whole (the training process sends it to its parent so)."""

    def __init__(self, detail: str, iteration: int, checkpoint: str = "",
                 advice: str = "continue it with --init_from=resume"):
        super().__init__(detail, iteration, checkpoint, advice)
        self.detail, self.iteration, self.checkpoint, self.advice = detail, iteration, checkpoint, advice

    def __str__(self):
        then = f"its newest checkpoint is {self.checkpoint}: {self.advice}" if self.checkpoint else \
            "it saved no checkpoint: run again to train anew"
        return f"the training lost a worker at iteration {self.iteration}: {self.detail}; {then}"


def _lost_worker(message: str) -> str:
    """Which worker a collective's failure names, and how it was lost."""
    heartbeat = re.search(r"Task (\S+) heartbeat timeout", message)
    if heartbeat:
        return f"{heartbeat[1]} stopped answering (its heartbeat timed out: it failed, was preempted or crashed)"
    aborted = re.search(r"aborted by: ([^\n]*)", message)
    remote = re.search(r"from remote target (\S+)", message)
    reason = aborted[1].strip() if aborted else message.strip().splitlines()[0]
    return f"{remote[1]} is gone ({reason})" if remote else reason


@contextlib.contextmanager
def losing_a_worker_ends_it(workers: int, out_dir: str, iteration: Callable[[], int]) -> Iterator[None]:
    """Around a multi-worker training's loop: a lost worker (a collective's UnavailableError or
    AbortedError) ends it with WorkerLost, naming iteration() and out_dir's newest checkpoint."""
    try:
        yield
    except (tf.errors.UnavailableError, tf.errors.AbortedError) as e:
        if workers == 1:
            raise
        newest = newest_checkpoint(out_dir)
        raise WorkerLost(_lost_worker(e.message), iteration(), newest[0] if newest else "") from e
