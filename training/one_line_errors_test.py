"""One line per mistake on the command lines of model/ (runner.py's own: tests/reliability_e2e_test.py):
a user error ends in one line on stderr and a non-zero exit, no traceback; --debug shows it."""

import os
import subprocess
import sys

import pytest

from serving import sample

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("option, message", [
    ("--num_samples=0", "--num_samples=0: expected an integer >= 1"),
    ("--top_p=1.5", "--top_p=1.5: expected a number in (0, 1]"),
    ("--temperature=-1.0", "--temperature=-1.0: expected a number >= 0"),
    ("--top_k=0", "--top_k=0: expected an integer >= 1")])
def test_bad_sampling_settings_are_one_line_before_any_model_loads(option, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        sample.main(["--init_from=gpt2", option])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1 and message in err


def test_a_missing_run_is_one_line_and_debug_shows_the_traceback(tmp_path):
    def sample(source, *extra):
        command = [sys.executable, "-m", "serving.sample", f"--init_from={source}", *extra]
        return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)

    result = sample(f"{tmp_path}/nowhere")  # said before TensorFlow loads
    assert result.returncode == 2 and result.stderr == (
        f"python -m serving.sample: error: init_from='{tmp_path}/nowhere': no such file or directory\n")
    result = sample(tmp_path)  # a directory that holds no model
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(
        f"python -m serving.sample: error: init_from='{tmp_path}': not a training out_dir")
    debug = sample(tmp_path, "--debug")
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "MissingFile" in debug.stderr


def test_train_names_a_bad_option_in_one_line(capsys):
    from training import train

    with pytest.raises(SystemExit) as exit_info:
        train.main(["--no_such_setting=3"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith("python -m training.train: error: ") and err.count("\n") == 1


def test_gpt2_bpe_offline_without_a_bpe_dir_says_to_pass_one(tmp_path):
    """Fault injection: no network (a proxy on a closed port) and an empty tiktoken cache."""
    env = {**os.environ, "TIKTOKEN_CACHE_DIR": str(tmp_path), "HTTPS_PROXY": "http://127.0.0.1:9",
           "HTTP_PROXY": "http://127.0.0.1:9", "NANOGPT_TFX_BPE_DIR": ""}
    code = ("from core.errors import UserError\nfrom model.tokenizer import GPT2Tokenizer\n"
            "try:\n    GPT2Tokenizer()\nexcept UserError as e:\n    print(e)\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.stdout.startswith("GPT-2 BPE: tiktoken could not fetch its gpt2 files"), result.stderr[-2000:]
    assert "pass --bpe_dir=DIR" in result.stdout and result.stdout.count("\n") == 1
