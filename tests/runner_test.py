"""The command line starts without importing TensorFlow or TFX, and rejects what it does not know."""

import os
import subprocess
import sys

import pytest

from core.settings import SettingError

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


def test_another_python_than_the_projects_environment_is_one_line():
    # -S: this Python without its site-packages, as a system Python without the .venv looks
    for command, missing in ((["runner.py", "run"], "tensorflow, tfx, apache_beam"),
                             (["-m", "training.train"], "tensorflow"), (["-m", "serving.sample"], "tensorflow")):
        result = subprocess.run([sys.executable, "-S", *command], cwd=REPO, capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 2, result.stderr
        assert result.stderr.endswith(f") has no {missing}: not the project's environment, which `bash scripts/"
                                      f"setup.sh` makes in .venv; `source .venv/bin/activate` first, or run "
                                      f".venv/bin/python\n") and result.stderr.count("\n") == 1, result.stderr


def test_unknown_arguments_are_rejected():
    result = _run("run", "--max_iters")
    assert result.returncode == 2 and "expected --key=value, got '--max_iters' (--max_iters=VALUE: one argument, " \
                                      "with no space)\n" in result.stderr
    result = _run("run", "--max_iters", "50")  # the value taken for a config file
    assert result.returncode == 2 and result.stderr.endswith(
        "config file 50: No such file or directory (a setting is one argument, --key=value, with no space)\n")
    result = _run("train")
    assert result.returncode == 2 and "invalid choice: 'train'" in result.stderr


def test_lineage_names_a_missing_store_and_imports_nothing_heavy(tmp_path):
    result = _run("lineage", f"--output={tmp_path}")
    assert result.returncode == 2 and "HEAVY []" in result.stdout
    assert result.stderr == f"runner.py lineage: error: no ML Metadata store at {tmp_path}/metadata.sqlite; " \
                            f"run `runner.py run` first, or name the output directory with --output\n"
    record = tmp_path / "pipeline_root" / "nanogpt-tfx" / "run-1" / "kfp_local_run.json"  # `run --spec` ran here
    record.parent.mkdir(parents=True)
    record.write_text("{}")
    result = _run("lineage", f"--output={tmp_path}")
    assert result.returncode == 2 and "HEAVY []" in result.stdout
    assert result.stderr == f"runner.py lineage: error: no ML Metadata store at {tmp_path}/metadata.sqlite: the " \
                            f"runs of a compiled spec here (`runner.py run --spec`) keep none, their records stand " \
                            f"in (the latest: {record}); on a cluster, --grpc=HOST:PORT reads its store\n"
    # --output=~/...: a shell does not expand the ~ after `=`; the command does, as for every path
    result = subprocess.run([sys.executable, "runner.py", "lineage", "--output=~/runs"], cwd=REPO, capture_output=True,
                            text=True, timeout=60, env={**os.environ, "HOME": str(tmp_path)})
    assert result.returncode == 2 and f"no ML Metadata store at {tmp_path}/runs/metadata.sqlite" in result.stderr
    result = _run("lineage", "--grpc=localhost")
    assert result.returncode == 2 and "--grpc=localhost: expected HOST:PORT" in result.stderr


def test_help_lists_every_setting_with_presets_as_choices():
    from core import settings
    from pipeline.configs import PARTS, PRESETS, SET_BY_THE_PIPELINE

    for command in ("run", "compile"):
        text = _run(command, "--help").stdout
        assert "{" + ",".join(PRESETS) + "}" in text
        for part, cls in PARTS.items():
            shown = {name for name in settings.fields(cls) if f"--{name}=" in text}
            # all but those the command's own options set (--preset, --data, --output) or that are derived
            assert set(settings.fields(cls)) - shown <= {*SET_BY_THE_PIPELINE, "preset", "output_dir",
                                                         "input_pattern"}, part
        assert "--max_iters=INT total number of training iterations (default: 600000; an integer >= 0)" \
            in " ".join(text.split())


def _mistake(tmp_path, *args, command="run", env=None):
    """runner.py with a wrong setting: the one line it prints (status 2, nothing under --output)."""
    out = tmp_path / "out"
    where = [f"--pipeline_root={out}", "--data=gs://b/in.txt"] if command == "compile" else [f"--output={out}"]
    result = subprocess.run([sys.executable, "runner.py", command, *args, *where],
                            cwd=REPO, capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})})
    assert result.returncode == 2, result
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr, result.stderr
    assert not out.exists()
    return result.stderr.strip()


def test_each_kind_of_mistake_is_one_line_before_anything_runs(tmp_path, shared_data):
    data = f"--data={shared_data}/tinyshakespeare.txt"
    not_a_schema = tmp_path / "schema.pbtxt"
    not_a_schema.write_text("First Citizen:\n")
    cases = [
        (["--learning_rate=abc"], "--learning_rate=abc: expected a number >= 0"),  # a wrong type
        (["--compile=1"], "--compile=1: expected True or False"),
        (["--max_iters=-5"], "--max_iters=-5: expected an integer >= 0"),  # out of range
        (["--batch_size=0"], "--batch_size=0: expected an integer >= 1"),
        (["--dropout=1.5"], "--dropout=1.5: expected a number in [0, 1)"),
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
        ([data, "--statistics=False"], "--statistics=False leaves the data nothing to be validated on: add "
                                       "--skip_validation=True"),
        ([data, f"--schema_file={tmp_path}/none.pbtxt"], f"--schema_file={tmp_path}/none.pbtxt: No such file"),
        ([data, f"--schema_file={not_a_schema}"], f"--schema_file={not_a_schema}: not a schema in text format"),
        ([data, "--dataset_revision=4b1aa1a3"], "--dataset_revision=4b1aa1a3: goes with --dataset_name"),
        ([data, "--checkpoint_minutes=-1"], "--checkpoint_minutes=-1.0: expected a number >= 0"),
        ([data, "--continue_interrupted=maybe"], "--continue_interrupted=maybe: expected True or False"),
        # a step whose attention alone is more than the machine's memory, before the data is tokenized
        ([data, "--block_size=100000"], "--block_size=100000 with --batch_size=12 cannot train on this machine: the "
                                        "attention probabilities a step keeps for its backward pass"),
    ]
    for args, expected in cases:
        assert expected in _mistake(tmp_path, *args), args
    assert "--eval_batch_size=0: expected an integer >= 1" in _mistake(tmp_path, "--eval_batch_size=0",
                                                                       command="compile")
    # the spec file, before the half minute of its compilation
    assert f"--spec={tmp_path}/check.txt: a spec is YAML (.yaml, .yml) or JSON (.json)" in _mistake(
        tmp_path, f"--spec={tmp_path}/check.txt", command="compile")
    assert f"--spec={not_a_schema}/check.yaml: {not_a_schema} is a file, not a directory" in _mistake(
        tmp_path, f"--spec={not_a_schema}/check.yaml", command="compile")
    nested = tmp_path / "nested"  # files in subfolders alone: DIR/** reads them (and is taken up front)
    (nested / "books").mkdir(parents=True)
    (nested / "books" / "a.txt").write_text("a book")
    assert f"--data={nested}: a folder without files of its own (1 subfolder(s): --data='{nested}/**' reads the " \
           f"files in them)" in _mistake(tmp_path, f"--data={nested}")
    from pipeline.configs import check_input_files

    check_input_files(f"{nested}/**")  # (a glob without recursion matched the subfolder alone: refused)
    # without --data: the setting named, not Tiny Shakespeare's download (offline here, or a missing copy)
    missing = {"NANOGPT_TFX_SHAKESPEARE": str(tmp_path / "missing.txt")}
    assert f"--data={tmp_path}/no_such.txt: matches no file" in _mistake(tmp_path, "--data=~/no_such.txt",
                                                                          env={"HOME": str(tmp_path)})
    assert f"--bpe_dir={tmp_path}/bpe: " in _mistake(tmp_path, data, "--bpe_dir=~/bpe", env={"HOME": str(tmp_path)})
    assert "--val_fraction=0.0: expected a number in (0, 1)" in _mistake(tmp_path, "--val_fraction=0", env=missing)
    assert "--statistics=False leaves" in _mistake(tmp_path, "--statistics=False", env=missing)
    assert f"Tiny Shakespeare: {tmp_path}/missing.txt does not exist" in _mistake(tmp_path, env=missing)


def test_checkpoints_files_and_the_evaluation_are_checked_before_anything_runs(tmp_path, shared_data):
    """What used to be found inside a component (a missing baseline: after the whole training), and,
    offline, what this machine lacks (no network here: requests go to a closed local port)."""
    data = f"--data={shared_data}/tinyshakespeare.txt"
    (tmp_path / "empty").mkdir()
    cases = [
        ([data, "--baselines=/nonexistent"], "--baselines=/nonexistent: neither a released GPT-2 model (gpt2, "
                                             "gpt2-medium, gpt2-large, gpt2-xl) nor a directory holding a Hugging "
                                             "Face GPT-2 checkpoint (no such directory)"),
        ([data, f"--baselines={tmp_path}/empty"], f"--baselines={tmp_path}/empty: {tmp_path}/empty is not a Hugging "
                                                  f"Face checkpoint: it has no config.json"),
        ([data, "--baselines=gpt2", "--gate_baseline=gpt-2"], "--gate_baseline=gpt-2: not one of --baselines (gpt2)"),
        ([data, "--eval_block_size=128"], "--eval_block_size=128: longer than the model's context (--block_size=64)"),
        ([data, "--init_from=/no/such/gpt2"], "--init_from=/no/such/gpt2: neither a released GPT-2 model"),
        ([data, "--init_from=resume"], "--init_from=resume: the pipeline resumes the latest model's training with "
                                       "--resume=True"),
        ([data, f"--bpe_dir={tmp_path}/empty"], f"--bpe_dir={tmp_path}/empty: GPT-2 BPE directory "
                                                f"'{tmp_path}/empty' lacks vocab.bpe"),
        (["--dataset_name=corpus.jsonl"], "--dataset_name=corpus.jsonl: matches no file"),
        ([data, "--resume=True"], f"--resume=True: no model in {tmp_path}/out/metadata.sqlite to continue from"),
        ([data, "--preset=shakespeare"], "--tokenizer=gpt2 (the preset shakespeare) needs GPT-2's BPE files: GPT-2 "
                                         "BPE: tiktoken could not fetch its gpt2 files"),
        ([data, "--baselines=gpt2"], "--baselines=gpt2 (a GPT-2 baseline reads the val text in GPT-2 BPE tokens) "
                                     "needs GPT-2's BPE files"),
        ([data, "--baselines=gpt2", f"--bpe_dir={shared_data}/gpt2_bpe"],
         "--baselines=gpt2: gpt2 is not in the Hugging Face hub's cache, and the hub (https://huggingface.co) cannot "
         "be reached (ProxyError); offline, name a local Hugging Face GPT-2 directory instead"),
    ]
    offline = {"HTTPS_PROXY": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9", "HF_HOME": str(tmp_path),
               "TIKTOKEN_CACHE_DIR": str(tmp_path / "empty"), "NANOGPT_TFX_BPE_DIR": ""}
    for args, expected in cases:
        assert expected in _mistake(tmp_path, *args, env=offline), args


def test_init_from_a_model_of_other_tokens_is_refused_before_the_data_is_tokenized(tmp_path, shared_data):
    """A character model's Format-HF on GPT-2 BPE data, GPT-2 weights on character data: its ids would read
    as other text, found before anything runs (not by the Trainer, after the tokenization)."""
    from model.model import GPT, GPTConfig
    from model.presets import GPT2_VOCAB_SIZE

    char_model, gpt2_model = tmp_path / "char_model", tmp_path / "gpt2_model"
    GPT(GPTConfig(n_layer=1, n_head=1, n_embd=8, block_size=64, vocab_size=3), seed=0).save_pretrained(
        str(char_model), {"kind": "char", "chars": ["a", "b", "\n"]})
    GPT(GPTConfig(n_layer=1, n_head=1, n_embd=8, block_size=64, vocab_size=GPT2_VOCAB_SIZE), seed=0).save_pretrained(
        str(gpt2_model))
    data = f"--data={shared_data}/tinyshakespeare.txt"
    said = _mistake(tmp_path, data, "--tokenizer=gpt2", f"--bpe_dir={shared_data}/gpt2_bpe",
                    f"--init_from={char_model}", "--block_size=64")
    assert said == (f"runner.py run: error: --init_from={char_model}: a model of 3 characters, and --tokenizer=gpt2 "
                    f"makes other tokens: its ids would read as other text")
    assert _mistake(tmp_path, data, "--tokenizer=char", f"--init_from={gpt2_model}", "--block_size=64") == (
        f"runner.py run: error: --init_from={gpt2_model}: a model of GPT-2 BPE, and --tokenizer=char makes other "
        f"tokens: its ids would read as other text")


def test_resume_says_that_init_from_is_not_read(tmp_path, shared_data, capsys, pipeline_configuration):
    """--resume=True goes on from the latest model's checkpoint: an --init_from beside it (given, or a preset's)
    is said to be unused, not ignored without a word."""
    config = pipeline_configuration(f"--data={shared_data}/tinyshakespeare.txt", "--resume=True", "--init_from=gpt2",
                                    "--block_size=64", f"--output={tmp_path / 'out'}")
    # nor its shape taken, nor its tokens (GPT-2 BPE) held against the data's (characters)
    assert config.pipeline.resume and config.train.init_from == "gpt2" and config.train.n_layer == 4
    assert ("--resume=True: the training goes on from the latest model's checkpoint; init_from=gpt2 is where a new "
            "training would start, and is not read\n") in capsys.readouterr().out


def test_sample_from_nothing_names_the_option_as_typed(tmp_path):
    result = subprocess.run([sys.executable, "runner.py", "sample", f"--from={tmp_path}/nowhere"], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stderr == (
        f"runner.py sample: error: --from={tmp_path}/nowhere: no such file or directory (a pushed model, an output "
        f"directory, a training run, a Hugging Face checkpoint, or one of gpt2, gpt2-medium, gpt2-large, gpt2-xl)\n")


def test_an_output_that_is_a_file_is_one_line(tmp_path, shared_data):
    (tmp_path / "notes.txt").write_text("the user's file\n")
    for output in (tmp_path / "notes.txt", tmp_path / "notes.txt" / "run"):
        result = subprocess.run([sys.executable, "runner.py", "run", f"--data={shared_data}/tinyshakespeare.txt",
                                 f"--output={output}"], cwd=REPO, capture_output=True, text=True, timeout=60)
        assert result.returncode == 2 and result.stderr == (
            f"runner.py run: error: --output={output}: {tmp_path / 'notes.txt'} is a file, not a directory\n")
    assert (tmp_path / "notes.txt").read_text() == "the user's file\n"


def test_resume_with_another_model_shape_is_refused_before_anything_runs(tmp_path, shared_data):
    """The latest model's training run (ML Metadata's Model, its run_dir.txt, the run's
    train_config.json) had n_layer=4: --resume=True --n_layer=2 is one line, nothing runs."""
    import json

    from ml_metadata import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    out, model, run = tmp_path / "out", tmp_path / "model", tmp_path / "run"
    for directory in (out, model, run):
        directory.mkdir()
    (run / "train_config.json").write_text(json.dumps({"n_layer": 4, "n_head": 4, "n_embd": 128}))
    (model / "run_dir.txt").write_text(str(run))
    connection = metadata_store_pb2.ConnectionConfig()
    connection.sqlite.filename_uri = str(out / "metadata.sqlite")
    store = metadata_store.MetadataStore(connection)
    type_id = store.put_artifact_type(metadata_store_pb2.ArtifactType(name="Model"))
    store.put_artifacts([metadata_store_pb2.Artifact(type_id=type_id, uri=str(model),
                                                     state=metadata_store_pb2.Artifact.LIVE)])
    result = subprocess.run([sys.executable, "runner.py", "run", f"--data={shared_data}/tinyshakespeare.txt",
                             f"--output={out}", "--resume=True", "--n_layer=2", "--n_head=2"],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stderr == (
        f"runner.py run: error: --resume=True: the checkpoint in {run} has n_layer=4, n_head=4, the config says "
        f"n_layer=2, n_head=2: resume with --n_layer=4 --n_head=4, or train anew (init_from=scratch, or resume=False "
        f"in the pipeline)\n")
    assert sorted(os.listdir(out)) == ["metadata.sqlite"]
    # its last evaluation's checkpoint at iteration 2000, the preset's max_iters: nothing would train
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "checkpoint").write_text('model_checkpoint_path: "ckpt-2000"\n'
                                                   'all_model_checkpoint_paths: "ckpt-2000"\n')
    result = subprocess.run([sys.executable, "runner.py", "run", f"--data={shared_data}/tinyshakespeare.txt",
                             f"--output={out}", "--resume=True"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stderr == (
        f"runner.py run: error: --resume=True: the latest model ({model}) is at iteration 2000, and max_iters=2000 is "
        f"not past it: nothing would train; raise --max_iters\n")


NANOGPT_CONFIGS = ("train_shakespeare_char", "train_gpt2", "finetune_shakespeare", "eval_gpt2", "eval_gpt2_medium",
                   "eval_gpt2_large", "eval_gpt2_xl")


def _copies_of_nanogpt_configs(shared_data, tmp_path):
    import shutil

    copies = {}
    for name in NANOGPT_CONFIGS:
        copies[name] = str(tmp_path / f"{name}.py")
        shutil.copy(os.path.join(shared_data, "nanogpt_config", f"{name}.py"), copies[name])
    return copies


def test_nanogpt_config_files_load_unchanged(tmp_path, shared_data, monkeypatch, capsys, pipeline_configuration):
    _configuration = pipeline_configuration
    from training.config import command_line_config

    shared_data = os.path.abspath(shared_data)
    monkeypatch.setenv("NANOGPT_TFX_SHAKESPEARE", os.path.join(shared_data, "tinyshakespeare.txt"))
    files = _copies_of_nanogpt_configs(shared_data, tmp_path)
    out = f"--output={tmp_path / 'out'}"

    config = _configuration(files["train_shakespeare_char"], "--batch_size=32", out)
    assert (config.preset, config.data.tokenizer, config.data.input_pattern) == \
        ("shakespeare_char", "char", os.path.join(shared_data, "tinyshakespeare.txt"))
    train = config.train  # the Trainer's custom_config: in ML Metadata, shown by `runner.py lineage`
    assert (train.n_layer, train.n_embd, train.dropout, train.block_size, train.max_iters) == (6, 384, 0.2, 256, 5000)
    assert train.batch_size == 32  # the later argument wins
    printed = capsys.readouterr().out
    assert "train_shakespeare_char.py: dataset='shakespeare_char': the data of the preset shakespeare_char" in printed
    assert "wandb_log=False" in printed and "ignored: Weights & Biases logging is not built in" in printed

    config = _configuration(files["finetune_shakespeare"], out)
    assert (config.preset, config.data.tokenizer, config.train.init_from) == ("shakespeare", "gpt2", "gpt2-xl")
    # the model's shape is the checkpoint's, as nanoGPT takes it, and so it is recorded (lineage, train_config.json)
    assert (config.train.n_layer, config.train.n_head, config.train.n_embd, config.train.bias) == (48, 25, 1600, True)
    printed = capsys.readouterr().out
    assert ("init_from=gpt2-xl: the model's shape is the checkpoint's, as nanoGPT takes it: n_layer=48 (not 4), "
            "n_head=25 (not 4), n_embd=1600 (not 128), bias=True (not False)\n") in printed
    assert "finetune_shakespeare.py:1: `import time` not run" in printed
    assert "finetune_shakespeare.py:8: `wandb_run_name = 'ft-' + str(time.time())` not run" in printed

    config = _configuration(files["train_gpt2"], out)  # no dataset: nanoGPT's default, OpenWebText
    assert (config.preset, config.data.dataset_name, config.train.gradient_accumulation_steps) == \
        ("owt_gpt2_124m", "openwebtext", 40)
    # --data replaces the text alone: the dataset's preset still gives the tokens and the model
    config = _configuration(files["train_gpt2"], f"--data={shared_data}/tinyshakespeare.txt", out)
    assert (config.preset, config.data.tokenizer, config.train.n_layer, config.data.dataset_name) == \
        ("owt_gpt2_124m", "gpt2", 12, None)
    assert "the tokens and model of the preset owt_gpt2_124m, on --data" in capsys.readouterr().out
    for size in ("gpt2", "gpt2_medium", "gpt2_large", "gpt2_xl"):
        config = _configuration(files[f"eval_{size}"], f"--data={shared_data}/tinyshakespeare.txt", out)
        assert config.train.init_from == size.replace("_", "-") and config.train.eval_only
        assert config.data.input_pattern and not config.data.dataset_name  # --data replaces the preset's dataset
        assert config.data.tokenizer == "gpt2"  # GPT-2's own tokens, not the default preset's characters
    config = _configuration(files["finetune_shakespeare"], f"--data={shared_data}/tinyshakespeare.txt", out)
    assert (config.preset, config.data.tokenizer, config.train.init_from) == ("shakespeare", "gpt2", "gpt2-xl")
    config = _configuration(files["train_gpt2"], "--preset=shakespeare_char", out)  # --preset wins
    assert (config.preset, config.data.tokenizer) == ("shakespeare_char", "char")

    cfg = command_line_config([files["train_shakespeare_char"], "--max_iters=3"], log=lambda line: None)
    assert (cfg.n_layer, cfg.tokenizer, cfg.max_iters, cfg.text_file) == \
        (6, "char", 3, os.path.join(shared_data, "tinyshakespeare.txt"))
    cfg = command_line_config([files["eval_gpt2_xl"], f"--data_dir={tmp_path}"], log=lambda line: None)
    assert (cfg.init_from, cfg.eval_only, cfg.batch_size, cfg.eval_iters) == ("gpt2-xl", True, 8, 500)
    with pytest.raises(SettingError, match=rf"^no training data: .*; `runner.py run {files['eval_gpt2_xl']}` "
                                           rf"tokenizes OpenWebText, its dataset$"):  # (nanoGPT's default)
        command_line_config([files["eval_gpt2_xl"]], log=lambda line: None)
    # a text file of one's own with nanoGPT's character config: characters, as the config's dataset says
    (tmp_path / "mine.txt").write_text("my own words\n")
    cfg = command_line_config([files["train_shakespeare_char"], f"--text_file={tmp_path}/mine.txt"],
                              log=lambda line: None)
    assert (cfg.tokenizer, cfg.text_file) == ("char", f"{tmp_path}/mine.txt")
    owt = tmp_path / "owt.py"  # OpenWebText's tokens on a text file of one's own; without one, named
    owt.write_text("dataset = 'openwebtext'\nn_layer = 2\n")
    cfg = command_line_config([str(owt), f"--text_file={tmp_path}/mine.txt"], log=lambda line: None)
    assert (cfg.tokenizer, cfg.n_layer) == ("gpt2", 2)
    with pytest.raises(SettingError, match=r"dataset='openwebtext': training.train reads token shards or nanoGPT's "
                                           r"prepared data \(--data_dir; none in data/openwebtext/\)"):
        command_line_config([str(owt)], log=lambda line: None)
    monkeypatch.setenv("NANOGPT_TFX_SHAKESPEARE", str(tmp_path / "missing.txt"))  # a wrong setting named before it
    with pytest.raises(SettingError, match="^--batch_size=0: expected an integer >= 1$"):
        command_line_config([files["train_shakespeare_char"], "--batch_size=0"], log=lambda line: None)
    # run where nanoGPT's prepare.py wrote the dataset (data/<dataset>/train.bin), the config reads it, as nanoGPT's
    for dataset, config in (("openwebtext", str(owt)), ("shakespeare_char", files["train_shakespeare_char"])):
        os.makedirs(tmp_path / "data" / dataset)
        (tmp_path / "data" / dataset / "train.bin").write_bytes(b"\x00\x00")
        monkeypatch.chdir(tmp_path)
        lines = []
        cfg = command_line_config([config], log=lines.append)
        assert (cfg.data_dir, cfg.text_file) == (f"data/{dataset}", "")
        assert lines[-1] == f"{config}: dataset={dataset!r}: nanoGPT's prepared data in data/{dataset}/ (--data_dir)"


def test_a_config_file_is_read_not_run(tmp_path):
    marker = tmp_path / "ran"
    bad = tmp_path / "bad.py"
    bad.write_text(f"max_iters = 10\nn_layer = open({str(marker)!r}, 'w') and 2\n")
    assert "bad.py:2: `n_layer = open(" in _mistake(tmp_path, str(bad))
    assert not marker.exists()
    bad.write_text("max_iters = 10\nmax_itres = 5\n")
    assert "bad.py:2: unknown setting --max_itres; did you mean --max_iters" in _mistake(tmp_path, str(bad))
    bad.write_text("max_iters = (\n")
    assert "bad.py:1: not Python" in _mistake(tmp_path, str(bad))
    bad.write_text("device = 'cuda'\nmax_iters = 'many'\n")
    assert "--max_iters='many': expected an integer >= 0" in _mistake(tmp_path, str(bad))
    result = subprocess.run([sys.executable, "-m", "training.train", str(bad), "--wandb_log=True"], cwd=REPO,
                            capture_output=True, text=True, timeout=60)
    assert "--wandb_log=True ignored: Weights & Biases logging is not built in" in result.stdout
    assert result.returncode == 2 and "device='cuda' ignored: TensorFlow places the work itself" in result.stdout
    assert result.stderr.splitlines() == ["python -m training.train: error: --max_iters='many': expected an integer >= 0"]


def test_train_and_sample_help_list_their_settings_without_tensorflow():
    for module, expected in (("training.train", "--gradient_accumulation_steps=INT"), ("serving.sample", "--top_k=INT|NONE")):
        # (python -X importtime names every module the command imported, on stderr)
        result = subprocess.run([sys.executable, "-X", "importtime", "-m", module, "--help"], cwd=REPO,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr[-3000:]
        assert f"usage: python -m {module}" in result.stdout and expected in result.stdout
        imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()
                    if line.startswith("import time:")}
        assert "core.settings" in imported and not imported & {"tensorflow", "tfx"}


def test_run_spec_names_a_bad_spec_and_settings_it_holds(tmp_path):
    result = _run("run", f"--spec={tmp_path}/missing.yaml")
    assert result.returncode == 2 and "HEAVY []" in result.stdout
    assert f"runner.py run: error: --spec={tmp_path}/missing.yaml: not a readable pipeline spec" in result.stderr
    (tmp_path / "other.yaml").write_text("a: 1\n")
    result = _run("run", f"--spec={tmp_path}/other.yaml")
    assert result.returncode == 2 and "not a Kubeflow Pipelines v2 spec" in result.stderr
    result = _run("run", f"--spec={tmp_path}/other.yaml", "--max_iters=3")
    assert result.returncode == 2 and "--max_iters=3: the spec holds the pipeline's settings" in result.stderr
    result = _run("run", "--until=Trainer")
    assert result.returncode == 2 and "--until go with --spec" in result.stderr
    result = _run("run", f"--spec={tmp_path}/other.yaml", f"--pipeline_root={tmp_path}/other.yaml/root")
    assert result.returncode == 2 and "HEAVY []" in result.stdout
    assert f"--pipeline_root={tmp_path}/other.yaml/root: {tmp_path}/other.yaml is a file, not a directory" \
        in result.stderr
