import pytest
from tfx.dsl.components.base import base_beam_executor

from components import transform_executor
from components.beam_executor import runs_on_direct_runner
from components.tokenize_text import executor as tokenize_executor


@pytest.mark.parametrize("beam_args, direct", [
    (["--direct_num_workers=2"], True), (["--runner=DirectRunner"], True), (["--runner=direct"], True),
    (["--runner=DataflowRunner", "--project=p"], False), (["--runner=FlinkRunner"], False)])
def test_only_direct_runner_workers_go_without_tfxs_sdist(beam_args, direct):
    assert runs_on_direct_runner(beam_args) is direct


@pytest.mark.parametrize("executor_class", [tokenize_executor.Executor, transform_executor.Executor])
def test_the_beam_executors_keep_direct_runner_arguments_as_given(executor_class, tmp_path, monkeypatch):
    """No --extra_package of a TFX sdist: none is built (TFX's base class builds one in the temporary
    directory, ~1.5 s and 42 MB, when the arguments name no dependencies)."""
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    beam_args = ["--direct_num_workers=1", "--no_pipeline_type_check"]
    executor = executor_class(base_beam_executor.BaseBeamExecutor.Context(beam_pipeline_args=beam_args))
    assert executor._beam_pipeline_args == beam_args
    assert list(tmp_path.iterdir()) == []
