"""The InfraValidator's executor on real SavedModels in a real fresh process: one that fails to load,
one that loads but does not answer as a served model must, and what needs no process (a model the
evaluator did not bless, a model of unknown shape). A model that passes: tests/pipeline_e2e_test.py's
char_run, whose pushed model the check loaded and called."""

import json
import os
import subprocess
import sys

import tensorflow as tf
from tfx.types import standard_artifacts

from components import artifact_layout
from components.infra_validator import check, executor
from components.deploy_settings import INFRA_DEPLOY, DeployConfig, part_json
from test_helpers.lm_models import tiny_gpt


def _run(tmp_path, model_uri, blessed=None):
    model = standard_artifacts.Model()
    model.uri = str(model_uri)
    blessing = standard_artifacts.InfraBlessing()
    blessing.uri = str(tmp_path / "infra_blessing")
    os.makedirs(blessing.uri, exist_ok=True)
    inputs = {"model": [model], "model_blessing": []}
    if blessed is not None:
        model_blessing = standard_artifacts.ModelBlessing()
        model_blessing.set_int_custom_property("blessed", blessed)
        inputs["model_blessing"] = [model_blessing]
    executor.Executor().Do(inputs, {"blessing": [blessing]},
                           {"config": part_json(DeployConfig(infra_timeout=120), INFRA_DEPLOY)})
    return blessing


def _not_blessed(blessing):
    assert os.listdir(blessing.uri) == ["INFRA_NOT_BLESSED"]
    assert blessing.get_int_custom_property("blessed") == 0
    return blessing.get_string_custom_property(artifact_layout.INFRA_CHECK_KEY)


def _model_dir(tmp_path, module, signatures):
    """A Model artifact's directory: a tiny GPT's Hugging Face checkpoint, and `module` as its SavedModel."""
    root = tmp_path / "model"
    tiny_gpt().save_pretrained(str(root / artifact_layout.HF_CHECKPOINT_DIR))
    tf.saved_model.save(module, str(root / artifact_layout.SERVING_DIR), signatures=signatures)
    return root


def test_the_checks_process_cannot_import_the_projects_code():
    """canned_requests.hide_project in a `python -I` process: the project's packages, importable
    there before (the editable install's finder), are not after."""
    code = (f"import importlib.util, runpy, sys\n"
            f"before = [n for n in {check.PROJECT_PACKAGES!r} if importlib.util.find_spec(n)]\n"
            f"visible = runpy.run_path({check.CLIENT!r})['hide_project']({check.PROJECT_ROOT!r}, "
            f"{check.PROJECT_PACKAGES!r})\n"
            f"after = [n for n in {check.PROJECT_PACKAGES!r} if importlib.util.find_spec(n)]\n"
            f"print(before, visible, after)\n"
            f"import core")
    done = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.startswith("['core', 'model', 'training', 'serving', 'components', 'pipeline'")
    assert done.stdout.rstrip().endswith("[] []") and "ModuleNotFoundError: No module named 'core'" in done.stderr


def test_a_savedmodel_that_does_not_load_or_answer_is_not_blessed_with_one_line(tmp_path):
    class Answers(tf.Module):  # loads, but serves only its tokenizer
        @tf.function(input_signature=[])
        def tokenizer(self):
            return {"tokenizer": tf.constant(json.dumps({"kind": "gpt2"}))}

    module = Answers()
    model = _model_dir(tmp_path, module, {"tokenizer": module.tokenizer})
    what = _not_blessed(_run(tmp_path, model))
    assert what == ("a canned request: AssertionError: the SavedModel has no 'generate' signature (it has "
                    "['tokenizer'])")
    # its variables damaged: it does not load
    variables = model / artifact_layout.SERVING_DIR / "variables" / "variables.index"
    variables.write_bytes(b"not a checkpoint index")
    what = _not_blessed(_run(tmp_path / "damaged", model))
    assert what == (f"loading the SavedModel {model / artifact_layout.SERVING_DIR}: OpError: file is too short to "
                    f"be an sstable")


def test_what_needs_no_process(tmp_path):
    """A model its evaluator did not bless is not checked (it will not be pushed); a Model without
    its Hugging Face config is of unknown shape."""
    blessing = _run(tmp_path, tmp_path / "anything", blessed=0)
    assert _not_blessed(blessing) == "the evaluator did not bless the model"
    assert blessing.get_int_custom_property(artifact_layout.INFRA_CHECKED_KEY) == 0
    blessing = _run(tmp_path / "shapeless", tmp_path / "no_model", blessed=1)
    assert _not_blessed(blessing).startswith("the model's shape is unknown: ")
    assert blessing.get_float_custom_property(artifact_layout.INFRA_CHECK_SECONDS_KEY) == 0.0
