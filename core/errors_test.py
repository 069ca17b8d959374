"""A command line's Ctrl-C or SIGTERM outside the training (a data component, TFX's import): one line
and the shell's status for the signal, not Python's KeyboardInterrupt traceback (--debug keeps it)
nor, for SIGTERM, a silent end."""

import os
import signal
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# a command whose body is interrupted as a terminal's Ctrl-C would: SIGINT to its process mid-work
COMMAND = """
import os, signal, sys, time
from core.errors import reported
from core.signals import stop_on_sigterm
stop_on_sigterm()  # as runner.py does
with reported("runner.py run", debug=sys.argv[1] == "debug", after_stop="run it again"):
    os.kill(os.getpid(), signal.SIGTERM if sys.argv[1] == "sigterm" else signal.SIGINT)
    time.sleep(30)
"""


def _interrupted(mode):
    return subprocess.run([sys.executable, "-c", COMMAND, mode], cwd=REPO, capture_output=True, text=True, timeout=60)


def test_ctrl_c_ends_a_command_with_one_line_and_the_status_of_sigint():
    done = _interrupted("plain")
    assert done.returncode == 128 + signal.SIGINT
    assert done.stderr == "runner.py run: stopped by Ctrl-C (SIGINT): run it again\n"


def test_sigterm_ends_a_command_with_one_line_and_the_status_of_sigterm():
    done = _interrupted("sigterm")
    assert done.returncode == 128 + signal.SIGTERM
    assert done.stderr == "runner.py run: stopped by SIGTERM: run it again\n"


def test_ctrl_c_with_debug_keeps_the_traceback():
    done = _interrupted("debug")
    assert done.returncode != 0 and "Traceback" in done.stderr and "KeyboardInterrupt" in done.stderr
