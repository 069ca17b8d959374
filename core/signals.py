"""Signals between a process and its children.

Stopping a child process cleanly when this one is asked to stop (`passing_on`): SIGTERM (Kubernetes
and Vertex AI stop a pod so, and kill it 30 s later) and SIGINT (Ctrl-C) are passed on to it, so that
it ends its work cleanly (a training process checkpoints its iteration: training/stopping.py); the
second one kills it (the user insists). The child runs in a session of its own, so that a
terminal's Ctrl-C reaches it only through this process, once.

A child that takes every signal passed on (`held_in_children`, `release_held`): it starts with SIGTERM
and SIGINT held, so that one sent before its handler is in place waits for it, instead of killing it
or raising a KeyboardInterrupt in its start-up, where a finalizer or a library's bare `except:` can
swallow it and leave the child running for ever.

A child that dies with its parent (`killed_with_parent`, `die_with_parent`): a parent killed with
SIGKILL passes nothing on, and its training process or a pipeline task would run on as an orphan.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Callable, Iterator, List, Optional

STOPPING = (signal.SIGTERM, signal.SIGINT)


def killed_with_parent() -> Optional[Callable[[], int]]:
    """A function that has the process calling it killed when its parent dies (Linux's
    PR_SET_PDEATHSIG), for subprocess's preexec_fn or a forked child; None elsewhere. prctl is
    looked up here, before a fork: the child runs nothing but the call before its exec."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig, sigkill = 1, int(signal.SIGKILL)
    return lambda: prctl(pr_set_pdeathsig, sigkill)


def die_with_parent(parent: int) -> None:
    """End this process when `parent`, the process that started it, dies: PR_SET_PDEATHSIG, then a
    check that the parent did not die before it was set; where there is no PR_SET_PDEATHSIG, a
    thread that watches the parent's pid."""
    kill = killed_with_parent()
    set_ = kill is not None and kill() == 0
    if os.getppid() != parent:  # the parent died before: this process is an orphan already
        os._exit(1)
    if not set_:
        def watch():
            while os.getppid() == parent:
                time.sleep(1.0)
            os._exit(1)

        threading.Thread(target=watch, daemon=True).start()


def route_stopping(handler) -> Callable[[], None]:
    """SIGTERM and SIGINT to `handler` from now on (a function of signum and frame), in the main thread
    only, where Python runs signal handlers (elsewhere nothing changes); the function that puts the
    previous handlers back."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {s: signal.signal(s, handler) for s in STOPPING}
    return lambda: [signal.signal(s, old) for s, old in previous.items()]


@contextlib.contextmanager
def held_in_children() -> Iterator[None]:
    """For the block, SIGTERM and SIGINT are held (blocked) in the calling thread, so that a process
    started in it begins with them held, until it calls `release_held` once its handlers are in place.
    One sent to this process meanwhile is taken by another of its threads, or at the block's end."""
    if not hasattr(signal, "pthread_sigmask"):  # not POSIX: nothing is held
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOPPING)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def release_held() -> None:
    """In a process started within `held_in_children`, once its handlers are in place: take SIGTERM
    and SIGINT from now on (one that came meanwhile is handled now)."""
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOPPING)


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

    restore = route_stopping(pass_on)
    try:
        yield started
    finally:
        restore()


def stop_on_sigterm() -> None:
    """From now on SIGTERM raises core.errors.Terminated in the main thread, as Ctrl-C raises
    KeyboardInterrupt: the command unwinds (what it started is stopped, its temporary directory
    removed) and ends with one line. Python's default would end the process at once, silently.
    passing_on() hands it to the training process meanwhile."""
    from core.errors import Terminated

    def terminated(signum, frame):
        raise Terminated()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, terminated)


def interruptible(call: Callable, *args, **kwargs):
    """call(*args, **kwargs), made in a daemon thread while the main thread waits for it: its result,
    or its exception raised here. For a long call into TensorFlow (a whole generation is one call),
    during which the thread that makes it runs no Python signal handler, so that Ctrl-C and SIGTERM
    would stop the command only at the call's end: the waiting main thread takes them at once and the
    command unwinds as at any other stop (its one line, its temporary directory removed); the call,
    left running, ends with the process."""
    outcome = {}
    done = threading.Event()

    def run():
        try:
            outcome["value"] = call(*args, **kwargs)
        except BaseException as e:  # noqa: BLE001 (raised again in the caller's thread)
            outcome["error"] = e
        finally:
            done.set()

    threading.Thread(target=run, name="interruptible", daemon=True).start()
    while not done.wait(0.1):  # (a signal's handler runs between waits)
        pass
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
