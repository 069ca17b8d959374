"""core/prestart.py with real processes: a program that reads its argument through prestart.argument,
started ahead, taken, given its argument; or taken with another environment (started afresh
instead); or never taken (ended, its own directory removed)."""

import os
import subprocess
import sys

from core import prestart

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROGRAM = ("import os, sys\n"
           "from core import prestart\n"
           "was = prestart.prestarted()\n"
           "arg = prestart.argument(sys.argv)\n"
           "print(f'{arg} prestarted={was} env_left={prestart.PRESTARTED_ENV in os.environ}', flush=True)\n")


def _command(tmp_path):
    program = tmp_path / "program.py"
    program.write_text(PROGRAM)
    return [sys.executable, str(program)], {**os.environ, "PYTHONPATH": REPO}


def test_a_prestarted_process_is_taken_and_given_its_argument(tmp_path):
    argv, env = _command(tmp_path)
    prestart.start("t1", argv, env)
    prestart.start("t1", argv, env)  # one process a name: the second start starts nothing
    waiting = prestart.take("t1", argv, {**env, "TF2_BEHAVIOR": "1"})  # as TensorFlow's import sets it
    assert waiting is not None and prestart.take("t1", argv, env) is None
    assert prestart.handed_over[-1] == "t1"
    prestart.give(waiting.process, "the argument")
    assert waiting.process.wait(timeout=60) == 0
    assert waiting.process.stdout.read().decode() == "the argument prestarted=True env_left=False\n"
    prestart.end(waiting)
    # the same program started afresh takes its argument from argv
    done = subprocess.run(argv + ["from argv"], env=env, capture_output=True, text=True, timeout=60)
    assert done.stdout == "from argv prestarted=False env_left=False\n"


def test_one_started_otherwise_is_not_taken_and_ends(tmp_path):
    argv, env = _command(tmp_path)
    prestart.start("t2", argv, env)
    process = prestart._waiting["t2"].process
    assert prestart.take("t2", argv, {**env, "TF_CONFIG": "{}"}) is None  # the task's environment differs
    assert process.poll() is not None  # ended
    assert prestart.take("t2", argv, env) is None and "t2" not in prestart.handed_over


def test_what_no_task_took_is_ended_with_its_directory(tmp_path):
    argv, env = _command(tmp_path)
    own = tmp_path / "own"
    own.mkdir()
    prestart.start("t3", argv, env, cwd=str(own), remove_cwd=True)
    process = prestart._waiting["t3"].process
    prestart.stop_all()
    assert process.poll() is not None and not own.exists()
    # a prestarted process whose stdin ends without an argument exits quietly
    done = subprocess.run(argv, env={**env, prestart.PRESTARTED_ENV: "1"}, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
