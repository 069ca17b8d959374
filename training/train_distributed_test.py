"""Multi-worker training on two local processes, and checkpoints that survive kill -9.

Run as a module, this file is one worker: `python -m training.train_distributed_test OUT TEXT STRATEGY`
with TF_CONFIG set; it trains and saves its final weights to OUT/weights-<task>.npz.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from test_helpers.processes import free_ports

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--n_layer=2", "--n_head=2", "--n_embd=32", "--block_size=32", "--batch_size=4", "--bias=False",
        "--dropout=0.0", "--tokenizer=char", "--eval_iters=2", "--log_interval=1", "--tensorboard=False",
        "--learning_rate=3e-3", "--warmup_iters=2", "--min_lr=3e-4"]
STEPS = 6


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    return {**env, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "2", **extra}


def _worker_main(out_dir, text_file, strategy, until_stopped=""):
    import tensorflow as tf  # noqa: F401  (after TF_CONFIG is set by the parent)

    from training import stopping
    from training.config import make_config, parse_overrides
    from training.distribution import WorkerLost
    from training.train import Trainer

    overrides = parse_overrides(TINY)
    cfg = make_config(**overrides, out_dir=os.path.join(out_dir, "run"), text_file=text_file,
                      max_iters=10**6 if until_stopped else STEPS - 1, eval_interval=1000, lr_decay_iters=STEPS,
                      gradient_accumulation_steps=2, strategy=strategy)
    stop = stopping.StopRequest()
    stopping.install(stop)
    trainer = Trainer(cfg, log=lambda line: print(line, flush=True), stop=stop)
    if until_stopped:
        try:
            trainer.run()
        except stopping.TrainingStopped as e:
            print(f"stopped at {e.iteration} by {e.signal_name}: {e.checkpoint}", flush=True)
        except WorkerLost as e:
            print(f"lost: {e}", flush=True)
        return
    trainer.run()
    task = json.loads(os.environ.get("TF_CONFIG", '{"task": {"index": "single"}}'))["task"]["index"]
    np.savez(os.path.join(out_dir, f"weights-{task}.npz"),
             **{k: v.numpy() for k, v in trainer.model.named_variables().items()})


def _losses(log):
    return [float(x) for x in re.findall(r"^iter \d+: loss ([0-9.]+)", log, re.M)]


def test_multi_worker_mirrored_matches_one_process(tmp_path, shakespeare_text):
    text = tmp_path / "small.txt"
    text.write_text(shakespeare_text[:20000], encoding="utf-8")
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    worker = [sys.executable, "-m", "training.train_distributed_test"]
    workers = []
    for index in (1, 0):  # the chief a few seconds after the other, which waits for it
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        workers.append(subprocess.Popen(
            [*worker, str(tmp_path / "mw"), str(text), "multi_worker"], cwd=REPO,
            env=_env(TF_CONFIG=tf_config), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        time.sleep(5 * (index == 1))
    workers.reverse()  # the chief's first
    single = subprocess.run([*worker, str(tmp_path / "one"), str(text), "default"], cwd=REPO, env=_env(),
                            capture_output=True, text=True, timeout=600)
    logs = [w.communicate(timeout=600)[0] for w in workers]
    assert all(w.returncode == 0 for w in workers), logs
    assert single.returncode == 0, single.stderr[-3000:]
    assert "replicas: 2" in logs[0] and "replicas: 1" in single.stdout
    w0, w1 = (np.load(tmp_path / "mw" / f"weights-{i}.npz") for i in range(2))
    reference = np.load(tmp_path / "one" / "weights-single.npz")
    for name in reference.files:
        np.testing.assert_array_equal(w0[name], w1[name], err_msg=f"workers differ in {name}")
        np.testing.assert_allclose(w0[name], reference[name], atol=2e-5, err_msg=f"{name} vs one process")
    assert len(_losses(logs[0])) == STEPS
    np.testing.assert_allclose(_losses(logs[0]), _losses(single.stdout), atol=1e-4)


@pytest.mark.parametrize("alone", [0, 1])
def test_a_worker_whose_other_worker_never_starts_stops_with_one_line(tmp_path, shakespeare_text, alone):
    """TF_CONFIG names a worker that never starts (a wrong address, a pod never scheduled): the one
    that runs, the chief or the other, stops after --worker_wait_minutes with one line naming it
    (TensorFlow alone waits without end, deaf to Ctrl-C and SIGTERM)."""
    text = tmp_path / "small.txt"
    text.write_text(shakespeare_text[:20000], encoding="utf-8")
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": alone}})
    started = time.monotonic()
    done = subprocess.run(_train_command(tmp_path / "run", text, "--worker_wait_minutes=0.05"), cwd=REPO,
                          env=_env(TF_CONFIG=tf_config), capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and time.monotonic() - started < 60, done.stderr[-3000:]
    assert done.stderr.splitlines()[-1] == (
        f"python -m training.train: error: the training's other workers did not all start within 0.05 minutes: "
        f"worker {1 - alone} at 127.0.0.1:{ports[1 - alone]}: Connection refused; check that each runs with the same "
        f"TF_CONFIG cluster and that this machine reaches its address, or wait longer with --worker_wait_minutes")


def _train_command(out_dir, text_file, *extra):
    return [sys.executable, "-m", "training.train", *TINY, f"--out_dir={out_dir}", f"--text_file={text_file}",
            "--eval_interval=3", "--always_save_checkpoint=True", "--max_iters=100000", *extra]


def _wait_for(predicate, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise TimeoutError(what)


def test_kill_during_step_and_during_save_then_resume(tmp_path, shakespeare_text):
    import tensorflow as tf

    from training.config import make_config, parse_overrides
    from training.train import Trainer

    text = tmp_path / "small.txt"
    text.write_text(shakespeare_text[:20000], encoding="utf-8")
    out = tmp_path / "run"
    ckpt_dir = out / "checkpoints"

    def saved_steps():
        latest = tf.train.latest_checkpoint(str(ckpt_dir))
        return int(latest.rsplit("-", 1)[1]) if latest else -1

    # 1) killed mid-run, between saves
    proc = subprocess.Popen(_train_command(out, text), cwd=REPO, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    _wait_for(lambda: saved_steps() >= 6, 180, "no checkpoint at step 6")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # 2) resumed, then killed as a save is being written (its temporary files exist)
    proc = subprocess.Popen(_train_command(out, text, "--init_from=resume"), cwd=REPO, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    before = saved_steps()
    _wait_for(lambda: any("_temp" in name for name in os.listdir(ckpt_dir)) and saved_steps() > before,
              180, "no save in progress after resuming")
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    latest = tf.train.latest_checkpoint(str(ckpt_dir))
    reader = tf.train.load_checkpoint(latest)  # readable: the kill never corrupts the latest
    step = reader.get_tensor("iter_num/.ATTRIBUTES/VARIABLE_VALUE")
    assert step == int(latest.rsplit("-", 1)[1]) and step >= before
    cfg = make_config(**parse_overrides(TINY), out_dir=str(out), text_file=str(text), init_from="resume",
                      max_iters=int(step) + 3, eval_interval=3)
    trainer = Trainer(cfg, log=lambda *_: None)
    assert trainer.start_iter == step
    saved_wte = reader.get_tensor("model/wte/weight/.ATTRIBUTES/VARIABLE_VALUE")
    np.testing.assert_array_equal(trainer.model.wte.weight.numpy(), saved_wte)
    result = trainer.run()
    assert result["iter_num"] == step + 4


def _two_workers_at_iter_3(tmp_path, shakespeare_text):
    """Two workers training until stopped (this file as a module), once the second has logged iteration 3."""
    text = tmp_path / "small.txt"
    text.write_text(shakespeare_text[:20000], encoding="utf-8")
    cluster = {"worker": [f"127.0.0.1:{p}" for p in free_ports(2)]}
    workers = [subprocess.Popen(
        [sys.executable, "-m", "training.train_distributed_test", str(tmp_path), str(text), "multi_worker", "stop"],
        cwd=REPO, env=_env(TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
    for line in workers[1].stdout:
        if line.startswith("iter 3:"):
            break
    return workers


def test_sigterm_to_one_worker_stops_every_worker_at_the_same_iteration(tmp_path, shakespeare_text):
    """Two workers; SIGTERM to the second (not the chief) mid-training: they agree on the iteration,
    where they all take part in its checkpoint, which the chief keeps."""
    from training.checkpoints import newest_checkpoint

    workers = _two_workers_at_iter_3(tmp_path, shakespeare_text)
    workers[1].send_signal(signal.SIGTERM)
    logs = [w.communicate(timeout=300)[0] for w in workers]
    stops = [re.findall(r"^stopped at (\d+) by (.+): (\S+)$", log, re.M) for log in logs]
    assert all(w.returncode == 0 for w in workers) and all(len(s) == 1 for s in stops), logs
    (chief_at, chief_by, checkpoint), (worker_at, worker_by, _) = stops[0][0], stops[1][0]
    assert chief_at == worker_at and (chief_by, worker_by) == ("another worker's stop", "SIGTERM")
    assert newest_checkpoint(str(tmp_path / "run")) == (checkpoint, int(chief_at))


@pytest.mark.parametrize("victim", [1, 0])
def test_a_worker_killed_mid_training_ends_the_others_with_one_line(tmp_path, shakespeare_text, victim):
    """kill -9 of one worker of two (a node that dies, a pod preempted without notice), the other or
    the chief: the one left ends within seconds, with one line naming the worker lost (the chief: by
    its heartbeat, which the coordination service misses, or by the connection of a collective in
    flight closing first, whichever TensorFlow reports first; the other: by the closed connection)."""
    workers = _two_workers_at_iter_3(tmp_path, shakespeare_text)
    killed = time.monotonic()
    workers[victim].kill()
    left = workers[1 - victim]
    log, _ = left.communicate(timeout=120)
    workers[victim].wait()
    assert left.returncode == 0 and time.monotonic() - killed < 60, log[-3000:]
    [lost] = re.findall(r"^lost: (.*)$", log, re.M)
    how = ["is gone ("] + (["stopped answering (its heartbeat timed out"] if victim == 1 else [])
    assert re.match(rf"the training lost a worker at iteration \d+: /job:worker/replica:0/task:{victim} "
                    rf"({'|'.join(map(re.escape, how))}).*; it saved no checkpoint: run again to train anew$", lost), lost


if __name__ == "__main__":
    _worker_main(*sys.argv[1:5])
