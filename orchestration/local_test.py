"""Ctrl-C in the middle of a Beam component, as `runner.py run` shows it: one line and the status of
SIGINT, not the traceback Beam logs and re-raises (it wraps the KeyboardInterrupt a DoFn gets in a
RuntimeError, which TFX then logs as the component's failure); a component's UserError, its one
line without TFX's 'Execution N failed.' before it."""

import os
import signal
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# a Beam pipeline on the DirectRunner whose DoFn gets the SIGINT a terminal's Ctrl-C sends (or a
# scheduler's SIGTERM), mid-work
COMMAND = """
import logging, os, signal, sys, time
from core.errors import UsageError, reported
from core.signals import stop_on_sigterm
from orchestration import local

local.show_progress()  # as runner.py, before anything else is imported
import apache_beam as beam

stop_on_sigterm()  # as runner.py does


class Slow(beam.DoFn):
    def process(self, x):
        os.kill(os.getpid(), signal.SIGTERM if sys.argv[1] == "sigterm" else signal.SIGINT)
        time.sleep(30)
        yield x

with reported("runner.py", debug=sys.argv[1] == "debug"), \\
        reported("runner.py run", debug=sys.argv[1] == "debug", after_stop="run it again"):  # as runner.py nests them
    try:
        if sys.argv[1] == "mistake":
            raise UsageError("data.txt is not UTF-8 text")
        with beam.Pipeline() as p:
            _ = p | beam.Create([1]) | beam.ParDo(Slow())
    except Exception:
        logging.getLogger("absl").error("Execution 1 failed.")  # as TFX's launcher logs it, then re-raises
        raise
"""


def _interrupted(mode):
    return subprocess.run([sys.executable, "-c", COMMAND, mode], cwd=REPO, capture_output=True, text=True,
                          timeout=120)


def test_ctrl_c_in_a_dofn_is_one_line_and_the_status_of_sigint():
    done = _interrupted("plain")
    lines = [line for line in done.stderr.splitlines() if "absl::InitializeLog" not in line]
    assert lines == ["runner.py run: stopped by Ctrl-C (SIGINT): run it again"], done.stderr
    assert done.returncode == 128 + signal.SIGINT


def test_sigterm_in_a_dofn_is_one_line_and_the_status_of_sigterm():
    done = _interrupted("sigterm")
    lines = [line for line in done.stderr.splitlines() if "absl::InitializeLog" not in line]
    assert lines == ["runner.py run: stopped by SIGTERM: run it again"], done.stderr
    assert done.returncode == 128 + signal.SIGTERM


def test_ctrl_c_in_a_dofn_with_debug_keeps_the_traceback():
    done = _interrupted("debug")
    assert done.returncode != 0 and "Traceback" in done.stderr and "KeyboardInterrupt" in done.stderr


def test_a_components_user_error_is_its_one_line():
    done = _interrupted("mistake")
    lines = [line for line in done.stderr.splitlines() if "absl::InitializeLog" not in line]
    assert lines == ["runner.py run: error: data.txt is not UTF-8 text"], done.stderr
    assert done.returncode == 2
