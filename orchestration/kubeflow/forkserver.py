"""The processes of `run --spec`'s tasks, forked from one process that has imported TensorFlow and
TFX's Kubeflow entrypoint once.

A task's command is `python -m MODULE ARGS...` (TFX's entrypoint): started afresh it spends half a
minute importing TensorFlow and TFX before it does anything. A container on a cluster pays that
too, but here every task of every run would, one after the other. So the launcher starts this
module once per run, in the tasks' environment, and each task is a fork of it: a process of its
own, in its own working directory, with its own log and exit status, that runs TFX's entrypoint as
`python -m` would, only without importing again what is already imported. A task with an
environment of its own (the spec's container env) or another command is started afresh.

Protocol (one JSON line each way, the tasks one at a time): started as `python -m
orchestration.kubeflow.forkserver MODULE`, this process imports MODULE and answers {"ready": true};
the launcher writes {"argv": [MODULE, ARGS...], "cwd": DIR, "log": FILE}; this process forks,
answers {"pid": PID}, and once the task ended {"exit": STATUS} (negative: the signal that ended it).
Each process here dies with its parent (PR_SET_PDEATHSIG), so that a killed launcher leaves none
behind, and runs in a session of its own, as the launcher starts any task: a terminal's Ctrl-C
reaches the launcher alone, which passes it on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from typing import List, Optional

from core import signals


class ForkedTask:
    """A task forked by the server: what the launcher needs of a subprocess.Popen."""

    def __init__(self, server: "ForkServer", pid: int):
        self.server, self.pid = server, pid

    def wait(self) -> int:
        return self.server.answer()["exit"]

    def send_signal(self, signum: int) -> None:
        try:
            os.kill(self.pid, signum)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        self.send_signal(9)


class ForkServer:
    """This module running in a process of its own, for the tasks of one run that run `module`."""

    def __init__(self, module: str, env: dict):
        self.module, self.env = module, env
        self.process = subprocess.Popen([sys.executable, "-m", "orchestration.kubeflow.forkserver", module], env=env,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                        preexec_fn=signals.killed_with_parent(), start_new_session=True)
        self.ready = self.answer().get("ready", False)

    def answer(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise OSError(f"the fork server (pid {self.process.pid}) ended")
        return json.loads(line)

    def serves(self, line: List[str], env: dict) -> bool:
        """Whether a task of this command line and environment can be forked here."""
        return self.ready and line[:3] == [sys.executable, "-m", self.module] and env == self.env

    def start(self, line: List[str], cwd: str, log: str) -> ForkedTask:
        self.process.stdin.write(json.dumps({"argv": line[2:], "cwd": cwd, "log": log}) + "\n")
        self.process.stdin.flush()
        return ForkedTask(self, self.answer()["pid"])

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            self.process.wait()


def _run_task(request: dict, server: int) -> None:
    """In the forked child of the server (pid `server`): MODULE as `python -m MODULE ARGS...` runs
    it, its output to the log."""
    import runpy
    import signal

    signals.die_with_parent(server)  # nothing else would end this task when the server dies
    os.setsid()  # a session of its own, as the launcher starts any task: its signals come from the launcher
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.chdir(request["cwd"])
    log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    module, *args = request["argv"]
    sys.argv = [module, *args]
    sys.modules.pop(module, None)  # run as __main__ afresh (what it imports stays imported)
    status = 0
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as e:
        status = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
        status = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def serve(module: str, requests, answers) -> None:
    """Import `module` (and so what it imports), then fork a task for each request. The server
    itself ignores SIGINT and SIGTERM: it ends with the launcher, and a task's stop is the launcher's
    to pass on."""
    import importlib
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # The server's own output is the terminal of `runner.py run --spec`, not a task's log: the
    # FutureWarnings of its imports (google-api-core's note on Python 3.10, which README explains)
    # are left out, as runner.py leaves them out of its own.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        importlib.import_module(module)
    answers.write(json.dumps({"ready": True}) + "\n")
    answers.flush()
    for line in requests:
        request = json.loads(line)
        server = os.getpid()
        pid = os.fork()
        if pid == 0:
            _run_task(request, server)
        answers.write(json.dumps({"pid": pid}) + "\n")
        answers.flush()
        _, status = os.waitpid(pid, 0)
        answers.write(json.dumps({"exit": os.waitstatus_to_exitcode(status)}) + "\n")
        answers.flush()


def start(module: str, env: dict) -> Optional[ForkServer]:
    """A fork server for tasks that run `module` in this environment, or None where there is no fork."""
    return ForkServer(module, env) if hasattr(os, "fork") else None


if __name__ == "__main__":  # python -m orchestration.kubeflow.forkserver MODULE
    serve(sys.argv[1], sys.stdin, sys.stdout)
