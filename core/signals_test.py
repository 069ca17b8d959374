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
