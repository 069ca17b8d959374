"""The pipeline's settings. Training hyperparameter defaults live in model/config.py; a pipeline
preset names the data, the training preset and the evaluation settings that go with it."""

from __future__ import annotations

import dataclasses
import difflib
import glob
import os
from typing import Dict, List

from components.tokenize_text.settings import TokenizeTextSettings
from training.config import PRESETS as TRAIN_PRESETS
from model.presets import WEIGHT_DTYPES
from serving import SERVING_LOOPS
from training.config import TrainConfig, make_config
from core.settings import SettingError, check, coerce_values, setting, unknown

PIPELINE_NAME = "nanogpt-tfx"
OUTPUT_DIR = os.environ.get("NANOGPT_TFX_OUTPUT", "tfx_output")
IMAGE_WORKDIR = "/pipeline"  # where the Dockerfile puts this repository in the image


@dataclasses.dataclass
class PipelineConfig(TokenizeTextSettings):
    """The pipeline's settings. The data settings are TokenizeText's own (TokenizeTextSettings,
    components/tokenize_text/settings.py), inherited so that each is defined once and is a pipeline
    setting; the training hyperparameters are model/config.py's (train_preset and train_overrides)."""
    preset: str = setting("shakespeare_char", "the pipeline preset these settings started from")
    pipeline_name: str = setting(PIPELINE_NAME, "the pipeline's name in ML Metadata")
    output_dir: str = setting(OUTPUT_DIR, "pipeline root, metadata store and serving directory lie below "
                                          "($NANOGPT_TFX_OUTPUT)")
    # training: a model/config.py preset plus overrides (any TrainConfig field)
    train_preset: str = setting("shakespeare_char", "the training preset (model/config.py) under the "
                                                    "training hyperparameters", choices=tuple(TRAIN_PRESETS))
    train_overrides: Dict[str, object] = setting({}, "training hyperparameters over train_preset")
    resume: bool = setting(False, "start from the checkpoint of the latest model's training run")
    continue_interrupted: bool = setting(True, "continue an interrupted training of the same data and model shape "
                                               "from its latest checkpoint (False: train anew)")
    serving_weights: str = setting("float32", "the exported SavedModel's matmul weights (bfloat16: half the bytes "
                                              "read per generated token)", choices=WEIGHT_DTYPES)
    serving_loop: str = setting("auto", "how the exported generate signature decodes: xla (XLA-compiled, for GPU "
                                        "and TPU servers), graph (no XLA), auto (xla for models of small layers, "
                                        "graph for large ones: the faster on a CPU, model/generate.py uses_xla)",
                                choices=SERVING_LOOPS)
    # where training runs: in the Trainer's own process or pod (one device, or `--strategy=mirrored`
    # over its GPUs; on Kubeflow the pod gets train_accelerator_count x train_accelerator), or, for
    # train_workers > 1, as a Vertex AI training job of train_workers machines with that many
    # accelerators each (MultiWorkerMirroredStrategy from the TF_CONFIG that Vertex AI sets; TPUs:
    # --strategy=tpu). See docs/kubeflow.md.
    train_workers: int = setting(1, "machines that train (> 1: a Vertex AI training job)", minimum=1)
    train_machine_type: str = setting("n1-standard-8", "the Vertex AI machine type of each training worker")
    train_accelerator: str = setting("", "the Trainer pod's accelerator type, e.g. NVIDIA_TESLA_A100, "
                                         "NVIDIA_H100_80GB (Kubeflow, Vertex AI)")
    train_accelerator_count: int = setting(0, "accelerators per training worker: the replicas each trains",
                                           minimum=0)
    train_retries: int = setting(3, "Kubeflow: times the Trainer task is run again after it failed (preempted, "
                                    "killed); each retry continues the interrupted training", minimum=0)
    vertex_project: str = setting("", "the Google Cloud project of the Vertex AI training job")
    vertex_region: str = setting("us-central1", "the region of the Vertex AI training job")
    # the container image of the components on Kubeflow Pipelines and of the Vertex AI training job
    image: str = setting("nanogpt-tfx:latest", "the components' container image (Kubeflow, Vertex AI)")
    # evaluation and blessing
    baselines: List[str] = setting([], "GPT-2 names or checkpoint directories evaluated beside the model")
    eval_batches: int = setting(0, "evaluation batches per split (0: the whole of each split)", minimum=0)
    eval_batch_size: int = setting(32, "windows per evaluation batch", minimum=1)
    val_loss_threshold: float = setting(1e9, "bless only under this validation loss")
    max_regression: float = setting(0.0, "and no worse than the last blessed model by more than this")
    beam_pipeline_args: List[str] = setting(["--direct_running_mode=in_memory", "--direct_num_workers=1"],
                                            "Beam options (default: the in-memory DirectRunner)")
    enable_cache: bool = setting(True, "reuse the outputs of components whose inputs did not change")

    def __post_init__(self):
        check(self)  # each setting; the data source is checked with tokenize_settings()
        if self.train_accelerator and self.train_accelerator_count < 1:
            raise SettingError(f"--train_accelerator={self.train_accelerator}: needs --train_accelerator_count >= 1")
        if self.train_workers > 1 and not self.vertex_project:
            raise SettingError(f"--train_workers={self.train_workers}: multi-worker training runs on Vertex AI, "
                               f"which needs --vertex_project (and --vertex_region)")

    def tokenize_settings(self) -> TokenizeTextSettings:
        return TokenizeTextSettings.of(self)

    @property
    def trains_on_vertex(self) -> bool:
        return self.train_workers > 1

    @property
    def pipeline_root(self) -> str:
        return os.path.join(self.output_dir, "pipeline_root")

    @property
    def metadata_path(self) -> str:
        return os.path.join(self.output_dir, "metadata.sqlite")

    @property
    def serving_dir(self) -> str:
        return os.path.join(self.output_dir, "serving_model")


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
                          eval_batch_size=8),
    # evaluate the released GPT-2 models on OpenWebText (nanoGPT's config/eval_gpt2*.py)
    **{f"eval_{name.replace('-', '_')}": dict(**OPENWEBTEXT, train_preset=f"eval_{name.replace('-', '_')}",
                                              eval_batches=500, eval_batch_size=8)
       for name in ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")},
}

def make_pipeline_config(preset: str = "shakespeare_char", **overrides) -> PipelineConfig:
    """The preset's settings under the overrides (pipeline settings), each checked; SettingError names
    the first wrong one (the data source and training hyperparameters: validate())."""
    if preset not in PRESETS:
        raise unknown(preset, PRESETS, "preset")
    names = {f.name for f in dataclasses.fields(PipelineConfig)}
    for key in overrides:
        if key not in names:
            raise unknown(key, names)
    values = coerce_values({**PRESETS[preset], **overrides}, PipelineConfig)
    return PipelineConfig(**{**values, "preset": preset})


def validate(config: PipelineConfig) -> TrainConfig:
    """Check the complete configuration before anything runs: TokenizeText's settings, local input
    files, and the training hyperparameters (returned); SettingError naming the first wrong one."""
    config.tokenize_settings()
    pattern = config.input_pattern
    if pattern and "://" not in pattern and not (os.path.isdir(pattern) and os.listdir(pattern)) \
            and not any(os.path.isfile(p) for p in glob.glob(pattern)):
        near = difflib.get_close_matches(os.path.basename(pattern), os.listdir(os.path.dirname(pattern) or ".")) \
            if os.path.isdir(os.path.dirname(pattern) or ".") else []
        raise SettingError(f"--data={pattern}: matches no file" + (f"; did you mean {near[0]}?" if near else ""))
    return make_config(config.train_preset, **config.train_overrides)


def absolute_path(path: str) -> str:
    """Local paths made absolute (the pipeline's components run elsewhere); URIs such as gs:// kept."""
    return path if "://" in path else os.path.abspath(path)
