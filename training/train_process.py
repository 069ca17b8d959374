"""A training run in a process of its own, as it runs on a cluster: its own TensorFlow, configured
before TensorFlow starts exactly as `python -m bench.bench shakespeare_char` configures it (the
CPU branches of distribution.cpu_branches need single-threaded ops, which TensorFlow takes only before
its first op; a process where other work already ran TensorFlow cannot have them).

The parent (the TFX Trainer's run_fn) calls `train(cfg, tokenizer_json, scratch_dir)`, which runs
$ python -m training.train_process
and hands it REQUEST.json's path on its stdin (core/prestart.py: the process `prestart_training`
started with the pipeline run, which has imported TensorFlow meanwhile, or one started now), and
streams the child's stdout and stderr line by line to its own. Results come back as files: the
run's checkpoints in cfg.out_dir, and, in scratch_dir, the outcome (OUTCOME_FILE: the losses, the
model's shape, the checkpoint holding the weights to export; or the error) and, when the run
saved no checkpoint, the final weights. A UserError in the child (a divergence, a checkpoint of
another shape) is raised again in the parent as the same class with the same one-line message, and
the child's traceback as its cause (which `--debug` shows); a
child that crashes, exits non-zero or is killed by a signal is TrainingProcessFailed, one line
naming the exit status or the signal and the run's directory. SIGTERM and SIGINT (Ctrl-C) to the
parent are passed on: the child checkpoints its iteration and stops (training/stopping.py
TrainingStopped, raised again in the parent); a second one kills it. The child dies with the parent
(PR_SET_PDEATHSIG on Linux, a watch on the parent's pid elsewhere); any error in the parent stops
the child before the parent goes on. TF_CONFIG and the rest of the environment pass
through, so a multi-worker run trains as it would in the parent.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from typing import Optional

from core import files, prestart, signals
from core.errors import RemoteTraceback, UserError, one_line
from training import memory

REQUEST_FILE = "request.json"
OUTCOME_FILE = "outcome.json"
FINAL_WEIGHTS = "final_weights"  # a checkpoint of the model alone, when the run saved none
PARENT_PID_ENV = "NANOGPT_TFX_PARENT_PID"
_STOP_TIMEOUT_S = 10
CONTINUE_ADVICE = "run the same command again to continue from it"
PRESTART_NAME = "training"
# a session of its own: a terminal's Ctrl-C reaches the parent alone, which passes it on once
_SESSION = dict(start_new_session=True)


class TrainingProcessFailed(UserError):
    """The training process ended without an outcome: killed, crashed, or exited non-zero."""


@dataclasses.dataclass
class Outcome:
    """What a finished training process reports (OUTCOME_FILE)."""
    chief: bool
    result: dict  # Trainer.run()'s
    history: list  # (iter, train loss, val loss) at each evaluation
    train_losses: list  # (iter, loss) at each log line
    model_config: dict  # GPTConfig of the trained model
    weights: str  # the checkpoint whose `model` holds the weights to export (the last evaluation's saved)
    seconds: float = 0.0  # the training loop's own time (this process's start-up, data and export apart)
    # when (time.time()) this process had its request, began and ended its loop, wrote this
    # outcome; and (the parent's) when it exited and when its output closed: where its time went
    times: dict = dataclasses.field(default_factory=dict)

    def time_split(self) -> str:
        """This process's seconds from its request to its output's end, by phase."""
        t = self.times
        phases = [("to its loop", "request", "loop_started"), ("its loop", "loop_started", "loop_ended"),
                  ("to its outcome", "loop_ended", "outcome"), ("to its exit", "outcome", "exited"),
                  ("to its output's end", "exited", "output_closed")]
        return ", ".join(f"{name} {t[b] - t[a]:.1f} s" for name, a, b in phases if a in t and b in t)


# --------------------------------------------------------------------------------------------
# the parent


def train(cfg, tokenizer_json: Optional[dict], scratch_dir: str, continue_from: Optional[str] = None) -> Outcome:
    """Run cfg (a TrainConfig) in a training process of its own (from checkpoint continue_from of an
    interrupted run of it, when given); its Outcome. scratch_dir: a local directory of the caller's
    that the outcome files go to (its own for each call). SIGTERM and SIGINT are passed on to the
    training process, which checkpoints and stops (TrainingStopped); a second one kills it."""
    request = os.path.join(scratch_dir, REQUEST_FILE)
    files.write_json(request, {"config": cfg.to_json(), "tokenizer_json": tokenizer_json,
                               "continue_from": continue_from})
    outcome_path = os.path.join(scratch_dir, OUTCOME_FILE)
    if os.path.exists(outcome_path):
        os.remove(outcome_path)
    argv, env = _command()
    oom_kills = memory.oom_kills()  # the kernel's count, to tell its out-of-memory killer's SIGKILL
    asked = []  # the signals this process was stopped with, passed on to the child
    with signals.passing_on(asked) as started:
        # started with the run (TensorFlow imported already), else now, the same way
        child = (prestart.take(PRESTART_NAME, argv, env) or _launch(argv, env)).process
        prestart.give(child, request)
        started(child)
        streams = [threading.Thread(target=_forward, args=(pipe, name), daemon=True)
                   for pipe, name in ((child.stdout, "stdout"), (child.stderr, "stderr"))]
        for stream in streams:
            stream.start()
        try:
            returncode = child.wait()
            exited = time.time()
        except BaseException:  # any other end of the parent: the child stops first
            _stop(child)
            raise
        finally:
            for stream in streams:
                stream.join(timeout=_STOP_TIMEOUT_S)
    reported = files.read_json(outcome_path, default=None)
    finished = returncode == 0 and reported and "error" not in reported
    # Asked to stop, it ended before it saw the stop (finished), or at the stop with nothing to report
    # (before its training began: its wait for the other workers): this process still stops, as told.
    if asked and (finished or reported is None):
        signal.raise_signal(asked[0])
    if finished:
        outcome = Outcome(**reported)
        outcome.times.update(exited=exited, output_closed=time.time())
        return outcome
    killed_for_memory = memory.killed_for_memory(
        f"the training process of {cfg.out_dir}", cfg, oom_kills,
        then=f"nothing was published from it: a run with a lower --batch_size (the same model) will "
             f"{_what_a_rerun_does(cfg.out_dir)}") \
        if returncode == -signal.SIGKILL else None
    raise killed_for_memory or _failure(returncode, reported, cfg.out_dir)


def _command() -> tuple:
    """The training process's command (the request's path goes after it) and environment."""
    env = {**os.environ, PARENT_PID_ENV: str(os.getpid()), "PYTHONUNBUFFERED": "1",
           "PYTHONWARNINGS": ",".join(filter(None, [os.environ.get("PYTHONWARNINGS"), *_ignored_warnings()]))}
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # this checkout's model/
    env["PYTHONPATH"] = os.pathsep.join([package_root, *filter(None, [os.environ.get("PYTHONPATH")])])
    return [sys.executable, "-m", "training.train_process"], env


def prestart_training() -> None:
    """Start the training process now (core/prestart.py): it imports TensorFlow and the engine while
    the pipeline's data components run, and `train` hands it its request."""
    argv, env = _command()
    with signals.held_in_children():
        prestart.start(PRESTART_NAME, argv, env, **_SESSION)


def _launch(argv, env) -> prestart.Waiting:
    """The training process started now, with SIGTERM and SIGINT held until its handler is in place
    (core/signals.py): a stop passed on as it starts is never lost in its start-up."""
    with signals.held_in_children():
        return prestart.launch(argv, env, **_SESSION)


def _ignored_warnings():
    """The warning categories this process ignores everywhere (runner.py: FutureWarning and
    DeprecationWarning), as PYTHONWARNINGS entries, so that the child is as quiet."""
    return [f"ignore::{category.__name__}" for action, message, category, module, line in warnings.filters
            if action == "ignore" and message is None and module is None and not line
            and category.__module__ == "builtins"]


def _forward(pipe, name: str) -> None:
    """The child's output, line by line, to the parent's sys.stdout or sys.stderr (whatever it is
    at that line: a terminal, a component's log, a test's capture)."""
    with pipe:
        for line in iter(pipe.readline, b""):
            stream = getattr(sys, name)
            stream.write(line.decode("utf-8", errors="replace"))
            stream.flush()


def _stop(child: subprocess.Popen) -> None:
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(timeout=_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _failure(returncode: int, reported: Optional[dict], run_dir: str) -> Exception:
    """The exception the parent raises for a child that gave no outcome."""
    error = (reported or {}).get("error")
    if error and error.get("user_error"):
        return _user_error(error)
    if returncode < 0:
        try:
            how = f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            how = f"was killed by signal {-returncode}"
    else:
        how = f"exited with status {returncode}"
        if error:
            how += f" after {error['type']}: {error['message']} (its traceback is above)"
    return TrainingProcessFailed(f"the training process of {run_dir} {how}; nothing was published from it: "
                                 f"run again to {_what_a_rerun_does(run_dir)}")


def _what_a_rerun_does(run_dir: str) -> str:
    from training.checkpoints import newest_checkpoint

    newest = newest_checkpoint(run_dir)
    return f"continue from its checkpoint of iteration {newest[1]}" if newest else "train anew"


def _user_error(error: dict) -> UserError:
    """The child's UserError, with the child's traceback as its cause (RemoteTraceback, which
    --debug shows)."""
    remade = _remade_user_error(error)
    if error.get("traceback"):
        remade.__cause__ = RemoteTraceback(error["traceback"])
    return remade


def _remade_user_error(error: dict) -> UserError:
    """The child's UserError as itself (unpickled), else as the same class made from its message,
    else as a UserError with its message."""
    import base64
    import pickle

    try:
        remade = pickle.loads(base64.b64decode(error["pickled"]))
        if isinstance(remade, UserError):
            return remade
    except Exception:  # noqa: BLE001 (no pickle, or one that does not load here)
        pass
    try:
        cls = getattr(importlib.import_module(error["module"]), error["type"])
        if isinstance(cls, type) and issubclass(cls, UserError):
            return cls(error["message"])
    except Exception:  # noqa: BLE001 (any failure to remake it: the message still gets through)
        pass
    return UserError(error["message"])


# --------------------------------------------------------------------------------------------
# the child


def _die_with_parent() -> None:
    """End this process when the parent that started it dies (no orphan trainers)."""
    parent = int(os.environ.get(PARENT_PID_ENV, "0"))
    if parent:
        signals.die_with_parent(parent)


def _write_outcome(path: str, outcome: dict) -> None:
    files.write_json(path, outcome, indent=None, sort_keys=False)


def _run(request_path: str, stop) -> bool:
    """Train as the request says; the outcome (or the error) beside the request. Whether the process
    may end at once (a run of one worker, its outcome written)."""
    scratch = os.path.dirname(request_path)
    outcome_path = os.path.join(scratch, OUTCOME_FILE)
    requested = time.time()
    try:
        request = files.read_json(request_path)
        # imported here, after the check on the parent: TensorFlow takes ~12 s to import
        import tensorflow as tf

        from training.config import CHECKPOINT_DIR, TrainConfig
        from training.distribution import WorkerLost
        from training.stopping import TrainingStopped
        from training.train import Trainer

        cfg = TrainConfig.from_json(request["config"])
        trainer = Trainer(cfg, tokenizer_json=request["tokenizer_json"], log=lambda line: print(line, flush=True),
                          continue_from=request.get("continue_from"), stop=stop)
        try:
            result = trainer.run()
        except TrainingStopped as e:  # the pipeline's Trainer continues it when run again
            raise TrainingStopped(e.signal_name, e.iteration, e.checkpoint, CONTINUE_ADVICE) from None
        except WorkerLost as e:  # so is one that lost a worker
            raise WorkerLost(e.detail, e.iteration, e.checkpoint, CONTINUE_ADVICE) from e.__cause__
        weights = tf.train.latest_checkpoint(os.path.join(cfg.out_dir, CHECKPOINT_DIR)) if trainer.chief else None
        if trainer.chief and not weights:  # no checkpoint saved: export the final weights
            weights = tf.train.Checkpoint(model=trainer.model).write(os.path.join(scratch, FINAL_WEIGHTS))
        _write_outcome(outcome_path, dataclasses.asdict(Outcome(
            chief=trainer.chief, result=result, history=trainer.history, train_losses=trainer.train_losses,
            model_config=trainer.model.config.to_dict(), weights=weights or "", seconds=trainer.seconds,
            times=dict(request=requested, loop_started=trainer.loop_ended - trainer.seconds,
                       loop_ended=trainer.loop_ended, outcome=time.time()))))
        return trainer.workers == 1
    except KeyboardInterrupt:  # Ctrl-C reached the parent too, which reports it
        raise SystemExit(130) from None
    except Exception as e:
        user_error = isinstance(e, UserError)
        error = {"module": type(e).__module__, "type": type(e).__name__, "message": one_line(e),
                 "user_error": user_error}
        if user_error:  # the exception itself, with what it carries (DamagedShard's artifact, ...)
            import base64
            import pickle
            import traceback

            error["traceback"] = traceback.format_exc()  # where it was raised, for the parent's --debug
            try:
                error["pickled"] = base64.b64encode(pickle.dumps(e)).decode("ascii")
            except Exception:  # noqa: BLE001 (the class and message still get through)
                pass
        _write_outcome(outcome_path, {"error": error})
        if not user_error:
            raise  # a bug: its traceback on stderr, which the parent streams
        raise SystemExit(2) from None


def trained_model(outcome: Outcome, dtype_policy: str):
    """The GPT of a finished training process with the weights to export (restored from
    outcome.weights: the last evaluation's checkpoint, or the final weights)."""
    import tensorflow as tf

    from model.model import GPT, GPTConfig

    model = GPT(GPTConfig(**outcome.model_config), dtype_policy=dtype_policy)
    # read, not restore: the final weights are written without a save counter to match
    tf.train.Checkpoint(model=model).read(outcome.weights).expect_partial().assert_existing_objects_matched()
    return model


if __name__ == "__main__":
    from training.stopping import StopRequest, install

    # SIGTERM and SIGINT to `stop` from the first moment: held since this process started, they come
    # once its handler is in place. A KeyboardInterrupt in the start-up or the imports below could be
    # swallowed (in a finalizer, by a library's bare `except:`) and leave the training running for
    # ever. The training stops at its first iteration when one came before it.
    stop = StopRequest(insist=False)  # the parent insists, by killing this process
    install(stop)
    signals.release_held()  # this process started with them held (a stop sent meanwhile comes now)
    _die_with_parent()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # as bench.bench
    if prestart.prestarted():  # started with the run: the imports now, the request when the Trainer comes
        import training.train  # noqa: F401  (TensorFlow and the engine)
    elif len(sys.argv) != 2:
        raise SystemExit(f"usage: python -m training.train_process {REQUEST_FILE} "
                         f"(started by training.train_process.train)")
    if _run(prestart.argument(sys.argv), stop):
        # Its outcome and checkpoints are written and its output flushed: nothing is left to do but
        # TensorFlow's teardown, whose tf.data iterator deletion took 23-25 s in some pipeline runs
        # (the parent waits for this process to end). A run of several workers ends normally: its
        # coordination service shuts down with the process.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
