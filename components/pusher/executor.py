"""TFX's filesystem push made atomic: the model is copied into a staging directory beside its
version directory and renamed into place, so that a push cut short (a full disk, a kill) leaves
no version directory. A serving directory then only ever holds complete models; which of them ML
Metadata records as pushed is what `runner.py sample` and `lineage` take (pipeline/lineage.py). A
model is pushed when its model blessing and its infra blessing (when given) say so (TFX's
CheckBlessing); its model card (model_card.py) is written into the staging directory, so that the
version appears with it.

A push removes only what it made itself: its staging directory when it fails. Before it makes
anything outside its own PushedModel directory it names it there (PUSH_FILE), so that the run after
a push killed with kill -9 removes exactly that (orchestration/recovery.py,
orchestration/kubeflow/launcher.py), and never a directory another push, or another pipeline pushing
to the same serving directory, is writing."""

from __future__ import annotations

import os
import time
from typing import Any, Dict, List, Optional

from absl import logging
from tfx import types
from tfx.components.pusher import executor as tfx_pusher
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils

from components.artifact_layout import (BLESSING_EVALUATION_KEY, INFRA_CHECK_KEY, METRICS_FILE, MODEL_CARD_KEY,
                                        MODEL_CARD_PATH, optional_artifact)
from components.pusher import model_card
from components.pusher.marks import PUSH_FILE, staging_path
from core import files
from core.errors import writing
from serving import describe_export
from serving.export import export_record


def _write_extra(directory: str, extra_files: Dict[str, str]) -> None:
    for relative, content in extra_files.items():
        io_utils.write_string_file(os.path.join(directory, relative), content)


def copy_atomically(model_path: str, destination: str, extra_files: Optional[Dict[str, str]] = None) -> None:
    """Copy the SavedModel at model_path to destination, with extra_files ({path inside it: text},
    the model card) written into it, which appears whole or not at all. An object store (gs://...)
    has no atomic rename of a directory: there, as TFX does, saved_model.pb is copied last (servers
    take a version without it as incomplete), and a failed copy removed."""
    if "://" in destination:
        try:
            io_utils.copy_dir(model_path, destination, deny_regex_patterns=[r"saved_model\.pb"])
            _write_extra(destination, extra_files or {})
            io_utils.copy_file(os.path.join(model_path, "saved_model.pb"),
                               os.path.join(destination, "saved_model.pb"))
        except BaseException:
            if fileio.exists(destination):
                fileio.rmtree(destination)
            raise
        return
    staging = staging_path(destination)
    fileio.makedirs(os.path.dirname(staging))
    try:
        io_utils.copy_dir(model_path, staging)
        _write_extra(staging, extra_files or {})
        fileio.rename(staging, destination)
    except BaseException:
        if fileio.exists(staging):
            fileio.rmtree(staging)
        raise


class Executor(tfx_pusher.Executor):
    def Do(self, input_dict: Dict[str, List[types.Artifact]], output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        model_push = artifact_utils.get_single_instance(output_dict[standard_component_specs.PUSHED_MODEL_KEY])
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(model_push)
            return
        model_path = self.GetModelPath(input_dict)
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination)
        if destination.WhichOneof("destination") != "filesystem" or destination.filesystem.versioning not in (
                pusher_pb2.Versioning.AUTO, pusher_pb2.Versioning.UNIX_TIMESTAMP):
            raise NotImplementedError(f"Pusher: only filesystem pushes with timestamp versions, got {destination}")
        base_directory = destination.filesystem.base_directory
        version = str(int(time.time()))
        serving_path = os.path.join(base_directory, version)
        while fileio.exists(serving_path):  # two pushes in one second
            version = str(int(version) + 1)
            serving_path = os.path.join(base_directory, version)
        card = {MODEL_CARD_PATH: self._model_card(input_dict, version, serving_path, export_record(model_path))}
        with writing(f"the pushed model {serving_path}"):
            # the archive copy first: a failure there leaves nothing in the serving directory
            io_utils.copy_dir(model_path, model_push.uri)
            _write_extra(model_push.uri, card)
            files.write_json(os.path.join(model_push.uri, PUSH_FILE), {
                "destination": serving_path, "staging": "" if "://" in serving_path else staging_path(serving_path)})
            copy_atomically(model_path, serving_path, card)
        logging.info("Model written to serving path %s.", serving_path)
        self._MarkPushed(model_push, pushed_destination=serving_path, pushed_version=version)
        model_push.set_string_custom_property(MODEL_CARD_KEY, os.path.join(serving_path, MODEL_CARD_PATH))

    @staticmethod
    def _model_card(input_dict, version: str, serving_path: str, exported: Optional[dict]) -> str:
        """The card of the model pushed: the evaluation its blessing names, the ids of what the
        Pusher read, and what its export chose (`exported`, serving/export.py's record)."""
        ids, metrics, infra_check = [], None, None
        for key in (standard_component_specs.MODEL_KEY, standard_component_specs.MODEL_BLESSING_KEY,
                    standard_component_specs.INFRA_BLESSING_KEY):
            artifact = optional_artifact(input_dict, key)
            if artifact is None:
                continue
            ids.append((key, artifact.type_name, artifact.id, artifact.uri))
            names_evaluation = artifact.has_custom_property(BLESSING_EVALUATION_KEY)
            if key == standard_component_specs.MODEL_BLESSING_KEY and names_evaluation:
                evaluation = artifact.get_string_custom_property(BLESSING_EVALUATION_KEY)
                metrics = files.read_json(os.path.join(evaluation, METRICS_FILE), default=None)
            if key == standard_component_specs.INFRA_BLESSING_KEY and artifact.has_custom_property(INFRA_CHECK_KEY):
                infra_check = artifact.get_string_custom_property(INFRA_CHECK_KEY)
        ids = [i for i in ids if not (metrics and i[0] == standard_component_specs.MODEL_KEY)]  # metrics name it
        return model_card.model_card(metrics, version=version, destination=serving_path, ids=ids,
                                     infra_check=infra_check, serving=describe_export(exported) if exported else None)
