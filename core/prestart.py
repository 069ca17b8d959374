"""Processes started before their task is known, so that their start-up overlaps the work before it.

A pipeline run here starts two fresh Python processes that import TensorFlow (4-8 s each on two
cores) after a minute of other components: the training process (training/train_process.py) and
the infra check (components/infra_validator/canned_requests.py). `start(name, argv, env)`
starts such a process when the run starts, with PRESTARTED_ENV in its environment: the program
imports what it needs, then reads its one real argument from a line of its stdin
(`argument(argv)`). When its task comes, `take(name, argv, env)` hands over the process started
with exactly that command and environment (the task gives it the argument), or None, and the task
starts one the same way now (`launch`). Processes no task took are ended by `stop_all()` (and die with the
process that started them, as the programs above do).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import threading
from typing import Dict, List, Optional

PRESTARTED_ENV = "NANOGPT_TFX_PRESTARTED"  # "1" in a prestarted process's environment
# What importing TensorFlow and TFX sets in a process's environment, so that a task started afresh
# after the run's imports inherits them while the process started before them does not: the
# prestarted process's own TensorFlow import sets the first four to the same values, and the last
# (TFX's) is read only by a Keras import, which neither the training process nor the check makes.
SET_BY_IMPORTS = ("KMP_DUPLICATE_LIB_OK", "KMP_INIT_AT_FORK", "TF2_BEHAVIOR", "TPU_ML_PLATFORM",
                  "TF_USE_LEGACY_KERAS")

_lock = threading.Lock()
_waiting: Dict[str, "Waiting"] = {}
handed_over: List[str] = []  # the names of the prestarted processes their tasks took, in order


@dataclasses.dataclass
class Waiting:
    """A prestarted process, and how it was started."""
    process: subprocess.Popen
    argv: List[str]
    env: Dict[str, str]
    cwd: Optional[str]
    remove_cwd: bool  # cwd is the process's own (a temporary directory): removed with it


def launch(argv: List[str], env: Dict[str, str], cwd: Optional[str] = None, remove_cwd: bool = False,
           **popen) -> Waiting:
    """argv started now, to read its argument from its stdin (`give`): what `start` starts ahead, and
    what a task whose process nothing started ahead starts itself (`take(...) or launch(...)`)."""
    process = subprocess.Popen(argv, env={**env, PRESTARTED_ENV: "1"}, cwd=cwd, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)
    return Waiting(process, list(argv), dict(env), cwd, remove_cwd)


def start(name: str, argv: List[str], env: Dict[str, str], cwd: Optional[str] = None, remove_cwd: bool = False,
          **popen) -> None:
    """Start argv now, for the task `name` (one process a name: while one waits, nothing more starts)."""
    with _lock:
        if name not in _waiting:
            _waiting[name] = launch(argv, env, cwd, remove_cwd, **popen)


def take(name: str, argv: List[str], env: Dict[str, str]) -> Optional[Waiting]:
    """The process started for `name` with this argv and env (but for SET_BY_IMPORTS), still alive
    and waiting for its argument (in its own cwd); else None, and one started otherwise is ended
    (its task then runs afresh)."""
    with _lock:
        waiting = _waiting.pop(name, None)
    if waiting is None:
        return None
    if waiting.process.poll() is None and (waiting.argv, _compared(waiting.env)) == (list(argv), _compared(env)):
        handed_over.append(name)
        return waiting
    end(waiting)
    return None


def _compared(env: Dict[str, str]) -> Dict[str, str]:
    return {key: value for key, value in env.items() if key not in SET_BY_IMPORTS}


def give(process: subprocess.Popen, argument: str) -> None:
    """Hand a taken process its argument (one line; the end of its stdin)."""
    process.stdin.write(argument.encode("utf-8") + b"\n")
    process.stdin.close()


def prestarted() -> bool:
    """Whether this process was started ahead of its task (and reads its argument from stdin)."""
    return os.environ.get(PRESTARTED_ENV) == "1"


def argument(argv: List[str], index: int = 1) -> str:
    """In the started program: argv[index], or, in a prestarted process, the line its task gives
    (blocking until then; an empty stdin, no task came: the process exits quietly)."""
    if not prestarted():
        return argv[index]
    os.environ.pop(PRESTARTED_ENV)  # not passed on to what this process starts
    line = sys.stdin.readline()
    if not line:
        os._exit(0)
    return line.rstrip("\n")


def stop_all() -> None:
    """End the processes no task took."""
    with _lock:
        waiting = list(_waiting.values())
        _waiting.clear()
    for each in waiting:
        end(each)


def end(waiting: Waiting) -> None:
    """End a prestarted process (if still running) and remove its own directory."""
    if waiting.process.poll() is None:
        waiting.process.kill()
    waiting.process.wait()
    for pipe in (waiting.process.stdin, waiting.process.stdout, waiting.process.stderr):
        if pipe:
            pipe.close()
    if waiting.remove_cwd and waiting.cwd:
        shutil.rmtree(waiting.cwd, ignore_errors=True)
