"""The command line starts without importing TensorFlow or TFX, and rejects what it does not know."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args):
    code = ("import sys, runner\n"
            "try:\n    runner.main(list(sys.argv[1:]))\nexcept SystemExit as e:\n    code = e.code\n"
            "else:\n    code = 0\n"
            "heavy = [m for m in ('tensorflow', 'tfx', 'apache_beam') if m in sys.modules]\n"
            "print('HEAVY', heavy)\nsys.exit(code)")
    return subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120)


def test_help_of_every_command_imports_nothing_heavy():
    for args in (["--help"], ["run", "--help"], ["compile", "--help"], ["lineage", "--help"], ["sample", "--help"]):
        result = _run(*args)
        assert result.returncode == 0, result.stderr
        assert "usage: runner.py" in result.stdout and "HEAVY []" in result.stdout


def test_unknown_arguments_are_rejected():
    result = _run("run", "--max_iters")
    assert result.returncode == 2 and "unrecognized arguments: --max_iters" in result.stderr
    result = _run("train")
    assert result.returncode == 2 and "invalid choice: 'train'" in result.stderr


def test_lineage_names_a_missing_store_and_imports_nothing_heavy(tmp_path):
    result = _run("lineage", f"--output={tmp_path}")
    assert result.returncode == 1 and "HEAVY []" in result.stdout
    assert f"no ML Metadata store at {tmp_path}/metadata.sqlite" in result.stderr
    result = _run("lineage", "--grpc=localhost")
    assert result.returncode == 1 and "--grpc=localhost: expected HOST:PORT" in result.stderr


def test_run_spec_names_a_bad_spec_and_settings_it_holds(tmp_path):
    result = _run("run", f"--spec={tmp_path}/missing.yaml")
    assert result.returncode == 1 and "HEAVY []" in result.stdout
    assert f"runner.py run --spec={tmp_path}/missing.yaml: not a readable pipeline spec" in result.stderr
    (tmp_path / "other.yaml").write_text("a: 1\n")
    result = _run("run", f"--spec={tmp_path}/other.yaml")
    assert result.returncode == 1 and "not a Kubeflow Pipelines v2 spec" in result.stderr
    result = _run("run", f"--spec={tmp_path}/other.yaml", "--max_iters=3")
    assert result.returncode == 1 and "--max_iters=3: the spec holds the pipeline's settings" in result.stderr
    result = _run("run", "--until=Trainer")
    assert result.returncode == 1 and "--until go with --spec" in result.stderr
