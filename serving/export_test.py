"""The SavedModel: loads with plain TensorFlow, generates and gives logits like the model."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from model import GPT, GPTConfig
from serving.export import export_saved_model
from model.tokenizer import CharTokenizer

CHARS = list("\n abcdefghij")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=len(CHARS)), seed=0)
    path = str(tmp_path_factory.mktemp("export") / "saved_model")
    export_saved_model(model, path, CharTokenizer(CHARS).to_json(), loop="graph")
    return model, path


def test_signatures_run_without_project_code(exported):
    model, path = exported
    code = f"""
import json, sys, tensorflow as tf
assert "model" not in sys.modules
m = tf.saved_model.load({path!r})
print(sorted(m.signatures))
ids = tf.constant([[1, 2, 3]])
out = m.signatures["generate"](idx=ids, max_new_tokens=tf.constant(5), temperature=tf.constant(0.0),
    top_k=tf.constant(0), top_p=tf.constant(1.0), seed=tf.constant(0, tf.int64), eot_token=tf.constant(-1),
    vocab_limit=tf.constant({len(CHARS)}))
print(json.dumps(out["tokens"].numpy().tolist()))
print(json.loads(m.signatures["tokenizer"]()["tokenizer"].numpy())["kind"])
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            cwd="/", env={**os.environ, "PYTHONPATH": ""})
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert lines[0] == str(sorted(["generate", "generate_text", "logits", "serving_default", "tokenizer"]))
    tokens = json.loads(lines[1])[0]
    expected = [1, 2, 3]
    for _ in range(5):  # greedy by full recomputation
        expected.append(int(np.argmax(model(tf.constant([expected]))[0, -1])))
    assert tokens == expected
    assert lines[2] == "char"


def test_logits_and_text_generation(exported):
    model, path = exported
    loaded = tf.saved_model.load(path)
    ids = tf.constant([[4, 5, 6, 7]])
    np.testing.assert_allclose(loaded.signatures["logits"](idx=ids)["logits"].numpy(), model(ids).numpy(), atol=1e-5)
    texts = loaded.signatures["generate_text"](
        prompt=tf.constant("abc"), num_samples=tf.constant(3), max_new_tokens=tf.constant(10),
        temperature=tf.constant(1.0), top_k=tf.constant(5), top_p=tf.constant(1.0),
        seed=tf.constant(7, tf.int64))["text"].numpy()
    assert len(texts) == 3 and all(t.decode().startswith("abc") and len(t.decode()) == 13 for t in texts)
    assert all(set(t.decode()) <= set(CHARS) for t in texts)


def test_saved_model_cli_runs_generate(exported):
    _, path = exported
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    result = subprocess.run(
        [cli, "run", "--dir", path, "--tag_set", "serve", "--signature_def", "generate", "--input_exprs",
         "idx=[[1,2]];max_new_tokens=4;temperature=0.8;top_k=3;top_p=1.0;seed=1;eot_token=-1;vocab_limit=12"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "tokens" in result.stdout and "lengths" in result.stdout


def _xla_functions(path):
    """Names of the SavedModel's functions that its loader must compile with XLA."""
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    return [fn.signature.name for fn in proto.meta_graphs[0].graph_def.library.function
            if fn.attr["_XlaMustCompile"].b]


def test_generate_gives_the_in_process_tokens_without_and_with_xla(exported, tmp_path):
    """The served generate signature gives the tokens of in-process generate(jit_compile=True) for
    the same seed, for any batch (1, 3, 8), prompt length and max_new_tokens (also past block_size
    16), from one saved graph: exported with loop="graph" (no XLA function, no custom op), and
    with loop="xla", whose prefill and decoding steps are XLA functions (saved as _XlaMustCompile;
    prompts padded to buckets 4, 2, 8, 16)."""
    from serving.generate import generate

    model, plain = exported
    assert _xla_functions(plain) == []
    compiled = export_saved_model(model, str(tmp_path / "xla"), CharTokenizer(CHARS).to_json(), loop="xla")
    assert any("prefill_and_steps" in name for name in _xla_functions(compiled))
    batch_8 = np.random.default_rng(0).integers(0, len(CHARS), (8, 5)).tolist()
    for path in (plain, compiled):
        signature = tf.saved_model.load(path).signatures["generate"]
        for prompt, n in (([[1, 2, 3]], 9), ([[4, 5], [6, 7], [8, 9]], 12), (batch_8, 7), ([[3] * 10], 20)):
            settings = dict(max_new_tokens=tf.constant(n), temperature=tf.constant(0.9), top_k=tf.constant(5),
                            top_p=tf.constant(1.0), seed=tf.constant(3, tf.int64), eot_token=tf.constant(-1),
                            vocab_limit=tf.constant(len(CHARS)))
            served = signature(idx=tf.constant(prompt, tf.int32), **settings)["tokens"].numpy()
            expected = generate(model, prompt, n, temperature=0.9, top_k=5, seed=3, jit_compile=True).tokens
            np.testing.assert_array_equal(served, expected)


def test_auto_exports_the_fastest_candidate_measured_here(exported, tmp_path):
    """serving_weights=auto and serving_loop=auto: the four candidates measured on this machine, the
    fastest exported (which one is the machine's business: the test checks the export is the one
    its record says was fastest), and the record in the SavedModel beside it."""
    from serving import describe_export
    from serving.export import export_record

    model, plain = exported
    assert export_record(plain)["measured_tokens_per_s"] == {}  # nothing auto: nothing measured
    path = export_saved_model(model, str(tmp_path / "auto"), CharTokenizer(CHARS).to_json(), weights="auto",
                              loop="auto")
    record = export_record(path)
    measured = record["measured_tokens_per_s"]
    assert sorted(measured) == ["bfloat16 graph", "bfloat16 xla", "float32 graph", "float32 xla"]
    assert all(rate > 0 for rate in measured.values())
    assert f"{record['weights']} {record['loop']}" == max(measured, key=measured.get)
    assert record["asked"] == {"weights": "auto", "loop": "auto"} and record["measured_on"]
    loaded = tf.saved_model.load(path)
    assert loaded.model.wte.weight.dtype == tf.as_dtype(record["weights"])
    assert bool(_xla_functions(path)) == (record["loop"] == "xla")
    assert describe_export(record).startswith(f"{record['weights']} weights, the {record['loop']} loop (the fastest")


def test_generate_picks_xla_for_small_layers_and_the_graph_for_large_ones(exported, monkeypatch):
    """In-process generate(jit_compile=None) and runner.py sample decide by the size of the layers."""
    from serving import generate as generate_module

    model, _ = exported
    params = model.get_num_params(non_embedding=False)
    uses_xla = generate_module.uses_xla
    assert uses_xla(model, "auto") and uses_xla(model, "xla") and not uses_xla(model, "graph")
    # as if the model's layers were larger than the bound
    monkeypatch.setattr(generate_module, "XLA_LOOP_MAX_PARAMS_PER_LAYER", params // model.config.n_layer - 1)
    assert not uses_xla(model, "auto")
    with pytest.raises(ValueError, match="loop must be one of"):
        uses_xla(model, "fast")


def test_bfloat16_serving_weights(exported, tmp_path):
    model, _ = exported
    path = export_saved_model(model, str(tmp_path / "bf16"), CharTokenizer(CHARS).to_json(), weights="bfloat16",
                              loop="graph")
    loaded = tf.saved_model.load(path)
    assert loaded.model.wte.weight.dtype == tf.bfloat16 and loaded.model.ln_f.weight.dtype == tf.float32
    ids = tf.constant([[4, 5, 6, 7]])
    np.testing.assert_allclose(loaded.signatures["logits"](idx=ids)["logits"].numpy(), model(ids).numpy(), atol=0.05)
    with pytest.raises(ValueError, match="weights"):
        export_saved_model(model, str(tmp_path / "bad"), CharTokenizer(CHARS).to_json(), weights="float8")
