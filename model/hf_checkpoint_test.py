"""GPT-2 checkpoints: logits match transformers' TFGPT2LMHeadModel on import and after export."""

import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
from transformers import GPT2Config, TFGPT2LMHeadModel

from core.errors import MissingFile, UsageError
from model import GPT, GPTConfig
from model.hf_checkpoint import canonical_weight_name

MAX_ABS_DIFF = 1e-4  # float32


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    """A randomly initialised small GPT-2, saved by transformers as safetensors."""
    directory = str(tmp_path_factory.mktemp("hf_gpt2"))
    tf.keras.utils.set_random_seed(7)
    config = GPT2Config(n_layer=3, n_head=4, n_embd=64, n_positions=32, vocab_size=211)
    hf_model = TFGPT2LMHeadModel(config)
    hf_model(tf.constant([[0]]))  # build the variables
    # Random biases and LayerNorm parameters too, so that every tensor's mapping is exercised.
    rng = np.random.default_rng(0)
    for variable in hf_model.weights:
        if "bias" in variable.name or "beta" in variable.name or "gamma" in variable.name:
            variable.assign(variable + rng.normal(0, 0.1, variable.shape).astype(np.float32))
    hf_model.save_pretrained(directory, safe_serialization=True)
    return directory


def hf_logits(directory, ids):
    return TFGPT2LMHeadModel.from_pretrained(directory)(ids).logits.numpy()


IDS = tf.constant(np.random.default_rng(1).integers(0, 211, size=(2, 32)), tf.int32)


def test_import_matches_transformers(hf_dir):
    model = GPT.from_pretrained(hf_dir)
    assert (model.config.n_layer, model.config.n_head, model.config.n_embd) == (3, 4, 64)
    assert (model.config.block_size, model.config.vocab_size, model.config.bias) == (32, 211, True)
    ours = model(IDS).numpy()
    assert np.max(np.abs(ours - hf_logits(hf_dir, IDS))) <= MAX_ABS_DIFF


def test_export_round_trips_through_transformers(hf_dir, tmp_path):
    model = GPT.from_pretrained(hf_dir)
    export = str(tmp_path / "export")
    model.save_pretrained(export)
    assert sorted(os.listdir(export)) == ["config.json", "model.safetensors"]  # no temporary files left
    assert np.max(np.abs(model(IDS).numpy() - hf_logits(export, IDS))) <= MAX_ABS_DIFF
    again = GPT.from_pretrained(export)
    np.testing.assert_array_equal(again(IDS).numpy(), model(IDS).numpy())


def test_export_of_a_model_without_biases(tmp_path):
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=65, bias=False), seed=3)
    ids = tf.constant([[1, 5, 9, 33, 64, 0, 2]])
    model.save_pretrained(str(tmp_path))
    assert np.max(np.abs(model(ids).numpy() - hf_logits(str(tmp_path), ids))) <= MAX_ABS_DIFF


def test_overrides_dropout_and_block_size(hf_dir):
    model = GPT.from_pretrained(hf_dir, dropout=0.1, block_size=16)
    assert model.config.dropout == 0.1 and model.config.block_size == 16
    np.testing.assert_allclose(model(IDS[:, :16]).numpy(), hf_logits(hf_dir, IDS[:, :16]), atol=MAX_ABS_DIFF)
    with pytest.raises(ValueError, match=r"cannot override \['n_layer'\]"):
        GPT.from_pretrained(hf_dir, n_layer=2)


def test_missing_directory_is_named(tmp_path):
    missing = str(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no such directory"):
        GPT.from_pretrained(missing)


def test_directory_without_checkpoint_is_named(tmp_path):
    with pytest.raises(MissingFile, match=f"{tmp_path} is not a Hugging Face checkpoint"):
        GPT.from_pretrained(str(tmp_path))


def test_other_architecture_is_rejected(hf_dir, tmp_path):
    other = tmp_path / "bert"
    shutil.copytree(hf_dir, other)
    config = json.loads((other / "config.json").read_text())
    config.update(model_type="bert", architectures=["BertForMaskedLM"])
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(UsageError, match=r"holds a 'bert' checkpoint \(\['BertForMaskedLM'\]\), not a GPT-2"):
        GPT.from_pretrained(str(other))


def test_gpt2_variant_is_rejected(hf_dir, tmp_path):
    other = tmp_path / "relu"
    shutil.copytree(hf_dir, other)
    config = json.loads((other / "config.json").read_text())
    config["activation_function"] = "relu"
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="activation_function='relu'"):
        GPT.from_pretrained(str(other))


def test_checkpoint_without_safetensors_is_rejected(hf_dir, tmp_path):
    other = tmp_path / "h5"
    other.mkdir()
    shutil.copy(os.path.join(hf_dir, "config.json"), other)
    (other / "tf_model.h5").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="holds no model.safetensors"):
        GPT.from_pretrained(str(other))


def test_weights_of_the_wrong_shape_are_named(hf_dir, tmp_path):
    other = tmp_path / "wider"
    shutil.copytree(hf_dir, other)
    config = json.loads((other / "config.json").read_text())
    config["n_positions"] = 64
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"wpe.weight has shape \(32, 64\)"):
        GPT.from_pretrained(str(other))


@pytest.mark.parametrize("key, name", [
    ("h.0.attn.c_attn.weight", "h.0.attn.c_attn.weight"),
    ("transformer.h.11.mlp.c_proj.bias", "h.11.mlp.c_proj.bias"),
    ("transformer/h_._3/ln_1/gamma:0", "h.3.ln_1.weight"),
    ("tfgpt2_lm_head_model/transformer/wpe/embeddings:0", "wpe.weight"),
    ("transformer/ln_f/beta:0", "ln_f.bias"),
    ("h.0.attn.bias", None),
    ("h.0.attn.masked_bias", None),
    ("lm_head.weight", None),
])
def test_canonical_weight_names(key, name):
    assert canonical_weight_name(key) == name
