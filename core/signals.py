"""Stopping a child process cleanly when this one is asked to stop: SIGTERM (Kubernetes and Vertex
AI stop a pod so, and kill it 30 s later) and SIGINT (Ctrl-C) are passed on to it, so that it ends
its work cleanly (a training process checkpoints its iteration: training/stopping.py); the second
one kills it (the user insists). The child runs in a session of its own, so that a
terminal's Ctrl-C reaches it only through this process, once."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
from typing import Callable, Iterator, List


@contextlib.contextmanager
def passing_on(asked: List[int]) -> Iterator[Callable[[subprocess.Popen], None]]:
    """For the block, SIGTERM and SIGINT to this process go to the child (and are appended to
    `asked`); yields started(child), to call once the child runs (a signal that came before is
    passed on then). In the main thread only, where Python runs signal handlers."""
    children: List[subprocess.Popen] = []

    def started(child: subprocess.Popen) -> None:
        children.append(child)
        if asked:
            child.send_signal(asked[0])

    def pass_on(signum, frame):
        if asked and children:
            children[0].kill()
            return
        asked.append(signum)
        if children:
            children[0].send_signal(signum)

    if threading.current_thread() is not threading.main_thread():
        yield started
        return
    previous = {s: signal.signal(s, pass_on) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield started
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
