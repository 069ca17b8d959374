"""TEST-ONLY fault injection inside a training: at a chosen iteration the training process is killed
as an out-of-memory kill, a node failure or a pod's stop would end it, so that tests can check what
the next run makes of it (pipeline/fault_injection.py has the pipeline's own points).

    NANOGPT_TFX_KILL_AT=training:<when>:<iteration>:<how>   e.g. training:after_checkpoint:20:kill

when: iteration          at the top of that iteration (reached by training, not started at)
      before_checkpoint  as the checkpoint of that iteration is about to be written
      after_checkpoint   just after it was written
how:  kill               SIGKILL of the training process (an out-of-memory kill)
      kill_group         SIGKILL of the process group that started it (kill -9 of the runner's command), and of it
      sigterm_parent     SIGTERM to the process that started it (runner.py, as Kubernetes stops a pod)

Nothing happens unless the variable names a training point.
"""

from __future__ import annotations

import os
import signal
import sys

KILL_AT = "NANOGPT_TFX_KILL_AT"
PREFIX = "training:"
WHEN = ("iteration", "before_checkpoint", "after_checkpoint")
HOW = ("kill", "kill_group", "sigterm_parent")


def _point():
    value = os.environ.get(KILL_AT, "")
    if not value.startswith(PREFIX):
        return None
    when, iteration, how = value[len(PREFIX):].split(":")
    if when not in WHEN or how not in HOW:
        raise ValueError(f"{KILL_AT}={value}: expected {PREFIX}<{'|'.join(WHEN)}>:<iteration>:<{'|'.join(HOW)}>")
    return when, int(iteration), how


def at(when: str, iteration: int) -> None:
    """Kill as NANOGPT_TFX_KILL_AT says when it names this moment (tests only)."""
    point = _point()
    if point is None or point[:2] != (when, iteration):
        return
    how = point[2]
    print(f"fault injection: {how} at training:{when}:{iteration}", file=sys.stderr, flush=True)
    if how == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif how == "kill_group":  # the training process has a session of its own (training/train_process.py)
        os.killpg(os.getpgid(os.getppid()), signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)
    else:
        os.kill(os.getppid(), signal.SIGTERM)
