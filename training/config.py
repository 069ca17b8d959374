"""Training configuration: every hyperparameter default lives here, and nowhere else.

The defaults are nanoGPT's train.py defaults (GPT-2 124M on OpenWebText), except dtype and compile:
nanoGPT picks bfloat16 or float16 and torch.compile for its GPU; here float32 and no XLA run on any
device (owt_gpt2_124m sets bfloat16 and XLA; elsewhere `--dtype=bfloat16 --compile=True` on a GPU). PRESETS mirror its
config/*.py files. Command lines override any field nanoGPT-style: `--key=value`.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Dict, List, Optional

from core.settings import SettingError, Settings, check, coerce_values, setting, unknown
from model.presets import DTYPES
from model.tokenizer import TOKENIZERS
from core import settings

# What a training run's out_dir holds besides TensorBoard logs (training.train writes them; the
# pipeline's run_fn, sample.py and lineage read them).
MODEL_CONFIG_FILE = "model_config.json"
TRAIN_CONFIG_FILE = "train_config.json"
TOKENIZER_FILE = "tokenizer.json"
CHECKPOINT_DIR = "checkpoints"
TENSORBOARD_DIR = "tensorboard"

STRATEGIES = ("auto", "default", "mirrored", "multi_worker", "tpu")


@dataclasses.dataclass
class TrainConfig(Settings):
    # I/O
    out_dir: str = setting("out", "the run's directory: checkpoints, configs, TensorBoard logs", path=True)
    eval_interval: int = setting(2000, "evaluate train and val loss every this many iterations", minimum=1)
    log_interval: int = setting(1, "print the training loss every this many iterations", minimum=1)
    eval_iters: int = setting(200, "batches per split in each evaluation", minimum=1)
    eval_only: bool = setting(False, "evaluate once and exit")
    always_save_checkpoint: bool = setting(True, "save a checkpoint after each evaluation (False: only when val "
                                                 "loss improves)")
    checkpoint_minutes: float = setting(30.0, "also checkpoint between evaluations every this many minutes, so "
                                              "that a kill loses no more (0: only at evaluations)", minimum=0)
    init_from: str = setting("scratch", "'scratch', 'resume' (out_dir's latest checkpoint), a GPT-2 name "
                                        "(gpt2, gpt2-medium, gpt2-large, gpt2-xl) or a Hugging Face GPT-2 directory",
                              path=True)
    tensorboard: bool = setting(True, "write TensorBoard summaries under out_dir/tensorboard")
    # data: token shards (a directory with Split-train/ and Split-val/) or nanoGPT's prepared .bin files, or a
    # text file tokenized in process
    data_dir: str = setting("", "a directory of token shards (Split-train/, Split-val/), or nanoGPT's "
                                  "prepared train.bin and val.bin (meta.pkl for characters)", path=True)
    text_file: str = setting("", "a text file, tokenized in process (90% train, 10% val)", path=True)
    tokenizer: str = setting("gpt2", "for text_file: GPT-2 BPE or characters", choices=TOKENIZERS)
    bpe_dir: str = setting("", "a directory with GPT-2's vocab.bpe and encoder.json, for offline BPE", path=True)
    gradient_accumulation_steps: int = setting(5 * 8, "micro-batches per iteration (a larger batch); divided "
                                                      "across replicas", minimum=1)
    batch_size: int = setting(12, "micro-batch size per replica", minimum=1)
    block_size: int = setting(1024, "context length in tokens", minimum=1)
    # model
    n_layer: int = setting(12, "transformer blocks", minimum=1)
    n_head: int = setting(12, "attention heads (n_embd must be a multiple)", minimum=1)
    n_embd: int = setting(768, "embedding width", minimum=1)
    dropout: float = setting(0.0, "dropout probability (0 for pretraining, 0.1+ for finetuning)", minimum=0, below=1)
    bias: bool = setting(False, "biases inside LayerNorm and Linear layers")
    vocab_size: int = setting(0, "0: from the data (GPT-2 BPE trains with the padded 50304, as nanoGPT)", minimum=0)
    # AdamW optimizer
    learning_rate: float = setting(6e-4, "max learning rate", minimum=0)
    max_iters: int = setting(600000, "total number of training iterations", minimum=0)
    weight_decay: float = setting(1e-1, "AdamW weight decay (on matrices and embeddings only)", minimum=0)
    beta1: float = setting(0.9, "AdamW beta1", minimum=0, below=1)  # (at 1 the moments never move: torch refuses it)
    beta2: float = setting(0.95, "AdamW beta2", minimum=0, below=1)
    grad_clip: float = setting(1.0, "clip gradients at this global norm (0: no clipping)", minimum=0)
    # learning rate decay settings
    decay_lr: bool = setting(True, "decay the learning rate (warmup, then cosine to min_lr)")
    warmup_iters: int = setting(2000, "iterations of linear warmup", minimum=0)
    lr_decay_iters: int = setting(600000, "iterations of the cosine decay (~= max_iters per Chinchilla)", minimum=0)
    min_lr: float = setting(6e-5, "minimum learning rate (~= learning_rate/10 per Chinchilla)", minimum=0)
    # system
    strategy: str = setting("auto", "tf.distribute strategy; auto: TPU with --tpu, multi_worker when TF_CONFIG "
                                    "names several workers, mirrored with several GPUs, else one device",
                            choices=STRATEGIES)
    tpu: str = setting("", "TPU name or address for strategy=tpu ('local' on a TPU VM)")
    worker_wait_minutes: float = setting(10.0, "multi_worker: how long each worker waits for the others of "
                                               "TF_CONFIG to start before it stops, naming those missing (0: "
                                               "TensorFlow's own wait, without end)", minimum=0)
    dtype: str = setting("float32", "compute precision (float16 with dynamic loss scaling)", choices=DTYPES)
    compile: bool = setting(False, "compile the training step with XLA")
    cpu_branches: int = setting(0, "on a CPU, run each micro-batch as this many parallel branches (0: one per "
                                   "core, 1: no split)", minimum=0)
    peak_flops: float = setting(0.0, "the accelerator's peak FLOP/s for MFU (0: from training/devices.py's table of "
                                     "GPUs and TPUs; no MFU on a CPU)", minimum=0)
    seed: int = setting(1337, "seed of the initial weights and the batches")
    rng: str = setting("tensorflow", "random draws of initial weights and batches: TensorFlow's, or nanoGPT's own "
                                     "(replayed without PyTorch)", choices=("tensorflow", "nanogpt"))

    def __post_init__(self):
        check(self)
        if self.init_from == "scratch" and self.n_embd % self.n_head:
            raise SettingError(f"--n_embd={self.n_embd}: must be a multiple of --n_head={self.n_head}")
        context = gpt2_context(self.init_from)
        if context and self.block_size > context:
            raise SettingError(f"--block_size={self.block_size}: init_from={self.init_from!r} has a context of "
                               f"{context}, so block_size may be at most {context}")



# nanoGPT's config/*.py files, as overrides of the defaults above.
PRESETS: Dict[str, dict] = {
    # nanoGPT's README "I only have a macbook" variant of config/train_shakespeare_char.py: the
    # default, sized for a CPU (2,000 iterations reach val loss ~1.89); a line every 10 iterations,
    # not the README's every one (each line waits for its step: 2,000 lines, and slower)
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


def starts_from_checkpoint(init_from: str) -> bool:
    """Whether init_from names a checkpoint to start from (a GPT-2 name, a Hugging Face directory), not
    'scratch' nor 'resume'."""
    return init_from not in ("scratch", "resume")


def init_checkpoint_fields(init_from: str) -> Optional[dict]:
    """model/hf_files.py checkpoint_fields of the checkpoint init_from names (None for scratch, resume, a
    URI, or what is no checkpoint)."""
    from model.hf_files import checkpoint_fields

    return checkpoint_fields(init_from) if starts_from_checkpoint(init_from) else None


def gpt2_context(init_from: str) -> int:
    """The context length of the GPT-2 checkpoint init_from names (a GPT-2 name, or a local Hugging
    Face directory's config.json), else 0."""
    fields = init_checkpoint_fields(init_from)
    return int(fields["n_positions"] or 0) if fields else 0


def parse_overrides(args: List[str]) -> dict:
    """nanoGPT's configurator: `--key=value` pairs of TrainConfig fields (and --preset), each value
    of its field's type (core/settings.py's one parser). Unknown keys are an error."""
    return settings.parse_overrides(args, TrainConfig, extra=("preset",))


def make_config(preset: Optional[str] = None, **overrides) -> TrainConfig:
    """A TrainConfig: the defaults, then a preset, then the overrides. Values are checked against
    each field's type and allowed values (an int may stand for a float); SettingError otherwise."""
    values = {}
    if preset:
        if preset not in PRESETS:
            raise unknown(preset, PRESETS, "preset")
        values.update(PRESETS[preset])
    values.update(overrides)
    names = settings.fields(TrainConfig)
    for key in values:
        if key not in names:
            raise unknown(key, names)
    return TrainConfig(**coerce_values(values, TrainConfig))


# --- nanoGPT's config files (config/*.py) and command line -----------------------------------------

# Keys of nanoGPT's config files that mean nothing here, and why (one printed line each).
NANOGPT_IGNORED = {
    "wandb_log": "Weights & Biases logging is not built in: TensorBoard summaries go to out_dir/tensorboard",
    "wandb_project": "Weights & Biases logging is not built in: TensorBoard summaries go to out_dir/tensorboard",
    "wandb_run_name": "Weights & Biases logging is not built in: TensorBoard summaries go to out_dir/tensorboard",
    "backend": "tf.distribute picks the collective communication (nanoGPT's DDP backend)",
    "device": "TensorFlow places the work itself: every GPU it sees with strategy=auto (MirroredStrategy for "
              "several), else the CPU; CUDA_VISIBLE_DEVICES=\"\" forces the CPU",
}
# nanoGPT's `dataset` names: the pipeline preset that reads that data (runner.py) and the
# tokenizer that training.train's text_file uses.
NANOGPT_DATASETS = {"shakespeare_char": ("shakespeare_char", "char"), "shakespeare": ("shakespeare", "gpt2"),
                    "openwebtext": ("owt_gpt2_124m", None)}
NANOGPT_DEFAULT_DATASET = "openwebtext"  # nanoGPT's train.py, when a config file names none


def read_nanogpt_config(path: str, known, log=print) -> dict:
    """A nanoGPT config file's settings, read without running it (core/settings.py). Keys with no
    meaning here are dropped with a printed line saying why; a statement that is not a literal
    assignment is reported with its line (and is an error if it would set a setting); `dataset` is
    kept for the caller to map; any other key must be in `known` (SettingError naming its line)."""
    parsed = settings.read_config_file(path)
    values = {}
    for line, statement, names in parsed.skipped:
        meaningful = [n for n in names if n not in NANOGPT_IGNORED]
        if meaningful or not names and not statement.startswith(("import ", "from ")):
            raise SettingError(f"{path}:{line}: `{statement}` is not a literal assignment (config files are read, "
                               f"not run: write `name = value` with a literal value)")
        log(f"{path}:{line}: `{statement}` not run (config files are read, not run)")
    ignored = {}  # reason: the keys it covers, one printed line each
    for key, value in parsed.values.items():
        if key in NANOGPT_IGNORED:
            shown = f"{key}={value!r}"
            ignored.setdefault(NANOGPT_IGNORED[key], []).append(f"{parsed.lines[key]}: {shown}")
            continue
        if key == "dataset":
            if value not in NANOGPT_DATASETS:
                raise SettingError(f"{path}:{parsed.lines[key]}: dataset={value!r}: expected one of "
                                   f"{', '.join(NANOGPT_DATASETS)} (or give the data on the command line)")
        elif key not in known:
            error = unknown(key, known)
            raise SettingError(f"{path}:{parsed.lines[key]}: {error}")
        values[key] = value
    for reason, keys in ignored.items():
        log(f"{path}:{', '.join(keys)} ignored: {reason}")
    return values


def split_command_line(argv: List[str], log=print):
    """(config files, --key=value arguments) of a nanoGPT-style command line, each in its order;
    nanoGPT's keys that mean nothing here (--device=cpu, --wandb_log=True) dropped with a printed line."""
    files = [a for a in argv if not a.startswith("-")]
    args = []
    for arg in (a for a in argv if a.startswith("-")):
        key = arg[2:].split("=", 1)[0]
        if key in NANOGPT_IGNORED:
            log(f"{arg} ignored: {NANOGPT_IGNORED[key]}")
        else:
            args.append(arg)
    return files, args


def command_line_config(argv: List[str], log=print) -> TrainConfig:
    """`python -m training.train [CONFIG_FILE ...] [--key=value ...]` as nanoGPT's train.py: the defaults,
    --preset, then each config file and --key=value in turn (later ones win); SettingError if wrong."""
    from training.corpus import tiny_shakespeare

    files, args = split_command_line(argv, log)
    overrides = parse_overrides(args)
    preset = overrides.pop("preset", None)
    values, named = {}, None  # named: (the config file, its dataset)
    for path in files:
        file_values = read_nanogpt_config(path, settings.fields(TrainConfig), log)
        dataset = file_values.pop("dataset", None)
        if dataset:  # the dataset's tokens (OpenWebText's are GPT-2's), on its data or a --text_file
            values["tokenizer"], named = NANOGPT_DATASETS[dataset][1] or "gpt2", (path, dataset)
        values.update(file_values)
    values.update(overrides)
    if named and not values.get("text_file") and not values.get("data_dir"):  # the dataset's own data
        path, dataset = named
        prepared = os.path.join("data", dataset)  # where nanoGPT's train.py reads it, prepare.py wrote it
        if os.path.isfile(os.path.join(prepared, "train.bin")):
            log(f"{path}: dataset={dataset!r}: nanoGPT's prepared data in {prepared}{os.sep} (--data_dir)")
            values["data_dir"] = prepared
        elif NANOGPT_DATASETS[dataset][1] is None:
            raise SettingError(f"{path}: dataset={dataset!r}: training.train reads token shards or nanoGPT's "
                               f"prepared data (--data_dir; none in {prepared}{os.sep}) or a --text_file; tokenize "
                               f"OpenWebText with `runner.py run {path}`")
        else:
            make_config(preset, **values)  # checked first: a wrong setting is named before a download
            values["text_file"] = tiny_shakespeare()
    config = make_config(preset, **values)
    if not config.text_file and not config.data_dir:  # (a config file naming no dataset: nanoGPT's OpenWebText)
        owt = f"; `runner.py run {files[-1]}` tokenizes OpenWebText, its dataset" if files else ""
        raise SettingError(f"no training data: give --text_file=FILE (a text file, tokenized here) or --data_dir=DIR "
                           f"(token shards, or nanoGPT's train.bin and val.bin){owt}")
    from core.files import check_writable_directory

    # before TensorFlow and the data
    if config.text_file and "://" not in config.text_file and not os.path.isfile(config.text_file):
        raise SettingError(f"--text_file={config.text_file}: " + (
            "a folder, not a text file (`runner.py run --data=FOLDER` reads a folder's files)"
            if os.path.isdir(config.text_file) else "no such file"))
    if config.data_dir and "://" not in config.data_dir and not os.path.isdir(config.data_dir):
        raise SettingError(f"--data_dir={config.data_dir}: no such folder")
    check_writable_directory(config.out_dir, f"--out_dir={config.out_dir}")
    return config


def train_help(prog: str) -> str:
    import textwrap

    return "\n\n".join([
        f"usage: {prog} [CONFIG_FILE ...] [--preset=NAME] [--key=value ...]",
        textwrap.fill("nanoGPT's train.py in TensorFlow. CONFIG_FILE: a nanoGPT config file "
                      "(config/train_shakespeare_char.py ...), read, not run; the --key=value arguments override "
                      "it.", 100),
        textwrap.fill(f"--preset=NAME  a preset of training/config.py, under the config files and --key=value: "
                      f"{', '.join(PRESETS)}", 100, initial_indent="  ", subsequent_indent=" " * 17),
        settings.help_listing(TrainConfig, "training hyperparameters (defaults: nanoGPT's GPT-2 124M)")])
