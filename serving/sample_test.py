"""sample.py: models and their tokenizers from a training run and from a Hugging Face checkpoint."""

import dataclasses
import json
import os

import numpy as np
import pytest

from core.errors import UsageError
from model import GPT, GPTConfig
from training.config import CHECKPOINT_DIR
from serving.sample import SEPARATOR, load_for_sampling, main, parse_args, sample, sample_tokens
from model.tokenizer import GPT2Tokenizer, CharTokenizer
from training.train import Trainer


@pytest.fixture(scope="module")
def run_dir(train_char_model):
    """A real (tiny) training run on characters of Shakespeare, with its checkpoints."""
    return train_char_model(20000).cfg


def checkpoint_weights(cfg):
    """The weights of the run's latest checkpoint, as the training engine resumes them."""
    resumed = Trainer(dataclasses.replace(cfg, init_from="resume", eval_only=True), log=lambda *_: None)
    assert int(resumed.iter_num.numpy()) == cfg.max_iters
    return {k: v.numpy() for k, v in resumed.model.named_variables().items()}


def test_a_run_is_restored_with_its_own_tokenizer(run_dir):
    model, tokenizer = load_for_sampling(run_dir.out_dir)
    assert isinstance(tokenizer, CharTokenizer) and model.config.vocab_size == tokenizer.vocab_size
    saved = checkpoint_weights(run_dir)
    for name, variable in model.named_variables().items():
        np.testing.assert_array_equal(variable.numpy(), saved[name])
    kw = dict(num_samples=3, max_new_tokens=40, temperature=0.8, top_k=200, seed=1)
    texts = sample(model, tokenizer, "Citizen:", **kw)
    assert len(texts) == 3 and len(set(texts)) == 3
    assert all(t.startswith("Citizen:") and len(t) == len("Citizen:") + 40 for t in texts)
    assert set("".join(texts)) <= set(tokenizer.itos)
    assert sample(model, tokenizer, "Citizen:", **kw) == texts
    assert sample(model, tokenizer, "Citizen:", **{**kw, "seed": 2}) != texts


def test_command_line_prints_samples_like_nanogpt(run_dir, tmp_path, capsys):
    out_dir = run_dir.out_dir
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("First Citizen:\n", encoding="utf-8")
    args = [f"--start=FILE:{prompt}", "--num_samples=2", "--max_new_tokens=25", "--seed=3", "--top_k=None",
            "--compile=False"]
    main([f"--init_from={out_dir}", *args])
    printed = capsys.readouterr().out
    samples = printed.split(SEPARATOR + "\n")
    assert len(samples) == 3 and samples[2] == ""
    assert all(s.startswith("First Citizen:\n") and len(s) == len("First Citizen:\n") + 25 + 1 for s in samples[:2])
    main(["--init_from=resume", f"--out_dir={out_dir}", *args])  # nanoGPT's spelling
    assert capsys.readouterr().out == printed


def test_the_default_start_where_the_vocabulary_has_no_newline_is_a_space(capsys):
    """A corpus of one-line documents (jsonl rows) gives a vocabulary without '\\n', nanoGPT's default start:
    the sample command a run prints must still work; a prompt the user gave is still refused, and so is
    an empty one, in one line."""
    tokenizer = CharTokenizer("lore hw")
    model = GPT(GPTConfig(block_size=16, vocab_size=tokenizer.vocab_size, n_layer=1, n_head=1, n_embd=8), seed=0)
    texts = sample(model, tokenizer, num_samples=2, max_new_tokens=5, seed=1)
    assert [len(t) for t in texts] == [6, 6] and all(t.startswith(" ") for t in texts)
    assert "--start: the default '\\n' is not in the model's vocabulary; starting from ' '" in capsys.readouterr().err
    with pytest.raises(UsageError, match="character '\\\\n' is not in the model's 7-character vocabulary"):
        sample(model, tokenizer, "hello\nworld", num_samples=1, max_new_tokens=5)
    with pytest.raises(UsageError, match=r"^--start=: the prompt is empty \(generation starts from at least one "
                                         r"token\)$"):
        sample(model, tokenizer, "", num_samples=1, max_new_tokens=5)


def test_models_are_read_through_tf_io_gfile(run_dir, capsys):
    """The paths a pod sees (gs://, s3://) go through tf.io.gfile: here ram://, TensorFlow's
    in-memory file system, holding a copy of the training run and a SavedModel exported from it."""
    import tensorflow as tf

    from serving.export import export_saved_model

    remote = "ram://sample_test/out"
    for directory, _, files in tf.io.gfile.walk(run_dir.out_dir):
        target = remote + directory[len(run_dir.out_dir):]
        tf.io.gfile.makedirs(target)
        for name in files:
            tf.io.gfile.copy(os.path.join(directory, name), f"{target}/{name}", overwrite=True)
    args = ["--start=Citizen:", "--num_samples=2", "--max_new_tokens=6", "--seed=3"]
    main([f"--init_from={run_dir.out_dir}", "--compile=False", *args])
    printed = capsys.readouterr().out
    main([f"--init_from={remote}", "--compile=False", *args])
    assert capsys.readouterr().out == printed
    assert tf.train.latest_checkpoint(f"{remote}/{CHECKPOINT_DIR}").startswith("ram://")  # not the original

    model, tokenizer = load_for_sampling(remote)
    with tf.io.gfile.GFile(f"{remote}/tokenizer.json") as f:
        export_saved_model(model, "ram://sample_test/served", json.load(f), loop="graph")  # no XLA compile: paths only
    main(["--init_from=ram://sample_test/served", *args])
    samples = capsys.readouterr().out.split(SEPARATOR + "\n")[:2]
    assert all(s.startswith("Citizen:") and len(s) == len("Citizen:") + 6 + 1 for s in samples)


def test_bfloat16_weights_option(run_dir, tmp_path, capsys):
    """--weights=bfloat16 samples a checkpoint with bfloat16 matmul weights (greedy: the float32
    text, for this model); a SavedModel's weights were chosen at export, so it is refused there."""
    args = [f"--init_from={run_dir.out_dir}", "--num_samples=1", "--max_new_tokens=20", "--temperature=0",
            "--compile=False"]
    main(args)
    float32 = capsys.readouterr().out
    main([*args, "--weights=bfloat16"])
    assert capsys.readouterr().out == float32
    (tmp_path / "saved_model.pb").write_bytes(b"")
    for option, setting_name in (("--weights=bfloat16", "serving_weights"), ("--compile=False", "serving_loop"),
                                 ("--dtype=bfloat16", "serving_weights")):  # (--compile was ignored there)
        with pytest.raises(SystemExit):
            main([f"--init_from={tmp_path}", option])
        assert capsys.readouterr().err.endswith(f"error: {option}: {tmp_path} is a SavedModel, which decodes as it "
                                                f"was exported (the pipeline's {setting_name})\n")


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="num_sample"):
        parse_args(["--num_sample=3"])
    with pytest.raises(ValueError, match="temperature"):
        parse_args(["--temperature=hot"])
    with pytest.raises(ValueError, match="compile"):
        parse_args(["--compile=1"])
    assert parse_args(["--start=123", "--top_p=1"]).start == "123"
    assert parse_args(["--top_k=None"]).top_k is None
    with pytest.raises(ValueError, match="top_p"):
        parse_args(["--top_p=0"])
    with pytest.raises(FileNotFoundError, match="not a training out_dir"):
        load_for_sampling("no/such/dir")


def test_offline_a_released_gpt2_a_missing_prompt_file_and_a_prompt_not_utf8_are_one_line_each(run_dir, tmp_path):
    """No network here: the hub's requests go to a closed local port."""
    import subprocess
    import sys

    offline = {**os.environ, "HTTPS_PROXY": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
               "HF_HOME": str(tmp_path)}
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for args, line in (
            (["--init_from=gpt2"], "error: GPT-2 checkpoint 'gpt2': gpt2 is not in the Hugging Face "
             "hub's cache, and the hub (https://huggingface.co) cannot be reached (ProxyError); offline, name a "
             "local Hugging Face GPT-2 directory instead"),
            ([f"--init_from={run_dir.out_dir}", f"--start=FILE:{tmp_path}/prompt.txt"],
             f"error: --start=FILE:{tmp_path}/prompt.txt: no such file"),
            ([f"--init_from={run_dir.out_dir}", b"--start=ROMEO\xff:"],  # a shell's bytes that are not UTF-8
             "error: --start=ROMEO\\xff:: not UTF-8 text")):
        done = subprocess.run([sys.executable, "-m", "serving.sample", *args], cwd=repo, env=offline,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and done.stderr == f"python -m serving.sample: {line}\n", done.stderr


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    """A tiny GPT-2 checkpoint with nanoGPT's padded vocabulary (50304), in Hugging Face's format.
    Its final hidden state is made constant and the padded rows of wte large, so that the model
    prefers the 47 ids the tokenizer lacks: sampling must still never emit them."""
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=64, vocab_size=50304), seed=0)
    direction = np.random.default_rng(0).normal(size=16).astype(np.float32)
    model.ln_f.weight.assign(np.zeros(16, np.float32))
    model.ln_f.bias.assign(direction)
    wte = model.wte.weight.numpy()
    wte[50257:] = 10.0 * direction / np.dot(direction, direction)  # logit 10 for every padded id
    model.wte.weight.assign(wte)
    directory = str(tmp_path_factory.mktemp("hf"))
    model.save_pretrained(directory)
    return directory


def test_a_character_models_hugging_face_export_samples_its_characters(run_dir, tmp_path):
    """The pipeline's Format-HF of a character model: its table beside it (nanogpt_tokenizer.json); without
    it, one line (GPT-2 BPE was assumed: a download offline, then ids past its vocabulary)."""
    model, tokenizer = load_for_sampling(run_dir.out_dir)
    model.save_pretrained(str(tmp_path / "hf"), tokenizer.to_json())
    exported, read = load_for_sampling(str(tmp_path / "hf"))
    assert isinstance(read, CharTokenizer) and read.itos == tokenizer.itos
    kw = dict(num_samples=2, max_new_tokens=20, seed=1, jit_compile=False)
    assert sample(exported, read, "Citizen:", **kw) == sample(model, tokenizer, "Citizen:", **kw)
    os.remove(tmp_path / "hf" / "nanogpt_tokenizer.json")
    with pytest.raises(UsageError, match=rf"^{tmp_path}/hf has a vocabulary of {tokenizer.vocab_size} tokens and "
                                         rf"names none \(nanogpt_tokenizer.json, which this project's exports "
                                         rf"write\): GPT-2 BPE needs 50257$"):
        load_for_sampling(str(tmp_path / "hf"))


def test_a_gpt2_checkpoint_samples_gpt2_bpe_within_its_vocabulary(hf_dir, bpe_dir):
    from serving.generate import generate

    model, tokenizer = load_for_sampling(hf_dir, bpe_dir=bpe_dir)
    assert isinstance(tokenizer, GPT2Tokenizer) and model.config.vocab_size == 50304
    prompt = tokenizer.encode("Hello world")
    unlimited = generate(model, prompt, 20, temperature=1.0, seed=0, jit_compile=False)
    assert np.mean(unlimited.tokens[0, 2:] >= 50257) > 0.5, "the model must prefer padded ids"
    kw = dict(num_samples=2, max_new_tokens=20, temperature=1.0, top_k=None, seed=0, jit_compile=False)
    result = sample_tokens(model, tokenizer, "Hello world", **kw)
    assert result.tokens.shape == (2, 22) and result.tokens.max() < 50257
    texts = sample(model, tokenizer, "Hello world", **kw)
    assert texts == [tokenizer.decode(row) for row in result.tokens]
    assert all(t.startswith("Hello world") and len(t) > len("Hello world") for t in texts)
    assert sample(model, tokenizer, "Hello world", **kw) == texts


def test_stop_at_eot_ends_gpt2_samples(hf_dir, bpe_dir):
    model, tokenizer = load_for_sampling(hf_dir, bpe_dir=bpe_dir)
    eot = tokenizer.eot_token
    wte = model.wte.weight.numpy()
    wte[eot] = wte[50257] * 2.0  # now end-of-text is the most likely token
    model.wte.weight.assign(wte)
    kw = dict(num_samples=2, max_new_tokens=10, temperature=0.0, jit_compile=False)
    assert sample_tokens(model, tokenizer, "Hello", stop_at_eot=True, **kw).lengths.tolist() == [2, 2]
    assert sample_tokens(model, tokenizer, "Hello", **kw).lengths.tolist() == [11, 11]
    assert sample(model, tokenizer, "Hello", stop_at_eot=True, **kw) == ["Hello<|endoftext|>"] * 2


@pytest.mark.parametrize("signum", ["SIGINT", "SIGTERM"])
def test_a_stop_while_it_generates_ends_it_at_once_with_one_line(run_dir, signum):
    """Ctrl-C (or SIGTERM) in the middle of a long generation, one call into TensorFlow: the command ends
    within seconds with its stop line and the signal's status, not at the generation's end (nor by a
    crash of the interpreter's teardown with that call still running)."""
    import signal
    import subprocess
    import sys
    import time

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    command = [sys.executable, "runner.py", "sample", f"--from={run_dir.out_dir}", "--max_new_tokens=100000000",
               "--num_samples=1", "--compile=False"]
    process = subprocess.Popen(command, cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stderr.readline().startswith("sampling from ")
    time.sleep(3)  # (within the generation: a hundred million tokens)
    sent = time.monotonic()
    process.send_signal(getattr(signal, signum))
    _, err = process.communicate(timeout=60)
    how = "Ctrl-C (SIGINT)" if signum == "SIGINT" else "SIGTERM"
    assert process.returncode == 128 + getattr(signal, signum) and time.monotonic() - sent < 10, err[-3000:]
    assert err.splitlines()[-1] == f"runner.py sample: stopped by {how}"


def test_samples_too_many_for_the_memory_are_one_line_saying_what_lowers_them():
    """Every sample decodes in one batch; TensorFlow's out-of-memory error there (a real one: ten million
    samples of a small model take 16 GB before it, so a larger allocation fails here) is one line."""
    import tensorflow as tf

    from core.errors import OutOfMemory
    from serving.sample import generating

    with pytest.raises(OutOfMemory) as said, generating(10_000_000, 20), tf.device("/CPU:0"):
        tf.zeros([10_000_000, 4, 2 ** 20], tf.float32)  # 168 TB, past any address space
    assert str(said.value) == (
        "out of memory on CPU:0 (OOM when allocating tensor with shape[10000000,4,1048576] and type float) drawing "
        "--num_samples=10000000 samples of --max_new_tokens=20 in one batch: lower --num_samples (and draw more with "
        "another --seed) or --max_new_tokens")
