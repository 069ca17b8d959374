"""core/signals.py's ways of ending, with real processes and signals."""

import os
import signal
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# a long call, in a command set up as runner.py sets it up (SIGTERM raising Terminated, Ctrl-C
# KeyboardInterrupt: each would end it with one line and 143 or 130, once Python runs again)
COMMAND = """
import ctypes
from core.errors import reported
from core.signals import ending_at_once, stop_on_sigterm
stop_on_sigterm()
print("ready", flush=True)
with reported("runner.py sample"), ending_at_once():
    ctypes.CDLL(None).sleep(30)
"""


def _signalled(signum):
    process = subprocess.Popen([sys.executable, "-c", COMMAND], cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    assert process.stdout.readline() == "ready\n"
    time.sleep(0.3)
    sent = time.monotonic()
    process.send_signal(signum)
    _, err = process.communicate(timeout=60)
    return process.returncode, time.monotonic() - sent, err


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_long_call_ending_at_once_ends_with_the_signal(signum):
    status, seconds, err = _signalled(signum)
    assert status == -signum and seconds < 10 and err == ""


# a child that is busy before its handler is in place (as Python's start-up and the imports are):
# what it was sent meanwhile comes to the handler once it releases the signals
HELD_CHILD = """
import signal, sys, time
from core.signals import release_held
time.sleep(1.0)
signal.signal(signal.SIGINT, lambda signum, frame: print("handled", signum, flush=True))
release_held()
print("released", flush=True)
"""


def test_a_signal_sent_as_a_child_starts_waits_for_its_handler():
    from core.signals import held_in_children

    before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    with held_in_children():
        child = subprocess.Popen([sys.executable, "-c", HELD_CHILD], cwd=REPO, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == before  # this thread's mask as it was
    child.send_signal(signal.SIGINT)  # at once: Python has not even started in the child
    out, err = child.communicate(timeout=60)
    assert (child.returncode, out, err) == (0, f"handled {int(signal.SIGINT)}\nreleased\n", "")
