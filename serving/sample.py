"""Sample from a trained model: nanoGPT's sample.py, with the key/value cache of serving/generate.py.

$ python -m serving.sample --init_from=out-shakespeare-char --start="ROMEO:" --num_samples=3
$ python -m serving.sample --init_from=gpt2 --start=FILE:prompt.txt --max_new_tokens=100

--init_from is a training run's out_dir (nanoGPT's init_from=resume: `--init_from=resume` reads
--out_dir), one of gpt2/gpt2-medium/gpt2-large/gpt2-xl, or a Hugging Face GPT-2 checkpoint
directory. The tokenizer comes with the model, never guessed: a run's out_dir holds its
tokenizer.json, a Hugging Face checkpoint this project exported its nanogpt_tokenizer.json (a
character model's table); other GPT-2 checkpoints use GPT-2 BPE (offline: --bpe_dir or
NANOGPT_TFX_BPE_DIR).

Every option is nanoGPT's `--key=value`, a field of SampleConfig (`--help` lists them).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
from typing import List, Optional

from model.presets import DTYPES, WEIGHT_DTYPES
from core.settings import check, command_line, help_listing, home_path, parse_overrides, setting

DEFAULT_START = "\n"  # nanoGPT's


@dataclasses.dataclass
class SampleConfig:
    init_from: str = setting("resume", "a SavedModel, a training out_dir, 'resume' (then out_dir), a GPT-2 name "
                                       "or a Hugging Face GPT-2 directory", path=True)
    out_dir: str = setting("out", "the run to sample from when init_from='resume'", path=True)
    start: str = setting(DEFAULT_START, "the prompt, e.g. '<|endoftext|>'; 'FILE:prompt.txt' reads it from a file")
    num_samples: int = setting(10, "number of samples to draw", minimum=1)
    max_new_tokens: int = setting(500, "number of tokens generated in each sample", minimum=1)
    temperature: float = setting(0.8, "1.0: no change, < 1.0: less random, > 1.0: more random; 0: greedy", minimum=0)
    top_k: Optional[int] = setting(200, "keep only the top_k most likely tokens (None: all)", minimum=1)
    top_p: float = setting(1.0, "nucleus sampling: the smallest set of tokens whose probability reaches top_p "
                                "(1.0: off)", above=0, maximum=1)
    seed: int = setting(1337, "the sampling seed")
    dtype: str = setting("float32", "compute precision (weights stay float32)", choices=DTYPES)
    weights: str = setting("float32", "decode with a copy whose matmul weights are bfloat16 (half the bytes per "
                                      "token); checkpoints only: a SavedModel's are its export's serving_weights",
                           choices=WEIGHT_DTYPES)
    compile: Optional[bool] = setting(None, "XLA for the generation loop (compiled per prompt length); False: "
                                            "TensorFlow's own kernels; None: the faster of the two on a CPU for "
                                            "the model's size (XLA for small layers; serving/generate.py uses_xla)")
    stop_at_eot: bool = setting(False, "end a sample at the tokenizer's end-of-text token (GPT-2 BPE has one)")
    bpe_dir: str = setting("", "a directory with GPT-2's vocab.bpe and encoder.json, for offline BPE", path=True)

    def __post_init__(self):
        check(self)


SEPARATOR = "---------------"


def load_for_sampling(source: str, bpe_dir: Optional[str] = None, dtype: str = "float32"):
    """(model, tokenizer) from a training run's out_dir, a GPT-2 name, or a Hugging Face GPT-2
    checkpoint directory. From an out_dir only the model is restored from the latest checkpoint
    (the optimizer's slots are left unread)."""
    import tensorflow as tf

    from core import files
    from model import hf_files
    from training.checkpoint_shape import check_checkpoint
    from core.errors import MissingFile, UsageError
    from model.model import GPT, GPTConfig
    from model.presets import GPT2_SIZES, GPT2_VOCAB_SIZE, POLICY_OF_DTYPE
    from model.tokenizer import tokenizer_from_json
    from training.config import CHECKPOINT_DIR, MODEL_CONFIG_FILE, TOKENIZER_FILE

    if dtype not in POLICY_OF_DTYPE:
        raise ValueError(f"dtype must be one of {sorted(POLICY_OF_DTYPE)}, got {dtype!r}")
    policy = POLICY_OF_DTYPE[dtype]
    run_config = os.path.join(source, MODEL_CONFIG_FILE)  # local, gs://, s3:// ... through tf.io.gfile
    if tf.io.gfile.exists(run_config):
        model = GPT(GPTConfig(**files.read_json(run_config)), dtype_policy=policy)
        tokenizer_path = os.path.join(source, TOKENIZER_FILE)
        if not tf.io.gfile.exists(tokenizer_path):
            raise MissingFile(f"{source} holds no {TOKENIZER_FILE}: cannot tell how its tokens decode")
        tokenizer = tokenizer_from_json(files.read_json(tokenizer_path), bpe_dir=bpe_dir or None)
        latest = tf.train.latest_checkpoint(os.path.join(source, CHECKPOINT_DIR))
        if latest is None:
            raise MissingFile(f"{source} holds no checkpoint under {CHECKPOINT_DIR}/")
        check_checkpoint(latest, model.config, run_config)
        tf.train.Checkpoint(model=model).restore(latest).expect_partial().assert_existing_objects_matched()
        return model, tokenizer
    if source in GPT2_SIZES or tf.io.gfile.exists(os.path.join(source, hf_files.CONFIG_FILE)):
        model = GPT.from_pretrained(source, dtype_policy=policy)
        named = hf_files.checkpoint_tokens(source, model.config.vocab_size)
        if named is None:  # (GPT-2 BPE's ids would not all decode)
            raise UsageError(f"{source} has a vocabulary of {model.config.vocab_size} tokens and names none "
                             f"({hf_files.HF_TOKENIZER_FILE}, which this project's exports write): GPT-2 BPE needs "
                             f"{GPT2_VOCAB_SIZE}")
        return model, tokenizer_from_json(named, bpe_dir=bpe_dir or None)
    raise MissingFile(
        f"init_from={source!r}: not a training out_dir (no {MODEL_CONFIG_FILE}), not a Hugging Face "
        f"checkpoint directory (no {hf_files.CONFIG_FILE}), and not one of {sorted(GPT2_SIZES)}")


def read_start(start: str) -> str:
    """The prompt text: `start` itself, or the contents of the file named by "FILE:path"."""
    from core.errors import MissingFile, UsageError, one_line

    try:
        start.encode("utf-8")
    except UnicodeEncodeError:  # bytes of the command line that are not UTF-8 (Python keeps them as surrogates)
        shown = start.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        raise UsageError(f"--start={shown}: not UTF-8 text") from None
    if start.startswith("FILE:"):
        path = home_path(start[len("FILE:"):])
        try:
            with open(path, encoding="utf-8") as f:
                return f.read()
        except FileNotFoundError:
            raise MissingFile(f"--start={start}: no such file") from None
        except (IsADirectoryError, UnicodeDecodeError) as e:
            raise UsageError(f"--start={start}: not a UTF-8 text file ({one_line(e)})") from None
    return start


def prompt_ids(tokenizer, start: str) -> List[int]:
    """The token ids of the prompt `start` (see read_start). The default start, a newline, where a
    character vocabulary has none (a corpus of one-line documents) is a space instead, or else the
    vocabulary's first character, said on stderr, so that the sample command a run prints works
    whatever the data. UsageError for a prompt of no tokens (an empty --start or file)."""
    text = read_start(start)
    if text == DEFAULT_START and tokenizer.kind == "char" and DEFAULT_START not in tokenizer.stoi:
        text = " " if " " in tokenizer.stoi else tokenizer.itos[0]
        print(f"--start: the default {DEFAULT_START!r} is not in the model's vocabulary; starting from {text!r}",
              file=sys.stderr)
    ids = tokenizer.encode(text)
    if not ids:
        from core.errors import UsageError

        raise UsageError(f"--start={start}: the prompt is empty (generation starts from at least one token)")
    return ids


def sample_tokens(model, tokenizer, start: str = DEFAULT_START, num_samples: int = 10, max_new_tokens: int = 500,
                  temperature: float = 0.8, top_k: Optional[int] = 200, top_p: float = 1.0,
                  seed: Optional[int] = 1337, stop_at_eot: bool = False, jit_compile: Optional[bool] = None,
                  weights: str = "float32"):
    """The Generation (token ids and lengths) of num_samples continuations of the start text.
    Only ids the tokenizer knows are sampled (a model trained with the padded vocabulary has
    more)."""
    from serving.generate import generate

    ids = prompt_ids(tokenizer, start)
    eot = tokenizer.eot_token if stop_at_eot else None
    with generating(num_samples, max_new_tokens):
        return generate(model, ids, max_new_tokens, temperature=temperature, top_k=top_k,
                        top_p=None if top_p == 1.0 else top_p, seed=seed, eot_token=eot,
                        vocab_limit=min(tokenizer.vocab_size, model.config.vocab_size),
                        num_samples=num_samples, jit_compile=jit_compile, weights=weights)


def sample(model, tokenizer, start: str = DEFAULT_START, **kwargs) -> List[str]:
    """num_samples texts, each the prompt followed by its continuation (as nanoGPT prints them);
    keyword arguments as `sample_tokens`."""
    return [tokenizer.decode(row) for row in sample_tokens(model, tokenizer, start, **kwargs).rows()]


def is_saved_model(path: str) -> bool:
    import tensorflow as tf

    return tf.io.gfile.exists(os.path.join(path, "saved_model.pb"))  # gs:// too


def sample_saved_model(path: str, start: str = DEFAULT_START, num_samples: int = 10, max_new_tokens: int = 500,
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
    ids = prompt_ids(tokenizer, start)
    eot = tokenizer.eot_token if stop_at_eot and tokenizer.eot_token is not None else -1
    with generating(num_samples, max_new_tokens):
        out = loaded.signatures["generate"](
            idx=tf.constant([ids] * num_samples, tf.int32), max_new_tokens=tf.constant(max_new_tokens),
            temperature=tf.constant(float(temperature)), top_k=tf.constant(top_k or 0),
            top_p=tf.constant(float(top_p)), seed=tf.constant(seed or 0, tf.int64), eot_token=tf.constant(eot),
            vocab_limit=tf.constant(tokenizer.vocab_size))
    tokens, lengths = out["tokens"].numpy(), out["lengths"].numpy()
    return [tokenizer.decode(row[:n]) for row, n in zip(tokens, lengths)]


def parse_args(argv: List[str]) -> SampleConfig:
    """nanoGPT's `--key=value` options over SampleConfig's defaults (core/settings.py's parser)."""
    return SampleConfig(**parse_overrides(argv, SampleConfig))


def sample_help(prog: str) -> str:
    return f"usage: {prog} [--key=value ...]\n\nnanoGPT's sample.py.\n\n" + help_listing(SampleConfig, "options")


def main(argv=None, prog: str = "python -m serving.sample"):
    from core.errors import pop_debug, reported

    if argv is None:  # the command line itself (not a caller's): TensorFlow's chatter left out of stderr
        from core.console import quiet_imports, quiet_tensorflow

        quiet_imports()
        quiet_tensorflow()
    debug, argv = pop_debug(sys.argv[1:] if argv is None else argv)
    with reported(prog, debug):
        _main(argv, prog)


def _main(argv: List[str], prog: str):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    opts = command_line(prog, argv, parse_args, sample_help)
    source = opts.out_dir if opts.init_from == "resume" else opts.init_from
    from model.presets import GPT2_SIZES

    if "://" not in source and source not in GPT2_SIZES and not os.path.exists(source):
        from core.errors import MissingFile  # said now, not after TensorFlow has loaded (~12 s)

        raise MissingFile(f"init_from={source!r}: no such file or directory")
    settings = dict(num_samples=opts.num_samples, max_new_tokens=opts.max_new_tokens,
                    temperature=opts.temperature, top_k=opts.top_k, top_p=opts.top_p,
                    seed=opts.seed, stop_at_eot=opts.stop_at_eot)
    texts = _texts(source, opts, settings)
    for text in texts:
        print(text)
        print(SEPARATOR)


@contextlib.contextmanager
def generating(num_samples: int, max_new_tokens: int):
    """Around a generation, which decodes every sample in one batch: one too large for the memory
    is one line saying what lowers it, not TensorFlow's traceback (or numpy's MemoryError)."""
    import tensorflow as tf

    try:
        yield
    except (tf.errors.ResourceExhaustedError, MemoryError) as e:
        from core.errors import OutOfMemory
        from training.memory import is_out_of_memory, ran_out

        if not is_out_of_memory(e):
            raise
        raise OutOfMemory(f"{ran_out(e)} drawing --num_samples={num_samples} samples of --max_new_tokens="
                          f"{max_new_tokens} in one batch: lower --num_samples (and draw more with another --seed) "
                          f"or --max_new_tokens") from e


def _texts(source: str, opts: SampleConfig, settings: dict) -> List[str]:
    """The samples' texts, from a SavedModel or a model that sampling loads."""
    from core.signals import interruptible

    if is_saved_model(source):
        chosen_at_export = {"weights": ("float32", "serving_weights"), "compile": (None, "serving_loop"),
                            "dtype": ("float32", "serving_weights")}
        for option, (default, setting_name) in chosen_at_export.items():
            if getattr(opts, option) != default:
                from core.errors import UsageError

                raise UsageError(f"--{option}={getattr(opts, option)}: {source} is a SavedModel, which decodes as "
                                 f"it was exported (the pipeline's {setting_name})")
        # Ctrl-C stops a long generation now, not at its end
        texts = interruptible(sample_saved_model, source, opts.start, bpe_dir=opts.bpe_dir, **settings)
    else:
        model, tokenizer = load_for_sampling(source, bpe_dir=opts.bpe_dir, dtype=opts.dtype)
        if opts.weights == "bfloat16":
            from training.devices import slow_bfloat16_warning

            warning = slow_bfloat16_warning()
            if warning:
                print(warning, file=sys.stderr)
        texts = interruptible(sample, model, tokenizer, opts.start, jit_compile=opts.compile, weights=opts.weights,
                              **settings)
    return texts


if __name__ == "__main__":
    from core.console import run_command

    run_command(main, "python -m serving.sample")
