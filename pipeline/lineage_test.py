"""The end-of-run summary, read from a real SQLite ML Metadata store."""

import os
import sys

import pytest

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

from components.tokenize_text.settings import TokenizeTextSettings
from pipeline import metadata

SAMPLE = metadata.runner_command("sample")  # as the summary types it here


def _store_with(path, artifacts):
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    store = metadata_store.MetadataStore(config)
    for type_name, uri, properties in artifacts:
        type_id = store.put_artifact_type(metadata_store_pb2.ArtifactType(name=type_name))
        artifact = metadata_store_pb2.Artifact(type_id=type_id, uri=uri, state=metadata_store_pb2.Artifact.LIVE)
        for key, value in properties.items():
            field = "int_value" if isinstance(value, int) else \
                "double_value" if isinstance(value, float) else "string_value"
            setattr(artifact.custom_properties[key], field, value)
        store.put_artifacts([artifact])


def test_run_summary_names_report_plot_tensorboard_and_sample(tmp_path):
    out = tmp_path / "my output"  # a path that needs quoting
    out.mkdir()
    run_dir = str(out / "Trainer" / "model_run" / "3")
    os.makedirs(os.path.join(run_dir, "tensorboard"))  # the training logs, which the summary names
    (out / "serving_model" / "17").mkdir(parents=True)  # the push
    _store_with(str(out / "metadata.sqlite"), [
        ("ModelEvaluation", str(out / "LMEvaluator" / "evaluation" / "5"),
         {"candidate_val_loss": 1.905437123, "candidate_train_loss": 1.8, "candidate_val_bpb": "nan"}),
        ("ModelRun", run_dir, {}),
        ("ModelBlessing", str(out / "blessing"), {"blessed": 1}),
        ("InfraBlessing", str(out / "infra"), {"blessed": 1, "infra_check_seconds": 21.5, "infra_checked": 1,
                                               "infra_check": "loaded in a fresh process ..."}),
        ("PushedModel", str(out / "pushed"), {"pushed": 1, "pushed_destination": str(out / "serving_model" / "17"),
                                              "model_card": str(out / "serving_model" / "17" / "model_card.md")}),
    ])
    summary = metadata.run_summary(str(out / "metadata.sqlite")).splitlines()
    quoted = f"'{out}"
    assert summary[0].startswith("evaluation: val loss 1.9054, train loss 1.8000, val bpb nan (unigram baseline None)")
    assert f"report {quoted}/LMEvaluator/evaluation/5/report.md'" in summary[0]
    assert summary[1] == f"loss curves: {quoted}/LMEvaluator/evaluation/5/loss_curves.png'"
    assert summary[2] == f"training logs: tensorboard --logdir '{run_dir}/tensorboard'"
    assert f"pushed model: {out}/serving_model/17" in summary
    assert "infra check: passed in 21.5 s (loaded in a fresh process ...)" in summary
    assert f"model card: '{out}/serving_model/17/model_card.md'" in summary
    assert f"sample: {SAMPLE} --from='{out}/serving_model/17'" in summary
    assert summary[-1] == f"lineage: {metadata.runner_command('lineage')} --output='{out}'"
    assert os.path.isfile(out / "metadata.sqlite")


def test_run_summary_names_no_training_logs_when_the_run_wrote_none(tmp_path):
    """--tensorboard=False: the training run has no tensorboard/ directory, and no line names it."""
    run_dir = tmp_path / "Trainer" / "model_run" / "3"
    run_dir.mkdir(parents=True)
    _store_with(str(tmp_path / "metadata.sqlite"), [("ModelRun", str(run_dir), {})])
    summary = metadata.run_summary(str(tmp_path / "metadata.sqlite")).splitlines()
    assert not [line for line in summary if "tensorboard" in line]
    assert f"sample: {SAMPLE} --from={run_dir}" in summary


def test_the_sample_command_takes_the_runs_bpe_files_when_it_tokenized_with_gpt2(tmp_path):
    """Offline, a GPT-2 BPE model samples only with the BPE files the run was given: the summary's
    sample command passes them on (absolute); a character run's has no --bpe_dir."""
    store_path = str(tmp_path / "metadata.sqlite")
    (tmp_path / "serving_model" / "1").mkdir(parents=True)
    _store_with(store_path, [("PushedModel", str(tmp_path / "pushed"),
                              {"pushed": 1, "pushed_destination": str(tmp_path / "serving_model" / "1")})])
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = store_path
    store = metadata_store.MetadataStore(config)
    type_id = store.put_execution_type(metadata_store_pb2.ExecutionType(
        name="components.tokenize_text.component.TokenizeText"))

    def tokenized(tokenizer, bpe_dir):  # TokenizeText's parameters: one JSON settings property
        execution = metadata_store_pb2.Execution(type_id=type_id)
        execution.custom_properties["settings"].string_value = TokenizeTextSettings(
            input_pattern="notes/*.md", tokenizer=tokenizer, bpe_dir=bpe_dir or None).to_json()
        store.put_executions([execution])
        return [line for line in metadata.run_summary(store_path).splitlines() if line.startswith("sample: ")]

    bpe = os.path.relpath(tmp_path / "gpt2 bpe")
    assert tokenized("gpt2", bpe) == [f"sample: {SAMPLE} --from={tmp_path}/serving_model/1 "
                                      f"--bpe_dir='{tmp_path}/gpt2 bpe'"]
    assert tokenized("char", bpe) == [f"sample: {SAMPLE} --from={tmp_path}/serving_model/1"]
    assert tokenized("gpt2", "") == [f"sample: {SAMPLE} --from={tmp_path}/serving_model/1"]


def test_a_run_that_pushed_nothing_says_so_beside_the_last_push(tmp_path):
    """`runner.py run` names this run's push: a run whose model was not blessed pushed nothing,
    and the summary says so, naming the earlier push (the model still served), without its card."""
    import time

    store_path = str(tmp_path / "metadata.sqlite")
    earlier = str(tmp_path / "serving_model" / "1")
    os.makedirs(earlier)
    _store_with(store_path, [("PushedModel", str(tmp_path / "pushed"),
                              {"pushed": 1, "pushed_destination": earlier, "model_card": earlier + "/card.md"})])
    started = time.time() + 1  # the push above happened before this run started
    summary = metadata.run_summary(store_path, started).splitlines()
    assert f"pushed model: none this run (the last push: {earlier})" in summary
    assert not [line for line in summary if line.startswith("model card: ")]
    assert f"pushed model: {earlier}" in metadata.run_summary(store_path, started - 60).splitlines()
    assert f"pushed model: {earlier}" in metadata.run_summary(store_path).splitlines()


def test_an_unpushed_run_samples_from_the_trainers_saved_model(tmp_path):
    """Not blessed, nothing pushed: the sample command takes the Trainer's SavedModel, the model
    evaluated, which every completed Trainer writes (its training run may hold no checkpoint: a run
    shorter than eval_interval saves none, as nanoGPT's)."""
    run_dir = tmp_path / "Trainer" / "model_run" / "6"
    run_dir.mkdir(parents=True)
    model_dir = tmp_path / "Trainer" / "model" / "6"
    _store_with(str(tmp_path / "metadata.sqlite"), [("ModelRun", str(run_dir), {}), ("Model", str(model_dir), {}),
                                                   ("ModelBlessing", str(tmp_path / "blessing"), {"blessed": 0})])
    summary = metadata.run_summary(str(tmp_path / "metadata.sqlite")).splitlines()
    assert f"sample: {SAMPLE} --from={model_dir}/Format-Serving" in summary


def test_lineage_without_a_push_is_of_the_latest_trained_model(tmp_path):
    from pipeline import lineage

    store_path = str(tmp_path / "metadata.sqlite")
    _store_with(store_path, [("Model", str(tmp_path / "Trainer" / "model" / "6"), {})])
    store = metadata.sqlite_store(store_path)
    assert lineage._find_subject(store, None).uri == str(tmp_path / "Trainer" / "model" / "6")
    empty = str(tmp_path / "empty.sqlite")
    _store_with(empty, [])
    with pytest.raises(Exception, match="no model in ML Metadata: run the pipeline until its Trainer completes"):
        lineage._find_subject(metadata.sqlite_store(empty), None)


def test_the_commands_a_run_ends_with_are_typed_as_here(tmp_path, monkeypatch):
    """After scripts/run.sh no environment is active, and the shell's `python` is another one or none
    (Debian has python3 only): the lines name the Python that ran; from another folder, runner.py's path."""
    repo = os.path.dirname(metadata.RUNNER)
    monkeypatch.chdir(repo)
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable))  # an activated environment
    assert metadata.runner_command("sample") == "python runner.py sample"
    monkeypatch.setenv("PATH", str(tmp_path))  # no python
    python = os.path.relpath(sys.executable) if not os.path.relpath(sys.executable).startswith("..") \
        else sys.executable
    assert metadata.runner_command("sample") == f"{python} runner.py sample"
    monkeypatch.chdir(tmp_path)
    assert metadata.runner_command("lineage") == f"{sys.executable} {repo}/runner.py lineage"
    monkeypatch.chdir(os.path.dirname(sys.executable))  # beside the Python: ./python, not a name the shell looks up
    assert metadata.runner_command("lineage").startswith(f"./{os.path.basename(sys.executable)} ")
