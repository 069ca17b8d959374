"""rng='nanogpt': PyTorch's generator replayed, nanoGPT's draws in nanoGPT's order.

The expected values were printed by PyTorch 2.14.1 (CPU): torch.manual_seed(1337), then
torch.randint, Tensor.normal_, or nanoGPT's model built by bench.nanogpt_parity.nanogpt_model and
the get_batch draws after it. (`python -m bench.nanogpt_parity` checks a whole run against PyTorch.)
"""

import numpy as np
import pytest

from training import nanogpt_rng
from training.config import make_config
from training.nanogpt_rng import BatchOffsets, TorchGenerator
from training.train import Trainer

# nanoGPT's model at n_layer=2, n_head=2, n_embd=12, block_size=8, vocab_size=21, seeded 1337:
# a few initial values (PyTorch's layout: Linear weights are (out, in)) and the first two batches
# of a train split of 900 tokens, batch_size=4.
FIRST3, LAST3 = (0, slice(0, 3)), (-1, slice(-3, None))
NANOGPT_INIT = {  # bias: {name: [(index, values)], "batches": (first train batch, first eval batch)}
    False: {"wte.weight": [(FIRST3, [0.0005509391194209456, 0.02727748639881611, -0.03360401466488838]),
                           (LAST3, [0.0011486951261758804, 0.006204715929925442, -0.0037588353734463453])],
            "wpe.weight": [(LAST3, [-0.010761057958006859, 0.015655217692255974, -0.018441002815961838])],
            "h.0.attn.c_attn.weight": [(FIRST3, [-0.0018941527232527733, 0.016667496412992477,
                                                 0.004205754492431879])],
            "h.1.mlp.c_proj.weight": [(LAST3, [0.014237205497920513, -0.012421990744769573,
                                               0.001848547370173037])],
            "batches": ([374, 185, 396, 708], [734, 766, 179, 802])},
    True: {"wte.weight": [(FIRST3, [-0.005949819460511208, -0.010836094617843628, 0.0077520376071333885]),
                          (LAST3, [0.01065616961568594, 0.035115111619234085, 0.014196307398378849])],
           "wpe.weight": [(LAST3, [-0.019417699426412582, 0.01552553754299879, 0.007053722627460957])],
           "h.0.attn.c_attn.weight": [(FIRST3, [-0.02505098283290863, -0.029180161654949188,
                                                -0.009702463634312153])],
           "h.1.mlp.c_proj.weight": [(LAST3, [0.009712831117212772, -0.01828823797404766,
                                              0.002714797854423523])],
           "batches": ([611, 215, 82, 566], [712, 190, 729, 426])},
}
SIZES = dict(n_layer=2, n_head=2, n_embd=12, block_size=8)


def test_the_generator_is_std_mt19937():
    """The C++ standard's check of std::mt19937: seeded 5489, its 10000th draw is 4123659995."""
    assert TorchGenerator(5489).raw(10000)[-1] == 4123659995


def test_randint_takes_one_draw_below_2_to_the_28_and_two_from_there():
    assert TorchGenerator(1337).randint(1000, 6).tolist() == [415, 957, 492, 0, 295, 753]
    assert TorchGenerator(1337).randint(2 ** 33, 4).tolist() == [6702424253, 913057000, 6627481049, 4440873306]
    assert nanogpt_rng.batch_draws(2 ** 28 - 1, 12) == 12 and nanogpt_rng.batch_draws(2 ** 28, 12) == 24


def test_normal_fills_blocks_of_16_and_redoes_a_ragged_tail():
    generator = TorchGenerator(1337)
    values = generator.normal([20], 0.02)  # torch.empty(20).normal_(0, 0.02)
    np.testing.assert_allclose(values[[0, 3, 4, 19]], [0.003615431720390916, -0.018304089084267616,
                                                       -0.04074299708008766, -0.04320071265101433], rtol=1e-5)
    assert generator.draws == 36  # 20 uniforms, then 16 more for the last 16 elements
    assert generator.randint(1000, 2).tolist() == [819, 433]  # what torch.randint draws next
    with pytest.raises(ValueError, match="12 elements"):
        generator.normal([12], 1.0)


@pytest.mark.parametrize("bias", [False, True])
def test_initial_weights_and_first_batches_are_nanogpts(bias):
    expected = NANOGPT_INIT[bias]
    generator = TorchGenerator(1337)
    weights = nanogpt_rng.initial_weights(generator, n_layer=2, n_embd=12, vocab_size=21, block_size=8, bias=bias)
    assert generator.draws == nanogpt_rng.initial_draws(n_layer=2, n_embd=12, vocab_size=21, block_size=8, bias=bias)
    for name, checks in expected.items():
        if name == "batches":
            continue
        value = nanogpt_rng.linear_transposed(name, weights[name])  # to torch's (out, in)
        for index, want in checks:
            np.testing.assert_allclose(value[index], want, rtol=1e-5, atol=1e-9, err_msg=name)
    assert sorted(weights) == sorted(["wte.weight", "wpe.weight"] + [
        f"h.{i}.{part}.weight" for i in range(2) for part in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")])
    assert [generator.randint(892, 4).tolist() for _ in range(2)] == [list(b) for b in expected["batches"]]


def test_batch_offsets_follow_nanogpts_loop_in_whatever_order_they_are_asked():
    """Micro-batch j, then after micro-batch i*A the evaluation of iteration i (train, then val);
    a run resumed at an iteration skips exactly the draws before it."""
    kw = dict(train_high=500, val_high=300, batch_size=2, accumulation_steps=2, eval_iters=3,
              evaluates=lambda i: i % 2 == 0)
    raw = TorchGenerator(7).raw(100)
    order = BatchOffsets(TorchGenerator(7), **kw)
    steps = {0: order.train(0)}  # asked before its evaluation
    evals = {0: order.evaluation(0)}
    steps[1], steps[2] = order.train(1), order.train(2)
    evals[2] = order.evaluation(2)
    take = iter(raw.tolist())

    def batch(high):
        return [next(take) % high for _ in range(2)]

    expect_steps, expect_evals = {}, {}
    micro = []
    for j in range(6):  # the stream as nanoGPT draws it
        micro.append(batch(500))
        if j % 2 == 0 and (j // 2) % 2 == 0:
            expect_evals[j // 2] = {"train": [batch(500) for _ in range(3)], "val": [batch(300) for _ in range(3)]}
    for step in range(3):
        expect_steps[step] = micro[2 * step:2 * step + 2]
    for step, offsets in steps.items():
        assert offsets.tolist() == expect_steps[step]
    for it, offsets in evals.items():
        assert {split: v.tolist() for split, v in offsets.items()} == expect_evals[it]
    assert order.evaluation(2)["train"].tolist() == expect_evals[2]["train"]  # asked again: the same
    with pytest.raises(ValueError, match="no evaluation batches at iteration 1"):
        order.evaluation(1)
    with pytest.raises(ValueError, match="asked for step 1, next is 3"):
        order.train(1)
    resumed = BatchOffsets(TorchGenerator(7), **kw, start_iter=2)
    assert resumed.evaluation(2)["val"].tolist() == expect_evals[2]["val"]
    assert resumed.train(2).tolist() == expect_steps[2]


@pytest.fixture
def alphabet_text(tmp_path):
    """1,000 characters of 21 distinct ones: a char vocabulary of 21, a train split of 900."""
    chars = "abcdefghijklmnopqrstu"
    path = tmp_path / "alphabet.txt"
    path.write_text("".join(chars[(i * 7 + i // 21) % 21] for i in range(1000)), encoding="utf-8")
    return str(path)


def test_a_trainer_with_rng_nanogpt_starts_where_nanogpt_does(tmp_path, alphabet_text):
    cfg = make_config(**SIZES, batch_size=4, tokenizer="char", text_file=alphabet_text, out_dir=str(tmp_path),
                      rng="nanogpt", tensorboard=False, eval_iters=2, gradient_accumulation_steps=1)
    trainer = Trainer(cfg, log=lambda *_: None)
    variables = trainer.model.named_variables()
    for name in ("wte.weight", "h.0.attn.c_attn.weight"):
        value = nanogpt_rng.linear_transposed(name, variables[name].numpy())
        index, want = NANOGPT_INIT[False][name][0]
        np.testing.assert_allclose(value[index], want, rtol=1e-5, atol=1e-9, err_msg=name)
    first, eval_first = NANOGPT_INIT[False]["batches"]
    evaluation = trainer.batches.offsets.evaluation(0)  # the loop's order: evaluate, then step 0
    assert trainer.batches.offsets.train(0).tolist() == [first]
    assert evaluation["train"][0].tolist() == eval_first
    x, y = trainer.train_data.windows(np.array(first))
    text = open(alphabet_text, encoding="utf-8").read()
    chars = sorted(set(text))
    assert "".join(chars[i] for i in x.numpy()[0]) == text[first[0]:first[0] + 8]
    np.testing.assert_array_equal(x.numpy()[:, 1:], y.numpy()[:, :-1])


def test_rng_nanogpt_names_what_it_cannot_replay(tmp_path, alphabet_text):
    with pytest.raises(ValueError, match="dropout=0.1"):
        Trainer(make_config(**SIZES, tokenizer="char", text_file=alphabet_text, out_dir=str(tmp_path),
                            rng="nanogpt", dropout=0.1), log=lambda *_: None)
    problems = nanogpt_rng.check_supported(replicas=2, dropout=0.0, init_from="gpt2")
    assert len(problems) == 2 and "2 replicas" in problems[0] and "init_from='gpt2'" in problems[1]
    assert nanogpt_rng.check_supported(replicas=1, dropout=0.0, init_from="resume") == []
    with pytest.raises(ValueError, match="rng='torch'"):
        make_config(rng="torch")
    with pytest.raises(ValueError, match="seed=-1"):
        TorchGenerator(-1)
