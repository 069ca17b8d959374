"""The fork server of `run --spec`'s tasks, with a module of a few lines standing in for TFX's
entrypoint: each task runs in a process of its own, in its directory, its output in its log, its exit
status back; a killed launcher leaves none of its processes behind."""

import os
import signal
import subprocess
import sys
import textwrap

from orchestration.kubeflow import forkserver
from test_helpers.processes import gone, group_gone

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TASK = '''
import os, sys, time

if __name__ == "__main__":  # as TFX's entrypoint: importing it runs nothing
    print("task in", os.getcwd(), "argv", sys.argv[1:], flush=True)
    if sys.argv[1] == "sleep":
        time.sleep(60)
    sys.exit(int(sys.argv[1]) if sys.argv[1].isdigit() else 0)
'''


def _environment(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "task.py").write_text(TASK)
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), REPO])}


def test_each_task_is_a_process_of_its_own_with_its_directory_log_and_exit_status(tmp_path):
    env = _environment(tmp_path)
    server = forkserver.start("pkg.task", env)
    try:
        assert server.serves([sys.executable, "-m", "pkg.task", "0"], env)
        assert not server.serves([sys.executable, "-m", "other"], env)
        assert not server.serves([sys.executable, "-m", "pkg.task"], {**env, "EXTRA": "1"})
        pids = set()
        for i, status in enumerate((0, 3, 0)):
            workdir = tmp_path / f"work{i}"
            workdir.mkdir()
            task = server.start([sys.executable, "-m", "pkg.task", str(status)], str(workdir), str(workdir / "log"))
            assert task.wait() == status
            assert (workdir / "log").read_text() == f"task in {workdir} argv ['{status}']\n"
            pids.add(task.pid)
        assert len(pids) == 3 and server.process.pid not in pids
        task = server.start([sys.executable, "-m", "pkg.task", "sleep"], str(tmp_path), str(tmp_path / "log"))
        task.kill()
        assert task.wait() == -signal.SIGKILL
    finally:
        server.close()


def test_a_killed_launcher_leaves_neither_the_server_nor_its_task(tmp_path):
    env = _environment(tmp_path)
    launcher = textwrap.dedent(f"""
        import sys, time
        from orchestration.kubeflow import forkserver
        server = forkserver.start("pkg.task", {env!r})
        task = server.start([sys.executable, "-m", "pkg.task", "sleep"], {str(tmp_path)!r}, {str(tmp_path / 'log')!r})
        print(server.process.pid, task.pid, flush=True)
        time.sleep(60)
    """)
    process = subprocess.Popen([sys.executable, "-c", launcher], cwd=REPO, env=env, stdout=subprocess.PIPE,
                               text=True, start_new_session=True)
    server_pid, task_pid = map(int, process.stdout.readline().split())
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert gone(server_pid) and gone(task_pid)
    assert group_gone(process.pid)


def test_the_servers_imports_leave_their_future_warnings_out_of_the_terminal(tmp_path):
    """What the module imports warns of (google-api-core's note on Python 3.10) would print on the
    terminal of `run --spec`, not in a task's log."""
    env = _environment(tmp_path)
    (tmp_path / "pkg" / "warns.py").write_text('import warnings\nwarnings.warn("a note on Python 3.10", FutureWarning)\n')
    done = subprocess.run([sys.executable, "-m", "orchestration.kubeflow.forkserver", "pkg.warns"], env=env,
                          input="", capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == '{"ready": true}\n'
    assert done.stderr == ""
