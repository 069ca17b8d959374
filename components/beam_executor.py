"""What the project's Beam components (TokenizeText, the character runs' Transform) share."""

from __future__ import annotations

import copy
from typing import List, Optional

from tfx.dsl.components.base import base_beam_executor


def runs_on_direct_runner(beam_pipeline_args: List[str]) -> bool:
    """Whether these arguments run Beam's DirectRunner (also Beam's default when none is named)."""
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

    runner = PipelineOptions(beam_pipeline_args).view_as(StandardOptions).runner
    if runner is None:
        return True
    name = str(runner).rsplit(".", 1)[-1].lower()
    return name in ("direct", "directrunner", "switchingdirectrunner", "bundlebaseddirectrunner")


class NoWorkerPackage:
    """Put first among the bases of a TFX Beam executor: on the DirectRunner, the executor's Beam
    arguments as given. TFX's BaseBeamExecutor otherwise packs its own installation into an sdist for
    the workers, unless the arguments name their dependencies: a `setup.py sdist` subprocess (~1.5 s)
    and 42 MB left in the temporary directory at every run. The DirectRunner's workers run in this
    very environment and need none of it; another runner still gets TFX's package."""

    def __init__(self, context: Optional[base_beam_executor.BaseBeamExecutor.Context] = None):
        if isinstance(context, base_beam_executor.BaseBeamExecutor.Context) and context.beam_pipeline_args \
                and runs_on_direct_runner(context.beam_pipeline_args):
            beam_pipeline_args = list(context.beam_pipeline_args)
            context = copy.copy(context)
            context.beam_pipeline_args = None
            super().__init__(context)
            self._beam_pipeline_args = beam_pipeline_args
        else:
            super().__init__(context)
