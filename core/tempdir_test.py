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
