"""DataValidator and AnomalyGate: the data checked before anything trains on it.

DataValidator (TFX's ExampleValidator does the schema checks alone; this one measures drift and
skew too, and writes the same artifact):
  Inputs:  statistics         ExampleStatistics of the documents (TokenizeText's)
           schema             Schema (SchemaGen's inferred one, or a curated one from ImportSchemaGen)
           baseline_blessing  ModelBlessing (optional): the last blessed model's, whose
                              data_statistics property names the statistics of the data it was
                              trained on (LMEvaluator records it)
  Output:  anomalies          ExampleAnomalies: Split-<split>/SchemaDiff.pb (TFDV's Anomalies, as
                              TFX's ExampleValidator writes them) and report.md; custom properties
                              blessed ({split: 1 or 0}, as ExampleValidator's), anomalies (a JSON
                              list of one line each), baseline_model
  It never fails on anomalies (so that they are published); the AnomalyGate stops the run.

AnomalyGate:
  Input:      anomalies (the DataValidator's)
  Parameter:  accept_anomalies  0: anomalies stop the run with one line naming the first and the
                                report; 1: they are printed and the run goes on
  No output: the components that must not run on bad data (Transform, the Trainer) run after it.
"""

from __future__ import annotations

from typing import Optional

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from components.data_validation import executor


class DataValidatorSpec(types.ComponentSpec):
    PARAMETERS = {}
    INPUTS = {
        executor.STATISTICS_KEY: ChannelParameter(type=standard_artifacts.ExampleStatistics),
        executor.SCHEMA_KEY: ChannelParameter(type=standard_artifacts.Schema),
        executor.BASELINE_KEY: ChannelParameter(type=standard_artifacts.ModelBlessing, optional=True),
    }
    OUTPUTS = {executor.ANOMALIES_KEY: ChannelParameter(type=standard_artifacts.ExampleAnomalies)}


class DataValidator(base_component.BaseComponent):
    SPEC_CLASS = DataValidatorSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Validator)

    def __init__(self, *, statistics: types.BaseChannel, schema: types.BaseChannel,
                 baseline_blessing: Optional[types.BaseChannel] = None):
        super().__init__(spec=DataValidatorSpec(
            statistics=statistics, schema=schema, baseline_blessing=baseline_blessing,
            anomalies=types.Channel(type=standard_artifacts.ExampleAnomalies)))


class AnomalyGateSpec(types.ComponentSpec):
    PARAMETERS = {executor.ACCEPT_KEY: ExecutionParameter(type=int)}
    INPUTS = {executor.ANOMALIES_KEY: ChannelParameter(type=standard_artifacts.ExampleAnomalies)}
    OUTPUTS = {}


class AnomalyGate(base_component.BaseComponent):
    SPEC_CLASS = AnomalyGateSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Gate)

    def __init__(self, *, anomalies: types.BaseChannel, accept_anomalies: bool = False):
        super().__init__(spec=AnomalyGateSpec(anomalies=anomalies, accept_anomalies=int(accept_anomalies)))
