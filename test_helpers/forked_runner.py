"""Many `runner.py run` processes for the price of one TFX import (~35 s each on this machine): this
process imports runner.py, TFX and TensorFlow once (running nothing), then forks one child per
command read from stdin; each child is `runner.py run ...` in its own process and process group,
which a SIGKILL (test_helpers/fault_injection.py, armed in each child) ends as it would end `python runner.py run ...`.

    python -m test_helpers.forked_runner
    stdin:  {"argv": ["run", ...], "env": {...}, "log": "/path/of/its/output"}   one JSON line a command
    stdout: {"pid": ..., "exit": <exit status>, "signal": <signal that ended it or null>}

A test starts one with `with forked_runner() as run:` and calls run(argv, env, log) for each command.
"""

import contextlib
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@contextlib.contextmanager
def forked_runner():
    """run(argv, env, log): `runner.py run` in a process of its own, forked from one that imported
    TFX once; how it ended."""
    zygote = subprocess.Popen([sys.executable, "-m", "test_helpers.forked_runner"], cwd=REPO, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert json.loads(zygote.stdout.readline()) == {"ready": True}

    def run(argv, env, log):
        zygote.stdin.write(json.dumps({"argv": argv, "env": env, "log": str(log)}) + "\n")
        zygote.stdin.flush()
        return json.loads(zygote.stdout.readline())

    try:
        yield run
    finally:
        zygote.stdin.close()
        zygote.wait(timeout=60)


def _child(command) -> None:
    os.setpgid(0, 0)  # its own process group, as a shell gives a command: the test kills what remains
    os.environ.update(command.get("env", {}))
    log = os.open(command["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    sys.argv = ["runner.py", *command["argv"]]
    status = 0
    try:
        fault_injection.install()  # the kill point that the command's environment names, if any
        runner.main(command["argv"])
    except SystemExit as e:
        status = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
        status = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    import runner
    import tensorflow  # noqa: F401
    from tfx.orchestration.local import local_dag_runner  # noqa: F401

    from pipeline import pipeline  # noqa: F401
    from test_helpers import fault_injection

    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(command)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"pid": pid, "exit": os.waitstatus_to_exitcode(status),
                          "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None}), flush=True)
