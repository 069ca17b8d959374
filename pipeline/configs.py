"""The run's configuration: one typed RunConfig made of parts, each a dataclass of settings defined
where it is read (core/settings.py `setting` fields: type, description, allowed values):

    pipeline  PipelineSettings (below): name, output directory, preset, cache, Beam
    data      TokenizeTextSettings (components/tokenize_text/settings.py): the corpus and its splits
    validation ValidationConfig (components/data_validation/settings.py): the data checks
    train     TrainConfig (training/config.py): nanoGPT's hyperparameters
    eval      EvalConfig (components/lm_evaluator/settings.py): the evaluation and the blessing
    deploy    DeployConfig (components/deploy_settings.py): what is exported and checked, where training runs

A command line names any setting flat (`--max_iters=500 --val_loss_threshold=2.5`): each name
belongs to one part. `make_run_config` builds and checks the whole of it once; each component gets
its part as JSON with its schema (Settings.to_json) and reads it back typed.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from typing import Callable, Dict, List, Optional

from components.data_validation.settings import ValidationConfig, check_schema_file
from components.lm_evaluator.settings import EvalConfig
from components.tokenize_text.settings import TokenizeTextSettings
from components.tokenize_text.sources import DATASET_BUILDERS, local_text_files, why_no_files
from components.deploy_settings import DeployConfig
from core import settings
from core.settings import SettingError, Settings, check, setting, unknown
from training.config import PRESETS as TRAIN_PRESETS
from training.checkpoint_shape import started_shape
from training.config import TrainConfig, make_config, starts_from_checkpoint

PIPELINE_NAME = "nanogpt-tfx"
OUTPUT_DIR = os.environ.get("NANOGPT_TFX_OUTPUT", "tfx_output")
IMAGE_WORKDIR = "/pipeline"  # where the Dockerfile puts this repository in the image
DEFAULT_PRESET = "shakespeare_char"


@dataclasses.dataclass
class PipelineSettings(Settings):
    preset: str = setting(DEFAULT_PRESET, "the pipeline preset these settings started from")
    pipeline_name: str = setting(PIPELINE_NAME, "the pipeline's name in ML Metadata")
    output_dir: str = setting(OUTPUT_DIR, "pipeline root, metadata store and serving directory lie below "
                                          "($NANOGPT_TFX_OUTPUT)", path=True)
    train_preset: str = setting(DEFAULT_PRESET, "the training preset (training/config.py) under the training "
                                                "hyperparameters", choices=tuple(TRAIN_PRESETS))
    resume: bool = setting(False, "continue from the checkpoint of the latest model's training run")
    beam_pipeline_args: List[str] = setting(["--direct_running_mode=in_memory", "--direct_num_workers=1"],
                                            "Beam options (default: the in-memory DirectRunner)")
    enable_cache: bool = setting(True, "reuse the outputs of components whose inputs did not change")

    def __post_init__(self):
        check(self)


# The parts of a RunConfig, by attribute; a flat setting name belongs to the first part that has it.
PARTS = {"pipeline": PipelineSettings, "data": TokenizeTextSettings, "validation": ValidationConfig,
         "train": TrainConfig, "eval": EvalConfig, "deploy": DeployConfig}
# TrainConfig's settings that the pipeline sets itself (the Trainer's directories; the data's tokenizer).
SET_BY_THE_PIPELINE = ("out_dir", "data_dir", "text_file", "tokenizer", "bpe_dir")


def owners() -> Dict[str, str]:
    """{setting name: the part it belongs to}, for every setting a command line may name."""
    found = {}
    for part, cls in PARTS.items():
        for name in settings.fields(cls):
            if not (part == "train" and name in SET_BY_THE_PIPELINE):
                found.setdefault(name, part)
    return found


class OutputLayout:
    """Where a run's outputs lie under its output directory (`output_dir`)."""
    output_dir: str

    @property
    def pipeline_root(self) -> str:
        return os.path.join(self.output_dir, "pipeline_root")

    @property
    def metadata_path(self) -> str:
        return os.path.join(self.output_dir, "metadata.sqlite")

    @property
    def serving_dir(self) -> str:
        return os.path.join(self.output_dir, "serving_model")


@dataclasses.dataclass
class Outputs(OutputLayout):
    """The outputs of the runs under an output directory (runner.py lineage and sample read them)."""
    output_dir: str = OUTPUT_DIR


@dataclasses.dataclass
class RunConfig(OutputLayout):
    pipeline: PipelineSettings
    data: TokenizeTextSettings
    validation: ValidationConfig
    train: TrainConfig
    eval: EvalConfig
    deploy: DeployConfig

    @property
    def preset(self) -> str:
        return self.pipeline.preset

    @property
    def pipeline_name(self) -> str:
        return self.pipeline.pipeline_name

    @property
    def output_dir(self) -> str:
        return self.pipeline.output_dir

    def replace(self, **values) -> "RunConfig":
        """A copy with these settings (flat names) changed, checked again."""
        parts = {part: {} for part in PARTS}
        for name, value in values.items():
            parts[_owner(name)][name] = value
        return RunConfig(**{part: dataclasses.replace(getattr(self, part), **changed) if changed
                            else getattr(self, part) for part, changed in parts.items()})


def _owner(name: str) -> str:
    found = owners()
    if name not in found:
        if name in SET_BY_THE_PIPELINE:
            raise SettingError(f"--{name}: the pipeline sets it (the data is --data or --dataset_name, the "
                               f"tokenizer --tokenizer, the directories --output)")
        raise unknown(name, found)
    return found[name]


OPENWEBTEXT = dict(dataset_name="openwebtext", streaming=True, tokenizer="gpt2")

PRESETS: Dict[str, dict] = {
    # the default: characters of Tiny Shakespeare, a baby GPT sized for a CPU
    "shakespeare_char": dict(tokenizer="char", train_preset="shakespeare_char", val_loss_threshold=1.95),
    # GPT-2 BPE tokens of Tiny Shakespeare, trained from scratch
    "shakespeare": dict(tokenizer="gpt2", train_preset="shakespeare"),
    # finetune gpt2-xl on Shakespeare (nanoGPT's config/finetune_shakespeare.py)
    "finetune_shakespeare": dict(tokenizer="gpt2", train_preset="finetune_shakespeare", baselines=["gpt2-xl"]),
    # GPT-2 124M on OpenWebText (nanoGPT's config/train_gpt2.py)
    "owt_gpt2_124m": dict(**OPENWEBTEXT, train_preset="owt_gpt2_124m", baselines=["gpt2"], eval_batches=200,
                          eval_train_batches=200, eval_batch_size=8),
    # evaluate the released GPT-2 models on OpenWebText (nanoGPT's config/eval_gpt2*.py): the LMEvaluator
    # makes the estimate the training's eval_iters batches would (eval_only trains nothing: run_fn.py)
    **{name: dict(**OPENWEBTEXT, train_preset=name, eval_batches=train["eval_iters"],
                  eval_train_batches=train["eval_iters"], eval_batch_size=train["batch_size"])
       for name, train in TRAIN_PRESETS.items() if train.get("eval_only")},
}
# The presets whose corpus is Tiny Shakespeare (the ones that name no dataset).
TEXT_PRESETS = tuple(name for name, values in PRESETS.items() if "dataset_name" not in values)


def make_run_config(preset: str = DEFAULT_PRESET, default_data: Optional[Callable[[], str]] = None, log=print,
                    **values) -> RunConfig:
    """The preset's settings under `values` (flat setting names of any part), built and checked once:
    SettingError names the first wrong setting. With neither input_pattern nor dataset_name,
    default_data() gives the text files (Tiny Shakespeare), called only once everything else is checked.
    A training from a checkpoint takes its model shape (log says what it overrode)."""
    if preset not in PRESETS:
        raise unknown(preset, PRESETS, "preset")
    parts = {part: {} for part in PARTS}
    for name, value in {**PRESETS[preset], **values}.items():
        parts[_owner(name)][name] = value
    parts["pipeline"]["preset"] = preset
    built = {part: settings.coerce_values(values, PARTS[part]) for part, values in parts.items()}
    pipeline = PipelineSettings(**built["pipeline"])
    train = make_config(pipeline.train_preset, **built["train"])
    if pipeline.resume and starts_from_checkpoint(train.init_from):
        log(f"--resume=True: the training goes on from the latest model's checkpoint; init_from={train.init_from} "
            f"is where a new training would start, and is not read")
    elif not pipeline.resume:
        train = started_shape(train, log)  # (a checkpoint that is none is named by check_across_parts)
    evaluation, deploy = EvalConfig(**built["eval"]), DeployConfig(**built["deploy"])
    validation = ValidationConfig(**built["validation"])
    data = built["data"]
    default = not data.get("input_pattern") and not data.get("dataset_name") and default_data is not None
    if default:  # a stand-in until all else is checked: a wrong setting is named before a download
        data["input_pattern"] = "the preset's data"
    config = RunConfig(pipeline=pipeline, data=TokenizeTextSettings(**data), validation=validation, train=train,
                       eval=evaluation, deploy=deploy)
    check_across_parts(config)
    if default:
        config = config.replace(input_pattern=default_data())
    check_input_files(config.data.input_pattern)
    return config


def check_across_parts(config: RunConfig) -> None:
    """What no part checks alone: the checkpoints and files that settings name, and settings that
    must agree across parts. SettingError names the first wrong one (a URI such as gs:// is left to
    the component that reads it)."""
    from model.hf_files import checkpoint_fields, local_checkpoint_problem

    train, evaluation, data = config.train, config.eval, config.data
    if not data.statistics and not config.validation.skip_validation:
        raise SettingError("--statistics=False leaves the data nothing to be validated on: add --skip_validation=True")
    if config.validation.schema_file and not config.validation.skip_validation:
        check_schema_file(config.validation.schema_file)
    if train.init_from == "resume":
        raise SettingError("--init_from=resume: the pipeline resumes the latest model's training with --resume=True")
    if train.init_from != "scratch":
        problem = local_checkpoint_problem(train.init_from)
        if problem:
            raise SettingError(f"--init_from={train.init_from}: {problem}")
        if not config.pipeline.resume:  # (not read then)
            check_init_tokens(train.init_from, data.tokenizer)
    if evaluation.eval_block_size > train.block_size:
        raise SettingError(f"--eval_block_size={evaluation.eval_block_size}: longer than the model's context "
                           f"(--block_size={train.block_size})")
    windows = evaluation.eval_block_size or train.block_size
    for source in evaluation.baselines:
        problem = local_checkpoint_problem(source)
        if problem:
            raise SettingError(f"--baselines={source}: {problem}")
        fields = checkpoint_fields(source)
        if fields and fields["n_positions"] < windows:
            raise SettingError(f"--baselines={source}: its context of {fields['n_positions']} tokens is shorter than "
                               f"the evaluation's windows of {windows} (--eval_block_size, else --block_size)")
    if data.bpe_dir and "://" not in data.bpe_dir:
        from core.errors import UserError, one_line
        from model.tokenizer import gpt2_encoding

        try:
            gpt2_encoding(data.bpe_dir)  # the files there, and their published SHA-256
        except UserError as e:
            raise SettingError(f"--bpe_dir={data.bpe_dir}: {one_line(e)}") from None
    name = data.dataset_name
    # a local file or directory that is not there (a hub name, "owner/name", has no extension and is not a path)
    if name and not os.path.exists(name) and (os.path.splitext(name)[1].lower() in DATASET_BUILDERS
                                              or name.startswith(("/", "./", "../", "~"))):
        check_input_files(name, setting="--dataset_name")


def check_init_tokens(init_from: str, tokenizer: str) -> None:
    """A checkpoint to start from whose tokens are of another kind than --tokenizer's (GPT-2's weights
    on character ids, a character model on GPT-2 BPE): SettingError, before the data is tokenized. A
    character model on other characters is told by the Trainer, once the data's are known."""
    from model.hf_files import checkpoint_fields, checkpoint_tokens
    from model.tokenizer import describe_tokens

    fields = checkpoint_fields(init_from)
    tokens = checkpoint_tokens(init_from, fields["vocab_size"]) if fields else None
    if tokens and tokens.get("kind") != tokenizer:
        raise SettingError(f"--init_from={init_from}: a model of {describe_tokens(tokens)}, and "
                           f"--tokenizer={tokenizer} makes other tokens: its ids would read as other text")


def check_input_files(pattern: Optional[str], setting: str = "--data") -> None:
    """A local --data that names no file, as TokenizeText reads it (a folder's own files, DIR/** into
    its subfolders, hidden files left out): SettingError, saying what a folder holds instead or the
    closest name in its folder."""
    if not pattern or "://" in pattern or next(local_text_files(pattern), None) is not None:
        return
    why = why_no_files(pattern)
    if os.path.isdir(pattern):
        raise SettingError(f"{setting}={pattern}: a folder without files of its own" + (f" ({why})" if why else ""))
    folder = os.path.dirname(pattern) or "."
    near = difflib.get_close_matches(os.path.basename(pattern), os.listdir(folder)) if os.path.isdir(folder) else []
    raise SettingError(f"{setting}={pattern}: matches no file" + (f"; did you mean {near[0]}?" if near else ""))


def absolute_path(path: str) -> str:
    """Local paths made absolute (the pipeline's components run elsewhere); URIs such as gs:// kept."""
    return path if "://" in path else os.path.abspath(path)


def help_sections() -> List[str]:
    """The settings of every part as --help sections, each with its type, default and description."""
    return [
        settings.help_listing(TokenizeTextSettings, "data (TokenizeText)", skip=("input_pattern",)),
        settings.help_listing(ValidationConfig, "data validation before training (SchemaGen, DataValidator, "
                                                "AnomalyGate)"),
        settings.help_listing(PipelineSettings, "pipeline", skip=("preset", "output_dir")),
        settings.help_listing(EvalConfig, "evaluation and blessing (LMEvaluator)"),
        settings.help_listing(DeployConfig, "deployment: where training runs, what is exported"),
        settings.help_listing(TrainConfig, "training hyperparameters (training/config.py; defaults: nanoGPT's GPT-2 "
                                           "124M)", skip=SET_BY_THE_PIPELINE)]


def from_command_line(overrides: List[str], config_files: List[str] = (), preset: Optional[str] = None,
                      data: Optional[str] = None, output: Optional[str] = None,
                      beam_pipeline_args: Optional[str] = None, default_data: Optional[Callable[[], str]] = None,
                      log=print) -> RunConfig:
    """The RunConfig of a command line, checked before anything runs: the preset, then nanoGPT config
    files' values, then the --key=value overrides, then --data (text files, for any preset). A config
    file's `dataset` picks the preset unless --preset is given (--data replaces its data). default_data: as in
    make_run_config (None: a preset of Tiny Shakespeare needs --data)."""
    import shlex

    from training.config import NANOGPT_DATASETS, NANOGPT_DEFAULT_DATASET, read_nanogpt_config, split_command_line

    _, overrides = split_command_line(overrides, log)  # --device=cuda and the like: a printed line why not
    known = owners()
    chosen, values = preset, {}
    for path in config_files:
        file_values = read_nanogpt_config(path, [*known, *SET_BY_THE_PIPELINE], log)
        for name in [n for n in file_values if n in SET_BY_THE_PIPELINE and n not in known]:
            log(f"{path}: {name}={file_values.pop(name)!r} ignored: the pipeline sets it (the data is --data or "
                f"--dataset_name, the directories --output)")
        named = "dataset" in file_values
        dataset = file_values.pop("dataset", NANOGPT_DEFAULT_DATASET)
        if preset is None:  # --preset on the command line comes later and wins; --data replaces the text alone
            chosen = NANOGPT_DATASETS[dataset][0]
            log(f"{path}: dataset={dataset!r}{'' if named else ' (nanoGPT default)'}: "
                + (f"the tokens and model of the preset {chosen}, on --data" if data else
                   f"the data of the preset {chosen}"))
        values.update(file_values)
    values.update(settings.parse_overrides(overrides, *PARTS.values()))
    for name in values:
        _owner(name)  # a training setting the pipeline sets, named
    if beam_pipeline_args is not None:
        values["beam_pipeline_args"] = shlex.split(beam_pipeline_args)
    if data and values.get("dataset_name"):
        raise SettingError("give --data (text files) or --dataset_name (a dataset), not both")
    if data:  # text files, a folder or a glob, for any preset
        values.update(input_pattern=data, dataset_name=None, dataset_config=None, streaming=False)
    elif values.get("dataset_name"):  # a dataset, for any preset
        values["input_pattern"] = None
    for key in ("input_pattern", "schema_file"):  # the components may run elsewhere
        if values.get(key):
            values[key] = absolute_path(values[key])
    # the output's own path, not a symbolic link's: the Trainer's and the Pusher's settings hold paths in it, so
    # the same output by another path would miss their cache and train the same model again
    output_dir = absolute_path(output or values.get("output_dir") or OUTPUT_DIR)
    values["output_dir"] = output_dir if "://" in output_dir else os.path.realpath(output_dir)
    chosen = chosen or DEFAULT_PRESET
    if default_data is None:
        def default_data():
            raise SettingError(f"the preset {chosen} reads text files: name ones that the pipeline's pods can read "
                               f"with --data (for example gs://BUCKET/input.txt)")
    config = make_run_config(chosen, default_data=default_data, log=log, **values)
    warning = rows_read_as_text(data)
    if warning:
        log(warning)
    return config


def rows_read_as_text(pattern: Optional[str]) -> Optional[str]:
    """A warning line when --data names local files of rows (JSON lines, JSON, CSV: a file, or a
    folder or glob whose first file is one), which --data reads as plain text, their syntax and all,
    where --dataset_name reads the text column of a file's rows."""
    if not pattern or "://" in pattern:
        return None
    first = pattern if os.path.isfile(pattern) else next(local_text_files(pattern), None)
    extension = os.path.splitext(first or "")[1].lower()
    if extension not in (".json", ".jsonl", ".csv"):
        return None
    syntax = f"its {extension[1:].upper()} syntax and all"
    if first == pattern:
        return (f"warning: --data reads {pattern} as plain text, {syntax}; --dataset_name={pattern} reads the text "
                f"of its rows (--text_column)")
    return (f"warning: --data reads the files of {pattern} ({first}, ...) as plain text, {syntax}; "
            f"--dataset_name=FILE reads the text of a file's rows (--text_column)")
