"""core/tempdir.py with real processes: what a command and the processes it starts leave in the
temporary directory goes with the command's own directory, whatever way they end."""

import os
import subprocess
import sys
import tempfile

import pytest

from core.tempdir import PREFIX, TIKTOKEN_CACHE_ENV, own_temp_dir

# as autograph writes a converted function's source (removed at exit, which os._exit skips)
LEAVES_A_FILE = ("import os, tempfile\n"
                 "f = tempfile.NamedTemporaryFile(prefix='__autograph_generated_file', suffix='.py', delete=False)\n"
                 "print(f.name, flush=True)\n"
                 "os._exit(0)\n")


@pytest.fixture
def temp_root(tmp_path, monkeypatch):
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setenv("TMPDIR", str(root))
    monkeypatch.setattr(tempfile, "tempdir", None)
    monkeypatch.delenv(TIKTOKEN_CACHE_ENV, raising=False)
    monkeypatch.delenv("DATA_GYM_CACHE_DIR", raising=False)
    return root


def test_a_processs_leftovers_go_with_the_commands_directory(temp_root):
    with own_temp_dir() as directory:
        assert os.path.dirname(directory) == str(temp_root) and os.path.basename(directory).startswith(PREFIX)
        assert tempfile.gettempdir() == directory and os.environ["TMPDIR"] == directory
        left = subprocess.run([sys.executable, "-c", LEAVES_A_FILE], capture_output=True, text=True,
                              check=True).stdout.strip()
        assert os.path.dirname(left) == directory and os.path.exists(left)
        assert os.environ[TIKTOKEN_CACHE_ENV] == str(temp_root / "data-gym-cache")  # tiktoken's cache stays put
    assert list(temp_root.iterdir()) == []
    assert os.environ["TMPDIR"] == str(temp_root) and tempfile.gettempdir() == str(temp_root)
    assert TIKTOKEN_CACHE_ENV not in os.environ


def test_the_directory_goes_when_the_command_fails(temp_root):
    with pytest.raises(KeyboardInterrupt):
        with own_temp_dir() as directory:
            tempfile.mkdtemp()
            with open(os.path.join(directory, "partial"), "w") as f:
                f.write("half")
            raise KeyboardInterrupt
    assert list(temp_root.iterdir()) == []


def test_a_tiktoken_cache_the_user_set_is_kept(temp_root, monkeypatch):
    monkeypatch.setenv(TIKTOKEN_CACHE_ENV, "")  # tiktoken: no cache
    with own_temp_dir():
        assert os.environ[TIKTOKEN_CACHE_ENV] == ""
    assert os.environ[TIKTOKEN_CACHE_ENV] == ""


# a run that makes its directory, says where, and waits to be killed
HOLDS_ITS_DIRECTORY = ("import sys, time\n"
                       "from core.tempdir import own_temp_dir\n"
                       "with own_temp_dir() as directory:\n"
                       "    print(directory, flush=True)\n"
                       "    time.sleep(600)\n")


def _start_holding(temp_root):
    process = subprocess.Popen([sys.executable, "-c", HOLDS_ITS_DIRECTORY], stdout=subprocess.PIPE, text=True,
                               cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                               env={**os.environ, "TMPDIR": str(temp_root)})
    return process, process.stdout.readline().strip()


def test_a_killed_runs_directory_goes_with_the_next_run_and_a_live_ones_stays(temp_root):
    killed, killed_dir = _start_holding(temp_root)
    live, live_dir = _start_holding(temp_root)
    try:
        killed.kill()  # SIGKILL: no cleanup of its own
        killed.wait()
        with open(os.path.join(killed_dir, "__autograph_generated_file1.py"), "w") as f:
            f.write("left")
        older = temp_root / f"{PREFIX}older"  # a directory without an OWNER file (another version's): left
        older.mkdir()
        with own_temp_dir() as directory:
            assert sorted(p.name for p in temp_root.iterdir()) == sorted(
                os.path.basename(d) for d in (live_dir, str(older), directory))
        assert os.path.isdir(live_dir) and os.path.isdir(older)
    finally:
        live.kill()
        live.wait()
    with own_temp_dir():
        pass
    assert [p.name for p in temp_root.iterdir()] == [older.name]
