"""nanoGPT and this engine, side by side from the same seed (needs PyTorch: `pip install torch`).

$ python -m bench.nanogpt_parity [--text_file=PATH] [--seed=1337] [--max_iters=2000]
$ PYTHON_WITH_TORCH -m bench.nanogpt_parity --nanogpt_only [--text_file=PATH] [--key=value ...]

nanoGPT's "I only have a macbook" run (the shakespeare_char preset) is trained twice: by a PyTorch
model written the way nanoGPT's model.py and train.py compute it (nn.GELU, scaled_dot_product_attention,
torch.optim.AdamW, clip_grad_norm_), seeded and drawing its initial weights and its batches from
PyTorch's generator in nanoGPT's order, so that it reproduces nanoGPT's own run; and by this
engine's Trainer with rng='nanogpt', which replays those draws without PyTorch
(training/nanogpt_rng.py). The initial weights are compared directly; where the loss curves part,
the engines (or the replayed draws) differ. Last line: `val_loss_nanogpt=<at max_iters>
val_loss_here=<at max_iters> max_loss_diff=<over the logged train losses> max_init_diff=<initial weights>`.

`--nanogpt_only` trains the PyTorch side alone and times it as nanoGPT's train.py does (each
iteration's wall time, a loss.item() in each as its log line at log_interval 1): the last line is
`bench.bench shakespeare_char`'s, `ms_per_iter=<median> val_loss=<at max_iters> iters=<n>`. It
imports no TensorFlow, so that it runs in any Python that has PyTorch and NumPy (PyTorch may have no
wheel for this project's Python): `python -m bench.bench vs_nanogpt` runs it beside this engine.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
import time

import numpy as np


def nanogpt_model(cfg, vocab_size: int):
    """nanoGPT's GPT in PyTorch, built and initialised as its model.py does it (the same draws
    from PyTorch's generator, in the same order), for cfg's sizes, bias and no dropout."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    C, H, T, bias = cfg.n_embd, cfg.n_head, cfg.block_size, cfg.bias

    class LayerNorm(nn.Module):  # nanoGPT's: a bias only when bias=True, eps 1e-5
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(C))
            self.bias = nn.Parameter(torch.zeros(C)) if bias else None

        def forward(self, x):
            return F.layer_norm(x, (C,), self.weight, self.bias, 1e-5)

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.c_attn, self.c_proj = nn.Linear(C, 3 * C, bias=bias), nn.Linear(C, C, bias=bias)

        def forward(self, x):
            b, t, _ = x.shape
            q, k, v = (z.view(b, t, H, C // H).transpose(1, 2) for z in self.c_attn(x).split(C, dim=2))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            return self.c_proj(y.transpose(1, 2).contiguous().view(b, t, C))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1, self.attn, self.ln_2 = LayerNorm(), Attention(), LayerNorm()
            self.mlp = nn.ModuleDict(dict(c_fc=nn.Linear(C, 4 * C, bias=bias), gelu=nn.GELU(),
                                          c_proj=nn.Linear(4 * C, C, bias=bias)))

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp.c_proj(self.mlp.gelu(self.mlp.c_fc(self.ln_2(x))))

    def init_weights(module):  # nanoGPT's GPT._init_weights
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, 0.0, 0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    class GPT(nn.Module):
        def __init__(self):  # modules created, then initialised, in nanoGPT's order: the same draws
            super().__init__()
            self.transformer = nn.ModuleDict(dict(
                wte=nn.Embedding(vocab_size, C), wpe=nn.Embedding(T, C), drop=nn.Dropout(0.0),
                h=nn.ModuleList([Block() for _ in range(cfg.n_layer)]), ln_f=LayerNorm()))
            self.lm_head = nn.Linear(C, vocab_size, bias=False)
            self.transformer.wte.weight = self.lm_head.weight
            self.apply(init_weights)
            for name, p in self.named_parameters():
                if name.endswith("c_proj.weight"):
                    nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * cfg.n_layer))

        def forward(self, idx, targets):
            x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(torch.arange(idx.shape[1])))
            for block in self.transformer.h:
                x = block(x)
            logits = self.lm_head(self.transformer.ln_f(x))
            return F.cross_entropy(logits.view(-1, vocab_size), targets.view(-1), ignore_index=-1)

    return GPT()


def nanogpt_run(cfg, train_ids: np.ndarray, val_ids: np.ndarray, vocab_size: int):
    """nanoGPT's run in PyTorch: its initial weights, its batches in the order it draws them, its
    train losses and evaluations. Returns (initial weights by GPT-2 name, evaluations, losses,
    each iteration's milliseconds as nanoGPT's train.py times them)."""
    import torch

    from training.schedule import get_lr

    T, B = cfg.block_size, cfg.batch_size

    torch.manual_seed(cfg.seed)
    model = nanogpt_model(cfg, vocab_size)
    initial = {name.replace("transformer.", ""): p.detach().numpy().copy() for name, p in model.named_parameters()}

    def get_batch(data):  # nanoGPT's get_batch: batch_size windows at random offsets
        ix = torch.randint(len(data) - T, (B,))
        x = np.stack([data[i:i + T] for i in ix.tolist()]).astype(np.int32)
        y = np.stack([data[i + 1:i + 1 + T] for i in ix.tolist()]).astype(np.int32)
        return x, y

    params = list(model.parameters())
    optimizer = torch.optim.AdamW([{"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
                                   {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}],
                                  lr=cfg.learning_rate, betas=(cfg.beta1, cfg.beta2))
    evaluations, losses, iter_ms = [], [], []
    x, y = get_batch(train_ids)
    t0 = time.perf_counter()
    for it in range(cfg.max_iters + 1):
        lr = get_lr(it, learning_rate=cfg.learning_rate, warmup_iters=cfg.warmup_iters,
                    lr_decay_iters=cfg.lr_decay_iters, min_lr=cfg.min_lr, decay_lr=cfg.decay_lr)
        for group in optimizer.param_groups:
            group["lr"] = lr
        if it % cfg.eval_interval == 0:
            model.eval()
            drawn = {split: [get_batch(data) for _ in range(cfg.eval_iters)]
                     for split, data in (("train", train_ids), ("val", val_ids))}
            with torch.no_grad():
                evaluations.append((it, *(float(np.mean([model(torch.from_numpy(a).long(), torch.from_numpy(b).long())
                                                         .item() for a, b in drawn[split]]))
                                          for split in ("train", "val"))))
            model.train()
        loss = model(torch.from_numpy(x).long(), torch.from_numpy(y).long())
        x, y = get_batch(train_ids)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        t1 = time.perf_counter()
        iter_ms.append((t1 - t0) * 1000)
        t0 = t1
    return initial, evaluations, losses, iter_ms


def nanogpt_only(cfg) -> None:
    """nanoGPT's run alone, timed (no TensorFlow imported): the text split and numbered by
    characters as its shakespeare_char/prepare.py does."""
    from model.tokenizer import get_tokenizer
    from training.corpus import split_train_val

    with open(cfg.text_file, encoding="utf-8") as f:
        text = f.read()
    tokenizer = get_tokenizer("char", text=text)
    train_ids, val_ids = (np.array(tokenizer.encode(part), np.uint16) for part in split_train_val(text))
    _, evaluations, _, iter_ms = nanogpt_run(cfg, train_ids, val_ids, tokenizer.vocab_size)
    print(f"ms_per_iter={float(np.median(iter_ms)):.2f} val_loss={evaluations[-1][2]:.4f} iters={cfg.max_iters}")


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from training.config import make_config, parse_overrides
    from training.corpus import tiny_shakespeare

    argv = sys.argv[1:] if argv is None else argv
    overrides = parse_overrides([a for a in argv if a != "--nanogpt_only"])
    overrides["text_file"] = tiny_shakespeare(overrides.get("text_file") or None)
    if "--nanogpt_only" in argv:
        return nanogpt_only(make_config("shakespeare_char", **{"log_interval": 1, **overrides}))
    with tempfile.TemporaryDirectory() as out_dir:
        cfg = make_config("shakespeare_char", **{"out_dir": out_dir, "tensorboard": False, "log_interval": 1,
                                                     **overrides, "rng": "nanogpt"})
        from training.nanogpt_rng import linear_transposed
        from training.train import Trainer

        trainer = Trainer(cfg, log=lambda *_: None)  # it splits the text 90/10 as nanoGPT's prepare.py
        train_ids, val_ids = (np.asarray(data.tokens) for data in (trainer.train_data, trainer.val_data))
        initial, evaluations, losses, _ = nanogpt_run(cfg, train_ids, val_ids, trainer.model.config.vocab_size)
        init_diff = 0.0
        for name, variable in trainer.model.named_variables().items():
            value = linear_transposed(name, initial[name])
            init_diff = max(init_diff, float(np.max(np.abs(variable.numpy() - value))))
        result = trainer.run()
    for (it, train_loss, val_loss), (_, train_here, val_here) in zip(evaluations, trainer.history):
        print(f"step {it}: nanoGPT train loss {train_loss:.4f}, val loss {val_loss:.4f} | "
              f"here train loss {train_here:.4f}, val loss {val_here:.4f}")
    diff = max(abs(a - b) for a, (_, b) in zip(losses, trainer.train_losses))
    print(f"val_loss_nanogpt={evaluations[-1][2]:.4f} val_loss_here={result['val']:.4f} max_loss_diff={diff:.2e} "
          f"max_init_diff={init_diff:.2e}")


if __name__ == "__main__":
    main()
