"""InfraValidator: the candidate SavedModel loaded and called with canned requests before the push,
as TFX's InfraValidator does in LOAD_AND_QUERY mode, with no model server here: the model is loaded
with tf.saved_model.load in a fresh process that has none of the project's code on its path (as TF
Serving or another team's service would load it), and every signature is called (canned_requests.py).

Inputs:
  model           Model: <uri>/Format-Serving is checked (<uri>/Format-HF's config.json gives its
                  context and vocabulary)
  model_blessing  ModelBlessing (optional): a model its evaluator did not bless is not checked (it
                  will not be pushed): the blessing says so
Parameters:
  config          its deployment settings as JSON (components/deploy_settings.py INFRA_DEPLOY: infra_timeout,
                  infra_max_new_tokens)
Outputs:
  blessing        InfraBlessing, as TFX's InfraValidator writes it: an INFRA_BLESSED or
                  INFRA_NOT_BLESSED file and `blessed` 1/0, which the Pusher's infra_blessing input
                  reads (a model that failed is not pushed); infra_check (what was checked, or what
                  failed, in one line) and infra_check_seconds.
"""

from __future__ import annotations

from typing import Optional

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from components.infra_validator import executor
from components.deploy_settings import INFRA_DEPLOY, DeployConfig, part_json


class InfraValidatorSpec(types.ComponentSpec):
    PARAMETERS = {executor.CONFIG_KEY: ExecutionParameter(type=str)}  # INFRA_DEPLOY of a DeployConfig, as JSON
    INPUTS = {
        executor.MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
        executor.MODEL_BLESSING_KEY: ChannelParameter(type=standard_artifacts.ModelBlessing, optional=True),
    }
    OUTPUTS = {executor.BLESSING_KEY: ChannelParameter(type=standard_artifacts.InfraBlessing)}


class InfraValidator(base_component.BaseComponent):
    """The candidate's SavedModel loaded and called in a fresh process; an InfraBlessing. See the
    module docstring."""

    SPEC_CLASS = InfraValidatorSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, *, model: types.BaseChannel, model_blessing: Optional[types.BaseChannel] = None,
                 config: Optional[DeployConfig] = None):
        spec = InfraValidatorSpec(model=model, model_blessing=model_blessing,
                                  blessing=types.Channel(type=standard_artifacts.InfraBlessing),
                                  config=part_json(config or DeployConfig(), INFRA_DEPLOY))
        super().__init__(spec=spec)
