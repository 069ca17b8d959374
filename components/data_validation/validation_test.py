"""The data checks on real statistics (TokenizeText's executor, real TFDV) through the real executors
of SchemaGen, TFX's ImportSchemaGen, the DataValidator and the AnomalyGate: drift of the token
distribution from the last blessed model's data, none from the very same data, a curated schema, and
the gate stopping or accepting."""

import json
import os
import random

import pytest
import tensorflow_data_validation as tfdv
from tfx.components.schema_gen.import_schema_gen import executor as import_schema_gen
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import io_utils

from components.artifact_layout import ANOMALIES_REPORT_FILE, DATA_STATISTICS_PROPERTY
from components.data_validation import executor, schema_gen
from components.tokenize_text.executor_test import run_executor


def _folder(root, texts):
    root.mkdir()
    for i, text in enumerate(texts):
        (root / f"doc{i:02d}.txt").write_text(text, encoding="utf-8")
    return str(root)


@pytest.fixture(scope="module")
def statistics(tmp_path_factory, shakespeare_text, bpe_dir):
    """ExampleStatistics of GPT-2 tokens of 23 slices of Shakespeare and a whitespace-only document,
    and of 24 documents of numbers."""
    root = tmp_path_factory.mktemp("validation")
    rng = random.Random(0)
    corpora = {"shakespeare": [shakespeare_text[i * 3000:(i + 1) * 3000] for i in range(23)] + [" \n\n "],
               "numbers": ["\n".join(" ".join(str(rng.randrange(10 ** 6)) for _ in range(8)) for _ in range(40))
                           for _ in range(24)]}
    return {name: run_executor(root / name, statistics=True, input_pattern=_folder(root / f"{name}_text", texts),
                               tokenizer="gpt2", bpe_dir=bpe_dir)[1]
            for name, texts in corpora.items()}


def _schema(tmp_path, stats):
    """SchemaGen's schema of the statistics."""
    schema = standard_artifacts.Schema()
    schema.uri = str(tmp_path / "schema")
    schema_gen.Executor().Do({"statistics": [stats]}, {"schema": [schema]}, {"infer_feature_shape": 1})
    return schema


def _blessing(model_id, stats):
    """A blessed model's ModelBlessing as LMEvaluator writes it, naming the statistics of its data."""
    blessing = standard_artifacts.ModelBlessing()
    blessing.set_int_custom_property("blessed", 1)
    blessing.set_int_custom_property("current_model_id", model_id)
    blessing.set_string_custom_property("current_model", f"/runs/Trainer/model/{model_id + 5}")
    blessing.set_string_custom_property(DATA_STATISTICS_PROPERTY, stats.uri)
    return blessing


def _validate(tmp_path, stats, schema, blessing=None):
    anomalies = standard_artifacts.ExampleAnomalies()
    anomalies.uri = str(tmp_path / "anomalies")
    inputs = {"statistics": [stats], "schema": [schema], **({"baseline_blessing": [blessing]} if blessing else {})}
    executor.Validator().Do(inputs, {"anomalies": [anomalies]}, {})
    return anomalies, json.loads(anomalies.get_string_custom_property("anomalies"))


def test_drift_from_the_last_blessed_models_data_stops_the_run_at_the_gate(tmp_path, statistics, capsys):
    schema = _schema(tmp_path, statistics["numbers"])
    with open(os.path.join(schema.uri, "schema.pbtxt")) as f:
        assert "drift_comparator {\n    infinity_norm {\n      threshold: 0.05" in f.read()  # the token thresholds
    anomalies, lines = _validate(tmp_path, statistics["numbers"], schema, _blessing(7, statistics["shakespeare"]))
    [drift] = [line for line in lines if line.startswith("token distribution drift ")]
    value = float(drift.split()[3])
    assert value > 0.05 and drift == (f"token distribution drift {value:.3g} > 0.05 from the data of model 7 "
                                   f"(/runs/Trainer/model/12)")  # its id (lineage --model=7) and its directory
    # TFX's ExampleAnomalies, read as TFX's own visualization of them reads them, and the report
    for split in artifact_utils.decode_split_names(anomalies.split_names):
        found = anomalies_pb2.Anomalies.FromString(io_utils.read_bytes_file(
            io_utils.get_only_uri_in_dir(artifact_utils.get_split_uri([anomalies], split))))
        assert bool(found.anomaly_info) == (split == "train")  # drift is measured on train
        tfdv.display_anomalies(found)
    report = os.path.join(anomalies.uri, ANOMALIES_REPORT_FILE)
    with open(report) as f:
        assert f"- {drift}" in f.read()

    with pytest.raises(executor.DataAnomalies) as stopped:
        executor.Gate().Do({"anomalies": [anomalies]}, {}, {"accept_anomalies": 0})
    message = str(stopped.value)
    assert "\n" not in message and message.startswith(f"data anomalies, nothing trained (report: {report}): "
                                                      f"{lines[0]}")
    assert "--accept_anomalies=True" in message

    executor.Gate().Do({"anomalies": [anomalies]}, {}, {"accept_anomalies": 1})
    assert f"data anomalies accepted (--accept_anomalies=True): {'; '.join(lines)}" in capsys.readouterr().out


def test_no_drift_is_measured_against_the_very_same_data(tmp_path, statistics):
    stats = statistics["shakespeare"]
    anomalies, lines = _validate(tmp_path, stats, _schema(tmp_path, stats), _blessing(3, stats))
    assert lines == []
    with open(os.path.join(anomalies.uri, ANOMALIES_REPORT_FILE)) as f:
        assert "the last blessed model (3) was trained on this very data: no drift to measure" in f.read()
    executor.Gate().Do({"anomalies": [anomalies]}, {}, {"accept_anomalies": 0})  # nothing to stop for


def test_a_curated_schema_is_what_the_data_is_checked_against(tmp_path, statistics):
    """A copy of SchemaGen's schema that allows no whitespace-only document, pinned with TFX's
    ImportSchemaGen: the corpus that has one is stopped, naming the feature."""
    stats = statistics["shakespeare"]
    inferred = io_utils.SchemaReader().read(os.path.join(_schema(tmp_path, stats).uri, "schema.pbtxt"))
    feature = next(f for f in inferred.feature if f.name == "whitespace_only")
    feature.ClearField("bool_domain")
    feature.int_domain.max = 0
    curated = tmp_path / "curated.pbtxt"
    io_utils.write_pbtxt_file(str(curated), inferred)
    pinned = standard_artifacts.Schema()
    pinned.uri = str(tmp_path / "pinned")
    import_schema_gen.Executor().Do({}, {"schema": [pinned]}, {"schema_file": str(curated)})
    _, lines = _validate(tmp_path, stats, pinned)
    # (split head_tail: the document's head is in train, its tail in val)
    assert lines == [f"whitespace_only ({split}): Out-of-range values: Unexpectedly large value: 1."
                     for split in ("train", "val")]
