"""The data checked before it is trained on, end to end, in char_run's output (conftest.py): a
curated schema that stops the run, a corpus unlike the last blessed model's data stopped at the gate
and accepted; none of it leaves a model of other data blessed for the tests that follow."""

import os

from test_helpers import pipeline_runs
from test_helpers.pipeline_runs import TINY_RUN


def _run_command(config, data, *settings):
    """`runner.py run` on `data` into config's output, tiny training; its exit status and stderr."""
    import runner

    try:
        runner.main(["run", f"--data={data}", f"--output={config.output_dir}", "--val_loss_threshold=3.5",
                     *(f"--{k}={v}" for k, v in {**TINY_RUN, "max_iters": 10}.items()), *settings])
    except SystemExit as e:
        return e.code
    return 0


def _stopped(config, before, capsys, code):
    """The one line a run stopped at the AnomalyGate printed, after it had checked the data; nothing
    was trained (states of the executions not in before)."""
    from ml_metadata.proto import metadata_store_pb2

    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("runner.py run: error: data anomalies, nothing "
                                                                 "trained (report: "), err
    states = pipeline_runs.component_states(config, exclude=before)
    assert states["DataValidator"] == metadata_store_pb2.Execution.COMPLETE
    assert states["AnomalyGate"] == metadata_store_pb2.Execution.FAILED
    assert not {"Transform", "Trainer", "LMEvaluator", "Pusher"} & set(states)
    report = err.split("(report: ")[1].split("): ")[0]
    assert os.path.isfile(report) and report.startswith(config.pipeline_root)
    return err.strip()


def test_a_curated_schema_stops_the_run_and_skip_validation_runs_without_the_checks(char_run, tmp_path, capsys):
    """SchemaGen's schema, curated to allow documents of at most 1,000 characters and pinned with
    --schema_file (ImportSchemaGen): char_run's corpus is stopped; --skip_validation=True runs the
    pipeline without the checks (the rest from the cache)."""
    from ml_metadata.proto import metadata_store_pb2

    with open(os.path.join(pipeline_runs.output_of(char_run, "SchemaGen", "schema", first=True), "schema.pbtxt")) as f:
        curated = tmp_path / "schema.pbtxt"
        curated.write_text(f.read().replace('name: "num_characters"\n  type: INT\n', 'name: "num_characters"\n'
                                            '  type: INT\n  int_domain {\n    max: 1000\n  }\n'))
    before = pipeline_runs.execution_ids(char_run)
    line = _stopped(char_run, before, capsys, _run_command(char_run, char_run.data.input_pattern,
                                                           f"--schema_file={curated}"))
    assert "num_characters (train): Out-of-range values: Unexpectedly large value: " in line
    pinned = pipeline_runs.output_of(char_run, "ImportDataSchema", "schema", first=True)
    with open(os.path.join(pinned, "schema.pbtxt")) as f:  # TFX's ImportSchemaGen copied it
        assert f.read() == curated.read_text()

    before = pipeline_runs.execution_ids(char_run)
    assert _run_command(char_run, char_run.data.input_pattern, f"--schema_file={curated}", "--skip_validation=True") == 0
    states = pipeline_runs.component_states(char_run, exclude=before)
    assert not {"SchemaGen", "DataValidator", "AnomalyGate"} & set(states)
    assert states["Trainer"] in (metadata_store_pb2.Execution.COMPLETE, metadata_store_pb2.Execution.CACHED)


def test_a_run_on_unlike_data_stops_before_the_trainer_and_accept_anomalies_trains_on_it(char_run, tmp_path,
                                                                                        capsys):
    """A file of numbers where Shakespeare was: the run stops at the gate with one line naming the new
    characters, nothing trained or pushed; edited in place, it is tokenized and checked again;
    --accept_anomalies=True prints them and trains."""
    from ml_metadata.proto import metadata_store_pb2

    numbers = tmp_path / "numbers.txt"
    numbers.write_text("\n".join(" ".join(str((i * 7919 + j * 104729) % 100003) for j in range(8))
                                 for i in range(600)), encoding="utf-8")
    pushed, before = pipeline_runs.pushed_versions(char_run), pipeline_runs.execution_ids(char_run)
    line = _stopped(char_run, before, capsys, _run_command(char_run, numbers))
    assert "new characters '0', '1', '2', '3', '4', '5', '6', '7', '8', '9' not in the vocabulary of the last " \
           "blessed model, model " in line and "/Trainer/model/" in line and "(and 1 more)" in line
    assert pipeline_runs.pushed_versions(char_run) == pushed

    # the file edited in place, the same command: its tokens made again, not the last run's from the cache
    numbers.write_text("\n".join(" ".join(str(i * j) for j in range(8)) for i in range(500)), encoding="utf-8")
    before = pipeline_runs.execution_ids(char_run)
    _stopped(char_run, before, capsys, _run_command(char_run, numbers))
    assert pipeline_runs.component_states(char_run, exclude=before)["TokenizeText"] == \
        metadata_store_pb2.Execution.COMPLETE

    before = pipeline_runs.execution_ids(char_run)
    # trained, not blessed: the last blessed model stays one of char_run's data, for the other tests
    assert _run_command(char_run, numbers, "--accept_anomalies=True", "--val_loss_threshold=0.01") == 0
    assert "data anomalies accepted (--accept_anomalies=True): new characters '0'" in capsys.readouterr().out
    states = pipeline_runs.component_states(char_run, exclude=before)
    assert states["DataValidator"] == metadata_store_pb2.Execution.CACHED  # the same data, the same checks
    assert states["AnomalyGate"] == states["Trainer"] == metadata_store_pb2.Execution.COMPLETE
