"""nanogpt-tfx's command line: picks the orchestrator and runs the pipeline.

$ python runner.py run [--preset=shakespeare_char] [--data=PATH] [--key=value ...]
$ python runner.py run --spec=FILE [--pipeline_root=DIR] [--until=TASK] [--enable_cache=false]
$ python runner.py compile --image=IMAGE --pipeline_root=gs://BUCKET/DIR [--preset=...] [--key=value ...]
$ python runner.py lineage [--model=ID|PATH] [--format=text|dot|png] [--output=DIR | --grpc=HOST:PORT]
$ python runner.py sample [--from=SOURCE] [--start=TEXT|FILE:path] [--num_samples=N] [--key=value ...]

`run` runs the pipeline locally with LocalDagRunner and an SQLite ML Metadata store; `compile`
writes the same pipeline as a Kubeflow Pipelines v2 spec, which `run --spec` runs here as Kubeflow
would (orchestration/kubeflow/launcher.py). --key=value overrides any training hyperparameter (training/config.py)
or pipeline setting (pipeline/configs.py lists its parts). A mistake (a bad setting, a missing or damaged file or
store) ends in one line; --debug shows its traceback.
Imports stay inside the commands: TFX takes half a minute to import, `--help` must not.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

STARTED = time.time()  # the command's start, for the split of its time at the end of a run

import model  # noqa: F401  (light; sets TensorFlow's CPU defaults before anything loads TensorFlow)

def _run_config(args, overrides, default_data=None):
    """The whole configuration of a `run` or `compile` command line, checked before anything runs."""
    from pipeline.configs import from_command_line

    return from_command_line(overrides, config_files=args.config_files, preset=args.preset, data=args.data,
                             output=args.output, beam_pipeline_args=args.beam_pipeline_args,
                             default_data=default_data)


def _tiny_shakespeare() -> str:
    """The presets' corpus: $NANOGPT_TFX_SHAKESPEARE, or Tiny Shakespeare downloaded as nanoGPT does."""
    from core.settings import SettingError
    from training.corpus import tiny_shakespeare

    try:
        return os.path.abspath(tiny_shakespeare())
    except OSError as e:
        raise SettingError(str(e)) from None


def run(args, overrides):
    """Run the pipeline end to end on this machine."""
    if args.spec:
        return _run_spec(args, overrides)
    if args.pipeline_root or args.until:
        from core.errors import UsageError

        raise UsageError("--pipeline_root and --until go with --spec")
    config = _run_config(args, overrides, default_data=_tiny_shakespeare)
    from pipeline.preflight import check_here

    check_here(config)  # what this machine must have for the run: BPE files, checkpoints, a model to resume
    from orchestration import local

    local.show_progress()
    local.run(config, started=STARTED)


def _run_spec(args, overrides):
    """Run a compiled Kubeflow Pipelines spec here, task by task, as Kubeflow's launcher would."""
    caching = {f"--enable_cache={v}": v == "true" for v in ("true", "false")}  # as the kfp client's enable_caching
    unused = [a for a in overrides if a not in caching] + [f"--{n}" for n in ("preset", "data", "output",
                                                                            "beam_pipeline_args")
                                                         if getattr(args, n) is not None] + args.config_files
    if unused:
        from core.errors import UsageError

        raise UsageError(f"--spec: {' '.join(unused)}: the spec holds the pipeline's settings; "
                         f"compile it again to change them")
    if args.pipeline_root:
        from core.files import check_writable_directory

        check_writable_directory(args.pipeline_root, f"--pipeline_root={args.pipeline_root}")
    from orchestration import local
    from orchestration.kubeflow import launcher

    local.show_progress()
    try:
        local_run = launcher.run_spec(args.spec, pipeline_root=args.pipeline_root, until=args.until,
                                      enable_cache=next((caching[a] for a in overrides), None))
    except ValueError as e:  # a damaged spec or a failed task, named
        from core.errors import UserError

        raise UserError(f"--spec={args.spec}: {e}") from e
    print(local_run.summary(), flush=True)


def compile_spec(args, overrides):
    """Write the pipeline as a Kubeflow Pipelines v2 spec (KubeflowV2DagRunner); no cluster needed."""
    args.output = args.pipeline_root
    if args.image:
        overrides = [*overrides, f"--image={args.image}"]
    config = _run_config(args, overrides)
    spec = os.path.abspath(args.spec or f"{config.pipeline_name}-{config.preset}.yaml")
    from pipeline.preflight import check_spec_file

    check_spec_file(spec)
    from orchestration import local
    from orchestration.kubeflow.compile import compile_spec as write_spec

    local.show_progress()
    write_spec(config, spec)
    print(f"wrote {spec}: pipeline {config.pipeline_name} ({config.preset}), image {config.deploy.image}, "
          f"pipeline root {config.pipeline_root}", flush=True)


def lineage(args, overrides):
    """Where a pushed model came from, read from ML Metadata."""
    if overrides:
        from core.settings import SettingError

        raise SettingError(f"unrecognized arguments: {' '.join(overrides)}")
    from pipeline import lineage as model_lineage
    from pipeline import metadata

    if args.grpc:
        host, _, port = args.grpc.rpartition(":")
        if not host or not port.isdigit():
            from core.errors import UsageError

            raise UsageError(f"--grpc={args.grpc}: expected HOST:PORT")
        store = metadata.grpc_store(host, int(port))
    else:
        outputs = _output_config(args)
        metadata_path = outputs.metadata_path
        if not os.path.isfile(metadata_path):
            from core.errors import MissingFile

            spec_runs = _spec_runs(outputs)
            if spec_runs:  # `run --spec` ran here: Kubeflow's ML Metadata is the cluster's, not made here
                raise MissingFile(f"no ML Metadata store at {metadata_path}: the runs of a compiled spec here "
                                  f"(`runner.py run --spec`) keep none, their records stand in (the latest: "
                                  f"{spec_runs[-1]}); on a cluster, --grpc=HOST:PORT reads its store")
            raise MissingFile(f"no ML Metadata store at {metadata_path}; run `runner.py run` first, or name the "
                              f"output directory with --output")
        store = metadata.sqlite_store(metadata_path)
    png = args.png or "lineage.png"
    if args.format == "png":  # before the graph is read and drawn
        from core.files import check_writable_directory

        check_writable_directory(os.path.dirname(os.path.abspath(png)), f"--png={png}")
    graph = model_lineage.model_lineage(store, args.model)
    if args.format == "text":
        print(graph.to_text())
    elif args.format == "dot":
        print(graph.to_dot())
    else:
        graph.write_png(png)
        print(f"wrote {png}")


def _output_config(args):
    """The outputs under --output (default: tfx_output or $NANOGPT_TFX_OUTPUT)."""
    from pipeline.configs import Outputs

    return Outputs(args.output) if args.output else Outputs()


def _latest_pushed(args) -> str:
    """The latest push that ML Metadata records (a version directory no completed push names, such
    as one a push cut short left, is not a pushed model)."""
    config = _output_config(args)
    push, trained = None, None
    if os.path.isfile(config.metadata_path):
        from pipeline import metadata

        store = metadata.sqlite_store(config.metadata_path)
        push, trained = metadata.latest_push(store), metadata.latest_artifact(store, "Model")
    destination = str(metadata.prop(push, "pushed_destination")) if push is not None else None
    if not destination:
        from core.errors import NotFound

        if trained is not None:  # trained, never blessed and pushed: its own SavedModel can be sampled
            raise _trained_not_pushed(f"recorded in {config.metadata_path}",
                                      os.path.join(trained.uri, metadata.SERVING_DIR), _bpe_option(store))
        raise NotFound(f"no pushed model recorded in {config.metadata_path}; run `runner.py run` first, or "
                       f"name a model with --from")
    if metadata.push_gone(destination):
        from core.errors import NotFound

        model = metadata.pushed_model(store, push)
        instead = "name a model with --from" if model is None else \
            f"the model it pushed: --from={os.path.join(model.uri, metadata.SERVING_DIR)}{_bpe_option(store)}"
        raise NotFound(f"the latest push recorded in {config.metadata_path}, {destination}, is no longer there (moved "
                       f"or deleted); {instead}")
    return destination


def _trained_not_pushed(where: str, saved_model: str, bpe_option: str = ""):
    """The error of a `sample` without a pushed model `where`, naming the latest trained one's SavedModel
    (and the run's GPT-2 BPE files, which sampling it offline needs: _bpe_option)."""
    from core.errors import NotFound

    return NotFound(f"no pushed model {where} (no run's model was blessed); the latest trained one: "
                    f"--from={saved_model}{bpe_option}")


def _bpe_option(store) -> str:
    """" --bpe_dir=DIR" where the store's runs tokenized with local GPT-2 BPE files, else ""."""
    import shlex

    from pipeline import metadata

    bpe_dir = metadata.run_bpe_dir(store)
    return f" --bpe_dir={shlex.quote(bpe_dir)}" if bpe_dir else ""


def _spec_runs(outputs) -> list:
    """The records of the runs of a compiled spec (`runner.py run --spec`) under an output directory, oldest first."""
    import glob

    from orchestration.kubeflow.records import RECORDS

    return sorted(glob.glob(os.path.join(outputs.pipeline_root, RECORDS)), key=os.path.getmtime)


def _latest_spec_model(outputs) -> str:
    """The latest push of the runs of a compiled spec under an output directory (their records stand in
    for ML Metadata); NotFound naming the latest trained model when none was pushed."""
    from core.errors import NotFound
    from orchestration.kubeflow.records import latest_model

    path, pushed = latest_model(outputs.pipeline_root) or (None, False)
    where = f"among the runs of a spec under {outputs.pipeline_root}"
    if path and not pushed:
        raise _trained_not_pushed(where, path)
    if not path:
        raise NotFound(f"no pushed model {where} (no run's model was blessed)")
    return path


def sample(args, overrides):
    """Sample from a pushed SavedModel (the latest by default), a training run, or GPT-2."""
    from core.console import quiet_imports

    quiet_imports()
    from serving import sample as sampling
    from core.errors import pop_debug
    from core.settings import command_line

    # the options first (one line for a wrong one), before any model is looked up or loaded
    command_line("runner.py sample", pop_debug(overrides)[1], sampling.parse_args, sampling.sample_help)
    from core.settings import SettingError
    from model.presets import GPT2_SIZES
    from pipeline.configs import Outputs

    if args.source and "://" not in args.source and not os.path.exists(args.source) and \
            args.source not in GPT2_SIZES:  # named as the user typed it (sample names its own --init_from)
        raise SettingError(f"--from={args.source}: no such file or directory (a pushed model, an output directory, "
                           f"a training run, a Hugging Face checkpoint, or one of {', '.join(GPT2_SIZES)})")
    if args.source and os.path.isfile(Outputs(args.source).metadata_path):  # a pipeline's output: its latest push
        args.output, args.source = args.source, None
    elif args.source and _spec_runs(Outputs(args.source)):  # the output of `run --spec`: its latest push
        args.source = _latest_spec_model(Outputs(args.source))
    source = args.source or _latest_pushed(args)
    if not args.source and not any(o.startswith("--bpe_dir=") for o in overrides):  # the run's BPE files, offline
        from model.tokenizer import BPE_DIR_ENV
        from pipeline import metadata

        bpe_dir = metadata.run_bpe_dir(metadata.sqlite_store(_output_config(args).metadata_path))
        if bpe_dir and os.path.isdir(bpe_dir) and not os.environ.get(BPE_DIR_ENV):
            overrides = [*overrides, f"--bpe_dir={bpe_dir}"]
    print(f"sampling from {source}", file=sys.stderr, flush=True)
    sampling.main([f"--init_from={source}", *overrides], prog="runner.py sample")


def _pipeline_arguments(parser, data: str, beam: str) -> None:
    """The options that `run` and `compile` share, and the settings they take as --key=value."""
    from core.settings import home_path
    from pipeline.configs import PRESETS

    parser.add_argument("config_files", nargs="*", metavar="CONFIG_FILE", type=home_path,
                        help="nanoGPT config files (config/train_shakespeare_char.py ...): `name = value` lines, "
                             "read, not run; the --key=value arguments come after them")
    parser.add_argument("--preset", default=None, metavar="{" + ",".join(PRESETS) + "}",
                        help="a preset of pipeline/configs.py (default: shakespeare_char, or the config file's "
                             "dataset)")
    parser.add_argument("--data", default=None, type=home_path, help=data)
    parser.add_argument("--beam_pipeline_args", default=None, help=f"Beam options as one string, {beam}")
    parser.epilog = _settings_help()


def _settings_help() -> str:
    from pipeline.configs import help_sections

    return "\n\n".join(["Settings, as --key=value (a preset sets some of them; the defaults shown are the settings' "
                        "own):", *help_sections()])


class _ArgumentParser(argparse.ArgumentParser):
    """argparse, with a mistake reported in one line (no usage block) and exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def main(argv=None):
    from core.errors import pop_debug, reported

    if argv is None:  # the command line itself (not a caller's): TensorFlow's C++ chatter left out of stderr,
        from core.console import quiet_tensorflow  # and SIGTERM (a scheduler's stop) ending it as Ctrl-C does
        from core.signals import stop_on_sigterm

        quiet_tensorflow()
        stop_on_sigterm()
    debug, argv = pop_debug(sys.argv[1:] if argv is None else argv)
    with reported("runner.py", debug):
        _main(argv, debug)


def _main(argv, debug=False):
    from core.settings import home_path  # (light)

    parser = _ArgumentParser(prog="runner.py", description=__doc__.split("\n\n")[0], allow_abbrev=False)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_ArgumentParser)
    run_parser = commands.add_parser(
        "run", formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False,
        help="run the pipeline end to end with LocalDagRunner",
        description="Run the pipeline locally. Any --key=value after the options overrides a "
                    "pipeline setting (pipeline/configs.py) or a training hyperparameter (training/config.py).")
    _pipeline_arguments(run_parser,
                        data="local text file(s), a path or glob (default for the Shakespeare presets: "
                             "$NANOGPT_TFX_SHAKESPEARE or a download of Tiny Shakespeare)",
                        beam="e.g. '--direct_num_workers=2' (default: in-memory DirectRunner)")
    run_parser.add_argument("--output", default=None, type=home_path, help="output directory (default: tfx_output)")
    run_parser.add_argument("--spec", default=None, type=home_path,
                            help="run this compiled Kubeflow Pipelines spec (runner.py compile) instead, each task in "
                                 "its own process as Kubeflow's launcher runs it (docs/kubeflow.md)")
    run_parser.add_argument("--pipeline_root", default=None, type=home_path,
                            help="with --spec: where the run writes (default: the spec's pipeline root)")
    run_parser.add_argument("--until", default=None, help="with --spec: run only this task and the tasks it needs")
    run_parser.set_defaults(handler=run)
    compile_parser = commands.add_parser(
        "compile", formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False,
        help="write the pipeline as a Kubeflow Pipelines v2 spec",
        description="Compile the pipeline with KubeflowV2DagRunner into a spec that Kubeflow Pipelines or "
                    "Vertex AI Pipelines runs. Any --key=value after the options overrides a pipeline setting "
                    "(pipeline/configs.py lists where each is defined: e.g. --train_workers=2 "
                    "--train_accelerator=NVIDIA_TESLA_A100 "
                    "--train_accelerator_count=1 --vertex_project=P) or a training hyperparameter "
                    "(training/config.py). See docs/kubeflow.md.")
    _pipeline_arguments(compile_parser,
                        data="text file(s) the pods can read, a path or glob (gs://...), for the presets "
                             "that read files",
                        beam="e.g. '--runner=DataflowRunner --project=P --region=R --temp_location=gs://BUCKET/tmp'")
    compile_parser.add_argument("--image", default=None,
                                help="the container image of the components (built from the Dockerfile; "
                                     "default: nanogpt-tfx:latest)")
    compile_parser.add_argument("--pipeline_root", required=True, type=home_path,
                                help="where the run writes, e.g. gs://BUCKET/nanogpt-tfx: artifacts under "
                                     "pipeline_root/, pushed models under serving_model/")
    compile_parser.add_argument("--spec", default=None, type=home_path,
                                help="the spec file to write: YAML, or JSON for a .json name (default: "
                                     "nanogpt-tfx-PRESET.yaml here)")
    compile_parser.set_defaults(handler=compile_spec)
    lineage_parser = commands.add_parser(
        "lineage", help="show where a model came from, from ML Metadata",
        description="Print the chain from the data to a model: data source, examples and token counts, "
                    "vocabulary, trainer and hyperparameters, evaluation and blessing, push.")
    lineage_parser.add_argument("--model", default=None, type=home_path,
                                help="a Model or PushedModel artifact id, a pushed model's directory or a "
                                     "Model's uri (default: the latest pushed model; with none pushed, the "
                                     "latest trained one)")
    lineage_parser.add_argument("--format", choices=("text", "dot", "png"), default="text",
                                help="text, Graphviz dot, or a PNG drawing (default: text)")
    lineage_parser.add_argument("--png", default=None, type=home_path,
                                help="the PNG file for --format=png (default: lineage.png)")
    lineage_parser.add_argument("--output", default=None, type=home_path,
                                help="the pipeline's output directory holding metadata.sqlite (default: tfx_output)")
    lineage_parser.add_argument("--grpc", default=None,
                                help="HOST:PORT of an ML Metadata gRPC service, such as the metadata-grpc-service "
                                     "of a Kubeflow Pipelines deployment, instead of the SQLite store")
    lineage_parser.set_defaults(handler=lineage)
    from serving.sample import SampleConfig
    from core.settings import help_listing

    sample_parser = commands.add_parser(
        "sample", help="generate text from a trained model", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="nanoGPT's sample.py, its options as --key=value. The tokenizer comes from the model itself.",
        epilog=help_listing(SampleConfig, "options", skip=("init_from", "out_dir")))
    sample_parser.add_argument(
        "--from", dest="source", default=None, type=home_path,
        help="a pushed SavedModel dir, a pipeline's output dir (its latest pushed model), a training out_dir, "
             "gpt2/gpt2-medium/gpt2-large/gpt2-xl, or a Hugging Face GPT-2 dir (default: the latest pushed model "
             "under --output)")
    sample_parser.add_argument("--output", default=None, type=home_path,
                               help="the pipeline's output directory (default: tfx_output)")
    sample_parser.set_defaults(handler=sample)
    args, rest = parser.parse_known_args(argv)
    from core.errors import reported
    from core.tempdir import own_temp_dir

    # a user's mistake, or Ctrl-C: one line naming the command
    after_stop = {"run": "what finished is kept; the same command again takes it from the cache and goes on"}
    with reported(f"runner.py {args.command}", debug, after_stop.get(args.command, "")), own_temp_dir():
        args.handler(args, rest)


if __name__ == "__main__":
    from core.console import run_command

    run_command(main, "runner.py", needs=("tensorflow", "tfx", "apache_beam"))
