"""Training engine tests: schedule, AdamW, input pipeline, loop, exact resume, precisions."""

import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from core import files, shards
from core.errors import UsageError
from training.config import PRESETS, make_config, parse_overrides
from training.data import TokenStream
from model.model import GPT, GPTConfig
from training.optim import AdamW
from training.schedule import get_lr
from training.train import EvalPace, Trainer

TINY = dict(n_layer=2, n_head=2, n_embd=32, block_size=32, batch_size=4, dropout=0.0, bias=False,
            learning_rate=3e-3, warmup_iters=5, min_lr=3e-4, beta2=0.99, eval_iters=4,
            log_interval=5, tokenizer="char", gradient_accumulation_steps=1, tensorboard=False)


@pytest.fixture(scope="module")
def small_text(tmp_path_factory, shakespeare_text):
    path = tmp_path_factory.mktemp("text") / "small.txt"
    path.write_text(shakespeare_text[:20000], encoding="utf-8")
    return str(path)


def tiny_config(out_dir, text_file, **overrides):
    return make_config(**{**TINY, "out_dir": str(out_dir), "text_file": text_file, **overrides})


def weights(trainer):
    return {k: v.numpy() for k, v in trainer.model.named_variables().items()}


def test_learning_rate_schedule():
    kw = dict(learning_rate=1e-3, warmup_iters=100, lr_decay_iters=2000, min_lr=1e-4)
    assert get_lr(0, **kw) == pytest.approx(1e-3 / 101)
    assert get_lr(99, **kw) == pytest.approx(1e-3 * 100 / 101)
    assert get_lr(100, **kw) == pytest.approx(1e-3)
    assert get_lr(1050, **kw) == pytest.approx(1e-4 + 0.5 * (1e-3 - 1e-4))
    assert get_lr(2000, **kw) == pytest.approx(1e-4)
    assert get_lr(5000, **kw) == 1e-4
    assert get_lr(50, **kw, decay_lr=False) == 1e-3


def test_adamw_is_torch_adamw_with_decay_on_the_decay_group_only():
    rng = np.random.default_rng(0)
    w0, b0 = rng.normal(size=(3, 4)).astype(np.float32), rng.normal(size=(4,)).astype(np.float32)
    w, b = tf.Variable(w0), tf.Variable(b0)
    opt = AdamW([w], [b], weight_decay=0.1, beta1=0.9, beta2=0.95)
    lr, eps = 0.01, 1e-8
    ref = {"w": [w0.astype(np.float64), 0.0, 0.0, 0.1], "b": [b0.astype(np.float64), 0.0, 0.0, 0.0]}
    for t in range(1, 4):
        gw, gb = rng.normal(size=(3, 4)), rng.normal(size=(4,))
        tf.function(lambda: opt.apply([tf.constant(gw, tf.float32), tf.constant(gb, tf.float32)],
                                      tf.constant(lr)))()
        for key, g in (("w", gw), ("b", gb)):  # torch.optim.AdamW, step by step
            p, m, v, wd = ref[key]
            p = p * (1 - lr * wd)
            m = 0.9 * m + 0.1 * g
            v = 0.95 * v + 0.05 * g * g
            p = p - lr / (1 - 0.9 ** t) * m / (np.sqrt(v) / np.sqrt(1 - 0.95 ** t) + eps)
            ref[key] = [p, m, v, wd]
    np.testing.assert_allclose(w.numpy(), ref["w"][0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b.numpy(), ref["b"][0], rtol=1e-5, atol=1e-6)
    assert int(opt.step.numpy()) == 3


def test_adamw_skips_a_non_finite_step():
    w = tf.Variable([1.0, 2.0])
    opt = AdamW([], [w], weight_decay=0.0)
    tf.function(lambda: opt.apply([tf.constant([np.inf, 1.0])], tf.constant(0.1), finite=tf.constant(False)))()
    np.testing.assert_array_equal(w.numpy(), [1.0, 2.0])
    assert int(opt.step.numpy()) == 0 and not np.any(opt.m[0].numpy())


def test_windows_are_shifted_and_replicas_split_the_global_batch():
    tokens = np.arange(1000, dtype=np.int32)
    stream = TokenStream(tokens, block_size=8, name="train")
    single = stream.train_dataset(batch_size=3, accumulation_steps=4, seed=5, start_step=0)
    xs, ys = next(iter(single))
    assert xs.shape == (4, 3, 8)
    np.testing.assert_array_equal(xs.numpy()[..., 1:], ys.numpy()[..., :-1])  # y is x shifted by one
    np.testing.assert_array_equal(ys.numpy() - xs.numpy(), 1)  # consecutive tokens of the stream
    # Two workers of one replica each: each takes half of the micro-batches, none shared.
    parts = []
    for worker in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=worker,
                                             num_replicas_in_sync=2)
        ds = stream.train_dataset(batch_size=3, accumulation_steps=4, seed=5, start_step=0,
                                  input_context=context)
        parts.append(next(iter(ds))[0].numpy())
    np.testing.assert_array_equal(np.concatenate(parts), xs.numpy())
    # Resuming at step 1 gives step 1's batches.
    second = list(single.take(2))[1][0].numpy()
    resumed = next(iter(stream.train_dataset(batch_size=3, accumulation_steps=4, seed=5, start_step=1)))[0]
    np.testing.assert_array_equal(resumed.numpy(), second)


def test_accumulation_must_divide_across_replicas():
    stream = TokenStream(np.arange(100, dtype=np.int32), block_size=8, name="train")
    context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=0, num_replicas_in_sync=2)
    with pytest.raises(ValueError, match="gradient_accumulation_steps=3 must be a multiple of the 2 replicas"):
        stream.train_dataset(batch_size=2, accumulation_steps=3, seed=0, start_step=0, input_context=context)


def test_split_shorter_than_a_block_is_rejected():
    with pytest.raises(UsageError, match="the val split has 8 tokens: block_size=8 needs at least 9 for one window; "
                                         "give more text, a larger --val_fraction, or a smaller --block_size"):
        TokenStream(np.arange(8, dtype=np.int32), block_size=8, name="val")


def test_training_lowers_the_loss_and_saves(tmp_path, small_text):
    cfg = tiny_config(tmp_path, small_text, max_iters=60, eval_interval=30, lr_decay_iters=60,
                      tensorboard=True)
    logs = []
    result = Trainer(cfg, log=logs.append).run()
    first_eval = next(line for line in logs if line.startswith("step 0:"))
    initial_val = float(first_eval.rsplit(" ", 1)[1])
    assert result["val"] < initial_val - 0.5
    assert result["iter_num"] == 61
    assert any(line.startswith("iter 55: loss") and "tok/s" in line and "mfu" not in line for line in logs)
    assert logs[0].startswith("training on 1 CPU (") and "no GPU" in logs[0]  # no MFU on a CPU
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith("ckpt-60")
    assert glob.glob(str(tmp_path / "tensorboard" / "events.out.tfevents.*"))
    for name in ("model_config.json", "train_config.json", "tokenizer.json"):
        assert (tmp_path / name).is_file()


def test_a_long_first_evaluation_is_said_once_with_its_time():
    """nanoGPT's eval_iters=200 at batch 64 on a CPU: minutes before the first line; a quick one says nothing."""
    now = [0.0]
    pace = EvalPace(200, clock=lambda: now[0])
    said = []
    for _ in range(400):
        now[0] += 3.0  # 3 s a batch
        said.append(pace.said())
    assert [line for line in said if line] == [
        "the first evaluation takes about 20 min at this pace (400 batches: eval_iters=200 of each split); a "
        "smaller --eval_iters estimates the loss sooner"]
    assert said[2] and not any(said[:2])  # once 5 s of batches are timed, from the end of the first
    quick = EvalPace(200, clock=lambda: now[0])
    lines = []
    for _ in range(400):
        now[0] += 0.1  # 40 s in all
        lines.append(quick.said())
    assert not any(lines)


def test_the_trainer_says_the_pace_of_its_first_evaluation(tmp_path, small_text):
    cfg = tiny_config(tmp_path, small_text, max_iters=2, eval_interval=1, lr_decay_iters=2)
    logs = []
    trainer = Trainer(cfg, log=logs.append)
    trainer._pace = EvalPace(cfg.eval_iters, measure_s=0.0, long_s=0.0)  # any pace is long
    trainer.run()
    said = [line for line in logs if line.startswith("the first evaluation takes about ")]
    assert said == ["the first evaluation takes about 0 min at this pace (8 batches: eval_iters=4 of each split); "
                    "a smaller --eval_iters estimates the loss sooner"]
    assert logs.index(said[0]) < logs.index(next(line for line in logs if line.startswith("step 0:")))


@pytest.mark.parametrize("rng", ["tensorflow", "nanogpt"])
def test_resume_continues_exactly(tmp_path, small_text, rng):
    kw = dict(eval_interval=10, lr_decay_iters=20, always_save_checkpoint=True, rng=rng, log_interval=1)
    straight = Trainer(tiny_config(tmp_path / "a", small_text, max_iters=20, **kw), log=lambda *_: None)
    straight.run()
    interrupted = Trainer(tiny_config(tmp_path / "b", small_text, max_iters=10, **kw), log=lambda *_: None)
    interrupted.run()  # saved at iter 10; its 11th step happened after the save and is lost
    logs = []
    resumed = Trainer(tiny_config(tmp_path / "b", small_text, max_iters=20, init_from="resume", **kw),
                      log=logs.append)
    assert resumed.start_iter == 10 and int(resumed.optimizer.step.numpy()) == 10
    resumed.run()
    assert any("resuming from" in line and "at iter 10" in line for line in logs)
    # the records go on from the checkpoint's: the whole training's, as the uninterrupted run's
    assert [it for it, *_ in resumed.history] == [0, 10, 20]
    np.testing.assert_allclose(resumed.history, straight.history, rtol=0, atol=1e-6)
    np.testing.assert_allclose(resumed.train_losses, straight.train_losses, rtol=0, atol=1e-6)
    for name, value in weights(straight).items():
        np.testing.assert_allclose(weights(resumed)[name], value, rtol=0, atol=1e-6, err_msg=name)


def test_a_resume_whose_eval_interval_passes_over_its_start_keeps_the_evaluation_there(tmp_path, small_text):
    """Resumed at 10 with eval_interval=4: it evaluates at 12, 16, 20 (nanoGPT's rule), not at 10, so the
    checkpoint's evaluation at 10 stays in the records."""
    kw = dict(lr_decay_iters=20, always_save_checkpoint=True)
    first = Trainer(tiny_config(tmp_path, small_text, max_iters=10, eval_interval=10, **kw), log=lambda *_: None)
    first.run()
    resumed = Trainer(tiny_config(tmp_path, small_text, max_iters=20, eval_interval=4, init_from="resume", **kw),
                      log=lambda *_: None)
    resumed.run()
    assert [it for it, *_ in resumed.history] == [0, 10, 12, 16, 20]
    assert resumed.history[:2] == first.history


def test_the_command_line_from_a_checkpoint_takes_its_shape_as_nanogpt(tmp_path, small_text, capsys):
    """--init_from a Hugging Face directory with other shape arguments: the checkpoint's shape, said in a line
    and recorded in train_config.json (the arguments' was, beside a model of another)."""
    from training.train import main

    chars = sorted(set(open(small_text, encoding="utf-8").read()))
    GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=32, vocab_size=len(chars)), seed=0).save_pretrained(
        str(tmp_path / "hf"), {"kind": "char", "chars": chars})
    main([f"--text_file={small_text}", "--tokenizer=char", f"--out_dir={tmp_path / 'run'}",
          f"--init_from={tmp_path}/hf", "--n_layer=3", "--max_iters=2", "--eval_interval=2", "--eval_iters=1",
          "--batch_size=2", "--block_size=32",
          "--tensorboard=False", "--always_save_checkpoint=True"])
    assert (f"init_from={tmp_path}/hf: the model's shape is the checkpoint's, as nanoGPT takes it: n_layer=1 (not 3), "
            f"n_head=2 (not 12), n_embd=16 (not 768), bias=True (not False)\n") in capsys.readouterr().out
    recorded = json.loads((tmp_path / "run" / "train_config.json").read_text())
    assert (recorded["n_layer"], recorded["n_head"], recorded["n_embd"], recorded["bias"]) == (1, 2, 16, True)


def test_the_command_lines_resume_takes_the_checkpoints_shape_as_nanogpt(tmp_path, small_text, capsys):
    """`python -m training.train --init_from=resume` without the run's shape arguments (the defaults, GPT-2
    124M's, differ): the checkpoint's shape, said in a line, as nanoGPT's train.py takes it."""
    from training.train import main

    Trainer(tiny_config(tmp_path / "run", small_text, max_iters=10, eval_interval=10), log=lambda *_: None).run()
    capsys.readouterr()
    main([f"--text_file={small_text}", "--tokenizer=char", f"--out_dir={tmp_path / 'run'}", "--init_from=resume",
          "--max_iters=20", "--eval_interval=10", "--eval_iters=2", "--batch_size=4", "--tensorboard=False"])
    out = capsys.readouterr().out
    assert ("init_from=resume: the model's shape is the checkpoint's, as nanoGPT takes it: n_layer=2 (not 12), "
            "n_head=2 (not 12), n_embd=32 (not 768), block_size=32 (not 1024)\n") in out
    assert f"resuming from {tmp_path}/run/checkpoints/ckpt-10 at iter 10" in out
    assert json.loads(out.strip().splitlines()[-1])["iter_num"] == 21


def test_resume_on_a_text_of_other_characters_is_refused_and_keeps_the_runs_vocabulary(tmp_path, small_text):
    """init_from=resume on another text: its ids would stand for other characters. Refused in one line,
    the run's tokenizer.json left as it was (sampling its checkpoints reads it)."""
    Trainer(tiny_config(tmp_path / "run", small_text, max_iters=10, eval_interval=10), log=lambda *_: None).run()
    saved = (tmp_path / "run" / "tokenizer.json").read_text()
    other = tmp_path / "other.txt"
    other.write_text(open(small_text, encoding="utf-8").read().replace("e", "~"), encoding="utf-8")
    with pytest.raises(UsageError, match=rf"^init_from=resume: the checkpoint in {tmp_path}/run was trained on other "
                                         rf"tokens than this data's: \d+ characters against the data's \d+, 1 new "
                                         rf"\('~'\), 1 gone \('e'\)$"):
        Trainer(tiny_config(tmp_path / "run", str(other), max_iters=20, init_from="resume"), log=lambda *_: None)
    assert (tmp_path / "run" / "tokenizer.json").read_text() == saved
    # The same text with max_iters not past the checkpoint: nothing would train (nanoGPT's makes one step more)
    with pytest.raises(UsageError, match=rf"^init_from=resume: {tmp_path}/run/checkpoints/ckpt-10 is at iteration 10, "
                                         rf"and max_iters=10 is not past it: nothing would train; raise --max_iters$"):
        Trainer(tiny_config(tmp_path / "run", small_text, max_iters=10, init_from="resume"), log=lambda *_: None)


def test_gradient_accumulation_splits_a_batch(tmp_path, small_text):
    """With gradient_accumulation_steps=2 each step takes two micro-batches of batch_size."""
    cfg = tiny_config(tmp_path, small_text, max_iters=3, eval_interval=100, gradient_accumulation_steps=2)
    trainer = Trainer(cfg, log=lambda *_: None)
    xs, ys = next(trainer.dataset_iterator(0))
    assert xs.shape == (2, 4, 32)
    trainer.run()


def test_parallel_branches_compute_the_same_step(tmp_path, small_text):
    """A micro-batch run as parallel branches of its rows (cpu_branches) gives the loss and the
    weights of the same run whole, up to the order of float additions; an odd split included."""
    runs = {}
    for branches in (1, 3):
        cfg = tiny_config(tmp_path / str(branches), small_text, max_iters=8, eval_interval=4, log_interval=1,
                          cpu_branches=branches, gradient_accumulation_steps=2)
        trainer = Trainer(cfg, log=lambda *_: None)
        assert trainer.branches == branches
        runs[branches] = (trainer.run(), trainer)
    (whole, one), (split, three) = runs[1], runs[3]
    assert split["val"] == pytest.approx(whole["val"], abs=1e-5)
    np.testing.assert_allclose([loss for _, loss in three.train_losses], [loss for _, loss in one.train_losses],
                               rtol=0, atol=1e-5)
    for name, value in weights(one).items():
        np.testing.assert_allclose(weights(three)[name], value, rtol=0, atol=1e-5, err_msg=name)


_BRANCHES_SCRIPT = """
import sys
import tensorflow as tf
from training.config import make_config
from training.distribution import cpu_branches
if sys.argv[1] == "after_an_op":
    tf.constant(1) + 1  # TensorFlow starts, with its default threads
logs = []
print(cpu_branches(make_config(batch_size=12), logs.append), tf.config.threading.get_intra_op_parallelism_threads(),
      repr(logs))
"""


@pytest.mark.parametrize("when", ["before_any_op", "after_an_op"])
def test_cpu_branches_need_single_threaded_ops_set_before_tensorflow_starts(when):
    cores = len(os.sched_getaffinity(0))
    if not 2 <= cores <= 12:
        pytest.skip(f"{cores} cores: no split into one branch per core of a 12-row micro-batch")
    env = {k: v for k, v in os.environ.items() if k != "TF_NUM_INTRAOP_THREADS"}
    out = subprocess.run([sys.executable, "-c", _BRANCHES_SCRIPT, when], env=env, capture_output=True, text=True,
                         check=True, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    branches, threads, logs = out.stdout.strip().splitlines()[-1].split(" ", 2)
    if when == "before_any_op":
        assert (int(branches), int(threads), logs) == (cores, 1, "[]")
    else:  # too late to change the threads: the micro-batch runs whole, and the log says how to split it
        assert (int(branches), int(threads)) == (1, 0) and "TF_NUM_INTRAOP_THREADS=1" in logs


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_mixed_precision_trains(tmp_path, small_text, dtype):
    cfg = tiny_config(tmp_path, small_text, max_iters=30, eval_interval=30, lr_decay_iters=30, dtype=dtype)
    trainer = Trainer(cfg, log=lambda *_: None)
    result = trainer.run()
    assert np.isfinite(result["val"]) and result["val"] < 3.5
    if dtype == "float16":
        assert float(trainer.loss_scale.scale.numpy()) > 1.0


def test_xla_compiled_step_trains(tmp_path, small_text):
    cfg = tiny_config(tmp_path, small_text, max_iters=30, eval_interval=30, lr_decay_iters=30, compile=True)
    assert Trainer(cfg, log=lambda *_: None).run()["val"] < 3.5


def test_eval_only_and_init_from_a_checkpoint_dir(tmp_path, small_text):
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=64, vocab_size=70), seed=0)
    model.save_pretrained(str(tmp_path / "hf"))
    cfg = tiny_config(tmp_path / "run", small_text, init_from=str(tmp_path / "hf"), eval_only=True,
                      vocab_size=70)
    logs = []
    trainer = Trainer(cfg, log=logs.append)
    assert trainer.model.config.block_size == 32  # cropped to the run's block_size
    # the settings the Trainer records are the model's (a checkpoint read only here, as a gs:// one is)
    assert (trainer.cfg.n_layer, trainer.cfg.n_head, trainer.cfg.n_embd, trainer.cfg.bias) == (1, 2, 16, True)
    assert (f"init_from={tmp_path / 'hf'}: the model's shape is the checkpoint's, as nanoGPT takes it: n_layer=1 "
            f"(not 2), n_embd=16 (not 32), bias=True (not False)") in logs
    result = trainer.run()
    assert result["iter_num"] == 0 and np.isfinite(result["val"])
    assert not os.path.exists(tmp_path / "run" / "checkpoints" / "checkpoint")


def test_init_from_a_checkpoint_of_other_tokens_is_refused(tmp_path, small_text):
    """A character model's ids stand for its own table: on data of other characters (or GPT-2's weights
    on character ids) they would read as other text."""
    ours = Trainer(tiny_config(tmp_path / "scratch", small_text, max_iters=0), log=lambda *_: None).tokenizer_json
    chars = ours["chars"]
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=64, vocab_size=len(chars)), seed=0)
    for name, trained_on in (("same", ours), ("other", {"kind": "char", "chars": chars[1:] + chars[:1]})):
        model.save_pretrained(str(tmp_path / name), trained_on)
    Trainer(tiny_config(tmp_path / "a", small_text, init_from=str(tmp_path / "same"), eval_only=True),
            log=lambda *_: None)
    with pytest.raises(UsageError, match=rf"^init_from={tmp_path}/other: it was trained on other tokens than this "
                                         rf"data's: the same {len(chars)} characters with other ids; train from "
                                         rf"scratch \(init_from=scratch\)$"):
        Trainer(tiny_config(tmp_path / "b", small_text, init_from=str(tmp_path / "other"), eval_only=True),
                log=lambda *_: None)


def test_resume_without_checkpoint_is_named(tmp_path, small_text):
    with pytest.raises(FileNotFoundError, match="init_from=resume: no model_config.json"):
        Trainer(tiny_config(tmp_path, small_text, init_from="resume"), log=lambda *_: None)


def test_the_command_line_says_a_data_mistake_in_one_line_without_tensorflows_chatter(tmp_path):
    """`python -m training.train` as a user runs it: TensorFlow's start-up lines (CUDA stubs, factory
    registrations, google-api-core's note on Python 3.10) left out, the mistake in one line."""
    (tmp_path / "tiny.txt").write_text("To be or not to be, that is the question.\n")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run([sys.executable, "-m", "training.train", f"--text_file={tmp_path / 'tiny.txt'}",
                           "--tokenizer=char", f"--out_dir={tmp_path / 'out'}", "--block_size=64"], env=env,
                          capture_output=True, text=True, timeout=120,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert done.returncode == 2 and done.stderr == (
        "python -m training.train: error: the train split has 37 tokens: block_size=64 needs at least 65 for one "
        "window; give more text, or a smaller --block_size\n"), done.stderr
    # an --out_dir that cannot be a directory: one line before TensorFlow loads (it was a traceback)
    done = subprocess.run([sys.executable, "-m", "training.train", f"--text_file={tmp_path / 'tiny.txt'}",
                           f"--out_dir={tmp_path / 'tiny.txt'}/run"], env=env, capture_output=True, text=True,
                          timeout=120, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert done.returncode == 2 and done.stderr == (
        f"python -m training.train: error: --out_dir={tmp_path / 'tiny.txt'}/run: {tmp_path / 'tiny.txt'} is a file, "
        f"not a directory\n"), done.stderr
    for data, line in ((f"--text_file={tmp_path}/none.txt", f"--text_file={tmp_path}/none.txt: no such file"),
                       (f"--text_file={tmp_path}", f"--text_file={tmp_path}: a folder, not a text file (`runner.py run "
                                                   f"--data=FOLDER` reads a folder's files)"),
                       (f"--data_dir={tmp_path}/none", f"--data_dir={tmp_path}/none: no such folder")):
        done = subprocess.run([sys.executable, "-m", "training.train", data, f"--out_dir={tmp_path / 'out'}"],
                              env=env, capture_output=True, text=True, timeout=120,
                              cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        assert done.returncode == 2 and done.stderr == f"python -m training.train: error: {line}\n", done.stderr


def test_a_text_file_that_is_not_utf8_is_one_line(tmp_path):
    (tmp_path / "latin1.txt").write_bytes("Très bien, Roméo.\n".encode("latin-1"))
    with pytest.raises(UsageError, match=rf"^text file {tmp_path}/latin1.txt is not UTF-8 text \(byte 2: invalid "
                                         rf"continuation byte\): convert it to UTF-8 \(e.g. iconv -t UTF-8\)$"):
        Trainer(tiny_config(tmp_path / "out", str(tmp_path / "latin1.txt")), log=lambda *_: None)


def test_a_gzip_text_file_is_read_as_its_text(tmp_path, small_text):
    """As runner.py's --data reads a .gz file; one that is not GZIP is one line."""
    import gzip

    with open(small_text, "rb") as f, gzip.open(tmp_path / "small.txt.gz", "wb") as out:
        out.write(f.read())
    plain = Trainer(tiny_config(tmp_path / "plain", small_text), log=lambda *_: None)
    zipped = Trainer(tiny_config(tmp_path / "zipped", str(tmp_path / "small.txt.gz")), log=lambda *_: None)
    assert zipped.tokenizer_json == plain.tokenizer_json
    np.testing.assert_array_equal(zipped.train_data.array(), plain.train_data.array())
    (tmp_path / "not.txt.gz").write_text("plain text")
    with pytest.raises(UsageError, match=rf"^text file {tmp_path}/not.txt.gz is not whole GZIP data \(Not a gzipped "):
        Trainer(tiny_config(tmp_path / "out", str(tmp_path / "not.txt.gz")), log=lambda *_: None)


def test_missing_data_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"no train split in {tmp_path}"):
        Trainer(make_config(out_dir=str(tmp_path / "o"), data_dir=str(tmp_path)), log=lambda *_: None)


def nanogpt_prepared(directory, text):
    """nanoGPT's data/shakespeare_char/prepare.py on `text`: train.bin, val.bin and meta.pkl."""
    import pickle

    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    cut = int(len(text) * 0.9)
    os.makedirs(directory, exist_ok=True)
    np.array([stoi[c] for c in text[:cut]], np.uint16).tofile(os.path.join(directory, "train.bin"))
    np.array([stoi[c] for c in text[cut:]], np.uint16).tofile(os.path.join(directory, "val.bin"))
    with open(os.path.join(directory, "meta.pkl"), "wb") as f:
        pickle.dump({"vocab_size": len(chars), "itos": dict(enumerate(chars)), "stoi": stoi}, f)
    return chars


def test_nanogpts_prepared_data_trains_as_the_same_text_does(tmp_path, small_text):
    """--data_dir of nanoGPT's train.bin, val.bin and meta.pkl (its prepare.py's): its characters, and the
    same run, to the loss, as the text file it was made from."""
    chars = nanogpt_prepared(tmp_path / "shakespeare_char", open(small_text, encoding="utf-8").read())
    settings = dict(max_iters=10, eval_interval=10, tokenizer="gpt2")  # the tokenizer: meta.pkl's, not this
    prepared = Trainer(make_config(**{**TINY, **settings, "out_dir": str(tmp_path / "a"),
                                      "data_dir": str(tmp_path / "shakespeare_char")}), log=lambda *_: None).run()
    from_text = Trainer(tiny_config(tmp_path / "b", small_text, **{**settings, "tokenizer": "char"}),
                        log=lambda *_: None).run()
    assert prepared == from_text
    assert files.read_json(str(tmp_path / "a" / "tokenizer.json")) == {"kind": "char", "chars": chars}
    # without meta.pkl, nanoGPT's data is GPT-2 BPE, and these ids are checked against its vocabulary
    os.remove(tmp_path / "shakespeare_char" / "meta.pkl")
    cfg = make_config(**{**TINY, "out_dir": str(tmp_path / "c"), "data_dir": str(tmp_path / "shakespeare_char"),
                         "vocab_size": 16})
    with pytest.raises(UsageError, match=rf"^the train split of {tmp_path}/shakespeare_char holds token id "
                                         rf"{len(chars) - 1}, past the model's vocab_size=16: data of other "
                                         rf"tokens than the model's$"):
        Trainer(cfg, log=lambda *_: None)


def test_config_overrides_and_presets():
    assert parse_overrides(["--batch_size=32", "--compile=False", "--init_from=gpt2"]) == \
        dict(batch_size=32, compile=False, init_from="gpt2")
    with pytest.raises(ValueError, match="unknown setting --lr"):
        parse_overrides(["--lr=1"])
    with pytest.raises(ValueError, match="did you mean --max_iters"):
        parse_overrides(["--max_iter=1"])
    with pytest.raises(ValueError, match="--batch_size='big': expected an integer >= 1"):
        make_config(batch_size="big")
    cfg = make_config("shakespeare_char_gpu", max_iters=10)
    assert (cfg.n_layer, cfg.block_size, cfg.max_iters, cfg.learning_rate) == (6, 256, 10, 1e-3)
    assert make_config(learning_rate=1).learning_rate == 1.0
    assert {"shakespeare_char", "finetune_shakespeare", "owt_gpt2_124m", "eval_gpt2_xl"} <= set(PRESETS)
    with pytest.raises(ValueError, match="--dtype='float8': expected one of float32, bfloat16, float16"):
        make_config(dtype="float8")


def test_shards_that_name_no_tokenizer_are_taken_as_gpt2_bpe_and_said_so(tmp_path):
    """As nanoGPT's train.py and sample.py take data without a meta.pkl: said, and recorded for sampling."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        shards.write_split(shards.split_dir(str(tmp_path / "data"), split), [rng.integers(0, 50257, 400)])
    logs = []
    Trainer(make_config(**{**TINY, "tokenizer": "gpt2", "max_iters": 0, "eval_iters": 1,
                           "out_dir": str(tmp_path / "out"), "data_dir": str(tmp_path / "data")}), log=logs.append)
    assert f"{tmp_path}/data names no tokenizer (no tokenizer.json or meta.pkl): its token ids are taken as GPT-2 " \
           f"BPE's" in logs
    assert files.read_json(str(tmp_path / "out" / "tokenizer.json")) == {"kind": "gpt2"}


def test_shard_round_trip(tmp_path):
    docs = [list(range(10)), list(range(100, 125))]
    assert shards.write_split(str(tmp_path), docs, num_shards=2, chunk_size=7) == 35
    np.testing.assert_array_equal(shards.read_token_stream(str(tmp_path)), docs[0] + docs[1])
    assert not glob.glob(str(tmp_path / "*.tmp"))


def test_train_resume_and_export_on_a_non_local_filesystem(tmp_path, small_text):
    """Everything under out_dir and the exports goes through tf.io.gfile (gs:// on Vertex AI):
    here TensorFlow's in-memory filesystem, which plain open() and os cannot see."""
    from serving.export import export_saved_model

    root = f"ram://{tmp_path.name}"
    run_dir = f"{root}/run"
    kwargs = dict(max_iters=10, eval_interval=10, lr_decay_iters=20, always_save_checkpoint=True,
                  tensorboard=True)
    Trainer(tiny_config(run_dir, small_text, **kwargs), log=lambda *_: None).run()
    assert tf.train.latest_checkpoint(f"{run_dir}/checkpoints").endswith("ckpt-10")
    assert tf.io.gfile.glob(f"{run_dir}/data/Split-train/*.gz")  # text_file's shards, tokenized in out_dir
    assert tf.io.gfile.glob(f"{run_dir}/tensorboard/events.out.tfevents.*")
    for name in ("model_config.json", "train_config.json", "tokenizer.json"):
        assert tf.io.gfile.exists(f"{run_dir}/{name}") and not tf.io.gfile.exists(f"{run_dir}/{name}.tmp")
    assert not os.path.exists(run_dir)  # not a local directory named "ram:"

    logs = []
    resumed = Trainer(tiny_config(run_dir, small_text, **{**kwargs, "max_iters": 20}, init_from="resume"),
                      log=logs.append)
    assert resumed.start_iter == 10 and int(resumed.optimizer.step.numpy()) == 10
    assert resumed.run()["iter_num"] == 21
    assert any("resuming from ram://" in line for line in logs)
    assert tf.train.latest_checkpoint(f"{run_dir}/checkpoints").endswith("ckpt-20")

    ids = tf.constant([[1, 2, 3, 4]], tf.int32)
    expected = resumed.model(ids).numpy()
    serving = export_saved_model(resumed.model, f"{root}/model/Format-Serving", resumed.tokenizer_json, loop="graph")
    loaded = tf.saved_model.load(serving)
    np.testing.assert_allclose(loaded.signatures["logits"](idx=ids)["logits"].numpy(), expected, atol=1e-5)
    hf_dir = f"{root}/model/Format-HF"
    resumed.model.save_pretrained(hf_dir)
    assert sorted(tf.io.gfile.listdir(hf_dir)) == ["config.json", "model.safetensors"]
    np.testing.assert_array_equal(GPT.from_pretrained(hf_dir)(ids).numpy(), expected)
    # ... and the exported checkpoint can start a run of its own.
    cfg = tiny_config(f"{root}/finetune", small_text, init_from=hf_dir, eval_only=True)
    assert np.isfinite(Trainer(cfg, log=lambda *_: None).run()["val"])
