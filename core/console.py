"""What the user sees on the terminal: TensorFlow's C++ chatter left out of stderr.

TensorFlow 2.16's C++ side writes INFO lines through absl before anything can configure it (`XLA
service ... initialized`, `Compiled cluster using XLA!`), which TF_CPP_MIN_LOG_LEVEL does not reach,
and three `Unable to register cu... factory` errors at every start, CUDA or not (an upstream bug).
`quiet_tensorflow()` passes stderr (the file descriptor, so C++ and child processes too) through a
small process of its own that drops exactly those lines and forwards every other line as it comes
(a process, not a thread: TensorFlow holds the interpreter for seconds at a time while it loads).
`exit_without_teardown()` ends a command that has done its work without the interpreter's seconds of
tearing TensorFlow, TFX and Beam down; `run_command(main, prog)` runs a command line's main() and ends so.
`counted(n, thing)` writes a count as a line says it ("1 document", "2,000 documents").
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
import threading
from typing import Sequence

# absl's INFO lines (I0000 00:00:1796539578.745789   14257 service.cc:145] ...), absl's notice that it
# writes to stderr before it is configured, the CUDA plugin registrations TensorFlow repeats, and its
# "oneDNN supports DT_HALF only on platforms with AVX-512", wrong on an AVX-512 CPU without FP16 (the
# training's own warning says what it means: training/devices.py slow_float16_warning).
DROPPED = (rb"^(I\d{4} \d\d:\d\d:[\d.]+\s+\d+ \S+:\d+\] |WARNING: All log messages before absl::InitializeLog\(\) "
           rb"is called|[\d-]+ [\d:.]+: E \S+\] (Unable to register cu\w+ factory|oneDNN supports DT_HALF only on))")

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


def exit_without_teardown(code=0):
    """End the process as `sys.exit(code)` would, without the interpreter's teardown.

    With TensorFlow, TFX and Beam loaded, Python spends 1.7-2.4 s on a 2-core machine taking their
    modules apart after a command's last line (the main command's exit, measured), for nothing that
    outlives the process. What a normal exit does first is done here too: the threads that are not
    daemons are waited for, the exit functions run (logging's flush, temporary files, the filter of
    `quiet_tensorflow` drained), stdout and stderr flushed; then the process ends at once.

    Args:
      code: as sys.exit's: None or an int is the exit status; anything else is printed to stderr and
        the status is 1.
    """
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()  # (Python's own exit calls this same function)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BrokenPipeError:  # its reader gone (`| head`): what a normal exit would lose too
            code = code or (CLOSED_PIPE_STATUS if stream is sys.stdout else 0)
        except (OSError, ValueError):  # a closed stream
            pass
    os._exit(code or 0)


def check_environment(prog: str, needs: Sequence[str] = ("tensorflow",)) -> None:
    """Stop with one line when this Python lacks the packages the command needs (`needs`), such as a
    system Python beside the .venv that `bash scripts/setup.sh` makes, which would end in an import's
    traceback. Nothing is imported to tell (a package is looked up, not loaded)."""
    import importlib.util

    missing = [name for name in needs if importlib.util.find_spec(name) is None]
    if not missing:
        return
    sys.stderr.write(f"{prog}: error: {sys.executable or 'this Python'} (Python {sys.version.split()[0]}) has no "
                     f"{', '.join(missing)}: not the project's environment, which `bash scripts/setup.sh` makes in "
                     f".venv; `source .venv/bin/activate` first, or run .venv/bin/python\n")
    raise SystemExit(2)


def run_command(main, prog: str, needs: Sequence[str] = ("tensorflow",)) -> None:
    """A command line's entry point: main() (which reports its own errors and stops by raising
    SystemExit with their status), then the process ended by exit_without_teardown. Besides the
    seconds it saves, that end is safe while a call into TensorFlow still runs in a daemon thread
    (core/signals.py interruptible, stopped by Ctrl-C), where the interpreter's teardown crashed.
    A Python without the packages it `needs` ends at once, in one line (check_environment)."""
    try:
        check_environment(prog, needs)
        main()
    except SystemExit as stop:  # a user error's line, Ctrl-C, --help: its status
        exit_without_teardown(stop.code)
    except BrokenPipeError:  # stdout's reader is gone (`--help | head`): quietly, as a Unix tool ends
        exit_without_teardown(CLOSED_PIPE_STATUS)
    exit_without_teardown(0)


CLOSED_PIPE_STATUS = 128 + signal.SIGPIPE  # the shell's status of a command whose output pipe closed


def print_out(text: str) -> None:
    """print(text), flushed, to a stdout whose reader may stop reading (`--help | head`): a closed
    pipe ends the command quietly with the status of a Unix tool's, not with a traceback."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # (so the exit's flush fails no more)
        raise SystemExit(CLOSED_PIPE_STATUS) from None


def in_bytes(size: int) -> str:
    """'1.2 GB', '15.0 kB': a size as a printed line says it."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6)):
        if size >= scale:
            return f"{size / scale:,.1f} {unit}"
    return f"{size / 1e3:,.1f} kB"


def counted(n: int, thing: str) -> str:
    """'1 document', '2,000 documents': a count as a printed line says it."""
    return f"{n:,} {thing}{'' if n == 1 else 's'}"
