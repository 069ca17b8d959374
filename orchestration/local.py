"""The pipeline on this machine with LocalDagRunner and an SQLite ML Metadata store under the output
directory; what a killed run left is cleared first, and a damaged cached artifact is made anew
(orchestration/recovery.py)."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings

from core.console import quiet_imports
from core.errors import UserError, interrupt_in
from pipeline.configs import RunConfig

PRESTART_ENV = "NANOGPT_TFX_PRESTART"

# warnings TFX gives on every run that say nothing about this one; the third, on every character
# run, is tf.Transform's: tft.apply_vocabulary makes its table inside the tf.function it traces
# (tensorflow/transform issue 249), which TensorFlow warns may then be initialized at every call,
# for a character vocabulary a file of a few hundred lines at most
_ROUTINE_WARNINGS = ("ArtifactQuery.property_predicate is not supported",
                     "Examples artifact does not have payload_format custom property",
                     "Tables initialized inside a tf.function")


def show_progress() -> None:
    """Quiet TensorFlow and TFX, except for each component's start and end, the components' own
    progress lines and any warning."""
    quiet_imports()
    warnings.filterwarnings("ignore", category=DeprecationWarning)

    class Progress(logging.Filter):
        def filter(self, record):
            message = record.getMessage()
            if record.levelno >= logging.WARNING:
                return not message.startswith(_ROUTINE_WARNINGS)
            return message.startswith(("Component ", "TokenizeText:", "DataValidator:", "Trainer:", "LMEvaluator:",
                                       "InfraValidator:"))

    class Reported(logging.Filter):
        """Leaves out an error logged about what the command's last line reports (TFX's 'Execution N
        failed.' while handling it, Beam's traceback of a Ctrl-C in a DoFn): a user's mistake or a
        stop (UserError, Interrupted), or a Ctrl-C or SIGTERM."""

        def filter(self, record):
            error = record.exc_info[1] if record.exc_info else sys.exc_info()[1]
            reported = isinstance(error, UserError) or interrupt_in(error) is not None
            return not (record.levelno >= logging.ERROR and reported)

    logging.getLogger("absl").addFilter(Progress())
    # TFX's and Beam's (which logs the KeyboardInterrupt a Ctrl-C raises in a DoFn as an error)
    for name in ("absl", "apache_beam.runners.common"):
        logging.getLogger(name).addFilter(Reported())
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.INFO)


def local_pipeline(config: RunConfig):
    """The pipeline with the SQLite ML Metadata store of config.metadata_path."""
    from tfx.orchestration.metadata import sqlite_metadata_connection_config

    from pipeline.pipeline import Platform, create_pipeline

    store = sqlite_metadata_connection_config(config.metadata_path)
    return create_pipeline(config, Platform(metadata_connection_config=store))


def run(config: RunConfig, started: float = None) -> None:
    """Run the pipeline end to end here, then print where its results are and where the time went
    (started: when the command started, seconds since the epoch; default: now)."""
    import time

    started = time.time() if started is None else started
    # NANOGPT_TFX_PRESTART=0: each fresh process started when its component comes (the test suite's
    # runs, most of which end before the Trainer, would only pay for imports they never use)
    ahead = os.environ.get(PRESTART_ENV, "1") != "0"
    ahead_of_time = prestarted(training=not config.train.eval_only) if ahead else contextlib.nullcontext(lambda: None)
    with ahead_of_time as start_check:
        _run(config, started, start_check)


def _run(config: RunConfig, started: float, start_check) -> None:
    import time

    from tfx.orchestration.local.local_dag_runner import LocalDagRunner  # (not tfx.v1: pipeline/pipeline.py)

    from orchestration import recovery
    from pipeline import metadata

    start_check()
    source = config.data.input_pattern or config.data.dataset_name
    print(f"running pipeline {config.pipeline_name} ({config.preset}) on {source}; output in "
          f"{os.path.abspath(config.output_dir)}", flush=True)
    with recovery.exclusive_run(config.output_dir):
        if os.path.exists(config.metadata_path):  # a damaged store: one line naming it, before anything runs
            metadata.sqlite_store(config.metadata_path)
        recovery.claim_pipeline_root(config.metadata_path, config.pipeline_root)  # another store's: one line
        cleared = recovery.clear_dead_executions(config.metadata_path, config.pipeline_root, config.serving_dir)
        if cleared:
            print(f"cleared executions {cleared}, left RUNNING by a run that was stopped or killed", flush=True)
        for line in recovery.set_aside_changed_shards(config.metadata_path):
            print(line, flush=True)
        # a damaged artifact from the cache: set aside, and the pipeline runs again to make it anew
        recovery.run_remaking_damaged(config.metadata_path,
                                      lambda: LocalDagRunner().run(local_pipeline(config)))
    print(metadata.run_summary(config.metadata_path, started), flush=True)
    print(metadata.time_split(config.metadata_path, started, time.time()), flush=True)


@contextlib.contextmanager
def prestarted(training: bool = True):
    """The run's two fresh processes started ahead (core/prestart.py), whose components hand them
    their requests: the training process now (unless `training` is False: an eval_only run starts
    none), its TensorFlow import on the core that TFX's import in this process leaves idle; the infra
    check's by the function this yields, to call once TFX is imported (a third import at once would
    slow TFX's), so that it imports while the data components run. Those nothing took are ended
    after the block."""
    from components.infra_validator.check import prestart_check
    from core import prestart
    from training.train_process import prestart_training

    if training:
        prestart_training()
    try:
        yield prestart_check
    finally:
        prestart.stop_all()
