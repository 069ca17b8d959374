"""Stopping a training cleanly. Kubernetes and Vertex AI stop a pod with SIGTERM and kill it 30 s
later; Ctrl-C is SIGINT. Either asks the training to stop (StopRequest): the Trainer checkpoints the
iteration it is at (on several workers, all at the same one) and ends with TrainingStopped, one line
saying where it stopped and how to go on, which the command lines print without a traceback. In
`python -m training.train`, the same signal again while the first is served is the user insisting:
it raises KeyboardInterrupt. A training process ignores repeats (a Ctrl-C or a kill of its process
group reaches it twice, directly and from its parent; the parent is the one that insists).
"""

from __future__ import annotations

import signal
from typing import Callable, Optional

from core.errors import Interrupted
from core.signals import route_stopping


class StopRequest:
    """Whether (and by which signal) the training was asked to stop."""

    def __init__(self, insist: bool = True):
        self.signal: Optional[str] = None
        self.insist = insist

    def ask(self, signum, frame=None) -> None:
        name = signal.Signals(signum).name
        if self.insist and self.signal == name:
            raise KeyboardInterrupt
        self.signal = self.signal or name


def install(request: StopRequest) -> Callable[[], None]:
    """Route SIGTERM and SIGINT to `request` (in the main thread only: Python delivers signals
    there); the function that puts the previous handlers back."""
    return route_stopping(request.ask)


def reclaim(request: StopRequest) -> None:
    """Route SIGTERM and SIGINT to `request` again, once the distribution strategy has started:
    TensorFlow's coordination service of several workers installs a SIGTERM handler of its own (its
    preemption notifier, in C++), which Python's handler no longer sees."""
    route_stopping(request.ask)


class StoppedBySignal(Interrupted):
    """A stop asked by a signal (signal_name; "another worker's stop" on the workers that were not
    signalled), whose exit status is the shell's for that signal (as Ctrl-C's for another worker's)."""
    signal_name: str

    @property
    def exit_status(self) -> int:
        number = getattr(signal.Signals, self.signal_name, None)
        return 128 + int(number) if number is not None else 130


class TrainingStopped(StoppedBySignal):
    """The training stopped at `iteration` when asked (by signal_name, or by another worker), with
    `checkpoint` holding that iteration. Its arguments are its state, so that it pickles whole (the
    training process sends it to its parent so)."""

    def __init__(self, signal_name: str, iteration: int, checkpoint: str,
                 advice: str = "continue it with --init_from=resume"):
        super().__init__(signal_name, iteration, checkpoint, advice)
        self.signal_name, self.iteration, self.checkpoint, self.advice = signal_name, iteration, checkpoint, advice

    def __str__(self):
        return (f"the training was stopped by {self.signal_name} at iteration {self.iteration}, which is saved in "
                f"{self.checkpoint}: {self.advice}")


class EvaluationStopped(StoppedBySignal):
    """eval_only stopped when asked: it saves nothing, having changed nothing."""

    def __init__(self, signal_name: str):
        super().__init__(signal_name)
        self.signal_name = signal_name

    def __str__(self):
        return f"the evaluation (eval_only) was stopped by {self.signal_name}; nothing was saved"

