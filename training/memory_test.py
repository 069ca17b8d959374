"""Running out of memory is one line naming the settings that size a training step: refused before a
step that cannot fit in the machine's memory, and TensorFlow's own out-of-memory error said so."""

import subprocess
import sys

import pytest
import tensorflow as tf

from core.errors import OutOfMemory
from model.model import GPTConfig
from training import memory
from training.config import make_config

REPO = __file__.rsplit("/training/", 1)[0]


def test_a_step_whose_attention_alone_exceeds_the_memory_is_refused_before_anything_runs():
    memory.check_fits(4, 4, 64, 12, "float32")  # the default preset: 3.1 MB kept for the backward pass
    with pytest.raises(OutOfMemory) as refused:
        memory.check_fits(4, 4, 100_000, 12, "float32")
    assert str(refused.value).startswith(
        "--block_size=100000 with --batch_size=12 cannot train on this machine: the attention probabilities a step "
        "keeps for its backward pass, n_layer x batch_size x n_head x block_size^2 = 4 x 12 x 4 x 100,000^2 = "
        "1,920,000,000,000 (7,680.0 GB in float32), are alone more than its memory (")
    assert str(refused.value).endswith("); lower --batch_size (a larger --gradient_accumulation_steps keeps the tokens "
                                       "per iteration) or --block_size, or train a smaller model")
    with pytest.raises(OutOfMemory, match=r"\(3,840.0 GB in bfloat16\)"):
        memory.check_fits(4, 4, 100_000, 12, "bfloat16")


def test_a_model_whose_weights_and_adamw_state_exceed_the_memory_is_refused_before_it_is_made():
    """Its weights, gradients and AdamW's moments (16 bytes a parameter) whatever the batch: the line names
    the model, not batch_size and block_size (which lowered nothing)."""
    gb = 2 ** 30
    memory.check_fits(12, 12, 1024, 1, "float32", n_embd=768, vocab_size=50304, memory=4 * gb)  # GPT-2 124M: 2 GB
    with pytest.raises(OutOfMemory) as refused:
        memory.check_fits(48, 50, 64, 1, "float32", n_embd=6400, vocab_size=65, memory=24 * gb)
    assert str(refused.value) == (
        "a model of n_layer=48 and n_embd=6400 cannot train on this machine: its weights, their gradients and "
        "AdamW's two moments, 16 bytes for each of its 23,594M parameters (377.5 GB) are alone more than its memory "
        "(25.8 GB); train a smaller model")
    # each fits alone, not together: both named, and what lowers the step's part
    with pytest.raises(OutOfMemory, match=r"^--block_size=1024 with --batch_size=8 cannot train on this machine: the "
                                          r"attention .* \(4\.8 GB in float32\), with its weights, .* "
                                          r"\(2\.0 GB\), are more than its memory \(6\.4 GB\); lower --batch_size"):
        memory.check_fits(12, 12, 1024, 8, "float32", n_embd=768, vocab_size=50304, memory=6 * gb)


def test_the_memory_is_the_containers_where_it_is_limited(memory_cgroup):
    """A pod's or container's limit, from the process's own memory cgroup, not the machine's memory."""
    limit = 700 * 2 ** 20
    seen = subprocess.run([*memory_cgroup(limit), sys.executable, "-c",
                           "from training import memory; print(memory.machine_memory())"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert seen.stdout.split() == [str(limit)], seen.stderr
    assert memory.machine_memory() > limit


def test_the_memory_is_a_parent_cgroups_limit_where_that_is_lower(memory_cgroup):
    """A pod's limit: the cgroup's parent's, where the process's own cgroup has none."""
    limit = 600 * 2 ** 20
    seen = subprocess.run([*memory_cgroup(limit, below=True), sys.executable, "-c",
                           "from training import memory; print(memory.machine_memory())"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert seen.stdout.split() == [str(limit)], seen.stderr


def test_tensorflows_out_of_memory_error_is_one_line_naming_the_device_the_tensor_and_the_settings():
    with pytest.raises(tf.errors.ResourceExhaustedError) as raised, tf.device("/CPU:0"):
        tf.zeros([2 ** 46], tf.float32)  # 256 TB, past any address space: a real allocation failure
    cfg = make_config("shakespeare_char", batch_size=64, dtype="float32")
    shape = GPTConfig(n_layer=4, n_head=4, block_size=256)
    said = memory.resource_exhausted(raised.value, shape, cfg, 120)
    assert memory.is_out_of_memory(raised.value) and isinstance(said, OutOfMemory) and str(said) == (
        "out of memory on CPU:0 (OOM when allocating tensor with shape[70368744177664] and type float) at iteration "
        "120 with --batch_size=64 and --block_size=256: the attention probabilities a step keeps for its backward "
        "pass, n_layer x batch_size x n_head x block_size^2 = 4 x 64 x 4 x 256^2 = 67,108,864 (268.4 MB in float32), "
        "besides the rest; lower --batch_size (a larger --gradient_accumulation_steps keeps the tokens per iteration) "
        "or --block_size, or train a smaller model")
    # in an evaluation, which keeps nothing for a backward pass: one layer's at a time
    assert "at iteration 120 (its evaluation) with --batch_size=64 and --block_size=256: each layer's attention " \
           "probabilities, batch_size x n_head x block_size^2 = 64 x 4 x 256^2 = 16,777,216 (67.1 MB in float32)" in \
        str(memory.resource_exhausted(raised.value, shape, cfg, 120, training=False))
    # TensorFlow's RESOURCE_EXHAUSTED is also a full disk or too many open files: not memory
    assert not memory.is_out_of_memory(tf.errors.ResourceExhaustedError(
        None, None, "/out/events.out.tfevents; No space left on device"))


def test_the_trainer_refuses_such_a_step_before_its_first_compilation(tmp_path, shakespeare_text):
    """`python -m training.train` and a cluster's Trainer, where no check before the run saw this machine."""
    from training.train import Trainer

    text_file = tmp_path / "input.txt"
    text_file.write_text(shakespeare_text, encoding="utf-8")  # val: 111,540 characters, windows of 100,000 fit
    cfg = make_config("shakespeare_char", text_file=str(text_file), out_dir=str(tmp_path / "out"), n_layer=2,
                      block_size=100_000, batch_size=64, tensorboard=False)
    with pytest.raises(OutOfMemory, match=r"^--block_size=100000 with --batch_size=64 cannot train on this machine: "
                                          r".* = 2 x 64 x 4 x 100,000\^2 = 5,120,000,000,000 \(20,480.0 GB in "
                                          r"float32\)"):
        Trainer(cfg, log=lambda *_: None)
    # a model whose weights alone exceed the memory: refused before they are made (making them was the kill)
    cfg = make_config("shakespeare_char", text_file=str(text_file), out_dir=str(tmp_path / "big"), n_layer=48,
                      n_head=50, n_embd=6400, tensorboard=False)
    with pytest.raises(OutOfMemory, match=r"^a model of n_layer=48 and n_embd=6400 cannot train on this machine: "):
        Trainer(cfg, log=lambda *_: None)
