"""What the user sees on the terminal: TensorFlow's C++ chatter left out of stderr.

TensorFlow 2.16's C++ side writes INFO lines through absl before anything can configure it (`XLA
service ... initialized`, `Compiled cluster using XLA!`), which TF_CPP_MIN_LOG_LEVEL does not reach,
and three `Unable to register cu... factory` errors at every start, CUDA or not (an upstream bug).
`quiet_tensorflow()` passes stderr (the file descriptor, so C++ and child processes too) through a
small process of its own that drops exactly those lines and forwards every other line as it comes
(a process, not a thread: TensorFlow holds the interpreter for seconds at a time while it loads).
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys

# absl's INFO lines (I0000 00:00:1796539578.745789   14257 service.cc:145] ...), absl's notice that it
# writes to stderr before it is configured, and the CUDA plugin registrations TensorFlow repeats.
DROPPED = (rb"^(I\d{4} \d\d:\d\d:[\d.]+\s+\d+ \S+:\d+\] |WARNING: All log messages before absl::InitializeLog\(\) "
           rb"is called|[\d-]+ [\d:.]+: E \S+\] Unable to register cu\w+ factory)")

# The filter outlives no writer and misses no line: Ctrl-C and SIGTERM (sent to the whole process
# group) leave it running until the last process writing to it has ended.
_FILTER = f"""
import re, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
dropped = re.compile({DROPPED!r})
for line in sys.stdin.buffer:
    if not dropped.match(line):
        sys.stdout.buffer.write(line)
        sys.stdout.buffer.flush()
"""

_installed = False


def quiet_tensorflow() -> None:
    """Filter this process's stderr from now on (once; nothing where stderr cannot be replaced)."""
    global _installed
    if _installed:
        return
    try:
        original = os.dup(2)
        flt = subprocess.Popen([sys.executable, "-c", _FILTER], stdin=subprocess.PIPE, stdout=original,
                               close_fds=True)
    except OSError:
        return
    sys.stderr.flush()
    os.dup2(flt.stdin.fileno(), 2)
    flt.stdin.close()  # fd 2 is now this process's only way into the filter
    _installed = True

    @atexit.register
    def restore():  # what is still in the pipe reaches the terminal before the process ends
        sys.stderr.flush()
        os.dup2(original, 2)  # closes this process's end of the pipe: the filter ends at its end
        try:
            flt.wait(timeout=5)
        except subprocess.TimeoutExpired:  # a child of ours still writes to it: it ends with that child
            pass


def quiet_imports() -> None:
    """What importing TensorFlow says that concerns no run: its C++ INFO and WARNING lines
    (TF_CPP_MIN_LOG_LEVEL=2 unless set) and google-api-core's FutureWarning on Python 3.10 (README
    says why the project stays on it)."""
    import warnings

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    warnings.filterwarnings("ignore", category=FutureWarning)
