"""The project's user errors: a mistake a user can make and fix (a bad input, setting or file, a
damaged store, no network for a hub name). The command lines print one as one line, without a
traceback (`--debug` shows it); any other exception is a bug and keeps its traceback."""

from __future__ import annotations

import contextlib
import errno
import sys


class UserError(Exception):
    """A mistake the user can fix; its message names the input and what to do, in one line."""


def one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


class RemoteTraceback(Exception):
    """Where an error raised in another process (a training process) was raised there: its formatted
    traceback, made the cause of the error raised again in this process (as concurrent.futures
    does), so that the error's traceback shows both."""

    def __str__(self):
        return f'the traceback in the process that raised it:\n"""\n{self.args[0].rstrip()}\n"""'


@contextlib.contextmanager
def reported(prog: str, debug: bool = False, after_stop: str = ""):
    """Run a command line's body: a UserError ends it with one line on stderr and exit status 2
    (with its traceback when debug, after the traceback in the process that raised it when it came
    from another: RemoteTraceback); an Interrupted, with its line and its own exit status; Ctrl-C or
    SIGTERM (where nothing stopped cleanly by itself, as the training does), with one line, then
    after_stop (what the user may do next), and the shell's status for the signal."""
    try:
        yield
    except UserError as e:
        if debug:
            raise  # Python prints the chain: e's cause (a RemoteTraceback), then e's own traceback
        stopped = isinstance(e, Interrupted)
        print(f"{prog}: {'' if stopped else 'error: '}{one_line(e)}", file=sys.stderr, flush=True)
        raise SystemExit(e.exit_status if stopped else 2) from None
    except (Exception, KeyboardInterrupt) as e:  # not SystemExit: an inner command's own ending
        interrupt = interrupt_in(e)
        if debug or interrupt is None:
            raise
        how, status = ("SIGTERM", Terminated.exit_status) if isinstance(interrupt, Terminated) else \
            ("Ctrl-C (SIGINT)", Interrupted.exit_status)
        print(f"{prog}: stopped by {how}{after_stop and ': ' + after_stop}", file=sys.stderr, flush=True)
        raise SystemExit(status) from None


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's or a pod's stop) outside the training, raised where Ctrl-C raises its
    KeyboardInterrupt (core/signals.py stop_on_sigterm), so that the command ends the same way."""

    exit_status = 143


def interrupt_in(error: BaseException):
    """The KeyboardInterrupt (Ctrl-C's, or a Terminated) that error is or was raised while handling,
    else None: Beam re-raises a KeyboardInterrupt that reaches a DoFn as RuntimeError('KeyboardInterrupt
    [while running ...]'), and TFX logs that as the component's failure."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def pop_debug(argv):
    """(debug, argv without --debug): every command line takes --debug (or --debug=True)."""
    debug = any(a in ("--debug", "--debug=True", "--debug=true", "--debug=1") for a in argv)
    return debug, [a for a in argv if not a.startswith("--debug")]


class Interrupted(UserError):
    """The user (or the cluster) stopped the command with a signal, and it stopped cleanly: its line
    says where and how to go on; the exit status is the shell's for that signal (128 + its number)."""

    exit_status = 130


class NotFound(UserError, LookupError):
    """Something named (a model, an artifact, a file) is not where the user said."""


class UsageError(UserError, ValueError):
    """A bad setting or option value."""


class MissingFile(UserError, FileNotFoundError):
    """A file or directory the user named (or a run needs) is not there."""


class DiskFull(UserError, OSError):
    pass


class OutOfMemory(UserError, MemoryError):
    """A device's or the machine's memory could not hold the work (training/memory.py)."""


@contextlib.contextmanager
def writing(what: str, cleanup=None):
    """Around a write: a full disk (ENOSPC, however TensorFlow or Python reports it) becomes one
    DiskFull line naming what was written; cleanup() first removes what the write left half-done."""
    try:
        yield
    except Exception as e:
        if "No space left on device" not in str(e) and getattr(e, "errno", None) != errno.ENOSPC:
            raise
        if cleanup is not None:
            cleanup()
        raise DiskFull(f"no space left on the device writing {what}: free space, then run again") from e
