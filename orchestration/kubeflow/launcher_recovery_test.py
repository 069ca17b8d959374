"""`runner.py run --spec` recovers as `runner.py run` does, on a spec of two plain Python tasks (no TFX:
fast): a task that fails on a cached input damaged in place has it set aside and made again; a
launcher killed at each point of a task leaves no task running, and the next run completes."""

import glob
import json
import os

import pytest
import yaml

import runner
from orchestration.kubeflow import launcher
from orchestration.kubeflow.launcher_test import _artifact, _records
from test_helpers.damage import flip_bytes_in_place


# A task that writes an Examples artifact as TokenizeText does (a GZIP shard, and the SHA-256 it
# recorded of it, core.shards.SHARD_SHA256), and one that reads it, in plain Python (no TFX: fast).
MAKE_EXAMPLES = """
import gzip, hashlib, json, os, sys
executor_input = json.loads(sys.argv[1])
uri = executor_input["outputs"]["artifacts"]["examples"]["artifacts"][0]["uri"]
os.makedirs(uri + "/Split-train")
with gzip.open(uri + "/Split-train/part-0.gz", "wb") as f:
    f.write(b"".join(b"record %d of the shard; " % i for i in range(20000)))
with open(uri + "/Split-train/part-0.gz", "rb") as f:
    digests = {"Split-train/part-0.gz": hashlib.sha256(f.read()).hexdigest()}
with open(executor_input["outputs"]["outputFile"], "w") as f:
    json.dump({"artifacts": {"examples": {"artifacts": [{"metadata": {"shard_sha256": json.dumps(digests)}}]}}}, f)
import time
time.sleep(float(os.environ.get("MAKE_EXAMPLES_SECONDS", "0")))
"""
READ_EXAMPLES = """
import glob, gzip, json, os, sys
uri = json.loads(sys.argv[1])["inputs"]["artifacts"]["examples"]["artifacts"][0]["uri"]
for path in sorted(glob.glob(uri + "/Split-*/*.gz")):
    gzip.open(path).read()
if os.environ.get("READ_EXAMPLES_FAILS"):
    raise SystemExit("the reader failed on its own")
once = os.environ.get("READ_EXAMPLES_FAILS_ONCE")
if once and not os.path.exists(once):
    open(once, "w").close()
    raise SystemExit("the reader failed once")
import time
time.sleep(float(os.environ.get("READ_EXAMPLES_SECONDS", "0")))
"""


def _reading_spec(tmp_path, read_retries=0):
    """A spec of two tasks, MAKE_EXAMPLES (cached) and READ_EXAMPLES (not, retried read_retries
    times after a failure), its root tmp_path/root."""
    examples = {"artifacts": {"examples": {"artifactType": {"schemaTitle": "tfx.Examples"}}}}
    spec = {"pipelineInfo": {"name": "reading"}, "defaultPipelineRoot": str(tmp_path / "root"), "root": {"dag": {
        "tasks": {"make": {"componentRef": {"name": "make"}, "taskInfo": {"name": "make"},
                           "cachingOptions": {"enableCache": True}},
                  "read": {"componentRef": {"name": "read"}, "taskInfo": {"name": "read"}, "inputs": {"artifacts": {
                      "examples": {"taskOutputArtifact": {"producerTask": "make", "outputArtifactKey": "examples"}}}},
                      **({"retryPolicy": {"maxRetryCount": read_retries}} if read_retries else {})}}}},
        "components": {"make": {"executorLabel": "make", "outputDefinitions": examples},
                       "read": {"executorLabel": "read", "inputDefinitions": examples}},
        "deploymentSpec": {"executors": {
            name: {"container": {"image": "unused", "command": ["python", "-c", script, "{{$}}"]}}
            for name, script in (("make", MAKE_EXAMPLES), ("read", READ_EXAMPLES))}}}
    path = tmp_path / "reading.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path, str(tmp_path / "root")


def test_a_task_that_fails_on_a_cached_input_damaged_in_place_has_it_set_aside_and_made_again(
        tmp_path, monkeypatch, capsys):
    """Bytes flipped in place in the shard of a cached artifact (its size kept): its reader fails with
    gzip's own error, naming no file; the run checks the reader's inputs against the SHA-256 they
    record, names the file and the artifact, sets the artifact aside in the record of the run that
    made it (the cache no longer takes it) and runs the spec again, in which the task that made it
    makes it anew. A reader that fails with its inputs whole fails as it is."""
    from core import shards

    path, root = _reading_spec(tmp_path)
    runner.main(["run", f"--spec={path}"])
    [first] = _records(root)
    made = _artifact(first, "make", "examples")
    assert json.loads(made["metadata"][shards.SHARD_SHA256]) == shards.shard_digests(made["uri"])
    shard = os.path.join(made["uri"], "Split-train", "part-0.gz")
    flip_bytes_in_place(shard)
    capsys.readouterr()

    runner.main(["run", f"--spec={path}"])
    [line] = [line for line in capsys.readouterr().out.splitlines() if line.startswith("task read: ")]
    assert line.startswith("task read: failed (exit code 1): ")
    assert line.endswith(f"; token shard {shard} is damaged (its bytes are not those written: another SHA-256): the "
                         f"artifact {made['name']} of task make is set aside and made again; running the spec again")
    first, failed, remade = _records(root)
    assert _artifact(first, "make", "examples")["state"] == launcher.SET_ASIDE  # in the record of the run that made it
    assert failed["state"] == "FAILED" and failed["tasks"]["make"]["state"] == "CACHED"
    assert remade["state"] == "SUCCEEDED" and remade["tasks"]["make"]["state"] == "SUCCEEDED"
    assert _artifact(remade, "make", "examples")["uri"] != made["uri"]

    monkeypatch.setenv("READ_EXAMPLES_FAILS", "1")
    with pytest.raises(SystemExit):
        runner.main(["run", f"--spec={path}"])
    assert "task read: failed (exit code 1): the reader failed on its own; log: " in capsys.readouterr().err
    assert len(_records(root)) == 4  # not run again


def test_a_launcher_killed_at_each_point_of_a_task_leaves_no_task_running_and_the_rerun_completes(tmp_path):
    """`runner.py run --spec` killed with SIGKILL (test_helpers/fault_injection.py) at each point of a task
    (its tasks would run on for 60 s after their work): no process of it is left, and the next run
    marks the killed run's record CANCELED and completes, taking what the killed runs recorded from
    the cache."""
    import signal
    import subprocess
    import sys

    from test_helpers import fault_injection
    from test_helpers.processes import group_gone

    path, root = _reading_spec(tmp_path)
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

    def run(kill_at=None):
        env = {k: v for k, v in os.environ.items() if k != fault_injection.KILL_TASK_AT}
        if kill_at:
            task, point = kill_at.split(":")
            env[fault_injection.KILL_TASK_AT] = kill_at
            if point != "written":  # killed while it runs: it would run on for a minute after its work
                env[f"{task.upper()}_EXAMPLES_SECONDS"] = "60"
        launcher = subprocess.Popen([sys.executable, "-m", "test_helpers.fault_injection", "run", f"--spec={path}"],
                                    cwd=repo, env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                    start_new_session=True)
        out, _ = launcher.communicate(timeout=120)
        assert group_gone(launcher.pid), f"a process of the killed launcher is left:\n{out}"
        return launcher.returncode, out

    outs = []
    for kill_at in ("make:writing", "make:written"):  # the kill comes before the record has make
        code, out = run(kill_at)
        assert code == -signal.SIGKILL and f"fault injection: SIGKILL at {kill_at}" in out
        assert _records(root)[-1]["state"] == "RUNNING" and _records(root)[-1]["tasks"] == {}
        outs.append(out)
    # the run after the kill while make wrote removes what make had written, named by no record
    assert "was killed during make: its unrecorded outputs" in outs[1]
    code, out = run("read:running")
    assert code == -signal.SIGKILL and "fault injection: SIGKILL at read:running" in out
    code, out = run()
    assert code == 0, out
    *killed, last_killed, completed = _records(root)
    assert [r["state"] for r in killed + [last_killed]] == ["CANCELED"] * 3
    assert last_killed["tasks"]["make"]["state"] == "SUCCEEDED" and "read" not in last_killed["tasks"]
    assert completed["state"] == "SUCCEEDED"
    assert {t: v["state"] for t, v in completed["tasks"].items()} == {"make": "CACHED", "read": "SUCCEEDED"}
    assert completed["tasks"]["make"]["outputs"] == last_killed["tasks"]["make"]["outputs"]
    for record_path in sorted(glob.glob(os.path.join(root, "*", "*", launcher.RECORD_FILE))):
        with open(record_path) as f:  # each run's directory holds its record and its recorded tasks, no more
            recorded = set(json.load(f)["tasks"])
        assert set(os.listdir(os.path.dirname(record_path))) - {launcher.RECORD_FILE} <= recorded, record_path


def test_runs_sharing_a_pipeline_root_remove_only_what_a_launcher_proven_dead_left(tmp_path):
    """Records RUNNING under one pipeline root: another machine's run, a live run of this machine,
    another container's of the same host name and boot, and a run whose launcher is dead. The next
    run cancels only the dead one and removes only what its killed tasks left (its unrecorded task
    directory, the version directory its push named, but not what a link in its directory points
    to); the others' work stays whole."""
    import socket
    import subprocess
    import sys

    from components.pusher.marks import PUSH_FILE
    from orchestration.kubeflow import launchers

    path, root = _reading_spec(tmp_path)
    runner.main(["run", f"--spec={path}"])
    [first] = _records(root)
    serving, elsewhere = tmp_path / "serving", tmp_path / "elsewhere"
    os.makedirs(elsewhere / "kept")
    finished = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.5)"])
    dead = dict(launchers.this_launcher(), pid=finished.pid, start_ticks=launchers._start_ticks(finished.pid))
    finished.wait()
    here = launchers.this_launcher()
    runs = {"other-machine": dict(here, host=f"not-{socket.gethostname()}", boot_id="another-boot"),
            "live": here, "other-container": dict(here, pid_namespace="pid:[1]"), "dead": dead}
    for name, its_launcher in runs.items():
        run_root = os.path.join(root, "reading", name)
        os.makedirs(os.path.join(run_root, "make", "examples"))  # a task killed while it wrote
        pushed_model = os.path.join(run_root, "Pusher", "pushed_model")
        os.makedirs(pushed_model)
        os.makedirs(serving / name)
        with open(os.path.join(pushed_model, PUSH_FILE), "w") as f:
            json.dump({"destination": str(serving / name), "staging": ""}, f)
        os.symlink(elsewhere, os.path.join(run_root, "read"))
        with open(os.path.join(run_root, launcher.RECORD_FILE), "w") as f:
            json.dump({**first, "run_id": name, "state": "RUNNING", "launcher": its_launcher, "tasks": {},
                       "artifacts": [], "started": first["started"] - 1}, f)

    runner.main(["run", f"--spec={path}"])
    states = {r["run_id"]: r["state"] for r in _records(root)}
    assert {name: states[name] for name in runs} == {"other-machine": "RUNNING", "live": "RUNNING",
                                                      "other-container": "RUNNING", "dead": "CANCELED"}
    for name in runs:
        alive = name != "dead"
        assert os.path.isdir(os.path.join(root, "reading", name, "make", "examples")) == alive, name
        assert (serving / name).is_dir() == alive, name
    assert os.path.islink(os.path.join(root, "reading", "dead", "read")) and (elsewhere / "kept").is_dir()


def test_a_task_with_a_retry_policy_runs_again_after_a_failure_and_a_stopped_launcher_stops_its_task(
        tmp_path, monkeypatch, capsys):
    """The retry policy (the compiled Trainer's) runs a failed task again in the same run; SIGTERM to
    the launcher is passed on to the running task, and the run ends in one line, exit status 143."""
    import signal
    import subprocess
    import sys

    from test_helpers.processes import child_process

    path, root = _reading_spec(tmp_path, read_retries=2)
    monkeypatch.setenv("READ_EXAMPLES_FAILS_ONCE", str(tmp_path / "failed-once"))
    runner.main(["run", f"--spec={path}"])
    out = capsys.readouterr().out
    assert "  task read: failed (exit code 1): the reader failed once; log: " in out
    assert "; its retry policy runs it again (1 of 2)" in out
    [record] = _records(root)
    assert record["state"] == "SUCCEEDED" and record["tasks"]["read"]["state"] == "SUCCEEDED"

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {**os.environ, "READ_EXAMPLES_SECONDS": "60"}
    launcher = subprocess.Popen([sys.executable, "runner.py", "run", f"--spec={path}"], cwd=repo, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while not child_process(launcher.pid, b"READ_EXAMPLES_SECONDS"):  # the reading task runs
        assert launcher.poll() is None, launcher.communicate()
    launcher.send_signal(signal.SIGTERM)
    _, stderr = launcher.communicate(timeout=60)
    assert launcher.returncode == 128 + signal.SIGTERM, stderr
    assert stderr.splitlines()[-1].startswith("runner.py run: task read was stopped by SIGTERM: ")
