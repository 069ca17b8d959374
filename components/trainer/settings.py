"""The Trainer's custom_config: the training part of the run's configuration and the deployment
settings run_fn reads (components/deploy_settings.py TRAINER_DEPLOY), as JSON, read back typed.
Imports nothing heavy."""

from __future__ import annotations

from components.deploy_settings import TRAINER_DEPLOY, DeployConfig, part_from_json, part_json


# The Trainer's custom_config: the training part as JSON with its schema, its deployment settings,
# whether to resume, and where the pipeline's trainings lie (components/trainer/trainings.py).
TRAIN_CONFIG_KEY, DEPLOY_CONFIG_KEY, RESUME_KEY = "train_config", "deploy_config", "resume"
TRAININGS_DIR_KEY = "trainings_dir"


def custom_config(train, deploy: DeployConfig, resume: bool, trainings_dir: str = "") -> dict:
    """The Trainer's custom_config for a TrainConfig, a DeployConfig (TRAINER_DEPLOY of it), whether
    to resume, and the pipeline's trainings directory ("": the training runs in the ModelRun
    directory itself)."""
    return {TRAIN_CONFIG_KEY: train.to_json(), DEPLOY_CONFIG_KEY: part_json(deploy, TRAINER_DEPLOY),
            RESUME_KEY: bool(resume), TRAININGS_DIR_KEY: trainings_dir}


def read_custom_config(custom: dict):
    """(TrainConfig, DeployConfig, resume) of a Trainer's custom_config, read back typed."""
    from training.config import TrainConfig

    return (TrainConfig.from_json(custom[TRAIN_CONFIG_KEY]), part_from_json(custom[DEPLOY_CONFIG_KEY], TRAINER_DEPLOY),
            bool(custom.get(RESUME_KEY)))
