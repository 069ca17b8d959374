"""Failures under LocalDagRunner with SQLite ML Metadata: a diverging Trainer fails, publishes
nothing and leaves no execution RUNNING; the rerun completes; a resume with another model shape is
refused before training; only what ML Metadata records as pushed is the latest pushed model; a
damaged store is named in one line."""

import os

import pytest
from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx

import runner
from core.errors import UsageError
from training.checkpoint_shape import CheckpointMismatch
from training.divergence import TrainingDiverged
from pipeline import lineage
from orchestration.local import local_pipeline
from pipeline.configs import make_run_config
from test_helpers import pipeline_runs
from test_helpers.pipeline_runs import TINY_RUN

State = metadata_store_pb2.Execution


def _config(output_dir, corpus, **training):
    return make_run_config("shakespeare_char", input_pattern=corpus, output_dir=str(output_dir),
                           val_loss_threshold=9.0, **{**TINY_RUN, **training})


def test_divergence_fails_the_trainer_publishes_nothing_and_the_rerun_completes(
        tmp_path, small_corpus, capsys):
    diverging = _config(tmp_path / "out", small_corpus, learning_rate=1000.0, warmup_iters=0, grad_clip=0.0)
    with pytest.raises(TrainingDiverged, match=r"training diverged at iter \d+: .*learning_rate=1000"):
        tfx.orchestration.LocalDagRunner().run(local_pipeline(diverging))
    states = pipeline_runs.component_states(diverging)
    assert states["Trainer"] == State.FAILED and State.RUNNING not in states.values()
    assert "LMEvaluator" not in states and "Pusher" not in states
    store = pipeline_runs.store(diverging)
    assert not [a for a in store.get_artifacts_by_type("Model") if a.state == metadata_store_pb2.Artifact.LIVE]
    assert not os.path.isdir(diverging.serving_dir)

    healthy = _config(tmp_path / "out", small_corpus)
    tfx.orchestration.LocalDagRunner().run(local_pipeline(healthy))
    states = pipeline_runs.component_states(healthy)
    assert states["Trainer"] == State.COMPLETE and states["Pusher"] == State.COMPLETE
    [version] = os.listdir(healthy.serving_dir)

    # resume with another model shape: refused before training; nothing new in ML Metadata
    models = len(pipeline_runs.store(healthy).get_artifacts_by_type("Model"))
    reshaped = make_run_config("shakespeare_char", input_pattern=small_corpus, output_dir=healthy.output_dir,
                                    val_loss_threshold=9.0, resume=True,
                                    **{**TINY_RUN, "n_layer": 2})
    with pytest.raises(CheckpointMismatch, match="has n_layer=1, the config says n_layer=2"):
        tfx.orchestration.LocalDagRunner().run(local_pipeline(reshaped))
    assert len(pipeline_runs.store(healthy).get_artifacts_by_type("Model")) == models
    assert "n_layer=1" in lineage.model_lineage(pipeline_runs.store(healthy)).to_text()

    # resume on data of other characters: refused before training (its ids would read as other
    # characters), and no training directory is left behind
    other = tmp_path / "other.txt"
    other.write_text(open(small_corpus, encoding="utf-8").read().replace("e", "~"), encoding="utf-8")
    trainings = os.path.join(healthy.pipeline_root, "Trainer", "trainings")
    before = sorted(os.listdir(trainings)) if os.path.isdir(trainings) else []
    recharactered = make_run_config("shakespeare_char", input_pattern=str(other), output_dir=healthy.output_dir,
                                    val_loss_threshold=9.0, resume=True, accept_anomalies=True, **TINY_RUN)
    with pytest.raises(UsageError, match=r"^resume: the latest model \(.*\) was trained on other tokens than this "
                                         r"data's: \d+ characters against the data's \d+, 1 new \('~'\), 1 gone "
                                         r"\('e'\); train anew with --resume=False$"):
        tfx.orchestration.LocalDagRunner().run(local_pipeline(recharactered))
    assert len(pipeline_runs.store(healthy).get_artifacts_by_type("Model")) == models
    assert (sorted(os.listdir(trainings)) if os.path.isdir(trainings) else []) == before

    # a directory in the serving directory that no completed push recorded is not the latest model
    os.makedirs(os.path.join(healthy.serving_dir, "9999999999"))
    latest = runner._latest_pushed(runner.argparse.Namespace(output=healthy.output_dir))
    assert latest == os.path.join(healthy.serving_dir, version)

    # a damaged store: `lineage` and `run` end in one line naming it, no traceback
    with open(healthy.metadata_path, "wb") as f:
        f.write(b"this is not an SQLite database" * 100)
    capsys.readouterr()
    for command in (["lineage"], ["run", f"--data={small_corpus}"], ["sample"]):
        with pytest.raises(SystemExit) as exit_info:
            runner.main([*command, f"--output={healthy.output_dir}"])
        stderr = capsys.readouterr().err
        assert exit_info.value.code == 2 and stderr.count("\n") == 1, stderr
        assert stderr.startswith(f"runner.py {command[0]}: error: ") and healthy.metadata_path in stderr
