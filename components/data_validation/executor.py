"""Executors of DataValidator (the checks of checks.py, written as TFX's ExampleAnomalies) and
AnomalyGate (stops the run on them)."""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional, Tuple

from absl import logging
from tfx import types
from tfx.components.statistics_gen import stats_artifact_utils
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import io_utils

from components.artifact_layout import ANOMALIES_REPORT_FILE, DATA_STATISTICS_PROPERTY, optional_artifact
from components.data_validation import checks
from components.tokenize_text.statistics import STATS_FILE_NAME
from core import files
from core.errors import UserError, writing
from core.shards import SPLITS, split_dir

STATISTICS_KEY, SCHEMA_KEY, BASELINE_KEY = "statistics", "schema", "baseline_blessing"
ANOMALIES_KEY, ACCEPT_KEY = "anomalies", "accept_anomalies"
ANOMALIES_FILE = "SchemaDiff.pb"  # TFX's ExampleValidator's name for each split's Anomalies
LINES_PROPERTY = "anomalies"


class DataAnomalies(UserError):
    """The data has anomalies and the run stops before training on it."""


def load_baseline(blessing: Optional[types.Artifact], current_uri: str) -> Tuple[Optional[checks.Baseline], List[str]]:
    """The statistics of the data the last blessed model was trained on (None when there is no such
    model, it was trained on these very statistics, or they cannot be read), and notes on why not."""
    if blessing is None:  # none yet, or (LastBlessedDataStrategy) the last one was trained on this very data
        return None, ["no blessed model of other data to compare with: no drift is measured"]
    model = blessing.get_custom_property("current_model_id")
    model_uri = blessing.get_string_custom_property("current_model")
    uri = blessing.get_string_custom_property(DATA_STATISTICS_PROPERTY)
    if not uri:
        return None, [f"the last blessed model ({model}) records no statistics of its data: no drift is measured"]
    if uri.rstrip("/") == current_uri.rstrip("/"):
        return None, [f"the last blessed model ({model}) was trained on this very data: no drift to measure"]
    try:
        import tensorflow_data_validation as tfdv

        statistics = {split: tfdv.load_stats_binary(os.path.join(split_dir(uri, split), STATS_FILE_NAME))
                      for split in SPLITS}
    except Exception as e:  # noqa: BLE001 (a removed or damaged file: said, and the data checked without it)
        return None, [f"the statistics of the last blessed model's data ({uri}) cannot be read "
                      f"({type(e).__name__}): no drift is measured"]
    return checks.Baseline(statistics, str(model), uri, model_uri), []


class Validator(base_executor.BaseExecutor):
    def Do(self, input_dict: Dict[str, List[types.Artifact]], output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        statistics = artifact_utils.get_single_instance(input_dict[STATISTICS_KEY])
        schema_artifact = artifact_utils.get_single_instance(input_dict[SCHEMA_KEY])
        anomalies = artifact_utils.get_single_instance(output_dict[ANOMALIES_KEY])
        schema_file = io_utils.get_only_uri_in_dir(schema_artifact.uri)
        schema = io_utils.SchemaReader().read(schema_file)
        current = {split: stats_artifact_utils.load_statistics(statistics, split).proto() for split in SPLITS}
        baseline, notes = load_baseline(optional_artifact(input_dict, BASELINE_KEY), statistics.uri)
        why_not = checks.comparable(current, baseline)
        if why_not:
            baseline, notes = None, notes + [why_not]
        result = checks.validate(current, schema, baseline)
        with writing(f"the anomalies {anomalies.uri}"):
            for split in SPLITS:
                files.write_file(os.path.join(split_dir(anomalies.uri, split), ANOMALIES_FILE),
                                 result.anomalies[split].SerializeToString())
            files.write_file(os.path.join(anomalies.uri, ANOMALIES_REPORT_FILE),
                             checks.report(result, statistics.uri, schema_file, baseline, notes))
        anomalies.split_names = artifact_utils.encode_split_names(list(SPLITS))
        anomalies.set_json_value_custom_property("blessed", {
            split: int(not (a.anomaly_info or a.HasField("dataset_anomaly_info")))
            for split, a in result.anomalies.items()})
        anomalies.set_string_custom_property(LINES_PROPERTY, json.dumps(result.lines, ensure_ascii=False))
        if baseline is not None:
            anomalies.set_string_custom_property("baseline_model", baseline.model)
        compared = f"compared with the data of {baseline.named}" if baseline else "; ".join(notes)
        for line in result.lines or [f"no anomalies ({compared})"]:
            logging.info("DataValidator: %s", line)


def report_path(anomalies: types.Artifact) -> str:
    return os.path.join(anomalies.uri, ANOMALIES_REPORT_FILE)


class Gate(base_executor.BaseExecutor):
    def Do(self, input_dict: Dict[str, List[types.Artifact]], output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        anomalies = artifact_utils.get_single_instance(input_dict[ANOMALIES_KEY])
        lines = json.loads(anomalies.get_string_custom_property(LINES_PROPERTY) or "[]")
        if not lines:
            return
        more = f" (and {len(lines) - 1} more)" if len(lines) > 1 else ""
        if exec_properties.get(ACCEPT_KEY):
            print(f"data anomalies accepted (--accept_anomalies=True): {'; '.join(lines)}; report: "
                  f"{report_path(anomalies)}", flush=True)
            return
        # the report first: a runner that shortens a task's last line (run --spec) keeps it whole
        raise DataAnomalies(f"data anomalies, nothing trained (report: {report_path(anomalies)}): {lines[0]}{more}; "
                            f"--accept_anomalies=True trains on this data anyway, --skip_validation=True skips "
                            f"the checks")
