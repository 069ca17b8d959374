"""TensorFlow's C++ chatter is left out of a command's stderr, everything else passes, in order."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# as TensorFlow 2.16 writes them (runner.py sample on this project's CPU), and a line of our own around each
CHATTER = [
    "2026-12-06 06:46:08.669363: E external/local_xla/xla/stream_executor/cuda/cuda_fft.cc:479] Unable to register "
    "cuFFT factory: Attempting to register factory for plugin cuFFT when one has already been registered",
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "2026-12-07 13:43:49.908692: E tensorflow/core/util/util.cc:131] oneDNN supports DT_HALF only on platforms "
    "with AVX-512. Falling back to the default Eigen-based implementation if present.",
    "I0000 00:00:1796539578.745789   14257 service.cc:145] XLA service 0x7f044400a780 initialized for platform Host",
    "I0000 00:00:1796539579.347480   14257 device_compiler.h:188] Compiled cluster using XLA!  This line is logged "
    "at most once for the lifetime of the process.",
]
KEPT = ["sampling from /somewhere", "W0000 00:00:1796539579.3 14257 x.cc:1] a warning stays",
        "2026-12-06 06:46:08.669363: E external/x.cc:1] another error stays", "runner.py sample: error: one line"]


def test_chatter_is_dropped_and_the_rest_kept_in_order():
    code = (f"import os, sys\nfrom core.console import quiet_tensorflow\nquiet_tensorflow()\n"
            f"for line in {[*CHATTER[:2], KEPT[0], *CHATTER[2:], *KEPT[1:]]!r}:\n"
            f"    os.write(2, (line + '\\n').encode())\n"
            f"import subprocess\nsubprocess.run([sys.executable, '-c', 'import os; os.write(2, b\"{CHATTER[2]}\\\\n\")'])\n"
            f"print('stdout untouched', flush=True)\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == KEPT  # a child process's chatter too
    assert result.stdout == "stdout untouched\n"


def test_ctrl_c_to_the_process_group_leaves_the_last_lines_reaching_the_terminal():
    import signal
    import time

    code = ("import os, signal, sys, time\nfrom core.console import quiet_tensorflow\nquiet_tensorflow()\n"
            "signal.signal(signal.SIGINT, lambda *_: (os.write(2, b'interrupted\\n'), sys.exit(130)))\n"
            "print('ready', flush=True)\ntime.sleep(30)\n")
    process = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    assert process.stdout.readline() == "ready\n"
    time.sleep(0.2)
    os.killpg(process.pid, signal.SIGINT)  # as a terminal's Ctrl-C: every process of the group
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130 and err == "interrupted\n"


def test_exit_without_teardown_does_what_a_normal_exit_does_first(tmp_path):
    # a thread still writing, an exit function, stdout not yet flushed, and the stderr filter: all reach
    # their end before the process does, and the status is sys.exit's
    code = ("import atexit, os, sys, threading, time\n"
            "from core.console import exit_without_teardown, quiet_tensorflow\nquiet_tensorflow()\n"
            f"def late():\n    time.sleep(0.5)\n    open({str(tmp_path / 'thread')!r}, 'w').write('done')\n"
            "threading.Thread(target=late).start()\n"
            f"atexit.register(lambda: open({str(tmp_path / 'atexit')!r}, 'w').write('ran'))\n"
            "sys.stdout.write('no newline, not flushed')\nos.write(2, b'a line through the filter\\n')\n"
            "exit_without_teardown(sys.argv[1] if sys.argv[1] != '3' else 3)\n")
    for argument, status, last_line in (("3", 3, None), ("one line", 1, "one line")):
        result = subprocess.run([sys.executable, "-c", code, argument], cwd=REPO, capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == status
        assert result.stdout == "no newline, not flushed"
        assert result.stderr.splitlines() == ["a line through the filter"] + ([last_line] if last_line else [])
        assert (tmp_path / "thread").read_text() == "done" and (tmp_path / "atexit").read_text() == "ran"
        (tmp_path / "thread").unlink()
        (tmp_path / "atexit").unlink()


def test_help_into_a_pipe_its_reader_closed_ends_quietly():
    """`runner.py --help | head -3`: the reader gone before the help is written, the command ends as a Unix
    tool does (status 141, nothing on stderr), not with BrokenPipeError's traceback."""
    for command in (["runner.py", "--help"], ["runner.py", "run", "--help"], ["runner.py", "lineage", "--help"],
                    ["-m", "training.train", "--help"], ["-m", "serving.sample", "--help"]):  # (lineage's fits a buffer)
        process = subprocess.Popen([sys.executable, *command], cwd=REPO, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE)
        process.stdout.close()
        _, stderr = process.communicate(timeout=60)
        assert (process.returncode, stderr) == (141, b""), command
