"""Generation tests: the key/value cache gives exactly nanoGPT's tokens; sampling options; errors."""

import functools

import numpy as np
import pytest
import tensorflow as tf

from model import GPT, GPTConfig
from serving.generate import generate, generate_uncached, last_logits, serving_function

VOCAB = 97
BLOCK = 32
# Without XLA: one graph serves every shape, so most tests build it once per model.
gen = functools.partial(generate, jit_compile=False)


@pytest.fixture(scope="module")
def model():
    """A small random GPT. Its matmul weights are scaled up: at GPT's initial scale the logits are
    nearly flat and greedy decoding settles on one repeated token, a weak comparison."""
    m = GPT(GPTConfig(n_layer=2, n_head=4, n_embd=32, block_size=BLOCK, vocab_size=VOCAB), seed=1)
    for variable in m.named_variables().values():
        if variable.shape.rank == 2:
            variable.assign(variable * 20.0)
    return m


PROMPT = [[1, 2, 3]]
LONG_PROMPT = np.random.default_rng(0).integers(0, VOCAB, (1, BLOCK + 13))


@pytest.mark.parametrize("jit_compile", [True, False], ids=["xla", "graph"])
def test_greedy_cache_equals_full_recomputation_for_200_steps(model, jit_compile):
    # block_size 32: the first 29 tokens use the cache, the other 171 slide the window
    reference = generate_uncached(model, PROMPT, 200, temperature=0.0)
    result = generate(model, PROMPT, 200, temperature=0.0, jit_compile=jit_compile)
    np.testing.assert_array_equal(result.tokens, reference.tokens)
    assert result.tokens.shape == (1, 203) and result.lengths.tolist() == [203]
    assert len(set(result.tokens[0, 3:].tolist())) > 20, "greedy decoding degenerated"


def test_cache_logits_match_the_full_forward(model):
    """Within block_size, the cached steps compute the same logits as the full forward."""
    ids = tf.constant(np.random.default_rng(1).integers(0, VOCAB, (2, BLOCK)), tf.int32)
    logits, cache = model.call_with_cache(ids[:, :5], model.empty_cache(2), 0)  # prefill 5 tokens
    np.testing.assert_allclose(logits, model(ids[:, :5])[:, -1], rtol=1e-5, atol=1e-4)
    # a prompt padded to 8 positions (the serving graph's buckets): the logits at its last real
    # token, and the steps that overwrite the padding's slots, are those of the unpadded prompt
    padded = tf.concat([ids[:, :5], tf.zeros([2, 3], tf.int32)], axis=1)
    padded_logits, padded_cache = model.call_with_cache(padded, model.empty_cache(2), 0, last=tf.constant(4))
    np.testing.assert_allclose(padded_logits, logits, rtol=1e-5, atol=1e-4)
    step_logits, _ = model.call_with_cache(ids[:, 5:6], padded_cache, 5)
    np.testing.assert_allclose(step_logits, model(ids[:, :6])[:, -1], rtol=1e-5, atol=1e-4)
    full = model(ids).numpy()
    for t in range(5, BLOCK):
        logits, cache = model.call_with_cache(ids[:, t:t + 1], cache, t)
        np.testing.assert_allclose(logits, full[:, t], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("jit_compile", [True, False], ids=["xla", "graph"])
def test_prompt_longer_than_block_size_is_cropped_like_nanogpt(model, jit_compile):
    reference = generate_uncached(model, LONG_PROMPT, 20, temperature=0.0)
    result = generate(model, LONG_PROMPT, 20, temperature=0.0, jit_compile=jit_compile)
    np.testing.assert_array_equal(result.tokens, reference.tokens)
    np.testing.assert_array_equal(result.tokens[:, :BLOCK + 13], LONG_PROMPT)  # the whole prompt is kept
    cropped = gen(model, LONG_PROMPT[:, -BLOCK:], 20, temperature=0.0)  # only the last block counts
    np.testing.assert_array_equal(result.tokens[:, -20:], cropped.tokens[:, -20:])


def test_seeded_sampling_is_reproducible_and_matches_recomputation(model):
    kw = dict(temperature=1.0, seed=5)
    first = gen(model, PROMPT, 60, **kw)
    np.testing.assert_array_equal(gen(model, PROMPT, 60, **kw).tokens, first.tokens)
    np.testing.assert_array_equal(generate(model, PROMPT, 60, jit_compile=True, **kw).tokens, first.tokens)
    np.testing.assert_array_equal(generate_uncached(model, PROMPT, 60, **kw).tokens, first.tokens)
    other = gen(model, PROMPT, 60, temperature=1.0, seed=6)
    assert np.mean(other.tokens[0, 3:] != first.tokens[0, 3:]) > 0.5
    greedy = gen(model, PROMPT, 60, temperature=0.0)
    assert np.mean(greedy.tokens[0, 3:] != first.tokens[0, 3:]) > 0.5, "sampling looks greedy"


def test_top_k_1_and_tiny_top_p_are_greedy(model):
    greedy = gen(model, PROMPT, 50, temperature=0.0).tokens
    np.testing.assert_array_equal(gen(model, PROMPT, 50, temperature=1.5, top_k=1, seed=3).tokens, greedy)
    np.testing.assert_array_equal(gen(model, PROMPT, 50, temperature=1.5, top_p=1e-6, seed=3).tokens, greedy)


def _step_logits(model, tokens, prompt_len):
    """The logits each new token of each row was sampled from, by the full forward."""
    out = []
    for t in range(prompt_len, tokens.shape[1]):
        out.append(last_logits(model, tf.constant(tokens[:, max(0, t - BLOCK):t])).numpy())
    return np.stack(out, axis=1)  # (B, steps, V)


def test_top_k_and_top_p_sample_only_inside_their_sets(model):
    temperature = 3.0  # flattens the distribution, so the cuts decide what can be sampled
    result = gen(model, PROMPT, 12, temperature=temperature, top_k=5, seed=0, num_samples=16)
    logits = _step_logits(model, result.tokens, 3)
    new = result.tokens[:, 3:]
    ranks = np.sum(logits > np.take_along_axis(logits, new[..., None], -1), axis=-1)
    assert ranks.max() < 5 and ranks.max() > 0

    top_p = 0.6
    result = gen(model, PROMPT, 12, temperature=temperature, top_p=top_p, seed=0, num_samples=16)
    logits = _step_logits(model, result.tokens, 3) / temperature
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    new = result.tokens[:, 3:]
    chosen = np.take_along_axis(probs, new[..., None], -1)[..., 0]
    # the probability mass of the tokens more likely than the chosen one is below top_p
    mass_above = np.sum(np.where(probs > chosen[..., None], probs, 0.0), axis=-1)
    assert mass_above.max() < top_p and mass_above.max() > 0


def test_stop_at_eot_pads_finished_rows_and_reports_lengths(model):
    free = gen(model, PROMPT, 40, temperature=1.0, seed=11, num_samples=8)
    eot = int(np.bincount(free.tokens[:, 3:].ravel()).argmax())  # a token some rows emit
    result = gen(model, PROMPT, 40, temperature=1.0, seed=11, num_samples=8, eot_token=eot)
    np.testing.assert_array_equal(result.tokens, generate_uncached(
        model, PROMPT, 40, temperature=1.0, seed=11, num_samples=8, eot_token=eot).tokens)
    ended = 0
    for row, free_row, length in zip(result.tokens, free.tokens, result.lengths):
        hits = np.flatnonzero(free_row[3:] == eot)
        expected = 3 + hits[0] + 1 if hits.size else 43
        assert length == expected
        np.testing.assert_array_equal(row[:length], free_row[:length])  # same tokens up to the end
        assert np.all(row[length:] == eot)
        ended += bool(hits.size)
    assert 0 < ended < 8, "the test needs rows that end and rows that do not"
    # greedy with every row ending: the loop stops early and the rest is padding
    greedy = gen(model, PROMPT, 40, temperature=0.0).tokens[0]
    stop = int(greedy[10])
    first = 3 + int(np.flatnonzero(greedy[3:] == stop)[0])
    stopped = gen(model, PROMPT, 40, temperature=0.0, eot_token=stop)
    assert stopped.lengths.tolist() == [first + 1]
    assert stopped.rows() == [greedy[:first + 1].tolist()]


def test_batch_of_prompts_and_samples(model):
    prompts = np.array([[1, 2, 3], [40, 50, 60]])
    result = gen(model, prompts, 30, temperature=0.0, num_samples=3)
    assert result.tokens.shape == (6, 33)
    for row in range(6):  # rows never mix: each equals its prompt decoded alone
        alone = gen(model, prompts[row // 3], 30, temperature=0.0).tokens[0]
        np.testing.assert_array_equal(result.tokens[row], alone)
    sampled = gen(model, [5, 6, 7], 30, temperature=1.0, seed=2, num_samples=4)
    assert sampled.tokens.shape == (4, 33)
    assert len({tuple(r) for r in sampled.tokens.tolist()}) == 4, "samples of one batch must differ"


def test_vocab_limit_is_never_exceeded(model):
    kw = dict(temperature=2.0, seed=4, num_samples=8)
    unlimited = gen(model, PROMPT, 30, **kw).tokens[:, 3:]
    assert unlimited.max() >= 50, "the test needs a model that samples ids >= 50"
    limited = gen(model, PROMPT, 30, vocab_limit=50, **kw).tokens[:, 3:]
    assert limited.max() < 50
    assert generate_uncached(model, PROMPT, 30, vocab_limit=50, **kw).tokens[:, 3:].max() < 50
    greedy = gen(model, PROMPT, 30, temperature=0.0, vocab_limit=50).tokens[:, 3:]
    assert greedy.max() < 50


def test_zero_new_tokens_and_mixed_precision(model):
    result = gen(model, PROMPT, 0)
    np.testing.assert_array_equal(result.tokens, PROMPT)
    assert result.lengths.tolist() == [3]
    bf16 = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=VOCAB),
               dtype_policy="mixed_bfloat16", seed=0)
    assert gen(bf16, PROMPT, 12, seed=0).tokens.shape == (1, 15)


@pytest.mark.parametrize("kwargs, argument", [
    (dict(idx=np.zeros((1, 0), np.int32)), "idx"),
    (dict(idx=[[1, VOCAB]]), "idx"),
    (dict(max_new_tokens=-1), "max_new_tokens"),
    (dict(temperature=-0.5), "temperature"),
    (dict(top_p=0.0), "top_p"),
    (dict(top_p=1.5), "top_p"),
    (dict(top_k=0), "top_k"),
    (dict(vocab_limit=VOCAB + 1), "vocab_limit"),
    (dict(eot_token=VOCAB), "eot_token"),
    (dict(num_samples=0), "num_samples"),
])
@pytest.mark.parametrize("fn", [generate, generate_uncached], ids=["cached", "uncached"])
def test_bad_arguments_are_named(model, fn, kwargs, argument):
    call = {"idx": PROMPT, "max_new_tokens": 5, **kwargs}
    with pytest.raises(ValueError, match=argument):
        fn(model, **call)


def test_serving_signature_round_trips_through_a_saved_model(model, tmp_path):
    module = tf.Module()
    module.model = model
    module.generate = serving_function(model)
    tf.saved_model.save(module, str(tmp_path), signatures={"generate": module.generate})
    served = tf.saved_model.load(str(tmp_path)).signatures["generate"]
    args = dict(max_new_tokens=tf.constant(50), temperature=tf.constant(0.9), top_k=tf.constant(10),
                top_p=tf.constant(1.0), seed=tf.constant(7, tf.int64), eot_token=tf.constant(-1),
                vocab_limit=tf.constant(VOCAB))
    out = served(idx=tf.constant(PROMPT, tf.int32), **args)
    expected = gen(model, PROMPT, 50, temperature=0.9, top_k=10, seed=7)
    np.testing.assert_array_equal(out["tokens"].numpy(), expected.tokens)
    np.testing.assert_array_equal(out["lengths"].numpy(), expected.lengths)
    with pytest.raises(tf.errors.InvalidArgumentError, match="top_p"):
        served(idx=tf.constant(PROMPT, tf.int32), **{**args, "top_p": tf.constant(0.0)})


def test_sampling_draws_from_the_softmax():
    from serving.sampling import sample_next

    logits = np.log(np.array([0.5, 0.25, 0.15, 0.07, 0.03], np.float32))
    rows = 40000
    for temperature in (1.0, 0.5):
        tokens = sample_next(np.tile(logits, (rows, 1)), seed=9, step=0, temperature=temperature, top_k=0,
                             top_p=1.0, vocab_limit=5).numpy()
        expected = np.exp(logits / temperature) / np.exp(logits / temperature).sum()
        frequencies = np.bincount(tokens, minlength=5) / rows
        np.testing.assert_allclose(frequencies, expected, atol=0.01)


def test_the_top_k_cut_is_the_same_by_bisection_and_by_tensorflow_top_k():
    """The graph without XLA finds top_k's threshold with tf.math.top_k, XLA by bisection: the same
    kept set, ties with the k-th logit included, -inf logits never kept above finite ones."""
    from serving.sampling import _top_k_top_p

    rng = np.random.default_rng(0)
    logits = rng.standard_normal((6, 300)).astype(np.float32)
    logits[1, :20] = 2.5  # 20 tied at the top: a cut at 5 keeps all of them
    logits[2] = np.round(logits[2])  # many ties everywhere
    logits[3, 250:] = -np.inf  # a masked vocabulary tail
    logits[4] = -logits[4]  # negative k-th logits
    for top_k in (1, 5, 37, 299, 300):
        by_bisection = _top_k_top_p(tf.constant(logits), top_k, 1.0, xla=True).numpy()
        by_top_k = _top_k_top_p(tf.constant(logits), top_k, 1.0, xla=False).numpy()
        np.testing.assert_array_equal(by_top_k, by_bisection)
        assert (np.isfinite(by_top_k).sum(axis=1) >= min(top_k, 250)).all()
    assert np.isfinite(_top_k_top_p(tf.constant(logits), 5, 1.0, xla=False).numpy()[1]).sum() == 20


def test_concurrent_calls_of_the_graph_without_xla_keep_their_caches_apart(model):
    """The graph without XLA writes its key/value cache in place: every call must have caches of
    its own, so calls from several threads at once give each its tokens alone."""
    import concurrent.futures

    prompts = [np.random.default_rng(i).integers(0, VOCAB, (1 + i % 2, 3 + i)) for i in range(6)]
    alone = [gen(model, p, 40, temperature=0.8, top_k=20, seed=i).tokens for i, p in enumerate(prompts)]
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        together = list(pool.map(lambda i: gen(model, prompts[i], 40, temperature=0.8, top_k=20, seed=i).tokens,
                                 range(6)))
    for a, b in zip(alone, together):
        np.testing.assert_array_equal(b, a)


@pytest.fixture(scope="module")
def trained(train_char_model, shakespeare_text):
    """A small GPT trained 300 iterations on characters of Tiny Shakespeare (held-out loss 2.45),
    with held-out text to score: the quality test of reduced-precision weights needs learned
    weights, not random ones."""
    from model.tokenizer import CharTokenizer

    trainer = train_char_model(200_000, n_layer=2, n_head=4, n_embd=64, block_size=64, batch_size=16, bias=True,
                               max_iters=300, eval_interval=300, warmup_iters=20, lr_decay_iters=300, min_lr=3e-4)
    text = shakespeare_text[:200_000]
    held_out = text[-4000:]  # from the validation split (the last 10%): never trained on
    return trainer.model, np.array(CharTokenizer.from_text(text).encode(held_out), np.int32)


def test_bfloat16_weights_decode_like_float32_on_a_trained_model(trained):
    """Quality of bfloat16 weights (serving/weights.py): on held-out text the logits stay within 0.1
    of float32's (they span ~15; measured 0.036), the loss within 0.2% (measured 0.01%), and
    greedy decoding gives the same 60 tokens from each of 4 prompts, with and without XLA
    (measured: the same 200)."""
    model, held_out = trained
    from serving.weights import with_weights

    bf16 = with_weights(model, "bfloat16")
    assert bf16.wte.weight.dtype == tf.bfloat16 and bf16.h[0].ln_1.weight.dtype == tf.float32
    windows = tf.constant(held_out[:8 * 64].reshape(8, 64))
    f32_logits, bf16_logits = model(windows).numpy(), bf16(windows).numpy()
    assert np.abs(f32_logits - bf16_logits).max() < 0.1
    targets = tf.constant(held_out[1:8 * 64 + 1].reshape(8, 64))
    losses = [float(tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(targets, logits)))
              for logits in (f32_logits, bf16_logits)]
    assert losses[0] < 2.6, f"the model did not learn (loss {losses[0]:.2f})"
    assert abs(losses[1] - losses[0]) < 0.002 * losses[0]
    prompts = held_out[1000:1000 + 4 * 8].reshape(4, 8)
    reference = generate(model, prompts, 60, temperature=0.0, jit_compile=False).tokens
    for jit_compile in (True, False):
        reduced = generate(model, prompts, 60, temperature=0.0, jit_compile=jit_compile, weights="bfloat16")
        np.testing.assert_array_equal(reduced.tokens, reference)
    with pytest.raises(ValueError, match="weights"):
        generate(model, prompts, 5, weights="int4")


def test_jit_compile_none_decodes_with_the_loop_that_auto_picks_for_the_model(monkeypatch):
    """generate(jit_compile=None), runner.py sample's default: XLA for a model of small layers,
    TensorFlow's own kernels when its layers pass XLA_LOOP_MAX_PARAMS_PER_LAYER."""
    from serving import generate as generate_module

    small = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=BLOCK, vocab_size=VOCAB), seed=2)
    assert generate_module.uses_xla(small, "auto")
    tokens = generate(small, PROMPT, 6, temperature=0.9, top_k=5, seed=3).tokens
    assert set(generate_module._generators[small]) == {(True, "float32")}
    monkeypatch.setattr(generate_module, "XLA_LOOP_MAX_PARAMS_PER_LAYER", 1)
    np.testing.assert_array_equal(generate(small, PROMPT, 6, temperature=0.9, top_k=5, seed=3).tokens, tokens)
    assert set(generate_module._generators[small]) == {(True, "float32"), (False, "float32")}
