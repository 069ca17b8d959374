"""The training process dies with its parent: killed (no orphan trainer) or interrupted."""

import os
import signal
import subprocess
import sys
import time

from test_helpers.processes import alive, training_process

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# a parent that trains a tiny model for ever in a training process (this parent imports no TensorFlow),
# which logs iteration 0 and then nothing (so that no write to a closed pipe ends it)
PARENT = """
import sys
from model import train_process
from model.config import make_config
cfg = make_config("shakespeare_char", text_file=sys.argv[1], out_dir=sys.argv[2], max_iters=10**6,
                  eval_interval=10**6, eval_iters=1, log_interval=10**6, tensorboard=False, n_layer=1, n_head=2,
                  n_embd=16, block_size=16, batch_size=4)
print("parent started", flush=True)
train_process.train(cfg, None, sys.argv[3])
"""


def _parent(directory, text_file):
    """The parent process, started; it prints its first line before it starts the training process."""
    (directory / "scratch").mkdir(parents=True)
    parent = subprocess.Popen([sys.executable, "-c", PARENT, text_file, str(directory / "out"),
                               str(directory / "scratch")],
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert parent.stdout.readline() == "parent started\n"
    return parent


def _gone(pid: int, timeout: float = 20.0) -> bool:
    deadline = time.time() + timeout
    while alive(pid) and time.time() < deadline:
        time.sleep(0.05)
    return not alive(pid)


def test_the_training_process_dies_with_its_parent(tmp_path, shakespeare_text):
    text_file = tmp_path / "input.txt"
    text_file.write_text(shakespeare_text[:20000], encoding="utf-8")

    # Ctrl-C (SIGINT) to the parent alone, as the child starts: the parent stops it
    interrupted = _parent(tmp_path / "interrupted", str(text_file))
    child = None
    while child is None and interrupted.poll() is None:
        time.sleep(0.01)
        child = training_process(interrupted.pid)
    interrupted.send_signal(signal.SIGINT)
    assert interrupted.wait(timeout=60) != 0 and _gone(child)

    # kill -9 of the parent mid-training: the child dies too (PR_SET_PDEATHSIG), no orphan trainer
    killed = _parent(tmp_path / "killed", str(text_file))
    for line in killed.stdout:  # the child's lines, which the parent streams
        if line.startswith("iter 0:"):
            break
    child = training_process(killed.pid)
    assert child is not None
    killed.kill()
    assert killed.wait() == -signal.SIGKILL
    assert _gone(child), f"training process {child} outlived its parent"
