"""nanogpt-tfx's command line.

$ python runner.py run [--preset=shakespeare_char] [--data=PATH] [--key=value ...]

Imports stay inside the commands: TensorFlow alone takes seconds to import, so `--help` must not.
"""

from __future__ import annotations

import argparse
import os
import sys

DEFAULT_PRESET = "shakespeare_char"


def run(args, overrides):
    """Train the preset on the data (Tiny Shakespeare unless --data says otherwise)."""
    from model.config import make_config, parse_overrides
    from model.corpus import tiny_shakespeare
    from model.train import train

    values = parse_overrides(overrides)
    text_file = tiny_shakespeare(args.data)
    cfg = make_config(args.preset, **{"text_file": text_file, **values})
    print(f"training preset {args.preset} on {text_file} into {os.path.abspath(cfg.out_dir)}", flush=True)
    result = train(cfg, log=lambda line: print(line, flush=True))
    print(f"done: val loss {result['val']:.4f} (best {result['best_val_loss']:.4f}); "
          f"checkpoints in {os.path.join(os.path.abspath(cfg.out_dir), 'checkpoints')}")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="runner.py", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser(
        "run", help="run the default job end to end",
        description="Train a preset; any --key=value after the options overrides a hyperparameter.")
    run_parser.add_argument("--preset", default=DEFAULT_PRESET, help="a preset of model/config.py")
    run_parser.add_argument("--data", default=None,
                            help="a local Tiny Shakespeare (default: $NANOGPT_TFX_SHAKESPEARE or download)")
    run_parser.set_defaults(handler=run)
    args, rest = parser.parse_known_args(argv)
    unknown = [a for a in rest if not (a.startswith("--") and "=" in a)]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.handler(args, rest)


if __name__ == "__main__":
    sys.exit(main())
