"""The deployment part of the run's configuration (pipeline/configs.py): what the Trainer exports,
the InfraValidator's check, and where the Trainer trains (read by pipeline/pipeline.py and
orchestration/kubeflow/compile.py). Each component is given only the settings it reads, as JSON
(part_json), and reads them back typed (part_from_json). Imports nothing heavy."""

from __future__ import annotations

import dataclasses
import json

from core.settings import SettingError, Settings, check, setting
from model.presets import WEIGHT_DTYPES
from serving import AUTO, SERVING_LOOPS


@dataclasses.dataclass
class DeployConfig(Settings):
    # the exported SavedModel (serving/export.py)
    serving_weights: str = setting("float32", "the exported SavedModel's matmul weights: float32, bfloat16 (half "
                                              "the bytes read per token; logits a little off float32's), or auto "
                                              "(the faster of the two, measured at the export: serving/choose.py)",
                                   choices=WEIGHT_DTYPES + (AUTO,))
    serving_loop: str = setting("auto", "how the exported generate signature decodes: xla (XLA-compiled, for GPU "
                                        "and TPU servers), graph (no XLA: any TF Serving), or auto (the faster of "
                                        "the two, measured at the export on the Trainer's machine)",
                                choices=SERVING_LOOPS)
    # the infra check before the push (components/infra_validator/)
    infra_timeout: int = setting(600, "seconds the infra check's fresh process may take to load the SavedModel and "
                                      "answer its canned requests (else the model is not pushed)", minimum=1)
    infra_max_new_tokens: int = setting(0, "the infra check's generation requests make this many tokens at most (0: "
                                           "fill the model's context, the largest request it answers from its cache)",
                                        minimum=0)
    # where training runs: in the Trainer's own process or pod (one device, or `--strategy=mirrored`
    # over its GPUs; on Kubeflow the pod gets train_accelerator_count x train_accelerator), or, for
    # train_workers > 1, as a Vertex AI training job of train_workers machines with that many
    # accelerators each (MultiWorkerMirroredStrategy from the TF_CONFIG that Vertex AI sets; TPUs:
    # --strategy=tpu). See docs/kubeflow.md.
    image: str = setting("nanogpt-tfx:latest", "the components' container image (Kubeflow, Vertex AI)")
    train_workers: int = setting(1, "machines that train (> 1: a Vertex AI training job)", minimum=1)
    train_machine_type: str = setting("n1-standard-8", "the Vertex AI machine type of each training worker")
    train_accelerator: str = setting("", "the Trainer pod's accelerator type, e.g. NVIDIA_TESLA_A100, "
                                         "NVIDIA_H100_80GB (Kubeflow, Vertex AI)")
    train_accelerator_count: int = setting(0, "accelerators per training worker: the replicas each trains",
                                           minimum=0)
    train_retries: int = setting(3, "Kubeflow: times the Trainer task is run again after it failed (preempted, "
                                    "killed); each retry continues the interrupted training", minimum=0)
    continue_interrupted: bool = setting(True, "continue an interrupted training of the same data and model shape "
                                               "from its latest checkpoint (False: train anew)")
    vertex_project: str = setting("", "the Google Cloud project of the Vertex AI training job")
    vertex_region: str = setting("us-central1", "the region of the Vertex AI training job")

    def __post_init__(self):
        check(self)
        if self.train_accelerator and self.train_accelerator_count < 1:
            raise SettingError(f"--train_accelerator={self.train_accelerator}: needs --train_accelerator_count >= 1")
        if self.train_workers > 1 and not self.vertex_project:
            raise SettingError(f"--train_workers={self.train_workers}: multi-worker training runs on Vertex AI, "
                               f"which needs --vertex_project (and --vertex_region)")

    @property
    def trains_on_vertex(self) -> bool:
        return self.train_workers > 1


# What each component is given of the deployment settings: only those it reads, since a component's
# parameters are its cache key (TFX runs it again when one changes), and a new --image or
# --infra_timeout must not train the model again.
TRAINER_DEPLOY = ("serving_weights", "serving_loop", "continue_interrupted")
INFRA_DEPLOY = ("infra_timeout", "infra_max_new_tokens")


def _part_schema(names) -> dict:
    schema = DeployConfig.schema()
    return {**schema, "fields": {name: schema["fields"][name] for name in names}}


def part_json(deploy: DeployConfig, names) -> str:
    """The settings `names` of a DeployConfig, as JSON in Settings.to_json's form (their schema and
    values; part_from_json reads it back)."""
    return json.dumps({"schema": _part_schema(names), "values": {name: getattr(deploy, name) for name in names}},
                      sort_keys=True)


def part_from_json(text: str, names) -> DeployConfig:
    """A DeployConfig of the settings part_json wrote (the others at their defaults: the component
    reads only these), checked as when they were made; SettingError when written by a version
    of the project that gave the component other settings."""
    data = json.loads(text)
    if not isinstance(data, dict) or data.get("schema") != _part_schema(names):
        raise SettingError(f"deployment settings written by another version (the component reads {', '.join(names)}"
                           f"): compile or build the pipeline again with this version")
    return DeployConfig(**data["values"])
