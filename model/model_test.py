"""Tests of the GPT model: shapes, causality, parameter count, precision, compilation, errors."""

import numpy as np
import pytest
import tensorflow as tf

from model import GPT, GPTConfig
from model.model import cross_entropy
from model.presets import GPT2_VOCAB_SIZE, PADDED_VOCAB_SIZE

SMALL = dict(n_layer=2, n_head=4, n_embd=32, block_size=16, vocab_size=97)


def small_gpt(**overrides):
    return GPT(GPTConfig(**{**SMALL, **overrides}), seed=1234)


def random_ids(shape, vocab_size, seed=0):
    return tf.constant(np.random.default_rng(seed).integers(0, vocab_size, size=shape), tf.int32)


def test_logits_shape_and_dtype():
    model = small_gpt()
    logits = model(random_ids((3, 11), 97))
    assert logits.shape == (3, 11, 97)
    assert logits.dtype == tf.float32


def test_changing_a_token_never_changes_earlier_logits():
    model = small_gpt()
    idx = random_ids((1, 16), 97).numpy()
    base = model(idx).numpy()
    for t in range(16):
        changed = idx.copy()
        changed[0, t] = (changed[0, t] + 1) % 97
        logits = model(changed).numpy()
        np.testing.assert_array_equal(logits[:, :t], base[:, :t])
        assert not np.allclose(logits[:, t], base[:, t]), f"token {t} did not affect its own position"


def test_gpt2_124m_parameter_count():
    model = GPT(GPTConfig(vocab_size=GPT2_VOCAB_SIZE))  # gpt2's 12 layers, 12 heads, 768 wide
    assert model.get_num_params(non_embedding=False) == 124_439_808
    assert model.get_num_params() == 123_653_376  # nanoGPT's "123.65M": position embeddings excluded


def test_init_statistics_and_scaled_residual_projections():
    model = GPT(GPTConfig(n_layer=4, n_head=4, n_embd=256, block_size=64, vocab_size=1000), seed=0)
    named = model.named_variables()
    assert np.std(named["wte.weight"].numpy()) == pytest.approx(0.02, rel=0.05)
    assert np.std(named["h.0.mlp.c_fc.weight"].numpy()) == pytest.approx(0.02, rel=0.05)
    scaled = 0.02 / np.sqrt(2 * 4)
    assert np.std(named["h.3.attn.c_proj.weight"].numpy()) == pytest.approx(scaled, rel=0.05)
    assert np.std(named["h.3.mlp.c_proj.weight"].numpy()) == pytest.approx(scaled, rel=0.05)
    np.testing.assert_array_equal(named["h.1.ln_1.weight"].numpy(), 1.0)
    np.testing.assert_array_equal(named["h.1.attn.c_attn.bias"].numpy(), 0.0)


def test_same_seed_same_weights():
    a, b = small_gpt(), small_gpt()
    for (name, va), vb in zip(a.named_variables().items(), b.named_variables().values()):
        np.testing.assert_array_equal(va.numpy(), vb.numpy(), err_msg=name)


def test_parameter_groups_split_by_rank():
    model = small_gpt()
    decay, no_decay = model.parameter_groups()
    assert all(v.shape.rank >= 2 for v in decay) and all(v.shape.rank == 1 for v in no_decay)
    assert len(decay) == 2 + 2 * 4  # wte, wpe, and four matmul weights per block
    assert len(no_decay) == 2 * (4 + 4) + 2  # per block: 2 LayerNorms (gain, bias), 4 biases; ln_f
    assert sum(v.shape.num_elements() for v in decay + no_decay) == model.get_num_params(False)


def test_no_bias_model_has_no_bias_variables():
    model = small_gpt(bias=False)
    assert not [n for n in model.named_variables() if n.endswith(".bias")]
    _, no_decay = model.parameter_groups()
    assert len(no_decay) == 2 * 2 + 1  # LayerNorm gains only


def test_padded_vocabulary_trains_like_nanogpt():
    # nanoGPT pads GPT-2's 50257 tokens to 50304; the extra rows are never targets.
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=PADDED_VOCAB_SIZE))
    idx = random_ids((2, 8), GPT2_VOCAB_SIZE)
    with tf.GradientTape() as tape:
        logits = model(idx, training=True)
        loss = cross_entropy(logits[:, :-1], idx[:, 1:])
    assert logits.shape[-1] == PADDED_VOCAB_SIZE
    grads = tape.gradient(loss, list(model.named_variables().values()))
    assert all(g is not None for g in grads)
    assert abs(float(loss) - np.log(PADDED_VOCAB_SIZE)) < 0.5  # untrained: close to uniform


def test_crop_block_size():
    model = small_gpt()
    idx = random_ids((2, 8), 97)
    before = model(idx).numpy()
    model.crop_block_size(8)
    assert model.config.block_size == 8 and model.wpe.weight.shape == (8, 32)
    np.testing.assert_allclose(model(idx).numpy(), before, atol=1e-6)
    with pytest.raises(ValueError, match="block_size"):
        model(random_ids((1, 9), 97))


def test_cross_entropy_ignores_minus_one():
    logits = tf.random.normal([2, 5, 7], seed=3)
    targets = tf.constant([[1, 2, 3, -1, -1], [4, 5, 6, 0, -1]])
    expected = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.constant([1, 2, 3, 4, 5, 6, 0]),
        logits=tf.gather_nd(logits, [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2], [1, 3]]))
    assert float(cross_entropy(logits, targets)) == pytest.approx(float(tf.reduce_mean(expected)), rel=1e-6)


# Tolerances, on logits of about unit scale: bfloat16 keeps 8 bits of mantissa (relative error
# about 4e-3 per rounding, compounded over the layers); XLA reorders float32 sums only.
BF16_MAX_ABS_DIFF = 0.1
XLA_MAX_ABS_DIFF = 1e-4


def test_bfloat16_policy_agrees_with_float32():
    model = small_gpt()
    idx = random_ids((2, 16), 97)
    reference = model(idx).numpy()
    model_bf16 = GPT(model.config, dtype_policy="mixed_bfloat16")
    for src, dst in zip(model.named_variables().values(), model_bf16.named_variables().values()):
        dst.assign(src)
    logits = model_bf16(idx)
    assert logits.dtype == tf.float32
    assert all(v.dtype == tf.float32 for v in model_bf16.named_variables().values())  # master weights
    assert np.max(np.abs(logits.numpy() - reference)) <= BF16_MAX_ABS_DIFF


def test_xla_forward_agrees_with_eager():
    model = small_gpt()
    idx = random_ids((2, 16), 97)
    compiled = tf.function(lambda x: model(x), jit_compile=True)
    np.testing.assert_allclose(compiled(idx).numpy(), model(idx).numpy(), atol=XLA_MAX_ABS_DIFF, rtol=0)


def test_xla_compiled_forward_carries_no_assert_for_xla_to_drop():
    """XLA drops Assert ops with a warning for each at every compilation (a screenful in a compiled run);
    a plain graph keeps them (test_token_id_outside_vocabulary_is_rejected)."""
    model = small_gpt()
    for jit_compile, asserts in ((True, 0), (False, 3)):
        graph = tf.function(model.__call__, jit_compile=jit_compile).get_concrete_function(
            tf.TensorSpec([None, None], tf.int32)).graph
        assert sum(op.type == "Assert" for op in graph.get_operations()) == asserts, jit_compile


def test_xla_training_step_under_bfloat16():
    model = GPT(GPTConfig(**SMALL), dtype_policy="mixed_bfloat16", seed=0)
    idx = random_ids((2, 16), 97)
    variables = list(model.named_variables().values())

    @tf.function(jit_compile=True)
    def loss_and_grads(x):
        with tf.GradientTape() as tape:
            loss = cross_entropy(model(x[:, :-1], training=True), x[:, 1:])
        return loss, tape.gradient(loss, variables)

    loss, grads = loss_and_grads(idx)
    assert np.isfinite(float(loss))
    grads = [tf.convert_to_tensor(g) for g in grads]  # wpe's gradient comes as IndexedSlices
    assert all(g.dtype == tf.float32 and np.all(np.isfinite(g.numpy())) for g in grads)


@pytest.mark.parametrize("bad, message", [
    (dict(n_embd=30, n_head=4), r"n_embd \(30\) must be divisible by n_head \(4\)"),
    (dict(n_layer=0), "n_layer must be a positive integer"),
    (dict(dropout=1.0), "dropout"),
])
def test_bad_config_is_rejected(bad, message):
    with pytest.raises(ValueError, match=message):
        GPTConfig(**{**SMALL, **bad})


def test_sequence_longer_than_block_size_is_rejected():
    with pytest.raises(ValueError, match="length 17.*block_size is only 16"):
        small_gpt()(random_ids((1, 17), 97))


def test_sequence_longer_than_block_size_is_rejected_in_a_graph():
    model = small_gpt()
    forward = tf.function(model.__call__, input_signature=[tf.TensorSpec([None, None], tf.int32)])
    with pytest.raises(tf.errors.InvalidArgumentError, match="block_size 16"):
        forward(random_ids((1, 17), 97))


def test_token_id_outside_vocabulary_is_rejected():
    model = small_gpt()
    with pytest.raises(ValueError, match="Token id 97 is outside the vocabulary"):
        model(tf.constant([[1, 2, 97]]))
    with pytest.raises(ValueError, match="Token id -1"):
        model(tf.constant([[1, -1]]))
    forward = tf.function(model.__call__, input_signature=[tf.TensorSpec([None, None], tf.int32)])
    with pytest.raises(tf.errors.InvalidArgumentError, match="vocab_size 97"):
        forward(tf.constant([[5, 200]]))


def test_float_input_is_rejected():
    with pytest.raises(TypeError, match="integer token ids"):
        small_gpt()(tf.constant([[1.0, 2.0]]))


def test_unknown_dtype_policy_is_rejected():
    with pytest.raises(ValueError, match="dtype_policy"):
        GPT(GPTConfig(**SMALL), dtype_policy="float8")


@pytest.mark.parametrize("with_bias", [True, False])
def test_layer_norm_and_its_gradient_match_autodiff(with_bias):
    from model.model import LayerNorm

    ln = LayerNorm(16, bias=with_bias)
    ln.weight.assign(np.random.default_rng(0).normal(size=16).astype(np.float32))
    x = tf.random.normal([3, 5, 16], seed=1)
    upstream = tf.random.normal([3, 5, 16], seed=2)
    params = [ln.weight] + ([ln.bias] if with_bias else [])

    def reference(x):
        mean, var = tf.nn.moments(x, axes=[-1], keepdims=True)
        y = (x - mean) / tf.sqrt(var + 1e-5) * ln.weight
        return y + ln.bias if with_bias else y

    grads = []
    # training: the gradient written out; else TensorFlow's own of the same forward
    for fn in (lambda t: ln(t, training=True), ln, reference):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(fn(x) * upstream)
        grads.append(tape.gradient(loss, [x] + params))
        np.testing.assert_allclose(fn(x).numpy(), reference(x).numpy(), atol=1e-5)
    for written_out, plain, expected in zip(*grads):
        np.testing.assert_allclose(written_out.numpy(), expected.numpy(), atol=1e-4)
        np.testing.assert_allclose(plain.numpy(), expected.numpy(), atol=1e-4)


def test_gelu_and_its_gradient_match_tf_tanh_gelu():
    from model.kernels import gelu

    x = tf.random.normal([1000], stddev=3.0, seed=0)
    grads = []
    for fn in (lambda t: gelu(t, trained=True), gelu, lambda t: tf.nn.gelu(t, approximate=True)):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = fn(x)
        grads.append(tape.gradient(y, x).numpy())
    np.testing.assert_allclose(gelu(x, trained=True).numpy(), tf.nn.gelu(x, approximate=True).numpy(), atol=1e-6)
    np.testing.assert_array_equal(gelu(x).numpy(), gelu(x, trained=True).numpy())  # the same forward
    np.testing.assert_allclose(grads[0], grads[2], atol=1e-5)  # float32 rounding of two formulas
    np.testing.assert_allclose(grads[1], grads[2], atol=1e-5)


def test_cross_entropy_without_its_gradient_is_the_same_loss():
    # an evaluation's loss (log-softmax of each target) and the training's (the fused kernel that also
    # writes the gradient), with ignored targets, on logits as wide as GPT-2's vocabulary
    logits = tf.random.stateless_normal([2, 5, 50257], seed=[1, 2]) * 4.0
    targets = tf.constant([[3, 50256, -1, 0, 7], [1, -1, -1, 2, 50000]])
    for num_targets in (None, tf.constant(10.0)):
        fused = float(cross_entropy(logits, targets, num_targets=num_targets))
        plain = float(cross_entropy(logits, targets, num_targets=num_targets, differentiated=False))
        assert plain == pytest.approx(fused, rel=1e-6) and fused > 0
