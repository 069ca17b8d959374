"""Where the Trainer's trainings run, so that an interrupted one is continued, never lost.

A training runs in a directory of its own under the pipeline's trainings directory
(<pipeline_root>/Trainer/trainings/<id>/: run_fn's custom_config "trainings_dir"), not in its
execution's ModelRun artifact: TFX removes a failed execution's outputs and recovery a killed one's,
and a retried Kubeflow task or a new run writes to other URIs; this directory is no execution's
output, and every execution of the pipeline finds it. Its TRAINING_FILE records what the training
is, its identity (the data artifacts it reads, its model's shape, what it started from), and the
settings of its last attempt.

The next Trainer execution of the same identity continues the one with the furthest checkpoint
(training/checkpoints.py) and says so in one line, naming the settings that changed (a lower
learning rate after a divergence, more iterations: nanoGPT's resume takes them too). Another
identity trains anew in a directory of its own, saying why, and the interrupted one stays where it
is; continue_interrupted=False always trains anew.

A finished training is published: copied into the ModelRun artifact (hard links on a local disk),
and once the execution's outputs are all written TRAINING_FILE says so (completed_as). The
LMEvaluator, which runs only once ML Metadata has published that ModelRun, removes the training's
directory (remove_published). Until then, a
completed training whose ModelRun is gone (its execution was killed before it was published, and
recovery removed it) is continued like an interrupted one: its model is exported again, untrained.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import shutil
import time
from typing import Iterator, List, Optional, Tuple

from core import files
from core.errors import UsageError, UserError
from training.checkpoint_shape import SHAPE_FIELDS
from training.checkpoints import newest_checkpoint

TRAINING_FILE = "training.json"
TRAININGS = "trainings"  # <pipeline_root>/<the Trainer's id>/trainings/
LOCK_FILE = ".lock"
# settings that change nothing of what a training computes, left out of the line of changed settings
_NOT_SETTINGS = ("out_dir", "data_dir")


class TrainingInUse(UserError):
    pass


def trainings_dir(pipeline_root: str, trainer_id: str = "Trainer") -> str:
    return f"{pipeline_root.rstrip('/')}/{trainer_id}/{TRAININGS}"


def identity(cfg, examples_uri: str, transform_graph_uri: Optional[str], base_model: Optional[str]) -> dict:
    """What a training is: what it reads, its model's shape, and what it started from."""
    start = f"resume from {base_model}" if base_model else cfg.init_from
    return {"examples": examples_uri, "transform_graph": transform_graph_uri or "", "start": start,
            **{field: getattr(cfg, field) for field in SHAPE_FIELDS}}


@dataclasses.dataclass
class Training:
    directory: str
    record: dict
    checkpoint: Optional[Tuple[str, int]]  # (path, iteration) of its newest checkpoint

    @property
    def name(self) -> str:
        return os.path.basename(self.directory.rstrip("/"))

    def continuable(self, model_run_dir: str) -> bool:
        """Not published: interrupted, or completed for a ModelRun that is gone (or is the asker's own)."""
        published = self.record.get("completed_as")
        return not published or published == model_run_dir.rstrip("/") or not files.is_directory(published)


def _trainings(trainings_dir: str) -> List[Training]:
    if not files.is_directory(trainings_dir):
        return []
    found = []
    for name in sorted(_listdir(trainings_dir)):
        directory = f"{trainings_dir.rstrip('/')}/{name}"
        record = files.read_json(f"{directory}/{TRAINING_FILE}", default=None)
        if record is not None:
            found.append(Training(directory, record, newest_checkpoint(directory)))
    return found


def _listdir(path: str) -> List[str]:
    if files.is_local(path):
        return os.listdir(path)
    import tensorflow as tf

    return [name.rstrip("/") for name in tf.io.gfile.listdir(path)]


@dataclasses.dataclass
class Choice:
    directory: str  # where the training runs
    continue_from: Optional[str]  # the checkpoint it goes on from
    line: str  # what was chosen and why, for the log ("" for a first training)


# How a Choice's line begins: what `runner.py run --spec` shows of a Trainer task's log on the console.
LINE_STARTS = ("continuing the training interrupted ", "the interrupted training ", "training anew: ")


def choose(trainings_dir: str, ident: dict, cfg, model_run_dir: str, allow_continue: bool = True) -> Choice:
    """Continue the interrupted training of this identity that got furthest, or train anew in a
    new directory (named after model_run_dir, so that every worker of a multi-worker training finds
    the same one)."""
    interrupted = [t for t in _trainings(trainings_dir) if t.continuable(model_run_dir)]
    same = [t for t in interrupted if t.record.get("identity") == ident]
    if allow_continue and same:
        best = max(same, key=lambda t: (t.checkpoint[1] if t.checkpoint else -1, t.record.get("started", 0)))
        changed = _changed_settings(best.record.get("config", {}), cfg.to_dict(), ident)
        if best.checkpoint and best.checkpoint[1] > cfg.max_iters:  # it would publish a model past max_iters
            raise UsageError(f"the training interrupted at iteration {best.checkpoint[1]} (run {best.name}) is past "
                             f"max_iters={cfg.max_iters}: raise --max_iters to continue it, or train anew with "
                             f"--continue_interrupted=False")
        if best.checkpoint is None:
            line = f"the interrupted training {best.name} saved no checkpoint: training it from iteration 0"
        else:
            line = f"continuing the training interrupted at iteration {best.checkpoint[1]} (run {best.name})"
        return Choice(best.directory, best.checkpoint[0] if best.checkpoint else None,
                      line + (f" with changed settings: {changed}" if changed else ""))
    directory = f"{trainings_dir.rstrip('/')}/{hashlib.sha256(model_run_dir.rstrip('/').encode()).hexdigest()[:16]}"
    elsewhere = [t for t in interrupted if t.checkpoint and t.directory != directory]
    if not elsewhere:
        return Choice(directory, None, "")
    last = max(elsewhere, key=lambda t: t.record.get("started", 0))
    why = "is left as asked (continue_interrupted=False)" if last.record.get("identity") == ident else \
        _difference(last.record.get("identity", {}), ident)
    return Choice(directory, None, f"training anew: the training interrupted at iteration {last.checkpoint[1]} "
                                   f"(run {last.name}) {why}; its checkpoints stay in {last.directory}")


def _changed_settings(before: dict, now: dict, ident: dict) -> str:
    changes = [f"{key} {before[key]!r} -> {value!r}" for key, value in sorted(now.items())
               if key in before and before[key] != value and key not in _NOT_SETTINGS and key not in ident]
    return ", ".join(changes)


def _difference(before: dict, now: dict) -> str:
    """Why a training of identity `before` cannot be continued by one of identity `now`."""
    if before.get("examples") != now["examples"] or before.get("transform_graph") != now["transform_graph"]:
        return f"read other data ({before.get('examples')}; now {now['examples']})"
    if before.get("start") != now["start"]:
        return f"started from {before.get('start')} (now {now['start']})"
    field = next(f for f in SHAPE_FIELDS if before.get(f) != now[f])
    return f"has {field}={before.get(field)} (now {field}={now[field]}): another model shape"


def start(choice: Choice, ident: dict, cfg, model_run_dir: str, chief: bool = True) -> None:
    """Record the attempt about to run in the training's TRAINING_FILE (the chief only)."""
    if not chief:
        return
    path = f"{choice.directory}/{TRAINING_FILE}"
    record = files.read_json(path, default=None) or {"identity": ident, "started": time.time(), "attempts": [],
                                                      "directory": choice.directory}
    record["config"] = cfg.to_dict()
    record.pop("completed_as", None)
    record["attempts"].append({"model_run": model_run_dir, "started": time.time(),
                               "from_iteration": _iteration(choice.continue_from)})
    files.write_json(path, record)


def _iteration(checkpoint: Optional[str]) -> int:
    return int(checkpoint.rsplit("-", 1)[1]) if checkpoint else 0


@contextlib.contextmanager
def held(directory: str) -> Iterator[None]:
    """While a training runs: its directory locked on a local disk, so that a second run on the same
    pipeline root (another machine of a shared disk) cannot continue it at the same time."""
    if not files.is_local(directory):
        yield
        return
    with files.exclusive_lock(os.path.join(directory, LOCK_FILE), TrainingInUse(
            f"the training in {directory} is being continued by another run: wait for it to end, or train anew "
            f"with --continue_interrupted=False")):
        yield


def discard_if_empty(directory: str) -> None:
    """Remove a training that failed before it saved a checkpoint (a divergence at its start, data
    it cannot read): it holds nothing to continue from, and would only be in the way."""
    if newest_checkpoint(directory) is None:
        _remove(directory)


def _remove(directory: str) -> bool:
    """Remove a training's directory (locally: not through a symbolic link); whether it was."""
    if files.is_local(directory):
        return files.remove_tree_within(directory, os.path.dirname(directory.rstrip("/")))
    import tensorflow as tf

    tf.io.gfile.rmtree(directory)
    return True


def publish(directory: str, model_run_dir: str) -> None:
    """Copy the finished training into the ModelRun artifact (hard links on a local disk: no space
    taken twice)."""
    _copy_tree(directory, model_run_dir)


def completed(directory: str, model_run_dir: str) -> None:
    """Record that the training completed as that ModelRun, its outputs all written."""
    path = f"{directory}/{TRAINING_FILE}"
    record = files.read_json(path)
    record["completed_as"] = model_run_dir.rstrip("/")
    files.write_json(path, record)


def _copy_tree(source: str, destination: str) -> None:
    if files.is_local(source) and files.is_local(destination):
        for folder, _, names in os.walk(source):
            target = os.path.join(destination, os.path.relpath(folder, source))
            os.makedirs(target, exist_ok=True)
            for name in names:
                if name == LOCK_FILE:
                    continue
                src, dst = os.path.join(folder, name), os.path.join(target, name)
                if os.path.lexists(dst):
                    os.remove(dst)
                try:
                    os.link(src, dst)
                except OSError:  # another filesystem, or one without hard links
                    shutil.copy2(src, dst)
        return
    import tensorflow as tf

    for folder, _, names in tf.io.gfile.walk(source):
        target = f"{destination.rstrip('/')}/{os.path.relpath(folder, source)}".replace("/./", "/").rstrip("/.")
        tf.io.gfile.makedirs(target)
        for name in names:
            if name != LOCK_FILE:
                tf.io.gfile.copy(f"{folder.rstrip('/')}/{name}", f"{target}/{name}", overwrite=True)


def remove_published(model_run_uri: str, log=print) -> Optional[str]:
    """Once the ModelRun at model_run_uri is published (the LMEvaluator, downstream of it, calls
    this): remove the training directory it was copied from, when that training records it
    completed as this very ModelRun. The directory removed, or None."""
    record = files.read_json(f"{model_run_uri.rstrip('/')}/{TRAINING_FILE}", default=None)
    if not record:
        return None
    directory = record.get("directory")
    current = files.read_json(f"{directory}/{TRAINING_FILE}", default=None) if directory else None
    if not current or current.get("completed_as") != model_run_uri.rstrip("/"):
        return None
    if not _remove(directory):
        return None
    log(f"the training {directory} is published as {model_run_uri}: its directory is removed")
    return directory
