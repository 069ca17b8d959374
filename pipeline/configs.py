"""The pipeline's settings. Training hyperparameter defaults live in model/config.py; a pipeline
preset names the data, the training preset and the evaluation settings that go with it."""

from __future__ import annotations

import dataclasses
import os
from typing import Dict, List, Optional

PIPELINE_NAME = "nanogpt-tfx"
OUTPUT_DIR = os.environ.get("NANOGPT_TFX_OUTPUT", "tfx_output")
IMAGE_WORKDIR = "/pipeline"  # where the Dockerfile puts this repository in the image


@dataclasses.dataclass
class PipelineConfig:
    preset: str = "shakespeare_char"
    pipeline_name: str = PIPELINE_NAME
    output_dir: str = OUTPUT_DIR  # pipeline root, metadata store and serving directory lie below
    # data: a text file path or glob, or a Hugging Face dataset (name or local path)
    input_pattern: Optional[str] = None
    dataset_name: Optional[str] = None
    dataset_config: Optional[str] = None
    dataset_split: str = "train"
    streaming: bool = False
    tokenizer: str = "char"  # 'char' (tf.Transform vocabulary) or 'gpt2' (BPE)
    bpe_dir: Optional[str] = None
    # training: a model/config.py preset plus overrides (any TrainConfig field)
    train_preset: str = "shakespeare_char"
    train_overrides: Dict[str, object] = dataclasses.field(default_factory=dict)
    resume: bool = False  # continue from the checkpoint of the latest model's training run
    # the exported SavedModel's matmul weights: 'float32', or 'bfloat16' (half the bytes per token)
    serving_weights: str = "float32"
    # where training runs: in the Trainer's own process or pod (one device, or `--strategy=mirrored`
    # over its GPUs; on Kubeflow the pod gets train_accelerator_count x train_accelerator), or, for
    # train_workers > 1, as a Vertex AI training job of train_workers machines with that many
    # accelerators each (MultiWorkerMirroredStrategy from the TF_CONFIG that Vertex AI sets; TPUs:
    # --strategy=tpu). See docs/kubeflow.md.
    train_workers: int = 1
    train_machine_type: str = "n1-standard-8"
    train_accelerator: str = ""  # a Vertex AI accelerator type, e.g. NVIDIA_TESLA_A100, NVIDIA_H100_80GB
    train_accelerator_count: int = 0  # per worker: the replicas each worker trains
    vertex_project: str = ""
    vertex_region: str = "us-central1"
    # the container image of the components on Kubeflow Pipelines and of the Vertex AI training job
    image: str = "nanogpt-tfx:latest"
    # evaluation and blessing
    baselines: List[str] = dataclasses.field(default_factory=list)  # GPT-2 names or checkpoint dirs
    eval_batches: int = 0  # 0: the whole of each split
    eval_batch_size: int = 32
    val_loss_threshold: float = 1e9  # bless only under this validation loss
    max_regression: float = 0.0  # and no worse than the last blessed model by more than this
    beam_pipeline_args: List[str] = dataclasses.field(default_factory=lambda: [
        "--direct_running_mode=in_memory", "--direct_num_workers=1"])
    enable_cache: bool = True

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

# OpenWebText validation loss of the released models, as nanoGPT reports them.
GPT2_OWT_VAL_LOSS = {"gpt2": 3.12, "gpt2-medium": 2.84, "gpt2-large": 2.67, "gpt2-xl": 2.54}


def make_pipeline_config(preset: str = "shakespeare_char", **overrides) -> PipelineConfig:
    if preset not in PRESETS:
        raise ValueError(f"unknown pipeline preset {preset!r}; presets: {sorted(PRESETS)}")
    fields = {f.name for f in dataclasses.fields(PipelineConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown pipeline settings {unknown}")
    values = {**PRESETS[preset], **overrides}
    defaults = PipelineConfig()
    for key, value in values.items():
        if isinstance(getattr(defaults, key), float) and isinstance(value, int) and not isinstance(value, bool):
            values[key] = float(value)  # --val_loss_threshold=2 means 2.0
    return PipelineConfig(preset=preset, **values)


def absolute_path(path: str) -> str:
    """Local paths made absolute (the pipeline's components run elsewhere); URIs such as gs:// kept."""
    return path if "://" in path else os.path.abspath(path)
