"""core/signals.py's ways of ending, with real processes and signals."""

import os
import signal
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# a long call outside Python (as a generation's one call into TensorFlow), in a command set up as
# runner.py sets it up (SIGTERM raising Terminated, Ctrl-C KeyboardInterrupt: each ends it with one line
# and 143 or 130); its temporary directory is removed as at any stop
COMMAND = """
import ctypes
from core.console import run_command
from core.errors import reported
from core.signals import interruptible, stop_on_sigterm
from core.tempdir import own_temp_dir

def main():
    stop_on_sigterm()
    with reported("runner.py sample"), own_temp_dir() as directory:
        print(directory, flush=True)
        assert interruptible(lambda x: x + 1, 1) == 2
        try:
            interruptible(lambda: 1 / 0)
        except ZeroDivisionError:
            print("ready", flush=True)
        interruptible(ctypes.CDLL(None).sleep, 30)

run_command(main, "runner.py sample")
"""


def _signalled(signum):
    process = subprocess.Popen([sys.executable, "-c", COMMAND], cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    directory = process.stdout.readline().strip()
    assert process.stdout.readline() == "ready\n"
    time.sleep(0.3)
    sent = time.monotonic()
    process.send_signal(signum)
    _, err = process.communicate(timeout=60)
    return process.returncode, time.monotonic() - sent, err, directory


@pytest.mark.parametrize("signum, how", [(signal.SIGINT, "Ctrl-C (SIGINT)"), (signal.SIGTERM, "SIGTERM")])
def test_a_long_call_made_interruptible_stops_at_once_with_one_line(signum, how):
    status, seconds, err, directory = _signalled(signum)
    assert status == 128 + signum and seconds < 10, err
    assert err == f"runner.py sample: stopped by {how}\n"
    assert directory and not os.path.exists(directory)


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
