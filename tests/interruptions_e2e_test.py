"""`runner.py run` interrupted, end to end: killed (kill -9) at every point of every component and
inside its training, stopped by SIGTERM, and its Trainer on a full disk; each time the next run
completes from what was kept and makes what an uninterrupted run makes (char_run: conftest.py)."""

import gc
import glob
import json
import os
import re
import signal
import sys

import pytest

from pipeline.configs import Outputs
from test_helpers import fault_injection, pipeline_runs
from test_helpers.damage import FillDiskAfter
from test_helpers.forked_runner import forked_runner
from test_helpers.pipeline_runs import TINY_RUN, TINY_TRAINING
from test_helpers.processes import group_gone

# Every kill point of test_helpers/fault_injection.py of every component of the default pipeline, in
# the order LocalDagRunner runs them; `writing` of a component that writes in one go falls on `written`.
# Of the data checks, which write small files in one go (as ImportSchemaGen does) or nothing (the gate),
# the point that leaves something to clear: outputs written and not published; the gate just registered.
# The InfraValidator writes one file, as it ends: its `writing` is its `written`, left out.
# Inside the Trainer's training (TINY_TRAINING: checkpoints at its evaluations of 20 and 40), the
# training points, each continued by the next run: kill -9 of the training process just after
# checkpoint 20; SIGTERM to runner.py at iteration 30, which it passes on (the training waits there
# for it: a checkpoint of iteration 30); kill -9 of runner.py and its training process as checkpoint 40
# is about to be written (the next run continues from 30); Trainer:writing then falls after the training.
CHECKS = [("SchemaGen", "written"), ("latest_blessed_data_resolver", "registered"), ("DataValidator", "written"),
          ("AnomalyGate", "registered")]
TRAINING_KILL_POINTS = [("training", "after_checkpoint:20:kill"), ("training", "iteration:30:sigterm_parent"),
                        ("training", "before_checkpoint:40:kill_group")]
KILL_POINTS = [(node, point) for node in ("ImportSchemaGen", "TokenizeText")
               for point in fault_injection.COMPONENT_POINTS] + CHECKS + [
               (node, point) for node in ("Transform",) for point in fault_injection.COMPONENT_POINTS] + [
               ("Trainer", "registered"), *TRAINING_KILL_POINTS] + [
               ("Trainer", point) for point in fault_injection.COMPONENT_POINTS[1:]] + [
               ("latest_blessed_model_resolver", "registered")] + [
               (node, point) for node in ("LMEvaluator", "InfraValidator", "Pusher")
               for point in fault_injection.COMPONENT_POINTS if (node, point) != ("InfraValidator", "writing")]
# How runner.py ends at each training point: one line for the killed training process (exit 2), its
# own stop (128 + SIGTERM), killed with it
TRAINING_ENDS = {"kill": {"exit": 2, "signal": None}, "sigterm_parent": {"exit": 128 + signal.SIGTERM, "signal": None},
                 "kill_group": {"exit": -signal.SIGKILL, "signal": signal.SIGKILL}}


def _assert_same_artifacts(run, uninterrupted):
    """What matters of each component's output is the same as in the uninterrupted run's."""
    def both(component, output, name=""):
        return [os.path.join(pipeline_runs.output_of(config, component, output, first), name)
                for config, first in ((run, False), (uninterrupted, True))]

    for component, output in (("TokenizeText", "examples"), ("Transform", "transformed_examples")):
        records, expected = (pipeline_runs.records(uri) for uri in both(component, output))
        assert records == expected and all(records.values()), component
    histories = [json.loads(open(path).read()) for path in both("Trainer", "model_run", "history.json")]
    assert histories[0] == histories[1]  # every loss of the training
    weights = [open(path, "rb").read() for path in both("Trainer", "model", "Format-HF/model.safetensors")]
    assert weights[0] == weights[1]
    evaluations = [json.loads(open(path).read()) for path in both("LMEvaluator", "evaluation", "metrics.json")]
    losses = [([(m["role"], m.get("train_loss"), m["val_loss"]) for m in e["models"]], e["blessed"])
              for e in evaluations]
    assert losses[0] == losses[1]
    pushed = [os.path.join(c.serving_dir, pipeline_runs.pushed_versions(c)[0]) for c in (run, uninterrupted)]
    assert pipeline_runs.generated_texts(pushed[0]) == pipeline_runs.generated_texts(pushed[1])


def test_kill_9_at_each_point_of_each_component_then_the_rerun_makes_what_an_uninterrupted_run_makes(
        tmp_path, char_run, gpt2_baseline):
    """`runner.py run` killed with SIGKILL at every point of KILL_POINTS in turn (inside the training:
    its training process killed, runner.py stopped by SIGTERM, both killed), each run the same command
    again after the last was killed (so the components before each point come from the cache, and
    an interrupted training is continued from its latest checkpoint), then once to the end: the
    rerun completes, leaves no RUNNING execution, no staging folder, no unpublished output or version
    directory, and its artifacts, every loss of the training and the weights to the last bit, are
    char_run's."""
    from ml_metadata.proto import metadata_store_pb2

    out = tmp_path / "out"
    argv = ["run", f"--data={char_run.data.input_pattern}", f"--output={out}", "--val_loss_threshold=3.5",
            f"--baselines={gpt2_baseline['baselines'][0]}", f"--bpe_dir={gpt2_baseline['bpe_dir']}",
            *(f"--{k}={v}" for k, v in TINY_RUN.items())]
    config = Outputs(str(out))
    continued_at = []  # the iteration each run after a training's interruption said it continued from
    with forked_runner() as run:
        for node, point in KILL_POINTS:
            log = tmp_path / f"{node}-{point}.log"
            if node == "training":
                when, iteration, how = point.split(":")
                env = fault_injection.training_environment(when, int(iteration), how)
            else:
                env = {fault_injection.KILL_AT: f"{node}:{point}"}
            ended = run(argv, env, log)
            text = log.read_text()
            continued_at += [int(n) for n in re.findall(r"^continuing the training interrupted at iteration (\d+) "
                                                        r"\(run \w+\)$", text, re.M)]
            if node == "training":
                expected = TRAINING_ENDS[point.rsplit(":", 1)[1]]
                assert {k: ended[k] for k in expected} == expected, text[-3000:]
                when, how = point.rsplit(":", 1)
                # killed with its parent, the training process's last line never reached the log: its evaluation's did
                assert (f"fault injection: {how} at training:{when}" if how != "kill_group" else "step 40: ") in text
            else:
                assert ended["signal"] == signal.SIGKILL, text[-3000:]
                assert f"fault injection: SIGKILL at {node}:" in text
            if point.endswith("sigterm_parent"):
                stopped = re.search(r"^runner.py run: the training was stopped by SIGTERM at iteration (\d+), which is "
                                    r"saved in \S+/ckpt-\1: run the same command again to continue from it$",
                                    text, re.M)
                assert stopped and "Traceback" not in text, text[-3000:]
            assert group_gone(ended["pid"]), f"a process outlived `runner.py run` killed at {node}:{point}"
            executions = sorted(pipeline_runs.store(config).get_executions(), key=lambda e: e.id)
            running = [e.id for e in executions if e.last_known_state == metadata_store_pb2.Execution.RUNNING]
            # the killed one; those killed before were cleared (a failed or stopped Trainer is FAILED)
            assert running == ([] if ended["signal"] is None else [executions[-1].id]), f"{node}:{point}"
        ended = run(argv, {}, tmp_path / "rerun.log")
        rerun = (tmp_path / "rerun.log").read_text()
        assert ended["exit"] == 0, rerun[-3000:]
    # from the checkpoint at 20, from the stop's at 30 (twice: the kill before checkpoint 40 lost what
    # followed), then from the finished training at 40, exported again after each kill of its export
    assert continued_at[:3] == [20, 30, 30] and stopped[1] == "30", continued_at
    assert set(continued_at[3:]) == {40}, continued_at
    assert "cleared executions" in rerun and "pushed model: " + config.serving_dir in rerun
    states = {e.last_known_state for e in pipeline_runs.store(config).get_executions()}
    assert metadata_store_pb2.Execution.RUNNING not in states
    finished = {e.id for e in pipeline_runs.store(config).get_executions()
                if e.last_known_state != metadata_store_pb2.Execution.CANCELED}
    artifact_dirs = {os.path.normpath(a.uri) for a in pipeline_runs.store(config).get_artifacts()}
    assert os.listdir(os.path.join(config.pipeline_root, "Trainer", "trainings")) == []  # published, then removed
    for component in (c for c in os.listdir(config.pipeline_root) if not c.startswith(".")):  # .metadata_store.json
        for output in os.listdir(os.path.join(config.pipeline_root, component)):
            for execution in os.listdir(os.path.join(config.pipeline_root, component, output)):
                path = os.path.join(config.pipeline_root, component, output, execution)
                assert output == ".system" or path in artifact_dirs, f"{path}: no artifact names it"
        system = os.path.join(config.pipeline_root, component, ".system")  # TFX's working directories
        assert not glob.glob(os.path.join(system, "stateful_working_dir", "*")), component
        assert {int(os.path.basename(p)) for p in glob.glob(os.path.join(system, "executor_execution", "*"))
                } <= finished, component
    litter = [os.path.join(d, n) for d, dirs, files in os.walk(out) for n in dirs + files if "staging" in n]
    assert not litter
    assert len(pipeline_runs.pushed_versions(config)) == 1
    _assert_same_artifacts(config, char_run)


def _run_fn_args(char_run, run_dir, model_dir):
    """run_fn's arguments to train TINY_TRAINING's model for 20 iterations on char_run's examples."""
    from tfx.components.trainer.fn_args_utils import FnArgs

    from components.deploy_settings import DeployConfig
    from components.trainer.settings import custom_config
    from training.config import make_config

    examples = pipeline_runs.output_of(char_run, "Transform", "transformed_examples", first=True)
    return FnArgs(train_files=[os.path.join(examples, "Split-train", "*")],
                  eval_files=[os.path.join(examples, "Split-val", "*")],
                  transform_graph_path=pipeline_runs.output_of(char_run, "Transform", "transform_graph", first=True),
                  model_run_dir=str(run_dir), serving_model_dir=str(model_dir / "Format-Serving"),
                  custom_config=custom_config(make_config("shakespeare_char", **{**TINY_TRAINING, "max_iters": 20,
                                                                                  "eval_interval": 20}),
                                              DeployConfig(serving_loop="graph"), resume=False))


def _run_fn_fails(fn_args):
    """run_fn's DiskFull message."""
    from components.trainer import run_fn
    from core.errors import DiskFull

    with pytest.raises(DiskFull) as info:
        run_fn.run_fn(fn_args)
    message = str(info.value)
    del info  # its traceback holds the Trainer, whose TensorBoard writer holds a file open
    gc.collect()
    return message


def test_a_full_disk_when_the_trainer_writes_its_history_is_one_line_and_leaves_nothing_half_written(
        char_run, small_disk, monkeypatch):
    """run_fn's run and model directories on the 1 MiB tmpfs: the disk fills up as training ends
    (after its last checkpoint, ~0.34 MB, is saved), so that history.json, the first file run_fn
    writes itself, does not fit."""
    run_dir, model_dir = small_disk / "model_run", small_disk / "model"
    stdout = FillDiskAfter(sys.stdout, "iter 20:", small_disk / "filler")
    monkeypatch.setattr(sys, "stdout", stdout)
    message = _run_fn_fails(_run_fn_args(char_run, run_dir, model_dir))
    assert stdout.filled
    assert message == f"no space left on the device writing history.json in {run_dir}: free space, then run again"
    assert not [name for name in os.listdir(run_dir) if "history" in name]  # nor its temporary file
    assert not model_dir.exists()


def test_a_full_disk_when_the_trainer_writes_run_dir_txt_is_one_line_and_leaves_nothing_half_written(
        char_run, tmpfs, tmp_path, monkeypatch):
    """The Model directory on a 16 MiB tmpfs (the SavedModel takes ~1.5), which fills up (a filler file) as soon as the Hugging
    Face checkpoint is written: run_dir.txt, written last, does not fit."""
    from components import artifact_layout
    from components.artifact_layout import RUN_DIR_POINTER
    from model.model import GPT

    small_disk = tmpfs("16M")
    save_pretrained = GPT.save_pretrained

    def save_then_fill_the_disk(self, *args, **kwargs):
        save_pretrained(self, *args, **kwargs)
        with open(small_disk / "filler", "wb", buffering=0) as f:
            with pytest.raises(OSError):
                while True:
                    f.write(b"\0" * 4096)

    monkeypatch.setattr(GPT, "save_pretrained", save_then_fill_the_disk)
    model_dir = small_disk / "model"
    message = _run_fn_fails(_run_fn_args(char_run, tmp_path / "model_run", model_dir))
    assert message == (f"no space left on the device writing {RUN_DIR_POINTER} in {model_dir}: "
                       f"free space, then run again")
    assert sorted(os.listdir(model_dir)) == sorted([artifact_layout.SERVING_DIR, artifact_layout.HF_CHECKPOINT_DIR])
