"""The training process dies with its parent, killed (no orphan trainer) or interrupted; its failure is
one line in the parent."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from training import train_process
from training.checkpoints import newest_checkpoint
from training.config import make_config
from training.divergence import TrainingDiverged
from test_helpers.processes import free_ports, gone, training_process

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# a parent that trains a tiny model for ever in a training process (this parent imports no TensorFlow),
# which logs iteration 0 and then nothing (so that no write to a closed pipe ends it)
# (its settings may be changed by a JSON object after its three paths)
PARENT = """
import json
import sys
from core.errors import reported
from training import train_process
from training.config import make_config
settings = dict(max_iters=10**6, eval_interval=10**6, eval_iters=1, log_interval=10**6, tensorboard=False, n_layer=1,
                n_head=2, n_embd=16, block_size=16, batch_size=4)
settings.update(json.loads(sys.argv[4]) if len(sys.argv) > 4 else {})
cfg = make_config("shakespeare_char", text_file=sys.argv[1], out_dir=sys.argv[2], **settings)
print("parent started", flush=True)
with reported("parent"):
    train_process.train(cfg, None, sys.argv[3])
"""


def _parent(directory, text_file, prefix=(), **settings):
    """The parent process (its command after prefix), started; it prints its first line before it
    starts the training process."""
    import json

    (directory / "scratch").mkdir(parents=True)
    parent = subprocess.Popen([*prefix, sys.executable, "-c", PARENT, text_file, str(directory / "out"),
                               str(directory / "scratch"), json.dumps(settings)],
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert parent.stdout.readline() == "parent started\n"
    return parent


def test_the_training_process_dies_with_its_parent(tmp_path, shakespeare_text):
    text_file = tmp_path / "input.txt"
    text_file.write_text(shakespeare_text[:20000], encoding="utf-8")

    # Ctrl-C (SIGINT) to the parent alone, as the child starts (Python's own start-up, where a
    # KeyboardInterrupt kills it or is swallowed and the child trains for ever): held in the child
    # until its handler is in place, it stops the training cleanly at iteration 0
    interrupted = _parent(tmp_path / "interrupted", str(text_file))
    child = None
    while child is None and interrupted.poll() is None:
        child = training_process(interrupted.pid)
    interrupted.send_signal(signal.SIGINT)
    _, stderr = interrupted.communicate(timeout=120)
    assert interrupted.returncode == 128 + signal.SIGINT and gone(child), stderr[-3000:]
    assert stderr.splitlines()[-1].startswith("parent: the training was stopped by SIGINT at iteration 0, "), \
        stderr[-3000:]

    # kill -9 of the parent mid-training: the child dies too (PR_SET_PDEATHSIG), no orphan trainer
    killed = _parent(tmp_path / "killed", str(text_file))
    for line in killed.stdout:  # the child's lines, which the parent streams
        if line.startswith("iter 0:"):
            break
    child = training_process(killed.pid)
    assert child is not None
    killed.kill()
    assert killed.wait() == -signal.SIGKILL
    assert gone(child), f"training process {child} outlived its parent"

    # SIGTERM to the parent mid-training (as Kubernetes stops a pod): passed on, the child checkpoints
    # the iteration it is at and stops; the parent ends with one line saying where, well within 30 s
    stopped = _parent(tmp_path / "stopped", str(text_file))
    for line in stopped.stdout:
        if line.startswith("iter 0:"):
            break
    asked = time.monotonic()
    stopped.send_signal(signal.SIGTERM)
    _, stderr = stopped.communicate(timeout=60)
    assert time.monotonic() - asked < 30 and stopped.returncode == 128 + signal.SIGTERM
    *_, last = stderr.splitlines()
    checkpoint = re.match(r"parent: the training was stopped by SIGTERM at iteration (\d+), which is saved in "
                          r"(\S+): run the same command again to continue from it$", last)
    assert checkpoint and "Traceback" not in stderr, stderr[-3000:]
    assert newest_checkpoint(str(tmp_path / "stopped" / "out")) == (checkpoint[2], int(checkpoint[1]))


def test_a_training_process_the_kernel_kills_for_memory_is_one_line_saying_so(tmp_path, shakespeare_text,
                                                                               memory_cgroup):
    """A training past its container's memory (a pod's limit), by a batch too large for it: the kernel's
    out-of-memory killer ends the training process (SIGKILL); the parent says so in one line with what
    lowers the memory, where it said "killed by SIGKILL". The step's lower bound (training/memory.py
    check_fits) is under the limit, so the training starts."""
    text_file = tmp_path / "input.txt"
    text_file.write_text(shakespeare_text[:200000], encoding="utf-8")
    limit = 1200 * 2 ** 20
    parent = _parent(tmp_path, str(text_file), prefix=memory_cgroup(limit), max_iters=50, log_interval=1, n_layer=2,
                     n_head=2, n_embd=64, block_size=256, batch_size=512)
    stdout, stderr = parent.communicate(timeout=300)
    assert parent.returncode == 2, stdout[-2000:] + stderr[-3000:]
    assert stderr.splitlines()[-1] == (
        f"parent: error: the training process of {tmp_path / 'out'} was killed by the kernel's out-of-memory killer "
        f"(SIGKILL, and its memory cgroup's oom_kill count rose while it ran): with --batch_size=512 and "
        f"--block_size=256 it needed more than the memory of this machine or its container (1.3 GB); lower "
        f"--batch_size (a larger --gradient_accumulation_steps keeps the tokens per iteration) or --block_size, or "
        f"train a smaller model; nothing was published from it: a run with a lower --batch_size (the same model) "
        f"will train anew"), \
        stderr[-3000:]


def test_a_stop_while_the_training_process_waits_for_its_other_workers_stops_the_parent(tmp_path, shakespeare_text):
    """Ctrl-C while worker 0 of a multi-worker training waits for worker 1, which never starts: the
    training process ends its wait with nothing to report, and the parent stops as it was told (one
    stop line), not with a line calling the training process failed."""
    import json
    import socket

    text_file = tmp_path / "input.txt"
    text_file.write_text(shakespeare_text[:20000], encoding="utf-8")
    ports = free_ports(2)
    tf_config = {"cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]}, "task": {"type": "worker", "index": 0}}
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT.replace("batch_size=4)", "batch_size=4, strategy='multi_worker', "
                                                               "worker_wait_minutes=5)"),
         str(text_file), str(tmp_path / "out"), str(tmp_path)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "TF_CONFIG": json.dumps(tf_config)})
    assert parent.stdout.readline() == "parent started\n"
    waiting = time.monotonic() + 90
    while time.monotonic() < waiting:  # worker 0 listens on its own port while it waits for worker 1
        try:
            socket.create_connection(("127.0.0.1", ports[0]), timeout=1).close()
            break
        except OSError:
            time.sleep(0.2)
    else:
        parent.kill()
        pytest.fail(f"worker 0 never waited: {parent.communicate()[1][-3000:]}")
    parent.send_signal(signal.SIGINT)
    _, stderr = parent.communicate(timeout=60)
    assert parent.returncode == 128 + signal.SIGINT, stderr[-3000:]
    assert stderr.splitlines()[-1] == "parent: stopped by Ctrl-C (SIGINT)", stderr[-3000:]

def test_a_failed_training_process_is_one_line_naming_its_error_and_run_directory(tmp_path, capfd):
    # a bug in the training process (here: no data named): its traceback streamed, then one line
    cfg = make_config("shakespeare_char", out_dir=str(tmp_path / "out"))
    with pytest.raises(train_process.TrainingProcessFailed) as failure:
        train_process.train(cfg, None, str(tmp_path))
    assert str(failure.value) == (
        f"the training process of {tmp_path / 'out'} exited with status 1 after ValueError: no training data: set "
        f"data_dir (token shards) or text_file (its traceback is above); nothing was published from it: run again "
        f"to train anew")
    assert "Traceback (most recent call last)" in capfd.readouterr().err

    # a user error comes back as its own class and line (the pipeline's divergence test runs one)
    error = train_process._failure(2, {"error": {"module": "training.divergence", "type": "TrainingDiverged",
                                                 "message": "training diverged at iter 3", "user_error": True}}, "d")
    assert type(error) is TrainingDiverged and str(error) == "training diverged at iter 3"
    # one pickled whole, with its state (a lost worker's iteration and checkpoint, as the child sends it)
    import base64
    import pickle

    from training.distribution import WorkerLost

    lost = WorkerLost("/job:worker/replica:0/task:1 stopped answering", 4, "d/ckpt-2", train_process.CONTINUE_ADVICE)
    error = train_process._failure(2, {"error": {"module": "training.distribution", "type": "WorkerLost",
                                                 "message": str(lost), "user_error": True,
                                                 "pickled": base64.b64encode(pickle.dumps(lost)).decode()}}, "d")
    assert type(error) is WorkerLost and (error.iteration, error.checkpoint) == (4, "d/ckpt-2")
    assert str(error) == str(lost) and str(error).endswith("its newest checkpoint is d/ckpt-2: run the same "
                                                           "command again to continue from it")
    assert str(train_process._failure(-9, None, str(tmp_path))) == (
        f"the training process of {tmp_path} was killed by SIGKILL; nothing was published from it: run again to train "
        f"anew")


def test_a_user_error_in_the_training_process_has_the_childs_traceback_under_debug(tmp_path):
    """A UserError raised in the training process (here a damaged token shard, found as the child
    reads its data) comes back as itself, one line without --debug; with --debug its traceback (what
    Python prints) shows where in the child it was raised, then the parent's."""
    import traceback

    from core import shards
    from core.errors import reported

    for split in shards.SPLITS:
        os.makedirs(shards.split_dir(str(tmp_path / "data"), split))
        (tmp_path / "data" / f"Split-{split}" / "tokens-00000-of-00001.gz").write_bytes(b"not a GZIP TFRecord file")
    cfg = make_config("shakespeare_char", data_dir=str(tmp_path / "data"), out_dir=str(tmp_path / "out"))
    with pytest.raises(shards.DamagedShard) as failure:
        with reported("runner.py run", debug=True):
            train_process.train(cfg, None, str(tmp_path))
    printed = "".join(traceback.format_exception(failure.value))
    child, parent = printed.split("The above exception was the direct cause of the following exception:")
    assert 'core/shards.py", line' in child and "in _batches" in child and "raise self._damaged(e)" in child
    assert "core.errors.RemoteTraceback: the traceback in the process that raised it:" in child
    assert 'training/train_process.py", line' in parent and parent.rstrip().endswith(str(failure.value))
