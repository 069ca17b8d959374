"""nanogpt-tfx's command line: picks the orchestrator and runs the pipeline.

$ python runner.py run [--preset=shakespeare_char] [--data=PATH] [--key=value ...]
$ python runner.py sample [--from=SOURCE] [--start=TEXT|FILE:path] [--num_samples=N] [--key=value ...]

`run` runs the pipeline locally with LocalDagRunner and an SQLite ML Metadata store. --key=value
overrides any training hyperparameter (model/config.py) or pipeline setting (pipeline/configs.py).
Imports stay inside the commands: TFX takes half a minute to import, `--help` must not.
"""

from __future__ import annotations

import argparse
import os
import sys

DEFAULT_PRESET = "shakespeare_char"


def _pipeline_config(args, overrides):
    """A PipelineConfig from the preset, --data and the --key=value overrides, each sent to the
    pipeline settings or the training hyperparameters by name."""
    import dataclasses

    from model.config import TrainConfig, parse_overrides, parse_value
    from pipeline.configs import PipelineConfig, make_pipeline_config

    pipeline_fields = {f.name for f in dataclasses.fields(PipelineConfig)}
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    settings, train = {}, {}
    for arg in overrides:
        key, value = arg[2:].split("=", 1)
        if key in pipeline_fields:
            settings[key] = value if isinstance(getattr(PipelineConfig(), key), str) else parse_value(value)
        elif key in train_fields:
            train.update(parse_overrides([arg]))
        else:
            raise SystemExit(f"runner.py: unknown setting --{key} (neither a pipeline setting nor a "
                             f"training hyperparameter)")
    if args.data:  # a text file or glob (TokenizeText names it if it matches nothing)
        settings["input_pattern"] = os.path.abspath(args.data)
    elif "shakespeare" in args.preset and not settings.get("input_pattern"):
        from model.corpus import tiny_shakespeare

        settings["input_pattern"] = os.path.abspath(tiny_shakespeare())  # $NANOGPT_TFX_SHAKESPEARE or download
    settings["output_dir"] = os.path.abspath(args.output or settings.get("output_dir") or PipelineConfig().output_dir)
    config = make_pipeline_config(args.preset, **settings)
    config.train_overrides = {**config.train_overrides, **train}
    return config


def _show_progress():
    """Quiet TensorFlow and TFX, except for each component's start and end and any warning."""
    import logging
    import warnings

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)

    class Progress(logging.Filter):
        def filter(self, record):
            return record.levelno >= logging.WARNING or record.getMessage().startswith("Component ")

    logging.getLogger("absl").addFilter(Progress())
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.INFO)


def run(args, overrides):
    """Run the pipeline end to end on this machine."""
    _show_progress()
    config = _pipeline_config(args, overrides)
    from tfx import v1 as tfx

    from pipeline import lineage
    from pipeline.pipeline import create_pipeline

    print(f"running pipeline {config.pipeline_name} ({config.preset}) on "
          f"{config.input_pattern or config.dataset_name}; output in {os.path.abspath(config.output_dir)}",
          flush=True)
    tfx.orchestration.LocalDagRunner().run(create_pipeline(config))
    summary = lineage.run_summary(config.metadata_path)
    print(summary, flush=True)


def _latest_pushed(output_dir: str) -> str:
    serving_dir = os.path.join(output_dir, "serving_model")
    versions = sorted(v for v in os.listdir(serving_dir) if v.isdigit()) if os.path.isdir(serving_dir) else []
    if not versions:
        raise SystemExit(f"runner.py sample: no pushed model under {serving_dir}; run `runner.py run` "
                         f"first, or name a model with --from")
    return os.path.join(serving_dir, versions[-1])


def sample(args, overrides):
    """Sample from a pushed SavedModel (the latest by default), a training run, or GPT-2."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from model import sample as sampling

    source = args.source or _latest_pushed(args.output or "tfx_output")
    print(f"sampling from {source}", file=sys.stderr, flush=True)
    sampling.main([f"--init_from={source}", *overrides])


def main(argv=None):
    parser = argparse.ArgumentParser(prog="runner.py", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser(
        "run", help="run the pipeline end to end with LocalDagRunner",
        description="Run the pipeline locally. Any --key=value after the options overrides a "
                    "pipeline setting (pipeline/configs.py) or a training hyperparameter (model/config.py).")
    run_parser.add_argument("--preset", default=DEFAULT_PRESET, help="a preset of pipeline/configs.py")
    run_parser.add_argument("--data", default=None,
                            help="local text file(s), a path or glob (default for the Shakespeare presets: "
                                 "$NANOGPT_TFX_SHAKESPEARE or a download of Tiny Shakespeare)")
    run_parser.add_argument("--output", default=None, help="output directory (default: tfx_output)")
    run_parser.set_defaults(handler=run)
    sample_parser = commands.add_parser(
        "sample", help="generate text from a trained model",
        description="nanoGPT's sample.py: --start, --num_samples, --max_new_tokens, --temperature, --top_k, "
                    "--top_p, --seed, --stop_at_eot, --bpe_dir as --key=value. The tokenizer comes "
                    "from the model itself.")
    sample_parser.add_argument(
        "--from", dest="source", default=None,
        help="a pushed SavedModel dir, a training out_dir, gpt2/gpt2-medium/gpt2-large/gpt2-xl, or a "
             "Hugging Face GPT-2 dir (default: the latest pushed model under --output)")
    sample_parser.add_argument("--output", default=None, help="the pipeline's output directory (default: tfx_output)")
    sample_parser.set_defaults(handler=sample)
    args, rest = parser.parse_known_args(argv)
    unknown = [a for a in rest if not (a.startswith("--") and "=" in a)]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.handler(args, rest)


if __name__ == "__main__":
    sys.exit(main())
