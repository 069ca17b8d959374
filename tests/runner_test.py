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
    assert result.returncode == 2 and "expected --key=value, got '--max_iters'" in result.stderr
    result = _run("train")
    assert result.returncode == 2 and "invalid choice: 'train'" in result.stderr


def test_lineage_names_a_missing_store_and_imports_nothing_heavy(tmp_path):
    result = _run("lineage", f"--output={tmp_path}")
    assert result.returncode == 1 and "HEAVY []" in result.stdout
    assert f"no ML Metadata store at {tmp_path}/metadata.sqlite" in result.stderr
    result = _run("lineage", "--grpc=localhost")
    assert result.returncode == 1 and "--grpc=localhost: expected HOST:PORT" in result.stderr


def test_help_lists_every_setting_with_presets_as_choices():
    from components.tokenize_text.settings import TokenizeTextSettings
    from model import settings
    from model.config import TrainConfig
    from pipeline.configs import PRESETS, PipelineConfig

    for command in ("run", "compile"):
        text = _run(command, "--help").stdout
        assert "{" + ",".join(PRESETS) + "}" in text
        shown = {name for cls in (TrainConfig, PipelineConfig, TokenizeTextSettings) for name in settings.fields(cls)
                 if f"--{name}=" in text}
        # all but those the command's own options set (--data, --output) or that are derived
        assert set(settings.fields(TrainConfig)) - shown <= {"out_dir", "data_dir", "tokenizer", "bpe_dir"}
        assert set(settings.fields(PipelineConfig)) - shown <= {"preset", "train_overrides", "output_dir",
                                                                "input_pattern"}
        assert "--max_iters=INT total number of training iterations (default: 600000; an integer >= 0)" \
            in " ".join(text.split())


def _mistake(tmp_path, *args, command="run"):
    """runner.py with a wrong setting: the one line it prints (status 2, nothing under --output)."""
    out = tmp_path / "out"
    where = [f"--pipeline_root={out}", "--data=gs://b/in.txt"] if command == "compile" else [f"--output={out}"]
    result = subprocess.run([sys.executable, "runner.py", command, *args, *where],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr, result.stderr
    assert not out.exists()
    return result.stderr.strip()


def test_each_kind_of_mistake_is_one_line_before_anything_runs(tmp_path, shared_data):
    data = f"--data={shared_data}/tinyshakespeare.txt"
    cases = [
        (["--learning_rate=abc"], "--learning_rate=abc: expected a number >= 0"),  # a wrong type
        (["--compile=1"], "--compile=1: expected True or False"),
        (["--max_iters=-5"], "--max_iters=-5: expected an integer >= 0"),  # out of range
        (["--batch_size=0"], "--batch_size=0: expected an integer >= 1"),
        (["--dropout=1.5"], "--dropout=1.5: expected a number in [0, 1]"),
        ([data, "--val_fraction=0"], "--val_fraction=0.0: expected a number in (0, 1) (or None)"),
        (["--n_head=3"], "--n_embd=128: must be a multiple of --n_head=3"),
        (["--init_from=gpt2", "--block_size=2048"], "--block_size=2048: init_from='gpt2' has a context of 1024"),
        (["--dtype=bf16"], "--dtype='bf16': expected one of float32, bfloat16, float16"),  # unknown names
        (["--strategy=mirror"], "--strategy='mirror': expected one of auto, default, mirrored"),
        ([data, "--tokenizer=bpe"], "--tokenizer='bpe': expected one of gpt2, char"),
        (["--preset=shakespeare_chr"], "unknown preset 'shakespeare_chr'; did you mean shakespeare_char"),
        (["--max_itres=5"], "unknown setting --max_itres; did you mean --max_iters"),
        ([f"--data={tmp_path}/no_such.txt"], f"--data={tmp_path}/no_such.txt: matches no file"),
        ([data, "--dataset_name=openwebtext"], "give --data (text files) or --dataset_name (a dataset), not both"),
        ([data, "--train_workers=2"], "--train_workers=2: multi-worker training runs on Vertex AI"),
    ]
    for args, expected in cases:
        assert expected in _mistake(tmp_path, *args), args
    assert "--eval_batch_size=0: expected an integer >= 1" in _mistake(tmp_path, "--eval_batch_size=0",
                                                                       command="compile")
