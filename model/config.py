"""Training configuration: every hyperparameter default lives here, and nowhere else.

The defaults are nanoGPT's train.py defaults (GPT-2 124M on OpenWebText); PRESETS mirror its
config/*.py files. Command lines override any field nanoGPT-style: `--key=value`.
"""

from __future__ import annotations

import ast
import dataclasses
import json
from typing import Dict, List, Optional

# What a training run's out_dir holds besides TensorBoard logs (model.train writes them; the
# pipeline's run_fn, sample.py and lineage read them).
MODEL_CONFIG_FILE = "model_config.json"
TRAIN_CONFIG_FILE = "train_config.json"
TOKENIZER_FILE = "tokenizer.json"
CHECKPOINT_DIR = "checkpoints"

# `dtype` (nanoGPT's option) -> the mixed-precision policy a GPT computes with (model/model.py).
POLICY_OF_DTYPE = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}


@dataclasses.dataclass
class TrainConfig:
    # I/O
    out_dir: str = "out"
    eval_interval: int = 2000
    log_interval: int = 1
    eval_iters: int = 200
    eval_only: bool = False  # if True, evaluate once and exit
    always_save_checkpoint: bool = True  # if True, save a checkpoint after each eval, else only on improvement
    init_from: str = "scratch"  # 'scratch', 'resume', or a GPT-2 name/checkpoint dir ('gpt2', 'gpt2-medium', ...)
    tensorboard: bool = True  # summaries under out_dir/tensorboard
    # data: token shards (a directory with Split-train/ and Split-val/), or a text file tokenized in process
    data_dir: str = ""
    text_file: str = ""
    tokenizer: str = "gpt2"  # for text_file: 'gpt2' (BPE) or 'char'
    bpe_dir: str = ""  # directory with GPT-2's vocab.bpe and encoder.json, for offline BPE
    gradient_accumulation_steps: int = 5 * 8  # used to simulate larger batch sizes; divided across replicas
    batch_size: int = 12  # micro-batch size per replica
    block_size: int = 1024
    # model
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0  # for pretraining 0 is good, for finetuning try 0.1+
    bias: bool = False  # biases inside LayerNorm and Linear layers?
    vocab_size: int = 0  # 0: from the data (GPT-2 BPE trains with the padded 50304, as nanoGPT)
    # AdamW optimizer
    learning_rate: float = 6e-4  # max learning rate
    max_iters: int = 600000  # total number of training iterations
    weight_decay: float = 1e-1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0  # clip gradients at this value, or disable if == 0.0
    # learning rate decay settings
    decay_lr: bool = True  # whether to decay the learning rate
    warmup_iters: int = 2000  # how many steps to warm up for
    lr_decay_iters: int = 600000  # should be ~= max_iters per Chinchilla
    min_lr: float = 6e-5  # minimum learning rate, should be ~= learning_rate/10 per Chinchilla
    # system
    strategy: str = "auto"  # 'auto', 'default', 'mirrored', 'multi_worker' (TF_CONFIG), 'tpu'
    tpu: str = ""  # TPU name or address for strategy='tpu' ('local' for a TPU VM)
    dtype: str = "float32"  # 'float32', 'bfloat16', or 'float16' (with dynamic loss scaling)
    compile: bool = False  # XLA (jit_compile) for the training step
    cpu_branches: int = 0  # on a CPU, run each micro-batch as this many parallel branches (0: one per core, 1: no split)
    peak_flops: float = 312e12  # the device's peak FLOP/s for MFU (A100 bfloat16 by default, as nanoGPT)
    seed: int = 1337
    rng: str = "tensorflow"  # draws of initial weights and batches: 'tensorflow', or 'nanogpt' (nanoGPT's own)

    def __post_init__(self):
        checks = {
            "dtype": self.dtype in POLICY_OF_DTYPE,
            "strategy": self.strategy in ("auto", "default", "mirrored", "multi_worker", "tpu"),
            "tokenizer": self.tokenizer in ("gpt2", "char"),
            "rng": self.rng in ("tensorflow", "nanogpt"),
            "gradient_accumulation_steps": self.gradient_accumulation_steps >= 1,
            "batch_size": self.batch_size >= 1,
            "eval_interval": self.eval_interval >= 1,
            "log_interval": self.log_interval >= 1,
            "eval_iters": self.eval_iters >= 1,
            "max_iters": self.max_iters >= 0,
            "grad_clip": self.grad_clip >= 0,
            "cpu_branches": self.cpu_branches >= 0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError("invalid training config: " + ", ".join(f"{n}={getattr(self, n)!r}" for n in bad))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


# nanoGPT's config/*.py files, as overrides of the defaults above.
PRESETS: Dict[str, dict] = {
    # nanoGPT's README "I only have a macbook" variant of config/train_shakespeare_char.py: the
    # default, sized for a CPU (2,000 iterations reach val loss ~1.89)
    "shakespeare_char": dict(
        out_dir="out-shakespeare-char", eval_interval=250, eval_iters=20, log_interval=10,
        always_save_checkpoint=False, tokenizer="char", gradient_accumulation_steps=1,
        batch_size=12, block_size=64, n_layer=4, n_head=4, n_embd=128, dropout=0.0, bias=False,
        learning_rate=1e-3, max_iters=2000, lr_decay_iters=2000, min_lr=1e-4, beta2=0.99,
        warmup_iters=100),
    # config/train_shakespeare_char.py as it is: a baby GPT for one GPU (minutes on an A100)
    "shakespeare_char_gpu": dict(
        out_dir="out-shakespeare-char", eval_interval=250, eval_iters=200, log_interval=10,
        always_save_checkpoint=False, tokenizer="char", gradient_accumulation_steps=1,
        batch_size=64, block_size=256, n_layer=6, n_head=6, n_embd=384, dropout=0.2,
        learning_rate=1e-3, max_iters=5000, lr_decay_iters=5000, min_lr=1e-4, beta2=0.99,
        warmup_iters=100),
    # config/train_shakespeare.py's data with BPE tokens, trained from scratch at the CPU size
    "shakespeare": dict(
        out_dir="out-shakespeare", eval_interval=250, eval_iters=20, log_interval=10,
        always_save_checkpoint=False, tokenizer="gpt2", gradient_accumulation_steps=1,
        batch_size=12, block_size=64, n_layer=4, n_head=4, n_embd=128, dropout=0.0, bias=False,
        learning_rate=1e-3, max_iters=2000, lr_decay_iters=2000, min_lr=1e-4, beta2=0.99,
        warmup_iters=100),
    # config/finetune_shakespeare.py: finetune gpt2-xl on Shakespeare BPE
    "finetune_shakespeare": dict(
        out_dir="out-shakespeare", eval_interval=5, eval_iters=40, init_from="gpt2-xl",
        always_save_checkpoint=False, batch_size=1, gradient_accumulation_steps=32,
        max_iters=20, learning_rate=3e-5, decay_lr=False),
    # config/train_gpt2.py: GPT-2 124M on OpenWebText, 8 GPUs x 12 x 1024 x 40 = ~0.5M tokens/iter
    "owt_gpt2_124m": dict(
        batch_size=12, block_size=1024, gradient_accumulation_steps=5 * 8, max_iters=600000,
        lr_decay_iters=600000, eval_interval=1000, eval_iters=200, log_interval=10,
        weight_decay=1e-1, dtype="bfloat16", compile=True),
    # config/eval_gpt2*.py: evaluate a released GPT-2 and exit
    **{f"eval_{name.replace('-', '_')}": dict(
        batch_size=8, eval_iters=500, eval_only=True, init_from=name)
        for name in ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")},
}


def parse_value(value: str):
    """A command-line value as a Python literal where it is one (numbers, booleans, lists), else
    the string itself."""
    try:
        return ast.literal_eval(value)
    except (SyntaxError, ValueError):
        return value


def parse_overrides(args: List[str]) -> dict:
    """nanoGPT's configurator: `--key=value` pairs, values parsed as Python literals where they
    are (numbers, booleans), else kept as strings. Unknown keys are an error."""
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    overrides = {}
    for arg in args:
        if not arg.startswith("--") or "=" not in arg:
            raise ValueError(f"expected --key=value, got {arg!r}")
        key, value = arg[2:].split("=", 1)
        if key not in fields and key != "preset":
            raise ValueError(f"unknown config key {key!r}")
        overrides[key] = parse_value(value)
    return overrides


def make_config(preset: Optional[str] = None, **overrides) -> TrainConfig:
    """A TrainConfig: the defaults, then a preset, then the overrides. Values are checked against
    the type of each field's default (an int may stand for a float)."""
    values = {}
    if preset:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; presets: {sorted(PRESETS)}")
        values.update(PRESETS[preset])
    values.update(overrides)
    defaults = TrainConfig()
    for key, value in values.items():
        if not hasattr(defaults, key):
            raise ValueError(f"unknown config key {key!r}")
        expected = type(getattr(defaults, key))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            values[key] = float(value)
        elif not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise ValueError(f"config {key}={value!r}: expected {expected.__name__}")
    return TrainConfig(**values)
