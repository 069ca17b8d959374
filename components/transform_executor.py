"""The executor of the character runs' Transform: TFX's own, on the DirectRunner without TFX's
package for the workers (components/beam_executor.py)."""

from __future__ import annotations

from tfx.components.transform import executor

from components.beam_executor import NoWorkerPackage


class Executor(NoWorkerPackage, executor.Executor):
    """TFX's Transform executor; its Beam arguments as given on the DirectRunner."""
