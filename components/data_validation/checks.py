"""What data validation checks, on TFDV statistics of TokenizeText's documents
(components/tokenize_text/statistics.py), and how it says so.

  schema   each split's statistics against the schema (SchemaGen's, inferred from this data, or a
           curated one pinned with ImportSchemaGen): TFDV's validate_statistics
  drift    the train split against the train split of the data that trained the last blessed model,
           with the schema's drift comparators (SchemaGen's: L-infinity on the character and token
           distributions)
  skew     the train split against the val split, with the schema's skew comparators
  new characters  (character models) characters of this data not in the last blessed model's data,
           whose characters were its vocabulary

Each anomaly is one line (`token distribution drift 0.41 > 0.05 from the data of model 12
(.../Trainer/model/15)`: its ML Metadata id and its directory); the first names a stopped run's
reason. Drift and new characters need a baseline: none on a first run, none when the last blessed
model was trained on these very statistics, and none when its data was tokenized otherwise
(characters against GPT-2 tokens).
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional

from components.tokenize_text.statistics import CHAR, TOKEN
from core.shards import SPLITS, TRAIN, VAL

WORDS = {CHAR: "character", TOKEN: "token"}  # how a line names a distribution
MAX_CHARACTERS_SHOWN = 10
NEW_CHARACTERS = "New characters"  # the short description of that anomaly


@dataclasses.dataclass
class Baseline:
    """The statistics of the data that trained the last blessed model."""
    statistics: Dict[str, object]  # split -> DatasetFeatureStatisticsList
    model: str  # the model's id, as ML Metadata (or Kubeflow) names it
    uri: str  # the statistics'
    model_uri: str = ""  # the model's directory (Trainer/model/<execution id>: another number than its id)

    @property
    def named(self) -> str:
        """"model 32 (.../Trainer/model/50)": its id, which `runner.py lineage --model=` takes, and where it is."""
        return f"model {self.model} ({self.model_uri})" if self.model_uri else f"model {self.model}"


@dataclasses.dataclass
class Result:
    anomalies: Dict[str, object]  # split -> anomalies_pb2.Anomalies (what TFX's ExampleAnomalies holds)
    lines: List[str]  # one line per anomaly, the most telling first
    measurements: List[tuple]  # (feature, comparison, measure, value, threshold)


def _feature(dataset, name: str):
    return next((f for f in dataset.features if f.path.step and f.path.step[-1] == name), None)


def tokenized_by(statistics: Dict[str, object]) -> str:
    """How the data of these statistics was tokenized: GPT-2 BPE statistics have a token distribution."""
    return "gpt2" if any(_feature(s.datasets[0], TOKEN) for s in statistics.values() if s.datasets) else "char"


def characters(statistics: Dict[str, object]) -> set:
    """Every character of the data (its char distribution's values, all splits)."""
    found = set()
    for split_statistics in statistics.values():
        for dataset in split_statistics.datasets:
            feature = _feature(dataset, CHAR)
            if feature is not None:
                found.update(bucket.label for bucket in feature.string_stats.rank_histogram.buckets)
    return found


def comparable(current: Dict[str, object], baseline: Optional[Baseline]) -> Optional[str]:
    """Why the baseline is not compared with (None: it is)."""
    if baseline is None:
        return None
    if tokenized_by(current) != tokenized_by(baseline.statistics):
        return (f"the data of {baseline.named} was tokenized as {tokenized_by(baseline.statistics)}, this "
                f"data as {tokenized_by(current)}: no drift is measured")
    return None


def validate(current: Dict[str, object], schema, baseline: Optional[Baseline]) -> Result:
    """Anomalies of each split (TFDV's, and new characters), and their lines."""
    import tensorflow_data_validation as tfdv

    anomalies = {
        TRAIN: tfdv.validate_statistics(current[TRAIN], schema,
                                        previous_statistics=baseline.statistics[TRAIN] if baseline else None,
                                        serving_statistics=current[VAL]),
        VAL: tfdv.validate_statistics(current[VAL], schema)}
    lines = []
    if baseline is not None and tokenized_by(current) == "char":
        new = sorted(characters(current) - characters(baseline.statistics))
        if new:
            shown = ", ".join(repr(c) for c in new[:MAX_CHARACTERS_SHOWN])
            more = f" and {len(new) - MAX_CHARACTERS_SHOWN} more" if len(new) > MAX_CHARACTERS_SHOWN else ""
            lines.append(f"new characters {shown}{more} not in the vocabulary of the last blessed model, "
                         f"{baseline.named}")
            _add_anomaly(anomalies[TRAIN], CHAR, NEW_CHARACTERS, lines[-1])
    measurements = []
    for info in anomalies[TRAIN].drift_skew_info:
        name = ".".join(info.path.step)
        word = WORDS.get(name, name)
        for kind, measured, against in (("drift", info.drift_measurements, f"from the data of "
                                          f"{baseline.named if baseline else 'model ?'}"),
                                         ("skew", info.skew_measurements, "between train and val")):
            for m in measured:
                measure = type(m).Type.Name(m.type)
                measurements.append((name, kind, measure, m.value, m.threshold))
                if m.value > m.threshold:
                    lines.append(f"{word} distribution {kind} {m.value:.3g} > {m.threshold:g} {against}")
    for split in SPLITS:
        lines += _schema_lines(anomalies[split], split)
    return Result(anomalies, lines, measurements)


def _add_anomaly(anomalies, feature: str, short: str, description: str) -> None:
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    info = anomalies.anomaly_info[feature]
    if not info.path.step:
        info.path.step.append(feature)
        info.severity = anomalies_pb2.AnomalyInfo.ERROR
        info.short_description, info.description = short, description
    info.reason.add(type=anomalies_pb2.AnomalyInfo.ENUM_TYPE_UNEXPECTED_STRING_VALUES, short_description=short,
                    description=description)


def _schema_lines(anomalies, split: str) -> List[str]:
    """Lines of the anomalies other than new characters and the comparators' (said by their
    measurements)."""
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    said = {anomalies_pb2.AnomalyInfo.COMPARATOR_L_INFTY_HIGH,
            anomalies_pb2.AnomalyInfo.COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH,
            anomalies_pb2.AnomalyInfo.COMPARATOR_NORMALIZED_ABSOLUTE_DIFFERENCE_HIGH}
    lines = []
    infos = sorted(anomalies.anomaly_info.items())
    if anomalies.HasField("dataset_anomaly_info"):
        infos.append(("the dataset", anomalies.dataset_anomaly_info))
    for feature, info in infos:
        for reason in info.reason:
            if reason.type not in said and reason.short_description != NEW_CHARACTERS:
                lines.append(f"{feature} ({split}): {reason.short_description}: {' '.join(reason.description.split())}")
    return lines


def report(result: Result, statistics_uri: str, schema_uri: str, baseline: Optional[Baseline],
           notes: List[str]) -> str:
    """report.md: the anomalies, the distances measured, the notes, and TFDV's anomalies as text."""
    from google.protobuf import text_format

    lines = ["# Data validation", "", f"- statistics: `{statistics_uri}`", f"- schema: `{schema_uri}`",
             "- compared with: " + (f"the data of {baseline.named}: `{baseline.uri}`" if baseline else
                                     "no earlier data"), ""]
    lines += ["## Anomalies", ""] + ([f"- {line}" for line in result.lines] or ["none"]) + [""]
    if result.measurements:
        lines += ["## Distances", "", "| feature | comparison | measure | value | threshold |", "| --- | --- | --- | "
                  "---: | ---: |"]
        lines += [f"| {f} | {c} | {m} | {v:.4g} | {t:g} |" for f, c, m, v, t in result.measurements] + [""]
    if notes:
        lines += ["## Notes", ""] + [f"- {note}" for note in notes] + [""]
    for split in SPLITS:
        found = type(result.anomalies[split])()
        found.CopyFrom(result.anomalies[split])
        found.ClearField("baseline")  # the schema, which the report names
        lines += [f"## TFDV anomalies of {split}", "", "```", text_format.MessageToString(
            found, as_utf8=True).rstrip() or "(none)", "```", ""]
    return "\n".join(lines)
