"""Stopping a child process cleanly when this one is asked to stop: SIGTERM (Kubernetes and Vertex
AI stop a pod so, and kill it 30 s later) and SIGINT (Ctrl-C) are passed on to it as SIGTERM, so
that it ends its work cleanly (a training process checkpoints its iteration: training/stopping.py);
the second one kills it (the user insists). The child runs in a session of its own, so that a
terminal's Ctrl-C reaches it only through this process, once."""

from __future__ import annotations

import signal
import subprocess
import threading
from typing import Callable, List


def passing_on(child: subprocess.Popen, asked: List[int]) -> Callable[[], None]:
    """Until the returned function is called, SIGTERM and SIGINT to this process go to `child`
    (and are appended to `asked`). In the main thread only, where Python runs signal handlers."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def pass_on(signum, frame):
        if asked:
            child.kill()
        else:
            asked.append(signum)
            child.send_signal(signal.SIGTERM)

    previous = {s: signal.signal(s, pass_on) for s in (signal.SIGTERM, signal.SIGINT)}
    return lambda: [signal.signal(s, handler) for s, handler in previous.items()]
