"""Sample from a trained model: nanoGPT's sample.py, with the key/value cache of model/generate.py.

$ python -m model.sample --init_from=out-shakespeare-char --start="ROMEO:" --num_samples=3
$ python -m model.sample --init_from=gpt2 --start=FILE:prompt.txt --max_new_tokens=100

--init_from is a training run's out_dir (nanoGPT's init_from=resume: `--init_from=resume` reads
--out_dir), one of gpt2/gpt2-medium/gpt2-large/gpt2-xl, or a Hugging Face GPT-2 checkpoint
directory. The tokenizer comes with the model, never guessed: a run's out_dir holds its
tokenizer.json; GPT-2 checkpoints use GPT-2 BPE (offline: --bpe_dir or NANOGPT_TFX_BPE_DIR).

Every option is nanoGPT's `--key=value`; see DEFAULTS.
"""

from __future__ import annotations

import ast
import json
import os
import sys
from typing import List, Optional

DEFAULTS = dict(
    init_from="resume",  # a SavedModel, a training out_dir, 'resume' (then out_dir), a GPT-2 name or an HF dir
    out_dir="out",  # the run to resume when init_from='resume'
    start="\n",  # or "<|endoftext|>" etc. Can also specify a file, use as: "FILE:prompt.txt"
    num_samples=10,  # number of samples to draw
    max_new_tokens=500,  # number of tokens generated in each sample
    temperature=0.8,  # 1.0 = no change, < 1.0 = less random, > 1.0 = more random; 0 = greedy
    top_k=200,  # retain only the top_k most likely tokens, clamp others to have 0 probability; None: off
    top_p=1.0,  # nucleus sampling: the smallest set of tokens whose probability reaches top_p; 1.0: off
    seed=1337,
    dtype="float32",  # 'float32', 'bfloat16' or 'float16' (compute dtype; weights stay float32)
    # 'bfloat16': decode with a copy whose matmul weights are bfloat16 (GPT.with_weights; half the
    # bytes per token). Checkpoints only: a SavedModel's weights are the export's serving_weights
    weights="float32",
    compile=True,  # XLA for the generation loop (much faster on a CPU; compiled per prompt length)
    stop_at_eot=False,  # end a sample at the tokenizer's end-of-text token (GPT-2 BPE has one)
    bpe_dir="",  # directory with GPT-2's vocab.bpe and encoder.json, for offline BPE
)

SEPARATOR = "---------------"
_POLICY_OF_DTYPE = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}


def load_for_sampling(source: str, bpe_dir: Optional[str] = None, dtype: str = "float32"):
    """(model, tokenizer) from a training run's out_dir, a GPT-2 name, or a Hugging Face GPT-2
    checkpoint directory. From an out_dir only the model is restored from the latest checkpoint
    (the optimizer's slots are left unread)."""
    import tensorflow as tf

    from model import hf_checkpoint
    from model.model import GPT, GPT2_SIZES, GPTConfig
    from model.tokenizer import GPT2Tokenizer, tokenizer_from_json
    from model.config import CHECKPOINT_DIR, MODEL_CONFIG_FILE, TOKENIZER_FILE

    if dtype not in _POLICY_OF_DTYPE:
        raise ValueError(f"dtype must be one of {sorted(_POLICY_OF_DTYPE)}, got {dtype!r}")
    policy = _POLICY_OF_DTYPE[dtype]
    run_config = os.path.join(source, MODEL_CONFIG_FILE)
    if os.path.isfile(run_config):
        with open(run_config) as f:
            model = GPT(GPTConfig(**json.load(f)), dtype_policy=policy)
        tokenizer_path = os.path.join(source, TOKENIZER_FILE)
        if not os.path.isfile(tokenizer_path):
            raise FileNotFoundError(f"{source} holds no {TOKENIZER_FILE}: cannot tell how its tokens decode")
        with open(tokenizer_path) as f:
            tokenizer = tokenizer_from_json(json.load(f), bpe_dir=bpe_dir or None)
        latest = tf.train.latest_checkpoint(os.path.join(source, CHECKPOINT_DIR))
        if latest is None:
            raise FileNotFoundError(f"{source} holds no checkpoint under {CHECKPOINT_DIR}/")
        tf.train.Checkpoint(model=model).restore(latest).expect_partial().assert_existing_objects_matched()
        return model, tokenizer
    if source in GPT2_SIZES or os.path.isfile(os.path.join(source, hf_checkpoint.CONFIG_FILE)):
        return GPT.from_pretrained(source, dtype_policy=policy), GPT2Tokenizer(bpe_dir or None)
    raise FileNotFoundError(
        f"init_from={source!r}: not a training out_dir (no {MODEL_CONFIG_FILE}), not a Hugging Face "
        f"checkpoint directory (no {hf_checkpoint.CONFIG_FILE}), and not one of {sorted(GPT2_SIZES)}")


def read_start(start: str) -> str:
    """The prompt text: `start` itself, or the contents of the file named by "FILE:path"."""
    if start.startswith("FILE:"):
        with open(start[len("FILE:"):], encoding="utf-8") as f:
            return f.read()
    return start


def sample_tokens(model, tokenizer, start: str = "\n", num_samples: int = 10, max_new_tokens: int = 500,
                  temperature: float = 0.8, top_k: Optional[int] = 200, top_p: float = 1.0,
                  seed: Optional[int] = 1337, stop_at_eot: bool = False, jit_compile: bool = True,
                  weights: str = "float32"):
    """The Generation (token ids and lengths) of num_samples continuations of the start text.
    Only ids the tokenizer knows are sampled (a model trained with the padded vocabulary has
    more)."""
    from model.generate import generate

    ids = tokenizer.encode(read_start(start))
    if not ids:
        raise ValueError(f"start={start!r} encodes to no tokens: generation needs a prompt")
    eot = tokenizer.eot_token if stop_at_eot else None
    return generate(model, ids, max_new_tokens, temperature=temperature, top_k=top_k,
                    top_p=None if top_p == 1.0 else top_p, seed=seed, eot_token=eot,
                    vocab_limit=min(tokenizer.vocab_size, model.config.vocab_size),
                    num_samples=num_samples, jit_compile=jit_compile, weights=weights)


def sample(model, tokenizer, start: str = "\n", **kwargs) -> List[str]:
    """num_samples texts, each the prompt followed by its continuation (as nanoGPT prints them);
    keyword arguments as `sample_tokens`."""
    return [tokenizer.decode(row) for row in sample_tokens(model, tokenizer, start, **kwargs).rows()]


def is_saved_model(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "saved_model.pb"))


def sample_saved_model(path: str, start: str = "\n", num_samples: int = 10, max_new_tokens: int = 500,
                       temperature: float = 0.8, top_k: Optional[int] = 200, top_p: float = 1.0,
                       seed: Optional[int] = 1337, stop_at_eot: bool = False, bpe_dir: Optional[str] = None
                       ) -> List[str]:
    """`sample`, from an exported SavedModel (a pushed model): its `tokenizer` signature says how
    the model maps text, its `generate` signature samples."""
    import json

    import tensorflow as tf

    from model.tokenizer import tokenizer_from_json

    loaded = tf.saved_model.load(path)
    if "generate" not in loaded.signatures or "tokenizer" not in loaded.signatures:
        raise ValueError(f"{path} is not a nanogpt-tfx SavedModel: it lacks the generate and tokenizer signatures")
    tokenizer = tokenizer_from_json(json.loads(loaded.signatures["tokenizer"]()["tokenizer"].numpy()),
                                    bpe_dir or None)
    ids = tokenizer.encode(read_start(start))
    if not ids:
        raise ValueError(f"start={start!r} encodes to no tokens: generation needs a prompt")
    eot = tokenizer.eot_token if stop_at_eot and tokenizer.eot_token is not None else -1
    out = loaded.signatures["generate"](
        idx=tf.constant([ids] * num_samples, tf.int32), max_new_tokens=tf.constant(max_new_tokens),
        temperature=tf.constant(float(temperature)), top_k=tf.constant(top_k or 0),
        top_p=tf.constant(float(top_p)), seed=tf.constant(seed or 0, tf.int64), eot_token=tf.constant(eot),
        vocab_limit=tf.constant(tokenizer.vocab_size))
    tokens, lengths = out["tokens"].numpy(), out["lengths"].numpy()
    return [tokenizer.decode(row[:n]) for row, n in zip(tokens, lengths)]


def parse_args(argv: List[str]) -> dict:
    """nanoGPT's `--key=value` options over DEFAULTS. Values are Python literals where they parse
    as one of the default's type (numbers, booleans, None for top_k), else strings."""
    options = dict(DEFAULTS)
    for arg in argv:
        if not arg.startswith("--") or "=" not in arg:
            raise ValueError(f"expected --key=value, got {arg!r}")
        key, text = arg[2:].split("=", 1)
        if key not in DEFAULTS:
            raise ValueError(f"unknown option {key!r}; options: {sorted(DEFAULTS)}")
        default = DEFAULTS[key]
        if isinstance(default, str):
            options[key] = text  # never reinterpreted: --start=123 is the text "123"
            continue
        try:
            value = ast.literal_eval(text)
        except (SyntaxError, ValueError):
            raise ValueError(f"--{key}={text}: not a {type(default).__name__}") from None
        if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not (isinstance(value, type(default)) or (key == "top_k" and value is None)) \
                or isinstance(value, bool) != isinstance(default, bool):
            raise ValueError(f"--{key}={text}: expected a {type(default).__name__}")
        options[key] = value
    return options


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    opts = parse_args(sys.argv[1:] if argv is None else argv)
    source = opts["out_dir"] if opts["init_from"] == "resume" else opts["init_from"]
    settings = dict(num_samples=opts["num_samples"], max_new_tokens=opts["max_new_tokens"],
                    temperature=opts["temperature"], top_k=opts["top_k"], top_p=opts["top_p"],
                    seed=opts["seed"], stop_at_eot=opts["stop_at_eot"])
    if is_saved_model(source):
        if opts["weights"] != DEFAULTS["weights"]:
            raise ValueError(f"--weights={opts['weights']}: {source} is a SavedModel, whose weights were "
                             f"chosen at export (the pipeline's serving_weights)")
        texts = sample_saved_model(source, opts["start"], bpe_dir=opts["bpe_dir"], **settings)
    else:
        model, tokenizer = load_for_sampling(source, bpe_dir=opts["bpe_dir"], dtype=opts["dtype"])
        texts = sample(model, tokenizer, opts["start"], jit_compile=opts["compile"], weights=opts["weights"],
                       **settings)
    for text in texts:
        print(text)
        print(SEPARATOR)


if __name__ == "__main__":
    main()
