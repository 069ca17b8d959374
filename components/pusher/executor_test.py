"""The atomic push on real files and standard artifacts; a disk that fills up in the middle of a
push (a real ENOSPC from the small_disk tmpfs of conftest.py)."""

import json
import os

import pytest
from tfx.proto import pusher_pb2
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from components.pusher.executor import Executor
from components.pusher.marks import PUSH_FILE, STAGING_PREFIX, left_by
from core.errors import DiskFull

MODEL_BYTES = 600 * 1024


def _inputs(tmp_path, blessed=True, infra_blessed=None, metrics=None):
    """A Model artifact holding a SavedModel-shaped directory and its blessing (naming an evaluation
    whose metrics.json is `metrics`), and an infra blessing when infra_blessed is not None."""
    model = standard_artifacts.Model()
    model.uri = str(tmp_path / "model")
    serving = os.path.join(model.uri, "Format-Serving")
    os.makedirs(os.path.join(serving, "variables"))
    with open(os.path.join(serving, "variables", "variables.data-00000-of-00001"), "wb") as f:
        f.write(os.urandom(MODEL_BYTES))
    with open(os.path.join(serving, "saved_model.pb"), "wb") as f:
        f.write(os.urandom(1024))
    blessing = standard_artifacts.ModelBlessing()
    blessing.uri = str(tmp_path / "blessing")
    blessing.set_int_custom_property("blessed", int(blessed))
    inputs = {"model": [model], "model_blessing": [blessing]}
    if metrics is not None:
        os.makedirs(tmp_path / "evaluation")
        (tmp_path / "evaluation" / "metrics.json").write_text(json.dumps(metrics))
        blessing.set_string_custom_property("evaluation", str(tmp_path / "evaluation"))
    if infra_blessed is not None:
        infra = standard_artifacts.InfraBlessing()
        infra.uri = str(tmp_path / "infra_blessing")
        infra.set_int_custom_property("blessed", int(infra_blessed))
        infra.set_string_custom_property("infra_check", "loaded in a fresh process ...")
        inputs["infra_blessing"] = [infra]
    return inputs


def _push(tmp_path, inputs, serving_dir, attempt=0):
    pushed = standard_artifacts.PushedModel()
    pushed.uri = str(tmp_path / f"pushed_{attempt}")
    destination = pusher_pb2.PushDestination(filesystem=pusher_pb2.PushDestination.Filesystem(
        base_directory=str(serving_dir)))
    Executor().Do(inputs, {"pushed_model": [pushed]}, {"push_destination": proto_utils.proto_to_json(destination)})
    return pushed


def test_a_push_is_a_complete_version_directory_named_before_it_is_made(tmp_path):
    serving_dir = tmp_path / "serving"
    other = serving_dir / f"{STAGING_PREFIX}123-1"  # another push's, in progress (or killed): not this push's
    os.makedirs(other)
    pushed = _push(tmp_path, _inputs(tmp_path), serving_dir)
    [version] = [name for name in os.listdir(serving_dir) if name.isdigit()]
    assert other.is_dir() and pushed.get_int_custom_property("pushed") == 1
    assert pushed.get_string_custom_property("pushed_destination") == str(serving_dir / version)
    assert left_by(pushed.uri) == [str(serving_dir / f"{STAGING_PREFIX}{version}-{os.getpid()}"),
                                   str(serving_dir / version)]
    assert os.path.isfile(os.path.join(pushed.uri, PUSH_FILE))
    other.rmdir()
    assert os.path.getsize(serving_dir / version / "variables" / "variables.data-00000-of-00001") == MODEL_BYTES
    not_blessed = _push(tmp_path, _inputs(tmp_path / "other", blessed=False), serving_dir, attempt=1)
    assert not_blessed.get_int_custom_property("pushed") == 0 and os.listdir(serving_dir) == [version]


def test_a_full_disk_mid_push_leaves_nothing_and_the_rerun_completes(tmp_path, small_disk):
    inputs = _inputs(tmp_path)
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (700 * 1024))  # the model's 601 KiB no longer fit
    serving_dir = small_disk / "serving"
    with pytest.raises(DiskFull, match=f"^no space left on the device writing the pushed model {serving_dir}/[0-9]+: "):
        _push(tmp_path, inputs, serving_dir)
    assert os.listdir(serving_dir) == []  # no version directory, no staging litter
    filler.unlink()
    pushed = _push(tmp_path, inputs, serving_dir, attempt=1)
    [version] = os.listdir(serving_dir)
    assert pushed.get_string_custom_property("pushed_destination") == str(serving_dir / version)
    assert json.dumps(sorted(os.listdir(serving_dir / version))) == '["assets.extra", "saved_model.pb", "variables"]'


def test_a_push_has_its_model_card_and_a_model_the_infra_check_failed_is_not_pushed(tmp_path):
    """The card in the version directory's assets.extra/ (and the archive copy), from the evaluation
    the blessing names; an infra blessing of 0 stops the push as a model blessing of 0 does."""
    serving_dir = tmp_path / "serving"
    metrics = {"reason": "blessed: val loss 1.9000 < val_loss_threshold 1.95", "data": {"tokenizer": "characters (65 ...)"},
               "models": [{"role": "candidate", "name": "candidate", "tokens": "char", "num_params": 800000,
                           "train_loss": 1.8, "val_loss": 1.9, "train_bpb": 2.6, "val_bpb": 2.7411}],
               "inputs": {"model": {"id": 7, "type": "Model", "uri": "/m"}}}
    pushed = _push(tmp_path, _inputs(tmp_path, infra_blessed=True, metrics=metrics), serving_dir)
    [version] = os.listdir(serving_dir)
    card_path = serving_dir / version / "assets.extra" / "model_card.md"
    assert pushed.get_string_custom_property("model_card") == str(card_path)
    card = card_path.read_text()
    assert card.startswith(f"# Model card: version {version}")
    assert "| candidate | candidate | char | 1.8000 | 1.9000 | 2.6000 | 2.7411 |" in card
    assert "- infra check: loaded in a fresh process ..." in card and "runner.py lineage --model=7" in card
    assert (tmp_path / "pushed_0" / "assets.extra" / "model_card.md").read_text() == card
    not_pushed = _push(tmp_path, _inputs(tmp_path / "other", infra_blessed=False), serving_dir, attempt=1)
    assert not_pushed.get_int_custom_property("pushed") == 0 and os.listdir(serving_dir) == [version]
