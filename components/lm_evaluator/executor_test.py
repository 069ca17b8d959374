"""LMEvaluator's executor on real files and standard artifacts: losses against a direct computation,
models whose loss is known in closed form (uniform: ln V; unigram: the data's cross-entropy under p),
the blessing rules, baselines from local checkpoints, bad input, and a full disk while writing the
outputs (a real ENOSPC from the small_disk tmpfs of conftest.py)."""

import json
import math
import os
import shutil

import numpy as np
import pytest
from tfx.types import standard_artifacts

from components import artifact_layout
from components.lm_evaluator import evaluate as ev
from components.lm_evaluator.executor import Executor
from components.lm_evaluator.settings import EvalConfig
from core.settings import SettingError
from test_helpers.lm_models import CHAR_BYTES, CHARS, P, V, tiny_gpt, uniform_gpt, unigram_gpt, write_char_vocabulary
from core import shards
from core.errors import DiskFull, MissingFile, UsageError
from model.model import GPT, cross_entropy

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def save_model(model, directory, artifact_id):
    model.save_pretrained(os.path.join(directory, artifact_layout.HF_CHECKPOINT_DIR))
    artifact = standard_artifacts.Model()
    artifact.uri, artifact.id = str(directory), artifact_id
    return artifact


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """An Examples artifact with train and val splits drawn from P, the token streams, and the
    transform graph whose vocabulary maps them to CHARS."""
    root = tmp_path_factory.mktemp("examples")
    rng = np.random.default_rng(0)
    streams = {"train": rng.choice(V, 613, p=P), "val": rng.choice(V, 301, p=P)}
    streams["val"][5] = V - 1  # the largest id occurs
    for split, tokens in streams.items():
        shards.write_split(shards.split_dir(str(root), split), [tokens.tolist()], chunk_size=100)
    examples = standard_artifacts.Examples()
    examples.uri = str(root)
    examples.split_names = '["train", "val"]'
    graph = standard_artifacts.TransformGraph()
    graph.uri = write_char_vocabulary(tmp_path_factory.mktemp("transform_graph"))
    return examples, streams, graph


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    made = {"random": save_model(tiny_gpt(), root / "random", 11),
            "uniform": save_model(uniform_gpt(), root / "uniform", 12),
            "unigram": save_model(unigram_gpt(), root / "unigram", 13)}
    history = {"eval": [[0, 2.6, 2.61], [50, 2.3, 2.35], [100, 2.2, 2.28]],
               "train": [[i, 2.6 - i / 300] for i in range(0, 101, 10)]}
    os.makedirs(root / "run")
    with open(root / "run" / artifact_layout.HISTORY_FILE, "w") as f:
        json.dump(history, f)
    run = standard_artifacts.ModelRun()
    run.uri = str(root / "run")
    made["run"] = run
    return made


def run_executor(tmp_path, data, model, baseline_model=None, model_run=None, bpe_dir=None, examples=None,
                  **settings):
    """The executor's evaluation and blessing of `data`'s examples (or `examples`, which say their
    tokenizer), with EvalConfig's settings (eval_batches 0 unless given)."""
    evaluation, blessing = standard_artifacts.ModelEvaluation(), standard_artifacts.ModelBlessing()
    evaluation.uri, blessing.uri = str(tmp_path / "evaluation"), str(tmp_path / "blessing")
    for artifact in (evaluation, blessing):
        os.makedirs(artifact.uri, exist_ok=True)
    inputs = {"examples": [examples or data[0]], "model": [model],
              "baseline_model": [baseline_model] if baseline_model else [],
              "model_run": [model_run] if model_run else [],
              "transform_graph": [] if examples else [data[2]]}
    config = EvalConfig(**{"eval_batches": 0, "eval_train_batches": 0, **settings}).to_json()
    Executor().Do(inputs, {"evaluation": [evaluation], "blessing": [blessing]}, {"config": config, "bpe_dir": bpe_dir})
    return evaluation, blessing


def targets(tokens, block_size=16):
    """The whole-split windows' target tokens: every token after the first, but the tail."""
    count = (len(tokens) - 1) // block_size
    return tokens[1:count * block_size + 1]


def unigram_loss(tokens, block_size=16):
    """-mean log P[y] over the whole-split windows' targets."""
    return float(-np.mean(np.log(P)[targets(tokens, block_size)]))


def bits_per_byte(loss, tokens, block_size=16):
    """A mean loss over the whole-split windows' targets in bits per byte of the characters they are."""
    y = targets(tokens, block_size)
    return loss * len(y) / math.log(2) / CHAR_BYTES[y].sum()


def test_losses_equal_a_direct_computation(tmp_path, data, models):
    examples, streams, _ = data
    evaluation, _ = run_executor(tmp_path, data, models["random"], eval_batch_size=3)
    model = GPT.from_pretrained(os.path.join(models["random"].uri, artifact_layout.HF_CHECKPOINT_DIR))
    for split, tokens in streams.items():
        count = (len(tokens) - 1) // 16  # windows at 0, 16, 32, ...
        windows = np.stack([tokens[i * 16:i * 16 + 17] for i in range(count)]).astype(np.int32)
        expected = float(cross_entropy(model(windows[:, :-1]), windows[:, 1:]))
        assert evaluation.get_float_custom_property(f"candidate_{split}_loss") == pytest.approx(expected, rel=1e-5)
        # bits per byte: the loss in bits over the UTF-8 bytes of the target characters (1 to 4 each)
        assert evaluation.get_float_custom_property(f"candidate_{split}_bpb") == \
            pytest.approx(bits_per_byte(expected, tokens), rel=1e-5)
        assert evaluation.get_int_custom_property(f"eval_windows_{split}") == count
        assert evaluation.get_int_custom_property(f"eval_tokens_{split}") == len(tokens)
    assert evaluation.get_int_custom_property("eval_block_size") == 16


def test_closed_form_losses_in_both_modes(tmp_path, data, models):
    examples, streams, _ = data
    evaluation, _ = run_executor(tmp_path / "a", data, models["unigram"], eval_batch_size=4)
    for split, tokens in streams.items():
        assert evaluation.get_float_custom_property(f"candidate_{split}_loss") == \
            pytest.approx(unigram_loss(tokens), rel=1e-5)
        # the unigram baseline: each token's train-split frequency, one count added to each id
        counts = np.bincount(streams["train"], minlength=V) + 1.0
        expected = float(-np.mean(np.log(counts / counts.sum())[targets(tokens)]))
        assert evaluation.get_float_custom_property(f"unigram_{split}_loss") == pytest.approx(expected, rel=1e-6)
        assert evaluation.get_float_custom_property(f"unigram_{split}_bpb") == \
            pytest.approx(bits_per_byte(expected, tokens), rel=1e-6)
    # Random windows: the uniform model's loss is ln V whatever the windows; the count is exact.
    # (the train split's by eval_train_batches, as nanoGPT estimates it)
    evaluation, _ = run_executor(tmp_path / "b", data, models["uniform"], eval_batches=3, eval_train_batches=4,
                                 eval_batch_size=5)
    assert evaluation.get_float_custom_property("candidate_val_loss") == pytest.approx(math.log(V), rel=1e-6)
    assert evaluation.get_float_custom_property("candidate_train_loss") == pytest.approx(math.log(V), rel=1e-6)
    assert evaluation.get_int_custom_property("eval_windows_val") == 15
    assert evaluation.get_int_custom_property("eval_windows_train") == 20
    assert evaluation.get_int_custom_property("eval_batches") == 3


def test_random_windows_are_seeded_and_shared(data):
    examples, _, _ = data
    kwargs = dict(block_size=8, batch_size=4, eval_batches=2, token_bytes=CHAR_BYTES)
    first = ev.load_windows(examples.uri, seed=7, **kwargs)
    again = ev.load_windows(examples.uri, seed=7, **kwargs)
    other = ev.load_windows(examples.uri, seed=8, **kwargs)
    for split in ev.SPLITS:
        assert all(np.array_equal(a[0], b[0]) for a, b in zip(first[split].batches, again[split].batches))
        assert not np.array_equal(first[split].batches[0][0], other[split].batches[0][0])
        x, y = first[split].batches[0]
        assert x.shape == (4, 8) and np.array_equal(x[:, 1:], y[:, :-1])


def test_batches_in_flight_sum_as_one_at_a_time(data):
    examples, _, _ = data
    windows = ev.load_windows(examples.uri, block_size=8, batch_size=4, eval_batches=0, seed=0, token_bytes=CHAR_BYTES)
    model = tiny_gpt()
    batch_loss = ev.loss_function(model, 8)
    assert ev.batches_in_flight(4 * 8 * V) == 2  # this model's: two at once
    assert ev.batches_in_flight(32 * 1024 * 50257) == 1  # GPT-2's logits of a full batch (6.6 GB): one
    for split in ev.SPLITS:
        one_at_a_time = sum(float(batch_loss(x, y)) * y.size for x, y in windows[split].batches)
        assert len(windows[split].batches) > 2
        assert ev.score(batch_loss, windows[split], V).nats == one_at_a_time  # the same sum, to the last bit


def test_a_long_scoring_says_how_it_goes(data):
    """A large model on a whole val split scores for hours: a line after a minute, then every ten, with
    the batches done and the time left at that pace; none for a short scoring."""
    examples, _, _ = data
    windows = ev.load_windows(examples.uri, block_size=8, batch_size=4, eval_batches=0, seed=0, token_bytes=CHAR_BYTES)
    batch_loss = ev.loss_function(tiny_gpt(), 8)
    total = sum(len(w.batches) for w in windows.values())
    for seconds_a_batch, expected in ((1.0, 0), (50.0, 1 + (total * 50 - 60) // 600)):
        now, lines = [0.0], []

        def clock():
            now[0] += seconds_a_batch  # each call after the first: one batch later
            return now[0] - seconds_a_batch

        pace = ev.ScoringPace("candidate (x)", total, lines.append, clock=clock)
        scores = [ev.score(batch_loss, windows[split], V, pace) for split in ev.SPLITS]
        assert pace.done == total and all(s.tokens > 0 for s in scores)
        assert len(lines) == expected, lines
    assert lines[0] == (f"candidate (x): 2 of {total:,} batches scored in 2 min, about "
                        f"{(total - 2) * 50 / 60:.0f} min left at this pace")


def test_blessed_under_threshold_and_better_than_last_blessed_with_report(tmp_path, data, models):
    examples, streams, _ = data
    evaluation, blessing = run_executor(
        tmp_path, data, models["unigram"], baseline_model=models["uniform"], model_run=models["run"],
        val_loss_threshold=math.log(V), eval_batch_size=8)
    assert blessing.get_int_custom_property("blessed") == 1
    assert os.path.isfile(os.path.join(blessing.uri, "BLESSED"))
    assert not os.path.exists(os.path.join(blessing.uri, "NOT_BLESSED"))
    assert blessing.get_string_custom_property("current_model") == models["unigram"].uri
    assert blessing.get_int_custom_property("current_model_id") == 13
    assert blessing.get_string_custom_property("baseline_model") == models["uniform"].uri
    assert blessing.get_int_custom_property("baseline_model_id") == 12
    assert blessing.get_string_custom_property("blessing_reason").startswith("blessed: ")
    assert evaluation.get_int_custom_property("blessed") == 1
    assert evaluation.get_float_custom_property("last_blessed_val_loss") == pytest.approx(math.log(V), rel=1e-6)
    assert evaluation.get_float_custom_property("candidate_val_loss") == \
        pytest.approx(unigram_loss(streams["val"]), rel=1e-5)

    metrics = json.load(open(os.path.join(evaluation.uri, "metrics.json")))
    assert metrics["blessed"] is True
    assert [m["role"] for m in metrics["models"]] == ["candidate", "last_blessed", "unigram"]
    assert metrics["evaluation"]["mode"] == "val whole split, train whole split"
    assert metrics["data"]["tokenizer"] == f"characters ({V} in the transform graph's vocabulary)"
    assert metrics["inputs"]["model"] == {"id": 13, "type": "Model", "uri": models["unigram"].uri}
    assert metrics["training"]["result"] is None and metrics["model"]["config"]["vocab_size"] == V
    reason = blessing.get_string_custom_property("blessing_reason")
    assert "< the unigram baseline's" in reason  # beat_unigram, on by default
    assert blessing.get_string_custom_property("evaluation") == evaluation.uri
    text = open(os.path.join(evaluation.uri, "report.md")).read()
    assert "**Decision: BLESSED**" in text
    assert "| candidate | candidate |" in text and "| last blessed | last blessed |" in text
    assert "| unigram | unigram baseline |" in text and "| train bpb | val bpb |" in text
    assert f"{math.log(V):.4f}" in text
    assert "OpenWebText" not in text  # nanoGPT's figures for GPT-2 tokens: not beside characters
    with open(os.path.join(evaluation.uri, "loss_curves.png"), "rb") as f:
        png = f.read()
    assert png.startswith(PNG_MAGIC) and len(png) > 5000


def test_not_blessed_when_worse_than_last_blessed_beyond_tolerance(tmp_path, data, models):
    examples, streams, _ = data
    gap = math.log(V) - unigram_loss(streams["val"])
    _, blessing = run_executor(tmp_path / "strict", data, models["uniform"],
                               baseline_model=models["unigram"], max_regression=gap - 0.01)
    assert blessing.get_int_custom_property("blessed") == 0
    assert os.path.isfile(os.path.join(blessing.uri, "NOT_BLESSED"))
    assert not os.path.exists(os.path.join(blessing.uri, "BLESSED"))
    assert "worse than the last blessed" in blessing.get_string_custom_property("blessing_reason")
    assert blessing.get_int_custom_property("current_model_id") == 12
    assert blessing.get_int_custom_property("baseline_model_id") == 13
    # The resolver may hand back the candidate itself (a rerun whose Trainer was cached): evaluated
    # once, and not blessed again, so that the Pusher does not push the same model twice.
    evaluation, blessing = run_executor(tmp_path / "same", data, models["uniform"],
                                        baseline_model=models["uniform"])
    assert blessing.get_int_custom_property("blessed") == 0
    assert "already blessed" in blessing.get_string_custom_property("blessing_reason")
    assert evaluation.get_float_custom_property("last_blessed_val_loss") == \
        evaluation.get_float_custom_property("candidate_val_loss")
    # Within the tolerance, the same comparison blesses, once the unigram baseline does not gate.
    _, blessing = run_executor(tmp_path / "tolerant", data, models["uniform"],
                               baseline_model=models["unigram"], max_regression=gap + 0.01, beat_unigram=False)
    assert blessing.get_int_custom_property("blessed") == 1
    # By default a model no better than each token's train-split frequency is not blessed.
    _, blessing = run_executor(tmp_path / "trivial", data, models["uniform"])
    assert blessing.get_int_custom_property("blessed") == 0
    assert "is no better than the unigram baseline's" in blessing.get_string_custom_property("blessing_reason")


def test_a_last_blessed_model_of_other_tokens_is_not_compared_and_the_reason_says_why(tmp_path, data, models):
    """A last blessed model trained on other characters (a run on other data in the same output)
    covers the data's ids but reads them as other text: it is not compared, and the blessing's
    reason names it rather than saying there was none; with the data's own characters it is."""
    _, blessing = run_executor(tmp_path / "strict", data, models["uniform"], baseline_model=models["unigram"],
                               max_regression=0.0, beat_unigram=False)
    assert blessing.get_int_custom_property("blessed") == 0  # compared: worse than the unigram model
    for name, chars, compared in (("other", CHARS[::-1], False), ("same", CHARS, True)):
        model_dir, run_dir = tmp_path / name / "model", tmp_path / name / "run"
        shutil.copytree(models["unigram"].uri, model_dir)
        os.makedirs(run_dir)
        (run_dir / "tokenizer.json").write_text(json.dumps({"kind": "char", "chars": list(chars)}))
        (model_dir / artifact_layout.RUN_DIR_POINTER).write_text(str(run_dir))
        last = standard_artifacts.Model()
        last.uri, last.id = str(model_dir), 14
        evaluation, blessing = run_executor(tmp_path / name, data, models["uniform"], baseline_model=last,
                                            max_regression=0.0, beat_unigram=False)
        reason = blessing.get_string_custom_property("blessing_reason")
        assert evaluation.has_custom_property("last_blessed_val_loss") == compared, name
        if not compared:
            assert blessing.get_int_custom_property("blessed") == 1
            assert reason == (f"blessed: the last blessed model not compared: it was trained on other tokens: the "
                              f"same {V} characters with other ids")
        else:
            assert blessing.get_int_custom_property("blessed") == 0 and "worse than the last blessed" in reason


def test_a_last_blessed_model_whose_files_are_gone_is_not_compared_and_the_reason_says_so(tmp_path, data, models):
    """ML Metadata still records a last blessed model whose directory was deleted (or moved) by hand:
    the candidate is judged without it, and the reason says so, instead of a FileNotFoundError."""
    gone = standard_artifacts.Model()
    gone.uri, gone.id = str(tmp_path / "deleted" / "model"), 14
    evaluation, blessing = run_executor(tmp_path / "run", data, models["uniform"], baseline_model=gone,
                                        max_regression=0.0, beat_unigram=False)
    assert blessing.get_int_custom_property("blessed") == 1
    assert not evaluation.has_custom_property("last_blessed_val_loss")
    assert blessing.get_string_custom_property("blessing_reason") == (
        f"blessed: the last blessed model not compared: its files are gone ({gone.uri}/Format-HF: moved or deleted)")
    emptied = standard_artifacts.Model()  # its directory left, its checkpoint deleted
    emptied.uri, emptied.id = str(tmp_path / "emptied" / "model"), 15
    os.makedirs(emptied.uri)
    _, blessing = run_executor(tmp_path / "run_emptied", data, models["uniform"], baseline_model=emptied,
                               max_regression=0.0, beat_unigram=False)
    assert blessing.get_string_custom_property("blessing_reason").endswith(
        f"its files are gone ({emptied.uri}/Format-HF: moved or deleted)")


def test_not_blessed_above_threshold_without_last_blessed(tmp_path, data, models):
    examples, streams, _ = data
    evaluation, blessing = run_executor(tmp_path, data, models["unigram"],
                                        val_loss_threshold=unigram_loss(streams["val"]) - 0.05)
    assert blessing.get_int_custom_property("blessed") == 0
    assert os.path.isfile(os.path.join(blessing.uri, "NOT_BLESSED"))
    assert "not below val_loss_threshold" in blessing.get_string_custom_property("blessing_reason")
    assert not blessing.has_custom_property("baseline_model_id")
    assert evaluation.get_int_custom_property("blessed") == 0
    text = open(os.path.join(evaluation.uri, "report.md")).read()
    assert "**Decision: NOT BLESSED**" in text and "judged without one" in text
    with open(os.path.join(evaluation.uri, "loss_curves.png"), "rb") as f:  # no history: still a plot
        assert f.read(8) == PNG_MAGIC


def test_baselines_from_local_checkpoints(tmp_path, data, models, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="absl")
    examples, _, _ = data
    hf_dir = str(tmp_path / "hf_baseline")
    tiny_gpt(seed=3).save_pretrained(hf_dir)
    small_vocab = str(tmp_path / "small_vocab")
    tiny_gpt(vocab_size=V - 4).save_pretrained(small_vocab)
    uniform_hf = os.path.join(models["uniform"].uri, artifact_layout.HF_CHECKPOINT_DIR)
    evaluation, blessing = run_executor(tmp_path, data, models["unigram"], model_run=models["run"],
                                        baselines=[hf_dir, uniform_hf, small_vocab],
                                        eval_block_size=8)
    assert evaluation.get_int_custom_property("eval_block_size") == 8
    direct = GPT.from_pretrained(hf_dir)
    windows = ev.load_windows(examples.uri, block_size=8, batch_size=8, eval_batches=0, seed=0, token_bytes=CHAR_BYTES)
    x = np.concatenate([b[0] for b in windows["val"].batches])
    y = np.concatenate([b[1] for b in windows["val"].batches])
    assert evaluation.get_float_custom_property("baseline_hf_baseline_val_loss") == \
        pytest.approx(float(cross_entropy(direct(x), y)), rel=1e-5)
    # A Model artifact's Format-HF is named after the artifact's directory.
    assert evaluation.get_float_custom_property("baseline_uniform_val_loss") == pytest.approx(math.log(V), rel=1e-6)
    skipped = evaluation.get_string_custom_property("baseline_small_vocab_skipped")
    assert "does not cover the data's token ids (up to 11)" in skipped
    assert not evaluation.has_custom_property("baseline_small_vocab_val_loss")
    text = open(os.path.join(evaluation.uri, "report.md")).read()
    assert "| hf_baseline | baseline |" in text and "baseline small_vocab skipped" in text
    assert blessing.get_int_custom_property("blessed") == 1  # baselines inform, they do not gate
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("LMEvaluator: ")]
    # first what every model is scored on, with the settings that change it
    assert lines.pop(0).startswith("LMEvaluator: scoring each model on the val split whole, ")
    assert "(--eval_batches=N: N random batches)" in caplog.text  # both splits whole in this test
    assert "the train split whole, " in caplog.text and "(--eval_train_batches=N: N random batches)" in caplog.text
    assert [line.split(" (")[0] for line in lines[:5]] == ["LMEvaluator: candidate", "LMEvaluator: unigram",
                                                           "LMEvaluator: hf_baseline", "LMEvaluator: uniform",
                                                           "LMEvaluator: small_vocab"]
    assert "val loss" in lines[2] and "val bpb" in lines[2] and "skipped: " in lines[4]  # a line per model

    # A baseline can gate: the candidate's val bpb within gate_margin of the baseline's, or better.
    for margin, blessed in ((0.0, 1), (-1.0, 0)):
        _, blessing = run_executor(tmp_path / f"gate{margin}", data, models["unigram"], baselines=[uniform_hf],
                                   gate_baseline=uniform_hf, gate_margin=margin)
        assert blessing.get_int_custom_property("blessed") == blessed
        assert "baseline uniform's" in blessing.get_string_custom_property("blessing_reason")


def test_a_gpt2_baseline_beside_characters_reads_the_val_text_in_its_own_tokens(tmp_path, data, models, bpe_dir):
    """Character data, a GPT-2-vocabulary baseline: the val split's characters decoded to text,
    encoded with GPT-2 BPE, windowed as the data's are, and compared in bits per byte."""
    from model.tokenizer import GPT2Tokenizer

    examples, streams, _ = data
    checkpoint = str(tmp_path / "tiny_gpt2")
    tiny_gpt(vocab_size=50257).save_pretrained(checkpoint)
    evaluation, _ = run_executor(tmp_path, data, models["unigram"], baselines=[checkpoint], bpe_dir=bpe_dir)
    bpe = GPT2Tokenizer(bpe_dir)
    ids = np.array(bpe.encode("".join(CHARS[t] for t in streams["val"])), np.int32)
    count = (len(ids) - 1) // 16
    windows = np.stack([ids[i * 16:i * 16 + 17] for i in range(count)])
    loss = float(cross_entropy(GPT.from_pretrained(checkpoint)(windows[:, :-1]), windows[:, 1:]))
    text_bytes = sum(len(bpe.encoding.decode_single_token_bytes(int(t))) for t in windows[:, 1:].flat)
    assert evaluation.get_float_custom_property("baseline_tiny_gpt2_val_loss") == pytest.approx(loss, rel=1e-5)
    assert evaluation.get_float_custom_property("baseline_tiny_gpt2_val_bpb") == \
        pytest.approx(loss * windows[:, 1:].size / math.log(2) / text_bytes, rel=1e-5)
    assert not evaluation.has_custom_property("baseline_tiny_gpt2_train_loss")  # the val text only
    text = open(os.path.join(evaluation.uri, "report.md")).read()
    assert "| tiny_gpt2 | baseline |" in text and "gpt2 (the val text, re-tokenized)" in text
    assert "compare their bits per byte" in text

    # Character examples without their vocabulary: the evaluator cannot count their bytes.
    char_examples = standard_artifacts.Examples()
    char_examples.uri = examples.uri
    char_examples.set_string_custom_property("tokenizer", "char")
    with pytest.raises(ValueError, match="character records; give the transform graph"):
        run_executor(tmp_path / "no_vocabulary", data, models["unigram"], examples=char_examples)


def test_gpt2_bpe_examples_count_the_bytes_their_tokens_decode_to(tmp_path, data, models, bpe_dir):
    """The same ids as GPT-2 BPE tokens (TokenizeText's `tokenizer` property): ids 0..11 are GPT-2's
    one-byte tokens '!' to ',', so bits per byte is the loss / ln 2; nanoGPT's OpenWebText figures
    are shown beside GPT-2 tokens."""
    examples, streams, _ = data
    bpe_examples = standard_artifacts.Examples()
    bpe_examples.uri = examples.uri
    bpe_examples.set_string_custom_property("tokenizer", "gpt2")
    evaluation, _ = run_executor(tmp_path, data, models["unigram"], examples=bpe_examples, bpe_dir=bpe_dir)
    loss = evaluation.get_float_custom_property("candidate_val_loss")
    assert evaluation.get_float_custom_property("candidate_val_bpb") == pytest.approx(loss / math.log(2), rel=1e-6)
    text = open(os.path.join(evaluation.uri, "report.md")).read()
    for reference in ("| gpt2 | 3.12 |", "| gpt2-medium | 2.84 |", "| gpt2-large | 2.67 |", "| gpt2-xl | 2.54 |"):
        assert reference in text


def test_bad_input_errors_name_what_is_wrong(tmp_path, data, models):
    examples, _, _ = data
    missing = str(tmp_path / "no_such_checkpoint")
    with pytest.raises(MissingFile, match="baseline .no_such_checkpoint..*no_such_checkpoint"):
        run_executor(tmp_path / "a", data, models["uniform"], baselines=[missing])
    empty_model = standard_artifacts.Model()
    empty_model.uri = str(tmp_path / "empty_model")
    with pytest.raises(FileNotFoundError, match="has no Format-HF"):
        run_executor(tmp_path / "b", data, empty_model)
    with pytest.raises(UsageError, match="context of 16 tokens, shorter than the evaluation block_size 32"):
        run_executor(tmp_path / "c", data, models["uniform"], eval_block_size=32)
    small = save_model(tiny_gpt(vocab_size=V - 1), tmp_path / "small", 20)
    with pytest.raises(UsageError, match="candidate model .* cannot be evaluated"):
        run_executor(tmp_path / "d", data, small)
    with pytest.raises(SettingError, match="expected a list"):
        run_executor(tmp_path / "e", data, models["uniform"], baselines="gpt2")


def test_artifacts_on_a_non_local_filesystem(tmp_path):
    """Examples, models, the run's history and the evaluation on TensorFlow's in-memory filesystem:
    tf.io.gfile, as gs:// on Vertex AI needs (the blessing stays local: TFX's own fileio, which
    writes its marker file, knows gs:// but not ram://)."""
    import tensorflow as tf

    root = f"ram://{tmp_path.name}"
    rng = np.random.default_rng(0)
    examples = standard_artifacts.Examples()
    examples.uri = f"{root}/examples"
    for split, n in (("train", 300), ("val", 200)):
        shards.write_split(shards.split_dir(examples.uri, split), [rng.choice(V, n, p=P).tolist()], chunk_size=64)
    candidate = save_model(unigram_gpt(), f"{root}/unigram", 13)
    last = save_model(uniform_gpt(), f"{root}/uniform", 12)
    run = standard_artifacts.ModelRun()
    run.uri = f"{root}/run"
    with tf.io.gfile.GFile(f"{run.uri}/{artifact_layout.HISTORY_FILE}", "w") as f:
        json.dump({"eval": [[0, 2.6, 2.61], [10, 2.3, 2.35]], "train": [[0, 2.6], [5, 2.4], [10, 2.3]]}, f)
    evaluation, blessing = standard_artifacts.ModelEvaluation(), standard_artifacts.ModelBlessing()
    evaluation.uri, blessing.uri = f"{root}/evaluation", str(tmp_path / "blessing")
    graph = standard_artifacts.TransformGraph()
    graph.uri = write_char_vocabulary(f"{root}/transform_graph")
    Executor().Do({"examples": [examples], "model": [candidate], "baseline_model": [last], "model_run": [run],
                   "transform_graph": [graph]},
                  {"evaluation": [evaluation], "blessing": [blessing]},
                  {"config": EvalConfig(baselines=[f"{root}/uniform/{artifact_layout.HF_CHECKPOINT_DIR}"]).to_json()})
    assert blessing.get_int_custom_property("blessed") == 1
    assert evaluation.get_float_custom_property("baseline_uniform_val_loss") == pytest.approx(math.log(V), rel=1e-6)
    with tf.io.gfile.GFile(f"{evaluation.uri}/metrics.json") as f:
        assert json.load(f)["blessed"] is True
    with tf.io.gfile.GFile(f"{evaluation.uri}/report.md") as f:
        assert "**Decision: BLESSED**" in f.read()
    with tf.io.gfile.GFile(f"{evaluation.uri}/loss_curves.png", "rb") as f:
        assert f.read().startswith(PNG_MAGIC)
    assert not os.path.exists(root)  # not a local directory named "ram:"


def test_decide_rules():
    assert ev.decide({"val_loss": 2.0}, threshold=None, last_blessed=None, max_regression=0.0)[0]
    assert not ev.decide({"val_loss": float("nan")}, threshold=None, last_blessed=None, max_regression=0.0)[0]
    assert ev.decide({"val_loss": 2.0}, threshold=None, last_blessed={"val_loss": 2.0}, max_regression=0.0)[0]
    blessed, reason = ev.decide({"val_loss": 2.5}, threshold=2.0, last_blessed={"val_loss": 2.0}, max_regression=0.1)
    assert not blessed and "threshold" in reason and "worse than the last blessed" in reason
    bars = [ev.Bar("the unigram baseline", 2.0, beat=True), ev.Bar("baseline gpt2", None, missing="skipped: why")]
    blessed, reason = ev.decide({"val_loss": 1.0, "val_bpb": 1.5}, threshold=None, last_blessed=None,
                                max_regression=0.0, bars=bars)
    assert not blessed and reason == ("not blessed: baseline gpt2 was not evaluated (skipped: why)")
    # a last blessed model that could not be compared is named as such, not as absent
    blessed, reason = ev.decide({"val_loss": 2.0}, threshold=None, last_blessed=None, max_regression=0.0,
                                uncompared="its vocabulary (65 tokens) does not cover the data's token ids")
    assert blessed and reason == ("blessed: the last blessed model not compared: its vocabulary (65 tokens) "
                                  "does not cover the data's token ids")


def test_a_full_disk_while_writing_the_outputs_leaves_nothing_and_the_rerun_completes(small_disk, data, models):
    """metrics.json and report.md fit in the two pages a filler file leaves, loss_curves.png does not."""
    examples, _, _ = data
    outputs = small_disk / "outputs"
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (shutil.disk_usage(small_disk).free - 2 * 4096))
    with pytest.raises(DiskFull) as failure:
        run_executor(outputs, data, models["unigram"], model_run=models["run"], val_loss_threshold=math.log(V))
    assert str(failure.value) == (f"no space left on the device writing the evaluation {outputs}/evaluation and "
                                  f"the blessing {outputs}/blessing: free space, then run again")
    assert os.listdir(outputs / "evaluation") == [] and os.listdir(outputs / "blessing") == []
    filler.unlink()
    evaluation, blessing = run_executor(outputs, data, models["unigram"], model_run=models["run"],
                                        val_loss_threshold=math.log(V))
    assert sorted(os.listdir(evaluation.uri)) == ["loss_curves.png", "metrics.json", "report.md"]
    assert os.listdir(blessing.uri) == ["BLESSED"]
    assert json.load(open(os.path.join(evaluation.uri, "metrics.json")))["blessed"] is True
